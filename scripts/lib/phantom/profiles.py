"""The phantom's profiles as data: which features a case of each profile has, and the ranges its grid is drawn from.

Each profile is the one before it plus features that draw from random streams of their own, so adding a feature
never changes the cases of the profiles below it: ``"standard"`` (the demo's portal-venous abdomen, streams
``[seed, 0]`` to ``[seed, 2]``), ``"wide"`` (domain randomisation, ``[seed, 3]`` to ``[seed, 7]``), ``"wide2"``
(adrenals ``[seed, 8]``, stomach contents ``[seed, 9]``, pericardium ``[seed, 10]``, cirrhotic livers
``[seed, 11]``) and ``"wide3"`` (hips and thighs, ``[seed, 12]``; the shipped model trained on it).  The code asks a
:class:`ProfileSpec` for a feature (``spec.adrenals``), never for a profile's name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ProfileSpec:
    """What the cases of one profile show.

    Attributes:
        name: the profile's name, one of :data:`PROFILES`.
        domain_randomised: the "wide" additions (streams [seed, 3] to [seed, 7]): fields of view from the lung apex
            or mid-abdomen down to the liver or below the pelvis, the patient's size, pelvis, colon and small-bowel
            loops, pancreas, portal and iliac vessels, ascites, arms, large tumours, a contrast phase per case, and
            the scanner's appearance (organ textures, cupping, metal streaks, kernel, slice thickness, noise).
        adrenals: both adrenal glands, with a fat margin the liver keeps out of (stream [seed, 8]).
        stomach_contents: stomach food and positive oral contrast (stream [seed, 9]).
        pericardium: pericardium and pericardial fat (stream [seed, 10]).
        cirrhosis_share: share of the cases with a cirrhotic liver (stream [seed, 11]); 0 for none.
        hips: a body that widens at the hips and divides into thighs below the perineum (stream [seed, 12]).
        spacing_xy_mm: range of the in-plane voxel size drawn when the caller gives no grid.
        spacing_z_mm: range of the slice spacing drawn when the caller gives no grid.
    """

    name: str
    domain_randomised: bool
    adrenals: bool
    stomach_contents: bool
    pericardium: bool
    cirrhosis_share: float
    hips: bool
    spacing_xy_mm: tuple[float, float]
    spacing_z_mm: tuple[float, float]

    def __post_init__(self):
        if (self.wide2 or self.hips) and not self.domain_randomised:
            # they build on the wide case: its contrast phase, oral contrast, pelvis and arms
            raise ValueError(f"profile {self.name!r}: its features need domain_randomised")

    @property
    def wide2(self) -> bool:
        """Whether the case has any of the wide2 additions (adrenals, stomach contents, pericardium, cirrhosis)."""
        return self.adrenals or self.stomach_contents or self.pericardium or self.cirrhosis_share > 0.0


_STANDARD = ProfileSpec(
    name="standard",
    domain_randomised=False,
    adrenals=False,
    stomach_contents=False,
    pericardium=False,
    cirrhosis_share=0.0,
    hips=False,
    spacing_xy_mm=(2.4, 3.2),
    spacing_z_mm=(3.0, 5.0),
)
# Each profile is the one before it plus its own features (the module docstring): derived, so a change to a profile
# reaches every profile built on it.
_WIDE = replace(_STANDARD, name="wide", domain_randomised=True, spacing_xy_mm=(1.5, 3.2), spacing_z_mm=(1.0, 5.0))
_WIDE2 = replace(_WIDE, name="wide2", adrenals=True, stomach_contents=True, pericardium=True, cirrhosis_share=0.15)
_WIDE3 = replace(_WIDE2, name="wide3", hips=True)
PROFILE_SPECS = {spec.name: spec for spec in (_STANDARD, _WIDE, _WIDE2, _WIDE3)}
# "wide": domain-randomised field of view, anatomy, contrast phase and appearance;
# "wide2": the wide case plus adrenals, stomach food and oral contrast, pericardium and cirrhotic livers;
# "wide3": the wide2 case in a body that widens at the hips and divides into thighs below the perineum (the shipped
# model trained on it)
PROFILES = tuple(PROFILE_SPECS)
DEFAULT_PROFILE = "standard"


def profile_spec(profile) -> ProfileSpec:
    """The :class:`ProfileSpec` of the profile named ``profile``; ValueError for any other value."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    return PROFILE_SPECS[profile]
