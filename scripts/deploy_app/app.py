"""The application: a graph of four operators (see the package docstring) and a function that runs it once."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from holoscan.conditions import CountCondition
from monai.deploy.core import AppContext, Application, Image, IOType
from monai.deploy.operators.monai_bundle_inference_operator import (
    BundleConfigNames,
    IOMapping,
    MonaiBundleInferenceOperator,
)

from .operators import (
    CTSeriesSelectorOperator,
    SegmentationWriterOperator,
    SeriesToVolumeOperator,
    read_embedded_bundle,
)

__all__ = ["LiverSegmentationApp", "run_app"]


class LiverSegmentationApp(Application):
    """Segments the liver in the CT series of one DICOM study folder with the bundle inside a TorchScript file.

    Args:
        input_dir: the study folder (searched recursively; other series and non-DICOM files may sit beside).
        output_dir: where ``<PatientID>_<Series>_seg.dcm`` and ``..._seg.nii.gz`` are written.
        model_path: ``models/model.ts`` from ``python -m monai.bundle ckpt_export`` (weights, metadata and the
            inference config, plus any other config exported with it, merged after it).
        series_uid: segment this series rather than the CT series with the most slices.
    """

    def __init__(self, input_dir, output_dir, model_path, series_uid: str | None = None):
        self.input_dir = Path(input_dir).resolve()
        self.output_dir = Path(output_dir).resolve()
        self.model_path = Path(model_path).resolve()
        self.series_uid = series_uid
        self.metadata, self.config_names = read_embedded_bundle(self.model_path)
        self.selector = self.writer = None
        super().__init__([sys.executable, "scripts.deploy_app"])  # our own flags are not Holoscan's to parse

    def compose(self):
        context = AppContext(
            {"input": str(self.input_dir), "output": str(self.output_dir), "model": str(self.model_path)}
        )
        self.selector = CTSeriesSelectorOperator(
            self,
            CountCondition(self, 1),
            input_folder=self.input_dir,
            series_uid=self.series_uid,
            name="ct_series_selector",
        )
        to_volume = SeriesToVolumeOperator(self, name="series_to_volume")
        bundle = MonaiBundleInferenceOperator(
            self,
            input_mapping=[IOMapping("image", Image, IOType.IN_MEMORY)],
            output_mapping=[IOMapping("pred", Image, IOType.IN_MEMORY)],
            app_context=context,
            bundle_path=self.model_path,
            bundle_config_names=BundleConfigNames(config_names=self.config_names),
            name="bundle_inference",
        )
        self.writer = SegmentationWriterOperator(
            self, output_folder=self.output_dir, metadata=self.metadata, name="seg_writer"
        )
        self.add_flow(self.selector, to_volume, {("series", "series")})
        self.add_flow(to_volume, bundle, {("image", "image")})
        self.add_flow(bundle, self.writer, {("pred", "seg_image")})
        self.add_flow(self.selector, self.writer, {("series", "series")})


def run_app(input_dir, output_dir, model_path, series_uid: str | None = None) -> dict:
    """Run the application once; return what it did.

    Returns ``{"seg", "nifti", "voxels", "skipped", "configs", "seconds"}``: the two written files, the voxel count
    per label, the ``(series name, reason)`` pairs of the series not segmented, the embedded configs merged, and the
    wall time. Errors of any operator are raised here (FileNotFoundError/ValueError name the file or series).
    """
    input_dir = os.fspath(input_dir)
    if not os.path.isdir(input_dir):
        raise FileNotFoundError(f"{input_dir}: no such folder")
    start = time.perf_counter()
    app = LiverSegmentationApp(input_dir, output_dir, model_path, series_uid)
    app.run()
    if not app.writer or not app.writer.written:
        raise RuntimeError(f"{input_dir}: the application finished without writing a segmentation")
    return {
        **app.writer.written,
        "skipped": list(app.selector.skipped),
        "configs": list(app.config_names),
        "seconds": time.perf_counter() - start,
    }
