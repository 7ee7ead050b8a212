"""Case names, atomic file output and file digests: the one way every module of the bundle names a case, writes a
file and identifies one (:func:`sha256`).

A case is named by its file name without the NIfTI extension, or by its DICOM folder's name (:func:`case_name`).

A file is written under a temporary name in its target folder, flushed to disk, given the mode a plain ``open()``
would give it (0666 minus the umask), and renamed over the target (``os.replace``, atomic on POSIX and Windows).
A reader never sees a partial file, and a failed or interrupted write leaves any previous file untouched; the
temporary file is removed on failure. :func:`atomic_path` is the one implementation; :func:`write_text`,
:func:`save_nifti`, :func:`save_dataset_atomic` (DICOM files: written series, SEGs),
``scripts.components.checkpoint.save_atomic``, the ONNX file, the zip and the PNGs all go through it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile

import nibabel as nib

__all__ = [
    "NIFTI_SUFFIXES",
    "case_name",
    "CASE_NAME_KEY",
    "case_label",
    "atomic_path",
    "write_text",
    "save_nifti",
    "save_dataset_atomic",
    "file_mode",
    "sha256",
]

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def case_name(path) -> str:
    """The name of a case: its file name without ``.nii.gz``/``.nii``, or its DICOM folder's name
    (``/d/imagesTr/liver_3.nii.gz`` -> ``liver_3``). Output names, reports and tables all use it."""
    name = os.path.basename(os.path.normpath(str(path)))
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


#: The key under which a case's own name travels (a datalist item's and the image's metadata): DICOM series are
#: named after the series (``scripts.lib.dicom.case_names``), not after their folders.
CASE_NAME_KEY = "case_name"


def case_label(meta: dict) -> str:
    """The name of the case an image's metadata describes: its :data:`CASE_NAME_KEY` when inference gave it one (a
    DICOM series), else :func:`case_name` of the file or folder it was read from."""
    meta = meta or {}
    return str(meta.get(CASE_NAME_KEY) or case_name(str(meta.get("filename_or_obj", "case")).rstrip("/")))


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file (0666 minus the umask)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync(path: str) -> None:
    with contextlib.suppress(OSError):  # folders cannot be opened on Windows: then a no-op
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path, suffix: str = ".tmp"):
    """Yield a temporary path beside ``path``; when the block ends without error, move it onto ``path``.

    ``suffix`` ends the temporary name, for writers that choose the format by extension (``".tmp.nii.gz"``).
    The target's folder is created when missing.
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync(folder)


def sha256(path) -> str:
    """The hex sha256 of the file ``path``, read in 1 MiB blocks: how provenance records name weights and data."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_text(path, text: str) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the absolute path."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return os.path.abspath(os.fspath(path))


def save_dataset_atomic(ds, path) -> None:
    """Write one DICOM data set (a pydicom ``Dataset``: a CT slice, a SEG) to ``path`` atomically, as a DICOM file
    with preamble and file meta."""
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


def save_nifti(array, affine, path, description: str = "") -> str:
    """Write ``array`` as NIfTI-1 (gzip for ``.nii.gz``) with qform = sform = ``affine`` (codes 1), mm units and the
    array's dtype, atomically. The target folder must exist."""

    path = os.fspath(path)
    if not path.endswith(NIFTI_SUFFIXES):
        raise ValueError(f"{path}: output must end with .nii.gz or .nii")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{path}: folder {folder} does not exist")
    img = nib.Nifti1Image(array, affine)
    img.header.set_data_dtype(array.dtype)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    img.header.set_xyzt_units(xyz="mm", t="sec")
    if description:
        img.header["descrip"] = description[:79].encode("ascii", "replace")
    with atomic_path(path, suffix=".tmp.nii.gz" if path.endswith(".nii.gz") else ".tmp.nii") as tmp:
        nib.save(img, tmp)
    return path
