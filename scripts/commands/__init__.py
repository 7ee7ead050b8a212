"""The bundle's user commands, one module each, run as ``python -m scripts <command> [options]`` from the bundle root
or ``python path/to/bundle/scripts <command> [options]`` from any folder (``scripts/__main__.py`` dispatches).

Each module holds only a command line: its argparse parser, ``main(argv) -> int`` (the exit status) and what it
prints; the work is done by the library modules of ``scripts/`` that the configs also call. Default paths into the
bundle (configs, weights, the demo's folder) are resolved from ``--bundle_root``, which defaults to the bundle this
code lives in, so a command works from any working directory; paths a user gives are relative to the working
directory as usual.
"""

from __future__ import annotations

import argparse
import os
import sys

import scripts
from scripts.lib.errors import one_line

#: The bundle this code lives in: the folder above the ``scripts`` package.
BUNDLE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(scripts.__file__)))

#: Shown as each command's usage: the command as the user types it from the bundle root.
PROG = "python -m scripts"


def add_bundle_root(parser: argparse.ArgumentParser) -> None:
    """Add ``--bundle_root``, defaulting to the bundle this code lives in."""
    parser.add_argument(
        "--bundle_root",
        default=BUNDLE_ROOT,
        metavar="DIR",
        help="the bundle folder whose configs and models are used (default: the bundle this command comes from, "
        "%(default)s)",
    )


def in_bundle(bundle_root: str, *parts: str) -> str:
    """The absolute path of ``parts`` inside ``bundle_root``."""
    return os.path.join(os.path.abspath(bundle_root), *parts)


def fail(exc: Exception, debug: bool) -> int:
    """How a command ends on an error: with ``--debug`` the exception propagates (its traceback), else one line
    ``error: <problem>`` on stderr; returns the exit status 1."""
    if debug:
        raise exc
    print(f"error: {one_line(exc)}", file=sys.stderr, flush=True)
    return 1
