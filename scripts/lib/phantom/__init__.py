"""Synthetic abdominal CT phantom: the bundle's embedded default dataset.

Real patient data cannot be downloaded where this bundle runs, so this package draws plausible (but entirely
synthetic) portal-venous abdominal CT volumes with liver / tumour labels in the Medical Segmentation Decathlon
Task03_Liver convention (0 background, 1 liver including its vessels, 2 tumour).

Coordinates
    Anatomy is built in a patient frame in millimetres that is aligned with nibabel's RAS+ world space:
    +x towards the patient's Right, +y Anterior, +z Superior.  x = y = 0 is the centre of the body outline and
    z = 0 the top of the liver dome.  World coordinates equal patient coordinates plus a z shift (the table
    position).  The liver therefore always lies at world x > 0, on the patient's right, whatever the order and
    direction of the stored array axes; the affine says how the array is stored.

Randomness
    ``make_case(seed)`` is a pure function of its arguments.  Three independent streams are derived from the seed:
    ``[seed, 0]`` for the grid (spacing, field of view, orientation, table position), ``[seed, 1]`` for the anatomy
    and intensities, ``[seed, 2]`` for the image noise.  The anatomy therefore does not depend on the requested
    grid: ``make_case(0)`` and ``make_case(0, shape=(512, 512, 150), spacing=(0.8, 0.8, 2.5))`` show the same
    patient.  ``write_dataset(..., seed=s)`` uses seed ``s * 1000 + i`` for case ``i`` (training cases first).

Profiles (``PROFILES``)
    ``"standard"``: the demo's portal-venous abdomen (streams 0-2 above).  ``"wide"``: the standard anatomy plus
    domain randomisation (streams ``[seed, 3]`` to ``[seed, 7]``); the shipped model's profile, wide3, is built
    on it, so its output is pinned by the tests and must not change.  ``"wide2"``: exactly the wide case, then adds
    what wide lacks, each from its own new stream: adrenal glands (``[seed, 8]``), stomach food and positive oral
    contrast (``[seed, 9]``), pericardium and pericardial fat (``[seed, 10]``) and cirrhotic livers (``[seed, 11]``:
    shrunken right lobe, enlarged caudate and left lobe, nodular surface and parenchyma, widened fissures, often
    ascites and splenomegaly; ``case_info`` reports the liver kind "cirrhotic").  ``"wide3"``: exactly the wide2
    case, in a body that is no longer a cylinder below the iliac crest (``[seed, 12]``): the sides widen to cover the
    greater trochanters, the buttocks deepen, and below the perineum the body divides into two thighs around the
    femoral shafts.  Only air, skin, fat, muscle and the cavity's fat, bowel and fluid are repainted, so bones, organs,
    vessels and the liver are the wide2 case's.  ``"wide4"``: the wide3 case with liver shapes that real CT shows,
    each from its own stream (:mod:`.variants`): atrophic or hypertrophic lobes (``[seed, 13]``), a long inferior
    right-lobe tip lateral to the right kidney (Riedel's lobe, ``[seed, 14]``), a thin left lateral segment over the
    stomach towards the spleen (``[seed, 15]``), tips kept in the label at least a voxel thick (tissue
    "liver_partial", at partial-volume HU), and the hilum as reference segmentations draw it (``[seed, 16]``): the
    liver wraps the retrohepatic IVC and the portal vein enters it, both outside the label, close to the liver's HU
    in the portal-venous phase.  Same grid as the wide3 case; ``case_info`` lists the variants a case shows.

Profiles are data (:mod:`.profiles`): the code asks a profile's :class:`ProfileSpec` for a feature, never for its
name.

Modules
    :mod:`.profiles` (what each profile draws), :mod:`.anatomy` (the order of the draws), :mod:`.body`,
    :mod:`.thorax`, :mod:`.liver`, :mod:`.variants`, :mod:`.organs`, :mod:`.vessels` and :mod:`.pelvis` (what is
    drawn and how it is painted), :mod:`.shapes` and :mod:`.paint` (blobs and painting primitives), :mod:`.grid`
    (field of view, orientation, affine), :mod:`.appearance` (HU, contrast phase, blur, noise, artefacts),
    :mod:`.case` (one case end to end), :mod:`.dataset` (datasets on disk) and :mod:`.tissues` (tissue codes and
    labels).

Command line
    ``python -m scripts phantom --output_dir DIR`` or ``--single OUT.nii.gz`` (:mod:`scripts.commands.phantom`).
"""

from __future__ import annotations

from scripts.lib.fileio import save_nifti  # save_nifti: phantom.save_nifti for the tests and the benchmark

from .appearance import PHASES
from .case import make_case, make_case_with_tissues
from .dataset import case_info, case_summary, write_dataset
from .grid import MAX_VOXELS, ORIENTATIONS, check_seed, parse_orientation
from .profiles import DEFAULT_PROFILE, PROFILE_SPECS, PROFILES, ProfileSpec, profile_spec
from .tissues import LIVER_CODES, MAX_TUMOURS, TISSUES, TUMOUR_CODES, labels_from_tissues

__all__ = [
    "DEFAULT_PROFILE",
    "LIVER_CODES",
    "MAX_TUMOURS",
    "MAX_VOXELS",
    "ORIENTATIONS",
    "PHASES",
    "PROFILES",
    "PROFILE_SPECS",
    "TISSUES",
    "TUMOUR_CODES",
    "ProfileSpec",
    "case_info",
    "case_summary",
    "check_seed",
    "labels_from_tissues",
    "make_case",
    "make_case_with_tissues",
    "parse_orientation",
    "profile_spec",
    "save_nifti",
    "write_dataset",
]
