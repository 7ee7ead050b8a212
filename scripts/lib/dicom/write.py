"""Write DICOM CT series and convert series to gzip NIfTI: what the commands, the tests and the benchmark need.

Inference never imports this module (it reads series through :mod:`scripts.lib.dicom.read`); ``from scripts.lib
import dicom`` loads it on the first use of one of its names (``dicom.write_series``, ``dicom.convert``).

HU values are stored as unsigned 16 bit with ``RescaleIntercept = -1024`` when the volume fits in ``[-1024, 64511]``
(the usual scanner layout), otherwise as signed 16 bit with intercept 0. A volume written on a left-handed grid
(negative determinant, e.g. nibabel ``LAS`` or ``PLS``) reads back with ``k`` reversed and the matching affine: the
same voxels in the same places (the package docstring, :mod:`scripts.lib.dicom`, gives the conventions).

Encoders for the compressed transfer syntaxes come from pydicom plugins: ``pylibjpeg-openjpeg`` (JPEG 2000) and
``pyjpegls`` (JPEG-LS), or ``python-gdcm``.

Command line: ``python -m scripts dicom convert`` (:mod:`scripts.commands.dicom`).
"""

from __future__ import annotations

import datetime
import os
import re

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    generate_uid,
)
from pydicom.valuerep import DSfloat

from scripts.lib.dicom.read import (
    LPS_RAS_FLIP,
    ORIENTATION_TOL,
    check_series,
    ct_series,
    read_pixels,
    safe_name,
    series_name,
    unique_names,
)
from scripts.lib.errors import one_line
from scripts.lib.fileio import save_dataset_atomic, save_nifti

__all__ = ["write_series", "convert", "output_names", "save_dataset_atomic"]

TRANSFER_SYNTAXES = {"explicit": ExplicitVRLittleEndian, "jpeg2000": JPEG2000Lossless, "jpegls": JPEGLSLossless}
UNSIGNED_INTERCEPT = -1024
J2K_MIN_SIZE = 32  # openjpeg (pylibjpeg-openjpeg) encodes 6 resolution levels: rows and columns must be >= 2**5

# ----------------------------------------------------------------------------------------------------------------------
# writing


def _ds(value: float) -> DSfloat:
    """A DICOM decimal string for ``value`` that fits the 16-character limit (tiny float noise becomes 0)."""
    value = float(value)
    if abs(value) < 1e-12:
        value = 0.0
    return DSfloat(value, auto_format=True)


def _stored_layout(image: np.ndarray) -> tuple[bool, int]:
    """Pick the 16-bit storage for integer HU values: returns (signed, rescale_intercept)."""
    vmin, vmax = int(image.min()), int(image.max())
    if vmin >= UNSIGNED_INTERCEPT and vmax <= 65535 + UNSIGNED_INTERCEPT:
        return False, UNSIGNED_INTERCEPT
    if vmin >= -32768 and vmax <= 32767:
        return True, 0
    raise ValueError(f"HU range [{vmin}, {vmax}] does not fit 16-bit DICOM storage")


def _whole_hu(image_hu) -> np.ndarray:
    """Check that the volume is 3D with whole-number HU values and return it as an integer array."""
    image = np.asarray(image_hu)
    if image.ndim != 3 or min(image.shape) < 1:
        raise ValueError(f"image must be a non-empty 3D array, got shape {image.shape}")
    if image.dtype == bool or not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise ValueError(f"image must hold integer or float HU values, got dtype {image.dtype}")
    if np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)):
            raise ValueError("image holds NaN or infinite values")
        rounded = np.rint(image)
        if np.max(np.abs(image - rounded)) > 1e-3:
            raise ValueError("image holds fractional HU values; round it first (DICOM CT stores whole numbers)")
        image = rounded.astype(np.int64)
    return image


def _dicom_geometry(affine) -> dict:
    """Split a RAS affine into DICOM slice geometry (all in LPS): cosines, pixel spacing, origin and slice step."""
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ValueError(f"affine must be a finite 4x4 matrix, got {affine.shape}")
    lps = LPS_RAS_FLIP @ affine
    col_i, col_j, step = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    di, dj, dk = (float(np.linalg.norm(c)) for c in (col_i, col_j, step))
    if min(di, dj, dk) <= 0:
        raise ValueError(f"affine has a zero-length axis: {affine.tolist()}")
    row_cos, col_cos = col_i / di, col_j / dj
    if abs(float(row_cos @ col_cos)) > ORIENTATION_TOL:
        raise ValueError("affine axes i and j are not orthogonal; a DICOM slice grid cannot be sheared")
    normal = np.cross(row_cos, col_cos)
    return {
        "row_cos": row_cos,
        "col_cos": col_cos,
        "spacing_i": di,
        "spacing_j": dj,
        "step": step,
        "slice_distance": abs(float(step @ normal)),
        "normal": normal,
        "origin": lps[:3, 3],
    }


def _slice_dataset(geom: dict, k: int, rows: int, columns: int, layout: tuple[bool, int], series: dict) -> Dataset:
    """Header of slice ``k`` (pixel data added by the caller).

    ``layout`` is ``(signed, rescale intercept)`` (:func:`_stored_layout`); ``series`` holds what every slice of the
    series shares: ``study``, ``series`` and ``frame`` UIDs, ``patient_id``, ``description``, ``number``,
    ``modality``, ``image_type`` and ``now`` (the time of writing)."""
    signed, intercept = layout
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(series["image_type"])
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = series["now"].strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = series["now"].strftime("%H%M%S")
    ds.AccessionNumber = ""
    ds.Modality = series["modality"]
    ds.Manufacturer = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = ""
    ds.SeriesDescription = series["description"] or ""
    ds.PatientName = series["patient_id"]
    ds.PatientID = series["patient_id"]
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.KVP = None
    ds.SliceThickness = _ds(geom["slice_distance"])
    ds.SpacingBetweenSlices = _ds(geom["slice_distance"])
    ds.StudyInstanceUID = series["study"]
    ds.SeriesInstanceUID = series["series"]
    ds.StudyID = ""
    ds.SeriesNumber = series["number"] if series["number"] not in (None, "") else None
    ds.AcquisitionNumber = None
    ds.InstanceNumber = k + 1
    position = geom["origin"] + k * geom["step"]
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.ImageOrientationPatient = [_ds(v) for v in (*geom["row_cos"], *geom["col_cos"])]
    ds.FrameOfReferenceUID = series["frame"]
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = _ds(position @ geom["normal"])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = [_ds(geom["spacing_j"]), _ds(geom["spacing_i"])]  # (between rows, between columns)
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.WindowCenter = _ds(60)
    ds.WindowWidth = _ds(400)
    ds.RescaleIntercept = _ds(intercept)
    ds.RescaleSlope = _ds(1)
    ds.RescaleType = "HU"
    return ds


def _checked_volume(image_hu, affine, transfer_syntax: str, out_dir) -> tuple[np.ndarray, dict, tuple[bool, int]]:
    """The volume as whole HU, its slice geometry and its 16-bit layout (:func:`_stored_layout`), checked in that
    order after the transfer syntax; ValueError for anything :func:`write_series` cannot write."""
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"transfer_syntax must be one of {sorted(TRANSFER_SYNTAXES)}, got {transfer_syntax!r}")
    image = _whole_hu(image_hu)
    geom = _dicom_geometry(affine)
    layout = _stored_layout(image)
    columns, rows, _ = image.shape
    if transfer_syntax == "jpeg2000" and min(rows, columns) < J2K_MIN_SIZE:
        raise ValueError(
            f"{out_dir}: JPEG 2000 needs slices of at least {J2K_MIN_SIZE}x{J2K_MIN_SIZE} pixels "
            f"(openjpeg's default 6 resolution levels), got {columns}x{rows}"
        )
    return image, geom, layout


def _add_pixels(ds: Dataset, hu: np.ndarray, layout: tuple[bool, int], ts_uid, path: str) -> None:
    """Store one slice's HU values (rows, columns) in ``ds``: raw 16-bit words, or encoded in ``ts_uid``;
    ValueError naming ``path`` when no plugin encodes it."""
    signed, intercept = layout
    stored = np.ascontiguousarray((hu.astype(np.int32) - intercept).astype(np.int16 if signed else np.uint16))
    if ts_uid == ExplicitVRLittleEndian:
        ds.PixelData = stored.tobytes()
        ds["PixelData"].VR = "OW"
        return
    try:
        ds.compress(ts_uid, stored, generate_instance_uid=False)
    except Exception as exc:  # no encoder plugin, or the plugin refused this slice
        raise ValueError(f"{path}: cannot encode as {ts_uid.name}: {one_line(exc)}") from exc


def _write_slices(image: np.ndarray, geom: dict, layout: tuple[bool, int], ts_uid, out_dir, series: dict) -> list[str]:
    """Write slice ``k`` of ``image`` as ``out_dir/IM_<k+1>.dcm``, atomically, for every ``k``; return the paths.
    A failure removes the files already written by this call (no partial series) and raises."""
    columns, rows, n_slices = image.shape
    width = max(4, len(str(n_slices)))
    paths = []
    try:
        for k in range(n_slices):
            ds = _slice_dataset(geom, k, rows, columns, layout, series)
            path = os.path.join(out_dir, f"IM_{k + 1:0{width}d}.dcm")
            _add_pixels(ds, image[:, :, k].T, layout, ts_uid, path)  # (rows, columns) = (j, i)
            save_dataset_atomic(ds, path)
            paths.append(path)
    except BaseException:
        for path in paths:  # no partial series
            if os.path.exists(path):
                os.remove(path)
        raise
    return paths


def write_series(
    image_hu,
    affine,
    out_dir,
    *,
    transfer_syntax="explicit",
    patient_id="PHANTOM",
    study_uid=None,
    series_uid=None,
    frame_of_reference_uid=None,
    series_description="",
    series_number=None,
    modality="CT",
    image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
) -> list[str]:
    """Write a 3D HU volume as a DICOM CT Image Storage series, one file per slice along the third axis.

    ``image_hu`` is indexed (i, j, k) and ``affine`` is its RAS+ voxel-to-world matrix (nibabel convention). Slice
    ``k`` becomes file ``IM_<k+1>.dcm`` with InstanceNumber ``k + 1``. ``transfer_syntax`` is ``"explicit"``
    (Explicit VR Little Endian), ``"jpeg2000"`` (JPEG 2000 Lossless) or ``"jpegls"`` (JPEG-LS Lossless). Blank
    ``series_description`` and ``series_number=None`` leave those tags empty, as in anonymised archives. UIDs left
    as None are generated. Existing files of the same names in ``out_dir`` are replaced. If a slice cannot be
    encoded or written, the slices already written by this call are removed again. JPEG 2000 needs at least
    32x32 pixels per slice. Returns the file paths in slice order.
    """
    image, geom, layout = _checked_volume(image_hu, affine, transfer_syntax, out_dir)
    series = {
        "study": str(study_uid or generate_uid()),
        "series": str(series_uid or generate_uid()),
        "frame": str(frame_of_reference_uid or generate_uid()),
        "patient_id": str(patient_id),
        "description": series_description,
        "number": series_number,
        "modality": modality,
        "image_type": image_type,
        "now": datetime.datetime.now(),
    }
    os.makedirs(out_dir, exist_ok=True)
    return _write_slices(image, geom, layout, TRANSFER_SYNTAXES[transfer_syntax], out_dir, series)


# ----------------------------------------------------------------------------------------------------------------------
# conversion to NIfTI


def output_names(series: list[dict]) -> list[str]:
    """``<PatientID>_<SeriesNumber or last 8 digits of the UID>.nii.gz`` for each series (``find_series`` dicts), made
    unique: the names of the convert command's outputs and of the Deploy app's."""

    def uid_tail(s):
        return re.sub(r"\D", "", s["uid"] or s["key"])[-8:] or "series"

    bases = []
    for s in series:
        tag = str(s["series_number"]) if s["series_number"] is not None else uid_tail(s)
        bases.append(f"{safe_name(s['patient_id']) or 'anonymous'}_{safe_name(tag) or uid_tail(s)}")
    bases = [
        f"{base}_{uid_tail(s)}" if bases.count(base) > 1 and not base.endswith(uid_tail(s)) else base
        for s, base in zip(series, bases, strict=True)
    ]
    return [name + ".nii.gz" for name in unique_names(bases)]


def convert(input_root, output_dir, *, allow_irregular=False) -> list[str]:
    """Convert every CT image series under ``input_root`` to ``output_dir/<PatientID>_<SeriesNumber>.nii.gz``.

    Localizers (ImageType containing LOCALIZER), other SOP classes and other modalities are skipped, each listed on
    stdout with the reason. Blank SeriesNumbers (anonymised archives) use the last 8 digits of the SeriesInstanceUID
    (of the grouping key ``no-uid-<digits>`` for a series without UIDs, which converts with a logged warning).
    The geometry of every series is checked before anything is written, so a bad series raises ValueError naming it
    and no output appears; a series that fails while decoding leaves no file of its own (files are written to a
    temporary name and renamed). Prints one progress line per series; returns the written paths.
    """

    input_root, output_dir = os.fspath(input_root), os.fspath(output_dir)
    todo, skipped = ct_series(input_root)
    for s, reason in skipped:
        print(f"skip: {series_name(s)}: {reason}", flush=True)
    if not todo:
        raise ValueError(f"{input_root}: no CT image series to convert ({len(skipped)} series skipped)")
    checked = [check_series(s["files"], allow_irregular=allow_irregular) for s in todo]
    names = output_names(checked)
    os.makedirs(output_dir, exist_ok=True)
    written = []
    for number, (info, name) in enumerate(zip(checked, names, strict=True), start=1):
        volume = read_pixels(info)
        path = os.path.join(output_dir, name)
        save_nifti(volume, info["affine"], path)
        spacing = "x".join(f"{v:.3g}" for v in info["spacing"])
        shape = "x".join(str(v) for v in info["shape"])
        print(f"[{number}/{len(checked)}] {info['name']} -> {path} ({shape} voxels, {spacing} mm)", flush=True)
        written.append(path)
    return written
