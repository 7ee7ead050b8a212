"""``python -m scripts visualize``: pictures of the bundle's cases and training runs, written as PNG.

    python -m scripts visualize overlay --image I.nii.gz [--label L.nii.gz] [--pred P.nii.gz] --output O.png
    python -m scripts visualize grid --images DIR --labels DIR --preds DIR [--metrics CSV] --output O.png
    python -m scripts visualize curves --log_dir DIR --output O.png

The pictures (display convention, colours, PNG metadata) are described and drawn by :mod:`scripts.lib.visualize`; this
module is the command line.
"""

from __future__ import annotations

import argparse
import logging
import sys

from scripts.commands import PROG
from scripts.lib.visualize import DEFAULT_WINDOW, curves, grid, metrics_for_case, overlay, pair_cases, read_metrics

logger = logging.getLogger(__name__)


def _add_window(parser: argparse.ArgumentParser) -> None:
    """The CT display window option shared by ``overlay`` and ``grid``."""
    parser.add_argument(
        "--window",
        type=float,
        nargs=2,
        default=DEFAULT_WINDOW,
        metavar=("LEVEL", "WIDTH"),
        help="CT window in HU (default: 50 400)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} visualize",
        description="Pictures of the liver CT segmentation bundle (radiological view: patient's right on the left).",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "overlay", parents=[common], help="one case: axial, coronal, sagittal slices through the liver's centre"
    )
    p.add_argument("--image", required=True, help="CT NIfTI file")
    p.add_argument("--label", help="reference label NIfTI (drawn as a green fill; tumour orange)")
    p.add_argument("--pred", help="predicted label NIfTI (drawn as a magenta outline; tumour cyan)")
    p.add_argument("--output", required=True, help="PNG to write")
    p.add_argument("--title", help="figure title (default: case name and liver Dice)")
    _add_window(p)
    p.add_argument("--dpi", type=float, default=100, help="PNG resolution (default 100)")

    g = sub.add_parser("grid", parents=[common], help="one axial tile per case, worst Dice first")
    g.add_argument("--images", required=True, help="folder of CT images NAME.nii.gz")
    g.add_argument("--labels", required=True, help="folder of reference labels NAME.nii.gz")
    g.add_argument(
        "--preds", required=True, help="folder of predictions NAME.nii.gz or NAME_seg.nii.gz (searched recursively)"
    )
    g.add_argument("--metrics", help="per-case CSV with a case name and a Dice column (default: Dice computed)")
    g.add_argument("--dice_column", help="the CSV column holding the liver Dice (default: dice, liver_dice, ...)")
    g.add_argument("--output", required=True, help="PNG to write")
    g.add_argument("--max_cases", type=int, default=16, help="draw at most this many (the worst) cases (default 16)")
    _add_window(g)

    c = sub.add_parser(
        "curves", parents=[common], help="training loss and validation Dice from TensorBoard event files"
    )
    c.add_argument("--log_dir", required=True, help="folder with the training run's event files (searched recursively)")
    c.add_argument("--output", required=True, help="PNG to write")
    return parser


def main(argv=None) -> int:
    """Command line entry point; returns the exit status (0 ok, 1 error)."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if args.command == "overlay":
            out = overlay(
                args.image,
                args.output,
                label=args.label,
                pred=args.pred,
                title=args.title,
                window=tuple(args.window),
                dpi=args.dpi,
            )
        elif args.command == "grid":
            cases = pair_cases(args.images, args.labels, args.preds)
            if args.metrics:
                metrics = read_metrics(args.metrics, args.dice_column)
                for case in cases:
                    value = metrics_for_case(metrics, case["name"])
                    if value is not None:
                        case["dice"] = value
            logger.info("grid: %d case(s) with a prediction", len(cases))
            out = grid(cases, args.output, max_cases=args.max_cases, window=tuple(args.window))
        else:
            out = curves(args.log_dir, args.output)
    except (OSError, ValueError) as e:
        if args.debug:
            raise
        message = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename and e.strerror else str(e)
        print(f"error: {message}", file=sys.stderr)
        return 1
    print(out, flush=True)
    return 0
