"""DICOM Segmentation (SEG) of a mask on a DICOM CT series: the one writer behind the inference runner's
``--output_format seg`` and the MONAI Deploy app.

A SEG references its source by UIDs (study, series, every SOP instance, frame of reference), so it is written only
for a series that has all of them (:func:`seg_problem`); made-up UIDs would reference images that do not exist.
highdicom writes it; it comes with ``requirements-deploy.txt`` and is imported only when a SEG is written.
"""

from __future__ import annotations

import os

import numpy as np

from scripts.lib.dicom.read import read_dataset
from scripts.lib.fileio import save_dataset_atomic

__all__ = ["DEPLOY_REQUIREMENTS", "require_highdicom", "seg_problem", "segment_descriptions", "write_seg"]

DEPLOY_REQUIREMENTS = "requirements-deploy.txt"
SEG_SERIES_NUMBER_OFFSET = 1000  # the SEG's SeriesNumber: the source's plus this, clear of the scanner's numbering
SEG_SERIES_DESCRIPTION = "Liver segmentation (research use only)"
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


def require_highdicom() -> None:
    """Raise ValueError naming ``requirements-deploy.txt`` when highdicom, which writes the SEG, is not installed."""
    try:
        import highdicom  # noqa: F401
    except ImportError as exc:
        raise ValueError(
            f"--output_format seg needs highdicom, which is not installed: pip install -r {DEPLOY_REQUIREMENTS} "
            "(it pins highdicom), or leave --output_format at nifti"
        ) from exc


def seg_problem(series: dict) -> str | None:
    """Why no SEG can reference ``series`` (a :func:`scripts.lib.dicom.find_series` or ``check_series`` dict): the UIDs
    it lacks; None when it has them all."""
    missing = list(series["missing_uids"])
    if series.get("sop_class_from", "SOPClassUID") != "SOPClassUID":
        missing.append("SOPClassUID blank or absent")
    if missing:
        return f"{', '.join(missing)}: a DICOM SEG must reference its source study, series and images by these UIDs"
    return None


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


def write_seg(mask_kji, series: dict, metadata: dict, path) -> dict:
    """Write ``mask_kji`` as a binary DICOM SEG of ``series`` to ``path`` (atomically); return ``{label: voxels}``.

    ``mask_kji`` is a label map indexed (slice, row, column) in the slice order of ``series["files"]`` (as
    :func:`scripts.lib.dicom.check_series` sorts them: along the slice normal). The SEG has one frame per source slice,
    even an empty one, so its frames line up with the source one to one, and it takes the source's frame of
    reference, study and patient. ``metadata`` is the bundle's (``configs/metadata.json``): its ``pred`` classes name
    the segments and its version is the algorithm's. Raises ValueError naming the series for a mask of another shape,
    labels the metadata does not name, or a series without the UIDs a SEG references (:func:`seg_problem`).
    """
    import highdicom as hd

    problem = seg_problem(series)
    if problem:
        raise ValueError(f"{series['name']}: no DICOM SEG: {problem}")
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
    sources = [read_dataset(f, stop_before_pixels=True) for f in series["files"]]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=(series.get("series_number") or 0) + SEG_SERIES_NUMBER_OFFSET,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="liver_ct_segmentation developers",
        manufacturer_model_name="Liver CT segmentation (MONAI bundle)",
        software_versions=str(metadata.get("version", "")),
        device_serial_number="none",
        series_description=SEG_SERIES_DESCRIPTION,
        content_label="LIVER",
        omit_empty_frames=False,
    )
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    save_dataset_atomic(seg, os.fspath(path))
    labels, counts = np.unique(mask, return_counts=True)
    return {int(k): int(c) for k, c in zip(labels, counts, strict=True) if k}
