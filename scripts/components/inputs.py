"""Inference and evaluation inputs: find the cases, check them before any work starts, and cope with bad ones.

``--input`` is a NIfTI file, a folder of them, or DICOM (each CT series under the folder a case). Each case is checked
twice, so that good files cost no more than their headers: before the run from its headers (:func:`check_case`), and
on the voxels the pipeline reads anyway (inside :func:`tolerant`). A batch goes on past a bad case and
:func:`report_failures` makes the run exit non-zero; docs/workflows.md, "How inputs are checked", lists every check.
The components that configs name carry :func:`scripts.lib.errors.reports_input_errors` (one ``error: ...`` line);
:func:`list_inputs` and :func:`check_weights` raise, for Python callers.
"""

from __future__ import annotations

import functools
import gzip
import logging
import math
import os
import zlib

import nibabel as nib
import numpy as np
import torch
from monai.data import ImageReader

from scripts import as_bool
from scripts.lib import dicom, weights
from scripts.lib.ct_values import AIR_HU, BRIGHT_HU, EXPECTED_LABELS, MIN_HU_BELOW, hu_doubts, values_text
from scripts.lib.dicom import NoDicomSeries
from scripts.lib.errors import one_line, reports_input_errors
from scripts.lib.fileio import CASE_NAME_KEY, NIFTI_SUFFIXES, case_name  # case_name: inputs.case_name too

logger = logging.getLogger(__name__)

#: Largest input accepted, in voxels (header-declared): a whole-body CT at thin slices. It bounds one case's memory
#: (docs/workflows.md, "How inputs are checked"); ``--max_voxels`` raises it.
MAX_VOXELS = 512 * 512 * 2048
#: Estimated peak memory of inference per input voxel, in bytes; used to report sizes only.
BYTES_PER_VOXEL_PEAK = 30
#: Key of the item that :func:`tolerant` returns for a case it could not prepare.
FAILED_KEY = "failed"

_GZIP_CHUNK = 1 << 20


# ---- reading ---------------------------------------------------------------------------------------------------------
class DicomSeriesReader(ImageReader):
    """MONAI ``ImageReader`` for a DICOM series folder, read by :func:`scripts.lib.dicom.read_series` as every entry
    point reads one (same voxels, RAS affine). Only for folders: ``LoadImaged`` passes NIfTI to ``NibabelReader``."""

    @staticmethod
    def _paths(data) -> list:
        """LoadImage passes one path or a sequence of them."""
        return [data] if isinstance(data, (str, os.PathLike)) else list(data)

    def verify_suffix(self, filename) -> bool:
        names = self._paths(filename)
        return len(names) == 1 and os.path.isdir(names[0])

    def read(self, data, **kwargs):
        (folder,) = self._paths(data)
        volume, _, info = dicom.read_series(folder)
        return volume, info

    def get_data(self, img):
        volume, info = img
        return volume, dicom.volume_metadata(info)


# ---- names and sizes -------------------------------------------------------------------------------------------------
def shape_text(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


def _scaled(n: float, base: int = 1000, units=("G", "M", "k"), small: str = "") -> str:
    """``n`` in the largest of ``units`` (``base`` cubed, squared, to the first) that it reaches: ``1.5 M``."""
    for power, unit in zip((3, 2, 1), units, strict=True):
        if n >= base**power:
            return f"{n / base**power:.1f} {unit}"
    return f"{int(n)}{small}"


def describe_size(shape, itemsize: int | None = None) -> str:
    """``"512x512x300 voxels (78.6 M voxels, 150.0 MiB as stored, ~1.8 GiB at inference)"``: a size report."""
    voxels = math.prod(int(s) for s in shape)
    in_bytes = functools.partial(_scaled, base=1024, units=("GiB", "MiB", "KiB"), small=" bytes")
    parts = [f"{_scaled(voxels)} voxels"] + ([f"{in_bytes(voxels * itemsize)} as stored"] if itemsize else [])
    parts.append(f"~{in_bytes(voxels * BYTES_PER_VOXEL_PEAK)} at inference")
    return f"{shape_text(shape)} voxels ({', '.join(parts)})"


def check_size(path: str, shape, max_voxels: int = MAX_VOXELS, itemsize: int | None = None) -> None:
    """Refuse a volume whose declared size exceeds ``max_voxels``, reporting its size; nothing is allocated."""
    voxels = math.prod(int(s) for s in shape)
    if max_voxels and voxels > max_voxels:
        raise ValueError(
            f"{path}: too large: the header declares {describe_size(shape, itemsize)}, over the limit of "
            f"{_scaled(max_voxels)} voxels (max_voxels); voxel data not read. Crop or downsample the volume, or "
            "raise --max_voxels on a machine with enough memory"
        )


# ---- header-level checks ---------------------------------------------------------------------------------------------
def squeeze_trailing(shape: tuple) -> tuple:
    """(x, y, z, 1) -> (x, y, z): a trailing singleton time/channel axis holds no second volume."""
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def check_affine(path: str, affine) -> None:
    """Raise for a singular or non-finite affine; warn (naming the file) for an identity affine."""
    affine = np.asarray(affine, dtype=float)
    if not np.all(np.isfinite(affine)):
        raise ValueError(f"{path}: the affine holds NaN/Inf values, so the voxel-to-world geometry is unknown")
    det = float(np.linalg.det(affine[:3, :3]))
    if abs(det) < 1e-6:
        raise ValueError(
            f"{path}: the affine is singular (determinant {det:.3g}), so the voxel-to-world geometry is unknown"
        )
    if np.allclose(affine, np.eye(4)):
        logger.warning(
            "%s: the affine is the identity (1 mm voxels at the origin): spacing and orientation were probably lost "
            "on conversion; the mask follows the same grid, but volumes in mL assume 1 mm voxels",
            path,
        )


def _gzip_uncompressed_size(path: str, expected: int) -> int | None:
    """The uncompressed size of a gzip file, or None when its trailer already shows it holds ``expected`` bytes.

    The 4-byte trailer (ISIZE, the size modulo 2**32) costs nothing to read; only when it disagrees is the file
    decompressed in chunks, nothing kept, which tells a truncated file from a valid multi-member (or zero-padded)
    gzip. Raises ValueError for a truncated or damaged stream.
    """
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < 18:  # a gzip header and trailer alone take 18 bytes
            raise ValueError(f"{path}: truncated gzip file ({f.tell()} bytes)")
        f.seek(-4, os.SEEK_END)
        if int.from_bytes(f.read(4), "little") == expected % 2**32:
            return None
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read1(_GZIP_CHUNK):
                total += len(chunk)
    except EOFError:
        raise ValueError(
            f"{path}: truncated gzip file: the compressed stream stops without its end marker after {total} bytes "
            f"of data (the header declares {expected}); an interrupted download or copy?"
        ) from None
    except (zlib.error, gzip.BadGzipFile) as exc:  # a bad CRC or a damaged deflate stream
        raise ValueError(f"{path}: corrupt gzip file: {one_line(exc)}") from exc
    return total


def check_stored_data(path: str, img) -> None:
    """Raise when the file holds less voxel data than its header declares (a truncated file)."""
    header = img.header
    offset = int(getattr(img.dataobj, "offset", header.get_data_offset()))  # the header copy may say 0
    nbytes = int(np.prod(img.shape, dtype=np.int64)) * np.dtype(header.get_data_dtype()).itemsize
    expected = offset + nbytes
    if path.endswith(".gz"):
        total = _gzip_uncompressed_size(path, expected)
    else:
        total = os.path.getsize(path)
    if total is not None and total < expected:
        raise ValueError(
            f"{path}: truncated file: it holds {total} bytes of NIfTI data, the header declares {expected} "
            f"({shape_text(img.shape)} voxels of {header.get_data_dtype()})"
        )


def check_nifti(path: str, max_voxels: int = MAX_VOXELS) -> tuple:
    """Check a NIfTI file from its header (and, for gzip, its trailer); return its 3D shape.

    Raises FileNotFoundError/ValueError naming the file: missing, empty, unreadable header, not 3D, larger than
    ``max_voxels``, singular or non-finite affine, or truncated voxel data. No voxel data is read.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes)")
    try:
        img = nib.load(path)
        shape = squeeze_trailing(tuple(int(s) for s in img.shape))
        itemsize = np.dtype(img.get_data_dtype()).itemsize
        affine = img.affine
    except Exception as exc:  # nibabel raises several types for damaged or foreign files
        raise ValueError(f"{path}: not a readable NIfTI file ({one_line(exc)})") from exc
    if len(shape) < 3:
        raise ValueError(f"{path}: a {len(shape)}D image of shape {shape_text(shape)}; a 3D CT volume is expected")
    if len(shape) > 3:
        raise ValueError(
            f"{path}: {len(shape)}D data of shape {shape_text(shape)} ({math.prod(shape[3:])} volumes); a single 3D "
            "CT volume is expected (split the series into 3D files first)"
        )
    if min(shape) < 2:
        raise ValueError(f"{path}: a single slice of shape {shape_text(shape)} (2D); a 3D CT volume is expected")
    check_size(path, shape, max_voxels, itemsize)
    check_affine(path, affine)
    check_stored_data(path, img)
    return shape


def check_dicom(folder: str, max_voxels: int = MAX_VOXELS) -> tuple:
    """Check a DICOM series folder from its headers (:func:`scripts.lib.dicom.check_series`: one series, consistent
    geometry, no missing slice; docs/dicom.md), then its size and affine; return its shape. Raises ValueError naming
    the folder and the problem."""
    info = dicom.check_series(folder)
    shape = tuple(int(s) for s in info["shape"])
    if min(shape) < 2:
        raise ValueError(
            f"{folder}: a DICOM series of shape {shape_text(shape)} (a single slice); a 3D CT volume is expected"
        )
    check_size(folder, shape, max_voxels, itemsize=2)
    check_affine(folder, info["affine"])
    return shape


def check_case(path: str, max_voxels: int = MAX_VOXELS) -> tuple:
    """:func:`check_dicom` for a folder, :func:`check_nifti` for a file; returns the 3D shape."""
    return check_dicom(path, max_voxels) if os.path.isdir(path) else check_nifti(path, max_voxels)


# ---- inference inputs ------------------------------------------------------------------------------------------------
def _dicom_cases(folder: str) -> list[tuple[str, str]]:
    """``(series folder, case name)`` for each CT image series under ``folder`` (searched recursively), named by
    :func:`scripts.lib.dicom.case_names`. Other series (:func:`scripts.lib.dicom.ct_series`) are skipped with a
    warning each; ValueError lists them when no CT is left. A folder is one case: :func:`check_dicom` refuses a second
    series in it."""
    cts, skipped = dicom.ct_series(folder)
    reasons = [f"{dicom.series_name(s)}: {reason}" for s, reason in skipped]
    if not cts:
        raise ValueError(f"{folder}: no CT image series to segment: " + "; ".join(reasons))
    for line in reasons:
        logger.warning("skipped: %s", line)
    by_folder = {}
    for s in cts:
        by_folder.setdefault(s["folder"], s)  # one case per folder; check_dicom names any second series in it
    folders = sorted(by_folder)
    return list(zip(folders, dicom.case_names([by_folder[f] for f in folders], folder), strict=True))


def _find_cases(input_path) -> list[tuple[str, str | None]]:
    """The cases behind ``--input`` as ``(path, name)``: a NIfTI file, the NIfTI files of a folder (name None: the
    file's), or the DICOM series under a folder (named after the series)."""
    text = "" if input_path is None else str(input_path)
    if not text.strip():
        raise ValueError("--input is empty: give a NIfTI file, a folder of NIfTI files or a DICOM series folder")
    path = os.path.abspath(os.path.expanduser(text))
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or folder")
    if os.path.isfile(path):
        if not path.endswith(NIFTI_SUFFIXES):
            raise ValueError(f"{path}: not a NIfTI file (.nii or .nii.gz); for DICOM give the series or study folder")
        return [(path, None)]
    entries = sorted(os.listdir(path))
    cases = [(os.path.join(path, f), None) for f in entries if f.endswith(NIFTI_SUFFIXES) and not f.startswith(".")]
    if not cases:
        try:
            cases = _dicom_cases(path)
        except NoDicomSeries:
            pass  # neither NIfTI nor DICOM: the error below says both
    if not cases:
        raise ValueError(f"{path}: the folder holds no NIfTI files (.nii, .nii.gz) and no DICOM series")
    return cases


def list_inputs(
    input_path, output_dir=None, postfix: str = "seg", max_voxels: int = MAX_VOXELS, failures: list | None = None
) -> list[dict]:
    """Return ``[{"image": path}, ...]`` for every case behind ``input_path`` that passes the header checks.

    Raises FileNotFoundError/ValueError naming the path and the problem for a missing or empty path, for two inputs
    whose outputs would share a name (or overwrite an input), and when no case passes. A case that fails
    :func:`check_case` is logged and appended to ``failures`` (``{"image", "problem", "stage": "check"}``), and the
    run goes on; with ``failures=None`` (the library default) any failing case raises, listing every failing case.
    """
    cases = _find_cases(input_path)
    good, bad = [], []
    for number, (case, name) in enumerate(cases, start=1):
        try:
            shape = check_case(case, max_voxels)
        except (ValueError, OSError) as exc:
            bad.append({"image": case, "problem": one_line(exc), "stage": "check"})
            logger.warning("[%d/%d] skipped: %s", number, len(cases), one_line(exc))
            continue
        good.append({"image": case, CASE_NAME_KEY: name} if name else {"image": case})
        shown = f"{name} ({case})" if name else case_name(case)
        logger.info("[%d/%d] %s: %s", number, len(cases), shown, describe_size(shape))
    if bad and (failures is None or not good):
        listing = "; ".join(b["problem"] for b in bad)
        raise ValueError(
            listing if len(cases) == 1 else f"{len(bad)} of {len(cases)} input case(s) failed the checks: {listing}"
        )
    if output_dir is not None:
        plan_outputs(good, output_dir, postfix)
    if bad:
        failures.extend(bad)
        logger.warning(
            "%d of %d input case(s) will be skipped; the run exits non-zero at the end", len(bad), len(cases)
        )
    logger.info("%d input case(s) under %s", len(good), input_path)
    return good


#: inference.yaml's ``datalist``: :func:`list_inputs`, a bad input stopping the run with one line (``error: ...``).
input_cases = reports_input_errors(list_inputs)


def plan_outputs(cases: list[dict], output_dir: str, postfix: str) -> dict:
    """Map each case (a :func:`list_inputs` item) to ``<output_dir>/<name>_<postfix>.nii.gz``; refuse collisions and
    overwriting an input. (With ``--output_format seg`` a DICOM case's SEG takes the same stem, ``.dcm``.)"""
    if not postfix:
        raise ValueError("output_postfix must not be empty: outputs would take their input's name")
    planned: dict[str, str] = {}
    inputs = {os.path.abspath(c["image"]) for c in cases}
    for item in cases:
        case = item["image"]
        out = os.path.abspath(
            os.path.join(output_dir, f"{item.get(CASE_NAME_KEY) or case_name(case)}_{postfix}.nii.gz")
        )
        if out in planned:
            raise ValueError(f"{case} and {planned[out]} would both be written to {out}: rename one of them")
        if out in inputs:
            raise ValueError(f"{case}: its output {out} would overwrite an input; choose another --output_dir")
        planned[out] = case
    return planned


# ---- weights ---------------------------------------------------------------------------------------------------------
def check_weights(ckpt_path: str, load_pretrain: bool, network=None) -> None:
    """Stop unless ``ckpt_path`` holds weights that fit ``network``, or the user asked for an untrained run.

    The file is loaded with ``weights_only=True`` (:func:`scripts.lib.weights.load_weights`: other Python objects are
    refused, never unpickled); with ``network`` they must match its state dict (names and shapes) and be finite.
    Raises FileNotFoundError/ValueError naming the file. ``load_pretrain`` may be a string ("false", "0", ...).
    """
    if not as_bool(load_pretrain):
        logger.warning("load_pretrain is false: running UNTRAINED weights; the masks are meaningless")
        return
    if not os.path.isfile(ckpt_path):
        raise FileNotFoundError(
            f"{ckpt_path}: weights file not found. Train first (README), give --ckpt_path, "
            "or pass --load_pretrain false for an untrained smoke test"
        )
    state = weights.load_weights(ckpt_path)
    if network is not None:
        weights.check_fits(ckpt_path, state, network, key="model")


#: inference.yaml's ``weights_check``: :func:`check_weights`, bad weights stopping the run with one line.
require_weights = reports_input_errors(check_weights)


# ---- checks while the pipeline reads each case -----------------------------------------------------------------------
def check_image_intensities(image, path: str) -> None:
    """Raise for NaN/Inf voxels or intensities that cannot be Hounsfield units; warn for doubtful ranges
    (``scripts.lib.ct_values.hu_doubts``: the dataset check's thresholds too)."""
    x = torch.as_tensor(image)
    lo, hi = (float(v) for v in torch.aminmax(x.float() if not x.is_floating_point() else x))
    if not (math.isfinite(lo) and math.isfinite(hi)):  # min and max are NaN or infinite exactly when a voxel is:
        bad = int(x.numel() - torch.isfinite(x).sum())  # the count costs a pass only for a bad image
        raise ValueError(f"{path}: {bad} NaN/Inf voxel(s) in the image; the mask would be garbage")
    doubts = hu_doubts(lo, hi)
    if "normalised" in doubts:
        raise ValueError(
            f"{path}: intensities lie within [0, 1] ({lo:g}..{hi:g}): normalised data, not Hounsfield units; "
            "give the original CT"
        )
    if "nothing_negative" in doubts:
        raise ValueError(
            f"{path}: no intensity below {MIN_HU_BELOW:g} (range {lo:g}..{hi:g}): not Hounsfield units (an MR image, "
            "or a CT stored without its rescale intercept); a CT always holds fat and air below 0 HU"
        )
    if "no_air" in doubts:
        logger.warning("%s: minimum %g HU (> %g): no air in the image; cropped tightly to the body?", path, lo, AIR_HU)
    if "no_bright" in doubts:
        logger.warning("%s: maximum %g HU (< %g): no bone or contrast; is this Hounsfield units?", path, hi, BRIGHT_HU)


def check_label_values(label, path: str, expected=EXPECTED_LABELS) -> None:
    """Raise when ``label`` holds values other than ``expected`` (0 background, 1 liver, 2 tumour)."""
    y = torch.as_tensor(label)
    known = torch.isin(y, torch.as_tensor(expected, dtype=y.dtype, device=y.device))
    if bool(known.all()):
        return
    odd, counts = torch.unique(y[~known], return_counts=True)
    shown = values_text(odd.tolist(), counts.tolist())
    raise ValueError(f"{path}: unexpected label values {shown}; expected {list(expected)} (background, liver, tumour)")


def _root_cause(exc: BaseException) -> BaseException:
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if nxt is None:
            break
        exc = nxt
    return exc


def describe_failure(item, exc: BaseException) -> str:
    """One line naming the case's file and the innermost cause of ``exc``."""
    path = str(item.get("image", "?")) if isinstance(item, dict) else str(item)
    named = [str(v) for v in item.values() if isinstance(v, str)] if isinstance(item, dict) else [path]
    root = _root_cause(exc)
    text = one_line(root) or type(root).__name__
    if any(text.startswith(p) for p in named):  # our own checks name the file already
        return text
    return f"{path}: cannot be read or prepared: {type(root).__name__}: {text}"


def _apply_or_report(transform, item):
    try:
        out = transform(item)
        if isinstance(item, dict) and item.get(CASE_NAME_KEY) and hasattr(out.get("image"), "meta"):
            out["image"].meta[CASE_NAME_KEY] = item[CASE_NAME_KEY]  # outputs and report rows take the series' name
        # Here, not in the config's preprocessing, which stays pure MONAI for MONAI Deploy; ct_hu and label: as loaded
        source = str(item.get("image", "image")) if isinstance(item, dict) else "image"
        if isinstance(out, dict) and "ct_hu" in out:
            check_image_intensities(out["ct_hu"], source)
        if isinstance(out, dict) and isinstance(item, dict) and "label" in out and "label" in item:
            check_label_values(out["label"], str(item["label"]))
        return out
    except Exception as exc:  # any failure of one case's reading or preprocessing: reported, the run goes on
        return {FAILED_KEY: describe_failure(item, exc)}


def tolerant(transform):
    """``transform`` for a dataset, except that a case it fails on yields ``{"failed": message}`` instead of raising.

    Picklable (for data loader worker processes). Use with batch size 1 and :class:`SkipFailed`.
    """
    return functools.partial(_apply_or_report, transform)


class SkipFailed:
    """Iterate over ``loader``'s batches, leaving out the failed cases of :func:`tolerant` and recording them.

    Each failure is logged and appended to ``failures`` as ``{"image", "problem", "stage": "load"}``. It has no
    length on purpose: ignite then ends the epoch when the batches run out, however many cases were left out.
    """

    def __init__(self, loader, failures: list):
        self.loader = loader
        self.failures = failures

    def __iter__(self):
        for batch in self.loader:
            problems = batch.get(FAILED_KEY) if isinstance(batch, dict) else None
            if problems:
                for problem in problems if isinstance(problems, (list, tuple)) else [problems]:
                    self.failures.append(
                        {"image": str(problem).split(": ")[0], "problem": str(problem), "stage": "load"}
                    )
                    logger.error("skipped: %s", problem)
                continue
            yield batch


@reports_input_errors
def report_failures(failures: list, cases: list) -> None:
    """After a batch run: stop with one line (:class:`scripts.lib.errors.InputError`) listing every case that failed
    (header checks or reading), if any. ``cases``: the datalist that was run (those that passed the header checks)."""
    if not failures:
        return
    total = len(cases) + sum(1 for f in failures if f.get("stage") == "check")
    done = total - len(failures)
    if total == 1:
        raise ValueError(failures[0]["problem"])
    raise ValueError(
        f"{len(failures)} of {total} input case(s) failed and were skipped ({done} written): "
        + "; ".join(f["problem"] for f in failures)
    )
