"""What the scanner makes of the tissue map: HU per tissue and contrast phase, textures, blur, noise and artefacts.

Standard cases get one portal-venous HU table (stream ``[seed, 1]``, drawn with the anatomy), a gaussian blur for
the partial-volume effect and white noise (``[seed, 2]``).  Domain-randomised cases draw a contrast phase with
textbook HU ranges per phase and fatty or dense livers (``[seed, 5]``), then per-organ smooth intensity fields,
cupping, rare metal streaks, a reconstruction kernel and slice thickness (``[seed, 6]``) and correlated noise
(``[seed, 7]``), so that a network cannot rely on one scanner's look.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .paint import open_grid
from .shapes import wave_field
from .tissues import MAX_TUMOURS, N_CODES, TISSUES, TUMOUR_CODES

_T = TISSUES  # tissue name -> code

HU_MIN, HU_MAX = -1024, 3071

PHASES = ("non_contrast", "arterial", "portal_venous", "delayed")
# HU ranges per phase: (non-contrast, arterial, portal-venous, delayed); textbook values of abdominal CT
# (e.g. unenhanced liver 50-65 HU, portal-venous liver ~100-120 HU, arterial aorta 250-400 HU).
PHASE_HU = {
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
# HU ranges per contrast phase of the wide2 soft tissues, as in PHASE_HU (a table of its own, so that
# draw_phase_hu's draws, and with them the wide profile, stay unchanged)
WIDE2_PHASE_HU = {
    "adrenal": ((30, 50), (55, 85), (55, 80), (45, 65)),  # enhances like other soft-tissue organs
    "pericardium": ((25, 45), (35, 60), (40, 65), (40, 60)),
}
# HU ranges per contrast phase of the vessels at the hilum in wide4, as in PHASE_HU: the IVC and the portal vein as
# PHASE_HU draws them, except in the portal-venous phase, where they come close to the liver (90-130 HU there), so that
# a network must tell them from the liver by their shape and place, as on real CT where the two are hard to tell apart
WIDE4_PHASE_HU = {
    "ivc": ((30, 50), (60, 110), (95, 140), (100, 140)),
    "portal_vein": ((30, 50), (90, 150), (100, 150), (100, 140)),
}


def draw_standard_hu(rng) -> np.ndarray:
    """HU look-up table of a standard (portal-venous) case: one value per tissue code, tumours hypodense."""
    hu = np.zeros(N_CODES, dtype=np.float32)
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
    return hu


def draw_standard_scanner(rng) -> dict:
    """Blur (voxels, in-plane and along z) and noise level (HU) of a standard case."""
    return {"blur_sigma": (rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0)), "noise_sigma": rng.uniform(8, 20)}


def _add_noise(img: np.ndarray, rng, sigma) -> None:
    """Add white gaussian noise of standard deviation ``sigma`` (float32) to ``img`` in place, in slabs along the
    first axis (the same values as one big draw, without a second volume in memory)."""
    step = max(1, 4_000_000 // max(1, img.shape[1] * img.shape[2]))
    for i0 in range(0, img.shape[0], step):
        chunk = img[i0 : i0 + step]
        noise = rng.standard_normal(chunk.shape, dtype=np.float32)
        noise *= sigma
        chunk += noise


def _to_int16(img: np.ndarray) -> np.ndarray:
    """Round and clip a float32 HU image to the int16 CT range."""
    np.rint(img, out=img)
    np.clip(img, HU_MIN, HU_MAX, out=img)
    return img.astype(np.int16)


def hu_image(tmap: np.ndarray, anat: dict, seed: int) -> np.ndarray:
    """Tissue map -> blurred (partial volume), noisy int16 HU image (same axis order as tmap)."""
    img = anat["hu"][tmap]
    s_xy, s_z = anat["blur_sigma"]
    img = ndimage.gaussian_filter(img, sigma=(s_xy, s_xy, s_z), mode="nearest", truncate=3.0, output=np.float32)
    rng = np.random.default_rng([seed, 2])
    _add_noise(img, rng, np.float32(anat["noise_sigma"]))
    return _to_int16(img)


def draw_phase_hu(rng, hu_std: np.ndarray, phase: int) -> tuple:
    """HU look-up table of a wide case for contrast phase index ``phase``; also the liver kind (fatty, dense)."""
    hu = hu_std.copy()
    for name, ranges in PHASE_HU.items():
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


def _add_organ_texture(rng, img: np.ndarray, tmap: np.ndarray, spacing) -> None:
    """Per-organ smooth intensity variation: every tissue mixes two shared fields with its own weights."""
    fields = _low_freq_fields(rng, tmap.shape, 2, [max(2.0, rng.uniform(20, 60) / d) for d in spacing])
    amp = rng.uniform(0.0, 15.0, N_CODES).astype(np.float32)
    amp[[_T["air"], _T["gas"], _T["lung"]]] *= 2.0
    for f in fields:
        w = (rng.normal(0.0, 1.0, N_CODES) * amp).astype(np.float32)
        img += w[tmap] * f


def _add_cupping(rng, img: np.ndarray, tmap: np.ndarray, grid: dict, body_a: float) -> None:
    """Beam hardening: a darker centre of the body (of half-width ``body_a``), up to 25 HU."""
    xx, yy, _ = open_grid(grid, (slice(0, tmap.shape[0]), slice(0, tmap.shape[1]), slice(0, 1)))
    r2 = (xx[:, :, 0] ** 2 + yy[:, :, 0] ** 2) / np.float32(body_a**2)
    cup = np.float32(rng.uniform(0.0, 25.0)) * np.clip(1.0 - r2, 0.0, 1.0)  # beam hardening: darker centre
    img -= cup[:, :, None] * (tmap != _T["air"])


def _add_metal(rng, img: np.ndarray, tmap: np.ndarray) -> None:
    """In 5% of the cases, metal (hip prosthesis, clip, port) with streaks in the slices that cross it."""
    if rng.uniform() < 0.05:
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


def _kernel_and_noise(rng, img: np.ndarray, spacing, seed: int) -> np.ndarray:
    """Correlated noise (stream [seed, 7]) and the blur of a drawn reconstruction kernel (in-plane) and slice
    thickness (along z), both in mm; returns the new image."""
    kernel_mm, thick_mm = rng.uniform(0.4, 1.6), rng.uniform(0.6, 5.0)
    sig = [kernel_mm / spacing[0], kernel_mm / spacing[1], thick_mm / 2.355 / spacing[2]]
    noise_hu = rng.uniform(5.0, 40.0)
    # noise added before the blur comes out correlated; scale it so that its level after the blur is ``noise_hu``
    gain = math.sqrt(math.prod(max(1.0, 2.0 * math.sqrt(math.pi) * s) for s in sig))
    _add_noise(img, np.random.default_rng([seed, 7]), np.float32(noise_hu * gain))
    return ndimage.gaussian_filter(img, sigma=sig, mode="nearest", truncate=3.0, output=np.float32)


def wide_image(tmap: np.ndarray, grid: dict, anat: dict, seed: int) -> np.ndarray:
    """Tissue map -> int16 HU image with per-organ texture, cupping, rare metal streaks, correlated noise and a
    drawn reconstruction kernel and slice thickness (stream [seed, 6])."""
    rng = np.random.default_rng([seed, 6])
    spacing = grid["spacing_c"]
    img = anat["hu"][tmap]
    if "wide2" in anat:
        wide2_textures(img, tmap, grid, anat["wide2"])
    _add_organ_texture(rng, img, tmap, spacing)
    _add_cupping(rng, img, tmap, grid, anat["body"]["a"])
    _add_metal(rng, img, tmap)
    return _to_int16(_kernel_and_noise(rng, img, spacing, seed))


def _tissue_field(tmap: np.ndarray, grid: dict, code: int, waves: dict):
    """Bounding box ``sl`` of tissue ``code`` in ``tmap``, its mask there and the wave field on the box; or None."""
    mask = tmap == code
    idx = [np.flatnonzero(np.any(mask, axis=tuple(j for j in range(3) if j != a))) for a in range(3)]
    if len(idx[0]) == 0:
        return None
    sl = tuple(slice(int(i[0]), int(i[-1]) + 1) for i in idx)
    return sl, mask[sl], wave_field(waves, *open_grid(grid, sl))


def wide2_textures(img: np.ndarray, tmap: np.ndarray, grid: dict, wide2: dict):
    """HU patterns of wide2 tissues, set in ``img`` before blur and noise: the mottled stomach food and the
    regenerative-nodule texture of a cirrhotic liver (smooth fields of the patient frame, no random draws here)."""
    stomach = wide2["stomach"]
    food = None if stomach is None else stomach["food"]
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
