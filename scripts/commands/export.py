"""``python -m scripts export``: export the network to ONNX, or write the distributable bundle zip.

    python -m scripts export onnx [--ckpt_file models/model.pt] [--output models/model.onnx]
    python -m scripts export package [--output dist/liver_ct_segmentation.zip] [--without_weights]

Default paths lie in ``--bundle_root`` (default: the bundle this command comes from), so both run from any folder;
paths given on the command line are relative to the working directory. The work is done by :mod:`scripts.components.export`
(TorchScript needs nothing here: MONAI's ``ckpt_export``, see the README); this module is the command line.
"""

from __future__ import annotations

import argparse

from scripts.commands import PROG, add_bundle_root, fail, in_bundle
from scripts.components.export import BUNDLE_NAME, export_onnx, package


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} export",
        description="Share the bundle: export the network to ONNX (checked against PyTorch), or write the "
        "distributable bundle zip.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_onnx = sub.add_parser("onnx", help="export the network to ONNX and check it against PyTorch")
    p_onnx.add_argument(
        "--ckpt_file",
        default=None,
        help="weights (a state dict, as training writes; default: BUNDLE_ROOT/models/model.pt)",
    )
    p_onnx.add_argument(
        "--output", default=None, help="the ONNX file to write (default: BUNDLE_ROOT/models/model.onnx)"
    )
    p_onnx.add_argument(
        "--config_file",
        nargs="+",
        default=None,
        help="configs merged in order (default: BUNDLE_ROOT/configs/inference.yaml; add configs/demo.yaml for the "
        "demo geometry)",
    )
    p_onnx.add_argument("--meta_file", default=None, help="the metadata (default: BUNDLE_ROOT/configs/metadata.json)")
    p_onnx.add_argument("--key_in_ckpt", default="", help="key of the weights in a nested checkpoint")
    p_onnx.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p_onnx.add_argument("--dynamo", action="store_true", help="use PyTorch's torch.export-based exporter")
    p_pkg = sub.add_parser("package", help="write the distributable bundle zip")
    p_pkg.add_argument("--output", default=None, help=f"the zip to write (default: BUNDLE_ROOT/dist/{BUNDLE_NAME}.zip)")
    p_pkg.add_argument("--without_weights", action="store_true", help="package without models/model.pt")
    for p in (p_onnx, p_pkg):
        add_bundle_root(p)
        p.add_argument("--debug", action="store_true", help="show the traceback on errors")
    return parser


def main(argv=None) -> int:
    """Command line entry; returns the exit status."""
    args = _parser().parse_args(argv)
    root = in_bundle(args.bundle_root)
    try:
        if args.command == "onnx":
            ckpt_file = args.ckpt_file or in_bundle(root, "models", "model.pt")
            print(f"exporting {ckpt_file} to ONNX ...", flush=True)
            result = export_onnx(
                ckpt_file,
                args.output or in_bundle(root, "models", "model.onnx"),
                config_files=args.config_file or [in_bundle(root, "configs", "inference.yaml")],
                meta_file=args.meta_file or in_bundle(root, "configs", "metadata.json"),
                key_in_ckpt=args.key_in_ckpt,
                overrides={"bundle_root": root},
                opset_version=args.opset,
                dynamo=args.dynamo,
            )
            print(
                f"wrote {result['path']}: ONNX Runtime vs PyTorch max abs difference {result['max_abs_diff']:.2e} "
                f"on a {result['shape']} output",
                flush=True,
            )
        else:
            output = args.output or in_bundle(root, "dist", f"{BUNDLE_NAME}.zip")
            package(output, root, weights=not args.without_weights)
    except Exception as exc:  # one line for the user; the traceback with --debug
        return fail(exc, args.debug)
    return 0
