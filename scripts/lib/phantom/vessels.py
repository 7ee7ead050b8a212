"""Blood vessels: aorta and inferior vena cava, the portal and hepatic venous trees inside the liver, and (wide)
the portal vein and the iliac vessels.

Aorta and IVC are vertical elliptic tubes in front of the spine (the IVC ends at the heart); in domain-randomised
cases both end at a bifurcation above the pelvis and the iliac vessels run from there to the femoral heads.  The
hepatic trees are tapered tubes between points snapped to the liver's interior, so they never leave the liver.
"""

from __future__ import annotations

import numpy as np

from .liver import snap
from .paint import grid_box, open_grid, paint_mask, paint_tube
from .shapes import blob_point
from .tissues import SOFT_CODES, TISSUES

_T = TISSUES  # tissue name -> code


def draw_great_vessels(rng, spine: dict) -> dict:
    """Aorta (left of the midline) and IVC (right, flattened) just in front of the vertebral body."""
    y_vb, vb_ay = spine["y_vb"], spine["vb_ay"]
    r_ao, r_ivc = rng.uniform(10, 13), rng.uniform(10, 13)
    return {
        "aorta": {"x": -rng.uniform(8, 18), "y": y_vb + vb_ay + r_ao + rng.uniform(1, 4), "rx": r_ao, "ry": r_ao},
        "ivc": {
            "x": rng.uniform(18, 28),
            "y": y_vb + vb_ay + r_ivc + rng.uniform(2, 8),
            "rx": r_ivc * 1.2,
            "ry": r_ivc * 0.8,
        },
    }


def draw_hepatic_vessels(rng, anat: dict, liver: dict):
    """Portal and hepatic venous trees as tapered tubes (segments p0 -> p1 with radii r0 -> r1)."""
    lobes = liver["lobes"]
    right, left = lobes[0], lobes[1]
    segs = []

    def inside_lobe(lobe, spread):
        v = rng.normal(size=3)
        v *= spread * rng.uniform(0.3, 1.0) / (np.linalg.norm(v) + 1e-9)
        return blob_point(lobe, v)

    hilum = snap(liver, blob_point(right, (-0.6, -0.1, -0.35)), 6.0)
    rnode = snap(liver, right["centre"] + rng.normal(0, 8, 3), 8.0)
    lnode = snap(liver, left["centre"] + rng.normal(0, 6, 3), 6.0)
    segs.append((hilum, rnode, rng.uniform(5.5, 7.0), rng.uniform(4.5, 5.5)))
    segs.append((hilum, lnode, rng.uniform(4.5, 5.5), rng.uniform(3.5, 4.5)))
    for _ in range(3):
        segs.append((rnode, snap(liver, inside_lobe(right, 0.75), 4.0), rng.uniform(3.0, 4.0), rng.uniform(2.0, 2.8)))
    for _ in range(2):
        segs.append((lnode, snap(liver, inside_lobe(left, 0.7), 3.5), rng.uniform(2.8, 3.5), rng.uniform(2.0, 2.5)))
    ivc = anat["vessels"]["ivc"]
    conf = np.array([ivc["x"], ivc["y"], liver["top"][2] - rng.uniform(15, 30)])
    targets = [
        blob_point(right, (0.65, -0.1, -0.35)),
        blob_point(right, (-0.55, 0.6, -0.25)),
        blob_point(left, (-0.5, 0.0, 0.0)),
    ]
    for t in targets:
        segs.append((conf, snap(liver, t + rng.normal(0, 6, 3), 4.0), rng.uniform(4.5, 6.0), rng.uniform(2.0, 2.8)))
    return segs


def draw_iliac_vessels(rng, anat: dict, pelvis: dict, z_crest: float) -> tuple:
    """The bifurcation of aorta and IVC above the iliac crest and the iliac arteries and veins down to the femoral
    heads.  Returns the great vessels ending there (new dicts) and the iliac segments (p0, p1, radius, code)."""
    vessels = {k: dict(v) for k, v in anat["vessels"].items()}
    z_bif = z_crest + rng.uniform(10, 40)
    vessels["aorta"]["z_min"] = z_bif
    vessels["ivc"]["z_min"] = z_bif - 15.0
    ivc, ao = vessels["ivc"], vessels["aorta"]
    iliac = []
    for s in (1.0, -1.0):
        end = (s * (pelvis["x_fh"] - rng.uniform(15, 25)), pelvis["y_fh"] + rng.uniform(25, 35), pelvis["z_fh"] + 15.0)
        iliac.append(((ao["x"], ao["y"], z_bif), end, rng.uniform(5, 7), _T["iliac_artery"]))
        iliac.append(
            ((ivc["x"], ivc["y"], z_bif - 15.0), (end[0], end[1] - 12.0, end[2]), rng.uniform(7, 9), _T["ivc"])
        )
    return vessels, iliac


def draw_portal_vein(rng, confluence, hilum, tail) -> list:
    """The portal vein from its confluence behind the pancreas neck to the liver hilum, and the splenic vein to
    the pancreas tail, as tapered tubes."""
    return [
        (confluence, hilum, rng.uniform(6, 8), rng.uniform(5, 7)),
        (confluence, tail, rng.uniform(4, 5), rng.uniform(3, 4)),
    ]


def _paint_tube2d(tmap, grid, v, code, z_max=1e9):
    z_min = v.get("z_min", -1e9)
    sl = grid_box(grid, (v["x"] - v["rx"], v["y"] - v["ry"], z_min), (v["x"] + v["rx"], v["y"] + v["ry"], z_max))
    if sl is None:
        return
    xx, yy, zz = open_grid(grid, sl)
    mask2d = (((xx[:, :, 0] - v["x"]) / v["rx"]) ** 2 + ((yy[:, :, 0] - v["y"]) / v["ry"]) ** 2) < 1
    paint_mask(tmap, sl, np.broadcast_to(mask2d[:, :, None], tuple(s.stop - s.start for s in sl)), code)


def paint_great_vessels(tmap, grid, anat: dict):
    """Aorta and IVC (up to the heart's centre), over whatever is there."""
    _paint_tube2d(tmap, grid, anat["vessels"]["aorta"], _T["aorta"])
    _paint_tube2d(tmap, grid, anat["vessels"]["ivc"], _T["ivc"], z_max=float(anat["heart"]["centre"][2]))


def paint_portal_vein(tmap, grid, portal: list):
    """Portal and splenic vein over fat, bowel and the pancreas."""
    for p0, p1, r0, r1 in portal:
        paint_tube(tmap, grid, p0, p1, r0, r1, _T["portal_vein"], SOFT_CODES + (_T["pancreas"],))


def paint_iliac_vessels(tmap, grid, iliac: list):
    """Iliac arteries and veins, over whatever is there."""
    for p0, p1, r, code in iliac:
        paint_tube(tmap, grid, p0, p1, r, r, code, None)
