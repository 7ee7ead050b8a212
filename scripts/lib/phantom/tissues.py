"""Tissue codes of the phantom's intermediate tissue map, and the label map made from it.

Every structure is painted as one of these codes into one uint8 map per case; the HU image (:mod:`.appearance`) and
the MSD label (:func:`labels_from_tissues`) are both looked up from that map, so the label always matches what the
image shows.
"""

from __future__ import annotations

import numpy as np

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
    # used by the "wide4" profile only: voxels a thin liver tip crosses without covering their centre (liver in the
    # label, partial-volume intensity in the image)
    "liver_partial": 43,
}
_T = TISSUES
N_CODES = 48  # length of the HU look-up tables and per-tissue weight vectors (room above the last code)
MAX_TUMOURS = 3
TUMOUR_CODES = tuple(_T[f"tumour_{i}"] for i in range(MAX_TUMOURS)) + (_T["tumour_large"],)
LIVER_CODES = (_T["liver"], _T["hepatic_vessel"], _T["liver_partial"])
# tissue codes the wide profile's soft-tissue structures may paint over (fat, bowel and its contents)
SOFT_CODES = tuple(
    _T[k]
    for k in ("visceral_fat", "bowel_a", "bowel_b", "bowel_c", "gas", "bowel_wall", "bowel_fluid", "bowel_contrast")
)


def labels_from_tissues(tissues: np.ndarray) -> np.ndarray:
    """MSD label map (0 background, 1 liver incl. hepatic vessels, 2 tumour) from a tissue map."""
    lut = np.zeros(256, dtype=np.uint8)
    lut[list(LIVER_CODES)] = 1
    lut[list(TUMOUR_CODES)] = 2
    return lut[tissues]
