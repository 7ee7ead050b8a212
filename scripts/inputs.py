"""Inference inputs: find the cases behind ``--input``, check them before any work starts, and plan output names.

``--input`` may be a NIfTI file (``.nii``/``.nii.gz``), a folder of NIfTI files, a DICOM series folder, or a folder
whose subfolders are DICOM series. Every problem found here stops the run before a single output is written.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

NIFTI_EXTENSIONS = (".nii.gz", ".nii")


def case_name(path: str) -> str:
    """The case name of an input: a NIfTI file name without extension, or a DICOM folder's name."""
    name = os.path.basename(os.path.normpath(path))
    for ext in NIFTI_EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def check_nifti_header(path: str) -> tuple:
    """Read only the header of a NIfTI file and check that it holds one 3D volume; return its shape."""
    import nibabel as nib
    import numpy as np

    try:
        img = nib.load(path)
        shape = tuple(int(s) for s in img.shape)
    except Exception as e:  # nibabel raises several types for damaged headers
        raise ValueError(f"{path}: not a readable NIfTI file ({e})") from e
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise ValueError(f"{path}: expected a 3D CT volume, found {len(shape)}D data of shape {shape}")
    if min(shape) < 2:
        raise ValueError(f"{path}: expected a 3D CT volume, found shape {shape}")
    affine = img.affine
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise ValueError(f"{path}: the header's affine is singular or not finite, so the geometry is unknown")
    return shape


def _dicom_series_folders(folder: str) -> list[str]:
    """Folders under ``folder`` that hold DICOM files (each must hold exactly one series; checked later)."""
    from scripts import dicom

    series = dicom.find_series(folder)
    return sorted({s["folder"] for s in series})


def list_inputs(input_path: str, output_dir: str | None = None, postfix: str = "seg") -> list[dict]:
    """Return ``[{"image": path}, ...]`` for every case behind ``input_path``, after checking each one.

    Raises FileNotFoundError/ValueError naming the path and the problem: a missing or empty path, a file that is not
    a 3D NIfTI volume, a DICOM folder with a missing slice or mixed series, or two inputs whose outputs would share
    a name (or overwrite an input).
    """
    path = os.path.abspath(os.path.expanduser(str(input_path)))
    if not os.path.exists(path):
        raise FileNotFoundError(f"{input_path}: no such file or folder")
    if os.path.isfile(path):
        if not path.endswith(NIFTI_EXTENSIONS):
            raise ValueError(f"{input_path}: not a NIfTI file (.nii or .nii.gz); for DICOM give the series folder")
        cases = [path]
    else:
        entries = sorted(os.listdir(path))
        cases = [os.path.join(path, f) for f in entries if f.endswith(NIFTI_EXTENSIONS) and not f.startswith(".")]
        if not cases:
            cases = _dicom_series_folders(path)
        if not cases:
            raise ValueError(f"{input_path}: the folder holds no NIfTI files and no DICOM series")
    for case in cases:
        if os.path.isdir(case):
            from scripts import dicom

            dicom.check_series(case)
        else:
            if os.path.getsize(case) == 0:
                raise ValueError(f"{case}: the file is empty")
            check_nifti_header(case)
    if output_dir is not None:
        plan_outputs(cases, output_dir, postfix)
    logger.info("%d input case(s) under %s", len(cases), input_path)
    return [{"image": c} for c in cases]


def plan_outputs(cases: list[str], output_dir: str, postfix: str) -> dict:
    """Map each input to ``<output_dir>/<name>_<postfix>.nii.gz``; refuse collisions and overwriting an input."""
    if not postfix:
        raise ValueError("output_postfix must not be empty: outputs would take their input's name")
    planned: dict[str, str] = {}
    inputs = {os.path.abspath(c) for c in cases}
    for case in cases:
        out = os.path.abspath(os.path.join(output_dir, f"{case_name(case)}_{postfix}.nii.gz"))
        if out in planned:
            raise ValueError(f"{case} and {planned[out]} would both be written to {out}: rename one of them")
        if out in inputs:
            raise ValueError(f"{case}: its output {out} would overwrite an input; choose another --output_dir")
        planned[out] = case
    return planned


def check_weights(ckpt_path: str, load_pretrain: bool) -> None:
    """Stop when the weights file is missing, unless the user asked for an untrained run."""
    if not load_pretrain:
        logger.warning("load_pretrain is false: running UNTRAINED weights; the masks are meaningless")
        return
    if not os.path.isfile(ckpt_path):
        raise FileNotFoundError(
            f"{ckpt_path}: weights file not found. Train first (README), give --ckpt_path, "
            "or pass --load_pretrain false for an untrained smoke test"
        )
    if os.path.getsize(ckpt_path) == 0:
        raise ValueError(f"{ckpt_path}: the weights file is empty")


def labelled_cases(datalist_file: str, key: str = "validation") -> list[dict]:
    """The ``key`` list of a datalist JSON as ``[{"image", "label"}, ...]`` with absolute paths, each file checked.

    Relative paths are relative to the JSON's folder (the MSD ``dataset.json`` convention).
    """
    from monai.data import load_decathlon_datalist

    if not os.path.isfile(datalist_file):
        raise FileNotFoundError(f"{datalist_file}: datalist not found (train first, or give --eval_datalist)")
    try:
        cases = load_decathlon_datalist(
            datalist_file, is_segmentation=True, data_list_key=key, base_dir=os.path.dirname(os.path.abspath(datalist_file))
        )
    except (ValueError, KeyError) as e:
        raise ValueError(f"{datalist_file}: no list '{key}' of labelled cases ({e})") from e
    if not cases:
        raise ValueError(f"{datalist_file}: the list '{key}' is empty")
    for case in cases:
        if "label" not in case:
            raise ValueError(f"{datalist_file}: case {case.get('image')} has no label")
        for role in ("image", "label"):
            if not os.path.exists(case[role]):
                raise FileNotFoundError(f"{case[role]}: {role} listed in {datalist_file} not found")
    return [{"image": c["image"], "label": c["label"]} for c in cases]
