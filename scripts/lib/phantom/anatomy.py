"""The order in which a case's anatomy is drawn: one random stream per stage, each stage building on the last.

A case is a dict of parameters in the patient frame (millimetres), independent of the sampling grid.  The standard
stage draws everything from stream ``[seed, 1]`` in a fixed order; the domain-randomised (wide), wide2, hips and
wide4 stages each add to a copy of it from streams of their own, as the case's :class:`.profiles.ProfileSpec` asks.  The
order of the draws within a stream is what makes a seed reproduce its case: a new structure gets a new stream,
never a draw in the middle of an existing one.
"""

from __future__ import annotations

import numpy as np

from .appearance import PHASES, draw_phase_hu, draw_standard_hu, draw_standard_scanner
from .body import draw_arms, draw_body, draw_ribs, draw_spine
from .liver import draw_cirrhosis, draw_large_tumour, draw_tumours, place_liver
from .organs import (
    ADRENAL_FAT_MM,
    draw_adrenals,
    draw_bowel,
    draw_bowel_loops,
    draw_colon,
    draw_kidneys,
    draw_pancreas,
    draw_pancreas_course,
    draw_spleen,
    draw_stomach,
    draw_stomach_contents,
)
from .pelvis import draw_hips, draw_pelvis
from .profiles import ProfileSpec
from .shapes import padded
from .thorax import draw_diaphragm, draw_heart, draw_pericardium
from .tissues import TISSUES
from .variants import draw_hilum, draw_left_tip, draw_riedel_lobe, resize_lobes, with_bounds
from .vessels import draw_great_vessels, draw_hepatic_vessels, draw_iliac_vessels, draw_portal_vein


def draw_anatomy(seed: int) -> dict:
    """All anatomical and intensity parameters of a standard case (stream [seed, 1]; independent of the grid)."""
    rng = np.random.default_rng([seed, 1])
    anat = {"body": draw_body(rng)}
    anat["spine"] = draw_spine(rng, anat["body"])
    anat["vessels"] = draw_great_vessels(rng, anat["spine"])
    anat["kidneys"] = draw_kidneys(rng, anat["spine"])
    liver = anat["liver"] = place_liver(rng, anat)
    anat["spleen"] = draw_spleen(rng, anat["body"])
    anat["stomach"] = draw_stomach(rng)
    anat["bowel"] = draw_bowel(rng, anat["body"], anat["spine"])
    anat["diaphragm"] = draw_diaphragm(rng, liver["top"])
    anat["heart"] = draw_heart(rng, liver["top"][2])
    anat["ribs"] = draw_ribs(rng, anat["body"], liver["top"][2])
    anat["hepatic_vessels"] = draw_hepatic_vessels(rng, anat, liver)
    anat["tumours"] = draw_tumours(rng, liver)
    anat["hu"] = draw_standard_hu(rng)
    anat.update(draw_standard_scanner(rng))
    return anat


def draw_wide(seed: int, anat: dict) -> dict:
    """The domain-randomised case: the standard anatomy plus the draws of streams [seed, 3] (anatomy) and
    [seed, 5] (contrast phase and HU); returns a new anatomy dict (``anat`` is not changed)."""
    rng = np.random.default_rng([seed, 3])
    liver = anat["liver"]
    zt, zb = float(liver["fov_hi"][2]), float(liver["fov_lo"][2])
    z_crest = min(zb, anat["kidneys"][0]["outer"]["centre"][2] - 60.0) - rng.uniform(40, 90)
    pelvis = draw_pelvis(rng, anat, z_crest)
    contrast = rng.uniform() < 0.45  # positive oral contrast in this case
    vessels, iliac = draw_iliac_vessels(rng, anat, pelvis, z_crest)
    out = dict(anat, vessels=vessels, spine=dict(anat["spine"], z_min=z_crest - 15.0))
    course = draw_pancreas_course(rng, anat, vessels, zt)
    neck = course["neck"]
    confluence = (neck[0] + 5.0, neck[1] - 12.0, neck[2])  # of the portal vein, behind the pancreas neck
    arm = draw_arms(rng, anat["body"], zt)
    out["wide"] = {
        "pelvis": pelvis,
        "contrast": contrast,
        "loops": draw_bowel_loops(rng, anat, pelvis["z_fh"] - 20.0, zb + 30.0, contrast),
        "colon": draw_colon(rng, anat, zb, z_crest, pelvis["z_fh"]),
        "iliac": iliac,
        "pancreas": draw_pancreas(rng, course),
        "portal": draw_portal_vein(rng, confluence, anat["hepatic_vessels"][0][0], course["tail"]),
        "ascites": rng.uniform() < 0.15,
        "arm": arm,
        "large_tumour": draw_large_tumour(rng, liver),
        "apex": zt + rng.uniform(170, 230),
        "scale": rng.uniform(0.82, 1.2),
    }
    rng_hu = np.random.default_rng([seed, 5])
    phase = int(rng_hu.choice(4, p=[0.2, 0.2, 0.45, 0.15]))
    hu, kind = draw_phase_hu(rng_hu, anat["hu"], phase)
    out["hu"] = hu
    out["wide"].update({"phase": PHASES[phase], "liver_kind": kind})
    return out


def draw_wide2(seed: int, anat: dict, spec: ProfileSpec) -> dict:
    """The domain-randomised case ``anat`` (from :func:`draw_wide`, unchanged) plus what ``spec`` asks of the wide2
    additions: adrenals (stream [seed, 8]), stomach contents ([seed, 9]), pericardium ([seed, 10]) and cirrhotic
    livers ([seed, 11]); the liver keeps out of the adrenals' fat margin.  Returns a new anatomy dict."""
    out = dict(anat)
    phase = PHASES.index(anat["wide"]["phase"])
    hu = anat["hu"].copy()
    cirrhosis = draw_cirrhosis(seed, anat, spec.cirrhosis_share) if spec.cirrhosis_share > 0.0 else None
    out["wide2"] = {
        "adrenals": draw_adrenals(seed, anat, hu, phase) if spec.adrenals else [],
        "stomach": draw_stomach_contents(seed, anat, hu) if spec.stomach_contents else None,
        "pericardium": draw_pericardium(seed, phase, hu) if spec.pericardium else None,
        "cirrhosis": cirrhosis,
    }
    out["hu"] = hu
    liver = anat["liver"] if cirrhosis is None else cirrhosis["liver"]
    out["liver"] = dict(liver, keep_out=[padded(limb, ADRENAL_FAT_MM) for limb in out["wide2"]["adrenals"]])
    if cirrhosis is not None:
        if cirrhosis["spleen"] is not None:
            out["spleen"] = cirrhosis["spleen"]
        ascites = anat["wide"]["ascites"] or cirrhosis["ascites"]
        out["wide"] = dict(anat["wide"], liver_kind="cirrhotic", ascites=ascites)
    return out


def draw_wide4(seed: int, anat: dict, spec: ProfileSpec) -> dict:
    """The wide3 case ``anat`` (unchanged) plus what ``spec`` asks of the wide4 liver variants: lobe sizes (stream
    [seed, 13]), Riedel's lobe ([seed, 14]), the left tip over the stomach ([seed, 15]), tips kept a voxel thick
    (their partial-volume HU halfway between liver and fat) and the hilum ([seed, 16]).  Returns a new anatomy
    dict; its "wide4" entry lists the variants the case shows."""
    out = dict(anat)
    hu = anat["hu"].copy()
    shown = []
    resized = resize_lobes(seed, anat, spec.lobe_size_share) if spec.lobe_size_share > 0.0 else None
    if resized is not None:
        shown.append(resized.pop("kind"))
        out.update(resized)
    tips = []
    for name, draw, share in (
        ("riedel_lobe", draw_riedel_lobe, spec.riedel_share),
        ("left_tip", draw_left_tip, spec.left_tip_share),
    ):
        tip = draw(seed, out, share) if share > 0.0 else None
        if tip is not None:
            tips.append(tip)
            shown.append(name)
    liver = dict(out["liver"], tips=tips, tip_floor=spec.thin_tips)
    if spec.thin_tips:
        hu[TISSUES["liver_partial"]] = 0.5 * (hu[TISSUES["liver"]] + hu[TISSUES["visceral_fat"]])
    if spec.hilum:
        hilum = draw_hilum(seed, out, hu, PHASES.index(anat["wide"]["phase"]))
        liver.update(ivc_margin_mm=0.0, ivc_wrap=hilum["wrap"], hilum=hilum["vessels"])
    out.update(liver=with_bounds(liver, out), hu=hu, wide4={"variants": shown})
    return out


def draw_case(seed: int, spec: ProfileSpec) -> dict:
    """The anatomy of case ``seed`` of the profile ``spec``: the standard anatomy, then the stages it asks for."""
    anat = draw_anatomy(seed)
    if spec.domain_randomised:
        anat = draw_wide(seed, anat)
    if spec.wide2:
        anat = draw_wide2(seed, anat, spec)  # the wide case, with the wide2 additions
    if spec.hips:
        anat = dict(anat, hips=draw_hips(seed, anat))  # below the iliac crest: hips, buttocks and thighs
    if spec.wide4:
        anat = draw_wide4(seed, anat, spec)  # liver variants and the hilum
    return anat
