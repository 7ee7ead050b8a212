"""``python -m scripts phantom``: write the synthetic abdominal CT liver phantom (not patient data).

    python -m scripts phantom --output_dir DIR [--num_train 8] [--num_test 2] [--seed 0]
    python -m scripts phantom --single OUT.nii.gz [--shape 512 512 150] [--spacing 0.8 0.8 2.5]
                              [--orientation LPS] [--seed 0] [--label OUT_LABEL.nii.gz]

The phantom is drawn by :mod:`scripts.phantom`; this module is the command line.
"""

from __future__ import annotations

import argparse
import sys
import time

from scripts.commands import PROG
from scripts.phantom import _case_summary, make_case, save_nifti, write_dataset


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


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = _parser()

    def fail(message):
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)

    parser.error = fail  # one line to stderr and exit 1, also for usage errors
    args = parser.parse_args(argv)
    target = args.output_dir if args.output_dir is not None else args.single
    try:
        if args.output_dir is not None:
            if args.shape or args.spacing or args.orientation or args.label:
                raise ValueError("--shape/--spacing/--orientation/--label only apply with --single")
            path = write_dataset(args.output_dir, args.num_train, args.num_test, args.seed)
            print(f"wrote {path}", flush=True)
        else:
            for out in (args.single, args.label):
                if out is not None and not (out.endswith(".nii.gz") or out.endswith(".nii")):
                    target = out
                    raise ValueError("output must end with .nii.gz or .nii")
            t0 = time.perf_counter()
            image, label, affine = make_case(args.seed, args.shape, args.spacing, args.orientation)
            descr = f"SYNTHETIC liver CT phantom, seed {args.seed}, not patient data"
            save_nifti(image, affine, args.single, descr)
            if args.label is not None:
                target = args.label
                save_nifti(label, affine, args.label, descr)
            print(
                f"wrote {args.single} seed={args.seed} {_case_summary(label, affine)} "
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
