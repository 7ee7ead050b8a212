"""wide4's liver variants: liver shapes that real CT shows and the wide3 case lacks, each from a stream of its own.

A network trained on wide3 cases misses the thin liver tips that real livers have and labels as liver the vessels
at the hilum that reference segmentations leave out.  The wide4 case is the wide3 case with, in a share of the cases
each, atrophic or hypertrophic lobes (stream ``[seed, 13]``: the lobes rescaled, the liver refitted to its drawn
volume and what lies inside it placed anew), a long inferior right-lobe tip (Riedel's lobe, ``[seed, 14]``) lateral
to the right kidney down to below its lower pole, and a thin left lateral segment in front of and over the stomach
towards the spleen (``[seed, 15]``); and in every case the hilum as references draw it (``[seed, 16]``).  A tip is a
tongue (:func:`.shapes.tongue`) with the lowest height it may reach and organs of its own to keep out of;
:func:`.liver.liver_mask` joins the tips and the sleeve round the IVC to the liver.
"""

from __future__ import annotations

import math

import numpy as np

from .appearance import WIDE4_PHASE_HU
from .liver import COARSE_MM, add_interior, draw_tumours, fit_liver, snap
from .shapes import blob_field, blob_point, grown, padded, superellipse, tongue, tongue_bounds
from .thorax import diaphragm2d
from .tissues import TISSUES
from .vessels import draw_hepatic_vessels

_T = TISSUES  # tissue name -> code

# A larger left lobe would cover more of the stomach and spleen than the wide3 liver does: a refitted liver, and the
# left tip, keep this many mm of fat away from them.
STOMACH_FAT_MM, SPLEEN_FAT_MM = 2.0, 3.0
# The same for the pancreas and the splenic vein, and, as the diaphragm was drawn for the wide3 liver's top, a
# refitted liver stays under the diaphragm's muscle wherever its top now lies.
TUBE_FAT_MM = 2.0
# Half-thickness of a tip's very end: a liver edge tapers to well under a voxel, which only the label's floor of one
# voxel (thin_tips) keeps in the label.
EDGE_MM = 0.3


def _scaled_about(blob: dict, factor: float, anchor) -> dict:
    """Copy of ``blob`` scaled by ``factor`` about the point ``anchor`` (mm), which stays where it is."""
    return grown(blob, factor, (1.0 - factor) * (np.asarray(anchor, dtype=float) - blob["centre"]))


def _placed_anew(rng, anat: dict, liver: dict) -> dict:
    """What lies inside a refitted ``liver``, placed in it anew: hepatic vessels, tumours, the large tumour (moved
    to the nearest point deep enough) and the portal vein, which ends at the new hilum."""
    hepatic = draw_hepatic_vessels(rng, anat, liver)
    tumours = draw_tumours(rng, liver)
    wide = dict(anat["wide"])
    large = wide["large_tumour"]
    if large is not None:
        wide["large_tumour"] = dict(large, centre=snap(liver, large["centre"], 0.5 * float(np.max(large["axes"]))))
    confluence, _, r0, r1 = wide["portal"][0]
    wide["portal"] = [(confluence, hepatic[0][0], r0, r1)] + list(wide["portal"][1:])
    return {"hepatic_vessels": hepatic, "tumours": tumours, "wide": wide}


def resize_lobes(seed: int, anat: dict, share: float):
    """Atrophic and hypertrophic lobes in ``share`` of the cases that are not cirrhotic (stream [seed, 13]), or
    None.  In 60% of them the right lobe shrinks to 60-80% towards the left lobe, the left lobe grows by 30-70% and
    the caudate by 0-30% (the commoner pattern: after right portal vein occlusion, in biliary disease or a right-lobe
    tumour); in the others the left lobe is small (40-70%), a common variant.  The lobes are refitted to the case's
    drawn volume, now out of the stomach, spleen, pancreas and splenic vein and under the diaphragm (a liver of
    another shape would otherwise cover them), and what lies inside the liver is placed anew.  Returns the kind, the
    new liver and what changes with it."""
    rng = np.random.default_rng([seed, 13])
    use, kind = rng.uniform(), rng.uniform()
    f_right, f_left, f_caudate, f_small = (rng.uniform(*r) for r in ((0.6, 0.8), (1.3, 1.7), (1.0, 1.3), (0.4, 0.7)))
    if use >= share or anat.get("wide2", {}).get("cirrhosis") is not None:  # a cirrhotic liver has its own sizes
        return None
    liver = anat["liver"]
    local = liver["local"]
    lobes = list(local["lobes"])
    right, left = lobes[0], lobes[1]
    medial_end = blob_point(left, (0.7, 0.0, 0.0))  # the left lobe's end next to the right lobe stays there
    if kind < 0.6:
        lobes[0] = _scaled_about(right, f_right, blob_point(right, (-0.6, 0.0, 0.3)))
        lobes[1] = _scaled_about(left, f_left, medial_end)
        if len(lobes) > 2:
            lobes[2] = grown(lobes[2], f_caudate)
    else:
        lobes[1] = _scaled_about(left, f_small, medial_end)
    keep_out = list(liver.get("keep_out", ()))
    keep_out += [padded(anat["stomach"]["blob"], STOMACH_FAT_MM), padded(anat["spleen"], SPLEEN_FAT_MM)]
    tubes = [(p0, p1, r0 + TUBE_FAT_MM, r1 + TUBE_FAT_MM) for p0, p1, r0, r1 in anat["wide"]["pancreas"]]
    tubes += [(p0, p1, r0 + TUBE_FAT_MM, r1 + TUBE_FAT_MM) for p0, p1, r0, r1 in anat["wide"]["portal"][1:]]
    extra = {"keep_out": keep_out, "keep_out_tubes": tubes, "under_diaphragm": True}
    new, coarse = fit_liver(anat, lobes, local["drawn"], extra)
    new = add_interior(new, coarse)
    # the grid was drawn for the wide3 liver's extent: keeping it keeps the case's field of view
    new.update(fov_lo=liver["fov_lo"], fov_hi=liver["fov_hi"], local={"lobes": lobes, "drawn": local["drawn"]})
    out = _placed_anew(rng, anat, new)
    out.update(kind="right_atrophy" if kind < 0.6 else "small_left_lobe", liver=new)
    return out


def _wall_x(body: dict, y: float, margin: float) -> float:
    """x (mm) of the cavity's right wall at ``y`` in an axial slice, ``margin`` mm inside it."""
    p = 2.0 if y >= 0.0 else body["p_post"]
    a, b = body["ai"] - margin, body["bi"] - margin
    return a * max(0.0, 1.0 - abs(y / b) ** p) ** (1.0 / p)


def _kidney_edge_x(anat: dict, y: float, z_levels) -> float:
    """The greatest x (mm) of what the liver keeps out of round the right kidney (1.12 times its outline, and the
    space behind it) at ``y`` and the heights ``z_levels``; the kidney's centre where neither reaches."""
    kidney = anat["kidneys"][0]
    xs = np.arange(kidney["outer"]["centre"][0], 300.0, 1.0, dtype=np.float32)[:, None, None]
    yy = np.full((1, 1, 1), y, dtype=np.float32)
    zz = np.asarray(z_levels, dtype=np.float32)[None, None, :]
    inside = (blob_field(kidney["outer"], xs, yy, zz) < np.float32(1.12)) | (
        blob_field(kidney["shadow"], xs, yy, zz) < np.float32(1.0)
    )
    hit = np.any(inside, axis=(1, 2))
    return float(xs[hit, 0, 0].max()) if np.any(hit) else float(kidney["outer"]["centre"][0])


def draw_riedel_lobe(seed: int, anat: dict, share: float):
    """A long inferior right-lobe tip (Riedel's lobe) in ``share`` of the cases (stream [seed, 14]), or None: a
    tongue from inside the right lobe's lowest lateral part down between the right kidney (2-6 mm of fat from it)
    and the lateral wall, against the wall as the liver above it is, 10-35 mm in front of the kidney's centre;
    8-25 mm thick at the level of the kidney's lower pole, thicker where it leaves the liver, a quarter to a half of
    that lower down, and ending in an edge (thinner than a voxel) 5-30 mm below the pole and 20 mm or more above
    the iliac crest; 25-45 mm wide from front to back.  None too where the kidney leaves no room."""
    rng = np.random.default_rng([seed, 14])
    use = rng.uniform()
    thick, end_share, base_share = rng.uniform(8.0, 25.0), rng.uniform(0.25, 0.5), rng.uniform(1.2, 1.6)
    width, below = rng.uniform(25.0, 45.0), rng.uniform(5.0, 30.0)
    forward, gap = rng.uniform(10.0, 35.0), rng.uniform(2.0, 6.0)
    if use >= share:
        return None
    liver, kidney, body = anat["liver"], anat["kidneys"][0]["outer"], anat["body"]
    y = float(kidney["centre"][1]) + forward
    pole = float(blob_point(kidney, (0.0, 0.0, -1.0))[2])
    z_crest = float(anat["wide"]["pelvis"]["z_crest"])
    z_end = min(max(pole - below, z_crest + 20.0 + 0.3 * width), pole - 2.0)
    pts = liver["points"]
    lateral = pts[(pts[:, 0] > kidney["centre"][0]) & (np.abs(pts[:, 1] - y) < 25.0)]
    if len(lateral) == 0:
        return None
    z_leave = max(float(lateral[:, 2].min()), pole + 10.0)  # where the tongue leaves the liver
    x_in = _kidney_edge_x(anat, y, np.linspace(z_end, z_leave, 12)) + gap
    x_out = _wall_x(body, y, liver["local"]["drawn"]["gap"][0])
    half = np.minimum(np.array([base_share, 1.0, end_share]) * 0.5 * thick, 0.5 * (x_out - x_in))
    if half[1] < 2.0:
        return None
    half = np.append(half, EDGE_MM)
    xs = x_out - half
    z_thin = z_end + 0.4 * (pole - z_end)  # below here it thins to an edge
    points = [snap(liver, (xs[0], y, z_leave + 25.0), 6.0), (xs[0], y, z_leave), (xs[1], y, pole), (xs[2], y, z_thin)]
    points.append((xs[3], y, z_end))
    normal = (xs[1] / body["ai"] ** 2, y / body["bi"] ** 2, 0.0)  # the wall's, pointing out
    shape = tongue(points, half[[0, 0, 1, 2, 3]], np.array([0.65, 0.65, 0.5, 0.3, 0.15]) * width, [normal] * 5)
    return {"tongue": shape, "z_min": z_crest + 10.0, "keep_out": []}


def _outside(blob: dict, direction, mm: float) -> tuple:
    """The point ``mm`` outside the bumpy surface of ``blob`` (a blob without stretch) in the unit-sphere
    ``direction``, and the surface's outward normal there."""
    d = np.asarray(direction, dtype=float)
    d = d / np.linalg.norm(d)
    surface = blob_point(blob, d * (1.0 + float(np.sum(np.abs(blob["amps"])))))  # the bumps reach no further
    n = blob["rot"] @ (d / blob["axes"])
    n /= np.linalg.norm(n)
    return surface + mm * n, n


def _inside(p, anat: dict, margin: float, half: float) -> np.ndarray:
    """``p`` moved, if need be, into the cavity (``margin`` mm inside its wall, along the line to the body's axis)
    and under the diaphragm (``half`` mm and more below its muscle)."""
    body = anat["body"]
    x, y, z = (float(v) for v in p)
    a, b = body["ai"] - margin, body["bi"] - margin
    s = float(superellipse(np.float32(x), np.float32(y), a, b, body["p_post"]))
    if s >= 1.0:
        f = (0.999 / s) ** (1.0 / (2.0 if y >= 0.0 else body["p_post"]))
        x, y = f * x, f * y
    top = float(diaphragm2d(np.array([x], np.float32), np.array([y], np.float32), anat)[0])
    return np.array([x, y, min(z, top - anat["diaphragm"]["thick"] - half - 2.0)])


def _in_liver(liver: dict, p) -> bool:
    """Whether the point ``p`` (mm) lies in the liver (within a coarse voxel of its interior points)."""
    return bool(np.min(np.sum((liver["points"] - np.asarray(p)) ** 2, axis=1)) <= COARSE_MM**2)


def _near(blob: dict, p, mm: float) -> bool:
    """Whether the point ``p`` lies within about ``mm`` mm of ``blob`` (inside it grown by that much)."""
    x, y, z = (np.float32(v) for v in p)
    return bool(blob_field(padded(blob, mm), x, y, z) < np.float32(1.0))


def draw_left_tip(seed: int, anat: dict, share: float):
    """The left lateral segment running on as a thin tip in front of and over the stomach towards the spleen, in
    ``share`` of the cases (stream [seed, 15]), or None: a tongue that follows the stomach's surface (2-5 mm of fat
    between them) round its front and left side, from where the left lobe ends in front of it on to the stomach's
    side that faces the spleen (5-65 degrees behind its left side), rising over it on the way; 6-20 mm thick where
    it leaves the liver, 1.5-4 mm at its end and on to an edge 8 mm further (thinner than a voxel); 30-60 mm wide;
    kept out of the stomach, spleen and left kidney, in the cavity and under the diaphragm.  None too where the left
    lobe reaches round the stomach already."""
    rng = np.random.default_rng([seed, 15])
    use = rng.uniform()
    thick, thick_end, width = rng.uniform(6.0, 20.0), rng.uniform(1.5, 4.0), rng.uniform(30.0, 60.0)
    reach, lift, rise, gap = rng.uniform(0.0, 1.0), rng.uniform(-0.2, 0.3), rng.uniform(0.0, 0.3), rng.uniform(2, 5)
    if use >= share:
        return None
    liver, stomach, spleen = anat["liver"], anat["stomach"]["blob"], anat["spleen"]
    deg = math.pi / 180.0
    angles = np.arange(10.0, 185.0 + 60.0 * reach, 15.0) * deg  # round the stomach, from its front right
    covered = [
        i for i, a in enumerate(angles) if _in_liver(liver, _outside(stomach, (math.cos(a), math.sin(a), lift), gap)[0])
    ]
    if covered and covered[-1] >= len(angles) - 2:
        return None
    i0 = covered[-1] if covered else 0  # where the left lobe ends in front of the stomach
    steps = np.linspace(0.0, 1.0, len(angles) - i0)
    path = []
    if not covered:  # the left lobe stops short of the stomach's front: the tip starts in it, where it comes nearest
        p, n = _outside(stomach, (math.cos(angles[0]), math.sin(angles[0]), lift), gap + 0.5 * thick)
        path.append((_inside(snap(liver, p, 6.0), anat, 0.0, 0.0), 0.75 * thick, 0.5 * width, n))
    keep_out = [
        padded(stomach, STOMACH_FAT_MM),
        padded(spleen, SPLEEN_FAT_MM),
        padded(anat["kidneys"][1]["outer"], 3.0),
    ]
    for a, u in zip(angles[i0:], steps, strict=True):
        half = 0.5 * (thick + u * (thick_end - thick))
        p, n = _outside(stomach, (math.cos(a), math.sin(a), lift + rise * u), gap + half)
        p = _inside(p, anat, 3.0 + half, half)
        # the spleen or left kidney would cut the tip, or the cavity's wall or the diaphragm pushed it into the
        # stomach: it ends before
        if _near(keep_out[1], p, half + 2.0) or _near(keep_out[2], p, half + 2.0) or _near(stomach, p, 0.0):
            break
        path.append((p, half, (0.5 - 0.3 * u) * width, n))
    if len(path) < 2:
        return None
    end, way = path[-1][0], path[-1][0] - path[-2][0]
    path.append((end + 8.0 * way / np.linalg.norm(way), EDGE_MM, 0.1 * width, path[-1][3]))  # an edge 8 mm on
    shape = tongue([k[0] for k in path], [k[1] for k in path], [k[2] for k in path], [k[3] for k in path])
    return {"tongue": shape, "z_min": -1e9, "keep_out": keep_out}


def _towards(p0, p1, mm: float) -> np.ndarray:
    """The point ``mm`` from ``p0`` towards ``p1``."""
    p0, p1 = np.asarray(p0, dtype=float), np.asarray(p1, dtype=float)
    return p0 + mm * (p1 - p0) / (np.linalg.norm(p1 - p0) + 1e-9)


def _ivc_wrap(liver: dict, ivc: dict, thick: float, z_hi: float, z_lo: float):
    """The sleeve of liver round the IVC (see :func:`draw_hilum`) where the liver already comes near the vessel
    between ``z_lo`` and ``z_hi``, or None where it does not over 20 mm."""
    pts = liver["points"]
    reach = thick + COARSE_MM
    u, v = (pts[:, 0] - ivc["x"]) / (ivc["rx"] + reach), (pts[:, 1] - ivc["y"]) / (ivc["ry"] + reach)
    near = pts[u * u + v * v < 1.0, 2]
    if len(near) == 0:
        return None
    z_hi, z_lo = min(z_hi, float(near.max())), max(z_lo, float(near.min()))
    if z_hi - z_lo < 20.0:
        return None
    return {"thick": thick, "z_lo": z_lo, "z_hi": z_hi}


def draw_hilum(seed: int, anat: dict, hu: np.ndarray, phase: int) -> dict:
    """The hilum as reference segmentations draw it (stream [seed, 16]).  The liver wraps the retrohepatic IVC: a
    sleeve 6-14 mm thick over 50-90 mm of its height from 8-20 mm below the liver's top, open at the back over
    70-130 degrees towards the spine, aorta and right crus; the liver touches the vessel without a margin.  The main
    portal vein enters the liver at the hilum in a fat sleeve 1-4 mm thick, and the vein is cut out of the liver up
    to its bifurcation and 10-25 mm (right) and 10-30 mm (left) along its branches.  Sets the IVC's and portal
    vein's HU in ``hu`` (:data:`.appearance.WIDE4_PHASE_HU`).  Returns the sleeve (or None) and the vessels."""
    rng = np.random.default_rng([seed, 16])
    deg = math.pi / 180.0
    thick, below_top, height = rng.uniform(6.0, 14.0), rng.uniform(8.0, 20.0), rng.uniform(50.0, 90.0)
    open_dir, half_open = -rng.uniform(100.0, 140.0) * deg, rng.uniform(35.0, 65.0) * deg
    rim, len_right, len_left = rng.uniform(1.0, 4.0), rng.uniform(10.0, 25.0), rng.uniform(10.0, 30.0)
    for name in ("ivc", "portal_vein"):
        hu[_T[name]] = rng.uniform(*WIDE4_PHASE_HU[name][phase])
    liver = anat["liver"]
    z_hi = liver["top"][2] - below_top
    wrap = _ivc_wrap(liver, anat["vessels"]["ivc"], thick, z_hi, z_hi - height)
    if wrap is not None:  # the caudate lobe lies left of the IVC, next to the stomach, which it keeps out of
        wrap.update(open=open_dir, half_open=half_open, keep_out=[padded(anat["stomach"]["blob"], STOMACH_FAT_MM)])
    confluence, hilum, r0, r1 = anat["wide"]["portal"][0]
    right, left = anat["hepatic_vessels"][0], anat["hepatic_vessels"][1]
    portal = [(confluence, hilum, r0, r1)]
    portal += [(hilum, _towards(hilum, right[1], len_right), right[2], 0.9 * right[2])]
    portal += [(hilum, _towards(hilum, left[1], len_left), left[2], 0.9 * left[2])]
    return {"wrap": wrap, "vessels": {"fat": [(confluence, hilum, r0 + rim, r1 + rim)], "portal": portal}}


def with_bounds(liver: dict, anat: dict) -> dict:
    """Copy of ``liver`` whose box (``lo``, ``hi``) also holds its tips (with room for them to be made a voxel
    thick) and its sleeve round the IVC."""
    lo, hi = [np.asarray(liver["lo"], dtype=float)], [np.asarray(liver["hi"], dtype=float)]
    for tip in liver.get("tips", ()):
        t_lo, t_hi = tongue_bounds(tip["tongue"], 10.0)  # room for a floor of half a voxel, of any grid's voxels
        lo.append(t_lo)
        hi.append(t_hi)
    wrap = liver.get("ivc_wrap")
    if wrap is not None:
        ivc, t = anat["vessels"]["ivc"], wrap["thick"]
        lo.append(np.array([ivc["x"] - ivc["rx"] - t, ivc["y"] - ivc["ry"] - t, wrap["z_lo"]]))
        hi.append(np.array([ivc["x"] + ivc["rx"] + t, ivc["y"] + ivc["ry"] + t, wrap["z_hi"]]))
    return dict(liver, lo=np.min(lo, axis=0), hi=np.max(hi, axis=0))
