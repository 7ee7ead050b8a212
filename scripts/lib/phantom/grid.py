"""The field of view: sampling grid, stored orientation and affine of a case, and the checks of what callers ask for.

The anatomy is drawn first, independent of the grid; the grid is then drawn from stream ``[seed, 0]`` (standard:
a field of view around the whole liver) or ``[seed, 4]`` (domain-randomised: from the lung apex or mid-abdomen down
to the liver or below the pelvis, with the patient's size).  Every draw happens whatever the caller gives, so an
explicit shape, spacing or orientation leaves the other draws unchanged.  Grids are sampled in canonical RAS order
and the arrays transposed and flipped to the stored orientation at the end.
"""

from __future__ import annotations

import math

import numpy as np

from .paint import grid_from_coords
from .profiles import ProfileSpec

# Orientations drawn for default cases (nibabel axis codes of the stored array).
ORIENTATIONS = ("RAS", "LAS", "LPS", "RPS", "LPI")
_LETTERS = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}
_WORLD_AXIS = ("x (right-left)", "y (anterior-posterior)", "z (superior-inferior)")

MAX_VOXELS = 150_000_000


def parse_orientation(code) -> tuple:
    """Axis code such as "RAS" or "LPS" -> ((world_axis, sign) per stored array axis).  Raises ValueError."""
    if not isinstance(code, str) or len(code) != 3 or any(ch not in _LETTERS for ch in code.upper()):
        raise ValueError(f"orientation {code!r} is not a 3-letter axis code made of R/L, A/P, S/I (e.g. 'RAS')")
    axes = tuple(_LETTERS[ch] for ch in code.upper())
    if sorted(w for w, _ in axes) != [0, 1, 2]:
        raise ValueError(f"orientation {code!r} must name each of R/L, A/P and S/I exactly once")
    return axes


def _check_triplet(value, name, kind):
    try:
        vals = tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of 3 numbers, got {value!r}") from None
    if len(vals) != 3:
        raise ValueError(f"{name} must have 3 entries, got {len(vals)}")
    out = []
    for v in vals:
        if kind is int:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 4 or v > 4096:
                raise ValueError(f"{name} entries must be integers in [4, 4096], got {value!r}")
            out.append(int(v))
        else:
            try:
                f = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"{name} entries must be numbers, got {value!r}") from None
            if not math.isfinite(f) or f <= 0 or f > 50:
                raise ValueError(f"{name} entries must be finite and in (0, 50] mm, got {value!r}")
            out.append(f)
    return tuple(out)


def check_seed(seed, name: str = "seed") -> int:
    """``seed`` as an int; ValueError ``<name> must be a non-negative integer`` for anything else (bools too)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {seed!r}")
    return int(seed)


def _request(drawn_code, shape, spacing, orientation) -> tuple:
    """The stored axes and their code (the caller's orientation, else the drawn one) and the checked shape and
    spacing (None where the caller gave none)."""
    code = drawn_code if orientation is None else orientation
    axes = parse_orientation(code)
    code = str(code).upper()
    shape = None if shape is None else _check_triplet(shape, "shape", int)
    spacing = None if spacing is None else _check_triplet(spacing, "spacing", float)
    return axes, code, shape, spacing


def _grid_size(axes, fovs, default_spacing, shape, spacing) -> tuple:
    """Voxels and spacing along the canonical (RAS) axes, from the field of view ``fovs`` (mm, RAS order) and what
    the caller gave along the stored axes: shape and spacing (kept), spacing alone (the field of view decides the
    shape, at least 8 voxels), shape alone (the field of view decides the spacing) or neither (the drawn
    ``default_spacing``). Raises ValueError above :data:`MAX_VOXELS`."""
    n_c, d_c = [0, 0, 0], [0.0, 0.0, 0.0]
    for i, (w, _) in enumerate(axes):
        fov = fovs[w]
        if shape is not None and spacing is not None:
            n, d = shape[i], spacing[i]
        elif spacing is not None:
            d = spacing[i]
            n = max(8, int(round(fov / d)))
        elif shape is not None:
            n = shape[i]
            d = round(fov / n, 4)
        else:
            d = default_spacing[w]
            n = int(round(fov / d))
        n_c[w], d_c[w] = n, d
    if int(np.prod(n_c, dtype=np.int64)) > MAX_VOXELS:
        raise ValueError(f"shape {tuple(n_c)} has more than {MAX_VOXELS} voxels")
    return n_c, d_c


def _scan_grid(coords, axes, code, d_c, origin, z_table) -> dict:
    """The grid of a scan (:func:`.paint.grid_from_coords`) with its stored axis order and codes, its spacing and
    origin along the world axes, and the table height that shifts the world (both profiles' grids end here)."""
    grid = grid_from_coords(coords)
    grid.update(
        {
            "axes": axes,
            "code": code,
            "spacing_c": tuple(d_c),
            "origin": tuple(origin),
            "world_shift": (0.0, 0.0, z_table),
        }
    )
    return grid


def make_grid(seed: int, anat: dict, shape, spacing, orientation, spec: ProfileSpec) -> dict:
    """Canonical (RAS-ordered) sampling grid, stored orientation and world shift for the request (standard cases:
    the whole liver in the field of view)."""
    rng = np.random.default_rng([seed, 0])
    # every draw happens whatever the arguments, so explicit arguments leave the other draws unchanged
    drawn_code = ORIENTATIONS[int(rng.integers(len(ORIENTATIONS)))]
    d_xy = round(float(rng.uniform(*spec.spacing_xy_mm)), 4)
    d_z = round(float(rng.uniform(*spec.spacing_z_mm)), 3)
    fov_xy = rng.uniform(max(340.0, 2.0 * anat["body"]["a"] + 30.0), 400.0)  # the whole body outline fits
    fov_z = rng.uniform(200.0, 260.0)
    centre_xy = rng.uniform(-10.0, 10.0, 2)
    top_margin = rng.uniform(15.0, 45.0)
    z_table = round(float(rng.uniform(-400.0, 100.0)), 1)
    liver_height = float(anat["liver"]["fov_hi"][2] - anat["liver"]["fov_lo"][2])
    fov_z = max(fov_z, liver_height + 30.0)  # a drawn field of view always holds the whole liver

    axes, code, shape, spacing = _request(drawn_code, shape, spacing, orientation)
    n_c, d_c = _grid_size(axes, (fov_xy, fov_xy, fov_z), (d_xy, d_xy, d_z), shape, spacing)

    liver = anat["liver"]
    lo, hi = liver["fov_lo"], liver["fov_hi"]
    want = [centre_xy[0], centre_xy[1], hi[2] + top_margin]
    origin = []
    for w in range(3):
        half = (n_c[w] - 1) * d_c[w] / 2.0
        if w == 2:
            want[2] -= half  # the top margin was given for the upper edge
        lo_c, hi_c = hi[w] + 2.0 - half, lo[w] - 2.0 + half
        if lo_c > hi_c:
            raise ValueError(
                f"field of view {n_c[w] * d_c[w]:.1f} mm along {_WORLD_AXIS[w]} is too small to contain the "
                f"liver (needs at least {hi[w] - lo[w] + 4.0 + d_c[w]:.1f} mm)"
            )
        centre = min(max(want[w], lo_c), hi_c)
        origin.append(centre - half)
    coords = [origin[w] + d_c[w] * np.arange(n_c[w], dtype=np.float64) for w in range(3)]
    return _scan_grid(coords, axes, code, d_c, origin, z_table)


def make_wide_grid(seed: int, anat: dict, shape, spacing, orientation, spec: ProfileSpec) -> dict:
    """Sampling grid of a domain-randomised case (stream [seed, 4]): field of view from the lung apex or
    mid-abdomen down to the liver or below the pelvis (the liver may be cut), in-plane 320-500 mm, and the
    patient's size (the painted patient frame is stretched by ``scale``; the affine is in physical millimetres)."""
    rng = np.random.default_rng([seed, 4])
    wide = anat["wide"]
    drawn_code = ORIENTATIONS[int(rng.integers(len(ORIENTATIONS)))]
    d_xy = round(float(rng.uniform(*spec.spacing_xy_mm)), 4)
    d_z = round(float(rng.uniform(*spec.spacing_z_mm)), 3)
    s = wide["scale"]
    fov_xy = rng.uniform(max(320.0, 2.0 * anat["body"]["a"] * s + 20.0), 500.0)
    fov_xy = min(fov_xy, 500.0)
    centre_xy = rng.uniform(-10.0, 10.0, 2)
    zt, zb = float(anat["liver"]["fov_hi"][2]), float(anat["liver"]["fov_lo"][2])
    below = wide["pelvis"]["z_fh"] - rng.uniform(40, 120)
    if rng.uniform() < 0.35:  # chest-abdomen-pelvis or abdomen-pelvis: the whole liver and the pelvis
        top, bottom = rng.uniform(zt + 15.0, wide["apex"]), below
    else:
        top, bottom = rng.uniform(zb + 40.0, wide["apex"]), rng.uniform(below, zt - 60.0)
    if top - bottom < 120.0:
        bottom = top - 120.0
    z_table = round(float(rng.uniform(-400.0, 100.0)), 1)

    axes, code, shape, spacing = _request(drawn_code, shape, spacing, orientation)
    fovs = (fov_xy, fov_xy, (top - bottom) * s)
    n_c, d_c = _grid_size(axes, fovs, (d_xy, d_xy, d_z), shape, spacing)
    centre = (centre_xy[0] * s, centre_xy[1] * s, 0.5 * (top + bottom) * s)  # physical mm
    origin = [centre[w] - (n_c[w] - 1) * d_c[w] / 2.0 for w in range(3)]
    coords = [(origin[w] + d_c[w] * np.arange(n_c[w], dtype=np.float64)) / s for w in range(3)]
    return _scan_grid(coords, axes, code, d_c, origin, z_table)


def grid_affine(grid: dict) -> np.ndarray:
    """4x4 voxel -> world (RAS+ mm) matrix of the stored array."""
    aff = np.eye(4)
    for i, (w, sgn) in enumerate(grid["axes"]):
        aff[:, i] = 0.0
        aff[w, i] = sgn * grid["spacing_c"][w]
    for w in range(3):
        sgn = [s for (ww, s) in grid["axes"] if ww == w][0]
        first = grid["origin"][w] + (0.0 if sgn > 0 else (grid["shape"][w] - 1) * grid["spacing_c"][w])
        aff[w, 3] = first + grid["world_shift"][w]
    return aff


def to_stored(arr: np.ndarray, axes) -> np.ndarray:
    """Canonical RAS-ordered array -> array stored with the given axis codes."""
    out = np.transpose(arr, [w for w, _ in axes])
    flips = tuple(i for i, (_, s) in enumerate(axes) if s < 0)
    if flips:
        out = np.flip(out, flips)
    return np.ascontiguousarray(out)
