"""The liver_ct_segmentation bundle's own Python: only what MONAI has no component for.

The configs in ``configs/`` are the program; they reach this package through their ``scripts`` entry, which imports
it from ``bundle_root`` (so that a bundle runs from any working directory), as ``_target_: scripts.<module>.<name>``
components and as one-call values (``$@scripts.hardware.local_device()``). Submodules load on first use, so importing
the package costs nothing until a function is called.

The package's parts: the runtime components the configs name (``inputs``: reading and checking the inputs;
``inferers``, ``postprocess``, ``handlers``, ``checkpoint``, ``cache``, ``hardware``, ``distributed``, ``errors``)
and the libraries behind them and the commands (``phantom``, ``dicom``, ``datalist``, ``check_dataset``,
``visualize``, ``export``, ``fileio``), the modules of ``scripts/``; the user commands in
``scripts/commands/``, one module each, run as ``python -m scripts <command>`` from the bundle root or
``python path/to/bundle/scripts <command>`` from any folder (``scripts/__main__.py`` dispatches); and the MONAI Deploy
app in ``scripts/deploy_app/``. Developer tools live outside the bundle's package, in ``tools/``.
"""

import importlib


def __getattr__(name):
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


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
