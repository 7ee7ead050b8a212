"""The Deploy app's command line: ``python -m scripts deploy_app -i DICOM_STUDY_DIR -o OUT_DIR [-m MODEL.ts]``.

Like every user command it also runs from any folder as ``python path/to/bundle/scripts deploy_app ...``;
``python -m scripts.deploy_app ...`` (from the bundle root) runs this module directly, and a MONAI Application Package
calls its :func:`main`. Inside a MAP the runner passes no arguments but sets HOLOSCAN_INPUT_PATH, HOLOSCAN_OUTPUT_PATH and
HOLOSCAN_MODEL_PATH; those are the defaults of -i, -o and -m. Without HOLOSCAN_MODEL_PATH the model defaults to
``models/model.ts`` in ``--bundle_root`` (default: the bundle this code lives in).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import sys

from scripts.commands import add_bundle_root

STACK_BYTES = 32 * 2**20  # Holoscan asks for a 32 MiB stack and warns on the usual 8 MiB


def _raise_stack_limit() -> None:
    """Lift this process's soft stack limit to what Holoscan asks for, where the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    if soft != resource.RLIM_INFINITY and soft < STACK_BYTES:
        target = STACK_BYTES if hard == resource.RLIM_INFINITY else min(STACK_BYTES, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_STACK, (target, hard))


@contextlib.contextmanager
def _quiet_stderr(enabled: bool):
    """Hide what native libraries print while loading: nvImageCodec reports missing GPU codecs (nvJPEG2000, nvTIFF)
    as errors on machines without them, though DICOM decoding here goes through pydicom's own plugins."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _model_default(bundle_root: str) -> str:
    """$HOLOSCAN_MODEL_PATH (a MAP's model file, or the folder the packager put it in), else models/model.ts in
    ``bundle_root``."""
    path = os.environ.get("HOLOSCAN_MODEL_PATH")
    if not path:
        return os.path.join(os.path.abspath(bundle_root), "models", "model.ts")
    if os.path.isdir(path):
        found = sorted(os.path.join(d, f) for d, _, files in os.walk(path) for f in files if f.endswith(".ts"))
        return found[0] if len(found) == 1 else path
    return path


def _parser(prog: str = "python -m scripts.deploy_app") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Liver segmentation of the CT series in a DICOM study folder: writes a DICOM SEG and a NIfTI "
        "mask. A MONAI Deploy App SDK application running the bundle exported to TorchScript.",
    )
    env_input, env_output = os.environ.get("HOLOSCAN_INPUT_PATH"), os.environ.get("HOLOSCAN_OUTPUT_PATH")
    parser.add_argument(
        "-i",
        "--input",
        required=not env_input,
        default=env_input,
        help="DICOM study folder, searched recursively (default: $HOLOSCAN_INPUT_PATH)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=not env_output,
        default=env_output,
        help="output folder, created when missing (default: $HOLOSCAN_OUTPUT_PATH)",
    )
    parser.add_argument(
        "-m",
        "--model",
        default=None,
        help="TorchScript bundle export (python -m monai.bundle ckpt_export ...; "
        "default: $HOLOSCAN_MODEL_PATH, else BUNDLE_ROOT/models/model.ts)",
    )
    add_bundle_root(parser)
    parser.add_argument(
        "--series_uid", default=None, help="SeriesInstanceUID to segment (default: the CT series with the most slices)"
    )
    parser.add_argument("--debug", action="store_true", help="Holoscan's log, native libraries' messages, tracebacks")
    return parser


def main(argv=None, prog: str = "python -m scripts.deploy_app") -> int:
    """Command line entry; returns the exit status. ``prog`` is the command shown in the usage."""
    args = _parser(prog).parse_args(argv)
    if args.model is None:
        args.model = _model_default(args.bundle_root)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s"
    )
    for noisy in ("monai.deploy", "holoscan", "highdicom", "monai.data.nvimgcodec_pydicom_plugin"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.debug else logging.WARNING)
    os.environ.setdefault("HOLOSCAN_LOG_LEVEL", "INFO" if args.debug else "ERROR")
    _raise_stack_limit()
    try:
        for path, what in ((args.input, "input folder"), (args.model, "model file")):
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path}: {what} not found")
        with _quiet_stderr(not args.debug):
            try:
                from scripts.deploy_app.app import run_app  # loads MONAI, the SDK and Holoscan
            except ImportError as exc:  # the Deploy packages are a separate requirements file
                raise ImportError(
                    f"{exc}: the MONAI Deploy app needs its own packages: " "pip install -r requirements-deploy.txt"
                ) from exc
        result = run_app(args.input, args.output, args.model, series_uid=args.series_uid)
    except Exception as exc:  # one line for the user; the traceback with --debug
        if args.debug:
            raise
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return 1
    for name, reason in result["skipped"]:
        print(f"not segmented: {name}: {reason}", flush=True)
    liver = result["voxels"].get(1, 0)
    print(
        f"wrote {result['seg']} and {result['nifti']} ({liver} liver voxels; configs {'+'.join(result['configs'])}; "
        f"{result['seconds']:.1f} s)",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
