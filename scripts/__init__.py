"""Helper functions for the liver_ct_segmentation bundle.

The configs in ``configs/`` are the program; they reach the few pieces MONAI has no component for through
``$import scripts`` (for example ``scripts.datalist.split(...)``). Every submodule holds plain functions and, where an
ignite/MONAI interface needs one, a small class. Importing this package imports nothing heavy beyond MONAI itself.
"""

import importlib

__all__ = ["phantom", "datalist", "check_dataset", "dicom", "inputs", "handlers", "visualize"]


def __getattr__(name):
    # Submodules load on first use, so ``$import scripts`` in a config costs nothing until a function is called.
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
