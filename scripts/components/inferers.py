"""Sliding-window inference inside the liver's box: a coarse pass finds the liver, the fine pass runs only there.

``LiverBoxInferer`` wraps the configured sliding-window inferer (MONAI has no coarse-to-fine inferer): it runs it on
the image averaged down by ``scale``, boxes the liver found there (:func:`coarse_box`), grows the box to what the same
windows cover (:func:`filled`), runs the inferer on that crop only and pastes the logits into a background-filled
output with the input's shape and metadata (the trace that postprocessing inverts). The box widens while the liver
reaches one of its faces, and the whole image is used when the coarse pass boxed something else: docs/workflows.md,
"What makes inference fast", says when and why. Both passes use the plain path's windows (``roi_size``), so ONNX
Runtime and TensorRT networks with a fixed window shape run unchanged; tests/test_inferers.py compares the paths.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import Inferer
from monai.transforms.utils import get_largest_connected_component_mask
from monai.utils import convert_to_dst_type, ensure_tuple_rep, fall_back_tuple
from scipy import ndimage

from scripts import as_bool
from scripts.components.postprocess import foreground

logger = logging.getLogger(__name__)

BACKGROUND_LOGIT = 20.0  # outside the box: softmax gives background 1 - 2e-9 (fp16-safe, unlike inf)


def coarse_box(logits: torch.Tensor, fine_shape, margin: int, min_share: float = 1.0):
    """The box ``(lo, hi)`` on the fine grid of ``fine_shape`` around the foreground components of coarse ``logits``
    (C, ...) that hold at least ``min_share`` of the largest one's voxels (1.0: the largest alone), widened by
    ``margin`` voxels and clipped to the grid, and those components' volume in fine voxels: ``(lo, hi, volume)``;
    None when there is no foreground."""
    fg = foreground(logits)
    if not bool(fg.any()):
        return None
    if min_share >= 1.0:
        idx = torch.nonzero(get_largest_connected_component_mask(fg))
    else:  # full connectivity, as MONAI's largest-component transforms
        labels, _ = ndimage.label(fg.cpu().numpy(), structure=np.ones((3,) * fg.ndim))
        sizes = np.bincount(labels.ravel())[1:]
        idx = torch.as_tensor(np.argwhere(np.isin(labels, np.flatnonzero(sizes >= min_share * sizes.max()) + 1)))
    lo_c, hi_c = idx.min(0).values.tolist(), (idx.max(0).values + 1).tolist()
    lo, hi = [], []
    for a, b, n_fine, n_coarse in zip(lo_c, hi_c, fine_shape, fg.shape, strict=True):
        step = n_fine / n_coarse  # coarse voxel i covers fine voxels [i * step, (i + 1) * step)
        lo.append(max(0, math.floor(a * step) - margin))
        hi.append(min(n_fine, math.ceil(b * step) + margin))
    return lo, hi, len(idx) * math.prod(n / c for n, c in zip(fine_shape, fg.shape, strict=True))


def _inner_faces(fg: torch.Tensor, lo, hi, shape) -> list:
    """The faces ``(axis, side)`` (side 0: low, 1: high) of the crop that hold foreground ``fg`` and lie inside the
    image."""
    return [
        (axis, side)
        for axis, (a, b, n) in enumerate(zip(lo, hi, shape, strict=True))
        for side, inside in ((0, a > 0), (1, b < n))
        if inside and bool(fg.select(axis, -side).any())
    ]


def faces_reached(fg: torch.Tensor, lo, hi, shape) -> list:
    """The faces ``(axis, side)`` of the crop inside the image that the largest component of the crop's foreground
    ``fg`` touches: the liver may go on beyond them. Islands elsewhere do not count (the largest component is taken
    only when some foreground is on such a face)."""
    if not _inner_faces(fg, lo, hi, shape):
        return []
    return _inner_faces(get_largest_connected_component_mask(fg), lo, hi, shape)


def filled(lo, hi, shape, roi, overlap):
    """``(lo, hi)`` grown on each axis, about its centre and within the image of ``shape``, to the longest crop that
    the same number of sliding windows of ``roi`` with ``overlap`` (MONAI's scan: ``int(roi * (1 - overlap))`` apart)
    covers. The windows cost the same, and they see the image instead of the zero padding that MONAI adds around a
    crop shorter than a window."""
    overlap = ensure_tuple_rep(overlap, len(shape))
    lo, hi = list(lo), list(hi)
    for axis, (n, r, o) in enumerate(zip(shape, roi, overlap, strict=True)):
        length, step = hi[axis] - lo[axis], max(1, int(r * (1 - o)))
        windows = 1 if length <= r else math.ceil((length - r) / step) + 1
        target = min(n, r + (windows - 1) * step)
        if target > length:
            a = min(max(0, lo[axis] - (target - length) // 2), n - target)
            lo[axis], hi[axis] = a, a + target
    return lo, hi


def widened(lo, hi, faces, step: int, shape):
    """``(lo, hi)`` with each of ``faces`` moved out by ``step`` voxels, clipped to the image of ``shape``."""
    lo, hi = list(lo), list(hi)
    for axis, side in faces:
        if side == 0:
            lo[axis] = max(0, lo[axis] - step)
        else:
            hi[axis] = min(shape[axis], hi[axis] + step)
    return lo, hi


class LiverBoxInferer(Inferer):
    """``inferer`` run on the liver's box only, found by ``inferer`` on the image averaged down by ``scale``.

    Args:
        inferer: the sliding-window inferer of the plain path (its windows, overlap and blending are used for both
            passes).
        scale: the coarse grid's voxel size in network-grid voxels (2: 4 mm for a 2 mm network grid).
        min_share: the coarse components boxed: those with at least this share of the largest one's voxels (1.0: the
            largest alone; the largest at 4 mm need not be the liver).
        margin: network-grid voxels added on each side of the coarse box.
        grow: network-grid voxels a face of the box moves out by when the fine liver reaches it.
        grow_steps: how many times the box may widen before the whole image is used (0: at once, as before).
        min_liver_ml: the least volume (mL) of the box's largest fine component (needs ``pixdim``); less: whole image.
        min_confirmed: the least share of the boxed coarse components' volume that the box's largest fine component
            must hold; less: the whole image (0: no check).
        pixdim: the network grid's voxel size (mm), for ``min_liver_ml``.
        enabled: False (or "false", from the command line): ``inferer`` alone over the whole image (the plain path).
    """

    def __init__(
        self,
        inferer: Inferer,
        scale: int = 2,
        min_share: float = 1.0,
        margin: int = 8,
        grow: int = 24,
        grow_steps: int = 2,
        min_liver_ml: float = 0.0,
        min_confirmed: float = 0.0,
        pixdim=None,
        enabled=True,
    ):
        super().__init__()
        if scale < 1 or margin < 0:
            raise ValueError(f"LiverBoxInferer needs scale >= 1 and margin >= 0, got {scale} and {margin}")
        if grow < 1 or grow_steps < 0:
            raise ValueError(f"LiverBoxInferer needs grow >= 1 and grow_steps >= 0, got {grow} and {grow_steps}")
        self.inferer, self.scale, self.margin = inferer, int(scale), int(margin)
        self.grow, self.grow_steps = int(grow), int(grow_steps)
        if not 0.0 < min_share <= 1.0:
            raise ValueError(f"LiverBoxInferer needs 0 < min_share <= 1, got {min_share}")
        self.min_share = float(min_share)
        if min_liver_ml < 0 or (min_liver_ml > 0 and pixdim is None):
            raise ValueError(f"LiverBoxInferer needs min_liver_ml >= 0, and pixdim with it, got {min_liver_ml}")
        self.min_voxels = float(min_liver_ml) * 1000.0 / math.prod(float(p) for p in pixdim) if min_liver_ml else 0.0
        if not 0.0 <= min_confirmed <= 1.0:
            raise ValueError(f"LiverBoxInferer needs 0 <= min_confirmed <= 1, got {min_confirmed}")
        self.min_confirmed = float(min_confirmed)
        self.enabled = as_bool(enabled)

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs):
        if not self.enabled:
            return self.inferer(inputs, network, *args, **kwargs)
        x = inputs.as_tensor() if hasattr(inputs, "as_tensor") else inputs
        out = torch.cat([self._one(x[i : i + 1], network, *args, **kwargs) for i in range(x.shape[0])])
        return convert_to_dst_type(out, inputs, dtype=out.dtype)[0]  # the inputs' metadata and trace

    def _one(self, x: torch.Tensor, network, *args, **kwargs) -> torch.Tensor:
        shape = tuple(x.shape[2:])
        roi = getattr(self.inferer, "roi_size", None)
        roi = None if roi is None else fall_back_tuple(roi, shape)  # an int, or a size < 1 (the image's) per axis
        if roi is not None and all(n <= r for n, r in zip(shape, roi, strict=True)):
            return self.inferer(x, network, *args, **kwargs)  # one window: nothing to save
        coarse = F.adaptive_avg_pool3d(x, [math.ceil(n / self.scale) for n in shape]) if self.scale > 1 else x
        box = coarse_box(self.inferer(coarse, network, *args, **kwargs)[0], shape, self.margin, self.min_share)
        if box is None:
            logger.info("no liver at the coarse pass: sliding window over the whole image")
            return self.inferer(x, network, *args, **kwargs)
        lo, hi, coarse_voxels = box
        overlap = getattr(self.inferer, "overlap", None)
        for step in range(self.grow_steps + 1):
            if roi is not None and overlap is not None:
                lo, hi = filled(lo, hi, shape, roi, overlap)
            logger.debug("the fine pass's box: %s to %s", lo, hi)
            crop = x[(..., *(slice(a, b) for a, b in zip(lo, hi, strict=True)))]
            fine = self.inferer(crop, network, *args, **kwargs)
            fg = foreground(fine[0])
            faces = faces_reached(fg, lo, hi, shape)
            if not faces:
                break
            if step == self.grow_steps:
                logger.info("the liver reaches the edge of its box: sliding window over the whole image")
                return self.inferer(x, network, *args, **kwargs)
            logger.info("the liver reaches %d face(s) of its box: widening them by %d voxels", len(faces), self.grow)
            lo, hi = widened(lo, hi, faces, self.grow, shape)
        found = int(get_largest_connected_component_mask(fg).sum()) if bool(fg.any()) else 0
        logger.debug("the box's liver: %d voxels at the fine pass, %.0f at the coarse pass", found, coarse_voxels)
        if found < self.min_voxels or found < self.min_confirmed * coarse_voxels:
            logger.info(
                "the fine pass confirms %d of the coarse pass's %.0f liver voxels, too few: sliding window over the "
                "whole image",
                found,
                coarse_voxels,
            )
            return self.inferer(x, network, *args, **kwargs)
        out = torch.zeros((1, fine.shape[1], *shape), dtype=fine.dtype, device=fine.device)
        out[:, 1:] = -BACKGROUND_LOGIT
        out[(..., *(slice(a, b) for a, b in zip(lo, hi, strict=True)))] = fine
        return out
