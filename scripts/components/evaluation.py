"""Evaluation's cases: the labelled cases of a datalist, each image and label checked as inference checks its inputs
(:mod:`scripts.components.inputs`), and the pair on one voxel grid. ``evaluate.yaml`` names :func:`labelled_cases`;
the voxels are checked as the dataset reads them (:func:`scripts.components.inputs.tolerant`).
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np

from scripts.components.inputs import (
    MAX_VOXELS,
    check_case,
    shape_text,
    squeeze_trailing,
)
from scripts.lib.cases import labelled
from scripts.lib.errors import one_line, reports_input_errors

__all__ = ["labelled_cases"]


def _grid_problem(image: str, label: str) -> str | None:
    """Why ``label`` is not on ``image``'s voxel grid, or None (headers only)."""

    a, b = nib.load(image), nib.load(label)
    sa, sb = squeeze_trailing(tuple(a.shape)), squeeze_trailing(tuple(b.shape))
    if sa != sb:
        return f"{label}: label grid differs from its image {image}: shape {shape_text(sb)} vs {shape_text(sa)}"
    aa, ab = np.asarray(a.affine, dtype=float), np.asarray(b.affine, dtype=float)
    spacing = float(np.linalg.norm(aa[:3, :3], axis=0).min())
    tolerance = max(1e-3, 0.01 * spacing)  # float32 header rounding, at most 1% of a voxel
    if np.abs(aa - ab).max() > tolerance:
        shift = float(np.linalg.norm(aa[:3, 3] - ab[:3, 3]))
        return (
            f"{label}: label grid differs from its image {image}: the affines differ (origins {shift:.3f} mm apart, "
            f"axes {''.join(nib.aff2axcodes(ab))} vs {''.join(nib.aff2axcodes(aa))}); resample the label onto the image"
        )
    return None


@reports_input_errors
def labelled_cases(datalist_file: str, key: str = "validation", max_voxels: int = MAX_VOXELS) -> list[dict]:
    """The ``key`` list of a datalist JSON as ``[{"image", "label"}, ...]`` with absolute paths, each case checked.

    The list is read by ``scripts.lib.cases.labelled`` (relative paths are relative to the JSON's folder, the MSD
    ``dataset.json`` convention; an entry without a label is an error naming the file). Image and label go through
    :func:`check_case` and must share one voxel grid (shape and affine). Every bad case is reported at once, in the
    one line that stops the run (``error: ...``; metrics over a silently reduced set would mislead); label values are
    checked while the evaluation reads them (:func:`scripts.components.inputs.tolerant`).
    """

    datalist_file = os.path.abspath(os.path.expanduser(str(datalist_file)))
    if not os.path.isfile(datalist_file):
        raise FileNotFoundError(f"{datalist_file}: datalist not found (train first, or give --eval_datalist)")
    cases = labelled(datalist_file, key)
    if not cases:
        # B907: the key is the user's text, shown as given (here and below), not as repr() would quote it
        raise ValueError(f"{datalist_file}: the list '{key}' is empty")  # noqa: B907
    problems = []
    for case in cases:
        ok = True
        for role in ("image", "label"):
            try:
                check_case(case[role], max_voxels)
            except (ValueError, OSError) as exc:
                problems.append(f"{role} {one_line(exc)}")
                ok = False
        if ok and not os.path.isdir(case["image"]):
            grid = _grid_problem(case["image"], case["label"])
            if grid:
                problems.append(grid)
    if problems:
        raise ValueError(
            f"{datalist_file}: {len(problems)} problem(s) in the '{key}' cases; fix or remove them: "  # noqa: B907
            + "; ".join(problems)
        )
    return [{"image": c["image"], "label": c["label"]} for c in cases]
