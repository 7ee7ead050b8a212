"""``python -m scripts cache``: how much GPU memory (``cache: gpu``), RAM (``cache: ram``) or disk (``cache: disk``) a
dataset's cases need (``cache: auto`` makes the same estimate, :func:`scripts.components.cache.choose`).

    python -m scripts cache --dataset_dir DIR [--datalist FILE] [--pixdim 2 2 2] [--processes 1]

The estimate is computed by :func:`scripts.components.cache.estimate` from the NIfTI headers; this module is the command line
and its totals.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from scripts.commands import PROG
from scripts.components.cache import estimate
from scripts.lib.datalist import load_datalist


def _parser():
    parser = argparse.ArgumentParser(
        prog=f"{PROG} cache",
        description="How much GPU memory (cache: gpu), RAM (cache: ram) or disk (cache: disk) the preprocessed "
        "cases of a dataset need, "
        "computed from the NIfTI headers (an upper bound: before the crop to the body).",
    )
    parser.add_argument(
        "--dataset_dir",
        required=True,
        metavar="DIR",
        help="dataset folder; relative datalist paths are resolved against it",
    )
    parser.add_argument("--datalist", metavar="FILE", help="datalist JSON (default: DIR/dataset.json)")
    parser.add_argument(
        "--pixdim",
        type=float,
        nargs=3,
        default=[2.0, 2.0, 2.0],
        metavar="MM",
        help="training voxel size (default: 2 2 2)",
    )
    parser.add_argument(
        "--processes", type=int, default=1, metavar="N", help="training processes per machine (default: 1)"
    )
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    return parser


def main(argv=None) -> int:
    """Command-line entry point; prints one line per case, then the totals; returns the exit status."""
    args = _parser().parse_args(argv)
    datalist_file = args.datalist or os.path.join(args.dataset_dir, "dataset.json")
    try:
        if args.processes < 1:
            raise ValueError(f"--processes {args.processes}: must be at least 1")
        if min(args.pixdim) <= 0:
            raise ValueError(f"--pixdim {args.pixdim}: voxel sizes must be positive")
        items = load_datalist(datalist_file, base_dir=args.dataset_dir)["training"]
        if not items:
            raise ValueError(f"{datalist_file}: no labelled cases in 'training'")
        rows = estimate(items, args.pixdim)
    except (ValueError, OSError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    total = sum(r["bytes"] for r in rows) / 1e9
    median = float(np.median([r["bytes"] for r in rows])) / 1e6
    pixdim = "x".join(f"{p:g}" for p in args.pixdim)
    print(f"{len(rows)} case(s) at {pixdim} mm: median {median:.0f} MB, total {total:.2f} GB")
    print(f"cache: gpu  -> up to {total:.2f} GB of memory on each training GPU")
    print(
        f"cache: ram  -> up to {total:.2f} GB of RAM in each training process, "
        f"{total * args.processes:.2f} GB per machine"
    )
    print(f"cache: disk -> up to {total:.2f} GB on disk per machine; RAM only for the cases in flight")
    return 0
