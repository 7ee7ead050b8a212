"""``python -m scripts phantom``: write the synthetic abdominal CT liver phantom (not patient data).

    python -m scripts phantom --output_dir DIR [--num_train 8] [--num_test 2] [--seed 0] [--profile wide3]
    python -m scripts phantom --grid OUT.png [--num_train 4] [--seed 0] [--profile wide3]
    python -m scripts phantom --single OUT.nii.gz [--shape 512 512 150] [--spacing 0.8 0.8 2.5]
                              [--orientation LPS] [--seed 0] [--label OUT_LABEL.nii.gz] [--profile wide3]

``--grid`` draws a coronal and an axial slice through the liver of ``--num_train`` cases (seeds seed*1000+i, as
in a dataset), titled with the seed, contrast phase and field of view: what a network trained on them is taught.

The phantom is drawn by :mod:`scripts.lib.phantom`; this module is the command line.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from scripts.commands import PROG
from scripts.lib.fileio import save_nifti
from scripts.lib.phantom import PROFILES, case_info, case_summary, make_case, write_dataset
from scripts.lib.visualize import phantom_grid


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{PROG} phantom",
        description="Generate the synthetic abdominal CT liver phantom (not patient data): either an MSD-style "
        "dataset (--output_dir) or one volume (--single).",
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--output_dir",
        help="write an MSD-layout dataset (dataset.json, imagesTr, labelsTr, imagesTs, labelsTs) into this folder",
    )
    mode.add_argument("--single", metavar="OUT.nii.gz", help="write one image volume to this file")
    mode.add_argument(
        "--grid", metavar="OUT.png", help="draw --num_train cases (coronal and axial slice with the liver outline)"
    )
    p.add_argument(
        "--profile",
        choices=PROFILES,
        default="standard",
        help="standard: the demo's portal-venous abdomen (default); wide: domain-randomised field of view, anatomy, "
        "contrast phase and appearance for training on synthetic data; wide2: wide plus adrenals, stomach food and "
        "contrast, pericardium and cirrhotic livers; wide3: wide2 with hips and thighs; wide4: wide3 with liver shape "
        "variants (Riedel's lobe, left tip over the stomach, lobe sizes, thin tips) and the IVC and portal vein outside "
        "the liver label at the hilum (the shipped model's last training run)",
    )
    p.add_argument("--num_train", type=int, default=8, help="training cases (default 8)")
    p.add_argument("--num_test", type=int, default=2, help="test cases (default 2)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed (default 0); dataset case i uses seed*1000+i, --single uses the seed itself",
    )
    p.add_argument("--shape", type=int, nargs=3, metavar=("N0", "N1", "N2"), help="--single: array shape")
    p.add_argument("--spacing", type=float, nargs=3, metavar=("D0", "D1", "D2"), help="--single: voxel size mm")
    p.add_argument("--orientation", help="--single: axis code of the stored array, e.g. RAS or LPS")
    p.add_argument("--label", metavar="OUT_LABEL.nii.gz", help="--single: also write the label volume here")
    p.add_argument("--debug", action="store_true", help="show a traceback on errors")
    return p


def draw_grid(output_png: str, num_cases: int, seed: int, profile: str) -> str:
    """Draw cases ``seed * 1000 + i`` (i < ``num_cases``) of ``profile`` into ``output_png``."""

    if isinstance(num_cases, bool) or not isinstance(num_cases, int) or not 1 <= num_cases <= 32:
        raise ValueError(f"--num_train must be in [1, 32] for --grid, got {num_cases!r}")
    cases = []
    for i in range(num_cases):
        case_seed = seed * 1000 + i
        image, label, affine = make_case(case_seed, profile=profile)
        info = case_info(case_seed, profile)
        liver = "liver cut" if _liver_cut(label, affine) else "whole liver"
        title = (
            f"seed {case_seed} {info['phase']}, {info['liver_kind']} liver; FOV {_extent(image.shape, affine, 0):.0f} "
            f"x {_extent(image.shape, affine, 2):.0f} mm (LR x SI), {liver}"
        )
        cases.append({"image": image, "label": label, "affine": affine, "title": title})
    return phantom_grid(cases, output_png)


def _extent(shape, affine, world_axis: int) -> float:
    """Length (mm) of the field of view along a world axis (0 right-left, 2 superior-inferior)."""
    k = int(np.argmax(np.abs(affine[world_axis, :3])))
    return float(shape[k] * abs(affine[world_axis, k]))


def _liver_cut(label, affine) -> bool:
    """True when the liver touches the first or last slice along world z (cut by the scan's edge)."""
    k = int(np.argmax(np.abs(affine[2, :3])))
    lab = np.moveaxis(label > 0, k, 0)
    return bool(lab[0].any() or lab[-1].any())


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = _parser()

    def fail(message):
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)

    parser.error = fail  # one line to stderr and exit 1, also for usage errors
    args = parser.parse_args(argv)
    target = args.output_dir if args.output_dir is not None else args.single
    if args.grid is not None:
        target = args.grid
    try:
        if args.grid is not None:
            if not args.grid.endswith(".png"):
                raise ValueError("output must end with .png")
            draw_grid(args.grid, args.num_train, args.seed, args.profile)
            print(f"wrote {args.grid}", flush=True)
        elif args.output_dir is not None:
            if args.shape or args.spacing or args.orientation or args.label:
                raise ValueError("--shape/--spacing/--orientation/--label only apply with --single")
            path = write_dataset(args.output_dir, args.num_train, args.num_test, args.seed, args.profile)
            print(f"wrote {path}", flush=True)
        else:
            for out in (args.single, args.label):
                if out is not None and not (out.endswith(".nii.gz") or out.endswith(".nii")):
                    target = out
                    raise ValueError("output must end with .nii.gz or .nii")
            t0 = time.perf_counter()
            image, label, affine = make_case(args.seed, args.shape, args.spacing, args.orientation, args.profile)
            descr = f"SYNTHETIC liver CT phantom, seed {args.seed}, not patient data"
            save_nifti(image, affine, args.single, descr)
            if args.label is not None:
                target = args.label
                save_nifti(label, affine, args.label, descr)
            print(
                f"wrote {args.single} seed={args.seed} {case_summary(label, affine)} "
                f"({time.perf_counter() - t0:.1f} s)",
                flush=True,
            )
    except (ValueError, OSError) as exc:
        if args.debug:
            raise
        msg = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        where = exc.filename if isinstance(exc, OSError) and exc.filename else target
        msg = msg if str(msg).startswith(f"{where}:") else f"{where}: {msg}"
        print(f"error: {msg}", file=sys.stderr)
        return 1
    return 0
