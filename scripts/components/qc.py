"""A verdict on each mask: ``ok``, or the reasons it is not to be trusted, for ``report.csv`` and ``metrics.csv``.

The reasons (``no_liver``, ``cut_by_scan``, ``implausible_volume``, ``uncertain``; joined by ``;`` in that order),
what each means and where the thresholds come from are in docs/qc.md. :class:`SmallLiverFilter` empties a liver
smaller than ``min_liver_ml`` (``no_liver``); :class:`RecordConfidence` records :func:`uncertain_share` on the
network's grid (``uncertain``); :func:`verdict` gives the column.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from scripts.lib.fileio import case_label

__all__ = ["RecordConfidence", "SmallLiverFilter", "uncertain_share", "body_axis", "verdict", "OK"]

logger = logging.getLogger(__name__)

OK = "ok"
UNCERTAIN_BAND = (0.2, 0.8)  # liver probabilities that are neither background nor liver with confidence
UNCERTAIN_KEY = "qc_uncertain_share"  # the image metadata key RecordConfidence writes and verdict reads


def uncertain_share(prob) -> float:
    """Of the voxels whose liver probability (of any foreground class: the one channel, or 1 - background for several)
    is at least 0.2, the share below 0.8 (0 where there are none)."""
    prob = torch.as_tensor(prob)
    p = prob[0] if prob.shape[0] == 1 else 1.0 - prob[0]
    low, high = UNCERTAIN_BAND
    candidate = int(torch.count_nonzero(p >= low))
    return float(torch.count_nonzero((p >= low) & (p < high))) / candidate if candidate else 0.0


class RecordConfidence:
    """A postprocessing step on the class probabilities (``Lambdad``'s ``func``): records :func:`uncertain_share` in
    the prediction's metadata, which the mask on the input grid keeps, and returns the prediction unchanged."""

    def __call__(self, pred):
        if hasattr(pred, "meta"):
            pred.meta[UNCERTAIN_KEY] = uncertain_share(pred)
        return pred


def _voxel_ml(affine) -> float:
    """The volume of one voxel of the grid of ``affine``, in mL."""
    affine = np.asarray(torch.as_tensor(affine).cpu(), dtype=np.float64)
    return float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0


class SmallLiverFilter:
    """A postprocessing step on the mask on the input grid (``Lambdad``'s ``func``): a foreground smaller than
    ``min_liver_ml``, the smallest liver kept, is emptied (a false find where there is no liver) with one log line;
    others pass unchanged."""

    def __init__(self, min_liver_ml: float):
        self.min_liver_ml = float(min_liver_ml)

    def __call__(self, mask):
        found = int(torch.count_nonzero(torch.as_tensor(mask)))
        volume = found * _voxel_ml(mask.affine)
        if 0 < volume < self.min_liver_ml:
            logger.warning(
                "%s: no liver found: the network's largest find, %.1f mL, is under %g mL (qc_min_liver_ml); the mask "
                "is left empty",
                case_label(getattr(mask, "meta", None)),
                volume,
                self.min_liver_ml,
            )
            mask.zero_()
        return mask


def body_axis(affine) -> int:
    """The grid axis closest to the patient's head-foot (world z) direction."""
    axes = np.asarray(affine, dtype=np.float64)[:3, :3]
    return int(np.argmax(np.abs(axes[2]) / np.linalg.norm(axes, axis=0)))


def verdict(fg: np.ndarray, affine, meta: dict | None, volume_ml, max_uncertain_share: float) -> str:
    """``ok`` or the reasons (docs/qc.md) for a boolean foreground mask ``fg`` on the grid of ``affine``.

    Args:
        fg: the mask's foreground, a 3D boolean array.
        affine: its voxel-to-world matrix.
        meta: its metadata (:data:`UNCERTAIN_KEY` from :class:`RecordConfidence`; absent: no ``uncertain`` check).
        volume_ml: (low, high), the plausible volume of a whole liver in mL.
        max_uncertain_share: the largest :func:`uncertain_share` of a trusted mask.
    """
    fg = np.asarray(fg, dtype=bool)
    if not fg.any():
        return "no_liver"
    reasons = []
    axis = body_axis(affine)
    ends = (np.take(fg, 0, axis=axis).any(), np.take(fg, fg.shape[axis] - 1, axis=axis).any())
    if any(ends):
        reasons.append("cut_by_scan")
    else:
        volume = float(np.count_nonzero(fg)) * _voxel_ml(affine)
        low, high = (float(v) for v in volume_ml)
        if not low <= volume <= high:
            reasons.append("implausible_volume")
    share = (meta or {}).get(UNCERTAIN_KEY)
    if share is not None and float(share) > float(max_uncertain_share):
        reasons.append("uncertain")
    return ";".join(reasons) or OK
