"""The real-CT check: the bundle's inference on the one real labelled CT we may use, and its liver Dice.

A developer tool (it does not ship in the bundle). The only real labelled CT available is a LiTS crop inside the
PyPI package ``liver-ct-segmentation-package`` 1.6.0 (MIT): ``data/img_117.mrc`` (128^3 float32 HU) and
``data/lab_117.mrc`` (uint16: 0 background, 1 liver, 2 tumour). It is a check, never training or tuning data, and it
is never committed: this tool fetches the wheel with pip into a cache folder (or takes ``--wheel``), converts the two
MRC files to NIfTI with the ASSUMED geometry below (the MRC header records no voxel size and no orientation), runs
``python -m monai.bundle run inference`` on the image in a subprocess, as a user would, and compares the mask with
the label.

    python -m tools.real_ct --ckpt_path models/model.pt                                  # configs/inference.yaml
    python -m tools.real_ct --ckpt_path demo/models/model.pt --config_file configs/demo.yaml   # merged over it
    python -m tools.real_ct --wheel liver_ct_segmentation_package-1.6.0-py2.py3-none-any.whl ...  # offline

Writes to ``--output_dir``: ``inference/image_seg.nii.gz`` and ``inference/report.csv`` (the bundle's outputs),
``inference.log``, ``real_ct.png`` (axial, coronal and sagittal slices through the liver: the reference as a fill,
the prediction as an outline, the Dice in the title; ``scripts.lib.visualize.overlay``) and ``real_ct.json`` (weights and
their sha256, config files, assumed geometry, liver Dice, liver volumes, the wheel's sha256, date); prints one
summary line. Liver = label > 0 (tumour included) against prediction > 0, by the bundle's Dice
(``scripts.lib.metrics.dice``). The crop cuts the liver on several sides, so both volumes are of the part inside it.

Errors end the run with one line ``error: <file>: <problem>`` on stderr and exit status 1 (``--debug``: traceback).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

from scripts.commands import fail
from scripts.lib.fileio import save_nifti, sha256, write_text
from scripts.lib.metrics import dice
from scripts.lib.visualize import overlay

BUNDLE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFERENCE_CONFIG = os.path.join(BUNDLE_ROOT, "configs", "inference.yaml")

# ---- the data: where it comes from ---------------------------------------------------------------------------------
PACKAGE = "liver-ct-segmentation-package"
VERSION = "1.6.0"
WHEEL_NAME = "liver_ct_segmentation_package-1.6.0-py2.py3-none-any.whl"
# sha256 of the wheel on PyPI (2026-12-03): a file of that name never changes there, so another digest means another
# file, and its Dice would not be comparable with the ones recorded.
WHEEL_SHA256 = "67ffa526d8500ce5e3d9f2c96c1690543d811d352d93d531301d35791b9d6bba"
MEMBERS = {
    "image": "liver_ct_segmentation_package/data/img_117.mrc",
    "label": "liver_ct_segmentation_package/data/lab_117.mrc",
}
CASE = "LiTS crop 117"
DEFAULT_CACHE = os.path.join(tempfile.gettempdir(), "liver_ct_real_ct")

# ---- the ASSUMED geometry ------------------------------------------------------------------------------------------
# Fixed from the anatomy in the crop before any model was run on it, not from the Dice a choice gives. The array axes
# are those of mrcfile's ``data`` (the file's sections, rows, columns).
#
# Orientation, read from slices through the array (nibabel axis codes: the direction each index grows towards):
#   axis 0 -> L: the liver and the body's right wall lie at index 0, the midline of the spine at ~95, the stomach
#                (with gas) at 105-127; the liver is on the patient's right (situs solitus).
#   axis 1 -> P: the anterior abdominal wall at 0, the vertebral bodies at ~80-105, the spinal canal behind them.
#   axis 2 -> S: cut along axis 0 through the spine, the vertebral bodies are stacked along axis 2 with five discs
#                (at 18.5, 42, 66, 88, 107.5) whose spacing shrinks towards high indices (smaller vertebrae above);
#                the lung base lies behind the liver's dome at axis 2 >= 115, the right kidney's lower pole and bowel
#                loops with oral contrast at low indices.
#   So "LPS" (ITK's order), a rotation of RAS, not a mirror. Axis 2 is the craniocaudal axis: the slices cut along it
#   are the axial ones.
AXCODES = "LPS"
# Spacing. Every HU value in the crop is a multiple of 1/8 (the residues are uniform): each voxel is the mean of a
# 2x2x2 block of integer HU voxels, so the crop is the original scan binned by 2 along every axis, and its spacing is
# twice the scan's (LiTS in-plane 0.56-1.0 mm: 1.1-2.0 mm here). Sizes measured in the crop (voxels), with typical
# adult sizes at the levels shown (T11-L2):
#   vertebral body, mid-height width (axis 0)   33-35    ~41 mm  -> 1.21 mm
#   vertebral body, depth (axis 1)              22-26    ~30 mm  -> 1.25 mm
#   disc-to-disc pitch (axis 2), 4 levels       22.25    ~31 mm  -> 1.39 mm
#   aorta, equivalent diameter (axial cuts)     12.3-13  ~20 mm  -> 1.57 mm
# Median 1.32 mm. Axes 0 and 1 are the axial plane (square CT pixels). Through-plane (1.39) and in-plane (1.21-1.57)
# estimates overlap, and a vertebral body's height/width (18/34 = 0.53 with equal spacing; ~0.55-0.65 typically)
# shows no clear anisotropy: isotropic 1.3 mm, uncertain by about +-15%. Check: the liver inside the crop (615,351
# voxels, tumour included) is then 1.35 L, and the crop cuts off part of the left lobe and the liver's edges, so the
# whole liver is about 1.5-1.8 L, a typical size (1.57 mm would make the part inside the crop alone 2.4 L).
SPACING_MM = (1.3, 1.3, 1.3)
GEOMETRY_NOTE = (
    "assumed, not recorded: axes LPS read from anatomy (axis 2 craniocaudal, spine and lung base; liver on the "
    "patient's right); isotropic 1.3 mm (+-15%) from vertebral body size and pitch and aortic diameter, in a crop "
    "binned 2x2x2 from the scan (HU in steps of 1/8)"
)
SENSITIVITY_NOTE = (
    "a sensitivity check, not the assumed geometry: LPS at {mm:g} mm isotropic instead of 1.3 mm, to see how the "
    "Dice depends on the spacing assumption (the assumed 1.3 mm is +-15%)"
)
_DIRECTIONS = {"R": (1, 0, 0), "L": (-1, 0, 0), "A": (0, 1, 0), "P": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}


def assumed_affine(shape, axcodes: str = AXCODES, spacing=SPACING_MM) -> np.ndarray:
    """The voxel-to-world (RAS+, mm) affine of a volume of ``shape`` whose axis n grows towards ``axcodes[n]`` with
    ``spacing[n]`` mm between voxels; the volume's centre is at the world origin."""
    world_axis = {code: int(np.flatnonzero(d)[0]) for code, d in _DIRECTIONS.items()}  # R/L 0, A/P 1, S/I 2
    if len(axcodes) != 3 or sorted(world_axis.get(c, -1) for c in axcodes) != [0, 1, 2]:
        raise ValueError(f"axis codes {axcodes!r}: expected one of R/L, A/P and S/I each")
    affine = np.eye(4)
    for n, (code, size) in enumerate(zip(axcodes, spacing, strict=True)):
        affine[:3, n] = np.asarray(_DIRECTIONS[code], dtype=np.float64) * float(size)
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape[:3], dtype=np.float64) - 1.0) / 2.0)
    return affine


# ---- the wheel -----------------------------------------------------------------------------------------------------


def fetch_wheel(cache_dir: str) -> str:
    """The package's wheel in ``cache_dir``: the copy there, else downloaded by ``pip download`` (no dependencies).

    Raises OSError ``<wheel>: ...`` when pip cannot fetch it (offline, no registry)."""
    path = os.path.join(cache_dir, WHEEL_NAME)
    if os.path.isfile(path):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", f"{PACKAGE}=={VERSION}", "--no-deps", "--only-binary", ":all:"]
    cmd += ["--disable-pip-version-check", "-q", "-d", cache_dir]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise OSError(f"{path}: pip download of {PACKAGE}=={VERSION} timed out; give --wheel PATH") from None
    if proc.returncode != 0 or not os.path.isfile(path):
        lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit status {proc.returncode}"
        raise OSError(f"{path}: cannot download {PACKAGE}=={VERSION} ({why}); give --wheel PATH")
    return path


def extract_mrc(wheel: str, folder: str) -> dict:
    """Extract the image and label MRC files of ``wheel`` into ``folder``; returns ``{"image": path, "label": path}``.

    Raises FileNotFoundError/ValueError naming the wheel: missing, not a zip, or without the data files."""
    if not os.path.isfile(wheel):
        raise FileNotFoundError(f"{wheel}: wheel not found")
    try:
        archive = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{wheel}: not a wheel (zip) file ({e})") from None
    out = {}
    with archive:
        names = set(archive.namelist())
        missing = [m for m in MEMBERS.values() if m not in names]
        if missing:
            raise ValueError(f"{wheel}: the wheel has no {', '.join(missing)} (not {PACKAGE} {VERSION}?)")
        os.makedirs(folder, exist_ok=True)
        for role, member in MEMBERS.items():
            target = os.path.join(folder, os.path.basename(member))
            with archive.open(member) as src, open(target, "wb") as dst:
                dst.write(src.read())
            out[role] = target
    return out


# ---- MRC -> NIfTI --------------------------------------------------------------------------------------------------


def read_mrc(path: str) -> np.ndarray:
    """The 3D array of an MRC file, in mrcfile's axis order (sections, rows, columns), as stored."""
    import mrcfile

    try:
        with mrcfile.open(path, permissive=True) as mrc:
            data = None if mrc.data is None else np.array(mrc.data)
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: not a readable MRC file ({e})") from None
    if data is None or data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D MRC volume, found {None if data is None else data.shape}")
    return data


def mrc_to_nifti(mrc_path: str, nifti_path: str, role: str, axcodes: str = AXCODES, spacing=SPACING_MM) -> str:
    """Write the MRC volume as NIfTI with the assumed affine (``assumed_affine``): the array keeps its axis order.

    ``role`` "image": float32 HU, as stored (the crop's HU are not integers). "label": uint8, values 0/1/2 only."""
    data = read_mrc(mrc_path)
    if role == "image":
        data = data.astype(np.float32, copy=False)
        if not np.all(np.isfinite(data)):
            raise ValueError(f"{mrc_path}: the image has non-finite values")
    elif role == "label":
        values = np.unique(data)
        if not set(values.tolist()) <= {0, 1, 2}:
            raise ValueError(f"{mrc_path}: label values {values.tolist()[:10]} are not 0/1/2")
        data = data.astype(np.uint8)
    else:
        raise ValueError(f"role must be 'image' or 'label', got {role!r}")
    note = f"{CASE} {role} from {PACKAGE} {VERSION}; ASSUMED geometry {axcodes} {spacing[0]:g} mm"
    return save_nifti(np.ascontiguousarray(data), assumed_affine(data.shape, axcodes, spacing), nifti_path, note)


def prepare(wheel: str, cache_dir: str, spacing=SPACING_MM) -> dict:
    """Extract and convert the crop: ``{"image", "label"}`` NIfTI paths under ``cache_dir/nifti`` (the assumed
    spacing) or ``cache_dir/nifti_<mm>mm`` (another one)."""
    mrc = extract_mrc(wheel, os.path.join(cache_dir, "mrc"))
    spacing = tuple(float(s) for s in spacing)
    nifti = os.path.join(cache_dir, "nifti" if spacing == SPACING_MM else f"nifti_{spacing[0]:g}mm")
    os.makedirs(nifti, exist_ok=True)
    return {
        role: mrc_to_nifti(mrc[role], os.path.join(nifti, f"{role}.nii.gz"), role, spacing=spacing) for role in MEMBERS
    }


# ---- inference and scoring -----------------------------------------------------------------------------------------


def inference_cmd(config_files: list[str], ckpt: str, image: str, output_dir: str) -> list[str]:
    """The user's command: ``python -m monai.bundle run inference`` with the bundle's meta and logging files."""
    cmd = [sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file", json.dumps(config_files)]
    cmd += ["--meta_file", os.path.join(BUNDLE_ROOT, "configs", "metadata.json")]
    cmd += ["--logging_file", os.path.join(BUNDLE_ROOT, "configs", "logging.conf")]
    cmd += ["--bundle_root", BUNDLE_ROOT, "--ckpt_path", ckpt, "--input", image, "--output_dir", output_dir]
    return cmd


def run_inference(config_files: list[str], ckpt: str, image: str, output_dir: str, log_path: str) -> str:
    """Run the bundle's inference in a subprocess (output to ``log_path``); return the predicted mask's path."""
    cmd = inference_cmd(config_files, ckpt, image, output_dir)
    with open(log_path, "w") as log:
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(cmd, cwd=BUNDLE_ROOT, stdout=log, stderr=subprocess.STDOUT, env=_env())
    pred = os.path.join(output_dir, "image_seg.nii.gz")
    if proc.returncode != 0 or not os.path.isfile(pred):
        with open(log_path) as f:
            errors = [line.strip() for line in f if line.startswith("error:")]
        why = errors[-1] if errors else "see the log"
        raise RuntimeError(f"{log_path}: inference failed (exit status {proc.returncode}): {why}")
    return pred


def _env() -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def score(label_path: str, pred_path: str) -> dict:
    """Liver Dice (label > 0 against prediction > 0) and both liver volumes (mL), on the label's grid."""
    import nibabel as nib

    lab, prd = nib.load(label_path), nib.load(pred_path)
    if lab.shape != prd.shape or not np.allclose(lab.affine, prd.affine, atol=1e-3):
        raise ValueError(f"{pred_path}: the prediction is not on the label's grid {lab.shape}")
    ref = np.asarray(lab.dataobj) > 0
    pred = np.asarray(prd.dataobj) > 0
    voxel_ml = float(abs(np.linalg.det(lab.affine[:3, :3]))) / 1000.0
    return {
        "liver_dice": dice(ref, pred),
        "volume_ml": {
            "prediction": round(int(np.count_nonzero(pred)) * voxel_ml, 1),
            "reference": round(int(np.count_nonzero(ref)) * voxel_ml, 1),
        },
    }


def geometry_record(image_path: str, spacing) -> dict:
    """What the result says of the crop's geometry: the axes, the spacing and affine the NIfTI image was written with,
    and whether that is the assumed geometry or a sensitivity check at another spacing."""
    import nibabel as nib

    spacing = tuple(float(s) for s in spacing)
    return {
        "axcodes": AXCODES,
        "spacing_mm": list(spacing),
        "affine": np.round(nib.load(image_path).affine, 6).tolist(),
        "note": GEOMETRY_NOTE if spacing == SPACING_MM else SENSITIVITY_NOTE.format(mm=spacing[0]),
    }


def _shown(path: str) -> str:
    """A path as written in the result: relative to the bundle root when inside it."""
    path = os.path.abspath(path)
    inside = os.path.commonpath([path, BUNDLE_ROOT]) == BUNDLE_ROOT
    return os.path.relpath(path, BUNDLE_ROOT) if inside else path


def run(args) -> dict:
    ckpt = os.path.abspath(args.ckpt_path)
    if not os.path.isfile(ckpt):
        raise FileNotFoundError(f"{args.ckpt_path}: weights file not found")
    if not 0 < args.spacing < 10:
        raise ValueError(f"--spacing {args.spacing}: expected a voxel size in mm, above 0 and below 10")
    spacing = (float(args.spacing),) * 3
    configs = [INFERENCE_CONFIG] + [os.path.abspath(c) for c in args.config_file]
    for c in configs:
        if not os.path.isfile(c):
            raise FileNotFoundError(f"{c}: config file not found")
    cache = os.path.abspath(args.cache_dir)
    wheel = os.path.abspath(args.wheel) if args.wheel else fetch_wheel(cache)
    nifti = prepare(wheel, cache, spacing)  # the wheel's contents are checked first: a wrong file names what it lacks
    wheel_sha = sha256(wheel)
    if wheel_sha != WHEEL_SHA256:
        raise ValueError(f"{wheel}: sha256 {wheel_sha} is not that of {WHEEL_NAME} on PyPI ({WHEEL_SHA256})")
    out = os.path.abspath(args.output_dir)
    os.makedirs(out, exist_ok=True)
    pred = run_inference(
        configs, ckpt, nifti["image"], os.path.join(out, "inference"), os.path.join(out, "inference.log")
    )
    result = score(nifti["label"], pred)
    config_names = [_shown(c) for c in configs]
    title = (
        f"{CASE} (geometry assumed: {AXCODES}, {spacing[0]:g} mm)   weights {os.path.basename(ckpt)}   "
        f"liver Dice {result['liver_dice']:.3f}"
    )
    png = overlay(nifti["image"], os.path.join(out, "real_ct.png"), label=nifti["label"], pred=pred, title=title)
    record = {
        "case": CASE,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "weights": {"path": ckpt, "sha256": sha256(ckpt)},
        "config_files": config_names,
        "inference_command": shlex.join(inference_cmd(configs, ckpt, nifti["image"], os.path.join(out, "inference"))),
        "data": {"package": f"{PACKAGE}=={VERSION}", "wheel": wheel, "wheel_sha256": wheel_sha, **MEMBERS},
        "geometry": geometry_record(nifti["image"], spacing),
        "liver": "label > 0 (liver and tumour) against prediction > 0",
        "liver_dice": result["liver_dice"],
        "volume_ml": result["volume_ml"],
        "volumes_note": "of the liver inside the crop (it cuts the liver), under the assumed spacing",
        "prediction": pred,
        "overlay_png": png,
    }
    record["json"] = write_text(os.path.join(out, "real_ct.json"), json.dumps(record, indent=2) + "\n")
    return record


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.real_ct",
        description=f"Run the bundle's inference on the real LiTS crop of {PACKAGE} {VERSION} (geometry assumed) "
        "and report the liver Dice and volumes.",
    )
    p.add_argument(
        "--ckpt_path",
        default=os.path.join(BUNDLE_ROOT, "models", "model.pt"),
        help="the weights (default: the bundle's models/model.pt)",
    )
    p.add_argument(
        "--config_file",
        nargs="*",
        default=[],
        help="config files merged over configs/inference.yaml, e.g. configs/demo.yaml for the demo's weights",
    )
    p.add_argument(
        "--spacing",
        type=float,
        default=SPACING_MM[0],
        metavar="MM",
        help="isotropic voxel size to assume instead of 1.3 mm: a sensitivity check of the assumption (default: 1.3)",
    )
    p.add_argument("--wheel", help=f"a copy of {WHEEL_NAME} (default: pip download into --cache_dir)")
    p.add_argument("--cache_dir", default=DEFAULT_CACHE, help="the wheel and the NIfTI files (default: %(default)s)")
    p.add_argument(
        "--output_dir",
        default=os.path.join(DEFAULT_CACHE, "out"),
        help="the mask, log, JSON and PNG (default: %(default)s)",
    )
    p.add_argument("--debug", action="store_true", help="show a traceback on errors")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        r = run(args)
    except (ValueError, OSError, RuntimeError) as e:
        return fail(e, args.debug)
    v = r["volume_ml"]
    print(
        f"{CASE} (assumed {AXCODES} {r['geometry']['spacing_mm'][0]:g} mm), weights {r['weights']['path']}: liver Dice "
        f"{r['liver_dice']:.4f}, liver volume {v['prediction']:.0f} mL predicted / {v['reference']:.0f} mL reference; "
        f"wrote {r['json']} and {r['overlay_png']}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
