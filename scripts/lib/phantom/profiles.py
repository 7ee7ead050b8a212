"""The phantom's profiles as data: which features a case of each profile has, and the ranges its grid is drawn from.

Each profile is the one before it plus features that draw from random streams of their own, so adding a feature
never changes the cases of the profiles below it: ``"standard"`` (the demo's portal-venous abdomen, streams
``[seed, 0]`` to ``[seed, 2]``), ``"wide"`` (domain randomisation, ``[seed, 3]`` to ``[seed, 7]``), ``"wide2"``
(adrenals ``[seed, 8]``, stomach contents ``[seed, 9]``, pericardium ``[seed, 10]``, cirrhotic livers
``[seed, 11]``), ``"wide3"`` (hips and thighs, ``[seed, 12]``; the shipped model trained on it) and ``"wide4"``
(liver shapes that real CT shows and the wide3 case lacks: atrophic and hypertrophic lobes ``[seed, 13]``, a long
inferior right-lobe tip (Riedel's lobe) ``[seed, 14]``, a thin left lateral segment over the stomach ``[seed, 15]``,
tips kept in the label however thin, and the hilum as reference segmentations draw it: the liver wraps the
retrohepatic IVC and the main portal vein enters it, both outside the label and close to the liver's HU in the
portal-venous phase, ``[seed, 16]``).  The code asks a :class:`ProfileSpec` for a feature (``spec.adrenals``), never
for a profile's name.
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
        lobe_size_share: share of the (not cirrhotic) cases with an atrophic right lobe and a hypertrophic left lobe,
            or a small left lobe, refitted to the drawn liver volume (stream [seed, 13]); 0 for none.
        riedel_share: share of the cases with a long inferior right-lobe tip (Riedel's lobe) running down lateral to
            the right kidney to below its lower pole (stream [seed, 14]); 0 for none.
        left_tip_share: share of the cases whose left lateral segment runs on as a thin tip in front of and over the
            stomach towards the spleen (stream [seed, 15]); 0 for none.
        thin_tips: the tips above stay in the label at least one voxel thick however thin they are, the voxels they
            only cross painted at partial-volume intensity (no random draws).
        hilum: the liver wraps the retrohepatic IVC (no margin, a groove in its posterior surface) and the main
            portal vein enters it at the hilum, both labelled background, with HU close to the liver's in the
            portal-venous phase (stream [seed, 16]).
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
    lobe_size_share: float
    riedel_share: float
    left_tip_share: float
    thin_tips: bool
    hilum: bool
    spacing_xy_mm: tuple[float, float]
    spacing_z_mm: tuple[float, float]

    def __post_init__(self):
        if (self.wide2 or self.hips or self.wide4) and not self.domain_randomised:
            # they build on the wide case: its contrast phase, oral contrast, pelvis, arms and portal vein
            raise ValueError(f"profile {self.name!r}: its features need domain_randomised")

    @property
    def wide2(self) -> bool:
        """Whether the case has any of the wide2 additions (adrenals, stomach contents, pericardium, cirrhosis)."""
        return self.adrenals or self.stomach_contents or self.pericardium or self.cirrhosis_share > 0.0

    @property
    def wide4(self) -> bool:
        """Whether the case has any of the wide4 liver additions (lobe sizes, tips, hilum)."""
        shares = (self.lobe_size_share, self.riedel_share, self.left_tip_share)
        return any(share > 0.0 for share in shares) or self.thin_tips or self.hilum


_STANDARD = ProfileSpec(
    name="standard",
    domain_randomised=False,
    adrenals=False,
    stomach_contents=False,
    pericardium=False,
    cirrhosis_share=0.0,
    hips=False,
    lobe_size_share=0.0,
    riedel_share=0.0,
    left_tip_share=0.0,
    thin_tips=False,
    hilum=False,
    spacing_xy_mm=(2.4, 3.2),
    spacing_z_mm=(3.0, 5.0),
)
# Each profile is the one before it plus its own features (the module docstring): derived, so a change to a profile
# reaches every profile built on it.
_WIDE = replace(_STANDARD, name="wide", domain_randomised=True, spacing_xy_mm=(1.5, 3.2), spacing_z_mm=(1.0, 5.0))
_WIDE2 = replace(_WIDE, name="wide2", adrenals=True, stomach_contents=True, pericardium=True, cirrhosis_share=0.15)
_WIDE3 = replace(_WIDE2, name="wide3", hips=True)
# wide4's shares are well above how often real livers show these shapes: each is a shape a model trained on wide3
# misses on real CT, so it must come up often enough to be learnt, while the usual liver stays the most common case.
# Lobe sizes: about one case in four (cirrhotic livers, which have their own lobe sizes, aside); Riedel's lobe and
# the left tip: one case in three each, drawn apart, so some cases have both and about half neither.  The hilum is
# in every case: every liver wraps its IVC, and every reference draws the vessels outside.
_WIDE4 = replace(
    _WIDE3, name="wide4", lobe_size_share=0.25, riedel_share=0.33, left_tip_share=0.33, thin_tips=True, hilum=True
)
PROFILE_SPECS = {spec.name: spec for spec in (_STANDARD, _WIDE, _WIDE2, _WIDE3, _WIDE4)}
# "wide": domain-randomised field of view, anatomy, contrast phase and appearance;
# "wide2": the wide case plus adrenals, stomach food and oral contrast, pericardium and cirrhotic livers;
# "wide3": the wide2 case in a body that widens at the hips and divides into thighs below the perineum (the shipped
# model trained on it);
# "wide4": the wide3 case with atrophic and hypertrophic lobes, Riedel's lobe, a thin left tip over the stomach, thin
# tips kept in the label and the hilum as references draw it
PROFILES = tuple(PROFILE_SPECS)
DEFAULT_PROFILE = "standard"


def profile_spec(profile) -> ProfileSpec:
    """The :class:`ProfileSpec` of the profile named ``profile``; ValueError for any other value."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    return PROFILE_SPECS[profile]
