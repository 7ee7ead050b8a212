"""Overlap metrics of two masks in NumPy, for the pictures, the evaluation table and the benchmark."""

from __future__ import annotations

import numpy as np

__all__ = ["dice"]


def dice(a, b) -> float:
    """Dice coefficient of two binary arrays of the same shape (non-zero = inside); both empty gives 1.0.

    The one Dice of two masks in NumPy: the pictures' titles, the per-class columns of the evaluation table
    (:class:`scripts.components.handlers.CaseTable`) and the benchmark's accuracy check (the liver column of
    metrics.csv is MONAI's ``compute_dice``, which agrees)."""
    a = np.asarray(a).astype(bool, copy=False)
    b = np.asarray(b).astype(bool, copy=False)
    if a.shape != b.shape:
        raise ValueError(f"dice: arrays of different shapes {a.shape} and {b.shape}")
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(a & b)) / total
