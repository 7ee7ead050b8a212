"""The liver: lobes placed under the right dome at a drawn volume, gallbladder, tumours, and (wide2) cirrhosis.

The liver is the label, so its shape decides what a network learns: two or three perturbed ellipsoids (right and
left lobe, often a caudate part) are scaled to a drawn volume that grows with the patient, pressed against the right
and front of the cavity, and kept out of the spine, the great vessels, the right kidney and the gallbladder.  Its
points on a coarse internal grid (:data:`COARSE_MM`) carry the depth below the surface, where vessels and tumours
are placed.  A cirrhotic liver reshapes the lobes, roughens their surface and widens two fissures.  A wide4 liver
(:mod:`.variants` draws it) may add tapered tips (tongues: :func:`.shapes.tongue`), which stay in the label at least a
voxel thick, and a sleeve round the retrohepatic IVC, whose margin it then drops, with the portal vein cut out of
its hilum.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .body import cavity2d
from .paint import (
    apply_blob,
    grid_box,
    grid_from_coords,
    half_voxel,
    open_grid,
    paint_blob,
    paint_mask,
    paint_tube,
    remove_tube,
    sub_box,
)
from .shapes import (
    blob_field,
    blob_reach,
    draw_blob,
    draw_waves,
    grown,
    moved,
    rotation,
    tongue_bounds,
    tongue_field,
    wave_field,
)
from .thorax import diaphragm2d
from .tissues import LIVER_CODES, MAX_TUMOURS, TISSUES, TUMOUR_CODES

_T = TISSUES  # tissue name -> code

COARSE_MM = 3.5  # resolution of the internal liver model used for volume control and placement


def _spine_zone2d(x2, y2, anat: dict, ivc_margin: float = 1.5):
    """Region the liver must not enter: vertebra, posterior elements, paraspinal muscles, aorta and IVC (with a
    margin of ``ivc_margin`` mm; none where the liver wraps it)."""
    sp, ves = anat["spine"], anat["vessels"]
    zone = ((x2 / (sp["vb_ax"] + 8.0)) ** 2 + ((y2 - sp["y_vb"] + 14.0) / (sp["vb_ay"] + 18.0)) ** 2) < 1.0
    for sgn in (-1.0, 1.0):
        zone = zone | (
            (((x2 - sgn * sp["ps_x"]) / (sp["ps_a"] + 3.0)) ** 2 + ((y2 - sp["ps_y"]) / (sp["ps_b"] + 3.0)) ** 2) < 1.0
        )
    for key, grow in (("aorta", 3.0), ("ivc", ivc_margin)):
        v = ves[key]
        zone = zone | ((((x2 - v["x"]) / (v["rx"] + grow)) ** 2 + ((y2 - v["y"]) / (v["ry"] + grow)) ** 2) < 1.0)
    return zone


def _carve(mask, sl, grid: dict, anat: dict, liver: dict) -> None:
    """Remove from ``mask`` (covering grid box ``sl``) what the liver keeps out of: outside the cavity, the spine
    zone, the right kidney and the space behind it, the gallbladder, ``liver["keep_out"]`` and (wide4)
    ``liver["keep_out_tubes"]`` and, with ``liver["under_diaphragm"]``, all above the diaphragm's muscle."""
    xx, yy, _ = open_grid(grid, sl)
    x2, y2 = xx[:, :, 0], yy[:, :, 0]
    keep2d = cavity2d(x2, y2, anat["body"], shrink=3.0) & ~_spine_zone2d(x2, y2, anat, liver.get("ivc_margin_mm", 1.5))
    mask &= keep2d[:, :, None]
    apply_blob(mask, sl, grid, anat["kidneys"][0]["outer"], 1.12, "andnot")
    apply_blob(mask, sl, grid, anat["kidneys"][0]["shadow"], 1.0, "andnot")
    if liver["gallbladder"] is not None:
        apply_blob(mask, sl, grid, liver["gallbladder"], 1.15, "andnot")
    for blob in liver.get("keep_out", ()):  # the adrenals with a fat margin (wide4: also the stomach and spleen)
        apply_blob(mask, sl, grid, blob, 1.0, "andnot")
    for tube in liver.get("keep_out_tubes", ()):  # wide4's refitted livers: the pancreas and the splenic vein
        remove_tube(mask, sl, grid, *tube)
    if liver.get("under_diaphragm"):  # wide4's refitted livers, whose top moved under the wide3 liver's diaphragm
        mask &= _under_diaphragm(xx, yy, open_grid(grid, sl)[2], anat)


def liver_mask(grid: dict, anat: dict, liver: dict):
    """Liver mask on its bounding box of ``grid``: (slices, bool array) or None.  Includes all carve-outs."""
    sl = grid_box(grid, liver["lo"], liver["hi"])
    if sl is None:
        return None
    mask = np.zeros(tuple(s.stop - s.start for s in sl), dtype=bool)
    if liver.get("nodules") is None:
        for lobe in liver["lobes"]:
            apply_blob(mask, sl, grid, lobe, 1.0, "or")
    else:  # cirrhotic liver
        mask |= _nodular_lobes(grid, sl, liver)
    if liver.get("tips"):  # wide4
        mask |= _tips_mask(grid, sl, anat, liver, (0.0, 0.0, 0.0))
    if liver.get("ivc_wrap") is not None:  # wide4
        _add_ivc_wrap(mask, grid, sl, anat, liver["ivc_wrap"])
    _carve(mask, sl, grid, anat, liver)
    return sl, mask


def _under_diaphragm(xx, yy, zz, anat: dict):
    """Whether open-grid points lie below the diaphragm muscle (where the liver's added parts may go)."""
    return zz < diaphragm2d(xx[:, :, 0], yy[:, :, 0], anat)[:, :, None] - np.float32(anat["diaphragm"]["thick"])


def _tips_mask(grid: dict, sl, anat: dict, liver: dict, floor) -> np.ndarray:
    """The wide4 liver tips on grid box ``sl``: each tongue at least ``floor`` mm (per patient axis) in half-thickness
    and half-width, above its lowest height ``z_min``, under the diaphragm and out of its own ``keep_out`` organs
    (the liver's carve-outs come after)."""
    mask = np.zeros(tuple(s.stop - s.start for s in sl), dtype=bool)
    for tip in liver["tips"]:
        got = sub_box(grid, sl, *tongue_bounds(tip["tongue"], max(floor)))
        if got is None:
            continue
        inter, rel = got
        xx, yy, zz = open_grid(grid, inter)
        part = (tongue_field(tip["tongue"], xx, yy, zz, floor) < np.float32(1.0)) & (zz > np.float32(tip["z_min"]))
        part &= _under_diaphragm(xx, yy, zz, anat)
        for blob in tip["keep_out"]:
            apply_blob(part, inter, grid, blob, 1.0, "andnot")
        mask[rel] |= part
    return mask


def _add_ivc_wrap(mask, grid: dict, sl, anat: dict, wrap: dict) -> None:
    """OR the liver round the retrohepatic IVC (wide4) into ``mask`` (covering grid box ``sl``): a sleeve ``thick``
    mm round the vessel between heights ``z_lo`` and ``z_hi``, thinning towards both, under the diaphragm, open over
    ``half_open`` radians either side of the direction ``open`` (towards the back, where the spine, the aorta and the
    right crus lie), and out of its ``keep_out`` organs.  The vessel itself stays out through the spine zone."""
    ivc, t = anat["vessels"]["ivc"], wrap["thick"]
    lo = (ivc["x"] - ivc["rx"] - t, ivc["y"] - ivc["ry"] - t, wrap["z_lo"])
    got = sub_box(grid, sl, lo, (ivc["x"] + ivc["rx"] + t, ivc["y"] + ivc["ry"] + t, wrap["z_hi"]))
    if got is None:
        return
    inter, rel = got
    xx, yy, zz = open_grid(grid, inter)
    zc, hz = 0.5 * (wrap["z_lo"] + wrap["z_hi"]), 0.5 * (wrap["z_hi"] - wrap["z_lo"])
    tz = np.float32(t) * np.sqrt(np.clip(1.0 - ((zz - np.float32(zc)) / np.float32(hz)) ** 2, 0.0, 1.0))
    u, v = xx - np.float32(ivc["x"]), yy - np.float32(ivc["y"])
    sleeve = (u / (np.float32(ivc["rx"]) + tz)) ** 2 + (v / (np.float32(ivc["ry"]) + tz)) ** 2 < np.float32(1.0)
    phi = np.arctan2(v[:, :, 0] / np.float32(ivc["ry"]), u[:, :, 0] / np.float32(ivc["rx"]))
    off = np.abs(np.mod(phi - np.float32(wrap["open"]) + np.float32(math.pi), np.float32(2.0 * math.pi)) - math.pi)
    part = sleeve & (off > np.float32(wrap["half_open"]))[:, :, None] & _under_diaphragm(xx, yy, zz, anat)
    for blob in wrap["keep_out"]:
        apply_blob(part, inter, grid, blob, 1.0, "andnot")
    mask[rel] |= part


def thin_tip_mask(grid: dict, anat: dict, liver: dict):
    """Where the wide4 tips cover the grid when made at least a voxel thick and wide, with the liver's carve-outs:
    (slices, bool array), or None without tips or without ``tip_floor``.  Voxels a tip passes through without
    covering their centre stay in the label this way, at partial-volume intensity in the image."""
    if not liver.get("tips") or not liver.get("tip_floor"):
        return None
    sl = grid_box(grid, liver["lo"], liver["hi"])
    if sl is None:
        return None
    mask = _tips_mask(grid, sl, anat, liver, half_voxel(grid))
    _carve(mask, sl, grid, anat, liver)
    return sl, mask


def _coarse_grid(lo, hi, h=COARSE_MM) -> dict:
    lo = np.asarray(lo, dtype=float) - 2 * h
    hi = np.asarray(hi, dtype=float) + 2 * h
    return grid_from_coords([np.arange(a, b + h, h) for a, b in zip(lo, hi, strict=True)])


def _lobes_bounds(lobes):
    lo = np.min([lb["centre"] - blob_reach(lb) for lb in lobes], axis=0)
    hi = np.max([lb["centre"] + blob_reach(lb) for lb in lobes], axis=0)
    return lo, hi


def _draw_lobes(rng) -> list:
    """Right and left lobe, and in 70% of the cases a caudate-like part, in the liver's own frame (unscaled)."""
    deg = math.pi / 180.0
    lobes_local = [
        draw_blob(
            rng,
            (0.0, 0.0, 0.0),
            (rng.uniform(60, 75), rng.uniform(60, 80), rng.uniform(70, 85)),
            rotation(0.0, -rng.uniform(10, 25) * deg, rng.uniform(-10, 10) * deg),
            4,
            0.07,
        ),
        draw_blob(
            rng,
            (-rng.uniform(65, 85), rng.uniform(10, 30), rng.uniform(0, 20)),
            (rng.uniform(42, 55), rng.uniform(30, 42), rng.uniform(26, 38)),
            rotation(0.0, rng.uniform(-10, 10) * deg, rng.uniform(-20, 0) * deg),
            4,
            0.07,
        ),
    ]
    if rng.uniform() < 0.7:  # a third, caudate-like part bridging the two lobes posteriorly
        lobes_local.append(
            draw_blob(
                rng,
                (-rng.uniform(30, 45), -rng.uniform(10, 30), rng.uniform(-20, 0)),
                (rng.uniform(25, 35), rng.uniform(25, 35), rng.uniform(35, 50)),
                None,
                3,
                0.06,
            )
        )
    return lobes_local


def _draw_volume_and_gallbladder(rng, body: dict) -> dict:
    """The target volume (bigger patients tend to have bigger livers), the gaps to the cavity wall, and the
    gallbladder (in 80% of the cases) with its position in the liver's frame."""
    deg = math.pi / 180.0
    size = math.sqrt(body["ai"] * body["bi"] / (130.0 * 92.0))
    target_ml = float(np.clip(rng.uniform(1150.0, 1750.0) * size, 1150.0, 1950.0))
    gap_x, gap_y = rng.uniform(4, 10), rng.uniform(5, 15)
    gb_local = (-rng.uniform(20, 35), rng.uniform(20, 40), -rng.uniform(45, 60))
    gallbladder = None
    if rng.uniform() < 0.8:
        gallbladder = draw_blob(
            rng,
            (0.0, 0.0, 0.0),
            (rng.uniform(13, 18), rng.uniform(13, 18), rng.uniform(28, 38)),
            rotation(rng.uniform(-30, -10) * deg, rng.uniform(-15, 15) * deg, 0.0),
            2,
            0.05,
        )
    return {"target_ml": target_ml, "gap": (gap_x, gap_y), "gb_local": gb_local, "gallbladder": gallbladder}


def _unscaled_extent(lobes_local) -> tuple:
    """Upper corner, size (width, depth, height, mm) and volume (mL) of the union of the unscaled lobes."""
    lo, hi = _lobes_bounds(lobes_local)
    g = _coarse_grid(lo, hi)
    full = tuple(slice(0, n) for n in g["shape"])
    m = np.zeros(g["shape"], dtype=bool)
    for lb in lobes_local:
        apply_blob(m, full, g, lb, 1.0, "or")
    idx = np.nonzero(m)
    ext_max = np.array([g["coords"][a][idx[a]].max() for a in range(3)], dtype=float)
    width0 = ext_max[0] - float(g["coords"][0][idx[0]].min())
    depth0 = ext_max[1] - float(g["coords"][1][idx[1]].min())
    height0 = ext_max[2] - float(g["coords"][2][idx[2]].min())
    return ext_max, (width0, depth0, height0), m.sum() * COARSE_MM**3 / 1000.0


def fit_liver(anat: dict, lobes_local, drawn: dict, extra=None) -> tuple:
    """Scale the lobes to the drawn volume (at most 8 rounds, to 1%) and place them in the right upper corner of
    the cavity; a liver too wide or deep for the patient becomes narrower and taller instead, within limits.
    ``extra`` (a dict, e.g. more ``keep_out`` organs) joins the liver's entries while it is fitted.
    Returns the liver and its final mask on a coarse grid (grid, box, mask, volume in mL)."""
    body = anat["body"]
    gap_x, gap_y = drawn["gap"]
    target_ml, gallbladder = drawn["target_ml"], drawn["gallbladder"]
    ext_max, (width0, depth0, height0), volume0 = _unscaled_extent(lobes_local)
    max_depth = 1.75 * body["bi"]  # at most ~85% of the cavity front-to-back
    max_width = min(1.5 * body["ai"], 200.0)  # left lobe tip right of x = -0.5 * cavity half-width
    scale = (target_ml / volume0) ** (1.0 / 3.0)

    liver = None
    for it in range(8):
        # too wide or deep for this patient: narrower and taller instead (within limits)
        scale = min(scale, 1.35)
        s_x = min(scale, max_width / width0)
        s_y = min(scale, max_depth / depth0)
        s_z = min(scale**3 / (s_x * s_y), 1.35 * scale, 165.0 / height0)
        stretch = np.array([s_x, s_y, s_z])
        shift = np.array([body["ai"] - gap_x, body["bi"] - gap_y, 0.0]) - stretch * ext_max
        lobes = [moved(lb, shift, stretch) for lb in lobes_local]
        lo, hi = _lobes_bounds(lobes)
        gb = None
        if gallbladder is not None:
            gb = moved(gallbladder, shift + stretch * np.asarray(drawn["gb_local"]), 1.0, scale_shape=False)
        liver = {
            "lobes": lobes,
            "lo": lo,
            "hi": hi,
            "gallbladder": gb,
            "scale": scale,
            "stretch": stretch,
            "shift": shift,
        }
        liver.update(extra or {})
        g = _coarse_grid(lo, hi)
        sl, m = liver_mask(g, anat, liver)
        vol = m.sum() * COARSE_MM**3 / 1000.0
        if it == 7 or abs(vol / target_ml - 1.0) < 0.01:
            break
        scale *= (target_ml / max(vol, 1.0)) ** (1.0 / 3.0)
    return liver, (g, sl, m, vol)


def add_interior(liver: dict, coarse: tuple) -> dict:
    """The liver's coarse points with their depth below the surface, its volume, the field of view it needs and
    the top of its dome (where the diaphragm goes)."""
    g, sl, m, vol = coarse
    full_mask = np.zeros(g["shape"], dtype=bool)
    full_mask[sl] = m
    idx = np.nonzero(full_mask)
    pts = np.stack([g["coords"][a][idx[a]] for a in range(3)], axis=1).astype(float)
    depth = ndimage.distance_transform_edt(full_mask, sampling=COARSE_MM)[idx]
    top = pts[:, 2].max()
    top_pts = pts[pts[:, 2] >= top - COARSE_MM]
    liver.update(
        {
            "points": pts,
            "depth": depth,
            "volume_ml_coarse": float(vol),
            "fov_lo": pts.min(axis=0) - COARSE_MM,
            "fov_hi": pts.max(axis=0) + COARSE_MM,
            "top": (float(top_pts[:, 0].mean()), float(top_pts[:, 1].mean()), float(top)),
        }
    )
    return liver


def place_liver(rng, anat: dict) -> dict:
    """Draw the lobed liver, scale it to a drawn volume and place it under the right dome against the wall."""
    lobes_local = _draw_lobes(rng)
    drawn = _draw_volume_and_gallbladder(rng, anat["body"])
    liver, coarse = fit_liver(anat, lobes_local, drawn)
    liver["local"] = {"lobes": lobes_local, "drawn": drawn}  # what wide4 refits with other lobe sizes
    return add_interior(liver, coarse)


def snap(liver: dict, p, min_depth: float):
    """Nearest point of the (coarse) liver interior with at least ``min_depth`` mm to the surface."""
    ok = liver["depth"] >= min_depth
    if not np.any(ok):
        ok = liver["depth"] >= liver["depth"].max()
    pts = liver["points"][ok]
    return pts[np.argmin(np.sum((pts - np.asarray(p)) ** 2, axis=1))]


def draw_tumours(rng, liver: dict):
    """0-3 hypodense ellipsoids (radius 8-25 mm) placed well inside the liver and apart from each other."""
    tumours = []
    n = int(rng.integers(0, MAX_TUMOURS + 1))
    for _ in range(n):
        r0 = rng.uniform(8.0, 25.0)
        rel = rng.uniform(0.8, 1.2, 3)
        rot = rotation(*rng.uniform(0, 2 * math.pi, 3))
        pert = draw_blob(rng, (0, 0, 0), (1, 1, 1), None, 3, 0.06)
        pick = rng.uniform()
        while r0 >= 8.0:
            axes = np.clip(r0 * rel, 8.0, 25.0)
            ok = liver["depth"] >= 0.75 * axes.max() + 2.0
            for t in tumours:
                dist = np.linalg.norm(liver["points"] - t["centre"], axis=1)
                ok &= dist > 0.9 * (axes.max() + t["axes"].max())
            cand = np.nonzero(ok)[0]
            if len(cand):
                centre = liver["points"][cand[min(int(pick * len(cand)), len(cand) - 1)]]
                blob = dict(pert)
                blob.update({"centre": centre.copy(), "axes": axes, "rot": rot})
                tumours.append(blob)
                break
            r0 *= 0.85
    return tumours


def draw_large_tumour(rng, liver: dict):
    """A large (radius 30-60 mm) tumour in a quarter of the cases, anywhere deep enough in the liver; or None."""
    if rng.uniform() >= 0.25:
        return None
    r = rng.uniform(30.0, 60.0)
    ok = liver["depth"] >= 0.5 * r
    if not np.any(ok):
        ok = liver["depth"] >= liver["depth"].max()
    pts = liver["points"][ok]
    centre = pts[int(rng.integers(len(pts)))]
    blob = draw_blob(rng, centre, r * rng.uniform(0.8, 1.2, 3), rotation(*rng.uniform(0, 2 * math.pi, 3)), 4, 0.08)
    return blob


def _fissure(rng, a: dict, b: dict, to_surface) -> dict:
    """A widened fissure between liver lobes ``a`` and ``b``: a flat ellipsoid (cleft 4-10 mm wide, 50-80 mm
    across) where the lobes meet on the line between their centres, moved 10-25 mm along ``to_surface`` (per axis
    -1, 0 or 1) towards the surface where the fissure opens."""
    t = np.linspace(0.0, 1.0, 41)[:, None]
    pts = a["centre"][None, :] + t * (b["centre"] - a["centre"])[None, :]
    f_a = blob_field(a, pts[:, 0], pts[:, 1], pts[:, 2])
    f_b = blob_field(b, pts[:, 0], pts[:, 1], pts[:, 2])
    meet = pts[int(np.argmin(np.abs(f_a - f_b)))]
    normal = b["centre"] - a["centre"]
    centre = meet + np.asarray(to_surface, dtype=float) * rng.uniform(10, 25, 3)
    axes = (rng.uniform(2, 5), rng.uniform(25, 40), rng.uniform(25, 40))
    return draw_blob(rng, centre, axes, rotation(0.0, 0.0, math.atan2(normal[1], normal[0])), 2, 0.1)


def _caudate(rng, liver: dict) -> dict:
    """The liver's caudate part; where none was drawn, one where :func:`place_liver` puts it (mid-range size),
    placed like the lobes."""
    if len(liver["lobes"]) > 2:
        return liver["lobes"][2]
    local = draw_blob(
        rng, (-rng.uniform(30, 45), -rng.uniform(10, 30), rng.uniform(-20, 0)), (30, 30, 42), None, 3, 0.06
    )
    return moved(local, liver["shift"], liver["stretch"])


def draw_cirrhosis(seed: int, anat: dict, share: float):
    """A cirrhotic liver in ``share`` of the cases (stream [seed, 11]), or None: the right lobe shrunk to 70-85%
    towards the lateral wall, the left lobe grown 5-25% and the caudate 25-60%, a nodular surface (bumps up to
    1.5-3.75 mm), a regenerative-nodule texture of +-10-20 HU, two widened fissures, ascites in 60% and splenomegaly
    in 60% of them.  Returns the new liver and spleen and what to paint."""
    rng = np.random.default_rng([seed, 11])
    if rng.uniform() >= share:
        return None
    liver = anat["liver"]
    right, left = liver["lobes"][:2]
    caudate = _caudate(rng, liver)
    f = rng.uniform(0.7, 0.85)
    semi = right["axes"] * right["stretch"]
    lobes = [  # the right lobe keeps its lateral edge; its top drops a little, staying under the diaphragm
        grown(right, f, (1.0 - f) * np.array([0.8 * semi[0], 0.0, 0.3 * semi[2]])),
        grown(left, rng.uniform(1.05, 1.25)),
        grown(caudate, rng.uniform(1.25, 1.6)),
    ]
    nodules = {"mm": rng.uniform(1.0, 2.5), "waves": draw_waves(rng, 24, (10.0, 25.0))}
    lo, hi = _lobes_bounds(lobes)
    pad = 1.5 * nodules["mm"]  # the wave field is clipped to +-1.5
    new_liver = dict(liver, lobes=lobes, lo=lo - pad, hi=hi + pad, nodules=nodules)
    spleen = None
    if rng.uniform() < 0.6:  # splenomegaly, growing mostly forwards and down
        g = rng.uniform(1.2, 1.5)
        spleen = grown(anat["spleen"], g, (g - 1.0) * np.array([10.0, 20.0, -40.0]))
    return {
        "liver": new_liver,
        "spleen": spleen,
        "ascites": bool(rng.uniform() < 0.6),
        "lobes_before": liver["lobes"],
        # the umbilical fissure opens in front and below; that of the ligamentum venosum lies deep
        "fissures": [_fissure(rng, lobes[0], lobes[1], (0, 1, -1)), _fissure(rng, lobes[2], lobes[1], (0, 0, 0))],
        "texture": {"hu": rng.uniform(10, 20), "waves": draw_waves(rng, 16, (5.0, 12.0))},
    }


def _nodular_lobes(grid: dict, sl, liver: dict) -> np.ndarray:
    """Union of the liver lobes on grid box ``sl`` with a nodular surface: each lobe's boundary moved out or in by
    the liver's smooth wave field (``liver["nodules"]``, clipped to +-1.5 standard deviations) times its "mm"."""
    xx, yy, zz = open_grid(grid, sl)
    nod = liver["nodules"]
    bump = np.clip(wave_field(nod["waves"], xx, yy, zz), -1.5, 1.5) * np.float32(nod["mm"])
    mask = np.zeros(tuple(s.stop - s.start for s in sl), dtype=bool)
    for lobe in liver["lobes"]:
        radius = float(np.mean(lobe["axes"] * lobe.get("stretch", np.ones(3))))  # mm per unit of the blob field
        mask |= blob_field(lobe, xx, yy, zz) < np.float32(1.0) + bump / np.float32(radius)
    return mask


def paint_liver(tmap, grid, anat: dict, in_cavity):
    """The liver with its carve-outs, the gallbladder, the hepatic vessels and the tumours (over the liver only),
    and the fissures of a cirrhotic liver; painted last, over everything.  wide4: the voxels thin tips only cross
    (partial-volume liver), and the hilar fat and portal vein cut out of the liver."""
    liver = anat["liver"]
    thin = thin_tip_mask(grid, anat, liver)
    if thin is not None:  # wide4: first, so the liver covers it wherever the tips cover a voxel's centre
        paint_mask(tmap, thin[0], thin[1], _T["liver_partial"])
    got = liver_mask(grid, anat, liver)
    if got is not None:
        paint_mask(tmap, got[0], got[1], _T["liver"])
    if liver["gallbladder"] is not None:
        paint_blob(tmap, grid, liver["gallbladder"], _T["bile"], extra=in_cavity)
    for p0, p1, r0, r1 in anat["hepatic_vessels"]:
        paint_tube(tmap, grid, p0, p1, r0, r1, _T["hepatic_vessel"], only=(_T["liver"],))
    if liver.get("hilum") is not None:  # wide4: the hilum as references draw it, outside the label
        for p0, p1, r0, r1 in liver["hilum"]["fat"]:
            paint_tube(tmap, grid, p0, p1, r0, r1, _T["visceral_fat"], LIVER_CODES)
        for p0, p1, r0, r1 in liver["hilum"]["portal"]:
            paint_tube(tmap, grid, p0, p1, r0, r1, _T["portal_vein"], LIVER_CODES + (_T["visceral_fat"],))
    for i, tum in enumerate(anat["tumours"]):
        paint_blob(tmap, grid, tum, TUMOUR_CODES[i], only=LIVER_CODES)
    wide = anat.get("wide")
    if wide is not None and wide["large_tumour"] is not None:
        paint_blob(tmap, grid, wide["large_tumour"], _T["tumour_large"], only=LIVER_CODES)
    cirrhosis = anat.get("wide2", {}).get("cirrhosis")
    if cirrhosis is not None:  # the widened fissures, cut out of the liver and its vessels (tumours stay)
        for fissure in cirrhosis["fissures"]:
            paint_blob(tmap, grid, fissure, _T["visceral_fat"], only=LIVER_CODES)


def paint_cirrhotic_ascites(tmap, grid, cirrhosis: dict):
    """Ascites in the cavity's fat where the lobes were before the cirrhotic liver shrank (the room it left)."""
    for lobe in cirrhosis["lobes_before"]:
        paint_blob(tmap, grid, lobe, _T["ascites"], only=(_T["visceral_fat"],))
