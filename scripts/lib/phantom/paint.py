"""Sampling grids and the painting primitives every structure is drawn with.

A grid samples the patient frame at voxel centres along x, y and z (canonical RAS order; :mod:`.grid` decides the
stored order).  Structures are painted into the uint8 tissue map one after another, each only over the bounding box
it can reach, so a later structure covers an earlier one, optionally only over given tissue codes (``only``).
"""

from __future__ import annotations

import numpy as np

from .shapes import blob_field, blob_reach
from .tissues import TISSUES

_T = TISSUES  # tissue name -> code


def grid_from_coords(coords) -> dict:
    """A grid is three increasing float32 coordinate vectors (patient mm) of voxel centres along x, y, z."""
    coords = [np.asarray(c, dtype=np.float32) for c in coords]
    return {"coords": coords, "shape": tuple(len(c) for c in coords)}


def grid_box(grid: dict, lo, hi):
    """Slices of the grid voxels whose centres lie within [lo, hi] (mm, per axis), or None when empty."""
    out = []
    for c, l, h in zip(grid["coords"], lo, hi, strict=True):
        i0 = int(np.searchsorted(c, l, side="left"))
        i1 = int(np.searchsorted(c, h, side="right"))
        if i1 <= i0:
            return None
        out.append(slice(i0, i1))
    return tuple(out)


def open_grid(grid: dict, sl):
    """Open-grid coordinates (xx (n,1,1), yy (1,n,1), zz (1,1,n)) of the voxels in ``sl``."""
    x, y, z = (c[s] for c, s in zip(grid["coords"], sl, strict=True))
    return x[:, None, None], y[None, :, None], z[None, None, :]


def blob_box(grid: dict, blob: dict, level: float = 1.0):
    """Grid box that holds the blob's ``level`` set, or None when it lies outside the grid."""
    reach = blob_reach(blob, level)
    return grid_box(grid, blob["centre"] - reach, blob["centre"] + reach)


def sub_box(grid: dict, sl, lo, hi):
    """The part of grid box ``sl`` whose voxel centres lie within [lo, hi] (mm): its slices of the grid and of an
    array covering ``sl``; or None when empty."""
    box = grid_box(grid, lo, hi)
    if box is None:
        return None
    inter, rel = [], []
    for a, b in zip(sl, box, strict=True):
        i0, i1 = max(a.start, b.start), min(a.stop, b.stop)
        if i1 <= i0:
            return None
        inter.append(slice(i0, i1))
        rel.append(slice(i0 - a.start, i1 - a.start))
    return tuple(inter), tuple(rel)


def half_voxel(grid: dict) -> tuple:
    """Half the grid's voxel size (mm of the patient frame) along x, y and z."""
    return tuple(0.5 * float(c[1] - c[0]) if len(c) > 1 else 0.0 for c in grid["coords"])


def apply_blob(mask, sl, grid, blob, level=1.0, op="or"):
    """OR (op="or") or remove (op="andnot") the blob's ``level`` set into ``mask`` that covers grid box ``sl``."""
    bsl = blob_box(grid, blob, level)
    if bsl is None:
        return
    inter, rel = [], []
    for a, b in zip(sl, bsl, strict=True):
        i0, i1 = max(a.start, b.start), min(a.stop, b.stop)
        if i1 <= i0:
            return
        inter.append(slice(i0, i1))
        rel.append(slice(i0 - a.start, i1 - a.start))
    inside = blob_field(blob, *open_grid(grid, tuple(inter))) < np.float32(level)
    if op == "or":
        mask[tuple(rel)] |= inside
    else:
        mask[tuple(rel)] &= ~inside


def paint_mask(tmap, sl, mask, code, only=None):
    """Set tissue ``code`` where ``mask`` (covering box ``sl`` of tmap) is true, optionally only over codes ``only``."""
    sub = tmap[sl]
    if only is not None:
        mask = mask & np.isin(sub, only)
    sub[mask] = code


def paint_blob(tmap, grid, blob, code, level=1.0, only=None, extra=None):
    """Paint the blob; ``extra(xx, yy, zz)`` may return a further boolean restriction."""
    sl = blob_box(grid, blob, level)
    if sl is None:
        return
    xx, yy, zz = open_grid(grid, sl)
    mask = blob_field(blob, xx, yy, zz) < np.float32(level)
    if extra is not None:
        mask &= extra(xx, yy, zz)
    paint_mask(tmap, sl, mask, code, only)


def _in_tube(xx, yy, zz, p0, p1, r0, r1):
    """Which points of the open grid ``xx, yy, zz`` lie in the tapered tube (capsule) from p0 to p1 (radii r0 to r1)."""
    d = p1 - p0
    dd = float(d @ d) + 1e-9
    vx, vy, vz = xx - np.float32(p0[0]), yy - np.float32(p0[1]), zz - np.float32(p0[2])
    t = np.clip((vx * np.float32(d[0]) + vy * np.float32(d[1]) + vz * np.float32(d[2])) / np.float32(dd), 0, 1)
    ex, ey, ez = vx - t * np.float32(d[0]), vy - t * np.float32(d[1]), vz - t * np.float32(d[2])
    r = np.float32(r0) + t * np.float32(r1 - r0)
    return ex * ex + ey * ey + ez * ez < r * r


def paint_tube(tmap, grid, p0, p1, r0, r1, code, only):
    """Tapered tube (capsule) from p0 to p1, painted only over tissue codes ``only``."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    rmax = max(r0, r1)
    sl = grid_box(grid, np.minimum(p0, p1) - rmax, np.maximum(p0, p1) + rmax)
    if sl is None:
        return
    xx, yy, zz = open_grid(grid, sl)
    paint_mask(tmap, sl, _in_tube(xx, yy, zz, p0, p1, r0, r1), code, only)


def remove_tube(mask, sl, grid, p0, p1, r0, r1):
    """Remove the tapered tube (capsule) from p0 to p1 (radii r0 to r1, mm) from ``mask`` that covers grid box
    ``sl``: a keep-out region shaped like the tubes :func:`paint_tube` paints."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    rmax = max(r0, r1)
    got = sub_box(grid, sl, np.minimum(p0, p1) - rmax, np.maximum(p0, p1) + rmax)
    if got is None:
        return
    inter, rel = got
    xx, yy, zz = open_grid(grid, inter)
    mask[rel] &= ~_in_tube(xx, yy, zz, p0, p1, r0, r1)


def paint_tube_chain(tmap, grid, pts, radii, code, only):
    """Tubes through consecutive points ``pts``, tapering between consecutive ``radii``."""
    for i in range(len(pts) - 1):
        paint_tube(tmap, grid, pts[i], pts[i + 1], radii[i], radii[i + 1], code, only)


def paint_cylinder(tmap, grid, x, y, r, z_lo, z_hi, code, only=None):
    """Vertical cylinder of radius ``r`` mm about (x, y) between heights z_lo and z_hi."""
    sl = grid_box(grid, (x - r, y - r, z_lo), (x + r, y + r, z_hi))
    if sl is None:
        return
    xx, yy, _ = open_grid(grid, sl)
    mask2d = ((xx[:, :, 0] - x) ** 2 + (yy[:, :, 0] - y) ** 2) < r * r
    paint_mask(tmap, sl, np.broadcast_to(mask2d[:, :, None], tuple(s.stop - s.start for s in sl)), code, only)


def paint_bone(tmap, grid, p0, p1, r0, r1, cortex=3.0):
    """Tube of cortical bone with a cancellous core."""
    paint_tube(tmap, grid, p0, p1, r0, r1, _T["cortical_bone"], None)
    paint_tube(tmap, grid, p0, p1, max(r0 - cortex, 1.0), max(r1 - cortex, 1.0), _T["cancellous_bone"], None)
