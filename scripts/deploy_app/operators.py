"""The application's own operators and the plain functions behind them.

The functions (series selection, embedded-config discovery, SEG and NIfTI writing) take and return plain Python and
NumPy objects and are tested on their own; the operators are thin MONAI Deploy (Holoscan) wrappers around them.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
import zipfile

import numpy as np
from monai.deploy.core import Fragment, Image, Operator, OperatorSpec

from scripts.lib import dicom
from scripts.lib.dicom import write as dicom_write
from scripts.lib.fileio import case_name, save_nifti
from scripts.lib.seg import seg_problem, write_seg

logger = logging.getLogger(__name__)

MIN_SLICES = 10  # fewer slices cannot cover a liver (15-20 cm craniocaudal) even at 10 mm: not an abdominal CT


# ----------------------------------------------------------------------------------------------------------------------
# series selection


def _slice_spacing(info: dict) -> float:
    return float(info["spacing"][2])


def select_ct_series(folder, series_uid: str | None = None) -> tuple[dict, list[tuple[str, str]]]:
    """Pick the CT series to segment under ``folder``; return ``(series_info, skipped)``.

    Every series is judged on what anonymisation keeps: Modality, SOP class, ImageType (LOCALIZER is a scout), the
    number of slices and the geometry checks of :func:`scripts.lib.dicom.check_series` (one orientation, equal slice
    spacing, no missing slice). A series missing any of the UIDs a DICOM SEG references its source by (Study, Series,
    SOP Instance, Frame of Reference; anonymisers sometimes blank them) is not usable either: new UIDs would make a
    SEG that references images which do not exist, so it is skipped with the missing tags as the reason (the
    bundle's inference segments it from its folder into NIfTI). Among the usable series it takes ``series_uid`` when
    given, else the one with the most slices (then the thinnest slices, then the smallest UID, so the choice is
    repeatable). ``skipped`` lists every other series as ``(name, reason)`` and each is logged. Raises ValueError
    naming every series when none is usable, and FileNotFoundError when the folder does not exist.
    """
    folder = os.fspath(folder)
    cts, others = dicom.ct_series(folder)
    usable, skipped = [], [(dicom.series_name(s), reason) for s, reason in others]
    for s in cts:
        name = dicom.series_name(s)
        reason, problem = None, seg_problem(s)
        if s["n_files"] < MIN_SLICES:
            reason = f"{s['n_files']} slice(s), fewer than {MIN_SLICES}: not a volume that can hold a liver"
        if reason is None and problem:
            reason = (
                f"{problem}, and new ones would reference images that do not exist; segment the series with "
                f"the bundle's inference instead (--input {s['folder']}), which writes a NIfTI mask"
            )
        if reason is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    info = dicom.check_series(s["files"])
            except ValueError as exc:
                reason = str(exc).replace(name + ": ", "")
        if reason is None:
            usable.append(info)
        else:
            skipped.append((name, reason))
    if series_uid:
        chosen = [i for i in usable if i["uid"] == series_uid]
        if not chosen:
            listed = "; ".join(f"{n}: {r}" for n, r in skipped if series_uid in n)
            raise ValueError(
                f"{folder}: series {series_uid} is not a usable CT series"
                + (f" ({listed})" if listed else " (not found)")
            )
    else:
        chosen = sorted(usable, key=lambda i: (-i["n_files"], _slice_spacing(i), i["uid"]))
    if not chosen:
        listing = "; ".join(f"{n}: {r}" for n, r in skipped)
        raise ValueError(f"{folder}: no usable CT series among {len(cts) + len(others)} series: {listing}")
    selected = chosen[0]
    for other in usable:
        if other is not selected:
            skipped.append(
                (
                    other["name"],
                    f"another CT series was selected ({selected['uid']}, "
                    f"{selected['n_files']} slices; this one has {other['n_files']})",
                )
            )
    for name, reason in skipped:
        logger.warning("skip: %s: %s", name, reason)
    logger.info(
        "selected: %s: %d slices of %dx%d, %s mm",
        selected["name"],
        selected["n_files"],
        selected["shape"][0],
        selected["shape"][1],
        "x".join(f"{v:.3g}" for v in selected["spacing"]),
    )
    return selected, skipped


# ----------------------------------------------------------------------------------------------------------------------
# the bundle inside model.ts


def read_embedded_bundle(model_path) -> tuple[dict, list[str]]:
    """The metadata and the config names that ``ckpt_export`` stored in a TorchScript file.

    Returns ``(metadata, config_names)`` with ``inference`` first, then any other exported config in the order the
    archive keeps (alphabetical), e.g. ``demo`` when exported with
    ``--config_file "['configs/inference.yaml','configs/demo.yaml']"``; the application merges them in that order.
    Raises FileNotFoundError/ValueError naming the file when it is missing or not a bundle export.
    """
    model_path = os.fspath(model_path)
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"{model_path}: model file not found")
    hint = (
        "export it with: python -m monai.bundle ckpt_export network_def --filepath models/model.ts "
        "--ckpt_file models/model.pt --meta_file configs/metadata.json --config_file configs/inference.yaml"
    )
    try:
        with zipfile.ZipFile(model_path) as archive:
            names = archive.namelist()
            extra = [n for n in names if n.split("/")[-2:-1] == ["extra"] and n.endswith(".json")]
            meta_names = [n for n in extra if n.endswith("/metadata.json")]
            if not meta_names:
                raise ValueError(f"{model_path}: no bundle metadata inside (extra/metadata.json); {hint}")
            metadata = json.loads(archive.read(meta_names[0]))
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{model_path}: not a TorchScript file; {hint}") from exc
    configs = [n.split("/")[-1][: -len(".json")] for n in extra if not n.endswith("/metadata.json")]
    if "inference" not in configs:
        raise ValueError(f"{model_path}: no inference config inside (extra/inference.json); {hint}")
    return metadata, ["inference"] + [c for c in configs if c != "inference"]


# ----------------------------------------------------------------------------------------------------------------------
# writing


def write_outputs(mask_kji: np.ndarray, series: dict, metadata: dict, output_dir) -> dict:
    """Write the mask as DICOM SEG and gzip NIfTI; return ``{"seg": path, "nifti": path, "voxels": {label: n}}``.

    ``mask_kji`` is a label map indexed (slice, row, column) in the slice order of ``series["files"]`` (as
    :func:`select_ct_series` returns it). The SEG has one frame per source slice, even an empty one, so its frames
    line up with the source one to one. The NIfTI is indexed (i, j, k) with the series' RAS affine, the grid that
    ``python -m scripts dicom convert`` gives the same series. Outputs are named after the series
    (``<PatientID>_<SeriesNumber or UID tail>_seg.dcm`` / ``.nii.gz``).
    """
    output_dir = os.fspath(output_dir)
    stem = case_name(dicom_write.output_names([series])[0]) + "_seg"
    seg_path = os.path.join(output_dir, stem + ".dcm")
    voxels = write_seg(mask_kji, series, metadata, seg_path)
    nifti_path = os.path.join(output_dir, stem + ".nii.gz")
    mask = np.rint(np.asarray(mask_kji)).astype(np.uint8)
    save_nifti(np.ascontiguousarray(mask.transpose(2, 1, 0)), series["affine"], nifti_path)
    return {"seg": seg_path, "nifti": nifti_path, "voxels": voxels}


# ----------------------------------------------------------------------------------------------------------------------
# operators


class CTSeriesSelectorOperator(Operator):
    """Source operator: finds the CT series to segment under a folder (see :func:`select_ct_series`).

    Named output ``series``: the series' dict (files in slice order, shape, spacing, RAS affine, UIDs).
    """

    def __init__(self, fragment: Fragment, *args, input_folder, series_uid: str | None = None, **kwargs):
        self.input_folder = os.fspath(input_folder)
        self.series_uid = series_uid
        self.skipped: list[tuple[str, str]] = []
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.output("series")

    def compute(self, op_input, op_output, context):
        series, self.skipped = select_ct_series(self.input_folder, self.series_uid)
        op_output.emit(series, "series")


class SeriesToVolumeOperator(Operator):
    """Reads the selected series into an SDK ``Image``: a float32 HU volume indexed (i, j, k) with its RAS affine.

    Named input ``series``; named output ``image``.
    """

    def setup(self, spec: OperatorSpec):
        spec.input("series")
        spec.output("image")

    def compute(self, op_input, op_output, context):
        series = op_input.receive("series")
        volume, _, _ = dicom.read_series(series["files"])
        logger.info("read %s: %s voxels", series["name"], "x".join(str(v) for v in volume.shape))
        op_output.emit(Image(volume.astype(np.float32), metadata=dicom.volume_metadata(series)), "image")


class SegmentationWriterOperator(Operator):
    """Writes the label map from the bundle operator as DICOM SEG and NIfTI (see :func:`write_outputs`).

    Named inputs ``seg_image`` (the bundle operator's ``pred``, indexed slice, row, column) and ``series``.
    """

    def __init__(self, fragment: Fragment, *args, output_folder, metadata: dict, **kwargs):
        self.output_folder = os.fspath(output_folder)
        self.bundle_metadata = metadata
        self.written: dict = {}
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("seg_image")
        spec.input("series")

    def compute(self, op_input, op_output, context):
        seg_image = op_input.receive("seg_image")
        series = op_input.receive("series")
        mask = seg_image.asnumpy() if isinstance(seg_image, Image) else np.asarray(seg_image)
        self.written = write_outputs(mask, series, self.bundle_metadata, self.output_folder)
        logger.info(
            "wrote %s and %s (%s voxels per label)",
            self.written["seg"],
            self.written["nifti"],
            self.written["voxels"] or "no",
        )
