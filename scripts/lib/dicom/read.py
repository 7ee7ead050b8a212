"""Find, check and read DICOM CT series: what inference (:class:`scripts.components.inputs.DicomSeriesReader`),
``python -m scripts dicom convert`` and the MONAI Deploy app share (:func:`ct_series` picks the CT series of a study
for all three); writing is :mod:`scripts.lib.dicom.write`, which inference never imports. docs/dicom.md says why
MONAI's DICOM readers are not used and what is read or refused; :mod:`scripts.lib.dicom`, the index conventions.
"""

from __future__ import annotations

import contextlib
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
    "NoDicomSeries",
    "ct_series",
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
#: Tags that the files of one series share, which group files without a SeriesInstanceUID (:func:`_group_key`).
SERIES_KEY_TAGS = (
    *("PatientID", "StudyInstanceUID", "FrameOfReferenceUID", "Modality", "SOPClassUID"),
    *("SeriesNumber", "SeriesDescription", "Rows", "Columns"),
)
GROUPED_BY = "folder, frame of reference, orientation, pixel spacing, rows/columns, series number and description"
MAX_PROBLEMS_SHOWN = 3  # an error line lists the first few irregular gaps; check_series returns them all
#: pydicom plugins that decode at most 8-bit samples in a transfer syntax (a 12-bit CT needs pylibjpeg-libjpeg).
EIGHT_BIT_ONLY_PLUGINS = {JPEGExtended12Bit: ("gdcm", "pillow")}
#: Transfer syntaxes newer than pydicom 3.0's UID dictionary (JPEG XL: DICOM Supplement 232), named in messages.
TRANSFER_SYNTAX_NAMES = {
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
}
#: What :func:`ct_series` logs for a CT series that a tag other than its SOPClassUID calls CT, by ``sop_class_from``.
CT_DECIDED_BY = dict(
    MediaStorageSOPClassUID="SOPClassUID blank or absent; CT Image Storage by the file meta's MediaStorageSOPClassUID",
    Modality="SOPClassUID and MediaStorageSOPClassUID blank or absent; CT by Modality CT",
)


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
    return f"series {s['folder']} " + (f"(UID {s['uid']})" if s["uid"] else f"(no SeriesInstanceUID: {_label(s)})")


def _as_int(value) -> int | None:
    """An IS value as int, or None when blank, missing or not a number."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(ds, keyword: str) -> str:
    """A tag's value as stripped text; blank when absent or empty."""
    return "" if (value := ds.get(keyword)) is None else str(value).strip()


def _vector(ds, keyword: str) -> np.ndarray | None:
    """A multi-valued decimal tag as floats, or None when it is absent or not numeric."""
    try:
        return np.asarray([float(v) for v in ds.get(keyword)], dtype=float)
    except (TypeError, ValueError):
        return None


def _image_type(ds) -> tuple:
    """ImageType's values as strings; empty when blank or absent."""
    value = ds.get("ImageType") or ()
    return tuple(v for v in value.split("\\") if v) if isinstance(value, str) else tuple(str(v) for v in value)


def read_dataset(path: str, *, stop_before_pixels: bool = False):
    """A DICOM file's data set, or None when the file is not DICOM; ValueError when a file with the 'DICM' preamble
    cannot be read. A file without it is read as a bare data set (pydicom's ``force=True``) only when it looks like an
    image data set (docs/dicom.md, "Anonymised headers"), the guessed encoding made its TransferSyntaxUID so that its
    pixels decode; anything else (text, PNG, NIfTI, an empty file) is None, never a misread data set."""
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
            group = getattr(next(iter(ds.keys()), None), "group", None)  # of the first element
            image = _as_int(ds.get("Rows")) and _as_int(ds.get("Columns"))
            plausible = group == 0x0008 and bool(image or _text(ds, "SOPClassUID"))
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


def _sorted_items(items: list) -> list:
    """(path, header) pairs sorted along the slice normal; InstanceNumber then path where positions are missing."""
    normal = None
    for _, ds in items:
        iop = _vector(ds, "ImageOrientationPatient")
        with contextlib.suppress(TypeError, ValueError):  # absent or malformed: the next file's
            normal = np.cross(iop[:3], iop[3:])
            break

    def key(item):
        try:
            pos = float(_vector(item[1], "ImagePositionPatient") @ normal)
        except (TypeError, ValueError):
            pos = None
        instance = _as_int(item[1].get("InstanceNumber"))
        return (pos is None, 0.0 if pos is None else pos, 0 if instance is None else instance, item[0])

    return sorted(items, key=key)


def _group_key(ds, path: str) -> tuple[str, str]:
    """``(series key, folder)`` that groups files into series: ``(SeriesInstanceUID, "")``, as a series may span
    folders; for a file without one (blank or absent) ``("no-uid-<8 digits>", its folder)``, a digest of what one
    series' files share: :data:`SERIES_KEY_TAGS`, the orientation (rounded to 1e-3, so float noise does not split a
    series; -0.0 as 0.0), the pixel spacing (rounded to 1e-4 mm) and whether ImageType says LOCALIZER."""
    if _text(ds, "SeriesInstanceUID"):
        return _text(ds, "SeriesInstanceUID"), ""
    shared = [_text(ds, keyword) for keyword in SERIES_KEY_TAGS]
    for keyword, digits in (("ImageOrientationPatient", 3), ("PixelSpacing", 4)):  # the text where not numeric
        values = _vector(ds, keyword)
        shared.append(_text(ds, keyword) if values is None else tuple(round(float(v), digits) + 0.0 for v in values))
    shared.append("LOCALIZER" in (v.upper() for v in _image_type(ds)))
    digest = int(hashlib.sha1(repr(shared).encode()).hexdigest(), 16)
    return f"no-uid-{digest % 10**8:08d}", os.path.dirname(os.path.abspath(path))


def _missing_uids(items: list) -> list[str]:
    """``["SeriesInstanceUID blank", "StudyInstanceUID absent in 3 of 20 files", ...]`` for :data:`UID_TAGS`, and
    ``"SOPInstanceUID not unique (1 value in 20 files)"`` where they repeat (a SEG could not tell the slices apart)."""
    missing = []
    for keyword in UID_TAGS:
        absent = sum(keyword not in ds for _, ds in items)
        blank = sum(keyword in ds and not _text(ds, keyword) for _, ds in items)
        if absent or blank:
            state = "absent" if not blank else "blank" if not absent else "blank or absent"
            count = "" if absent + blank == len(items) else f" in {absent + blank} of {len(items)} files"
            missing.append(f"{keyword} {state}{count}")
    sop_uids = [u for u in (_text(ds, "SOPInstanceUID") for _, ds in items) if u]
    distinct = len(set(sop_uids))
    if distinct < len(sop_uids):
        missing.append(f"SOPInstanceUID not unique ({distinct} value{'s' * (distinct > 1)} in {len(sop_uids)} files)")
    return missing


def _summary(key: str, items: list) -> dict:
    """A found series: see :func:`find_series` for the keys."""
    items = _sorted_items(items)
    files = [p for p, _ in items]
    first = items[0][1]
    # which tag says what the files are: SOPClassUID, else (blank or absent) the file meta's copy, else Modality
    sop_class, sop_class_from = _text(first, "SOPClassUID"), "SOPClassUID"
    if not sop_class:
        sop_class = _text(getattr(first, "file_meta", Dataset()), "MediaStorageSOPClassUID")
        sop_class_from = "MediaStorageSOPClassUID" if sop_class else "Modality"
    return {
        "uid": _text(first, "SeriesInstanceUID"),
        "key": key,
        "missing_uids": _missing_uids(items),
        "files": files,
        "folder": os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in files]),
        "n_files": len(files),
        "modality": str(first.get("Modality", "") or ""),
        "patient_id": str(first.get("PatientID", "") or ""),
        "study_uid": str(first.get("StudyInstanceUID", "") or ""),
        "series_number": _as_int(first.get("SeriesNumber")),
        "series_description": str(first.get("SeriesDescription", "") or ""),
        "image_type": _image_type(first),
        "sop_class_uid": str(first.get("SOPClassUID", "") or ""),
        "sop_class": sop_class,
        "sop_class_from": sop_class_from,
    }


def find_series(root) -> list[dict]:
    """All DICOM series under ``root`` (recursive), grouped by :func:`_group_key`, reading headers only
    (:func:`read_dataset`); DICOM files with neither a SeriesInstanceUID nor an image (e.g. DICOMDIR) are skipped.
    Ordered by patient, study, series number and key; each dict has ``uid`` (``""`` when blank or absent), ``key``,
    ``missing_uids`` (:func:`_missing_uids`), ``files`` (sorted along the slice normal), ``folder``, ``n_files``,
    ``modality``, ``patient_id``, ``study_uid``, ``series_number`` (int or None), ``series_description``,
    ``image_type`` (tuple), ``sop_class_uid``, ``sop_class`` (what :func:`skip_reason` judges: the SOPClassUID, else
    the file meta's MediaStorageSOPClassUID, else ``""``) and ``sop_class_from`` (the tag it came from: ``"Modality"``
    when both are blank or absent)."""
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
            ds = read_dataset(path, stop_before_pixels=True)
            if ds is not None and (
                _text(ds, "SeriesInstanceUID") or _as_int(ds.get("Rows")) and _as_int(ds.get("Columns"))
            ):
                groups.setdefault(_group_key(ds, path), []).append((path, ds))
    return sorted(
        (_summary(key, items) for (key, _), items in groups.items()),
        key=lambda s: (s["patient_id"], s["study_uid"], s["series_number"] is None, s["series_number"] or 0, s["key"]),
    )


def _describe(s: dict) -> str:
    """A series in a listing: ``UID 1.2.3 (#3 'arterial', 20 files)``, the reason when it is no CT image series."""
    reason = skip_reason(s)
    label = _label(s) + (f", {reason}" if reason else "")
    return f"UID {s['uid']} ({label})" if s["uid"] else f"no SeriesInstanceUID ({label})"


def _series_items(files_or_folder) -> tuple[list, str]:
    """``(path, header)`` of each file of one series, and the folder that names it: ``files_or_folder`` is a file, a
    list of files or a folder that holds exactly one series. ValueError otherwise, and for a file that is not DICOM."""
    if isinstance(files_or_folder, (str, os.PathLike)) and not os.path.isfile(files_or_folder):
        folder = os.fspath(files_or_folder)
        series = find_series(folder)
        if not series:
            raise ValueError(f"{folder}: no DICOM files found")
        if len(series) > 1:
            listing = "; ".join(_describe(s) for s in series)
            raise ValueError(
                f"{folder}: folder holds {len(series)} DICOM series, expected one: {listing}; give each "
                "series a folder of its own (python -m scripts dicom convert converts them all)"
            )
        files = series[0]["files"]
    else:
        single = isinstance(files_or_folder, (str, os.PathLike))
        files = [os.fspath(f) for f in ([files_or_folder] if single else files_or_folder)]
        if not files:
            raise ValueError("no DICOM files given")
        for f in files:
            if not os.path.isfile(f):
                raise FileNotFoundError(f"{f}: no such file")
        folder = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])
    items = []
    for f in files:
        ds = read_dataset(f, stop_before_pixels=True)
        if ds is None:
            raise ValueError(f"{f}: not a DICOM file")
        items.append((f, ds))
    return items, folder


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
                text += " (instance " + ", ".join(str(min(i0, i1) + q) for q in range(1, m)) + ")"
            problems.append(text)
        else:
            problems.append(f"irregular slice spacing: gap of {gap:.3f} mm between {where}, expected {step:.3f} mm")
    return problems


def _slice_grid(items: list, name: str) -> dict:
    """Lists ``iops``, ``ipps``, ``spacings``, ``sizes`` ((rows, columns)) and ``instances`` ("?" where absent) of the
    sorted ``items``. ValueError naming the series and file for a missing or malformed geometry tag, a multi-frame or
    colour image, or a transfer syntax no installed plugin decodes (refused before inference reads a voxel)."""
    slices = []
    for path, ds in items:
        geometry = []
        for keyword, count in (("ImageOrientationPatient", 6), ("ImagePositionPatient", 3), ("PixelSpacing", 2)):
            values = _vector(ds, keyword)
            if values is None or values.shape != (count,) or not np.all(np.isfinite(values)):
                raise ValueError(f"{name}: {path}: missing or malformed {keyword} ({ds.get(keyword)!r})")
            geometry.append(values)
        rows, columns = _as_int(ds.get("Rows")), _as_int(ds.get("Columns"))
        if not rows or not columns:
            raise ValueError(f"{name}: {path}: missing Rows/Columns")
        samples = _as_int(ds.get("SamplesPerPixel", 1)) or 1
        frames = _as_int(ds.get("NumberOfFrames", 1)) or 1
        if samples != 1 or frames != 1:
            raise ValueError(
                f"{name}: {path}: only single-frame greyscale slices are supported "
                f"(SamplesPerPixel {samples}, NumberOfFrames {frames})"
            )
        instance = _as_int(ds.get("InstanceNumber"))
        problem = transfer_syntax_problem(ds)
        if problem:
            raise ValueError(f"{name}: {path}: " + problem)
        slices.append((*geometry, (rows, columns), "?" if instance is None else instance))
    keys = ("iops", "ipps", "spacings", "sizes", "instances")
    return {key: list(values) for key, values in zip(keys, zip(*slices, strict=True), strict=True)}


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
    norms = np.linalg.norm(row_cos), np.linalg.norm(col_cos)
    if abs(norms[0] - 1) > 1e-3 or abs(norms[1] - 1) > 1e-3 or abs(float(row_cos @ col_cos)) > 1e-3:
        raise ValueError(f"{name}: ImageOrientationPatient {iops[0].tolist()} is not two orthogonal unit vectors")
    row_cos, col_cos = row_cos / norms[0], col_cos / norms[1]
    if np.any(spacings[0] <= 0):
        raise ValueError(f"{name}: PixelSpacing {spacings[0].tolist()} is not positive")
    return row_cos, col_cos, np.cross(row_cos, col_cos)


def _slice_step(items: list, grid: dict, normal: np.ndarray, uid: str, name: str) -> tuple:
    """``(positions along the normal, mean step from slice to slice, spacing problems)``: gaps that differ from the
    median one (:func:`_gap_problems`; one line for all when SliceThickness varies, as then they are no lost slices)
    and drift off the normal. ValueError naming the files for duplicate slice positions. One slice steps by its
    SpacingBetweenSlices, else SliceThickness, else 1 mm."""
    positions, instances, files = np.asarray(grid["ipps"]), grid["instances"], [p for p, _ in items]
    proj = positions @ normal
    if len(items) < 2:
        for keyword in ("SpacingBetweenSlices", "SliceThickness"):
            with contextlib.suppress(TypeError, ValueError):
                if float(items[0][1].get(keyword)) > 0:
                    return proj, normal * float(items[0][1].get(keyword)), []
        return proj, normal * 1.0, []
    gaps = np.diff(proj)
    step = float(np.median(gaps))
    tol = 0.01 + 0.02 * abs(step)
    dup = np.nonzero(gaps <= tol)[0]
    if dup.size or step <= 0:
        a = int(dup[0]) if dup.size else 0
        acquisitions = {_text(ds, "AcquisitionNumber") for _, ds in items} - {""}  # named without a UID
        numbers = ", ".join(sorted(acquisitions, key=lambda v: (_as_int(v) is None, _as_int(v) or 0, v)))
        acq = f"; AcquisitionNumber {numbers}: separate acquisitions?" if len(acquisitions) > 1 else ""
        hint = f" (the files have no SeriesInstanceUID, so series that share {GROUPED_BY} cannot be told apart{acq})"
        raise ValueError(
            f"{name}: duplicate slice position {proj[a]:.3f} mm along the normal: {files[a]} "
            f"(instance {instances[a]}) and {files[a + 1]} (instance {instances[a + 1]})"
            + (f"; {dup.size} duplicate(s) in all" if dup.size > 1 else "")
            + ("" if uid else hint)
        )
    problems = _gap_problems(proj, files, instances, step, tol)
    thicknesses = [v or "blank" for v in dict.fromkeys(_text(ds, "SliceThickness") for _, ds in items)]
    if problems and len(thicknesses) > 1:
        rounded = sorted({round(float(g), 2) for g in gaps})
        problems = [
            f"irregular slice spacing: gaps of {', '.join(f'{g:g}' for g in rounded[:6])} mm, and "
            f"SliceThickness varies ({', '.join(thicknesses[:6])} mm)"
        ]
    off_normal = np.linalg.norm(positions - positions[0] - np.outer(proj - proj[0], normal), axis=1)
    if np.max(off_normal) > tol:
        worst = int(np.argmax(off_normal))
        problems.append(
            f"slice positions drift off the slice normal by up to {off_normal[worst]:.3f} mm "
            f"(gantry tilt or sheared stack; {files[worst]})"
        )
    return proj, (positions[-1] - positions[0]) / (len(items) - 1), problems


def check_series(files_or_folder, *, allow_irregular=False) -> dict:
    """Check the geometry of one series (a folder that holds exactly one, searched recursively, or a list of files)
    from its headers: one series (:func:`_group_key`), the same orientation, Rows/Columns and PixelSpacing in every
    file, no duplicate slice positions, and equal spacing along the slice normal (a missing slice shows as a gap that
    is a multiple of the spacing). Raises ValueError naming the series (folder and UID) and the problem; with
    ``allow_irregular=True`` irregular spacing (and gantry tilt) only warns, and the affine spans first to last slice
    evenly. A series missing any of :data:`UID_TAGS` passes with a logged warning naming them.

    Returns the :func:`find_series` dict of the series with ``name``, ``folder``, ``shape`` (i, j, k), ``spacing``
    (i, j, k in mm), ``affine`` (RAS 4x4), ``positions`` (mm along the normal), ``instances``, ``irregular`` and
    ``problems``."""
    items, folder = _series_items(files_or_folder)
    groups: dict[tuple[str, str], list] = {}
    for path, ds in items:
        groups.setdefault(_group_key(ds, path), []).append((path, ds))
    if len(groups) > 1:
        listing = "; ".join(_describe(_summary(key, group)) for (key, _), group in sorted(groups.items()))
        raise ValueError(f"{folder}: files belong to {len(groups)} series, expected one: {listing}")
    summary = _summary(next(iter(groups))[0], items)
    name = series_name({**summary, "folder": folder})
    if summary["missing_uids"]:
        grouped = "" if summary["uid"] else f"; its files were grouped into one series by {GROUPED_BY}"
        logger.warning("%s: %s%s", name, ", ".join(summary["missing_uids"]), grouped)
    items = _sorted_items(items)  # as the summary's files
    grid = _slice_grid(items, name)
    row_cos, col_cos, normal = _common_orientation(grid, summary["files"], name)
    proj, slice_step, problems = _slice_step(items, grid, normal, summary["uid"], name)
    if problems:
        more = len(problems) - MAX_PROBLEMS_SHOWN
        message = f"{name}: " + "; ".join(problems[:MAX_PROBLEMS_SHOWN]) + (f"; {more} more" if more > 0 else "")
        if not allow_irregular:
            raise ValueError(f"{message} (to convert it anyway: python -m scripts dicom convert --allow_irregular)")
        warnings.warn(message + "; converting anyway with the mean spacing", UserWarning, stacklevel=2)
    (row_spacing, col_spacing), (rows, columns) = grid["spacings"][0], grid["sizes"][0]  # DICOM: between rows first
    lps = np.eye(4)  # i along a row, j down a column, k by the slice step
    lps[:3] = np.column_stack([row_cos * col_spacing, col_cos * row_spacing, slice_step, grid["ipps"][0]])
    return {
        **summary,
        "name": name,
        "folder": folder,
        "shape": (columns, rows, len(items)),
        "spacing": (float(col_spacing), float(row_spacing), float(np.linalg.norm(slice_step))),
        "affine": LPS_RAS_FLIP @ lps,
        "positions": proj,
        "instances": grid["instances"],
        "irregular": bool(problems),
        "problems": problems,
    }


def transfer_syntax_problem(ds_or_uid) -> str | None:
    """None when an installed pydicom plugin decodes pixel data in this transfer syntax, else one line naming the
    syntax (name and UID) and the packages that would decode it. ``ds_or_uid`` is a transfer syntax UID or a header
    (its BitsStored counts for :data:`EIGHT_BIT_ONLY_PLUGINS`); one without a TransferSyntaxUID gives None: nothing
    names a codec to check, and decoding reports it."""
    is_ds = isinstance(ds_or_uid, Dataset)
    uid = getattr(ds_or_uid, "file_meta", Dataset()).get("TransferSyntaxUID", None) if is_ds else ds_or_uid
    if is_ds and not uid:
        return None
    bits_stored = (_as_int(ds_or_uid.get("BitsStored")) or 0) if is_ds else 0
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
    if bits_stored > 8:
        plugins -= limited
    if plugins:
        return None
    # pydicom words each as "<plugin> - requires <package> and <package>"
    would = "; ".join(d.replace(" - requires ", " plugin with ") for d in decoder.missing_dependencies)
    if bits_stored > 8 and limited:
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
    raw, rescale = [], []
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
        values = ((ds.get("RescaleSlope", ""), 1), (ds.get("RescaleIntercept", ""), 0))
        try:
            rescale.append(tuple(float(v if v != "" else default) for v, default in values))  # blank: the default
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: {path}: malformed RescaleSlope/RescaleIntercept") from exc
        raw.append(arr)
    exact = all(s == 1.0 and float(b).is_integer() for s, b in rescale)
    if exact:
        shifted = [v + int(b) for a, (_, b) in zip(raw, rescale, strict=True) for v in (int(a.min()), int(a.max()))]
        exact = -32768 <= min(shifted) and max(shifted) <= 32767
    volume = np.empty((columns, rows, n), dtype=np.int16 if exact else np.float32)
    for k, (arr, (slope, intercept)) in enumerate(zip(raw, rescale, strict=True)):
        hu = arr.astype(np.int32) + int(intercept) if exact else arr.astype(np.float64) * slope + intercept
        volume[:, :, k] = hu.T
    return volume


def read_series(folder, *, allow_irregular=False):
    """Read one DICOM series (folder or list of files) into ``(volume_hu, ras_affine, info)``: :func:`check_series`,
    then :func:`read_pixels` (the volume indexed (i, j, k), int16 when the rescale is exact in int16, else float32)."""
    info = check_series(folder, allow_irregular=allow_irregular)
    volume = read_pixels(info)
    info["dtype"] = str(volume.dtype)
    return volume, info["affine"].copy(), info


def skip_reason(s: dict) -> str | None:
    """Why a found series (:func:`find_series`) is not segmented or converted (a localizer, another SOP class or
    modality), or None when it is a CT image series: CT Image Storage by its ``sop_class``, or where that is blank,
    Modality CT (docs/dicom.md, "Anonymised headers")."""
    if "LOCALIZER" in (v.upper() for v in s["image_type"]):
        return "localizer/scout (ImageType " + "\\".join(s["image_type"]) + ")"
    sop_class, source = s.get("sop_class", s["sop_class_uid"]), s.get("sop_class_from", "SOPClassUID")
    if source != "Modality" and sop_class != CTImageStorage:
        sop = UID(sop_class)
        label = sop.name if sop.name != sop_class else sop_class or "none"
        where = "" if source == "SOPClassUID" else f" (by {source}; SOPClassUID blank or absent)"
        return f"SOP class {label} is not CT Image Storage{where}"
    modality = f"modality {s['modality'] or '(blank)'} is not CT"
    if s["modality"].upper() != "CT" and source == "Modality":
        both = "SOPClassUID and MediaStorageSOPClassUID blank or absent"
        return f"SOP class none is not CT Image Storage and {modality} ({both})"
    return modality if s["modality"].upper() != "CT" else None


class NoDicomSeries(ValueError):
    """A folder holds no DICOM series at all (:func:`ct_series`): callers that accept other inputs there catch it."""


def ct_series(root) -> tuple[list[dict], list[tuple[dict, str]]]:
    """The CT image series under ``root`` (:func:`find_series`, recursive), and every other series with the reason
    it is not segmented (:func:`skip_reason`). Logs which tag called a series CT where its SOPClassUID did not
    (:data:`CT_DECIDED_BY`). Raises :class:`NoDicomSeries` when ``root`` holds no DICOM series."""
    found = find_series(root)
    if not found:
        raise NoDicomSeries(f"{os.fspath(root)}: no DICOM series found")
    reasons = [(s, skip_reason(s)) for s in found]
    for s in (s for s, reason in reasons if not reason and s["sop_class_from"] in CT_DECIDED_BY):
        logger.info("%s: %s", series_name(s), CT_DECIDED_BY[s["sop_class_from"]])
    return [s for s, reason in reasons if not reason], [(s, reason) for s, reason in reasons if reason]


def safe_name(text: str) -> str:
    """Only letters, digits and ``-`` of ``text``, each run of anything else made one ``_`` (none at the ends): no dot,
    so MONAI's writer strips no part of a name as an extension. Case names here and output names of the writer."""
    return re.sub(r"[^A-Za-z0-9-]+", "_", text).strip("_")


def unique_names(names: list[str]) -> list[str]:
    """``names`` with a counter (``_2``, ``_3``, ...) appended to each repeat."""
    unique, used = [], set()
    for name in names:
        candidate, counter = name, 2
        while candidate in used:
            candidate, counter = f"{name}_{counter}", counter + 1
        used.add(candidate)
        unique.append(candidate)
    return unique


def case_names(series: list[dict], root) -> list[str]:
    """A unique, file-name-safe (:func:`safe_name`) case name for each series (:func:`find_series` dicts) found under
    ``root``: its ``<SeriesNumber>_<SeriesDescription>``, or its folder's name where both are blank; prefixed with its
    folder's path below ``root`` where two would be equal, then numbered (docs/dicom.md, "Study folders")."""
    root = os.path.abspath(os.fspath(root))

    def own(s):
        number = "" if s["series_number"] is None else str(s["series_number"])
        return safe_name(f"{number}_{s['series_description']}") or safe_name(os.path.basename(s["folder"])) or "series"

    def where(s):
        relative = os.path.relpath(os.path.abspath(s["folder"]), root)
        return safe_name(relative if relative != "." else os.path.basename(root)) or "series"

    names = [own(s) for s in series]
    return unique_names([f"{where(s)}_{n}" if names.count(n) > 1 else n for s, n in zip(series, names, strict=True)])


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
