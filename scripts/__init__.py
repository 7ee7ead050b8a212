"""Helper functions for the liver_ct_segmentation bundle.

The configs in ``configs/`` are the program; they reach the few pieces MONAI has no component for through their
``scripts`` entry (for example ``$@scripts.datalist.split(...)``), which imports this package from ``bundle_root``, so
that a bundle runs from any working directory, and through ``_target_: scripts...``. Every submodule holds plain
functions and, where an ignite/MONAI interface needs one, a small class. Submodules load on first use, so importing
the package costs nothing until a function is called.
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
