"""What the voxels of a CT and its label must look like: the Hounsfield-unit ranges and the label convention.

The one copy of the voxel checks' thresholds and judgements, shared by the inputs that inference reads
(``scripts.components.inputs``) and the dataset check before training (``scripts.lib.check_dataset``). Plain Python, no MONAI, so
the dataset check starts fast.
"""

from __future__ import annotations

__all__ = ["AIR_HU", "BRIGHT_HU", "EXPECTED_LABELS", "MIN_HU_BELOW", "hu_doubts", "values_text"]

#: Label values of the Medical Segmentation Decathlon Task03 convention: background, liver, tumour.
EXPECTED_LABELS = (0, 1, 2)
#: A CT field of view always holds air (-1000 HU) or fat (-100 HU); an image without values below this is no HU image.
MIN_HU_BELOW = 0.0
#: Voxels below this value (HU) are air: outside the body, in the lungs or in bowel gas.
AIR_HU = -500.0
#: Contrast-enhanced vessels or bone exceed this (HU); an image without any is suspicious.
BRIGHT_HU = 100.0


def hu_doubts(lo, hi):
    """Why intensities ranging ``lo..hi`` may not be Hounsfield units: ``"normalised"`` (within [0, 1]; then alone),
    ``"nothing_negative"`` (nothing below ``MIN_HU_BELOW``: MR, or CT without its rescale intercept), ``"no_air"``
    (nothing below ``AIR_HU``), ``"no_bright"`` (nothing above ``BRIGHT_HU``). The one judgement of an image's
    range: inference refuses the first two and warns for the others (``scripts.components.inputs.check_image_intensities``);
    the dataset check refuses the first and warns for the last two, which cover the second
    (``scripts.lib.check_dataset.check_case``)."""
    if lo >= 0.0 and hi <= 1.0:
        return ["normalised"]
    doubts = []
    if lo >= MIN_HU_BELOW:
        doubts.append("nothing_negative")
    if lo > AIR_HU:
        doubts.append("no_air")
    if hi < BRIGHT_HU:
        doubts.append("no_bright")
    return doubts


def values_text(values, counts):
    """Unexpected label values for a message: ``"7 (8 voxels), 9 (1 voxels)"``, the first ten (the label checks
    of ``scripts.lib.check_dataset`` and ``scripts.components.inputs.check_label_values``)."""
    return ", ".join(f"{v:g} ({c} voxels)" for v, c in list(zip(values, counts, strict=True))[:10])
