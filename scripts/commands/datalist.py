"""``python -m scripts datalist``: write a datalist JSON with cross-validation folds from a dataset folder.

    python -m scripts datalist (--msd DIR | --lits DIR | --images DIR --labels DIR) \\
        --output datalist.json [--num_folds 5] [--seed 0]

The work is done by :mod:`scripts.lib.datalist`; this module is the command line and its summary.
"""

from __future__ import annotations

import argparse
import os
import sys

from scripts.commands import PROG
from scripts.lib.datalist import assign_folds, from_folders, from_lits, from_msd, load_datalist, write_datalist
from scripts.lib.fileio import case_name


def _parser():
    parser = argparse.ArgumentParser(
        prog=f"{PROG} datalist",
        description="Build a datalist JSON with cross-validation folds from an MSD, LiTS or images/labels folder.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--msd", metavar="DIR", help="Medical Segmentation Decathlon task folder (with dataset.json)")
    source.add_argument("--lits", metavar="DIR", help="LiTS folder with volume-N.nii[.gz] and segmentation-N.nii[.gz]")
    source.add_argument("--images", metavar="DIR", help="folder of images, paired by file name with --labels")
    parser.add_argument("--labels", metavar="DIR", help="folder of labels (with --images)")
    parser.add_argument("--output", required=True, metavar="FILE", help="datalist JSON to write")
    parser.add_argument("--num_folds", type=int, default=5, help="number of cross-validation folds (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    return parser


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.images and not args.labels:
        parser.error("--images needs --labels")
    if args.labels and not args.images:
        parser.error("--labels needs --images")
    try:
        test = []
        if args.msd:
            items = from_msd(args.msd)
            msd_dir = os.path.abspath(args.msd)
            json_file = msd_dir if os.path.isfile(msd_dir) else os.path.join(msd_dir, "dataset.json")
            test = [entry["image"] for entry in load_datalist(json_file)["test"]]
        elif args.lits:
            items = from_lits(args.lits)
        else:
            items = from_folders(args.images, args.labels)
        items = assign_folds(items, num_folds=args.num_folds, seed=args.seed)
        path = write_datalist(items, args.output, test=test)
    except (ValueError, OSError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {path}: {len(items)} labelled cases in {args.num_folds} folds (seed {args.seed}), "
        f"{len(test)} test images"
    )
    for k in range(args.num_folds):
        names = [case_name(item["image"]) for item in items if item["fold"] == k]
        shown = ", ".join(names[:8]) + (f", ... (+{len(names) - 8})" if len(names) > 8 else "")
        print(f"fold {k}: {len(names)} cases: {shown}", flush=True)
    return 0
