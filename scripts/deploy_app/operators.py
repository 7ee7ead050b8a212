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

from scripts import dicom
from scripts.fileio import case_name, save_nifti

logger = logging.getLogger(__name__)

MIN_SLICES = 10  # fewer slices cannot cover a liver (15-20 cm craniocaudal) even at 10 mm: not an abdominal CT
SEG_SERIES_NUMBER_OFFSET = 1000  # the SEG's SeriesNumber: the source's plus this, clear of the scanner's numbering
ALGORITHM_NAME = "liver_ct_segmentation"
# Segment codes (SNOMED CT, DICOM CID 7150/7151) for the class names of the bundle's metadata (pred channel_def).
SEGMENT_CODES = {
    "liver": ("Liver", ("SCT", "91772007", "Organ"), ("SCT", "10200004", "Liver")),
    "tumour": (
        "Liver tumour",
        ("SCT", "49755003", "Morphologically Abnormal Structure"),
        ("SCT", "108369006", "Neoplasm"),
    ),
}
SEGMENT_CODES["tumor"] = SEGMENT_CODES["tumour"]


# ----------------------------------------------------------------------------------------------------------------------
# series selection


def _slice_spacing(info: dict) -> float:
    return float(info["spacing"][2])


def select_ct_series(folder, series_uid: str | None = None) -> tuple[dict, list[tuple[str, str]]]:
    """Pick the CT series to segment under ``folder``; return ``(series_info, skipped)``.

    Every series is judged on what anonymisation keeps: Modality, SOP class, ImageType (LOCALIZER is a scout), the
    number of slices and the geometry checks of :func:`scripts.dicom.check_series` (one orientation, equal slice
    spacing, no missing slice). A series missing any of the UIDs a DICOM SEG references its source by (Study, Series,
    SOP Instance, Frame of Reference; anonymisers sometimes blank them) is not usable either: new UIDs would make a
    SEG that references images which do not exist, so it is skipped with the missing tags as the reason (the
    bundle's inference segments it from its folder into NIfTI). Among the usable series it takes ``series_uid`` when
    given, else the one with the most slices (then the thinnest slices, then the smallest UID, so the choice is
    repeatable). ``skipped`` lists every other series as ``(name, reason)`` and each is logged. Raises ValueError
    naming every series when none is usable, and FileNotFoundError when the folder does not exist.
    """
    folder = os.fspath(folder)
    found = dicom.find_series(folder)
    if not found:
        raise ValueError(f"{folder}: no DICOM series found")
    usable, skipped = [], []
    for s in found:
        name = dicom.series_name(s)
        reason = dicom.skip_reason(s)
        if reason is None and s["n_files"] < MIN_SLICES:
            reason = f"{s['n_files']} slice(s), fewer than {MIN_SLICES}: not a volume that can hold a liver"
        if reason is None and s["missing_uids"]:
            reason = (
                f"{', '.join(s['missing_uids'])}: a DICOM SEG must reference its source study, series and images "
                "by these UIDs, and new ones would reference images that do not exist; segment the series with "
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
        raise ValueError(f"{folder}: no usable CT series among {len(found)} series: {listing}")
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


def segment_descriptions(metadata: dict):
    """highdicom segment descriptions for the classes of the bundle's ``pred`` output, background excluded."""
    import highdicom as hd
    from pydicom.sr.coding import Code

    channel_def = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
    version = str(metadata.get("version", ""))
    algorithm = hd.AlgorithmIdentificationSequence(
        name=ALGORITHM_NAME, version=version, family=Code("123110", "DCM", "Artificial Intelligence")
    )
    descriptions = []
    for number in sorted(int(k) for k in channel_def if int(k) > 0):
        cls = str(channel_def[str(number)]).strip().lower()
        if cls not in SEGMENT_CODES:
            raise ValueError(
                f"class {number} ({channel_def[str(number)]!r}) of the model's metadata has no segment "
                f"code; known classes: {sorted(SEGMENT_CODES)}"
            )
        label, category, prop = SEGMENT_CODES[cls]
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=label,
                segmented_property_category=Code(category[1], category[0], category[2]),
                segmented_property_type=Code(prop[1], prop[0], prop[2]),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                anatomic_regions=[Code("10200004", "SCT", "Liver")] if cls != "liver" else None,
            )
        )
    return descriptions


def write_outputs(mask_kji: np.ndarray, series: dict, metadata: dict, output_dir) -> dict:
    """Write the mask as DICOM SEG and gzip NIfTI; return ``{"seg": path, "nifti": path, "voxels": {label: n}}``.

    ``mask_kji`` is a label map indexed (slice, row, column) in the slice order of ``series["files"]`` (as
    :func:`select_ct_series` returns it). The SEG has one frame per source slice, even an empty one, so its frames
    line up with the source one to one. The NIfTI is indexed (i, j, k) with the series' RAS affine, the grid that
    ``python -m scripts dicom convert`` gives the same series. Outputs are named after the series
    (``<PatientID>_<SeriesNumber or UID tail>_seg.dcm`` / ``.nii.gz``).
    """
    import highdicom as hd
    import pydicom

    columns, rows, n = series["shape"]
    mask = np.asarray(mask_kji)
    if mask.shape != (n, rows, columns):
        raise ValueError(
            f"{series['name']}: the mask's shape {mask.shape} is not the series' (slices, rows, columns) "
            f"{(n, rows, columns)}"
        )
    mask = np.rint(mask).astype(np.uint8)
    descriptions = segment_descriptions(metadata)
    unknown = sorted(set(np.unique(mask).tolist()) - {0} - {d.segment_number for d in descriptions})
    if unknown:
        raise ValueError(f"{series['name']}: the mask holds label(s) {unknown} that the model's metadata does not name")
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    stem = case_name(dicom.output_names([series])[0]) + "_seg"
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in series["files"]]
    source_number = series.get("series_number")
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=(source_number or 0) + SEG_SERIES_NUMBER_OFFSET,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="liver_ct_segmentation developers",
        manufacturer_model_name="Liver CT segmentation (MONAI bundle)",
        software_versions=str(metadata.get("version", "")),
        device_serial_number="none",
        series_description="Liver segmentation (research use only)",
        content_label="LIVER",
        omit_empty_frames=False,
    )
    seg_path = os.path.join(output_dir, stem + ".dcm")
    dicom.save_dataset_atomic(seg, seg_path)
    nifti_path = os.path.join(output_dir, stem + ".nii.gz")
    save_nifti(np.ascontiguousarray(mask.transpose(2, 1, 0)), series["affine"], nifti_path)
    labels, counts = np.unique(mask, return_counts=True)
    return {
        "seg": seg_path,
        "nifti": nifti_path,
        "voxels": {int(k): int(c) for k, c in zip(labels, counts, strict=True) if k},
    }


def volume_metadata(series: dict) -> dict:
    """The metadata that the bundle's transforms read from an image MONAI loaded itself (RAS affine, spacing)."""
    affine = np.asarray(series["affine"], dtype=np.float64)
    return {
        "affine": affine.copy(),
        "original_affine": affine.copy(),
        "spacing": np.asarray(series["spacing"], dtype=np.float64),
        "space": "RAS",
        "original_channel_dim": "no_channel",
        "spatial_shape": np.asarray(series["shape"]),
        "filename_or_obj": series["folder"],
        "series_instance_uid": series["uid"],
    }


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
        op_output.emit(Image(volume.astype(np.float32), metadata=volume_metadata(series)), "image")


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
