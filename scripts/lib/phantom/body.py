"""The trunk: body outline, skin, subcutaneous fat, the muscle wall around the abdominal cavity, the spine with its
paraspinal and psoas muscles, the ribs, and the arms of domain-randomised cases.

The body is a superellipse in every axial slice (flatter at the back), with nested outlines for skin, fat, muscle
wall and cavity; organs are kept inside the cavity (:func:`cavity2d`).  The ribs and vertebrae repeat along z with
a drawn pitch and phase, so slices show bone where real CT does.
"""

from __future__ import annotations

import numpy as np

from .paint import grid_box, open_grid, paint_cylinder, paint_mask
from .shapes import superellipse
from .tissues import TISSUES

_T = TISSUES  # tissue name -> code


def draw_body(rng) -> dict:
    """Body outline (half-width ``a``, depth ``b``), skin, subcutaneous fat and the muscle wall around the cavity."""
    a_lr, b_ap = rng.uniform(150, 180), rng.uniform(110, 130)
    fat_x, fat_y, wall = rng.uniform(10, 25), rng.uniform(8, 20), rng.uniform(8, 12)
    # slim patients have little fat: keep the cavity at least 240 x 170 mm
    fat_x = max(5.0, min(fat_x, a_lr - 2.0 - wall - 120.0))
    fat_y = max(5.0, min(fat_y, b_ap - 2.0 - wall - 85.0))
    body = {
        "a": a_lr,
        "b": b_ap,
        "p_post": rng.uniform(2.3, 2.8),
        "skin": 2.0,
        "fat_x": fat_x,
        "fat_y": fat_y,
        "wall": wall,
    }
    body["am"] = a_lr - 2.0 - fat_x  # outer boundary of the muscle wall
    body["bm"] = b_ap - 2.0 - fat_y
    body["ai"] = body["am"] - wall  # inner boundary of the muscle wall (cavity)
    body["bi"] = body["bm"] - wall
    return body


def draw_spine(rng, body: dict) -> dict:
    """Vertebral body, canal, arch and processes, their pitch along z, the paraspinal muscles and the psoas."""
    vb_ax, vb_ay = rng.uniform(20, 24), rng.uniform(15, 18)
    y_vb = -body["b"] + rng.uniform(70, 85)
    r_canal = rng.uniform(7, 9)
    y_c = y_vb - vb_ay - r_canal - 2.0
    return {
        "vb_ax": vb_ax,
        "vb_ay": vb_ay,
        "y_vb": y_vb,
        "cortex": rng.uniform(2.0, 3.0),
        "r_canal": r_canal,
        "y_c": y_c,
        "arch": rng.uniform(3.5, 5.0),
        "tp_len": rng.uniform(25, 35),
        "sp_tip": -body["bm"] + rng.uniform(3, 8),
        "ps_x": rng.uniform(28, 36),
        "ps_y": y_c - rng.uniform(8, 14),
        "ps_a": rng.uniform(20, 26),
        "ps_b": rng.uniform(22, 30),
        "pitch": rng.uniform(30, 36),
        "disc": rng.uniform(7, 10),
        "z0": rng.uniform(0, 36),
        "psoas_x": rng.uniform(30, 40),
        "psoas_y": y_vb + rng.uniform(0, 8),
        "psoas_z0": -rng.uniform(100, 130),
        "psoas_r": rng.uniform(18, 25),
    }


def draw_ribs(rng, body: dict, z_liver_top: float) -> dict:
    """Ribs: a band inside the muscle wall, interrupted at front and back, sloping down laterally and repeating
    along z with a drawn pitch."""
    return {
        "thick": min(body["wall"] - 1.0, rng.uniform(7, 10)),
        "psi_min": rng.uniform(0.35, 0.5),
        "psi_max": rng.uniform(2.45, 2.7),
        "z_post": z_liver_top - rng.uniform(55, 70),
        "z_lat": rng.uniform(40, 55),
        "slope": rng.uniform(40, 70),
        "pitch": rng.uniform(28, 36),
        "height": rng.uniform(9, 12),
        "z0": rng.uniform(0, 36),
    }


def draw_arms(rng, body: dict, z_liver_top: float):
    """Arms down beside the body in 35% of the domain-randomised cases (their centre, radius, elbow), else None."""
    arm = None
    if rng.uniform() < 0.35:  # arms down beside the body
        r_arm = rng.uniform(38, 52)
        arm = {
            "x": body["a"] + rng.uniform(5, 30) + r_arm,
            "y": rng.uniform(-30, 20),
            "r": r_arm,
            "z_elbow": z_liver_top - rng.uniform(80, 180),
        }
    return arm


def cavity2d(x2, y2, body: dict, shrink: float = 0.0):
    """Inside of the abdominal muscle wall (the peritoneal / thoracic cavity), optionally shrunk by ``shrink`` mm."""
    return superellipse(x2, y2, body["ai"] - shrink, body["bi"] - shrink, body["p_post"]) < 1.0


def paint_body(tmap, grid, anat):
    """Fill the whole map with the body's layers (air, skin, fat, muscle wall, cavity fat); returns the cavity's
    axial mask."""
    body = anat["body"]
    full = tuple(slice(0, n) for n in grid["shape"])
    xx, yy, _ = open_grid(grid, full)
    x2, y2 = xx[:, :, 0], yy[:, :, 0]
    layer = np.full(x2.shape[:1] + y2.shape[1:], _T["air"], dtype=np.uint8)
    p = body["p_post"]
    layer[superellipse(x2, y2, body["a"], body["b"], p) < 1] = _T["skin"]
    layer[superellipse(x2, y2, body["a"] - body["skin"], body["b"] - body["skin"], p) < 1] = _T["subcutaneous_fat"]
    layer[superellipse(x2, y2, body["am"], body["bm"], p) < 1] = _T["muscle"]
    layer[superellipse(x2, y2, body["ai"], body["bi"], p) < 1] = _T["visceral_fat"]
    tmap[...] = layer[:, :, None]
    return cavity2d(x2, y2, body)


def paint_spine(tmap, grid, anat):
    """Vertebrae (cortex, cancellous core, discs, arch, spinous and transverse processes), canal and the
    paraspinal muscles."""
    sp, body = anat["spine"], anat["body"]
    lo = (-sp["ps_x"] - sp["ps_a"] - sp["tp_len"] - 5, -body["b"], sp.get("z_min", -1e9))
    hi = (sp["ps_x"] + sp["ps_a"] + sp["tp_len"] + 5, sp["y_vb"] + sp["vb_ay"] + 1, 1e9)
    sl = grid_box(grid, lo, hi)
    if sl is None:
        return
    xx, yy, zz = open_grid(grid, sl)
    x2, y2 = xx[:, :, 0], yy[:, :, 0]
    codes = np.zeros(x2.shape[:1] + y2.shape[1:], dtype=np.uint8)
    inside_wall = superellipse(x2, y2, body["am"], body["bm"], body["p_post"]) < 1
    for sgn in (-1.0, 1.0):
        e = ((x2 - sgn * sp["ps_x"]) / sp["ps_a"]) ** 2 + ((y2 - sp["ps_y"]) / sp["ps_b"]) ** 2
        codes[(e < 1) & inside_wall] = _T["muscle"]
    vb = ((x2 / sp["vb_ax"]) ** 2 + ((y2 - sp["y_vb"]) / sp["vb_ay"]) ** 2) < 1
    vb_in = ((x2 / (sp["vb_ax"] - sp["cortex"])) ** 2 + ((y2 - sp["y_vb"]) / (sp["vb_ay"] - sp["cortex"])) ** 2) < 1
    rc = np.sqrt(x2**2 + (y2 - sp["y_c"]) ** 2)
    arch = rc < sp["r_canal"] + sp["arch"]
    spinous = (np.abs(x2) < 3.0) & (y2 < sp["y_c"]) & (y2 > sp["sp_tip"])
    transverse = (np.abs(y2 - sp["y_c"]) < 3.5) & (np.abs(x2) < sp["r_canal"] + sp["tp_len"])
    codes[arch | vb] = _T["cortical_bone"]
    codes[vb_in] = _T["cancellous_bone"]
    codes[rc < sp["r_canal"]] = _T["csf"]
    z = zz[0, 0, :]
    phase = np.mod((z - sp["z0"]) / sp["pitch"], 1.0)
    disc_z = phase < sp["disc"] / sp["pitch"]
    processes_z = (phase > 0.35) & (phase < 0.8)  # spinous and transverse processes: mid-vertebra only
    vol = np.broadcast_to(codes[:, :, None], x2.shape[:1] + y2.shape[1:] + z.shape).copy()
    vol[vb[:, :, None] & disc_z[None, None, :]] = _T["disc"]
    vol[((spinous | transverse) & (codes != _T["csf"]))[:, :, None] & processes_z[None, None, :]] = _T["cortical_bone"]
    sub = tmap[sl]
    nz = vol != 0
    sub[nz] = vol[nz]


def paint_psoas(tmap, grid, anat):
    """Both psoas muscles: cones beside the spine that widen downwards from ``psoas_z0``."""
    sp = anat["spine"]
    z_stop = sp["psoas_z0"]
    for sgn in (-1.0, 1.0):
        cx, cy, rmax = sgn * sp["psoas_x"], sp["psoas_y"], sp["psoas_r"]
        sl = grid_box(grid, (cx - rmax, cy - rmax, -1e9), (cx + rmax, cy + rmax, z_stop))
        if sl is None:
            continue
        xx, yy, zz = open_grid(grid, sl)
        r = np.clip((z_stop - zz) * 0.25, 0.0, rmax)
        mask = ((xx - cx) ** 2 + (yy - cy) ** 2) < r**2
        paint_mask(tmap, sl, mask, _T["muscle"])


def paint_ribs(tmap, grid, anat):
    """Ribs as cortical bone in the band just outside the cavity, where the drawn rib pattern is present."""
    body, rb = anat["body"], anat["ribs"]
    z_from = rb["z_post"] - rb["z_lat"] - 1.0
    sl = grid_box(grid, (-1e9, -1e9, z_from), (1e9, 1e9, 1e9))
    if sl is None:
        return
    xx, yy, zz = open_grid(grid, sl)
    x2, y2 = xx[:, :, 0], yy[:, :, 0]
    p = body["p_post"]
    ring = (superellipse(x2, y2, body["ai"], body["bi"], p) >= 1) & (
        superellipse(x2, y2, body["ai"] + rb["thick"], body["bi"] + rb["thick"], p) < 1
    )
    psi = np.arctan2(np.abs(x2) / body["a"], -y2 / body["b"])
    ring &= (psi > rb["psi_min"]) & (psi < rb["psi_max"])
    ii, jj = np.nonzero(ring)
    if len(ii) == 0:
        return
    psi_r = psi[ii, jj].astype(np.float32)
    z = zz[0, 0, :]
    phase = (z[None, :] - np.float32(rb["z0"]) + np.float32(rb["slope"]) * psi_r[:, None]) / np.float32(rb["pitch"])
    present = (phase - np.floor(phase)) < np.float32(rb["height"] / rb["pitch"])
    z_low = rb["z_post"] - rb["z_lat"] * np.sin(psi_r)
    present &= z[None, :] > z_low[:, None]
    sub = tmap[sl]
    vals = sub[ii, jj, :]
    vals[present] = _T["cortical_bone"]
    sub[ii, jj, :] = vals


def paint_arms(tmap, grid, arm: dict, z_top: float):
    """Both arms beside the body: skin, fat, muscle and humerus (upper arm) or two forearm bones."""
    for s in (1.0, -1.0):
        x, y, r = s * arm["x"], arm["y"], arm["r"]
        paint_cylinder(tmap, grid, x, y, r, -1e9, z_top, _T["skin"], only=(_T["air"],))
        paint_cylinder(tmap, grid, x, y, r - 2.0, -1e9, z_top, _T["subcutaneous_fat"], only=(_T["skin"],))
        paint_cylinder(tmap, grid, x, y, 0.75 * r, -1e9, z_top, _T["muscle"], only=(_T["subcutaneous_fat"],))
        paint_cylinder(tmap, grid, x, y, 11.0, arm["z_elbow"], z_top, _T["cortical_bone"])
        paint_cylinder(tmap, grid, x, y, 7.5, arm["z_elbow"], z_top, _T["cancellous_bone"])
        for dx in (-12.0, 12.0):
            paint_cylinder(tmap, grid, x + dx, y, 6.0, -1e9, arm["z_elbow"], _T["cortical_bone"])
