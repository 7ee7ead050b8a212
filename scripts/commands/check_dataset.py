"""``python -m scripts check_dataset``: check a liver CT dataset and write dataset_check.csv/.json.

    python -m scripts check_dataset --dataset_dir DIR [--datalist FILE] [--output_dir DIR] [--allow_warnings]

The work is done by :mod:`scripts.lib.check_dataset`; this module is the command line.
"""

from __future__ import annotations

import argparse
import os
import sys

from scripts.commands import PROG
from scripts.lib.check_dataset import assert_dataset_ok


def _parser():
    parser = argparse.ArgumentParser(
        prog=f"{PROG} check_dataset",
        description="Check a liver CT dataset (geometry, labels, Hounsfield units, orientation) and write a report.",
    )
    parser.add_argument(
        "--dataset_dir",
        required=True,
        metavar="DIR",
        help="dataset folder; relative datalist paths are resolved against it",
    )
    parser.add_argument("--datalist", metavar="FILE", help="datalist JSON (default: DIR/dataset.json)")
    parser.add_argument(
        "--output_dir", default=".", metavar="DIR", help="folder for dataset_check.csv/.json (default: current folder)"
    )
    parser.add_argument("--allow_warnings", action="store_true", help="exit 0 when there are warnings but no errors")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    return parser


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status (1 on errors, or warnings without --allow_warnings)."""
    args = _parser().parse_args(argv)
    datalist_file = args.datalist or os.path.join(args.dataset_dir, "dataset.json")
    try:
        assert_dataset_ok(
            datalist_file, base_dir=args.dataset_dir, allow_warnings=args.allow_warnings, report_dir=args.output_dir
        )
    except (ValueError, OSError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("dataset check passed", flush=True)
    return 0
