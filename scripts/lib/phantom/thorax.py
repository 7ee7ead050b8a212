"""The lower thorax: diaphragm, lungs, heart and (wide2) the pericardium with its fat.

The diaphragm is two gaussian domes, the right one over the liver's top, so the liver always sits under it; above
the domes the cavity is lung, except the mediastinum in front of the spine, and the heart sits on the domes.
"""

from __future__ import annotations

import math

import numpy as np

from .appearance import WIDE2_PHASE_HU
from .paint import blob_box, grid_box, open_grid, paint_blob, paint_mask
from .shapes import blob_field, draw_blob, rotation
from .tissues import TISSUES

_T = TISSUES  # tissue name -> code


def draw_diaphragm(rng, liver_top) -> dict:
    """The diaphragm's domes: the right one just above the liver's top ``liver_top`` (x, y, z mm), the left one
    lower; the base between them drops towards the back."""
    xt, yt, zt = liver_top
    return {
        "right": (xt, yt, zt + rng.uniform(3, 6)),
        "left": (-rng.uniform(50, 80), yt + rng.uniform(-10, 10), zt - rng.uniform(10, 25)),
        "wx": rng.uniform(55, 75),
        "wy": rng.uniform(60, 80),
        "z_low": zt - rng.uniform(45, 65),
        "post_drop": rng.uniform(15, 30),
        "thick": rng.uniform(4, 6),
    }


def draw_heart(rng, z_liver_top: float) -> dict:
    """The heart: a blob left of the midline, 40-60 mm above the liver's top."""
    deg = math.pi / 180.0
    return draw_blob(
        rng,
        (-rng.uniform(10, 30), rng.uniform(10, 35), z_liver_top + rng.uniform(40, 60)),
        (rng.uniform(55, 70), rng.uniform(45, 55), rng.uniform(45, 55)),
        rotation(0.0, 0.0, rng.uniform(-30, 0) * deg),
        3,
        0.05,
    )


def draw_pericardium(seed: int, phase: int, hu: np.ndarray) -> dict:
    """Pericardium (stream [seed, 10]): a 1-3 mm soft-tissue rim around the heart over a fat layer 1-4 mm thick,
    thickening by 4-15 mm towards the apex (left, anterior, down) and the diaphragmatic surface; sets HU in ``hu``."""
    rng = np.random.default_rng([seed, 10])
    apex = np.array([-1.0, 0.8, -0.7]) + rng.normal(0.0, 0.2, 3)
    peri = {
        "rim": rng.uniform(1, 3),
        "fat": rng.uniform(1, 4),
        "fat_apex": rng.uniform(4, 15),
        "apex": apex / np.linalg.norm(apex),
    }
    hu[_T["pericardium"]] = rng.uniform(*WIDE2_PHASE_HU["pericardium"][phase])
    hu[_T["pericardial_fat"]] = rng.uniform(-115, -85)
    return peri


def diaphragm2d(x2, y2, anat):
    """Height (mm) of the diaphragm surface: two gaussian domes over a base that dips posteriorly."""
    dp = anat["diaphragm"]
    out = None
    for key in ("right", "left"):
        xa, ya, za = dp[key]
        dome = dp["z_low"] + (za - dp["z_low"]) * np.exp(
            -0.5 * (((x2 - xa) / dp["wx"]) ** 2 + ((y2 - ya) / dp["wy"]) ** 2)
        )
        out = dome if out is None else np.maximum(out, dome)
    drop = dp["post_drop"] * np.clip(-y2 / anat["body"]["bi"], 0.0, 1.0)
    return (out - drop).astype(np.float32)


def paint_lungs_heart(tmap, grid, anat, cavity2d):
    """Diaphragm muscle, the lungs above it (outside the mediastinum) and the heart, in the cavity ``cavity2d``."""
    sp, dp = anat["spine"], anat["diaphragm"]
    full_xy = (slice(0, grid["shape"][0]), slice(0, grid["shape"][1]), slice(0, 1))
    xx, yy, _ = open_grid(grid, full_xy)
    x2, y2 = xx[:, :, 0], yy[:, :, 0]
    zd = diaphragm2d(x2, y2, anat)
    z_from = float(zd[cavity2d].min()) - dp["thick"] - 1.0 if np.any(cavity2d) else 1e9
    sl = grid_box(grid, (-1e9, -1e9, z_from), (1e9, 1e9, 1e9))
    if sl is None:
        return
    _, _, zz = open_grid(grid, sl)
    zd3 = zd[:, :, None]
    mediastinum = ((x2 / 32.0) ** 2 + ((y2 - sp["y_vb"]) / (sp["vb_ay"] + 28.0)) ** 2) < 1.0
    above = zz > zd3
    muscle = (~above) & (zz > zd3 - np.float32(dp["thick"])) & cavity2d[:, :, None]
    lung = above & (cavity2d & ~mediastinum)[:, :, None]
    sub = tmap[sl]
    sub[muscle] = _T["muscle"]
    sub[lung] = _T["lung"]
    del muscle, lung, above
    heart = anat["heart"]

    def above_diaphragm(xh, yh, zh):
        return zh > diaphragm2d(xh[:, :, 0], yh[:, :, 0], anat)[:, :, None] + np.float32(3.0)

    paint_blob(tmap, grid, heart, _T["heart"], extra=above_diaphragm)


def paint_pericardium(tmap, grid, anat: dict, peri: dict):
    """Pericardial fat and, outside it, the pericardium around the heart above the diaphragm, over lung and
    mediastinal fat only (the heart itself stays); the fat is thickest towards the apex and under the heart."""
    heart = anat["heart"]
    reach_mm = peri["fat"] + peri["fat_apex"] + peri["rim"]
    sl = blob_box(grid, heart, 1.0 + reach_mm / float(np.min(heart["axes"])))
    if sl is None:
        return
    xx, yy, zz = open_grid(grid, sl)
    c = heart["centre"].tolist()
    dx, dy, dz = xx - np.float32(c[0]), yy - np.float32(c[1]), zz - np.float32(c[2])
    r = np.sqrt(dx * dx + dy * dy + dz * dz) + np.float32(1e-3)
    outside = r * (np.float32(1.0) - np.float32(1.0) / blob_field(heart, xx, yy, zz))  # mm beyond the surface
    a = peri["apex"].tolist()
    toward_apex = np.clip((dx * np.float32(a[0]) + dy * np.float32(a[1]) + dz * np.float32(a[2])) / r, 0.0, 1.0)
    underside = np.clip(-dz / r, 0.0, 1.0)
    fat = np.float32(peri["fat"]) + np.float32(peri["fat_apex"]) * np.maximum(toward_apex, underside) ** 2
    above = zz > diaphragm2d(xx[:, :, 0], yy[:, :, 0], anat)[:, :, None]
    only = (_T["lung"], _T["visceral_fat"])
    paint_mask(tmap, sl, above & (outside < fat + np.float32(peri["rim"])), _T["pericardium"], only)
    paint_mask(tmap, sl, above & (outside < fat), _T["pericardial_fat"], (_T["pericardium"],))
