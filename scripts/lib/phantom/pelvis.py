"""The pelvis of domain-randomised cases: iliac wings, sacrum, femoral heads, necks and shafts, pubic and ischial
rami, bladder, uterus or prostate, gluteal and iliacus muscles; and (wide3) the hips and thighs around them.

Fields of view that reach below the liver show the pelvis, where a network must learn that bladder and bowel are not
liver.  The bones are painted over everything but the liver; the hips widen the body outline below the iliac crest
and divide it into thighs below the perineum, repainting only the body wall and what fills the cavity
(:data:`HIP_REPAINT`), so bones, organs and vessels stay the wide2 case's.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .paint import paint_blob, paint_bone, paint_tube
from .shapes import blob_field, draw_blob, rotation
from .tissues import N_CODES, SOFT_CODES, TISSUES

_T = TISSUES  # tissue name -> code


def draw_pelvis(rng, anat: dict, z_crest: float) -> dict:
    """Pelvic bones (iliac wings, sacrum, acetabula, femoral heads and necks, pubic and ischial rami) and organs."""
    ai, bi, y_vb = anat["body"]["ai"], anat["body"]["bi"], anat["spine"]["y_vb"]
    deg = math.pi / 180.0
    z_fh = z_crest - rng.uniform(150, 185)
    x_fh = min(rng.uniform(85, 100), ai - 15.0)
    y_fh = rng.uniform(-15, 15)
    r_fh = rng.uniform(21, 26)
    wing_axes = (min(rng.uniform(105, 125), ai), rng.uniform(75, 95), rng.uniform(110, 130))
    wing = draw_blob(rng, (0.0, y_vb + rng.uniform(15, 30), z_crest), wing_axes, None, 3, 0.04)
    sacrum = draw_blob(
        rng,
        (0.0, y_vb - rng.uniform(5, 15), z_crest - rng.uniform(55, 70)),
        (rng.uniform(42, 52), rng.uniform(14, 20), rng.uniform(60, 75)),
        rotation(-rng.uniform(20, 35) * deg, 0.0, 0.0),
        2,
        0.04,
    )
    fill = rng.uniform(0.2, 1.0)
    y_bl = y_fh + rng.uniform(25, 45)
    bladder = draw_blob(
        rng,
        (0.0, y_bl, z_fh + rng.uniform(0, 25) + 25 * fill),
        (20 + 40 * fill, 15 + 30 * fill, 15 + 35 * fill),
        None,
        3,
        0.06,
    )
    if rng.uniform() < 0.5:  # uterus behind and above the bladder
        organ = draw_blob(
            rng,
            (rng.uniform(-15, 15), y_bl - rng.uniform(35, 50), z_fh + rng.uniform(40, 70)),
            (rng.uniform(25, 35), rng.uniform(20, 28), rng.uniform(35, 50)),
            rotation(rng.uniform(-30, 30) * deg, 0.0, 0.0),
            3,
            0.06,
        )
    else:  # prostate below the bladder
        organ = draw_blob(rng, (0.0, y_fh + rng.uniform(10, 25), z_fh - rng.uniform(25, 40)), rng.uniform(15, 22, 3))
    gluteal = [
        draw_blob(
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


def paint_pelvic_soft_tissue(tmap, grid, pelvis: dict, in_cavity):
    """Gluteal muscles, the iliacus lining the inside of the iliac wings, the pelvic organ and the bladder."""
    for g in pelvis["gluteal"]:
        paint_blob(tmap, grid, g, _T["muscle"], only=(_T["subcutaneous_fat"], _T["muscle"]) + SOFT_CODES)
    wing = pelvis["wing"]
    iliacus_level = 1.0 - (pelvis["wing_thick"] + 20.0) / float(np.mean(wing["axes"]))

    def iliacus(xx, yy, zz):  # a muscle layer about 20 mm thick lining the inside of the iliac wings
        lateral = (zz < pelvis["z_crest"]) & (np.abs(xx) > 25.0) & (yy < wing["centre"][1] + 20.0)
        return lateral & (blob_field(wing, xx, yy, zz) > np.float32(iliacus_level))

    paint_blob(tmap, grid, wing, _T["muscle"], only=SOFT_CODES, extra=iliacus)
    paint_blob(tmap, grid, pelvis["organ"], _T["pelvic_organ"], extra=in_cavity)
    paint_blob(tmap, grid, pelvis["bladder"], _T["bladder"], extra=in_cavity)


def paint_pelvic_bones(tmap, grid, wide: dict):
    """Pelvic bones and femora of the wide profile, painted over everything but the liver."""
    pv = wide["pelvis"]
    wing, t = pv["wing"], pv["wing_thick"]
    inner = 1.0 - t / float(np.mean(wing["axes"]))
    z_lo = pv["z_fh"] + 10.0

    def wing_shell(lo, hi):
        """The iliac wings: the lower, posterior-lateral part of an ellipsoidal shell (a bowl), field in (lo, hi)."""

        def inside(xx, yy, zz):
            part = (zz < pv["z_crest"]) & (zz > z_lo) & (np.abs(xx) > 25.0) & (yy < wing["centre"][1] + 20.0)
            return part & (blob_field(wing, xx, yy, zz) > np.float32(lo))

        return inside

    paint_blob(tmap, grid, wing, _T["cortical_bone"], extra=wing_shell(inner, 1.0))
    core = 0.3 * (1.0 - inner)  # cancellous core between two cortical plates
    paint_blob(tmap, grid, wing, _T["cancellous_bone"], level=1.0 - core, extra=wing_shell(inner + core, 1.0 - core))
    paint_blob(tmap, grid, pv["sacrum"], _T["cortical_bone"])
    paint_blob(tmap, grid, pv["sacrum"], _T["cancellous_bone"], level=0.8)
    for s in (1.0, -1.0):
        head = np.array([s * pv["x_fh"], pv["y_fh"], pv["z_fh"]])
        r = pv["r_fh"]
        a = pv["neck_angle"]
        troch = head + np.array([s * 50.0 * math.cos(a), -5.0, -50.0 * math.sin(a)])
        paint_bone(
            tmap, grid, head + np.array([s * 6.0, 0.0, 20.0]), head - np.array([s * 20.0, 0.0, -5.0]), r + 6, r + 4
        )
        paint_bone(tmap, grid, troch, troch - np.array([s * 10.0, 0.0, 300.0]), 16.0, 13.0, cortex=4.0)
        paint_bone(tmap, grid, head, troch, 15.0, 17.0)
        paint_tube(tmap, grid, head, head, r + 1.5, r + 1.5, _T["disc"], None)  # joint space
        paint_bone(tmap, grid, head, head, r, r)
        sym = np.array(pv["symphysis"]) + np.array([s * 6.0, 0.0, 0.0])
        paint_bone(tmap, grid, head + np.array([-s * 15.0, 20.0, -5.0]), sym, 10.0, 9.0)
        isch = head + np.array([-s * 30.0, -35.0, -45.0])
        paint_bone(tmap, grid, head + np.array([-s * 10.0, -15.0, -10.0]), isch, 12.0, 10.0)
        paint_bone(tmap, grid, isch, sym - np.array([0.0, 10.0, 10.0]), 8.0, 8.0)


# tissue codes the hips and thighs may repaint: the body wall and what fills the cavity (the soft codes, stool and
# ascites); organs and bones stay
HIP_REPAINT = tuple(_T[k] for k in ("air", "skin", "subcutaneous_fat", "muscle", "stool", "ascites")) + SOFT_CODES


def draw_hips(seed: int, anat: dict) -> dict:
    """Body outline below the iliac crest (stream [seed, 12]): the sides and the buttocks widen down to the hip
    joints, and below the perineum the body divides into two thighs around the femoral shafts."""
    rng = np.random.default_rng([seed, 12])
    body, pv, arm = anat["body"], anat["wide"]["pelvis"], anat["wide"]["arm"]
    x_troch = pv["x_fh"] + 50.0 * math.cos(pv["neck_angle"])  # centre of the greater trochanter (paint_pelvic_bones)
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


def _hip_outline(x2, y2, body: dict, a: float, b_post: float):
    """Inside of a body outline as :func:`.shapes.superellipse` draws it, with half-width ``a`` and posterior depth
    ``b_post`` (the anterior depth is the body's)."""
    b = np.where(y2 < 0, np.float32(b_post), np.float32(body["b"]))
    p = np.where(y2 < 0, np.float32(body["p_post"]), np.float32(2.0))
    return (np.abs(x2 / np.float32(a)) ** p + np.abs(y2 / b) ** p) < 1.0


def paint_hips(tmap, grid, anat: dict, hips: dict):
    """Widen the body below the iliac crest and divide it into thighs below the perineum, slice by slice: skin
    (2 mm), subcutaneous fat and muscle by depth below the new surface, over :data:`HIP_REPAINT` only, so the
    bones, bladder, pelvic organs and vessels stay; what leaves the body becomes air."""
    body = anat["body"]
    x, y, z = grid["coords"]
    z_idx = np.flatnonzero(z < np.float32(hips["z_top"]))
    if len(z_idx) == 0:
        return
    x2, y2 = x[:, None], y[None, :]
    step = (float(x[1] - x[0]) if len(x) > 1 else 1.0, float(y[1] - y[0]) if len(y) > 1 else 1.0)
    repaint = np.isin(np.arange(N_CODES), HIP_REPAINT)
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
