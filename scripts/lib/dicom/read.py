"""Find, check and read DICOM CT series: what inference, the MONAI Deploy app and the commands share.

This module is the inference path's DICOM: :class:`scripts.components.inputs.DicomSeriesReader` calls
:func:`read_series`, so inference, ``python -m scripts dicom convert`` (:mod:`scripts.lib.dicom.write`) and the MONAI
Deploy app find, check and decode a series the same way (:func:`ct_series` picks the CT series of a study for all
three). MONAI's own readers are not used for DICOM: PydicomReader stacks slices by InstanceNumber, and ITKReader
splits a series by more tags than its UID (e.g. SliceThickness) and reads the first part only; neither checks for
missing slices. Writing series and converting them to NIfTI live in :mod:`scripts.lib.dicom.write`, which inference
never imports.

Reading sorts the slices by their position projected on the slice normal ``row_cosine x column_cosine`` (ascending),
so a volume read back always has ``k`` along that normal (a right-handed grid); the package docstring
(:mod:`scripts.lib.dicom`) gives the index and affine conventions.

Decoders for the compressed transfer syntaxes come from pydicom plugins: ``python-gdcm`` (JPEG lossless, JPEG
baseline, JPEG-LS, JPEG 2000), ``pylibjpeg`` + ``pylibjpeg-openjpeg`` (JPEG 2000) and ``pyjpegls`` (JPEG-LS); RLE
and deflate are pydicom's own. :func:`transfer_syntax_problem` refuses a syntax none of them decodes, naming it
(docs/dicom.md lists each syntax).

Series without UIDs (anonymised archives blank or delete SeriesInstanceUID and StudyInstanceUID): their image files
are grouped by what the files of one series share (:func:`_series_key`), their folder included (without a UID,
identical headers in two folders are more likely two copies than one series), and checking such a series logs a
warning naming the missing tags. The grouping leaves out AcquisitionNumber on purpose: some scanners number each
acquisition (or slice) of one series apart, so splitting by it would cut a real series into pieces; two acquisitions
that share everything else meet as duplicate slice positions instead, a clear error that names the acquisition
numbers. Anonymisers also blank SOPClassUID and SOPInstanceUID: a blank SOPClassUID is taken from the file meta's
MediaStorageSOPClassUID, else from Modality (:func:`ct_series` logs which tag decided); blank or repeated SOP
Instance UIDs are named in the same warning (slices are ordered by position, never by UID, file name or
InstanceNumber). Bare data sets without preamble and file meta, as some old archives store them, are read with the
encoding pydicom guesses (:func:`read_dataset`). docs/dicom.md lists each header state and what happens to it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import warnings

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder
from pydicom.uid import UID, CTImageStorage, JPEGExtended12Bit

from scripts.lib.errors import one_line

__all__ = [
    "find_series",
    "check_series",
    "read_series",
    "read_pixels",
    "skip_reason",
    "series_name",
    "output_names",
    "NoDicomSeries",
    "ct_series",
    "ct_decided_by",
    "read_dataset",
    "case_names",
    "volume_metadata",
    "transfer_syntax_problem",
]

#: The package's name, as before the split into modules: log configurations and tests select these records by it.
logger = logging.getLogger("scripts.lib.dicom")

LPS_RAS_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse: RAS <-> LPS
ORIENTATION_TOL = 1e-4  # direction cosines that differ by less are "the same"
#: UIDs that a series' files should carry; a DICOM SEG needs every one of them to reference its source.
UID_TAGS = ("SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID", "SOPInstanceUID")
#: Tags that the files of one series share, which group files without a SeriesInstanceUID (with the orientation and
#: pixel spacing, rounded, and whether the image is a localizer); see :func:`_series_key`.
SERIES_KEY_TAGS = (
    "PatientID",
    "StudyInstanceUID",
    "FrameOfReferenceUID",
    "Modality",
    "SOPClassUID",
    "SeriesNumber",
    "SeriesDescription",
    "Rows",
    "Columns",
)
GROUPED_BY = "folder, frame of reference, orientation, pixel spacing, rows/columns, series number and description"
MAX_PROBLEMS_SHOWN = 3  # an error line lists the first few irregular gaps; check_series returns them all
IRREGULAR_HINT = "to convert it anyway: python -m scripts dicom convert --allow_irregular"
#: pydicom plugins that are available for a transfer syntax but decode only samples of at most 8 bits there:
#: GDCM and Pillow refuse JPEG Extended with 12-bit precision (a 12-bit CT needs pylibjpeg-libjpeg).
EIGHT_BIT_ONLY_PLUGINS = {JPEGExtended12Bit: ("gdcm", "pillow")}
#: Transfer syntaxes newer than pydicom 3.0's UID dictionary (JPEG XL: DICOM Supplement 232), named in messages.
TRANSFER_SYNTAX_NAMES = {
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
}

# ----------------------------------------------------------------------------------------------------------------------
# small helpers


def _label(s: dict) -> str:
    """What tells a series apart: ``#number 'description', N files``, and without a UID the first file's name."""
    number = "" if s["series_number"] is None else f"#{s['series_number']}"
    parts = [p for p in (number, repr(s["series_description"]) if s["series_description"] else "") if p]
    files = f"{s['n_files']} file" + ("s" if s["n_files"] != 1 else "")
    first = "" if s["uid"] else f", first {os.path.basename(s['files'][0])}"
    return ", ".join([" ".join(parts) or "no number/description", files]) + first


def series_name(s: dict) -> str:
    """How messages name a series (a :func:`find_series` dict): its folder and SeriesInstanceUID, or without one,
    its number, description and size."""
    if s["uid"]:
        return f"series {s['folder']} (UID {s['uid']})"
    return f"series {s['folder']} (no SeriesInstanceUID: {_label(s)})"


def _as_int(value) -> int | None:
    """An IS value as int, or None when blank or missing."""
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _image_type(ds) -> tuple:
    value = ds.get("ImageType", None)
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(v for v in value.split("\\") if v)
    return tuple(str(v) for v in value)


# ----------------------------------------------------------------------------------------------------------------------
# finding and checking


def read_dataset(path: str, *, stop_before_pixels: bool = False):
    """A DICOM file's data set, or None when the file is not DICOM.

    A file with the 'DICM' preamble is read as usual; one that cannot be read raises ValueError. A file without it
    may be a bare data set (no preamble, no file meta), as some old archives store images: it is read with pydicom's
    ``force=True``, which guesses the encoding (implicit or explicit VR, little endian), and accepted only when it
    starts like one (first tag in group 0002 or 0008, little endian) and yields an image data set (first element in
    group 0008, and Rows/Columns or a SOPClassUID); the guessed encoding becomes its file meta's TransferSyntaxUID so
    that its pixels decode. Anything else (text, PNG, NIfTI, an empty file) is None, never a misread data set.
    """
    try:
        if pydicom.misc.is_dicom(path):
            try:
                return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
            except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError) as exc:
                raise ValueError(f"{path}: unreadable DICOM header: {one_line(exc)}") from exc
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return None
    if len(head) < 8 or int.from_bytes(head[:2], "little") not in (0x0002, 0x0008):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about its guesses on non-DICOM bytes
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
            first = next(iter(ds.keys()), None)
            image = bool(_as_int(ds.get("Rows", None)) and _as_int(ds.get("Columns", None)))
            plausible = first is not None and first.group == 0x0008 and (image or bool(_text(ds, "SOPClassUID")))
    except Exception as exc:  # a forced read of a non-DICOM file fails in many ways; such a file is no DICOM file
        logger.debug("%s: not a DICOM file (forced read: %s)", path, one_line(exc))
        return None
    if not plausible:
        return None
    if not ds.file_meta.get("TransferSyntaxUID", None):
        implicit, little = ds.original_encoding
        syntax = pydicom.uid.ImplicitVRLittleEndian if implicit else pydicom.uid.ExplicitVRLittleEndian
        ds.file_meta.TransferSyntaxUID = syntax if little else pydicom.uid.ExplicitVRBigEndian
    return ds


def _read_header(path: str):
    """Header of a DICOM file (no pixels), or None when the file is not DICOM (see :func:`read_dataset`)."""
    return read_dataset(path, stop_before_pixels=True)


def _sorted_items(items: list) -> list:
    """(path, header) pairs sorted along the slice normal; InstanceNumber then path where positions are missing."""
    normal = None
    for _, ds in items:
        try:
            iop = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=float)
            normal = np.cross(iop[:3], iop[3:])
            break
        except (AttributeError, TypeError, ValueError):
            continue

    def key(item):
        path, ds = item
        pos = None
        if normal is not None:
            try:
                pos = float(np.asarray([float(v) for v in ds.ImagePositionPatient]) @ normal)
            except (AttributeError, TypeError, ValueError):
                pos = None
        instance = _as_int(ds.get("InstanceNumber", None))
        return (pos is None, pos if pos is not None else 0.0, instance if instance is not None else 0, path)

    return sorted(items, key=key)


def _text(ds, keyword: str) -> str:
    """A tag's value as stripped text; blank when absent or empty."""
    value = ds.get(keyword, None)
    return "" if value is None else str(value).strip()


def _rounded(ds, keyword: str, digits: int) -> tuple | str:
    """A multi-valued decimal tag rounded to ``digits`` (-0.0 as 0.0), or its text when it is not numeric."""
    try:
        return tuple(round(float(v), digits) + 0.0 for v in ds.get(keyword, None))
    except (TypeError, ValueError):
        return _text(ds, keyword)


def _series_key(ds) -> str:
    """The key that groups files into series: the SeriesInstanceUID, or for a file without one (blank or absent)
    ``no-uid-<8 digits>``, a digest of what one series' files share: :data:`SERIES_KEY_TAGS`, the orientation
    (rounded to 1e-3, so float noise does not split a series), the pixel spacing (rounded to 1e-4 mm) and whether
    ImageType says LOCALIZER. AcquisitionNumber is left out on purpose (see the module docstring)."""
    uid = _text(ds, "SeriesInstanceUID")
    if uid:
        return uid
    shared = [_text(ds, keyword) for keyword in SERIES_KEY_TAGS]
    shared += [
        _rounded(ds, "ImageOrientationPatient", 3),
        _rounded(ds, "PixelSpacing", 4),
        "LOCALIZER" in (v.upper() for v in _image_type(ds)),
    ]
    digest = hashlib.sha1(repr(shared).encode()).hexdigest()
    return f"no-uid-{int(digest, 16) % 10**8:08d}"


def _group_key(ds, path: str) -> tuple[str, str]:
    """``(series key, folder)``: :func:`_series_key`, and for a file without a SeriesInstanceUID its folder, so that
    such files group within one folder only (identical headers in two folders are more likely two copies, or unrelated
    files, than one series); ``""`` for a file with a UID, whose series may span folders."""
    return _series_key(ds), "" if _text(ds, "SeriesInstanceUID") else os.path.dirname(os.path.abspath(path))


def _missing_uids(items: list) -> list[str]:
    """``["SeriesInstanceUID blank", "StudyInstanceUID absent in 3 of 20 files", ...]`` for :data:`UID_TAGS`."""
    missing = []
    for keyword in UID_TAGS:
        absent = sum(keyword not in ds for _, ds in items)
        blank = sum(keyword in ds and not _text(ds, keyword) for _, ds in items)
        if absent or blank:
            state = "absent" if not blank else "blank" if not absent else "blank or absent"
            count = "" if absent + blank == len(items) else f" in {absent + blank} of {len(items)} files"
            missing.append(f"{keyword} {state}{count}")
    return missing


def _summary(key: str, items: list) -> dict:
    """A found series: see :func:`find_series` for the keys."""
    items = _sorted_items(items)
    files = [p for p, _ in items]
    first = items[0][1]
    folder = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in files])
    missing = _missing_uids(items)
    sop_uids = [_text(ds, "SOPInstanceUID") for _, ds in items]
    sop_uids = [u for u in sop_uids if u]
    if len(set(sop_uids)) < len(sop_uids):  # anonymisers that write one constant; a SEG could not tell them apart
        distinct = len(set(sop_uids))
        missing.append(f"SOPInstanceUID not unique ({distinct} value{'s' * (distinct > 1)} in {len(sop_uids)} files)")
    # which tag says what the files are: SOPClassUID, else (blank or absent) the file meta's copy, else Modality
    sop_class, sop_class_from = _text(first, "SOPClassUID"), "SOPClassUID"
    if not sop_class:
        sop_class = _text(getattr(first, "file_meta", Dataset()), "MediaStorageSOPClassUID")
        sop_class_from = "MediaStorageSOPClassUID" if sop_class else "Modality"
    return {
        "uid": _text(first, "SeriesInstanceUID"),
        "key": key,
        "missing_uids": missing,
        "files": files,
        "folder": folder,
        "n_files": len(files),
        "modality": str(first.get("Modality", "") or ""),
        "patient_id": str(first.get("PatientID", "") or ""),
        "study_uid": str(first.get("StudyInstanceUID", "") or ""),
        "series_number": _as_int(first.get("SeriesNumber", None)),
        "series_description": str(first.get("SeriesDescription", "") or ""),
        "image_type": _image_type(first),
        "sop_class_uid": str(first.get("SOPClassUID", "") or ""),
        "sop_class": sop_class,
        "sop_class_from": sop_class_from,
    }


def find_series(root) -> list[dict]:
    """All DICOM series under ``root`` (recursive), grouped by SeriesInstanceUID, reading headers only.

    Image files without a SeriesInstanceUID (blank or absent, as some anonymisers leave them) are grouped by what a
    series' files share (:func:`_series_key`); such a series has ``uid`` ``""``. Bare data sets (no preamble, no file
    meta) are read too (:func:`read_dataset`); other files without the DICOM preamble, and DICOM files with neither a
    SeriesInstanceUID nor an image (Rows/Columns; e.g. DICOMDIR), are skipped. Each dict has ``uid``, ``key`` (the
    grouping key: the UID or ``no-uid-<digits>``), ``missing_uids`` (e.g. ``["SeriesInstanceUID blank",
    "StudyInstanceUID blank"]``, see :data:`UID_TAGS`; SOP Instance UIDs that repeat are listed as ``"SOPInstanceUID
    not unique (1 value in 20 files)"``), ``files`` (sorted along the slice normal), ``folder``, ``n_files``,
    ``modality``, ``patient_id``, ``study_uid``, ``series_number`` (int or None), ``series_description``,
    ``image_type`` (tuple), ``sop_class_uid`` (the SOPClassUID, ``""`` when blank or absent), ``sop_class`` (what
    :func:`skip_reason` judges: the SOPClassUID, or where it is blank or absent the file meta's
    MediaStorageSOPClassUID, else ``""``) and ``sop_class_from`` (the tag it came from: ``"SOPClassUID"``,
    ``"MediaStorageSOPClassUID"``, or ``"Modality"`` when both are blank or absent). Series are ordered by patient,
    study, series number and key.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: no such folder")
    groups: dict[tuple[str, str], list] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.startswith(".") and name.endswith(".tmp"):
                continue  # an unfinished write of ours
            path = os.path.join(dirpath, name)
            ds = _read_header(path)
            if ds is None:
                continue
            if _text(ds, "SeriesInstanceUID") or (_as_int(ds.get("Rows", None)) and _as_int(ds.get("Columns", None))):
                groups.setdefault(_group_key(ds, path), []).append((path, ds))
    series = [_summary(key, items) for (key, _), items in groups.items()]

    def order(s):
        number = s["series_number"]
        return (s["patient_id"], s["study_uid"], number is None, number or 0, s["key"])

    return sorted(series, key=order)


def _describe(s: dict) -> str:
    """A series in a listing: ``UID 1.2.3 (#3 'arterial', 20 files)``, the reason when it is no CT image series."""
    reason = skip_reason(s)
    label = _label(s) + (f", {reason}" if reason else "")
    return f"UID {s['uid']} ({label})" if s["uid"] else f"no SeriesInstanceUID ({label})"


def _resolve_files(files_or_folder) -> tuple[list[str], str]:
    """The files of exactly one series, and the folder that names it."""
    if isinstance(files_or_folder, (str, os.PathLike)):
        folder = os.fspath(files_or_folder)
        if os.path.isfile(folder):
            return [folder], os.path.dirname(os.path.abspath(folder))
        series = find_series(folder)
        if not series:
            raise ValueError(f"{folder}: no DICOM files found")
        if len(series) > 1:
            listing = "; ".join(_describe(s) for s in series)
            raise ValueError(
                f"{folder}: folder holds {len(series)} DICOM series, expected one: {listing}; give each "
                "series a folder of its own (python -m scripts dicom convert converts them all)"
            )
        return series[0]["files"], folder
    files = [os.fspath(f) for f in files_or_folder]
    if not files:
        raise ValueError("no DICOM files given")
    for f in files:
        if not os.path.isfile(f):
            raise FileNotFoundError(f"{f}: no such file")
    return files, os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])


def _floats(ds, keyword: str, count: int, name: str, path: str) -> np.ndarray:
    value = ds.get(keyword, None)
    try:
        out = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        out = np.zeros(0)
    if out.shape != (count,) or not np.all(np.isfinite(out)):
        raise ValueError(f"{name}: {path}: missing or malformed {keyword} ({value!r})")
    return out


def _gap_problems(proj: np.ndarray, files: list, instances: list, step: float, tol: float) -> list[str]:
    """Human-readable descriptions of every slice gap that differs from ``step``."""
    problems = []
    for a in range(len(proj) - 1):
        gap = proj[a + 1] - proj[a]
        if abs(gap - step) <= tol:
            continue
        where = (
            f"instance {instances[a]} ({os.path.basename(files[a])}, position {proj[a]:.3f} mm) and "
            f"instance {instances[a + 1]} ({os.path.basename(files[a + 1])}, position {proj[a + 1]:.3f} mm)"
        )
        m = int(round(gap / step))
        if m >= 2 and abs(gap - m * step) <= tol * m:
            expected = ", ".join(f"{proj[a] + q * step:.3f}" for q in range(1, m))
            text = (
                f"missing {m - 1} slice(s): gap of {gap:.3f} mm between {where} is {gap / step:.1f}x the "
                f"slice spacing {step:.3f} mm; expected slice(s) at position {expected} mm along the normal"
            )
            i0, i1 = instances[a], instances[a + 1]
            if isinstance(i0, int) and isinstance(i1, int) and abs(i1 - i0) == m:
                lo = min(i0, i1)
                text += " (instance " + ", ".join(str(lo + q) for q in range(1, m)) + ")"
            problems.append(text)
        else:
            problems.append(f"irregular slice spacing: gap of {gap:.3f} mm between {where}, expected {step:.3f} mm")
    return problems


def _no_uid_hint(items: list) -> str:
    """Why files without a SeriesInstanceUID may hold two series that cannot be told apart (for duplicate slices)."""
    acquisitions = {_text(ds, "AcquisitionNumber") for _, ds in items} - {""}
    numbers = ", ".join(sorted(acquisitions, key=lambda v: (_as_int(v) is None, _as_int(v) or 0, v)))
    return (
        f" (the files have no SeriesInstanceUID, so series that share {GROUPED_BY} cannot be told apart"
        + (f"; AcquisitionNumber {numbers}: separate acquisitions?" if len(acquisitions) > 1 else "")
        + ")"
    )


def _headers(files: list[str]) -> list:
    """``(path, header)`` of every file, in the order given; ValueError for a file that is not DICOM."""
    items = []
    for f in files:
        ds = _read_header(f)
        if ds is None:
            raise ValueError(f"{f}: not a DICOM file")
        items.append((f, ds))
    return items


def _one_series(items: list, folder: str) -> tuple[dict, str]:
    """The :func:`find_series` summary of ``items`` and the series' name in messages; ValueError listing the series
    when the files belong to more than one. Logs a warning naming the UIDs the series lacks (:data:`UID_TAGS`)."""
    groups: dict[tuple[str, str], list] = {}
    for path, ds in items:
        groups.setdefault(_group_key(ds, path), []).append((path, ds))
    if len(groups) > 1:
        listing = "; ".join(_describe(_summary(key, group)) for (key, _), group in sorted(groups.items()))
        raise ValueError(f"{folder}: files belong to {len(groups)} series, expected one: {listing}")
    (key, _), group = next(iter(groups.items()))
    summary = _summary(key, group)
    name = series_name({**summary, "folder": folder})
    if summary["missing_uids"]:
        logger.warning(
            "%s: %s%s",
            name,
            ", ".join(summary["missing_uids"]),
            "" if summary["uid"] else f"; its files were grouped into one series by {GROUPED_BY}",
        )
    return summary, name


def _slice_header(ds, path: str, name: str) -> tuple:
    """One slice's geometry from its header: ``(orientation, position, pixel spacing, (rows, columns), instance)``.

    Raises ValueError naming the series and file for a missing or malformed geometry tag, a multi-frame or colour
    image, or a transfer syntax no installed plugin decodes (refused here, before any voxel is read and before
    inference)."""
    iop = _floats(ds, "ImageOrientationPatient", 6, name, path)
    ipp = _floats(ds, "ImagePositionPatient", 3, name, path)
    spacing = _floats(ds, "PixelSpacing", 2, name, path)
    rows, columns = _as_int(ds.get("Rows", None)), _as_int(ds.get("Columns", None))
    if not rows or not columns:
        raise ValueError(f"{name}: {path}: missing Rows/Columns")
    samples = _as_int(ds.get("SamplesPerPixel", 1)) or 1
    frames = _as_int(ds.get("NumberOfFrames", 1)) or 1
    if samples != 1 or frames != 1:
        raise ValueError(
            f"{name}: {path}: only single-frame greyscale slices are supported "
            f"(SamplesPerPixel {samples}, NumberOfFrames {frames})"
        )
    instance = _as_int(ds.get("InstanceNumber", None))
    problem = transfer_syntax_problem(ds)
    if problem:
        raise ValueError(f"{name}: {path}: " + problem)
    return iop, ipp, spacing, (rows, columns), instance if instance is not None else "?"


def _slice_grid(items: list, name: str) -> dict:
    """The per-slice geometry of sorted ``items`` (:func:`_slice_header` of each): lists ``iops``, ``ipps``,
    ``spacings``, ``sizes`` and ``instances``, in slice order."""
    iops, ipps, spacings, sizes, instances = [], [], [], [], []
    for path, ds in items:
        iop, ipp, spacing, size, instance = _slice_header(ds, path, name)
        iops.append(iop)
        ipps.append(ipp)
        spacings.append(spacing)
        sizes.append(size)
        instances.append(instance)
    return {"iops": iops, "ipps": ipps, "spacings": spacings, "sizes": sizes, "instances": instances}


def _common_orientation(grid: dict, files: list[str], name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check that every slice shares the first one's orientation, Rows/Columns and PixelSpacing, that the orientation
    is two orthogonal unit vectors and the pixel spacing positive; return the unit ``(row cosine, column cosine,
    slice normal)``. Raises ValueError naming the series and the first two files that disagree."""
    iops, sizes, spacings = grid["iops"], grid["sizes"], grid["spacings"]
    for a in range(1, len(files)):
        if not np.allclose(iops[a], iops[0], atol=ORIENTATION_TOL):
            raise ValueError(
                f"{name}: inconsistent ImageOrientationPatient: {files[0]} has {iops[0].tolist()}, "
                f"{files[a]} has {iops[a].tolist()}"
            )
        if sizes[a] != sizes[0]:
            raise ValueError(f"{name}: inconsistent Rows/Columns: {files[0]} is {sizes[0]}, {files[a]} is {sizes[a]}")
        if not np.allclose(spacings[a], spacings[0], rtol=1e-4, atol=1e-6):
            raise ValueError(
                f"{name}: inconsistent PixelSpacing: {files[0]} has {spacings[0].tolist()}, "
                f"{files[a]} has {spacings[a].tolist()}"
            )
    row_cos, col_cos = iops[0][:3], iops[0][3:]
    if (
        abs(np.linalg.norm(row_cos) - 1) > 1e-3
        or abs(np.linalg.norm(col_cos) - 1) > 1e-3
        or abs(float(row_cos @ col_cos)) > 1e-3
    ):
        raise ValueError(f"{name}: ImageOrientationPatient {iops[0].tolist()} is not two orthogonal unit vectors")
    row_cos = row_cos / np.linalg.norm(row_cos)
    col_cos = col_cos / np.linalg.norm(col_cos)
    if np.any(spacings[0] <= 0):
        raise ValueError(f"{name}: PixelSpacing {spacings[0].tolist()} is not positive")
    return row_cos, col_cos, np.cross(row_cos, col_cos)


def _spacing_problems(items: list, proj: np.ndarray, instances: list, step: float, tol: float) -> list[str]:
    """The slice gaps that differ from ``step`` (:func:`_gap_problems`), or one line for them all when the series
    was reconstructed at more than one SliceThickness (then the gaps are no lost slices)."""
    files = [p for p, _ in items]
    gap_problems = _gap_problems(proj, files, instances, step, tol)
    thicknesses = [v or "blank" for v in dict.fromkeys(_text(ds, "SliceThickness") for _, ds in items)]
    if gap_problems and len(thicknesses) > 1:
        gaps = sorted({round(float(g), 2) for g in np.diff(proj)})
        return [
            f"irregular slice spacing: gaps of {', '.join(f'{g:g}' for g in gaps[:6])} mm, and "
            f"SliceThickness varies ({', '.join(thicknesses[:6])} mm)"
        ]
    return gap_problems


def _slice_step(
    items: list, positions: np.ndarray, proj: np.ndarray, normal: np.ndarray, instances: list, uid: str, name: str
) -> tuple[np.ndarray, list[str]]:
    """For a series of two or more slices: the mean step from slice to slice (first to last, evenly) and the
    problems of its spacing (gaps that differ from the median one, slices that drift off the normal). Raises
    ValueError naming the files for duplicate slice positions."""
    files = [p for p, _ in items]
    gaps = np.diff(proj)
    step = float(np.median(gaps))
    tol = 0.01 + 0.02 * abs(step)
    dup = np.nonzero(gaps <= tol)[0]
    if dup.size or step <= 0:
        a = int(dup[0]) if dup.size else 0
        raise ValueError(
            f"{name}: duplicate slice position {proj[a]:.3f} mm along the normal: {files[a]} "
            f"(instance {instances[a]}) and {files[a + 1]} (instance {instances[a + 1]})"
            + (f"; {dup.size} duplicate(s) in all" if dup.size > 1 else "")
            + ("" if uid else _no_uid_hint(items))
        )
    problems = _spacing_problems(items, proj, instances, step, tol)
    off_normal = np.linalg.norm(positions - positions[0] - np.outer(proj - proj[0], normal), axis=1)
    if np.max(off_normal) > tol:
        worst = int(np.argmax(off_normal))
        problems.append(
            f"slice positions drift off the slice normal by up to {off_normal[worst]:.3f} mm "
            f"(gantry tilt or sheared stack; {files[worst]})"
        )
    return (positions[-1] - positions[0]) / (len(items) - 1), problems


def _single_slice_thickness(ds) -> float:
    """The slice step of a one-slice series: its SpacingBetweenSlices, else SliceThickness, else 1 mm."""
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            value = float(ds.get(keyword, None))
        except (TypeError, ValueError):
            continue
        if value > 0:
            return value
    return 1.0


def _report_problems(problems: list[str], name: str, allow_irregular: bool) -> None:
    """Raise ValueError listing the first few spacing problems, or with ``allow_irregular`` warn (UserWarning, at
    :func:`check_series`'s caller) that the series is converted with the mean spacing."""
    if not problems:
        return
    more = len(problems) - MAX_PROBLEMS_SHOWN
    message = f"{name}: " + "; ".join(problems[:MAX_PROBLEMS_SHOWN]) + (f"; {more} more" if more > 0 else "")
    if not allow_irregular:
        raise ValueError(f"{message} ({IRREGULAR_HINT})")
    warnings.warn(message + "; converting anyway with the mean spacing", UserWarning, stacklevel=3)


def _ras_affine(row_cos, col_cos, pixel_spacing, slice_step, origin) -> np.ndarray:
    """The RAS voxel-to-world matrix of an (i, j, k) grid: i along a row, j down a column, k by ``slice_step``."""
    row_spacing, col_spacing = pixel_spacing  # DICOM: (between rows, between columns)
    lps = np.eye(4)
    lps[:3, 0] = row_cos * col_spacing
    lps[:3, 1] = col_cos * row_spacing
    lps[:3, 2] = slice_step
    lps[:3, 3] = origin
    return LPS_RAS_FLIP @ lps


def check_series(files_or_folder, *, allow_irregular=False) -> dict:
    """Check the geometry of one series from its headers and return its grid.

    Accepts a folder (searched recursively; it must hold exactly one series) or a list of files. Checks one
    series (one SeriesInstanceUID, or for files without one, one :func:`_series_key`), the same orientation,
    Rows/Columns and PixelSpacing in every file, no duplicate slice positions, and equal spacing of the positions
    projected on the slice normal (a missing slice shows as a gap that is a multiple of the spacing and is reported
    with its position and instance). Raises ValueError naming the series (folder and UID) and the problem. With
    ``allow_irregular=True`` irregular spacing (and slices that drift off the normal, as with gantry tilt) only warns;
    the affine then spans first to last slice evenly. A series missing any of :data:`UID_TAGS` passes with a
    logged warning naming the series and the missing tags.

    Returns a dict with ``uid``, ``name``, ``folder``, ``files`` (sorted along the normal), ``shape`` (i, j, k),
    ``spacing`` (i, j, k in mm), ``affine`` (RAS 4x4), ``positions`` (mm along the normal), ``irregular``,
    ``problems`` and the descriptive tags of :func:`find_series` (``missing_uids`` among them).
    """
    files, folder = _resolve_files(files_or_folder)
    items = _headers(files)
    summary, name = _one_series(items, folder)
    items = _sorted_items(items)
    files = [p for p, _ in items]
    grid = _slice_grid(items, name)
    row_cos, col_cos, normal = _common_orientation(grid, files, name)
    positions = np.asarray(grid["ipps"])
    proj = positions @ normal
    n = len(items)
    if n >= 2:
        slice_step, problems = _slice_step(items, positions, proj, normal, grid["instances"], summary["uid"], name)
    else:
        slice_step, problems = normal * _single_slice_thickness(items[0][1]), []
    _report_problems(problems, name, allow_irregular)
    row_spacing, col_spacing = grid["spacings"][0]  # DICOM: (between rows, between columns)
    rows, columns = grid["sizes"][0]
    info = dict(summary)
    info.update(
        {
            "name": name,
            "folder": folder,
            "files": files,
            "n_files": n,
            "shape": (columns, rows, n),
            "spacing": (float(col_spacing), float(row_spacing), float(np.linalg.norm(slice_step))),
            "affine": _ras_affine(row_cos, col_cos, grid["spacings"][0], slice_step, positions[0]),
            "positions": proj,
            "instances": grid["instances"],
            "irregular": bool(problems),
            "problems": problems,
        }
    )
    return info


# ----------------------------------------------------------------------------------------------------------------------
# reading


def transfer_syntax_problem(ds_or_uid) -> str | None:
    """None when an installed pydicom plugin decodes pixel data in this transfer syntax, else one line naming the
    transfer syntax (name and UID) and the package(s) that would decode it (pydicom's decoder lists what each of its
    plugins needs).

    ``ds_or_uid`` is a data set (its header is enough: the file meta's TransferSyntaxUID, and BitsStored for JPEG
    Extended, where pydicom's gdcm and pillow plugins decode 8-bit samples only: :data:`EIGHT_BIT_ONLY_PLUGINS`) or a
    transfer syntax UID. A data set without a TransferSyntaxUID gives None: nothing names a codec to check, and
    decoding reports it.
    """
    bits_stored = None
    if isinstance(ds_or_uid, Dataset):
        uid = getattr(ds_or_uid, "file_meta", Dataset()).get("TransferSyntaxUID", None)
        if not uid:
            return None
        bits_stored = _as_int(ds_or_uid.get("BitsStored", None))
    else:
        uid = ds_or_uid
    uid = UID(str(uid).strip())
    known = uid.name if uid.name != uid else TRANSFER_SYNTAX_NAMES.get(uid)
    label = f"transfer syntax {known} ({uid})" if known else f"unknown transfer syntax {uid}"
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return (
            f"{label} cannot be decoded here: pydicom {pydicom.__version__} has no decoder for it with any plugin; "
            "export the series uncompressed or in a transfer syntax listed in docs/dicom.md"
        )
    if decoder.is_native:
        return None
    plugins = set(decoder.available_plugins)
    limited = set(EIGHT_BIT_ONLY_PLUGINS.get(uid, ())) & plugins
    if bits_stored is not None and bits_stored > 8:
        plugins -= limited
    if plugins:
        return None
    # pydicom words each as "<plugin> - requires <package> and <package>"
    would = "; ".join(d.replace(" - requires ", " plugin with ") for d in decoder.missing_dependencies)
    if bits_stored is not None and bits_stored > 8 and limited:
        label += f" with {bits_stored} bits stored"
        would += f"; the installed {' and '.join(sorted(limited))} plugins decode 8-bit samples only"
    return (
        f"{label} cannot be decoded here: no installed pydicom plugin reads it (would read it: {would or 'none known'})"
    )


def read_pixels(info: dict) -> np.ndarray:
    """Decode and rescale the slices of a checked series (:func:`check_series`) into an (i, j, k) HU volume (int16
    where exact): the voxels of :func:`read_series` and of ``scripts.lib.dicom.write.convert``."""
    columns, rows, n = info["shape"]
    name = info["name"]
    raw = []
    rescale = []
    for path in info["files"]:
        ds = read_dataset(path)
        ts = ds.file_meta.get("TransferSyntaxUID", UID(""))
        try:
            arr = ds.pixel_array
        except Exception as exc:  # pydicom raises several types for missing plugins and broken data
            problem = transfer_syntax_problem(ds)
            if problem:  # no plugin for this syntax (check_series refuses it first; a file may change since)
                raise ValueError(f"{name}: {path}: {problem}") from exc
            raise ValueError(f"{name}: {path}: cannot decode pixel data ({UID(ts).name}): {one_line(exc)}") from exc
        if arr.shape != (rows, columns):
            raise ValueError(f"{name}: {path}: pixel data shape {arr.shape} != Rows x Columns {(rows, columns)}")
        try:
            slope = float(ds.get("RescaleSlope", 1) if ds.get("RescaleSlope", "") != "" else 1)
            intercept = float(ds.get("RescaleIntercept", 0) if ds.get("RescaleIntercept", "") != "" else 0)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: {path}: malformed RescaleSlope/RescaleIntercept") from exc
        raw.append(arr)
        rescale.append((slope, intercept))
    exact = all(s == 1.0 and float(b).is_integer() for s, b in rescale)
    if exact:
        low = min(int(a.min()) + int(b) for a, (_, b) in zip(raw, rescale, strict=True))
        high = max(int(a.max()) + int(b) for a, (_, b) in zip(raw, rescale, strict=True))
        exact = low >= -32768 and high <= 32767
    volume = np.empty((columns, rows, n), dtype=np.int16 if exact else np.float32)
    for k, (arr, (slope, intercept)) in enumerate(zip(raw, rescale, strict=True)):
        if exact:
            volume[:, :, k] = (arr.astype(np.int32) + int(intercept)).T
        else:
            volume[:, :, k] = (arr.astype(np.float64) * slope + intercept).T
    return volume


def read_series(folder, *, allow_irregular=False):
    """Read one DICOM series (folder or list of files) into ``(volume_hu, ras_affine, info)``.

    Runs :func:`check_series` first, then decodes every slice (uncompressed, JPEG 2000 lossless, JPEG-LS, ... as the
    installed pydicom plugins allow) and applies RescaleSlope/RescaleIntercept. The volume is indexed (i, j, k),
    int16 when the rescale is exact in int16, float32 otherwise.
    """
    info = check_series(folder, allow_irregular=allow_irregular)
    volume = read_pixels(info)
    info["dtype"] = str(volume.dtype)
    return volume, info["affine"].copy(), info


# ----------------------------------------------------------------------------------------------------------------------
# which series are CT, and the names of their outputs


def skip_reason(s: dict) -> str | None:
    """Why a found series is not converted, or None when it is a CT image series.

    A CT image series is CT Image Storage by its SOPClassUID; where that is blank or absent (as anonymisers leave it)
    by the file meta's MediaStorageSOPClassUID; where both are, by Modality CT (``sop_class`` and ``sop_class_from``
    of :func:`find_series`). When a tag other than the SOPClassUID decided, :func:`ct_series` logs which
    (:func:`ct_decided_by`). Any other SOP class (e.g. Enhanced CT, Secondary Capture, RT Dose, SR), a localizer and
    another modality are reasons to skip.
    """
    if "LOCALIZER" in (v.upper() for v in s["image_type"]):
        return "localizer/scout (ImageType " + "\\".join(s["image_type"]) + ")"
    sop_class, source = s.get("sop_class", s["sop_class_uid"]), s.get("sop_class_from", "SOPClassUID")
    if source != "Modality" and sop_class != CTImageStorage:
        sop = UID(sop_class)
        label = sop.name if sop.name != sop_class else sop_class or "none"
        where = "" if source == "SOPClassUID" else f" (by {source}; SOPClassUID blank or absent)"
        return f"SOP class {label} is not CT Image Storage{where}"
    if s["modality"].upper() != "CT":
        if source == "Modality":
            return (
                f"SOP class none is not CT Image Storage and modality {s['modality'] or '(blank)'} is not CT "
                "(SOPClassUID and MediaStorageSOPClassUID blank or absent)"
            )
        return f"modality {s['modality'] or '(blank)'} is not CT"
    return None


def ct_decided_by(s: dict) -> str | None:
    """For a CT image series (:func:`skip_reason` None) that its SOPClassUID does not call CT: which tag did, as a
    sentence for the log; None when the SOPClassUID did."""
    source = s.get("sop_class_from", "SOPClassUID")
    if source == "SOPClassUID":
        return None
    if source == "MediaStorageSOPClassUID":
        return "SOPClassUID blank or absent; CT Image Storage by the file meta's MediaStorageSOPClassUID"
    return "SOPClassUID and MediaStorageSOPClassUID blank or absent; CT by Modality CT"


def _sanitise(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "_", text).strip("_")


def output_names(series: list[dict]) -> list[str]:
    """``<PatientID>_<SeriesNumber or last 8 digits of the UID>.nii.gz``, made unique."""

    def uid_tail(s):
        return re.sub(r"\D", "", s["uid"] or s["key"])[-8:] or "series"

    bases = []
    for s in series:
        patient = _sanitise(s["patient_id"]) or "anonymous"
        tag = str(s["series_number"]) if s["series_number"] is not None else uid_tail(s)
        bases.append(f"{patient}_{_sanitise(tag) or uid_tail(s)}")
    names, used = [], set()
    for s, base in zip(series, bases, strict=True):
        if bases.count(base) > 1 and not base.endswith(uid_tail(s)):
            base = f"{base}_{uid_tail(s)}"
        candidate, counter = base, 2
        while candidate in used:
            candidate = f"{base}_{counter}"
            counter += 1
        used.add(candidate)
        names.append(candidate + ".nii.gz")
    return names


# ----------------------------------------------------------------------------------------------------------------------
# the series to segment: one implementation for inference, the convert command and the Deploy app


class NoDicomSeries(ValueError):
    """A folder holds no DICOM series at all (:func:`ct_series`): callers that accept other inputs there catch it."""


def ct_series(root) -> tuple[list[dict], list[tuple[dict, str]]]:
    """The CT image series under ``root`` (:func:`find_series`, recursive), and every other series with the reason
    it is not segmented (:func:`skip_reason`: localizers, other modalities and SOP classes such as dose reports,
    structured reports and secondary captures). Raises :class:`NoDicomSeries` when ``root`` holds no DICOM series."""
    found = find_series(root)
    if not found:
        raise NoDicomSeries(f"{os.fspath(root)}: no DICOM series found")
    cts, skipped = [], []
    for s in found:
        reason = skip_reason(s)
        if reason:
            skipped.append((s, reason))
        else:
            cts.append(s)
            if ct_decided_by(s):
                logger.info("%s: %s", series_name(s), ct_decided_by(s))
    return cts, skipped


def case_names(series: list[dict], root) -> list[str]:
    """A file-name-safe case name for each series (:func:`find_series` dicts) found under ``root``: its
    ``<SeriesNumber>_<SeriesDescription>`` (``3_Abdomen_arterial``), or its folder's name where both are blank.

    Names never collide: series that would share one are prefixed with their folder's path below ``root``
    (``patient1_study_3_Abdomen``), and a counter settles what is left. Only letters, digits and ``-`` survive, joined
    by ``_``: no dot, so MONAI's writer strips no part of the name as an extension.
    """
    root = os.path.abspath(os.fspath(root))

    def own(s):
        number = "" if s["series_number"] is None else str(s["series_number"])
        return _sanitise(f"{number}_{s['series_description']}") or _sanitise(os.path.basename(s["folder"])) or "series"

    def where(s):
        relative = os.path.relpath(os.path.abspath(s["folder"]), root)
        return _sanitise(relative if relative != "." else os.path.basename(root)) or "series"

    names = [own(s) for s in series]
    names = [f"{where(s)}_{n}" if names.count(n) > 1 else n for s, n in zip(series, names, strict=True)]
    unique, used = [], set()
    for name in names:
        candidate, counter = name, 2
        while candidate in used:
            candidate, counter = f"{name}_{counter}", counter + 1
        used.add(candidate)
        unique.append(candidate)
    return unique


def volume_metadata(series: dict) -> dict:
    """The image metadata MONAI's readers give (RAS affine, spacing, no channel) for a checked series
    (:func:`check_series`), as the bundle's transforms read it: the inference reader and the Deploy app both use it."""
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
