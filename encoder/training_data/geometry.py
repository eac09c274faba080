"""Small vector helpers and CA-trace checks for the SYNTHETIC assembly generator."""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from ingest.transform import axis_rotation

#: Smallest CA-CA distance between rigid bodies (domains, subunits), Å.
CONTACT = 5.0


def unit(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to length 1 along its last axis (zero rows stay about zero)."""
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def perp(v: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Unit component of ``v`` perpendicular to the unit ``axis`` (row-wise)."""
    return unit(v - (v * axis).sum(-1, keepdims=True) * axis)


def any_perp(axis: np.ndarray) -> np.ndarray:
    """Some unit vector perpendicular to the unit ``axis`` (shape ``(3,)``)."""
    trial = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.eye(3)[1]
    return perp(trial, axis)


def rot_z(angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians about z (see :func:`axis_rotation`)."""
    return axis_rotation(np.array([0.0, 0.0, 1.0]), angle)


def random_quaternion_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed 3x3 rotation from a normalised Gaussian quaternion.

    Draws 4 normals from ``rng`` (unlike :func:`ingest.transform.random_rotation`,
    whose draws differ, so the generator's random streams stay as they are).
    """
    q = unit(rng.normal(size=4))
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotation_to(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A rotation taking unit vector ``a`` onto unit vector ``b``."""
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(a @ b)
    if s < 1e-9:
        return np.eye(3) if c > 0 else axis_rotation(any_perp(a), math.pi)
    return axis_rotation(axis / s, math.atan2(s, c))


def _min_nonadjacent(ca: np.ndarray, radius: float = 4.5) -> float:
    """Smallest CA-CA distance between residues at least 2 apart in sequence."""
    pairs = cKDTree(ca).query_pairs(radius, output_type="ndarray")
    pairs = pairs[np.abs(pairs[:, 0] - pairs[:, 1]) >= 2]
    if len(pairs) == 0:
        return radius
    return float(np.linalg.norm(ca[pairs[:, 0]] - ca[pairs[:, 1]], axis=1).min())


def trace_quality(ca: np.ndarray) -> float:
    """How far a CA trace ``[N, 3]`` is from acceptable (larger is better).

    Returns:
        >= 0 when no CA pair at least 2 apart in sequence is closer than 3.8 Å and
        every CA-CA step is 3.8-3.9 Å; else the (negative) worst shortfall, steps
        weighted 10x.
    """
    step = np.linalg.norm(np.diff(ca, axis=0), axis=1)
    off = float(np.maximum(np.abs(step - 3.85) - 0.05, 0.0).max())
    return min(_min_nonadjacent(ca) - 3.8, -10.0 * off)


def clashes(tree: cKDTree, points: np.ndarray, distance: float = CONTACT) -> bool:
    """Whether any of ``points`` ``[N, 3]`` lies within ``distance`` Å of ``tree``."""
    d, _ = tree.query(points, distance_upper_bound=distance)
    return bool(np.isfinite(d).any())
