"""The bundle's user commands: ``python -m scripts <command> [options]`` from the bundle root, or
``python path/to/bundle/scripts <command> [options]`` from any folder (no ``cd``, no PYTHONPATH).

Run as a folder, Python puts ``scripts/`` itself first on ``sys.path``; this module then puts the bundle root there
instead and imports the bundle's own ``scripts`` package, even when the working directory holds another package of
that name. Each command is ``main(argv)`` of a module in :mod:`scripts.commands` (the Deploy app's is
:mod:`scripts.deploy_app.__main__`); its exit status is this program's.
"""

import importlib
import os
import sys

PROG = "python -m scripts"

#: command -> (module with its ``main(argv)``, one line for the command list)
COMMANDS = {
    "demo": ("scripts.commands.demo", "the whole job on the synthetic phantom: data, check, train, evaluate, infer"),
    "phantom": ("scripts.commands.phantom", "write the synthetic CT phantom: an MSD-layout dataset or one volume"),
    "dicom": ("scripts.commands.dicom", "convert the CT series of a DICOM folder to NIfTI, or check them"),
    "datalist": (
        "scripts.commands.datalist",
        "write a datalist JSON with cross-validation folds from a dataset folder",
    ),
    "check_dataset": ("scripts.commands.check_dataset", "check a dataset's geometry, labels and HU; write a report"),
    "cache": ("scripts.commands.cache", "how much RAM or disk the preprocessed cases of a dataset need"),
    "visualize": ("scripts.commands.visualize", "draw a case overlay, a worst-first grid or the training curves"),
    "export": ("scripts.commands.export", "export the network to ONNX, or write the distributable bundle zip"),
    "deploy_app": ("scripts.deploy_app.__main__", "the MONAI Deploy app: DICOM study in, DICOM SEG and NIfTI out"),
}


def _use_this_bundle() -> None:
    """Make ``import scripts`` import the package this file belongs to (when run as a folder, not with ``-m``)."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [os.path.dirname(here)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    loaded = sys.modules.get("scripts")
    if loaded is not None and os.path.dirname(os.path.abspath(getattr(loaded, "__file__", None) or "")) != here:
        for name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
            del sys.modules[name]


def usage() -> str:
    """The command list that ``--help`` prints."""
    width = max(len(name) for name in COMMANDS)
    lines = [
        f"usage: {PROG} <command> [options]                  (from the bundle root)",
        "       python path/to/bundle/scripts <command> [options]  (from any folder)",
        "",
        "The liver CT segmentation bundle's commands; '<command> --help' shows a command's options.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the command named first in ``argv`` (default: ``sys.argv[1:]``); return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(usage(), file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    if name in ("-h", "--help", "help"):
        print(usage())
        return 0
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; the commands: {', '.join(COMMANDS)} ({PROG} --help)", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    if name == "deploy_app":  # also run alone (python -m scripts.deploy_app), where its usage says so
        return module.main(rest, prog=f"{PROG} {name}")
    return module.main(rest)


if __name__ == "__main__":
    if not __package__:  # run as a folder: python path/to/bundle/scripts <command>
        _use_this_bundle()
    sys.exit(main())
