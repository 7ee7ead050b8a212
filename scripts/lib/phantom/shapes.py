"""Shapes in the patient frame (millimetres), independent of any sampling grid.

Most structures are perturbed ellipsoids ("blobs": a centre, semi-axes, a rotation and smooth radial bumps drawn
from the case's random stream) whose field is below 1 inside; the body outline is a superellipse; textures and
nodular surfaces are sums of plane waves.  Defining them in millimetres is what keeps a case's anatomy the same
whatever grid it is sampled on.
"""

from __future__ import annotations

import math

import numpy as np


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation matrix Rz(az) @ Ry(ay) @ Rx(ax) (angles in radians); columns are the rotated local axes."""
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def draw_blob(rng, centre, axes, rot=None, n_terms=0, max_amp=0.0) -> dict:
    """A (perturbed) ellipsoid: centre and semi-axes in mm, rotation, and smooth radial bumps drawn from ``rng``."""
    amps = rng.uniform(0.0, max_amp, n_terms)
    dirs = rng.normal(size=(n_terms, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True) + 1e-12
    freqs = rng.uniform(1.0, 2.5, n_terms)
    phases = rng.uniform(0.0, 2.0 * math.pi, n_terms)
    return {
        "centre": np.asarray(centre, dtype=float),
        "axes": np.asarray(axes, dtype=float),
        "rot": np.eye(3) if rot is None else np.asarray(rot, dtype=float),
        "amps": amps,
        "dirs": dirs,
        "freqs": freqs,
        "phases": phases,
    }


def moved(blob: dict, shift, scale=1.0, scale_shape: bool = True) -> dict:
    """Copy of ``blob`` with centre ``shift + scale * centre``; with ``scale_shape`` the shape is also stretched
    by ``scale`` (a number or one factor per patient axis, applied in the patient frame)."""
    scale = np.broadcast_to(np.asarray(scale, dtype=float), (3,))
    out = dict(blob)
    out["centre"] = np.asarray(shift, dtype=float) + scale * blob["centre"]
    if scale_shape:
        out["stretch"] = scale * blob.get("stretch", np.ones(3))
    return out


def grown(blob: dict, factor: float, offset=(0.0, 0.0, 0.0)) -> dict:
    """Copy of ``blob`` scaled by ``factor`` about its own centre, then moved by ``offset`` (mm)."""
    return moved(blob, (1.0 - factor) * blob["centre"] + np.asarray(offset, dtype=float), factor)


def padded(blob: dict, mm: float) -> dict:
    """Copy of ``blob`` with ``mm`` added to each semi-axis (a margin of about ``mm`` around it)."""
    return dict(blob, axes=blob["axes"] + mm)


def blob_point(blob: dict, v) -> np.ndarray:
    """Patient coordinates of the point ``v`` given in the blob's unit-sphere frame."""
    return blob["centre"] + blob.get("stretch", np.ones(3)) * (blob["rot"] @ (blob["axes"] * np.asarray(v)))


def blob_reach(blob: dict, level: float = 1.0) -> float:
    """Radius (mm) of a sphere around the centre that contains the blob's ``level`` set."""
    stretch = float(np.max(blob.get("stretch", np.ones(3))))
    return float(np.max(blob["axes"])) * level * stretch * (1.0 + float(np.sum(np.abs(blob["amps"]))))


def blob_field(blob: dict, xx, yy, zz) -> np.ndarray:
    """Normalised radius of the perturbed ellipsoid at points xx, yy, zz (broadcastable); < 1 is inside."""
    c = blob["centre"].tolist()
    ax = blob["axes"].tolist()
    r = blob["rot"]
    d = (xx - np.float32(c[0]), yy - np.float32(c[1]), zz - np.float32(c[2]))
    if "stretch" in blob:
        d = tuple(dj * np.float32(1.0 / st) for dj, st in zip(d, blob["stretch"].tolist(), strict=True))
    q = []
    for k in range(3):
        acc = None
        for j in range(3):
            w = float(r[j, k])
            if w != 0.0:
                term = d[j] * np.float32(w / ax[k])
                acc = term if acc is None else acc + term
        q.append(acc)
    rho = np.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2])
    if len(blob["amps"]) == 0:
        return rho
    inv = np.float32(1.0) / (rho + np.float32(1e-6))
    thr = np.float32(1.0)
    for a, n, f, ph in zip(
        blob["amps"].tolist(),
        blob["dirs"].tolist(),
        blob["freqs"].tolist(),
        blob["phases"].tolist(),
        strict=True,
    ):
        proj = (q[0] * np.float32(n[0]) + q[1] * np.float32(n[1]) + q[2] * np.float32(n[2])) * inv
        thr = thr + np.float32(a) * np.cos(proj * np.float32(f * math.pi) + np.float32(ph))
    return rho / thr


def superellipse(xx, yy, a: float, b: float, p_post: float):
    """Body-outline function: (|x|/a)^p + (|y|/b)^p with p = 2 anteriorly and ``p_post`` posteriorly; < 1 inside."""
    p = np.where(yy < 0, np.float32(p_post), np.float32(2.0))
    return np.abs(xx / np.float32(a)) ** p + np.abs(yy / np.float32(b)) ** p


def draw_waves(rng, n: int, wavelength_mm) -> dict:
    """``n`` plane waves (random directions, wavelengths drawn from the range ``wavelength_mm``, phases): a smooth
    random field defined in the patient frame, so it does not depend on the sampling grid."""
    dirs = rng.normal(size=(n, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True) + 1e-12
    k = dirs * (2.0 * math.pi / rng.uniform(*wavelength_mm, n))[:, None]
    return {"k": k, "phases": rng.uniform(0.0, 2.0 * math.pi, n)}


def wave_field(waves: dict, xx, yy, zz) -> np.ndarray:
    """Sum of the plane waves at open-grid points (float32), scaled to unit standard deviation."""
    acc = np.float32(0.0)
    for (kx, ky, kz), ph in zip(waves["k"].tolist(), waves["phases"].tolist(), strict=True):
        acc = acc + np.cos(xx * np.float32(kx) + yy * np.float32(ky) + zz * np.float32(kz) + np.float32(ph))
    return acc * np.float32(math.sqrt(2.0 / len(waves["phases"])))


def tongue(points, half_thick, half_width, normals) -> dict:
    """A tapered, flattened tube along a polyline, the shape of a thin liver tip: at each of the ``points`` (mm) its
    half-thickness along the unit ``normals`` (across the thin side) and its half-width across both; in between,
    both change linearly, so the tip can thin out to less than a voxel."""
    normals = np.asarray(normals, dtype=float)
    return {
        "points": np.asarray(points, dtype=float),
        "half_thick": np.asarray(half_thick, dtype=float),
        "half_width": np.asarray(half_width, dtype=float),
        "normals": normals / np.linalg.norm(normals, axis=1, keepdims=True),
    }


def tongue_bounds(tip: dict, pad: float = 0.0) -> tuple:
    """Lower and upper corner (mm) of a box that holds the tongue ``tip`` grown by ``pad`` mm."""
    reach = np.maximum(tip["half_thick"], tip["half_width"])[:, None] + pad
    return (tip["points"] - reach).min(axis=0), (tip["points"] + reach).max(axis=0)


def _tongue_frame(tip: dict, i: int) -> tuple:
    """Segment ``i`` of a tongue: its start, direction, squared length and the unit vectors across its thin side
    (the mean of its ends' normals, made square to the segment) and across its width."""
    p0 = tip["points"][i]
    d = tip["points"][i + 1] - p0
    length2 = float(d @ d) + 1e-9
    along = d / math.sqrt(length2)
    n = tip["normals"][i] + tip["normals"][i + 1]
    n = n - (n @ along) * along
    n /= np.linalg.norm(n) + 1e-12
    return p0, d, length2, n, np.cross(along, n)


def tongue_field(tip: dict, xx, yy, zz, floor=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Normalised distance from the tongue ``tip`` at open-grid points (< 1 inside): per segment, the offset from
    the nearest point of its axis across the thin side over the half-thickness, across the width over the
    half-width and, beyond the segment's ends, along it over the half-width (rounded ends); the least over the
    segments.  ``floor`` (mm per patient axis: half a voxel) is the least thickness and width the tongue gets, so a
    tip thinner than a voxel still covers every voxel its mid-surface passes through."""
    out = None
    for i in range(len(tip["points"]) - 1):
        p0, d, length2, n, w = _tongue_frame(tip, i)
        vx, vy, vz = xx - np.float32(p0[0]), yy - np.float32(p0[1]), zz - np.float32(p0[2])
        s = (vx * np.float32(d[0]) + vy * np.float32(d[1]) + vz * np.float32(d[2])) * np.float32(1.0 / length2)
        t = np.clip(s, 0.0, 1.0)
        e_n = vx * np.float32(n[0]) + vy * np.float32(n[1]) + vz * np.float32(n[2])
        e_w = vx * np.float32(w[0]) + vy * np.float32(w[1]) + vz * np.float32(w[2])
        e_t = (s - t) * np.float32(math.sqrt(length2))
        a0, a1 = tip["half_thick"][i : i + 2].tolist()
        b0, b1 = tip["half_width"][i : i + 2].tolist()
        a = np.maximum(np.float32(a0) + t * np.float32(a1 - a0), np.float32(np.abs(n) @ np.asarray(floor)))
        b = np.maximum(np.float32(b0) + t * np.float32(b1 - b0), np.float32(np.abs(w) @ np.asarray(floor)))
        field = np.sqrt((e_n / a) ** 2 + (e_w / b) ** 2 + (e_t / b) ** 2)
        out = field if out is None else np.minimum(out, field)
    return out
