"""Sliding-window inference inside the liver's box: a coarse pass finds the liver, the fine pass runs only there.

On an abdominal CT the body's box on the 2 mm network grid takes many windows of 96^3, and the liver fills only a
part of it: windows over the rest only confirm background. ``LiverBoxInferer`` wraps the configured sliding-window
inferer (MONAI has no coarse-to-fine inferer) and, per image:

1. averages the image down by ``scale`` (2: a 4 mm grid) and runs the same inferer on it: usually one window;
2. boxes the connected foreground components there that hold at least ``min_share`` of the largest one's voxels
   (the config boxes every component of a tenth or more: at 4 mm the largest need not be the liver, which may show
   in two pieces), maps the box back to the network grid, adds ``margin`` voxels on each side, and grows each side
   to the longest crop that the same number of windows covers (``filled``): the windows cost the same and see image,
   where MONAI would pad a crop shorter than a window with zeros, and a network sees less liver in a zero-padded
   window than in the same box filled with image;
3. runs the inferer on that crop only (a few windows instead of those over the whole image; docs/benchmark.md counts
   them) and pastes the logits into a background-filled output of the input's shape, with the input's metadata (the
   preprocessing trace that the postprocessing inverts).

Both passes use the same windows (``roi_size``) as the plain path, so ONNX Runtime and TensorRT networks with a fixed
window shape run unchanged. When the fine liver touches a face of the crop that is not the image's own border (the
liver may go on beyond the box: a thin left lobe can vanish on the 4 mm grid), those faces move out by ``grow``
voxels and the fine pass runs again on the wider crop, up to ``grow_steps`` times. The result falls back to the plain
sliding window over the whole image when the coarse pass finds no liver, when the liver still reaches a face after
the last widening, or when the fine pass does not confirm the coarse liver: the box's largest fine component holds
less than ``min_liver_ml`` (on a small liver-centred crop the coarse pass can box a small blob in a corner), or less
than ``min_confirmed`` of the boxed coarse components' volume (a network that sees liver at 4 mm where there is none
at 2 mm). Either way the coarse pass boxed something else. An image that fits in one window goes straight to the plain
path, which then costs one window. tests/test_inferers.py checks the widening, the fallbacks, and compares with the
plain path.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import Inferer, SimpleInferer
from monai.transforms.utils import get_largest_connected_component_mask
from monai.utils import convert_to_dst_type, ensure_tuple_rep, fall_back_tuple
from scipy import ndimage

from scripts import as_bool
from scripts.components.postprocess import foreground

logger = logging.getLogger(__name__)

BACKGROUND_LOGIT = 20.0  # outside the box: softmax gives background 1 - 2e-9 (fp16-safe, unlike inf)


def main_components(fg: torch.Tensor, min_share: float = 1.0) -> torch.Tensor:
    """The connected components of the mask ``fg`` (full connectivity, as MONAI's largest-component transforms) that
    hold at least ``min_share`` of the largest one's voxels; 1.0: the largest alone."""
    if min_share >= 1.0:
        return get_largest_connected_component_mask(fg)
    labels, _ = ndimage.label(fg.cpu().numpy(), structure=np.ones((3,) * fg.ndim))
    sizes = np.bincount(labels.ravel())[1:]
    kept = np.flatnonzero(sizes >= min_share * sizes.max()) + 1
    return torch.as_tensor(np.isin(labels, kept), device=fg.device)


def coarse_box(logits: torch.Tensor, fine_shape, margin: int, min_share: float = 1.0):
    """The box ``(lo, hi)`` on the fine grid of ``fine_shape`` around the foreground components of coarse ``logits``
    (C, ...) that hold at least ``min_share`` of the largest one's voxels (1.0: the largest alone), widened by
    ``margin`` voxels and clipped to the grid, and those components' volume in fine voxels: ``(lo, hi, volume)``;
    None when there is no foreground."""
    fg = foreground(logits)
    if not bool(fg.any()):
        return None
    idx = torch.nonzero(main_components(fg, min_share))
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
    faces = []
    for axis, (a, b, n) in enumerate(zip(lo, hi, shape, strict=True)):
        if a > 0 and bool(fg.select(axis, 0).any()):
            faces.append((axis, 0))
        if b < n and bool(fg.select(axis, -1).any()):
            faces.append((axis, 1))
    return faces


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
        min_liver_ml: the least volume (mL) of the box's largest fine component; less: the whole image. Needs
            ``pixdim``.
        min_confirmed: the least share of the boxed coarse components' volume that the box's largest fine component
            must hold; less: the whole image (0: no check).
        pixdim: the network grid's voxel size (mm), for ``min_liver_ml``.
        enabled: False (or "false", as a command-line override arrives) runs ``inferer`` alone over the whole image
            (the plain path).
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


class CpuAutocastInferer(SimpleInferer):
    """MONAI's ``SimpleInferer`` under ``torch.autocast("cpu", dtype=torch.bfloat16)``; the output returns as float32.

    MONAI's trainers autocast only on CUDA (``amp=True`` means ``torch.autocast("cuda")``), so on a CPU with native
    bfloat16 this inferer gives training the same mixed precision: convolutions in bfloat16, the loss in float32 on
    the float32 output. With ``enabled`` false it is ``SimpleInferer``. train.yaml enables it through
    ``scripts.components.hardware.cpu_autocast``.
    """

    def __init__(self, enabled=True):

        super().__init__()
        self.enabled = as_bool(enabled)

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs):
        if not self.enabled:
            return super().__call__(inputs, network, *args, **kwargs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = super().__call__(inputs, network, *args, **kwargs)
        return out.float()
