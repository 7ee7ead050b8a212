"""The liver_ct_segmentation bundle's own Python: only what MONAI has no component for.

The configs in ``configs/`` are the program. They reach this package through their ``scripts`` entry, which imports
it from ``bundle_root`` (so that a bundle runs from any working directory), as ``_target_: scripts.<role>.<module>.<name>``
components and as one-call values (``$@scripts.components.hardware.local_device()``).

The package by role, each folder importing only from the folders below it (``tests/test_architecture.py`` walks the
imports and fails on a cycle or an upward import):

- ``commands/`` and ``deploy_app/``: the user commands (``python -m scripts <command>``, ``scripts/__main__.py``
  dispatches) and the MONAI Deploy app;
- ``components/``: what the configs instantiate (readers and input checks, the inferer, post-processing, handlers,
  checkpoints, caching, loaders, the synthetic training data, the ONNX network, hardware and multi-process settings,
  the per-case verdict);
- ``lib/``: the libraries behind them (the phantom generator, DICOM, DICOM SEG, datalists and dataset checks,
  pictures, metrics, file writing, errors).

This module itself is the base every layer may use: the lazy submodule loader and :func:`as_bool`. Submodules load
on first use, so importing the package costs nothing until a function is called. Developer tools (the benchmark,
model shipping) live outside the bundle's package, in ``tools/``.
"""

import importlib


def lazy_submodules(package: str):
    """A module-level ``__getattr__`` for ``package`` that imports ``package.<name>`` on first access.

    Configs call ``$@scripts.components.hardware.local_device()``: each step of that chain is an attribute of a
    package that has not imported the submodule yet."""

    def __getattr__(name):
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{package}.{name}":
                raise
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__


__getattr__ = lazy_submodules(__name__)


def as_bool(value) -> bool:
    """A command-line flag as a bool: ``--resume true`` arrives as the string 'true', ``--resume True`` as True."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off", ""):
            return False
        raise ValueError(f"expected true or false, got {value!r}")
    return bool(value)
