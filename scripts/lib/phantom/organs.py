"""Abdominal organs other than the liver: kidneys, spleen, stomach, bowel and colon, pancreas, ascites, and (wide2)
the adrenal glands and the stomach's contents.

These are what a liver network must learn to leave out: organs next to the liver whose HU overlap with it (spleen,
kidneys, stomach wall, bowel loops, pancreas, adrenals), drawn as perturbed ellipsoids or tube chains in the
cavity, each in the place and size range it has in real abdomens.
"""

from __future__ import annotations

import math

import numpy as np

from .appearance import WIDE2_PHASE_HU
from .paint import paint_blob, paint_tube, paint_tube_chain
from .shapes import blob_point, draw_blob, draw_waves, padded, rotation
from .thorax import diaphragm2d
from .tissues import SOFT_CODES, TISSUES

_T = TISSUES  # tissue name -> code

ADRENAL_FAT_MM = 2.0  # fat between an adrenal gland and the liver, which otherwise fills the space behind the IVC


def draw_kidneys(rng, spine: dict) -> list:
    """Right and left kidney beside the spine (the left one higher): outline, renal sinus fat, the medulla's level
    in the outline's field, and a "shadow" behind each kidney that the liver keeps out of."""
    deg = math.pi / 180.0
    y_vb = spine["y_vb"]
    kidneys = []
    z_right = -rng.uniform(115, 140)
    for side in (1.0, -1.0):
        centre = (
            side * rng.uniform(55, 70),
            y_vb - rng.uniform(0, 10),
            z_right if side > 0 else z_right + rng.uniform(10, 25),
        )
        axes = (rng.uniform(24, 30), rng.uniform(20, 25), rng.uniform(48, 58))
        rot = rotation(0.0, side * rng.uniform(8, 18) * deg, -side * rng.uniform(20, 35) * deg)
        outer = draw_blob(rng, centre, axes, rot, 3, 0.04)
        sinus = draw_blob(
            rng,
            np.asarray(centre) + rot @ np.array([-side * 0.55 * axes[0], 0.0, 0.0]),
            (0.45 * axes[0], 0.4 * axes[1], 0.45 * axes[2]),
            rot,
            0,
            0.0,
        )
        # the liver keeps out of the kidney and of the space behind it (no liver wrapping round the kidney)
        shadow = draw_blob(
            rng,
            np.asarray(centre) - np.array([0.0, 30.0, -8.0]),
            (axes[0] + 8.0, axes[1] + 30.0, axes[2]),
            None,
            0,
            0.0,
        )
        kidneys.append({"outer": outer, "sinus": sinus, "shadow": shadow, "medulla": rng.uniform(0.62, 0.75)})
    return kidneys


def draw_spleen(rng, body: dict) -> dict:
    """The spleen against the left posterior wall of the cavity."""
    deg = math.pi / 180.0
    ai = body["ai"]
    return draw_blob(
        rng,
        (-(ai - rng.uniform(30, 40)), -rng.uniform(15, 45), -rng.uniform(45, 75)),
        (rng.uniform(22, 30), rng.uniform(45, 58), rng.uniform(40, 55)),
        rotation(0.0, rng.uniform(-10, 10) * deg, -rng.uniform(25, 45) * deg),
        4,
        0.06,
    )


def draw_stomach(rng) -> dict:
    """The stomach left of the liver, gas in 70% of the cases above a drawn level."""
    deg = math.pi / 180.0
    stomach = draw_blob(
        rng,
        (-rng.uniform(35, 60), rng.uniform(5, 30), -rng.uniform(35, 65)),
        (rng.uniform(35, 50), rng.uniform(28, 38), rng.uniform(40, 55)),
        rotation(0.0, 0.0, rng.uniform(-30, 30) * deg),
        4,
        0.08,
    )
    return {"blob": stomach, "gas": rng.uniform() < 0.7, "gas_level": rng.uniform(0.45, 0.8)}


def draw_bowel(rng, body: dict, spine: dict) -> list:
    """90 bowel blobs of three soft-tissue kinds through the abdomen, 30% of them with a gas bubble in front."""
    ai, bi, y_vb = body["ai"], body["bi"], spine["y_vb"]
    bowel = []
    for _ in range(90):
        centre = (rng.uniform(-0.85, 0.85) * ai, rng.uniform(y_vb + 15, 0.85 * bi), rng.uniform(-420, -50))
        blob = draw_blob(rng, centre, rng.uniform(12, 28, 3), rotation(*rng.uniform(0, math.pi, 3)), 2, 0.08)
        code = (_T["bowel_a"], _T["bowel_b"], _T["bowel_c"])[int(rng.integers(3))]
        gas = None
        if rng.uniform() < 0.3:
            r_gas = min(rng.uniform(3, 9), 0.35 * float(blob["axes"].min()))
            gas = draw_blob(
                rng, np.asarray(centre) + np.array([0.0, 0.45 * float(blob["axes"].min()), 0.0]), (r_gas, r_gas, r_gas)
            )
        bowel.append({"blob": blob, "code": code, "gas": gas})
    return bowel


def draw_bowel_loops(rng, anat: dict, z_lo: float, z_hi: float, contrast: bool) -> list:
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
        blob = draw_blob(rng, centre, rng.uniform(10, 22, 3), rotation(*rng.uniform(0, math.pi, 3)), 2, 0.08)
        loops.append(
            {"blob": blob, "content": contents[int(rng.choice(4, p=p_contents))], "lumen": rng.uniform(0.6, 0.85)}
        )
    return loops


def draw_colon(rng, anat: dict, zb: float, z_crest: float, z_fh: float) -> dict:
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


def draw_pancreas_course(rng, anat: dict, vessels: dict, z_liver_top: float) -> dict:
    """Head (beside the IVC), neck (in front of the aorta) and tail (towards the spleen) of the pancreas."""
    ivc, ao = vessels["ivc"], vessels["aorta"]
    y_ao = ao["y"] + ao["ry"]
    head = (ivc["x"] + rng.uniform(0, 15), y_ao + rng.uniform(20, 35), z_liver_top - rng.uniform(115, 145))
    neck = (rng.uniform(-10, 10), y_ao + rng.uniform(25, 40), head[2] + rng.uniform(5, 20))
    tail = (
        -(anat["body"]["ai"] - rng.uniform(45, 60)),
        anat["spine"]["y_vb"] + rng.uniform(0, 20),
        z_liver_top - rng.uniform(70, 95),
    )
    return {"head": head, "neck": neck, "tail": tail}


def draw_pancreas(rng, course: dict) -> list:
    """The pancreas as two tapered tubes, head to neck and neck to tail."""
    head, neck, tail = course["head"], course["neck"], course["tail"]
    return [
        (head, neck, rng.uniform(12, 17), rng.uniform(10, 13)),
        (neck, tail, rng.uniform(9, 12), rng.uniform(7, 10)),
    ]


def _draw_adrenal(rng, anat: dict, kidney: dict, front_xy) -> list:
    """One adrenal gland: a medial and a lateral limb, thin plates (3-6 mm thick, 30-50 mm high, 15-25 mm long)
    that diverge backwards from a common front edge at ``front_xy`` (an inverted V or Y in axial slices); its lower
    tips reach down to the upper pole of ``kidney``, its top stays under the diaphragm."""
    side = 1.0 if kidney["outer"]["centre"][0] > 0 else -1.0
    pole = blob_point(kidney["outer"], (0.0, 0.0, 1.0))
    height = rng.uniform(30, 50)
    z_c = pole[2] + rng.uniform(0.25, 0.45) * height  # above and medial to the pole, tips level with its top
    dome = float(diaphragm2d(np.float32(front_xy[0]), np.float32(front_xy[1]), anat))
    z_c = min(z_c, dome - anat["diaphragm"]["thick"] - 0.5 * height - 5.0)
    limbs = []
    for spread in (-rng.uniform(10, 30), rng.uniform(25, 50)):  # degrees from straight back: medial, lateral limb
        a = spread * math.pi / 180.0
        d = np.array([side * math.sin(a), -math.cos(a), 0.0])
        length, thick = rng.uniform(15, 25), rng.uniform(3, 6)
        centre = np.array([front_xy[0], front_xy[1], z_c + rng.uniform(-5, 5)]) + 0.45 * length * d
        rot = rotation(0.0, 0.0, math.atan2(d[1], d[0]))  # local x along the limb, local y across (thin)
        limbs.append(draw_blob(rng, centre, (0.55 * length, 0.5 * thick, 0.5 * height), rot, 2, 0.05))
    return limbs


def draw_adrenals(seed: int, anat: dict, hu: np.ndarray, phase: int) -> list:
    """Both adrenal glands (stream [seed, 8]): the right one behind the IVC, medial to the liver's bare area, the
    left one beside the aorta, in front of and medial to the left kidney; sets their HU in ``hu``."""
    rng = np.random.default_rng([seed, 8])
    ivc, ao = anat["vessels"]["ivc"], anat["vessels"]["aorta"]
    right = (ivc["x"] + rng.uniform(6, 14), ivc["y"] - ivc["ry"] - rng.uniform(2, 6))
    left = (ao["x"] - ao["rx"] - rng.uniform(6, 14), ao["y"] - rng.uniform(5, 15))
    limbs = _draw_adrenal(rng, anat, anat["kidneys"][0], right) + _draw_adrenal(rng, anat, anat["kidneys"][1], left)
    hu[_T["adrenal"]] = rng.uniform(*WIDE2_PHASE_HU["adrenal"][phase])
    return limbs


def draw_stomach_contents(seed: int, anat: dict, hu: np.ndarray) -> dict:
    """Stomach contents (stream [seed, 9]): food in half of the cases, a mottled mass (patches from fat, -100 HU,
    to soft tissue, +80 HU) in the dependent part of the stomach, and a dependent layer of positive oral contrast
    (200-400 HU) in most cases with oral contrast in the bowel, rarely otherwise; sets their HU in ``hu``."""
    rng = np.random.default_rng([seed, 9])
    st = anat["stomach"]["blob"]
    food = None
    if rng.uniform() < 0.5:
        sink = np.array([0.0, -rng.uniform(0.1, 0.4), -rng.uniform(0.0, 0.3)]) * st["axes"]  # backwards and down
        food = {
            "blob": draw_blob(rng, st["centre"] + sink, st["axes"] * rng.uniform(0.5, 0.85, 3), st["rot"], 3, 0.1),
            "waves": draw_waves(rng, 10, (12.0, 35.0)),  # patches about 6-18 mm across
            "hu": (rng.uniform(-100, -50), rng.uniform(30, 80)),  # the patches' range: fat to soft tissue
        }
        hu[_T["stomach_food"]] = 0.5 * sum(food["hu"])
    contrast_y = None
    if rng.uniform() < (0.6 if anat["wide"]["contrast"] else 0.05):
        contrast_y = float(st["centre"][1] - rng.uniform(0.3, 0.7) * st["axes"][1])  # the layer's upper surface
    hu[_T["stomach_contrast"]] = rng.uniform(200, 400)
    return {"food": food, "contrast_y": contrast_y}


def paint_bowel_and_stomach(tmap, grid, anat: dict, in_cavity):
    """The standard bowel blobs with their gas, then the stomach with its gas above the drawn level."""
    for b in anat["bowel"]:
        paint_blob(tmap, grid, b["blob"], b["code"], extra=in_cavity)
        if b["gas"] is not None:
            paint_blob(tmap, grid, b["gas"], _T["gas"], only=(b["code"],))
    st = anat["stomach"]
    paint_blob(tmap, grid, st["blob"], _T["stomach"], extra=in_cavity)
    if st["gas"]:
        level_y = float(st["blob"]["centre"][1] + st["gas_level"] * st["blob"]["axes"][1])
        paint_blob(tmap, grid, st["blob"], _T["gas"], only=(_T["stomach"],), extra=lambda xx, yy, zz: yy > level_y)


def paint_kidneys_and_spleen(tmap, grid, anat: dict, in_cavity):
    """Kidneys (cortex, medulla, sinus fat) and the spleen."""
    for k in anat["kidneys"]:
        paint_blob(tmap, grid, k["outer"], _T["kidney_cortex"], extra=in_cavity)
        paint_blob(tmap, grid, k["outer"], _T["kidney_medulla"], level=k["medulla"], only=(_T["kidney_cortex"],))
        paint_blob(tmap, grid, k["sinus"], _T["visceral_fat"], only=(_T["kidney_cortex"], _T["kidney_medulla"]))
    paint_blob(tmap, grid, anat["spleen"], _T["spleen"], extra=in_cavity)


def paint_bowel_loops_and_colon(tmap, grid, wide: dict, in_cavity):
    """Small-bowel loops (wall and contents), then the colon (wall, stool, gas) over fat and bowel."""
    for lp in wide["loops"]:
        paint_blob(tmap, grid, lp["blob"], _T["bowel_wall"], extra=in_cavity)
        paint_blob(tmap, grid, lp["blob"], lp["content"], level=lp["lumen"], only=(_T["bowel_wall"],))
    colon = wide["colon"]
    paint_tube_chain(tmap, grid, colon["points"], colon["radii"], _T["bowel_wall"], SOFT_CODES)
    inner = [0.8 * r for r in colon["radii"]]
    paint_tube_chain(tmap, grid, colon["points"], inner, _T["stool"], (_T["bowel_wall"],))
    for p, r in colon["gas"]:
        paint_tube(tmap, grid, p, p, r, r, _T["gas"], (_T["stool"],))


def paint_pancreas(tmap, grid, pancreas: list):
    """The pancreas over fat and bowel."""
    for seg in pancreas:
        paint_tube(tmap, grid, *seg, _T["pancreas"], SOFT_CODES)


def paint_ascites(tmap, grid, anat: dict, z_fh: float):
    """Ascites in the cavity's fat: a layer around the liver lobes and a pool in the pelvis above the femoral heads
    (at height ``z_fh``)."""
    for lobe in anat["liver"]["lobes"]:
        paint_blob(tmap, grid, lobe, _T["ascites"], level=1.1, only=(_T["visceral_fat"],))
    c = (0.0, 0.0, z_fh + 50.0)
    pelvic = draw_blob(np.random.default_rng(0), c, (0.8 * anat["body"]["ai"], 0.8 * anat["body"]["bi"], 70.0))
    paint_blob(tmap, grid, pelvic, _T["ascites"], only=(_T["visceral_fat"],))


def paint_stomach_contents(tmap, grid, anat: dict, contents: dict):
    """Stomach food and the dependent contrast layer over the stomach's fluid."""
    stomach = anat["stomach"]["blob"]
    if contents["food"] is not None:
        paint_blob(tmap, grid, contents["food"]["blob"], _T["stomach_food"], only=(_T["stomach"],))
    if contents["contrast_y"] is not None:
        y_top = contents["contrast_y"]
        only = (_T["stomach"], _T["stomach_food"])
        paint_blob(tmap, grid, stomach, _T["stomach_contrast"], only=only, extra=lambda xx, yy, zz: yy < y_top)


def paint_adrenals(tmap, grid, adrenals: list):
    """The adrenals over fat and bowel, each in a fat margin (in retroperitoneal fat: no ascites around them)."""
    for limb in adrenals:
        paint_blob(tmap, grid, padded(limb, ADRENAL_FAT_MM), _T["visceral_fat"], only=(_T["ascites"],))
        paint_blob(tmap, grid, limb, _T["adrenal"], only=SOFT_CODES)
