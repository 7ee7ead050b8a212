"""Synthetic abdominal CT phantom: the bundle's embedded default dataset.

Real patient data cannot be downloaded where this bundle runs, so this module draws plausible (but entirely
synthetic) portal-venous abdominal CT volumes with liver / tumour labels in the Medical Segmentation Decathlon
Task03_Liver convention (0 background, 1 liver including its vessels, 2 tumour).

Coordinates
    Anatomy is built in a patient frame in millimetres that is aligned with nibabel's RAS+ world space:
    +x towards the patient's Right, +y Anterior, +z Superior.  x = y = 0 is the centre of the body outline and
    z = 0 the top of the liver dome.  World coordinates equal patient coordinates plus a z shift (the table
    position).  The liver therefore always lies at world x > 0, on the patient's right, whatever the order and
    direction of the stored array axes; the affine says how the array is stored.

Randomness
    ``make_case(seed)`` is a pure function of its arguments.  Three independent streams are derived from the seed:
    ``[seed, 0]`` for the grid (spacing, field of view, orientation, table position), ``[seed, 1]`` for the anatomy
    and intensities, ``[seed, 2]`` for the image noise.  The anatomy therefore does not depend on the requested
    grid: ``make_case(0)`` and ``make_case(0, shape=(512, 512, 150), spacing=(0.8, 0.8, 2.5))`` show the same
    patient.  ``write_dataset(..., seed=s)`` uses seed ``s * 1000 + i`` for case ``i`` (training cases first).

Profiles (``PROFILES``)
    ``"standard"``: the demo's portal-venous abdomen (streams 0-2 above).  ``"wide"``: the standard anatomy plus
    domain randomisation (streams ``[seed, 3]`` to ``[seed, 7]``); the shipped model's profile, wide3, is built
    on it, so its output is pinned by the tests and must not change.  ``"wide2"``: exactly the wide case, then adds
    what wide lacks, each from its own new stream: adrenal glands (``[seed, 8]``), stomach food and positive oral
    contrast (``[seed, 9]``), pericardium and pericardial fat (``[seed, 10]``) and cirrhotic livers (``[seed, 11]``:
    shrunken right lobe, enlarged caudate and left lobe, nodular surface and parenchyma, widened fissures, often
    ascites and splenomegaly; ``case_info`` reports the liver kind "cirrhotic").  ``"wide3"``: exactly the wide2
    case, in a body that is no longer a cylinder below the iliac crest (``[seed, 12]``): the sides widen to cover the
    greater trochanters, the buttocks deepen, and below the perineum the body divides into two thighs around the
    femoral shafts.  Only air, skin, fat, muscle and the cavity's fat, bowel and fluid are repainted, so bones, organs,
    vessels and the liver are the wide2 case's.

Command line
    ``python -m scripts phantom --output_dir DIR`` or ``--single OUT.nii.gz`` (:mod:`scripts.commands.phantom`).
"""

from __future__ import annotations

import json
import math
import os
import time

import nibabel as nib
import numpy as np
from scipy import ndimage

from scripts.lib.fileio import save_nifti, write_text  # save_nifti: phantom.save_nifti for the tests and the benchmark

# Tissue codes of the intermediate tissue map (see make_case_with_tissues).
TISSUES = {
    "air": 0,
    "skin": 1,
    "subcutaneous_fat": 2,
    "muscle": 3,
    "visceral_fat": 4,
    "bowel_a": 5,
    "bowel_b": 6,
    "bowel_c": 7,
    "gas": 8,
    "stomach": 9,
    "kidney_cortex": 10,
    "kidney_medulla": 11,
    "spleen": 12,
    "lung": 13,
    "heart": 14,
    "aorta": 15,
    "ivc": 16,
    "cortical_bone": 17,
    "cancellous_bone": 18,
    "disc": 19,
    "csf": 20,
    "liver": 21,
    "bile": 22,
    "hepatic_vessel": 23,
    "tumour_0": 24,
    "tumour_1": 25,
    "tumour_2": 26,
    # used by the "wide" profile only
    "tumour_large": 27,
    "bowel_wall": 28,
    "bowel_fluid": 29,
    "bowel_contrast": 30,
    "stool": 31,
    "bladder": 32,
    "pelvic_organ": 33,
    "pancreas": 34,
    "portal_vein": 35,
    "ascites": 36,
    "iliac_artery": 37,
    # used by the "wide2" profile only
    "adrenal": 38,
    "stomach_food": 39,
    "stomach_contrast": 40,
    "pericardium": 41,
    "pericardial_fat": 42,
}
_T = TISSUES
_N_CODES = 48
MAX_TUMOURS = 3
TUMOUR_CODES = tuple(_T[f"tumour_{i}"] for i in range(MAX_TUMOURS)) + (_T["tumour_large"],)
LIVER_CODES = (_T["liver"], _T["hepatic_vessel"])

# Orientations drawn for default cases (nibabel axis codes of the stored array).
ORIENTATIONS = ("RAS", "LAS", "LPS", "RPS", "LPI")
_LETTERS = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}
_WORLD_AXIS = ("x (right-left)", "y (anterior-posterior)", "z (superior-inferior)")

MAX_VOXELS = 150_000_000
# "wide": domain-randomised field of view, anatomy, contrast phase and appearance;
# "wide2": the wide case plus adrenals, stomach food and oral contrast, pericardium and cirrhotic livers;
# "wide3": the wide2 case in a body that widens at the hips and divides into thighs below the perineum (the shipped
# model trained on it)
PROFILES = ("standard", "wide", "wide2", "wide3")
_COARSE_MM = 3.5  # resolution of the internal liver model used for volume control and placement
_HU_MIN, _HU_MAX = -1024, 3071


# ----------------------------------------------------------------------------------------------------------------
# small geometry helpers
# ----------------------------------------------------------------------------------------------------------------


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation matrix Rz(az) @ Ry(ay) @ Rx(ax) (angles in radians); columns are the rotated local axes."""
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _blob(rng, centre, axes, rot=None, n_terms=0, max_amp=0.0) -> dict:
    """A (perturbed) ellipsoid: centre and semi-axes in mm, rotation, and smooth radial bumps drawn from ``rng``."""
    amps = rng.uniform(0.0, max_amp, n_terms)
    dirs = rng.normal(size=(n_terms, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True) + 1e-12
    freqs = rng.uniform(1.0, 2.5, n_terms)
    phases = rng.uniform(0.0, 2.0 * math.pi, n_terms)
    return {
        "centre": np.asarray(centre, dtype=float),
        "axes": np.asarray(axes, dtype=float),
        "rot": np.eye(3) if rot is None else np.asarray(rot, dtype=float),
        "amps": amps,
        "dirs": dirs,
        "freqs": freqs,
        "phases": phases,
    }


def _moved(blob: dict, shift, scale=1.0, scale_shape: bool = True) -> dict:
    """Copy of ``blob`` with centre ``shift + scale * centre``; with ``scale_shape`` the shape is also stretched
    by ``scale`` (a number or one factor per patient axis, applied in the patient frame)."""
    scale = np.broadcast_to(np.asarray(scale, dtype=float), (3,))
    out = dict(blob)
    out["centre"] = np.asarray(shift, dtype=float) + scale * blob["centre"]
    if scale_shape:
        out["stretch"] = scale * blob.get("stretch", np.ones(3))
    return out


def _blob_point(blob: dict, v) -> np.ndarray:
    """Patient coordinates of the point ``v`` given in the blob's unit-sphere frame."""
    return blob["centre"] + blob.get("stretch", np.ones(3)) * (blob["rot"] @ (blob["axes"] * np.asarray(v)))


def _blob_reach(blob: dict, level: float = 1.0) -> float:
    """Radius (mm) of a sphere around the centre that contains the blob's ``level`` set."""
    stretch = float(np.max(blob.get("stretch", np.ones(3))))
    return float(np.max(blob["axes"])) * level * stretch * (1.0 + float(np.sum(np.abs(blob["amps"]))))


def _blob_field(blob: dict, xx, yy, zz) -> np.ndarray:
    """Normalised radius of the perturbed ellipsoid at points xx, yy, zz (broadcastable); < 1 is inside."""
    c = blob["centre"].tolist()
    ax = blob["axes"].tolist()
    r = blob["rot"]
    d = (xx - np.float32(c[0]), yy - np.float32(c[1]), zz - np.float32(c[2]))
    if "stretch" in blob:
        d = tuple(dj * np.float32(1.0 / st) for dj, st in zip(d, blob["stretch"].tolist(), strict=True))
    q = []
    for k in range(3):
        acc = None
        for j in range(3):
            w = float(r[j, k])
            if w != 0.0:
                term = d[j] * np.float32(w / ax[k])
                acc = term if acc is None else acc + term
        q.append(acc)
    rho = np.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2])
    if len(blob["amps"]) == 0:
        return rho
    inv = np.float32(1.0) / (rho + np.float32(1e-6))
    thr = np.float32(1.0)
    for a, n, f, ph in zip(
        blob["amps"].tolist(),
        blob["dirs"].tolist(),
        blob["freqs"].tolist(),
        blob["phases"].tolist(),
        strict=True,
    ):
        proj = (q[0] * np.float32(n[0]) + q[1] * np.float32(n[1]) + q[2] * np.float32(n[2])) * inv
        thr = thr + np.float32(a) * np.cos(proj * np.float32(f * math.pi) + np.float32(ph))
    return rho / thr


def _superellipse(xx, yy, a: float, b: float, p_post: float):
    """Body-outline function: (|x|/a)^p + (|y|/b)^p with p = 2 anteriorly and ``p_post`` posteriorly; < 1 inside."""
    p = np.where(yy < 0, np.float32(p_post), np.float32(2.0))
    return np.abs(xx / np.float32(a)) ** p + np.abs(yy / np.float32(b)) ** p


# ----------------------------------------------------------------------------------------------------------------
# grids (canonical RAS-ordered sampling of the patient frame)
# ----------------------------------------------------------------------------------------------------------------


def _grid_from_coords(coords) -> dict:
    """A grid is three increasing float32 coordinate vectors (patient mm) of voxel centres along x, y, z."""
    coords = [np.asarray(c, dtype=np.float32) for c in coords]
    return {"coords": coords, "shape": tuple(len(c) for c in coords)}


def _scan_grid(coords, axes, code, d_c, origin, z_table) -> dict:
    """The grid of a scan (:func:`_grid_from_coords`) with its stored axis order and codes, its spacing and origin
    along the world axes, and the table height that shifts the world (both profiles' grids end here)."""
    grid = _grid_from_coords(coords)
    grid.update(
        {
            "axes": axes,
            "code": code,
            "spacing_c": tuple(d_c),
            "origin": tuple(origin),
            "world_shift": (0.0, 0.0, z_table),
        }
    )
    return grid


def _box(grid: dict, lo, hi):
    """Slices of the grid voxels whose centres lie within [lo, hi] (mm, per axis), or None when empty."""
    out = []
    for c, l, h in zip(grid["coords"], lo, hi, strict=True):
        i0 = int(np.searchsorted(c, l, side="left"))
        i1 = int(np.searchsorted(c, h, side="right"))
        if i1 <= i0:
            return None
        out.append(slice(i0, i1))
    return tuple(out)


def _sub(grid: dict, sl):
    """Open-grid coordinates (xx (n,1,1), yy (1,n,1), zz (1,1,n)) of the voxels in ``sl``."""
    x, y, z = (c[s] for c, s in zip(grid["coords"], sl, strict=True))
    return x[:, None, None], y[None, :, None], z[None, None, :]


def _blob_box(grid: dict, blob: dict, level: float = 1.0):
    reach = _blob_reach(blob, level)
    return _box(grid, blob["centre"] - reach, blob["centre"] + reach)


def _apply_blob(mask, sl, grid, blob, level=1.0, op="or"):
    """OR (op="or") or remove (op="andnot") the blob's ``level`` set into ``mask`` that covers grid box ``sl``."""
    bsl = _blob_box(grid, blob, level)
    if bsl is None:
        return
    inter, rel = [], []
    for a, b in zip(sl, bsl, strict=True):
        i0, i1 = max(a.start, b.start), min(a.stop, b.stop)
        if i1 <= i0:
            return
        inter.append(slice(i0, i1))
        rel.append(slice(i0 - a.start, i1 - a.start))
    inside = _blob_field(blob, *_sub(grid, tuple(inter))) < np.float32(level)
    if op == "or":
        mask[tuple(rel)] |= inside
    else:
        mask[tuple(rel)] &= ~inside


def _paint(tmap, sl, mask, code, only=None):
    """Set tissue ``code`` where ``mask`` (covering box ``sl`` of tmap) is true, optionally only over codes ``only``."""
    sub = tmap[sl]
    if only is not None:
        mask = mask & np.isin(sub, only)
    sub[mask] = code


def _paint_blob(tmap, grid, blob, code, level=1.0, only=None, extra=None):
    """Paint the blob; ``extra(xx, yy, zz)`` may return a further boolean restriction."""
    sl = _blob_box(grid, blob, level)
    if sl is None:
        return
    xx, yy, zz = _sub(grid, sl)
    mask = _blob_field(blob, xx, yy, zz) < np.float32(level)
    if extra is not None:
        mask &= extra(xx, yy, zz)
    _paint(tmap, sl, mask, code, only)


# ----------------------------------------------------------------------------------------------------------------
# anatomy
# ----------------------------------------------------------------------------------------------------------------


def _cavity2d(x2, y2, body: dict, shrink: float = 0.0):
    """Inside of the abdominal muscle wall (the peritoneal / thoracic cavity), optionally shrunk by ``shrink`` mm."""
    return _superellipse(x2, y2, body["ai"] - shrink, body["bi"] - shrink, body["p_post"]) < 1.0


def _spine_zone2d(x2, y2, anat: dict):
    """Region the liver must not enter: vertebra, posterior elements, paraspinal muscles, aorta and IVC."""
    sp, ves = anat["spine"], anat["vessels"]
    zone = ((x2 / (sp["vb_ax"] + 8.0)) ** 2 + ((y2 - sp["y_vb"] + 14.0) / (sp["vb_ay"] + 18.0)) ** 2) < 1.0
    for sgn in (-1.0, 1.0):
        zone = zone | (
            (((x2 - sgn * sp["ps_x"]) / (sp["ps_a"] + 3.0)) ** 2 + ((y2 - sp["ps_y"]) / (sp["ps_b"] + 3.0)) ** 2) < 1.0
        )
    for key, grow in (("aorta", 3.0), ("ivc", 1.5)):
        v = ves[key]
        zone = zone | ((((x2 - v["x"]) / (v["rx"] + grow)) ** 2 + ((y2 - v["y"]) / (v["ry"] + grow)) ** 2) < 1.0)
    return zone


def _liver_mask(grid: dict, anat: dict, liver: dict):
    """Liver mask on its bounding box of ``grid``: (slices, bool array) or None.  Includes all carve-outs."""
    sl = _box(grid, liver["lo"], liver["hi"])
    if sl is None:
        return None
    mask = np.zeros(tuple(s.stop - s.start for s in sl), dtype=bool)
    if liver.get("nodules") is None:
        for lobe in liver["lobes"]:
            _apply_blob(mask, sl, grid, lobe, 1.0, "or")
    else:  # cirrhotic liver of the wide2 profile
        mask |= _nodular_lobes(grid, sl, liver)
    xx, yy, _ = _sub(grid, sl)
    x2, y2 = xx[:, :, 0], yy[:, :, 0]
    keep2d = _cavity2d(x2, y2, anat["body"], shrink=3.0) & ~_spine_zone2d(x2, y2, anat)
    mask &= keep2d[:, :, None]
    _apply_blob(mask, sl, grid, anat["kidneys"][0]["outer"], 1.12, "andnot")
    _apply_blob(mask, sl, grid, anat["kidneys"][0]["shadow"], 1.0, "andnot")
    if liver["gallbladder"] is not None:
        _apply_blob(mask, sl, grid, liver["gallbladder"], 1.15, "andnot")
    for blob in liver.get("keep_out", ()):  # wide2: the adrenals with a fat margin
        _apply_blob(mask, sl, grid, blob, 1.0, "andnot")
    return sl, mask


def _coarse_grid(lo, hi, h=_COARSE_MM) -> dict:
    lo = np.asarray(lo, dtype=float) - 2 * h
    hi = np.asarray(hi, dtype=float) + 2 * h
    return _grid_from_coords([np.arange(a, b + h, h) for a, b in zip(lo, hi, strict=True)])


def _lobes_bounds(lobes):
    lo = np.min([lb["centre"] - _blob_reach(lb) for lb in lobes], axis=0)
    hi = np.max([lb["centre"] + _blob_reach(lb) for lb in lobes], axis=0)
    return lo, hi


def _place_liver(rng, anat: dict) -> dict:
    """Draw the lobed liver, scale it to a drawn volume and place it under the right dome against the wall."""
    body = anat["body"]
    deg = math.pi / 180.0
    lobes_local = [
        _blob(
            rng,
            (0.0, 0.0, 0.0),
            (rng.uniform(60, 75), rng.uniform(60, 80), rng.uniform(70, 85)),
            _rotation(0.0, -rng.uniform(10, 25) * deg, rng.uniform(-10, 10) * deg),
            4,
            0.07,
        ),
        _blob(
            rng,
            (-rng.uniform(65, 85), rng.uniform(10, 30), rng.uniform(0, 20)),
            (rng.uniform(42, 55), rng.uniform(30, 42), rng.uniform(26, 38)),
            _rotation(0.0, rng.uniform(-10, 10) * deg, rng.uniform(-20, 0) * deg),
            4,
            0.07,
        ),
    ]
    if rng.uniform() < 0.7:  # a third, caudate-like part bridging the two lobes posteriorly
        lobes_local.append(
            _blob(
                rng,
                (-rng.uniform(30, 45), -rng.uniform(10, 30), rng.uniform(-20, 0)),
                (rng.uniform(25, 35), rng.uniform(25, 35), rng.uniform(35, 50)),
                None,
                3,
                0.06,
            )
        )
    # bigger patients tend to have bigger livers
    size = math.sqrt(body["ai"] * body["bi"] / (130.0 * 92.0))
    target_ml = float(np.clip(rng.uniform(1150.0, 1750.0) * size, 1150.0, 1950.0))
    gap_x, gap_y = rng.uniform(4, 10), rng.uniform(5, 15)
    gb_local = (-rng.uniform(20, 35), rng.uniform(20, 40), -rng.uniform(45, 60))
    gallbladder = None
    if rng.uniform() < 0.8:
        gallbladder = _blob(
            rng,
            (0.0, 0.0, 0.0),
            (rng.uniform(13, 18), rng.uniform(13, 18), rng.uniform(28, 38)),
            _rotation(rng.uniform(-30, -10) * deg, rng.uniform(-15, 15) * deg, 0.0),
            2,
            0.05,
        )

    # unscaled extents and volume of the lobe union
    lo, hi = _lobes_bounds(lobes_local)
    g = _coarse_grid(lo, hi)
    full = tuple(slice(0, n) for n in g["shape"])
    m = np.zeros(g["shape"], dtype=bool)
    for lb in lobes_local:
        _apply_blob(m, full, g, lb, 1.0, "or")
    idx = np.nonzero(m)
    ext_max = np.array([g["coords"][a][idx[a]].max() for a in range(3)], dtype=float)
    width0 = ext_max[0] - float(g["coords"][0][idx[0]].min())
    depth0 = ext_max[1] - float(g["coords"][1][idx[1]].min())
    height0 = ext_max[2] - float(g["coords"][2][idx[2]].min())
    max_depth = 1.75 * body["bi"]  # at most ~85% of the cavity front-to-back
    max_width = min(1.5 * body["ai"], 200.0)  # left lobe tip right of x = -0.5 * cavity half-width
    scale = (target_ml / (m.sum() * _COARSE_MM**3 / 1000.0)) ** (1.0 / 3.0)

    liver = None
    for it in range(8):
        # too wide or deep for this patient: narrower and taller instead (within limits)
        scale = min(scale, 1.35)
        s_x = min(scale, max_width / width0)
        s_y = min(scale, max_depth / depth0)
        s_z = min(scale**3 / (s_x * s_y), 1.35 * scale, 165.0 / height0)
        stretch = np.array([s_x, s_y, s_z])
        shift = np.array([body["ai"] - gap_x, body["bi"] - gap_y, 0.0]) - stretch * ext_max
        lobes = [_moved(lb, shift, stretch) for lb in lobes_local]
        lo, hi = _lobes_bounds(lobes)
        gb = None
        if gallbladder is not None:
            gb = _moved(gallbladder, shift + stretch * np.asarray(gb_local), 1.0, scale_shape=False)
        liver = {
            "lobes": lobes,
            "lo": lo,
            "hi": hi,
            "gallbladder": gb,
            "scale": scale,
            "stretch": stretch,
            "shift": shift,
        }
        g = _coarse_grid(lo, hi)
        sl, m = _liver_mask(g, anat, liver)
        vol = m.sum() * _COARSE_MM**3 / 1000.0
        if it == 7 or abs(vol / target_ml - 1.0) < 0.01:
            break
        scale *= (target_ml / max(vol, 1.0)) ** (1.0 / 3.0)

    full_mask = np.zeros(g["shape"], dtype=bool)
    full_mask[sl] = m
    idx = np.nonzero(full_mask)
    pts = np.stack([g["coords"][a][idx[a]] for a in range(3)], axis=1).astype(float)
    depth = ndimage.distance_transform_edt(full_mask, sampling=_COARSE_MM)[idx]
    top = pts[:, 2].max()
    top_pts = pts[pts[:, 2] >= top - _COARSE_MM]
    liver.update(
        {
            "points": pts,
            "depth": depth,
            "volume_ml_coarse": float(vol),
            "fov_lo": pts.min(axis=0) - _COARSE_MM,
            "fov_hi": pts.max(axis=0) + _COARSE_MM,
            "top": (float(top_pts[:, 0].mean()), float(top_pts[:, 1].mean()), float(top)),
        }
    )
    return liver


def _snap(liver: dict, p, min_depth: float):
    """Nearest point of the (coarse) liver interior with at least ``min_depth`` mm to the surface."""
    ok = liver["depth"] >= min_depth
    if not np.any(ok):
        ok = liver["depth"] >= liver["depth"].max()
    pts = liver["points"][ok]
    return pts[np.argmin(np.sum((pts - np.asarray(p)) ** 2, axis=1))]


def _draw_liver_vessels(rng, anat: dict, liver: dict):
    """Portal and hepatic venous trees as tapered tubes (segments p0 -> p1 with radii r0 -> r1)."""
    lobes = liver["lobes"]
    right, left = lobes[0], lobes[1]
    segs = []

    def inside_lobe(lobe, spread):
        v = rng.normal(size=3)
        v *= spread * rng.uniform(0.3, 1.0) / (np.linalg.norm(v) + 1e-9)
        return _blob_point(lobe, v)

    hilum = _snap(liver, _blob_point(right, (-0.6, -0.1, -0.35)), 6.0)
    rnode = _snap(liver, right["centre"] + rng.normal(0, 8, 3), 8.0)
    lnode = _snap(liver, left["centre"] + rng.normal(0, 6, 3), 6.0)
    segs.append((hilum, rnode, rng.uniform(5.5, 7.0), rng.uniform(4.5, 5.5)))
    segs.append((hilum, lnode, rng.uniform(4.5, 5.5), rng.uniform(3.5, 4.5)))
    for _ in range(3):
        segs.append((rnode, _snap(liver, inside_lobe(right, 0.75), 4.0), rng.uniform(3.0, 4.0), rng.uniform(2.0, 2.8)))
    for _ in range(2):
        segs.append((lnode, _snap(liver, inside_lobe(left, 0.7), 3.5), rng.uniform(2.8, 3.5), rng.uniform(2.0, 2.5)))
    ivc = anat["vessels"]["ivc"]
    conf = np.array([ivc["x"], ivc["y"], liver["top"][2] - rng.uniform(15, 30)])
    targets = [
        _blob_point(right, (0.65, -0.1, -0.35)),
        _blob_point(right, (-0.55, 0.6, -0.25)),
        _blob_point(left, (-0.5, 0.0, 0.0)),
    ]
    for t in targets:
        segs.append((conf, _snap(liver, t + rng.normal(0, 6, 3), 4.0), rng.uniform(4.5, 6.0), rng.uniform(2.0, 2.8)))
    return segs


def _draw_tumours(rng, liver: dict):
    """0-3 hypodense ellipsoids (radius 8-25 mm) placed well inside the liver and apart from each other."""
    tumours = []
    n = int(rng.integers(0, MAX_TUMOURS + 1))
    for _ in range(n):
        r0 = rng.uniform(8.0, 25.0)
        rel = rng.uniform(0.8, 1.2, 3)
        rot = _rotation(*rng.uniform(0, 2 * math.pi, 3))
        pert = _blob(rng, (0, 0, 0), (1, 1, 1), None, 3, 0.06)
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


def _draw_anatomy(seed: int) -> dict:
    """All anatomical and intensity parameters of case ``seed`` (independent of the sampling grid)."""
    rng = np.random.default_rng([seed, 1])
    deg = math.pi / 180.0
    anat = {}

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
    anat["body"] = body

    vb_ax, vb_ay = rng.uniform(20, 24), rng.uniform(15, 18)
    y_vb = -b_ap + rng.uniform(70, 85)
    r_canal = rng.uniform(7, 9)
    y_c = y_vb - vb_ay - r_canal - 2.0
    anat["spine"] = {
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
    r_ao, r_ivc = rng.uniform(10, 13), rng.uniform(10, 13)
    anat["vessels"] = {
        "aorta": {"x": -rng.uniform(8, 18), "y": y_vb + vb_ay + r_ao + rng.uniform(1, 4), "rx": r_ao, "ry": r_ao},
        "ivc": {
            "x": rng.uniform(18, 28),
            "y": y_vb + vb_ay + r_ivc + rng.uniform(2, 8),
            "rx": r_ivc * 1.2,
            "ry": r_ivc * 0.8,
        },
    }

    kidneys = []
    z_right = -rng.uniform(115, 140)
    for side in (1.0, -1.0):
        centre = (
            side * rng.uniform(55, 70),
            y_vb - rng.uniform(0, 10),
            z_right if side > 0 else z_right + rng.uniform(10, 25),
        )
        axes = (rng.uniform(24, 30), rng.uniform(20, 25), rng.uniform(48, 58))
        rot = _rotation(0.0, side * rng.uniform(8, 18) * deg, -side * rng.uniform(20, 35) * deg)
        outer = _blob(rng, centre, axes, rot, 3, 0.04)
        sinus = _blob(
            rng,
            np.asarray(centre) + rot @ np.array([-side * 0.55 * axes[0], 0.0, 0.0]),
            (0.45 * axes[0], 0.4 * axes[1], 0.45 * axes[2]),
            rot,
            0,
            0.0,
        )
        # the liver keeps out of the kidney and of the space behind it (no liver wrapping round the kidney)
        shadow = _blob(
            rng,
            np.asarray(centre) - np.array([0.0, 30.0, -8.0]),
            (axes[0] + 8.0, axes[1] + 30.0, axes[2]),
            None,
            0,
            0.0,
        )
        kidneys.append({"outer": outer, "sinus": sinus, "shadow": shadow, "medulla": rng.uniform(0.62, 0.75)})
    anat["kidneys"] = kidneys

    liver = _place_liver(rng, anat)
    anat["liver"] = liver

    ai, bi = body["ai"], body["bi"]
    anat["spleen"] = _blob(
        rng,
        (-(ai - rng.uniform(30, 40)), -rng.uniform(15, 45), -rng.uniform(45, 75)),
        (rng.uniform(22, 30), rng.uniform(45, 58), rng.uniform(40, 55)),
        _rotation(0.0, rng.uniform(-10, 10) * deg, -rng.uniform(25, 45) * deg),
        4,
        0.06,
    )
    stomach = _blob(
        rng,
        (-rng.uniform(35, 60), rng.uniform(5, 30), -rng.uniform(35, 65)),
        (rng.uniform(35, 50), rng.uniform(28, 38), rng.uniform(40, 55)),
        _rotation(0.0, 0.0, rng.uniform(-30, 30) * deg),
        4,
        0.08,
    )
    anat["stomach"] = {"blob": stomach, "gas": rng.uniform() < 0.7, "gas_level": rng.uniform(0.45, 0.8)}

    bowel = []
    for _ in range(90):
        centre = (rng.uniform(-0.85, 0.85) * ai, rng.uniform(y_vb + 15, 0.85 * bi), rng.uniform(-420, -50))
        blob = _blob(rng, centre, rng.uniform(12, 28, 3), _rotation(*rng.uniform(0, math.pi, 3)), 2, 0.08)
        code = (_T["bowel_a"], _T["bowel_b"], _T["bowel_c"])[int(rng.integers(3))]
        gas = None
        if rng.uniform() < 0.3:
            r_gas = min(rng.uniform(3, 9), 0.35 * float(blob["axes"].min()))
            gas = _blob(
                rng, np.asarray(centre) + np.array([0.0, 0.45 * float(blob["axes"].min()), 0.0]), (r_gas, r_gas, r_gas)
            )
        bowel.append({"blob": blob, "code": code, "gas": gas})
    anat["bowel"] = bowel

    xt, yt, zt = liver["top"]
    anat["diaphragm"] = {
        "right": (xt, yt, zt + rng.uniform(3, 6)),
        "left": (-rng.uniform(50, 80), yt + rng.uniform(-10, 10), zt - rng.uniform(10, 25)),
        "wx": rng.uniform(55, 75),
        "wy": rng.uniform(60, 80),
        "z_low": zt - rng.uniform(45, 65),
        "post_drop": rng.uniform(15, 30),
        "thick": rng.uniform(4, 6),
    }
    anat["heart"] = _blob(
        rng,
        (-rng.uniform(10, 30), rng.uniform(10, 35), zt + rng.uniform(40, 60)),
        (rng.uniform(55, 70), rng.uniform(45, 55), rng.uniform(45, 55)),
        _rotation(0.0, 0.0, rng.uniform(-30, 0) * deg),
        3,
        0.05,
    )
    anat["ribs"] = {
        "thick": min(wall - 1.0, rng.uniform(7, 10)),
        "psi_min": rng.uniform(0.35, 0.5),
        "psi_max": rng.uniform(2.45, 2.7),
        "z_post": zt - rng.uniform(55, 70),
        "z_lat": rng.uniform(40, 55),
        "slope": rng.uniform(40, 70),
        "pitch": rng.uniform(28, 36),
        "height": rng.uniform(9, 12),
        "z0": rng.uniform(0, 36),
    }

    anat["hepatic_vessels"] = _draw_liver_vessels(rng, anat, liver)
    anat["tumours"] = _draw_tumours(rng, liver)

    hu = np.zeros(_N_CODES, dtype=np.float32)
    liver_hu = rng.uniform(90, 120)
    values = {
        "air": -1000.0,
        "skin": rng.uniform(20, 50),
        "subcutaneous_fat": rng.uniform(-115, -90),
        "muscle": rng.uniform(40, 60),
        "visceral_fat": rng.uniform(-100, -80),
        "bowel_a": rng.uniform(20, 40),
        "bowel_b": rng.uniform(20, 40),
        "bowel_c": rng.uniform(20, 40),
        "gas": rng.uniform(-950, -860),
        "stomach": rng.uniform(5, 25),
        "kidney_cortex": rng.uniform(165, 195),
        "kidney_medulla": rng.uniform(110, 130),
        "spleen": liver_hu + rng.uniform(-8, 12),
        "lung": rng.uniform(-880, -820),
        "heart": rng.uniform(110, 140),
        "aorta": rng.uniform(150, 190),
        "ivc": rng.uniform(120, 160),
        "cortical_bone": rng.uniform(600, 800),
        "cancellous_bone": rng.uniform(200, 300),
        "disc": rng.uniform(70, 100),
        "csf": rng.uniform(5, 25),
        "liver": liver_hu,
        "bile": rng.uniform(0, 20),
        "hepatic_vessel": rng.uniform(160, 190),
    }
    for i in range(MAX_TUMOURS):
        values[f"tumour_{i}"] = liver_hu - rng.uniform(30, 60)
    for name, v in values.items():
        hu[_T[name]] = v
    anat["hu"] = hu
    anat["blur_sigma"] = (rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0))  # voxels, in-plane and along z
    anat["noise_sigma"] = rng.uniform(8, 20)
    return anat


# ----------------------------------------------------------------------------------------------------------------
# sampling grid and orientation
# ----------------------------------------------------------------------------------------------------------------


def parse_orientation(code) -> tuple:
    """Axis code such as "RAS" or "LPS" -> ((world_axis, sign) per stored array axis).  Raises ValueError."""
    if not isinstance(code, str) or len(code) != 3 or any(ch not in _LETTERS for ch in code.upper()):
        raise ValueError(f"orientation {code!r} is not a 3-letter axis code made of R/L, A/P, S/I (e.g. 'RAS')")
    axes = tuple(_LETTERS[ch] for ch in code.upper())
    if sorted(w for w, _ in axes) != [0, 1, 2]:
        raise ValueError(f"orientation {code!r} must name each of R/L, A/P and S/I exactly once")
    return axes


def _check_triplet(value, name, kind):
    try:
        vals = tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of 3 numbers, got {value!r}") from None
    if len(vals) != 3:
        raise ValueError(f"{name} must have 3 entries, got {len(vals)}")
    out = []
    for v in vals:
        if kind is int:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 4 or v > 4096:
                raise ValueError(f"{name} entries must be integers in [4, 4096], got {value!r}")
            out.append(int(v))
        else:
            try:
                f = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"{name} entries must be numbers, got {value!r}") from None
            if not math.isfinite(f) or f <= 0 or f > 50:
                raise ValueError(f"{name} entries must be finite and in (0, 50] mm, got {value!r}")
            out.append(f)
    return tuple(out)


def check_seed(seed, name: str = "seed") -> int:
    """``seed`` as an int; ValueError ``<name> must be a non-negative integer`` for anything else (bools too)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {seed!r}")
    return int(seed)


def _grid_size(axes, fovs, default_spacing, shape, spacing) -> tuple:
    """Voxels and spacing along the canonical (RAS) axes, from the field of view ``fovs`` (mm, RAS order) and what
    the caller gave along the stored axes: shape and spacing (kept), spacing alone (the field of view decides the
    shape, at least 8 voxels), shape alone (the field of view decides the spacing) or neither (the drawn
    ``default_spacing``). Raises ValueError above :data:`MAX_VOXELS`."""
    n_c, d_c = [0, 0, 0], [0.0, 0.0, 0.0]
    for i, (w, _) in enumerate(axes):
        fov = fovs[w]
        if shape is not None and spacing is not None:
            n, d = shape[i], spacing[i]
        elif spacing is not None:
            d = spacing[i]
            n = max(8, int(round(fov / d)))
        elif shape is not None:
            n = shape[i]
            d = round(fov / n, 4)
        else:
            d = default_spacing[w]
            n = int(round(fov / d))
        n_c[w], d_c[w] = n, d
    if int(np.prod(n_c, dtype=np.int64)) > MAX_VOXELS:
        raise ValueError(f"shape {tuple(n_c)} has more than {MAX_VOXELS} voxels")
    return n_c, d_c


def _make_grid(seed: int, anat: dict, shape, spacing, orientation) -> dict:
    """Canonical (RAS-ordered) sampling grid, stored orientation and world shift for the request."""
    rng = np.random.default_rng([seed, 0])
    # every draw happens whatever the arguments, so explicit arguments leave the other draws unchanged
    drawn_code = ORIENTATIONS[int(rng.integers(len(ORIENTATIONS)))]
    d_xy = round(float(rng.uniform(2.4, 3.2)), 4)
    d_z = round(float(rng.uniform(3.0, 5.0)), 3)
    fov_xy = rng.uniform(max(340.0, 2.0 * anat["body"]["a"] + 30.0), 400.0)  # the whole body outline fits
    fov_z = rng.uniform(200.0, 260.0)
    centre_xy = rng.uniform(-10.0, 10.0, 2)
    top_margin = rng.uniform(15.0, 45.0)
    z_table = round(float(rng.uniform(-400.0, 100.0)), 1)
    liver_height = float(anat["liver"]["fov_hi"][2] - anat["liver"]["fov_lo"][2])
    fov_z = max(fov_z, liver_height + 30.0)  # a drawn field of view always holds the whole liver

    code = drawn_code if orientation is None else orientation
    axes = parse_orientation(code)
    code = str(code).upper()
    shape = None if shape is None else _check_triplet(shape, "shape", int)
    spacing = None if spacing is None else _check_triplet(spacing, "spacing", float)

    n_c, d_c = _grid_size(axes, (fov_xy, fov_xy, fov_z), (d_xy, d_xy, d_z), shape, spacing)

    liver = anat["liver"]
    lo, hi = liver["fov_lo"], liver["fov_hi"]
    want = [centre_xy[0], centre_xy[1], hi[2] + top_margin]
    origin = []
    for w in range(3):
        half = (n_c[w] - 1) * d_c[w] / 2.0
        if w == 2:
            want[2] -= half  # the top margin was given for the upper edge
        lo_c, hi_c = hi[w] + 2.0 - half, lo[w] - 2.0 + half
        if lo_c > hi_c:
            raise ValueError(
                f"field of view {n_c[w] * d_c[w]:.1f} mm along {_WORLD_AXIS[w]} is too small to contain the "
                f"liver (needs at least {hi[w] - lo[w] + 4.0 + d_c[w]:.1f} mm)"
            )
        centre = min(max(want[w], lo_c), hi_c)
        origin.append(centre - half)
    coords = [origin[w] + d_c[w] * np.arange(n_c[w], dtype=np.float64) for w in range(3)]
    return _scan_grid(coords, axes, code, d_c, origin, z_table)


def _affine(grid: dict) -> np.ndarray:
    """4x4 voxel -> world (RAS+ mm) matrix of the stored array."""
    aff = np.eye(4)
    for i, (w, sgn) in enumerate(grid["axes"]):
        aff[:, i] = 0.0
        aff[w, i] = sgn * grid["spacing_c"][w]
    for w in range(3):
        sgn = [s for (ww, s) in grid["axes"] if ww == w][0]
        first = grid["origin"][w] + (0.0 if sgn > 0 else (grid["shape"][w] - 1) * grid["spacing_c"][w])
        aff[w, 3] = first + grid["world_shift"][w]
    return aff


def _to_stored(arr: np.ndarray, axes) -> np.ndarray:
    """Canonical RAS-ordered array -> array stored with the given axis codes."""
    out = np.transpose(arr, [w for w, _ in axes])
    flips = tuple(i for i, (_, s) in enumerate(axes) if s < 0)
    if flips:
        out = np.flip(out, flips)
    return np.ascontiguousarray(out)


# ----------------------------------------------------------------------------------------------------------------
# painting
# ----------------------------------------------------------------------------------------------------------------


def _diaphragm2d(x2, y2, anat):
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


def _paint_body(tmap, grid, anat):
    body = anat["body"]
    full = tuple(slice(0, n) for n in grid["shape"])
    xx, yy, _ = _sub(grid, full)
    x2, y2 = xx[:, :, 0], yy[:, :, 0]
    layer = np.full(x2.shape[:1] + y2.shape[1:], _T["air"], dtype=np.uint8)
    p = body["p_post"]
    layer[_superellipse(x2, y2, body["a"], body["b"], p) < 1] = _T["skin"]
    layer[_superellipse(x2, y2, body["a"] - body["skin"], body["b"] - body["skin"], p) < 1] = _T["subcutaneous_fat"]
    layer[_superellipse(x2, y2, body["am"], body["bm"], p) < 1] = _T["muscle"]
    layer[_superellipse(x2, y2, body["ai"], body["bi"], p) < 1] = _T["visceral_fat"]
    tmap[...] = layer[:, :, None]
    return _cavity2d(x2, y2, body)


def _paint_spine(tmap, grid, anat):
    sp, body = anat["spine"], anat["body"]
    lo = (-sp["ps_x"] - sp["ps_a"] - sp["tp_len"] - 5, -body["b"], sp.get("z_min", -1e9))
    hi = (sp["ps_x"] + sp["ps_a"] + sp["tp_len"] + 5, sp["y_vb"] + sp["vb_ay"] + 1, 1e9)
    sl = _box(grid, lo, hi)
    if sl is None:
        return
    xx, yy, zz = _sub(grid, sl)
    x2, y2 = xx[:, :, 0], yy[:, :, 0]
    codes = np.zeros(x2.shape[:1] + y2.shape[1:], dtype=np.uint8)
    inside_wall = _superellipse(x2, y2, body["am"], body["bm"], body["p_post"]) < 1
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


def _paint_psoas(tmap, grid, anat):
    sp = anat["spine"]
    z_stop = sp["psoas_z0"]
    for sgn in (-1.0, 1.0):
        cx, cy, rmax = sgn * sp["psoas_x"], sp["psoas_y"], sp["psoas_r"]
        sl = _box(grid, (cx - rmax, cy - rmax, -1e9), (cx + rmax, cy + rmax, z_stop))
        if sl is None:
            continue
        xx, yy, zz = _sub(grid, sl)
        r = np.clip((z_stop - zz) * 0.25, 0.0, rmax)
        mask = ((xx - cx) ** 2 + (yy - cy) ** 2) < r**2
        _paint(tmap, sl, mask, _T["muscle"])


def _paint_tube2d(tmap, grid, v, code, z_max=1e9):
    z_min = v.get("z_min", -1e9)
    sl = _box(grid, (v["x"] - v["rx"], v["y"] - v["ry"], z_min), (v["x"] + v["rx"], v["y"] + v["ry"], z_max))
    if sl is None:
        return
    xx, yy, zz = _sub(grid, sl)
    mask2d = (((xx[:, :, 0] - v["x"]) / v["rx"]) ** 2 + ((yy[:, :, 0] - v["y"]) / v["ry"]) ** 2) < 1
    _paint(tmap, sl, np.broadcast_to(mask2d[:, :, None], tuple(s.stop - s.start for s in sl)), code)


def _paint_lungs_heart(tmap, grid, anat, cavity2d):
    sp, dp = anat["spine"], anat["diaphragm"]
    full_xy = (slice(0, grid["shape"][0]), slice(0, grid["shape"][1]), slice(0, 1))
    xx, yy, _ = _sub(grid, full_xy)
    x2, y2 = xx[:, :, 0], yy[:, :, 0]
    zd = _diaphragm2d(x2, y2, anat)
    z_from = float(zd[cavity2d].min()) - dp["thick"] - 1.0 if np.any(cavity2d) else 1e9
    sl = _box(grid, (-1e9, -1e9, z_from), (1e9, 1e9, 1e9))
    if sl is None:
        return
    _, _, zz = _sub(grid, sl)
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
        return zh > _diaphragm2d(xh[:, :, 0], yh[:, :, 0], anat)[:, :, None] + np.float32(3.0)

    _paint_blob(tmap, grid, heart, _T["heart"], extra=above_diaphragm)


def _paint_ribs(tmap, grid, anat):
    body, rb = anat["body"], anat["ribs"]
    z_from = rb["z_post"] - rb["z_lat"] - 1.0
    sl = _box(grid, (-1e9, -1e9, z_from), (1e9, 1e9, 1e9))
    if sl is None:
        return
    xx, yy, zz = _sub(grid, sl)
    x2, y2 = xx[:, :, 0], yy[:, :, 0]
    p = body["p_post"]
    ring = (_superellipse(x2, y2, body["ai"], body["bi"], p) >= 1) & (
        _superellipse(x2, y2, body["ai"] + rb["thick"], body["bi"] + rb["thick"], p) < 1
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


def _paint_tube(tmap, grid, p0, p1, r0, r1, code, only):
    """Tapered tube (capsule) from p0 to p1, painted only over tissue codes ``only``."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    rmax = max(r0, r1)
    sl = _box(grid, np.minimum(p0, p1) - rmax, np.maximum(p0, p1) + rmax)
    if sl is None:
        return
    xx, yy, zz = _sub(grid, sl)
    d = p1 - p0
    dd = float(d @ d) + 1e-9
    vx, vy, vz = xx - np.float32(p0[0]), yy - np.float32(p0[1]), zz - np.float32(p0[2])
    t = np.clip((vx * np.float32(d[0]) + vy * np.float32(d[1]) + vz * np.float32(d[2])) / np.float32(dd), 0, 1)
    ex, ey, ez = vx - t * np.float32(d[0]), vy - t * np.float32(d[1]), vz - t * np.float32(d[2])
    r = np.float32(r0) + t * np.float32(r1 - r0)
    _paint(tmap, sl, ex * ex + ey * ey + ez * ez < r * r, code, only)


def _paint_tissues(grid: dict, anat: dict) -> np.ndarray:
    """Canonical (RAS-ordered) uint8 tissue map of the case on ``grid``."""
    tmap = np.empty(grid["shape"], dtype=np.uint8)
    cavity2d = _paint_body(tmap, grid, anat)

    def in_cavity(xx, yy, zz):
        return _cavity2d(xx[:, :, 0], yy[:, :, 0], anat["body"])[:, :, None]

    for b in anat["bowel"]:
        _paint_blob(tmap, grid, b["blob"], b["code"], extra=in_cavity)
        if b["gas"] is not None:
            _paint_blob(tmap, grid, b["gas"], _T["gas"], only=(b["code"],))
    st = anat["stomach"]
    _paint_blob(tmap, grid, st["blob"], _T["stomach"], extra=in_cavity)
    if st["gas"]:
        level_y = float(st["blob"]["centre"][1] + st["gas_level"] * st["blob"]["axes"][1])
        _paint_blob(tmap, grid, st["blob"], _T["gas"], only=(_T["stomach"],), extra=lambda xx, yy, zz: yy > level_y)
    wide, wide2 = anat.get("wide"), anat.get("wide2")
    if wide is not None:
        _paint_wide_soft(tmap, grid, anat, wide, in_cavity)
    if wide2 is not None:
        _paint_wide2_soft(tmap, grid, anat, wide2)
    _paint_psoas(tmap, grid, anat)
    for k in anat["kidneys"]:
        _paint_blob(tmap, grid, k["outer"], _T["kidney_cortex"], extra=in_cavity)
        _paint_blob(tmap, grid, k["outer"], _T["kidney_medulla"], level=k["medulla"], only=(_T["kidney_cortex"],))
        _paint_blob(tmap, grid, k["sinus"], _T["visceral_fat"], only=(_T["kidney_cortex"], _T["kidney_medulla"]))
    _paint_blob(tmap, grid, anat["spleen"], _T["spleen"], extra=in_cavity)
    _paint_lungs_heart(tmap, grid, anat, cavity2d)
    if wide2 is not None:
        _paint_pericardium(tmap, grid, anat, wide2["pericardium"])
    _paint_tube2d(tmap, grid, anat["vessels"]["aorta"], _T["aorta"])
    _paint_tube2d(tmap, grid, anat["vessels"]["ivc"], _T["ivc"], z_max=float(anat["heart"]["centre"][2]))
    _paint_spine(tmap, grid, anat)
    _paint_ribs(tmap, grid, anat)
    if wide is not None:
        _paint_wide_bones(tmap, grid, wide)
    if "wide3" in anat:
        _paint_hips(tmap, grid, anat, anat["wide3"]["hips"])

    liver = anat["liver"]
    got = _liver_mask(grid, anat, liver)
    if got is not None:
        _paint(tmap, got[0], got[1], _T["liver"])
    if liver["gallbladder"] is not None:
        _paint_blob(tmap, grid, liver["gallbladder"], _T["bile"], extra=in_cavity)
    for p0, p1, r0, r1 in anat["hepatic_vessels"]:
        _paint_tube(tmap, grid, p0, p1, r0, r1, _T["hepatic_vessel"], only=(_T["liver"],))
    for i, tum in enumerate(anat["tumours"]):
        _paint_blob(tmap, grid, tum, TUMOUR_CODES[i], only=LIVER_CODES)
    if wide is not None and wide["large_tumour"] is not None:
        _paint_blob(tmap, grid, wide["large_tumour"], _T["tumour_large"], only=LIVER_CODES)
    if wide2 is not None and wide2["cirrhosis"] is not None:
        _paint_fissures(tmap, grid, wide2["cirrhosis"])
    return tmap


def labels_from_tissues(tissues: np.ndarray) -> np.ndarray:
    """MSD label map (0 background, 1 liver incl. hepatic vessels, 2 tumour) from a tissue map."""
    lut = np.zeros(256, dtype=np.uint8)
    lut[list(LIVER_CODES)] = 1
    lut[list(TUMOUR_CODES)] = 2
    return lut[tissues]


def _hu_image(tmap: np.ndarray, anat: dict, seed: int) -> np.ndarray:
    """Tissue map -> blurred (partial volume), noisy int16 HU image (same axis order as tmap)."""
    img = anat["hu"][tmap]
    s_xy, s_z = anat["blur_sigma"]
    img = ndimage.gaussian_filter(img, sigma=(s_xy, s_xy, s_z), mode="nearest", truncate=3.0, output=np.float32)
    rng = np.random.default_rng([seed, 2])
    sigma = np.float32(anat["noise_sigma"])
    step = max(1, 4_000_000 // max(1, img.shape[1] * img.shape[2]))
    for i0 in range(0, img.shape[0], step):  # slabs along the first axis: same values as one big draw
        chunk = img[i0 : i0 + step]
        noise = rng.standard_normal(chunk.shape, dtype=np.float32)
        noise *= sigma
        chunk += noise
    np.rint(img, out=img)
    np.clip(img, _HU_MIN, _HU_MAX, out=img)
    return img.astype(np.int16)


# ----------------------------------------------------------------------------------------------------------------
# the "wide" profile: domain-randomised anatomy, field of view, contrast phase and appearance
# ----------------------------------------------------------------------------------------------------------------

PHASES = ("non_contrast", "arterial", "portal_venous", "delayed")
# HU ranges per phase: (non-contrast, arterial, portal-venous, delayed); textbook values of abdominal CT
# (e.g. unenhanced liver 50-65 HU, portal-venous liver ~100-120 HU, arterial aorta 250-400 HU).
_PHASE_HU = {
    "liver": ((45, 65), (60, 85), (90, 130), (70, 100)),
    "spleen": ((38, 52), (90, 140), (100, 130), (80, 105)),
    "aorta": ((30, 50), (250, 420), (140, 200), (100, 140)),
    "ivc": ((30, 50), (60, 110), (120, 170), (100, 140)),
    "portal_vein": ((30, 50), (90, 150), (150, 200), (100, 140)),
    "hepatic_vessel": ((30, 45), (70, 110), (150, 200), (100, 140)),
    "kidney_cortex": ((30, 40), (170, 260), (150, 200), (120, 170)),
    "kidney_medulla": ((28, 38), (60, 110), (140, 190), (150, 250)),
    "heart": ((35, 50), (200, 380), (120, 160), (100, 130)),
    "pancreas": ((35, 50), (100, 150), (80, 110), (60, 90)),
    "bowel_wall": ((30, 45), (70, 110), (70, 100), (55, 80)),
    "iliac_artery": ((30, 50), (250, 420), (140, 200), (100, 140)),
    "pelvic_organ": ((35, 50), (60, 110), (70, 110), (60, 90)),
}


def _draw_phase_hu(rng, hu_std: np.ndarray, phase: int) -> tuple:
    """HU look-up table of a wide case for contrast phase index ``phase``; also the liver kind (fatty, dense)."""
    hu = hu_std.copy()
    for name, ranges in _PHASE_HU.items():
        hu[_T[name]] = rng.uniform(*ranges[phase])
    kind, u = "normal", rng.uniform()
    if u < 0.18:  # fatty liver: darker than the spleen, down to about -20 HU when severe
        kind = "fatty"
        hu[_T["liver"]] = hu[_T["spleen"]] - rng.uniform(10, 75)
    elif u < 0.24:  # dense liver (iron, amiodarone)
        kind = "dense"
        hu[_T["liver"]] += rng.uniform(20, 45)
    liver = float(hu[_T["liver"]])
    if kind == "fatty" and phase < 2:
        hu[_T["hepatic_vessel"]] = max(float(hu[_T["hepatic_vessel"]]), liver + rng.uniform(5, 25))
    hu[_T["bile"]] = rng.uniform(-5, 25)
    hu[_T["stomach"]] = rng.uniform(-5, 40)
    hu[_T["muscle"]] = rng.uniform(35, 65)
    hu[_T["subcutaneous_fat"]] = rng.uniform(-120, -85)
    hu[_T["visceral_fat"]] = rng.uniform(-110, -75)
    hu[_T["cortical_bone"]] = rng.uniform(450, 1100)
    hu[_T["cancellous_bone"]] = rng.uniform(120, 320)
    hu[_T["bowel_fluid"]] = rng.uniform(-5, 25)
    hu[_T["bowel_contrast"]] = rng.uniform(150, 600)
    hu[_T["stool"]] = rng.uniform(-120, 40)
    hu[_T["bladder"]] = rng.uniform(300, 900) if phase == 3 and rng.uniform() < 0.5 else rng.uniform(0, 20)
    hu[_T["ascites"]] = rng.uniform(0, 25)
    hu[_T["lung"]] = rng.uniform(-900, -780)
    hu[_T["gas"]] = rng.uniform(-1000, -850)
    for code in TUMOUR_CODES:  # hypodense, or hyperdense in the arterial phase (or delayed, rarely)
        if phase == 1 and rng.uniform() < 0.5:
            hu[code] = liver + rng.uniform(20, 70)
        elif rng.uniform() < 0.1:
            hu[code] = liver + rng.uniform(10, 40)
        else:
            hu[code] = liver - rng.uniform(15, 70)
    return hu, kind


def _draw_large_tumour(rng, liver: dict):
    """A large (radius 30-60 mm) tumour in a quarter of the cases, anywhere deep enough in the liver; or None."""
    if rng.uniform() >= 0.25:
        return None
    r = rng.uniform(30.0, 60.0)
    ok = liver["depth"] >= 0.5 * r
    if not np.any(ok):
        ok = liver["depth"] >= liver["depth"].max()
    pts = liver["points"][ok]
    centre = pts[int(rng.integers(len(pts)))]
    blob = _blob(rng, centre, r * rng.uniform(0.8, 1.2, 3), _rotation(*rng.uniform(0, 2 * math.pi, 3)), 4, 0.08)
    return blob


def _draw_bowel_loops(rng, anat: dict, z_lo: float, z_hi: float, contrast: bool) -> list:
    """Small-bowel loops filling the abdomen and pelvis: wall blob plus contents (fluid, soft, contrast or gas)."""
    body, sp = anat["body"], anat["spine"]
    ai, bi = body["ai"], body["bi"]
    loops = []
    n = int(rng.integers(110, 170))
    p_contents = np.array([0.35, 0.3, 0.25 if contrast else 0.0, 0.12])
    p_contents /= p_contents.sum()
    contents = (_T["bowel_fluid"], _T["bowel_a"], _T["bowel_contrast"], _T["gas"])
    for _ in range(n):
        centre = (rng.uniform(-0.85, 0.85) * ai, rng.uniform(sp["y_vb"] + 10, 0.9 * bi), rng.uniform(z_lo, z_hi))
        blob = _blob(rng, centre, rng.uniform(10, 22, 3), _rotation(*rng.uniform(0, math.pi, 3)), 2, 0.08)
        loops.append(
            {"blob": blob, "content": contents[int(rng.choice(4, p=p_contents))], "lumen": rng.uniform(0.6, 0.85)}
        )
    return loops


def _draw_colon(rng, anat: dict, zb: float, z_crest: float, z_fh: float) -> dict:
    """Colon frame (caecum, ascending, transverse, descending, sigmoid, rectum) as a chain of tubes with gas."""
    ai, bi, y_vb = anat["body"]["ai"], anat["body"]["bi"], anat["spine"]["y_vb"]
    xr, xl = ai - rng.uniform(25, 40), -(ai - rng.uniform(25, 40))
    pts = [
        (xr, rng.uniform(-10, 20), z_crest - rng.uniform(0, 30)),
        (xr, rng.uniform(-10, 20), zb + rng.uniform(-20, 10)),
        (0.3 * ai, 0.6 * bi, zb - rng.uniform(0, 60)),
        (-0.2 * ai, 0.6 * bi, zb - rng.uniform(0, 80)),
        (xl, rng.uniform(-20, 10), anat["liver"]["top"][2] - rng.uniform(80, 110)),
        (xl, rng.uniform(-20, 10), z_crest + rng.uniform(0, 30)),
        (-rng.uniform(20, 50), rng.uniform(0, 40), z_fh + rng.uniform(40, 70)),
        (0.0, y_vb - rng.uniform(0, 10), z_fh + rng.uniform(10, 30)),
        (0.0, y_vb - rng.uniform(5, 20), z_fh - rng.uniform(40, 60)),
    ]
    radii = [rng.uniform(22, 32)] + [rng.uniform(16, 26) for _ in pts[1:]]
    gas = []
    for _ in range(int(rng.integers(8, 25))):
        i = int(rng.integers(len(pts) - 1))
        t = rng.uniform()
        p = (1 - t) * np.asarray(pts[i]) + t * np.asarray(pts[i + 1])
        gas.append((p + rng.normal(0, 5, 3), rng.uniform(3, 12)))
    return {"points": pts, "radii": radii, "gas": gas}


def _draw_pelvis(rng, anat: dict, z_crest: float) -> dict:
    """Pelvic bones (iliac wings, sacrum, acetabula, femoral heads and necks, pubic and ischial rami) and organs."""
    ai, bi, y_vb = anat["body"]["ai"], anat["body"]["bi"], anat["spine"]["y_vb"]
    deg = math.pi / 180.0
    z_fh = z_crest - rng.uniform(150, 185)
    x_fh = min(rng.uniform(85, 100), ai - 15.0)
    y_fh = rng.uniform(-15, 15)
    r_fh = rng.uniform(21, 26)
    wing_axes = (min(rng.uniform(105, 125), ai), rng.uniform(75, 95), rng.uniform(110, 130))
    wing = _blob(rng, (0.0, y_vb + rng.uniform(15, 30), z_crest), wing_axes, None, 3, 0.04)
    sacrum = _blob(
        rng,
        (0.0, y_vb - rng.uniform(5, 15), z_crest - rng.uniform(55, 70)),
        (rng.uniform(42, 52), rng.uniform(14, 20), rng.uniform(60, 75)),
        _rotation(-rng.uniform(20, 35) * deg, 0.0, 0.0),
        2,
        0.04,
    )
    fill = rng.uniform(0.2, 1.0)
    y_bl = y_fh + rng.uniform(25, 45)
    bladder = _blob(
        rng,
        (0.0, y_bl, z_fh + rng.uniform(0, 25) + 25 * fill),
        (20 + 40 * fill, 15 + 30 * fill, 15 + 35 * fill),
        None,
        3,
        0.06,
    )
    if rng.uniform() < 0.5:  # uterus behind and above the bladder
        organ = _blob(
            rng,
            (rng.uniform(-15, 15), y_bl - rng.uniform(35, 50), z_fh + rng.uniform(40, 70)),
            (rng.uniform(25, 35), rng.uniform(20, 28), rng.uniform(35, 50)),
            _rotation(rng.uniform(-30, 30) * deg, 0.0, 0.0),
            3,
            0.06,
        )
    else:  # prostate below the bladder
        organ = _blob(rng, (0.0, y_fh + rng.uniform(10, 25), z_fh - rng.uniform(25, 40)), rng.uniform(15, 22, 3))
    gluteal = [
        _blob(
            rng, (s * (ai - rng.uniform(10, 25)), -0.45 * bi, z_fh + rng.uniform(20, 50)), (50, 60, 110), None, 2, 0.05
        )
        for s in (1.0, -1.0)
    ]
    symphysis = (0.0, y_fh + rng.uniform(50, 65), z_fh - rng.uniform(15, 30))
    return {
        "z_crest": z_crest,
        "z_fh": z_fh,
        "x_fh": x_fh,
        "y_fh": y_fh,
        "r_fh": r_fh,
        "wing": wing,
        "wing_thick": rng.uniform(6, 10),
        "sacrum": sacrum,
        "bladder": bladder,
        "organ": organ,
        "gluteal": gluteal,
        "symphysis": symphysis,
        "neck_angle": rng.uniform(40, 55) * deg,
    }


def _draw_wide(seed: int, anat: dict) -> dict:
    """The "wide" profile's case: the standard anatomy plus the draws of streams [seed, 3] (anatomy) and
    [seed, 5] (contrast phase and HU); returns a new anatomy dict (``anat`` is not changed)."""
    rng = np.random.default_rng([seed, 3])
    out = dict(anat)
    liver = anat["liver"]
    zt, zb = float(liver["fov_hi"][2]), float(liver["fov_lo"][2])
    z_crest = min(zb, anat["kidneys"][0]["outer"]["centre"][2] - 60.0) - rng.uniform(40, 90)
    pelvis = _draw_pelvis(rng, anat, z_crest)
    contrast = rng.uniform() < 0.45  # positive oral contrast in this case
    vessels = {k: dict(v) for k, v in anat["vessels"].items()}
    z_bif = z_crest + rng.uniform(10, 40)
    vessels["aorta"]["z_min"] = z_bif
    vessels["ivc"]["z_min"] = z_bif - 15.0
    out["vessels"] = vessels
    out["spine"] = dict(anat["spine"], z_min=z_crest - 15.0)
    ivc, ao = vessels["ivc"], vessels["aorta"]
    iliac = []
    for s in (1.0, -1.0):
        end = (s * (pelvis["x_fh"] - rng.uniform(15, 25)), pelvis["y_fh"] + rng.uniform(25, 35), pelvis["z_fh"] + 15.0)
        iliac.append(((ao["x"], ao["y"], z_bif), end, rng.uniform(5, 7), _T["iliac_artery"]))
        iliac.append(
            ((ivc["x"], ivc["y"], z_bif - 15.0), (end[0], end[1] - 12.0, end[2]), rng.uniform(7, 9), _T["ivc"])
        )
    hilum = anat["hepatic_vessels"][0][0]
    y_ao = ao["y"] + ao["ry"]
    head = (ivc["x"] + rng.uniform(0, 15), y_ao + rng.uniform(20, 35), zt - rng.uniform(115, 145))
    neck = (rng.uniform(-10, 10), y_ao + rng.uniform(25, 40), head[2] + rng.uniform(5, 20))
    tail = (
        -(anat["body"]["ai"] - rng.uniform(45, 60)),
        anat["spine"]["y_vb"] + rng.uniform(0, 20),
        zt - rng.uniform(70, 95),
    )
    confluence = (neck[0] + 5.0, neck[1] - 12.0, neck[2])
    arm = None
    if rng.uniform() < 0.35:  # arms down beside the body
        r_arm = rng.uniform(38, 52)
        arm = {
            "x": anat["body"]["a"] + rng.uniform(5, 30) + r_arm,
            "y": rng.uniform(-30, 20),
            "r": r_arm,
            "z_elbow": zt - rng.uniform(80, 180),
        }
    out["wide"] = {
        "pelvis": pelvis,
        "contrast": contrast,
        "loops": _draw_bowel_loops(rng, anat, pelvis["z_fh"] - 20.0, zb + 30.0, contrast),
        "colon": _draw_colon(rng, anat, zb, z_crest, pelvis["z_fh"]),
        "iliac": iliac,
        "pancreas": [
            (head, neck, rng.uniform(12, 17), rng.uniform(10, 13)),
            (neck, tail, rng.uniform(9, 12), rng.uniform(7, 10)),
        ],
        "portal": [
            (confluence, hilum, rng.uniform(6, 8), rng.uniform(5, 7)),
            (confluence, tail, rng.uniform(4, 5), rng.uniform(3, 4)),
        ],
        "ascites": rng.uniform() < 0.15,
        "arm": arm,
        "large_tumour": _draw_large_tumour(rng, liver),
        "apex": zt + rng.uniform(170, 230),
        "scale": rng.uniform(0.82, 1.2),
    }
    rng_hu = np.random.default_rng([seed, 5])
    phase = int(rng_hu.choice(4, p=[0.2, 0.2, 0.45, 0.15]))
    hu, kind = _draw_phase_hu(rng_hu, anat["hu"], phase)
    out["hu"] = hu
    out["wide"].update({"phase": PHASES[phase], "liver_kind": kind})
    return out


def _soft_codes() -> tuple:
    """Tissue codes the wide profile's soft-tissue structures may paint over (fat, bowel and its contents)."""
    return tuple(
        _T[k]
        for k in ("visceral_fat", "bowel_a", "bowel_b", "bowel_c", "gas", "bowel_wall", "bowel_fluid", "bowel_contrast")
    )


def _paint_cylinder(tmap, grid, x, y, r, z_lo, z_hi, code, only=None):
    """Vertical cylinder of radius ``r`` mm about (x, y) between heights z_lo and z_hi."""
    sl = _box(grid, (x - r, y - r, z_lo), (x + r, y + r, z_hi))
    if sl is None:
        return
    xx, yy, _ = _sub(grid, sl)
    mask2d = ((xx[:, :, 0] - x) ** 2 + (yy[:, :, 0] - y) ** 2) < r * r
    _paint(tmap, sl, np.broadcast_to(mask2d[:, :, None], tuple(s.stop - s.start for s in sl)), code, only)


def _paint_arms(tmap, grid, arm: dict, z_top: float):
    """Both arms beside the body: skin, fat, muscle and humerus (upper arm) or two forearm bones."""
    for s in (1.0, -1.0):
        x, y, r = s * arm["x"], arm["y"], arm["r"]
        _paint_cylinder(tmap, grid, x, y, r, -1e9, z_top, _T["skin"], only=(_T["air"],))
        _paint_cylinder(tmap, grid, x, y, r - 2.0, -1e9, z_top, _T["subcutaneous_fat"], only=(_T["skin"],))
        _paint_cylinder(tmap, grid, x, y, 0.75 * r, -1e9, z_top, _T["muscle"], only=(_T["subcutaneous_fat"],))
        _paint_cylinder(tmap, grid, x, y, 11.0, arm["z_elbow"], z_top, _T["cortical_bone"])
        _paint_cylinder(tmap, grid, x, y, 7.5, arm["z_elbow"], z_top, _T["cancellous_bone"])
        for dx in (-12.0, 12.0):
            _paint_cylinder(tmap, grid, x + dx, y, 6.0, -1e9, arm["z_elbow"], _T["cortical_bone"])


def _paint_tube_chain(tmap, grid, pts, radii, code, only):
    for i in range(len(pts) - 1):
        _paint_tube(tmap, grid, pts[i], pts[i + 1], radii[i], radii[i + 1], code, only)


def _paint_wide_soft(tmap, grid, anat: dict, wide: dict, in_cavity):
    """Soft tissues of the wide profile, painted after the standard bowel and before organs and bones."""
    soft = _soft_codes()
    for lp in wide["loops"]:
        _paint_blob(tmap, grid, lp["blob"], _T["bowel_wall"], extra=in_cavity)
        _paint_blob(tmap, grid, lp["blob"], lp["content"], level=lp["lumen"], only=(_T["bowel_wall"],))
    colon = wide["colon"]
    _paint_tube_chain(tmap, grid, colon["points"], colon["radii"], _T["bowel_wall"], soft)
    inner = [0.8 * r for r in colon["radii"]]
    _paint_tube_chain(tmap, grid, colon["points"], inner, _T["stool"], (_T["bowel_wall"],))
    for p, r in colon["gas"]:
        _paint_tube(tmap, grid, p, p, r, r, _T["gas"], (_T["stool"],))
    pv = wide["pelvis"]
    for g in pv["gluteal"]:
        _paint_blob(tmap, grid, g, _T["muscle"], only=(_T["subcutaneous_fat"], _T["muscle"]) + soft)
    wing = pv["wing"]
    iliacus_level = 1.0 - (pv["wing_thick"] + 20.0) / float(np.mean(wing["axes"]))

    def iliacus(xx, yy, zz):  # a muscle layer about 20 mm thick lining the inside of the iliac wings
        lateral = (zz < pv["z_crest"]) & (np.abs(xx) > 25.0) & (yy < wing["centre"][1] + 20.0)
        return lateral & (_blob_field(wing, xx, yy, zz) > np.float32(iliacus_level))

    _paint_blob(tmap, grid, wing, _T["muscle"], only=soft, extra=iliacus)
    _paint_blob(tmap, grid, pv["organ"], _T["pelvic_organ"], extra=in_cavity)
    _paint_blob(tmap, grid, pv["bladder"], _T["bladder"], extra=in_cavity)
    for seg in wide["pancreas"]:
        _paint_tube(tmap, grid, *seg, _T["pancreas"], soft)
    for p0, p1, r0, r1 in wide["portal"]:
        _paint_tube(tmap, grid, p0, p1, r0, r1, _T["portal_vein"], soft + (_T["pancreas"],))
    for p0, p1, r, code in wide["iliac"]:
        _paint_tube(tmap, grid, p0, p1, r, r, code, None)
    if wide["ascites"]:
        for lobe in anat["liver"]["lobes"]:
            _paint_blob(tmap, grid, lobe, _T["ascites"], level=1.1, only=(_T["visceral_fat"],))
        c = (0.0, 0.0, pv["z_fh"] + 50.0)
        pelvic = _blob(np.random.default_rng(0), c, (0.8 * anat["body"]["ai"], 0.8 * anat["body"]["bi"], 70.0))
        _paint_blob(tmap, grid, pelvic, _T["ascites"], only=(_T["visceral_fat"],))
    if wide["arm"] is not None:
        _paint_arms(tmap, grid, wide["arm"], wide["apex"] + 100.0)


def _paint_bone(tmap, grid, p0, p1, r0, r1, cortex=3.0):
    """Tube of cortical bone with a cancellous core."""
    _paint_tube(tmap, grid, p0, p1, r0, r1, _T["cortical_bone"], None)
    _paint_tube(tmap, grid, p0, p1, max(r0 - cortex, 1.0), max(r1 - cortex, 1.0), _T["cancellous_bone"], None)


def _paint_wide_bones(tmap, grid, wide: dict):
    """Pelvic bones and femora of the wide profile, painted over everything but the liver."""
    pv = wide["pelvis"]
    wing, t = pv["wing"], pv["wing_thick"]
    inner = 1.0 - t / float(np.mean(wing["axes"]))
    z_lo = pv["z_fh"] + 10.0

    def wing_shell(lo, hi):
        """The iliac wings: the lower, posterior-lateral part of an ellipsoidal shell (a bowl), field in (lo, hi)."""

        def inside(xx, yy, zz):
            part = (zz < pv["z_crest"]) & (zz > z_lo) & (np.abs(xx) > 25.0) & (yy < wing["centre"][1] + 20.0)
            return part & (_blob_field(wing, xx, yy, zz) > np.float32(lo))

        return inside

    _paint_blob(tmap, grid, wing, _T["cortical_bone"], extra=wing_shell(inner, 1.0))
    core = 0.3 * (1.0 - inner)  # cancellous core between two cortical plates
    _paint_blob(tmap, grid, wing, _T["cancellous_bone"], level=1.0 - core, extra=wing_shell(inner + core, 1.0 - core))
    _paint_blob(tmap, grid, pv["sacrum"], _T["cortical_bone"])
    _paint_blob(tmap, grid, pv["sacrum"], _T["cancellous_bone"], level=0.8)
    for s in (1.0, -1.0):
        head = np.array([s * pv["x_fh"], pv["y_fh"], pv["z_fh"]])
        r = pv["r_fh"]
        a = pv["neck_angle"]
        troch = head + np.array([s * 50.0 * math.cos(a), -5.0, -50.0 * math.sin(a)])
        _paint_bone(
            tmap, grid, head + np.array([s * 6.0, 0.0, 20.0]), head - np.array([s * 20.0, 0.0, -5.0]), r + 6, r + 4
        )
        _paint_bone(tmap, grid, troch, troch - np.array([s * 10.0, 0.0, 300.0]), 16.0, 13.0, cortex=4.0)
        _paint_bone(tmap, grid, head, troch, 15.0, 17.0)
        _paint_tube(tmap, grid, head, head, r + 1.5, r + 1.5, _T["disc"], None)  # joint space
        _paint_bone(tmap, grid, head, head, r, r)
        sym = np.array(pv["symphysis"]) + np.array([s * 6.0, 0.0, 0.0])
        _paint_bone(tmap, grid, head + np.array([-s * 15.0, 20.0, -5.0]), sym, 10.0, 9.0)
        isch = head + np.array([-s * 30.0, -35.0, -45.0])
        _paint_bone(tmap, grid, head + np.array([-s * 10.0, -15.0, -10.0]), isch, 12.0, 10.0)
        _paint_bone(tmap, grid, isch, sym - np.array([0.0, 10.0, 10.0]), 8.0, 8.0)


# ---- wide grid and image ----------------------------------------------------------------------------------------


def _make_wide_grid(seed: int, anat: dict, shape, spacing, orientation) -> dict:
    """Sampling grid of a wide case (stream [seed, 4]): field of view from the lung apex or mid-abdomen down to the
    liver or below the pelvis (the liver may be cut), in-plane 320-500 mm, and the patient's size (the painted
    patient frame is stretched by ``scale``; the affine is in physical millimetres)."""
    rng = np.random.default_rng([seed, 4])
    wide = anat["wide"]
    drawn_code = ORIENTATIONS[int(rng.integers(len(ORIENTATIONS)))]
    d_xy = round(float(rng.uniform(1.5, 3.2)), 4)
    d_z = round(float(rng.uniform(1.0, 5.0)), 3)
    s = wide["scale"]
    fov_xy = rng.uniform(max(320.0, 2.0 * anat["body"]["a"] * s + 20.0), 500.0)
    fov_xy = min(fov_xy, 500.0)
    centre_xy = rng.uniform(-10.0, 10.0, 2)
    zt, zb = float(anat["liver"]["fov_hi"][2]), float(anat["liver"]["fov_lo"][2])
    below = wide["pelvis"]["z_fh"] - rng.uniform(40, 120)
    if rng.uniform() < 0.35:  # chest-abdomen-pelvis or abdomen-pelvis: the whole liver and the pelvis
        top, bottom = rng.uniform(zt + 15.0, wide["apex"]), below
    else:
        top, bottom = rng.uniform(zb + 40.0, wide["apex"]), rng.uniform(below, zt - 60.0)
    if top - bottom < 120.0:
        bottom = top - 120.0
    z_table = round(float(rng.uniform(-400.0, 100.0)), 1)

    code = drawn_code if orientation is None else orientation
    axes = parse_orientation(code)
    code = str(code).upper()
    shape = None if shape is None else _check_triplet(shape, "shape", int)
    spacing = None if spacing is None else _check_triplet(spacing, "spacing", float)
    fovs = (fov_xy, fov_xy, (top - bottom) * s)
    n_c, d_c = _grid_size(axes, fovs, (d_xy, d_xy, d_z), shape, spacing)
    centre = (centre_xy[0] * s, centre_xy[1] * s, 0.5 * (top + bottom) * s)  # physical mm
    origin = [centre[w] - (n_c[w] - 1) * d_c[w] / 2.0 for w in range(3)]
    coords = [(origin[w] + d_c[w] * np.arange(n_c[w], dtype=np.float64)) / s for w in range(3)]
    return _scan_grid(coords, axes, code, d_c, origin, z_table)


def _low_freq_fields(rng, shape, n_fields: int, cell_vox) -> list:
    """``n_fields`` smooth random fields (unit standard deviation, float32) with features about ``cell_vox``
    voxels apart, made by linear interpolation of a coarse gaussian grid."""
    coarse = tuple(max(2, int(math.ceil(n / c)) + 1) for n, c in zip(shape, cell_vox, strict=True))
    out = []
    for _ in range(n_fields):
        g = rng.standard_normal(coarse).astype(np.float32)
        zoom = [(n - 1) / max(1, m - 1) for n, m in zip(shape, coarse, strict=True)]
        f = ndimage.zoom(g, zoom, order=1, output=np.float32, grid_mode=False)
        f = f[: shape[0], : shape[1], : shape[2]]
        if f.shape != tuple(shape):
            f = np.pad(f, [(0, n - m) for n, m in zip(shape, f.shape, strict=True)], mode="edge")
        out.append(f)
    return out


def _wide_image(tmap: np.ndarray, grid: dict, anat: dict, seed: int) -> np.ndarray:
    """Tissue map -> int16 HU image with per-organ texture, cupping, rare metal streaks, correlated noise and a
    drawn reconstruction kernel and slice thickness (stream [seed, 6])."""
    rng = np.random.default_rng([seed, 6])
    spacing = grid["spacing_c"]
    img = anat["hu"][tmap]
    if "wide2" in anat:
        _wide2_textures(img, tmap, grid, anat["wide2"])
    # per-organ smooth intensity variation: every tissue mixes two shared fields with its own weights
    fields = _low_freq_fields(rng, tmap.shape, 2, [max(2.0, rng.uniform(20, 60) / d) for d in spacing])
    amp = rng.uniform(0.0, 15.0, _N_CODES).astype(np.float32)
    amp[[_T["air"], _T["gas"], _T["lung"]]] *= 2.0
    for f in fields:
        w = (rng.normal(0.0, 1.0, _N_CODES) * amp).astype(np.float32)
        img += w[tmap] * f
    del fields
    xx, yy, _ = _sub(grid, (slice(0, tmap.shape[0]), slice(0, tmap.shape[1]), slice(0, 1)))
    r2 = (xx[:, :, 0] ** 2 + yy[:, :, 0] ** 2) / np.float32(anat["body"]["a"] ** 2)
    cup = np.float32(rng.uniform(0.0, 25.0)) * np.clip(1.0 - r2, 0.0, 1.0)  # beam hardening: darker centre
    img -= cup[:, :, None] * (tmap != _T["air"])
    if rng.uniform() < 0.05:  # metal (hip prosthesis, clip, port) with streaks in the slices that cross it
        k = int(rng.integers(tmap.shape[2]))
        z = slice(max(0, k - int(rng.integers(1, 6))), k + int(rng.integers(1, 6)))
        i0, j0 = int(rng.integers(tmap.shape[0] // 4, 3 * tmap.shape[0] // 4)), int(
            rng.integers(tmap.shape[1] // 4, 3 * tmap.shape[1] // 4)
        )
        ii = np.arange(tmap.shape[0], dtype=np.float32)[:, None] - i0
        jj = np.arange(tmap.shape[1], dtype=np.float32)[None, :] - j0
        theta, r = np.arctan2(jj, ii), np.sqrt(ii * ii + jj * jj) + 1.0
        streak = np.float32(rng.uniform(150, 600)) * np.cos(
            theta * np.float32(rng.integers(6, 16)) + np.float32(rng.uniform(0, 6.3))
        )
        streak *= np.float32(3.0) / np.sqrt(r)
        streak[r < 3.0] = 3000.0
        img[:, :, z] += streak[:, :, None]
    # reconstruction kernel (in-plane) and slice thickness (along z), in mm -> voxels
    kernel_mm, thick_mm = rng.uniform(0.4, 1.6), rng.uniform(0.6, 5.0)
    sig = [kernel_mm / spacing[0], kernel_mm / spacing[1], thick_mm / 2.355 / spacing[2]]
    noise_hu = rng.uniform(5.0, 40.0)
    # noise added before the blur comes out correlated; scale it so that its level after the blur is ``noise_hu``
    gain = math.sqrt(math.prod(max(1.0, 2.0 * math.sqrt(math.pi) * s) for s in sig))
    rng_n = np.random.default_rng([seed, 7])
    step = max(1, 4_000_000 // max(1, img.shape[1] * img.shape[2]))
    for i0 in range(0, img.shape[0], step):
        chunk = img[i0 : i0 + step]
        noise = rng_n.standard_normal(chunk.shape, dtype=np.float32)
        noise *= np.float32(noise_hu * gain)
        chunk += noise
    img = ndimage.gaussian_filter(img, sigma=sig, mode="nearest", truncate=3.0, output=np.float32)
    np.rint(img, out=img)
    np.clip(img, _HU_MIN, _HU_MAX, out=img)
    return img.astype(np.int16)


# ----------------------------------------------------------------------------------------------------------------
# the "wide2" profile: the wide case plus adrenals, stomach contents, pericardium and cirrhotic livers
# ----------------------------------------------------------------------------------------------------------------

# HU ranges per contrast phase of the wide2 soft tissues, as in _PHASE_HU (a table of its own, so that
# _draw_phase_hu's draws, and with them the wide profile, stay unchanged)
_WIDE2_PHASE_HU = {
    "adrenal": ((30, 50), (55, 85), (55, 80), (45, 65)),  # enhances like other soft-tissue organs
    "pericardium": ((25, 45), (35, 60), (40, 65), (40, 60)),
}
_CIRRHOSIS_FRACTION = 0.15  # share of wide2 cases with a cirrhotic liver
_ADRENAL_FAT_MM = 2.0  # fat between an adrenal gland and the liver, which otherwise fills the space behind the IVC


def _draw_waves(rng, n: int, wavelength_mm) -> dict:
    """``n`` plane waves (random directions, wavelengths drawn from the range ``wavelength_mm``, phases): a smooth
    random field defined in the patient frame, so it does not depend on the sampling grid."""
    dirs = rng.normal(size=(n, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True) + 1e-12
    k = dirs * (2.0 * math.pi / rng.uniform(*wavelength_mm, n))[:, None]
    return {"k": k, "phases": rng.uniform(0.0, 2.0 * math.pi, n)}


def _wave_field(waves: dict, xx, yy, zz) -> np.ndarray:
    """Sum of the plane waves at open-grid points (float32), scaled to unit standard deviation."""
    acc = np.float32(0.0)
    for (kx, ky, kz), ph in zip(waves["k"].tolist(), waves["phases"].tolist(), strict=True):
        acc = acc + np.cos(xx * np.float32(kx) + yy * np.float32(ky) + zz * np.float32(kz) + np.float32(ph))
    return acc * np.float32(math.sqrt(2.0 / len(waves["phases"])))


def _grown(blob: dict, factor: float, offset=(0.0, 0.0, 0.0)) -> dict:
    """Copy of ``blob`` scaled by ``factor`` about its own centre, then moved by ``offset`` (mm)."""
    return _moved(blob, (1.0 - factor) * blob["centre"] + np.asarray(offset, dtype=float), factor)


def _padded(blob: dict, mm: float) -> dict:
    """Copy of ``blob`` with ``mm`` added to each semi-axis (a margin of about ``mm`` around it)."""
    return dict(blob, axes=blob["axes"] + mm)


def _draw_adrenal(rng, anat: dict, kidney: dict, front_xy) -> list:
    """One adrenal gland: a medial and a lateral limb, thin plates (3-6 mm thick, 30-50 mm high, 15-25 mm long)
    that diverge backwards from a common front edge at ``front_xy`` (an inverted V or Y in axial slices); its lower
    tips reach down to the upper pole of ``kidney``, its top stays under the diaphragm."""
    side = 1.0 if kidney["outer"]["centre"][0] > 0 else -1.0
    pole = _blob_point(kidney["outer"], (0.0, 0.0, 1.0))
    height = rng.uniform(30, 50)
    z_c = pole[2] + rng.uniform(0.25, 0.45) * height  # above and medial to the pole, tips level with its top
    dome = float(_diaphragm2d(np.float32(front_xy[0]), np.float32(front_xy[1]), anat))
    z_c = min(z_c, dome - anat["diaphragm"]["thick"] - 0.5 * height - 5.0)
    limbs = []
    for spread in (-rng.uniform(10, 30), rng.uniform(25, 50)):  # degrees from straight back: medial, lateral limb
        a = spread * math.pi / 180.0
        d = np.array([side * math.sin(a), -math.cos(a), 0.0])
        length, thick = rng.uniform(15, 25), rng.uniform(3, 6)
        centre = np.array([front_xy[0], front_xy[1], z_c + rng.uniform(-5, 5)]) + 0.45 * length * d
        rot = _rotation(0.0, 0.0, math.atan2(d[1], d[0]))  # local x along the limb, local y across (thin)
        limbs.append(_blob(rng, centre, (0.55 * length, 0.5 * thick, 0.5 * height), rot, 2, 0.05))
    return limbs


def _draw_adrenals(seed: int, anat: dict, hu: np.ndarray, phase: int) -> list:
    """Both adrenal glands (stream [seed, 8]): the right one behind the IVC, medial to the liver's bare area, the
    left one beside the aorta, in front of and medial to the left kidney; sets their HU in ``hu``."""
    rng = np.random.default_rng([seed, 8])
    ivc, ao = anat["vessels"]["ivc"], anat["vessels"]["aorta"]
    right = (ivc["x"] + rng.uniform(6, 14), ivc["y"] - ivc["ry"] - rng.uniform(2, 6))
    left = (ao["x"] - ao["rx"] - rng.uniform(6, 14), ao["y"] - rng.uniform(5, 15))
    limbs = _draw_adrenal(rng, anat, anat["kidneys"][0], right) + _draw_adrenal(rng, anat, anat["kidneys"][1], left)
    hu[_T["adrenal"]] = rng.uniform(*_WIDE2_PHASE_HU["adrenal"][phase])
    return limbs


def _draw_stomach_contents(seed: int, anat: dict, hu: np.ndarray) -> dict:
    """Stomach contents (stream [seed, 9]): food in half of the cases, a mottled mass (patches from fat, -100 HU,
    to soft tissue, +80 HU) in the dependent part of the stomach, and a dependent layer of positive oral contrast
    (200-400 HU) in most cases with oral contrast in the bowel, rarely otherwise; sets their HU in ``hu``."""
    rng = np.random.default_rng([seed, 9])
    st = anat["stomach"]["blob"]
    food = None
    if rng.uniform() < 0.5:
        sink = np.array([0.0, -rng.uniform(0.1, 0.4), -rng.uniform(0.0, 0.3)]) * st["axes"]  # backwards and down
        food = {
            "blob": _blob(rng, st["centre"] + sink, st["axes"] * rng.uniform(0.5, 0.85, 3), st["rot"], 3, 0.1),
            "waves": _draw_waves(rng, 10, (12.0, 35.0)),  # patches about 6-18 mm across
            "hu": (rng.uniform(-100, -50), rng.uniform(30, 80)),  # the patches' range: fat to soft tissue
        }
        hu[_T["stomach_food"]] = 0.5 * sum(food["hu"])
    contrast_y = None
    if rng.uniform() < (0.6 if anat["wide"]["contrast"] else 0.05):
        contrast_y = float(st["centre"][1] - rng.uniform(0.3, 0.7) * st["axes"][1])  # the layer's upper surface
    hu[_T["stomach_contrast"]] = rng.uniform(200, 400)
    return {"food": food, "contrast_y": contrast_y}


def _draw_pericardium(seed: int, phase: int, hu: np.ndarray) -> dict:
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
    hu[_T["pericardium"]] = rng.uniform(*_WIDE2_PHASE_HU["pericardium"][phase])
    hu[_T["pericardial_fat"]] = rng.uniform(-115, -85)
    return peri


def _fissure(rng, a: dict, b: dict, to_surface) -> dict:
    """A widened fissure between liver lobes ``a`` and ``b``: a flat ellipsoid (cleft 4-10 mm wide, 50-80 mm
    across) where the lobes meet on the line between their centres, moved 10-25 mm along ``to_surface`` (per axis
    -1, 0 or 1) towards the surface where the fissure opens."""
    t = np.linspace(0.0, 1.0, 41)[:, None]
    pts = a["centre"][None, :] + t * (b["centre"] - a["centre"])[None, :]
    f_a = _blob_field(a, pts[:, 0], pts[:, 1], pts[:, 2])
    f_b = _blob_field(b, pts[:, 0], pts[:, 1], pts[:, 2])
    meet = pts[int(np.argmin(np.abs(f_a - f_b)))]
    normal = b["centre"] - a["centre"]
    centre = meet + np.asarray(to_surface, dtype=float) * rng.uniform(10, 25, 3)
    axes = (rng.uniform(2, 5), rng.uniform(25, 40), rng.uniform(25, 40))
    return _blob(rng, centre, axes, _rotation(0.0, 0.0, math.atan2(normal[1], normal[0])), 2, 0.1)


def _draw_cirrhosis(seed: int, anat: dict):
    """A cirrhotic liver in ``_CIRRHOSIS_FRACTION`` of the cases (stream [seed, 11]), or None: the right lobe shrunk
    to 70-85% towards the lateral wall, the left lobe grown 5-25% and the caudate 25-60%, a nodular surface
    (bumps up to 1.5-3.75 mm), a regenerative-nodule texture of +-10-20 HU, two widened fissures, ascites in 60% and
    splenomegaly in 60% of them.  Returns the new liver and spleen and what to paint."""
    rng = np.random.default_rng([seed, 11])
    if rng.uniform() >= _CIRRHOSIS_FRACTION:
        return None
    liver = anat["liver"]
    right, left = liver["lobes"][:2]
    if len(liver["lobes"]) > 2:
        caudate = liver["lobes"][2]
    else:  # no caudate part drawn: add one where _place_liver puts it (mid-range size), then placed like the lobes
        local = _blob(
            rng, (-rng.uniform(30, 45), -rng.uniform(10, 30), rng.uniform(-20, 0)), (30, 30, 42), None, 3, 0.06
        )
        caudate = _moved(local, liver["shift"], liver["stretch"])
    f = rng.uniform(0.7, 0.85)
    semi = right["axes"] * right["stretch"]
    lobes = [  # the right lobe keeps its lateral edge; its top drops a little, staying under the diaphragm
        _grown(right, f, (1.0 - f) * np.array([0.8 * semi[0], 0.0, 0.3 * semi[2]])),
        _grown(left, rng.uniform(1.05, 1.25)),
        _grown(caudate, rng.uniform(1.25, 1.6)),
    ]
    nodules = {"mm": rng.uniform(1.0, 2.5), "waves": _draw_waves(rng, 24, (10.0, 25.0))}
    lo, hi = _lobes_bounds(lobes)
    pad = 1.5 * nodules["mm"]  # the wave field is clipped to +-1.5
    new_liver = dict(liver, lobes=lobes, lo=lo - pad, hi=hi + pad, nodules=nodules)
    spleen = None
    if rng.uniform() < 0.6:  # splenomegaly, growing mostly forwards and down
        g = rng.uniform(1.2, 1.5)
        spleen = _grown(anat["spleen"], g, (g - 1.0) * np.array([10.0, 20.0, -40.0]))
    return {
        "liver": new_liver,
        "spleen": spleen,
        "ascites": bool(rng.uniform() < 0.6),
        "lobes_before": liver["lobes"],
        # the umbilical fissure opens in front and below; that of the ligamentum venosum lies deep
        "fissures": [_fissure(rng, lobes[0], lobes[1], (0, 1, -1)), _fissure(rng, lobes[2], lobes[1], (0, 0, 0))],
        "texture": {"hu": rng.uniform(10, 20), "waves": _draw_waves(rng, 16, (5.0, 12.0))},
    }


def _draw_wide2(seed: int, anat: dict) -> dict:
    """The "wide2" profile's case: the wide case ``anat`` (from :func:`_draw_wide`, unchanged) plus adrenals
    (stream [seed, 8]), stomach contents ([seed, 9]), pericardium ([seed, 10]) and cirrhotic livers ([seed, 11]);
    the liver keeps out of the adrenals' fat margin.  Returns a new anatomy dict."""
    out = dict(anat)
    phase = PHASES.index(anat["wide"]["phase"])
    hu = anat["hu"].copy()
    cirrhosis = _draw_cirrhosis(seed, anat)
    out["wide2"] = {
        "adrenals": _draw_adrenals(seed, anat, hu, phase),
        "stomach": _draw_stomach_contents(seed, anat, hu),
        "pericardium": _draw_pericardium(seed, phase, hu),
        "cirrhosis": cirrhosis,
    }
    out["hu"] = hu
    liver = anat["liver"] if cirrhosis is None else cirrhosis["liver"]
    out["liver"] = dict(liver, keep_out=[_padded(limb, _ADRENAL_FAT_MM) for limb in out["wide2"]["adrenals"]])
    if cirrhosis is not None:
        if cirrhosis["spleen"] is not None:
            out["spleen"] = cirrhosis["spleen"]
        ascites = anat["wide"]["ascites"] or cirrhosis["ascites"]
        out["wide"] = dict(anat["wide"], liver_kind="cirrhotic", ascites=ascites)
    return out


def _nodular_lobes(grid: dict, sl, liver: dict) -> np.ndarray:
    """Union of the liver lobes on grid box ``sl`` with a nodular surface: each lobe's boundary moved out or in by
    the liver's smooth wave field (``liver["nodules"]``, clipped to +-1.5 standard deviations) times its "mm"."""
    xx, yy, zz = _sub(grid, sl)
    nod = liver["nodules"]
    bump = np.clip(_wave_field(nod["waves"], xx, yy, zz), -1.5, 1.5) * np.float32(nod["mm"])
    mask = np.zeros(tuple(s.stop - s.start for s in sl), dtype=bool)
    for lobe in liver["lobes"]:
        radius = float(np.mean(lobe["axes"] * lobe.get("stretch", np.ones(3))))  # mm per unit of the blob field
        mask |= _blob_field(lobe, xx, yy, zz) < np.float32(1.0) + bump / np.float32(radius)
    return mask


def _paint_wide2_soft(tmap, grid, anat: dict, wide2: dict):
    """Soft tissues of wide2, painted after the wide ones: stomach food and contrast over the stomach's fluid,
    ascites where a shrunken cirrhotic liver left room (when it has ascites), and the adrenals over fat and bowel,
    in a fat margin that the liver keeps out of."""
    st, stomach = wide2["stomach"], anat["stomach"]["blob"]
    if st["food"] is not None:
        _paint_blob(tmap, grid, st["food"]["blob"], _T["stomach_food"], only=(_T["stomach"],))
    if st["contrast_y"] is not None:
        y_top = st["contrast_y"]
        only = (_T["stomach"], _T["stomach_food"])
        _paint_blob(tmap, grid, stomach, _T["stomach_contrast"], only=only, extra=lambda xx, yy, zz: yy < y_top)
    cirrhosis = wide2["cirrhosis"]
    if cirrhosis is not None and anat["wide"]["ascites"]:
        for lobe in cirrhosis["lobes_before"]:
            _paint_blob(tmap, grid, lobe, _T["ascites"], only=(_T["visceral_fat"],))
    for limb in wide2["adrenals"]:  # in retroperitoneal fat: no ascites around them
        _paint_blob(tmap, grid, _padded(limb, _ADRENAL_FAT_MM), _T["visceral_fat"], only=(_T["ascites"],))
        _paint_blob(tmap, grid, limb, _T["adrenal"], only=_soft_codes())


def _paint_pericardium(tmap, grid, anat: dict, peri: dict):
    """Pericardial fat and, outside it, the pericardium around the heart above the diaphragm, over lung and
    mediastinal fat only (the heart itself stays); the fat is thickest towards the apex and under the heart."""
    heart = anat["heart"]
    reach_mm = peri["fat"] + peri["fat_apex"] + peri["rim"]
    sl = _blob_box(grid, heart, 1.0 + reach_mm / float(np.min(heart["axes"])))
    if sl is None:
        return
    xx, yy, zz = _sub(grid, sl)
    c = heart["centre"].tolist()
    dx, dy, dz = xx - np.float32(c[0]), yy - np.float32(c[1]), zz - np.float32(c[2])
    r = np.sqrt(dx * dx + dy * dy + dz * dz) + np.float32(1e-3)
    outside = r * (np.float32(1.0) - np.float32(1.0) / _blob_field(heart, xx, yy, zz))  # mm beyond the surface
    a = peri["apex"].tolist()
    toward_apex = np.clip((dx * np.float32(a[0]) + dy * np.float32(a[1]) + dz * np.float32(a[2])) / r, 0.0, 1.0)
    underside = np.clip(-dz / r, 0.0, 1.0)
    fat = np.float32(peri["fat"]) + np.float32(peri["fat_apex"]) * np.maximum(toward_apex, underside) ** 2
    above = zz > _diaphragm2d(xx[:, :, 0], yy[:, :, 0], anat)[:, :, None]
    only = (_T["lung"], _T["visceral_fat"])
    _paint(tmap, sl, above & (outside < fat + np.float32(peri["rim"])), _T["pericardium"], only)
    _paint(tmap, sl, above & (outside < fat), _T["pericardial_fat"], (_T["pericardium"],))


def _paint_fissures(tmap, grid, cirrhosis: dict):
    """The widened fissures of a cirrhotic liver, cut out of the liver and its vessels (tumours stay) and filled
    with fat."""
    for fissure in cirrhosis["fissures"]:
        _paint_blob(tmap, grid, fissure, _T["visceral_fat"], only=LIVER_CODES)


def _tissue_field(tmap: np.ndarray, grid: dict, code: int, waves: dict):
    """Bounding box ``sl`` of tissue ``code`` in ``tmap``, its mask there and the wave field on the box; or None."""
    mask = tmap == code
    idx = [np.flatnonzero(np.any(mask, axis=tuple(j for j in range(3) if j != a))) for a in range(3)]
    if len(idx[0]) == 0:
        return None
    sl = tuple(slice(int(i[0]), int(i[-1]) + 1) for i in idx)
    return sl, mask[sl], _wave_field(waves, *_sub(grid, sl))


# ----------------------------------------------------------------------------------------------------------------
# the "wide3" profile: the wide2 case in a body that widens at the hips and splits into thighs
# ----------------------------------------------------------------------------------------------------------------

# tissue codes the hips and thighs may repaint: the body wall and what fills the cavity (the soft codes, stool and
# ascites); organs and bones stay
_HIP_REPAINT = tuple(_T[k] for k in ("air", "skin", "subcutaneous_fat", "muscle", "stool", "ascites")) + _soft_codes()


def _draw_hips(seed: int, anat: dict) -> dict:
    """Body outline below the iliac crest (stream [seed, 12]): the sides and the buttocks widen down to the hip
    joints, and below the perineum the body divides into two thighs around the femoral shafts."""
    rng = np.random.default_rng([seed, 12])
    body, pv, arm = anat["body"], anat["wide"]["pelvis"], anat["wide"]["arm"]
    x_troch = pv["x_fh"] + 50.0 * math.cos(pv["neck_angle"])  # centre of the greater trochanter (_paint_wide_bones)
    cover = rng.uniform(20.0, 50.0)  # soft tissue lateral of the trochanter
    hip_mm = max(0.0, x_troch + 16.0 + cover - body["a"])  # lateral widening per side at the hip joints
    if arm is not None:  # arms down: the hips stay clear of the forearms
        hip_mm = min(hip_mm, max(0.0, arm["x"] - arm["r"] - body["a"] - 5.0))
    return {
        "z_top": pv["z_crest"],
        "z_full": pv["z_fh"] + rng.uniform(-10.0, 30.0),  # widening complete here
        "hip_mm": hip_mm,
        "buttock_mm": rng.uniform(0.0, 30.0),  # posterior widening (gluteal fat and muscle)
        "z_split": pv["z_fh"] - rng.uniform(60.0, 90.0),  # perineum: the thighs part below here
        "part_mm": rng.uniform(20.0, 50.0),  # height over which they part
        "x_thigh": x_troch - rng.uniform(5.0, 20.0),  # thigh centre, about the femoral shaft
        "gap_mm": rng.uniform(5.0, 30.0),  # half the gap between the thighs once parted
        "fat_mm": body["fat_x"] + 0.5 * hip_mm,  # subcutaneous fat of the hips and thighs
    }


def _draw_wide3(seed: int, anat: dict) -> dict:
    """The "wide3" profile's case: the wide2 case ``anat`` (unchanged above the iliac crest) plus hips, buttocks
    and thighs (:func:`_draw_hips`).  Returns a new anatomy dict."""
    return dict(anat, wide3={"hips": _draw_hips(seed, anat)})


def _hip_outline(x2, y2, body: dict, a: float, b_post: float):
    """Inside of a body outline as :func:`_superellipse` draws it, with half-width ``a`` and posterior depth
    ``b_post`` (the anterior depth is the body's)."""
    b = np.where(y2 < 0, np.float32(b_post), np.float32(body["b"]))
    p = np.where(y2 < 0, np.float32(body["p_post"]), np.float32(2.0))
    return (np.abs(x2 / np.float32(a)) ** p + np.abs(y2 / b) ** p) < 1.0


def _paint_hips(tmap, grid, anat: dict, hips: dict):
    """Widen the body below the iliac crest and divide it into thighs below the perineum, slice by slice: skin
    (2 mm), subcutaneous fat and muscle by depth below the new surface, over :data:`_HIP_REPAINT` only, so the
    bones, bladder, pelvic organs and vessels stay; what leaves the body becomes air."""
    body = anat["body"]
    x, y, z = grid["coords"]
    z_idx = np.flatnonzero(z < np.float32(hips["z_top"]))
    if len(z_idx) == 0:
        return
    x2, y2 = x[:, None], y[None, :]
    step = (float(x[1] - x[0]) if len(x) > 1 else 1.0, float(y[1] - y[0]) if len(y) > 1 else 1.0)
    repaint = np.isin(np.arange(_N_CODES), _HIP_REPAINT)
    was_body = _hip_outline(x2, y2, body, body["a"], body["b"])
    xt, span = hips["x_thigh"], max(1.0, hips["z_top"] - hips["z_full"])
    for k in z_idx:
        u = float(np.clip((hips["z_top"] - z[k]) / span, 0.0, 1.0))
        t = u * u * (3.0 - 2.0 * u)  # smooth start at the crest
        a, b_post = body["a"] + hips["hip_mm"] * t, body["b"] + hips["buttock_mm"] * t
        inside = _hip_outline(x2, y2, body, a, b_post)
        part = float(np.clip((hips["z_split"] - z[k]) / hips["part_mm"], 0.0, 1.0))
        if z[k] < hips["z_split"]:
            inner = xt - part * hips["gap_mm"]  # medial reach of each thigh from its centre
            lateral = np.where(np.abs(x2) > xt, np.float32(a - xt), np.float32(max(inner, 1.0)))
            b_thigh = np.float32(0.75 * body["b"])
            thighs = ((np.abs(x2) - xt) / lateral) ** 2 + (y2 / b_thigh) ** 2 < 1.0
            bridge = (x2 / np.float32(max((1.0 - part) * xt, 1.0))) ** 2 + (y2 / b_thigh) ** 2 < 1.0  # perineum
            inside = inside & (thighs | (bridge if part < 1.0 else False))
        sl = tmap[:, :, k]
        free = repaint[sl] & (inside | was_body)
        depth = ndimage.distance_transform_edt(inside, sampling=step)
        layer = np.where(depth < body["skin"], _T["skin"], _T["subcutaneous_fat"])
        layer = np.where(depth >= hips["fat_mm"] + body["skin"], _T["muscle"], layer)
        if z[k] >= hips["z_split"]:  # above the perineum only the wall grows: the cavity keeps its contents
            free &= ~_hip_outline(x2, y2, body, body["am"], body["bm"])
        layer = np.where(inside, layer, _T["air"]).astype(np.uint8)
        sl[free] = layer[free]


def _wide2_textures(img: np.ndarray, tmap: np.ndarray, grid: dict, wide2: dict):
    """HU patterns of wide2 tissues, set in ``img`` before blur and noise: the mottled stomach food and the
    regenerative-nodule texture of a cirrhotic liver (smooth fields of the patient frame, no random draws here)."""
    food = wide2["stomach"]["food"]
    got = None if food is None else _tissue_field(tmap, grid, _T["stomach_food"], food["waves"])
    if got is not None:
        sl, mask, f = got
        lo, hi = food["hu"]
        patches = np.float32(lo) + np.float32(hi - lo) / (np.float32(1.0) + np.exp(np.float32(-3.0) * f))
        img[sl][mask] = patches[mask]
    cirrhosis = wide2["cirrhosis"]
    tex = None if cirrhosis is None else cirrhosis["texture"]
    got = None if tex is None else _tissue_field(tmap, grid, _T["liver"], tex["waves"])
    if got is not None:
        sl, mask, f = got
        img[sl][mask] += np.float32(tex["hu"]) * np.clip(f, -1.5, 1.5)[mask] / np.float32(1.5)


def case_info(seed: int, profile: str = "wide") -> dict:
    """What a case shows: profile, contrast phase, liver kind (normal, fatty, dense; with wide2 also cirrhotic) and
    the patient's scale."""
    seed = check_seed(seed)
    anat = _draw_anatomy(seed)
    profile = _check_profile(profile)
    if profile == "standard":
        return {"profile": "standard", "phase": "portal_venous", "liver_kind": "normal"}
    anat = _draw_wide(seed, anat)
    if profile in ("wide2", "wide3"):
        anat = _draw_wide2(seed, anat)  # wide3 differs from wide2 only below the iliac crest
    w = anat["wide"]
    return {"profile": profile, "phase": w["phase"], "liver_kind": w["liver_kind"], "scale": w["scale"]}


def _check_profile(profile) -> str:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    return profile


# ----------------------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------------------


def make_case_with_tissues(seed: int, shape=None, spacing=None, orientation=None, profile: str = "standard"):
    """Like :func:`make_case` but also returns the noiseless uint8 tissue map (codes in ``TISSUES``).

    The tissue map is stored like the image and is what the image and label were made from; it lets tests and
    demos find the spleen, bone, air and so on.
    """
    seed = check_seed(seed)
    profile = _check_profile(profile)
    anat = _draw_anatomy(seed)
    if profile in ("wide", "wide2", "wide3"):
        anat = _draw_wide(seed, anat)
        if profile in ("wide2", "wide3"):
            anat = _draw_wide2(seed, anat)  # the wide case, with the wide2 additions
        if profile == "wide3":
            anat = _draw_wide3(seed, anat)  # the wide2 case, with hips and thighs
        grid = _make_wide_grid(seed, anat, shape, spacing, orientation)
        tmap = _paint_tissues(grid, anat)
        hu = _wide_image(tmap, grid, anat, seed)
    else:
        grid = _make_grid(seed, anat, shape, spacing, orientation)
        tmap = _paint_tissues(grid, anat)
        hu = _hu_image(tmap, anat, seed)
    image = _to_stored(hu, grid["axes"])
    del hu
    tissues = _to_stored(tmap, grid["axes"])
    del tmap
    label = labels_from_tissues(tissues)
    return image, label, _affine(grid), tissues


def make_case(seed: int, shape=None, spacing=None, orientation=None, profile: str = "standard"):
    """Synthetic abdominal CT volume with liver / tumour labels.

    ``profile="standard"`` (the default) draws the portal-venous abdominal phantom the demo and tests use.
    ``profile="wide"`` draws a domain-randomised case for training a network meant for real CT: the field of view
    runs from the lung apex or mid-abdomen down to the liver or below the femoral heads (the liver may be cut by
    the top or bottom edge, and the label with it), small to large patients, pelvis (iliac wings, sacrum, femora,
    bladder, uterus or prostate, rectum), colon and small-bowel loops with fluid, soft, oral-contrast or gas
    contents, pancreas, portal vein, iliac vessels, ascites and arms sometimes; a contrast phase per case
    (non-contrast, arterial, portal-venous, delayed; fatty and dense livers, large tumours); per-organ smooth
    intensity fields, noise 5-40 HU, a drawn kernel and slice thickness, cupping and rare metal streaks.  Its
    draws come from the streams ``[seed, 3]`` to ``[seed, 7]``, so ``"standard"`` is unchanged.
    ``profile="wide2"`` draws exactly the wide case and adds what it lacks: adrenal glands, stomach food and
    positive oral contrast, pericardium and pericardial fat, and cirrhotic livers (15%: shrunken right lobe,
    enlarged caudate and left lobe, nodular surface and texture, widened fissures, often ascites and splenomegaly),
    from the streams ``[seed, 8]`` to ``[seed, 11]``, so ``"wide"`` is unchanged.  ``profile="wide3"`` draws the
    wide2 case with hips, buttocks and thighs below the iliac crest (stream ``[seed, 12]``).

    Args:
        seed: non-negative integer; the same arguments always give bit-identical output.
        shape: (n0, n1, n2) voxels of the stored array, or None to derive it from the field of view.
        spacing: (d0, d1, d2) mm along the stored array axes, or None (standard: in-plane ~U(2.4, 3.2) mm,
            slices ~U(3.0, 5.0) mm; wide: in-plane ~U(1.5, 3.2) mm, slices ~U(1.0, 5.0) mm; with ``shape`` given,
            the spacing that gives the drawn field of view).
        orientation: nibabel axis code of the stored array ("RAS", "LPS", "PLS", ...), or None to draw one of
            ``ORIENTATIONS``.
        profile: one of ``PROFILES`` ("standard", "wide", "wide2" or "wide3").

    Returns:
        image: int16 Hounsfield units, label: uint8 (0 background, 1 liver incl. vessels, 2 tumour), both in
        stored voxel order (i, j, k); affine: 4x4 float64 voxel -> world RAS+ mm.  The liver lies on the
        patient's right (world +x); with "standard" entirely inside the field of view.

    Raises:
        ValueError: bad seed, shape, spacing, orientation or profile, or (standard) a field of view too small for
            the liver.
    """
    image, label, affine, _ = make_case_with_tissues(seed, shape, spacing, orientation, profile)
    return image, label, affine


def case_summary(label: np.ndarray, affine: np.ndarray) -> str:
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    n_liver = int(np.count_nonzero(label))
    n_tumour = int(np.count_nonzero(label == 2))
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))

    return (
        f"shape={tuple(label.shape)} spacing=({', '.join(f'{z:.2f}' for z in zooms)}) mm "
        f"orientation={''.join(nib.aff2axcodes(affine))} liver={n_liver * voxel_ml:.0f} mL "
        f"tumour={n_tumour * voxel_ml:.1f} mL"
    )


def write_dataset(output_dir, num_train: int = 8, num_test: int = 2, seed: int = 0, profile: str = "standard") -> str:
    """Write a Medical Segmentation Decathlon style phantom dataset and return the path of its dataset.json.

    Layout: ``imagesTr/liver_000.nii.gz`` ... and ``labelsTr/`` for the ``num_train`` training cases,
    ``imagesTs/`` for the ``num_test`` test cases that follow, plus ``labelsTs/`` (phantom only: the held-out
    labels, so a demo can measure held-out Dice).  Case ``i`` (0-based, training first) uses seed
    ``seed * 1000 + i``; ``profile`` ("standard", "wide" or "wide2") is passed to :func:`make_case`.  Every file
    is written atomically; one progress line is printed per case.
    """
    seed = check_seed(seed)
    profile = _check_profile(profile)
    for name, v in (("num_train", num_train), ("num_test", num_test)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    total = int(num_train) + int(num_test)
    if total < 1 or total > 1000:
        raise ValueError(f"num_train + num_test must be in [1, 1000], got {total}")
    output_dir = os.fspath(output_dir)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"{output_dir}: exists and is not a folder")
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        os.makedirs(os.path.join(output_dir, sub), exist_ok=True)

    training, test = [], []
    for i in range(total):
        case_seed = seed * 1000 + i
        name = f"liver_{i:03d}.nii.gz"
        part = "Tr" if i < num_train else "Ts"
        t0 = time.perf_counter()
        image, label, affine = make_case(case_seed, profile=profile)
        descr = f"SYNTHETIC liver CT phantom, seed {case_seed}, not patient data"
        if profile != "standard":
            descr = f"SYNTHETIC liver CT phantom, seed {case_seed}, profile {profile}, not patient data"
        save_nifti(image, affine, os.path.join(output_dir, f"images{part}", name), descr)
        save_nifti(label, affine, os.path.join(output_dir, f"labels{part}", name), descr)
        if part == "Tr":
            training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        else:
            test.append(f"./imagesTs/{name}")
        print(
            f"[{i + 1}/{total}] images{part}/{name} seed={case_seed} {case_summary(label, affine)} "
            f"({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )

    dataset = {
        "name": "LiverPhantom",
        "description": (
            "SYNTHETIC abdominal CT phantom generated by scripts/lib/phantom.py of the liver_ct_segmentation "
            "bundle; computer-generated shapes, NOT patient data. Labels follow MSD Task03_Liver."
        ),
        "reference": "Generated by scripts/lib/phantom.py (liver_ct_segmentation MONAI bundle)",
        "licence": "Synthetic data, no patient information; same licence as the bundle (see LICENSE)",
        "release": "1.0",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "liver", "2": "cancer"},
        "numTraining": int(num_train),
        "numTest": int(num_test),
        "training": training,
        "test": test,
        "phantom": {
            "generator": "scripts/lib/phantom.py",
            "seed": seed,
            "profile": profile,
            "case_seed": "seed * 1000 + case index (training cases first)",
            "test_labels": [t.replace("imagesTs", "labelsTs") for t in test],
        },
    }
    path = os.path.join(output_dir, "dataset.json")
    write_text(path, json.dumps(dataset, indent=4) + "\n")
    return path
