"""One case from end to end: the anatomy drawn (:mod:`.anatomy`), painted on the grid into a tissue map in a fixed
order, then imaged (:mod:`.appearance`) and stored in the requested orientation.

The painting order is the phantom's occlusion rule: the body's layers first, then the soft contents of the cavity
(bowel, stomach, the wide additions), organs, thorax, vessels and bones over them, and the liver with its vessels
and tumours last, so the label is never covered by anything drawn after it.
"""

from __future__ import annotations

import numpy as np

from .anatomy import draw_case
from .appearance import hu_image, wide_image
from .body import cavity2d, paint_arms, paint_body, paint_psoas, paint_ribs, paint_spine
from .grid import check_seed, grid_affine, make_grid, make_wide_grid, to_stored
from .liver import paint_cirrhotic_ascites, paint_liver
from .organs import (
    paint_adrenals,
    paint_ascites,
    paint_bowel_and_stomach,
    paint_bowel_loops_and_colon,
    paint_kidneys_and_spleen,
    paint_pancreas,
    paint_stomach_contents,
)
from .pelvis import paint_hips, paint_pelvic_bones, paint_pelvic_soft_tissue
from .profiles import profile_spec
from .thorax import paint_lungs_heart, paint_pericardium
from .tissues import labels_from_tissues
from .vessels import paint_great_vessels, paint_iliac_vessels, paint_portal_vein


def _paint_wide_soft(tmap, grid, anat: dict, wide: dict, in_cavity):
    """Soft tissues of a domain-randomised case, painted after the standard bowel and before organs and bones."""
    paint_bowel_loops_and_colon(tmap, grid, wide, in_cavity)
    paint_pelvic_soft_tissue(tmap, grid, wide["pelvis"], in_cavity)
    paint_pancreas(tmap, grid, wide["pancreas"])
    paint_portal_vein(tmap, grid, wide["portal"])
    paint_iliac_vessels(tmap, grid, wide["iliac"])
    if wide["ascites"]:
        paint_ascites(tmap, grid, anat, wide["pelvis"]["z_fh"])
    if wide["arm"] is not None:
        paint_arms(tmap, grid, wide["arm"], wide["apex"] + 100.0)


def _paint_wide2_soft(tmap, grid, anat: dict, wide2: dict):
    """Soft tissues of wide2, painted after the wide ones: stomach food and contrast over the stomach's fluid,
    ascites where a shrunken cirrhotic liver left room (when it has ascites), and the adrenals over fat and bowel,
    in a fat margin that the liver keeps out of."""
    if wide2["stomach"] is not None:
        paint_stomach_contents(tmap, grid, anat, wide2["stomach"])
    if wide2["cirrhosis"] is not None and anat["wide"]["ascites"]:
        paint_cirrhotic_ascites(tmap, grid, wide2["cirrhosis"])
    paint_adrenals(tmap, grid, wide2["adrenals"])


def _paint_organs_and_bones(tmap, grid, anat: dict, in_cavity, cavity):
    """Psoas, kidneys, spleen, lungs, heart and pericardium, aorta and IVC, then spine, ribs, pelvis and hips."""
    wide, wide2 = anat.get("wide"), anat.get("wide2")
    paint_psoas(tmap, grid, anat)
    paint_kidneys_and_spleen(tmap, grid, anat, in_cavity)
    paint_lungs_heart(tmap, grid, anat, cavity)
    if wide2 is not None and wide2["pericardium"] is not None:
        paint_pericardium(tmap, grid, anat, wide2["pericardium"])
    paint_great_vessels(tmap, grid, anat)
    paint_spine(tmap, grid, anat)
    paint_ribs(tmap, grid, anat)
    if wide is not None:
        paint_pelvic_bones(tmap, grid, wide)
    if "hips" in anat:
        paint_hips(tmap, grid, anat, anat["hips"])


def paint_tissues(grid: dict, anat: dict) -> np.ndarray:
    """Canonical (RAS-ordered) uint8 tissue map of the case on ``grid``."""
    tmap = np.empty(grid["shape"], dtype=np.uint8)
    cavity = paint_body(tmap, grid, anat)

    def in_cavity(xx, yy, zz):
        return cavity2d(xx[:, :, 0], yy[:, :, 0], anat["body"])[:, :, None]

    paint_bowel_and_stomach(tmap, grid, anat, in_cavity)
    if anat.get("wide") is not None:
        _paint_wide_soft(tmap, grid, anat, anat["wide"], in_cavity)
    if anat.get("wide2") is not None:
        _paint_wide2_soft(tmap, grid, anat, anat["wide2"])
    _paint_organs_and_bones(tmap, grid, anat, in_cavity, cavity)
    paint_liver(tmap, grid, anat, in_cavity)
    return tmap


def make_case_with_tissues(seed: int, shape=None, spacing=None, orientation=None, profile: str = "standard"):
    """Like :func:`make_case` but also returns the noiseless uint8 tissue map (codes in ``TISSUES``).

    The tissue map is stored like the image and is what the image and label were made from; it lets tests and
    demos find the spleen, bone, air and so on.
    """
    seed = check_seed(seed)
    spec = profile_spec(profile)
    anat = draw_case(seed, spec)
    if spec.domain_randomised:
        grid = make_wide_grid(seed, anat, shape, spacing, orientation, spec)
        tmap = paint_tissues(grid, anat)
        hu = wide_image(tmap, grid, anat, seed)
    else:
        grid = make_grid(seed, anat, shape, spacing, orientation, spec)
        tmap = paint_tissues(grid, anat)
        hu = hu_image(tmap, anat, seed)
    image = to_stored(hu, grid["axes"])
    del hu
    tissues = to_stored(tmap, grid["axes"])
    del tmap
    label = labels_from_tissues(tissues)
    return image, label, grid_affine(grid), tissues


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
    wide2 case with hips, buttocks and thighs below the iliac crest (stream ``[seed, 12]``).  ``profile="wide4"``
    draws the wide3 case with atrophic and hypertrophic lobes, Riedel's lobe, a thin left tip over the stomach, thin
    tips kept in the label and the hilum as references draw it (streams ``[seed, 13]`` to ``[seed, 16]``).

    Args:
        seed: non-negative integer; the same arguments always give bit-identical output.
        shape: (n0, n1, n2) voxels of the stored array, or None to derive it from the field of view.
        spacing: (d0, d1, d2) mm along the stored array axes, or None (standard: in-plane ~U(2.4, 3.2) mm,
            slices ~U(3.0, 5.0) mm; wide: in-plane ~U(1.5, 3.2) mm, slices ~U(1.0, 5.0) mm; with ``shape`` given,
            the spacing that gives the drawn field of view).
        orientation: nibabel axis code of the stored array ("RAS", "LPS", "PLS", ...), or None to draw one of
            ``ORIENTATIONS``.
        profile: one of ``PROFILES`` ("standard", "wide", "wide2", "wide3" or "wide4").

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
