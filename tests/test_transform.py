"""ingest.transform: the rotation helpers shared by the generators and benchmarks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ingest.transform import axis_rotation, random_rotation


def _unit_axes(n: int, seed: int = 0) -> np.ndarray:
    axes = np.random.default_rng(seed).normal(size=(n, 3))
    return axes / np.linalg.norm(axes, axis=1, keepdims=True)


def test_axis_rotation_matches_scipy_rotvec():
    angles = np.random.default_rng(1).uniform(-2 * math.pi, 2 * math.pi, 200)
    for axis, angle in zip(_unit_axes(200), angles, strict=True):
        expected = Rotation.from_rotvec(angle * axis).as_matrix()
        got = axis_rotation(axis, angle)
        assert got.shape == (3, 3) and got.dtype == np.float64
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        np.testing.assert_allclose(got @ got.T, np.eye(3), rtol=0, atol=1e-12)
        assert np.linalg.det(got) == pytest.approx(1.0, abs=1e-12)
        np.testing.assert_allclose(got @ axis, axis, rtol=0, atol=1e-12)


def test_axis_rotation_convention():
    z = np.array([0.0, 0.0, 1.0])
    # right-handed and active: a quarter turn about z takes x to y
    np.testing.assert_allclose(
        axis_rotation(z, math.pi / 2) @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-15
    )
    np.testing.assert_allclose(
        axis_rotation(np.array([1.0, 0.0, 0.0]), math.pi / 2) @ [0.0, 1.0, 0.0],
        [0.0, 0.0, 1.0],
        atol=1e-15,
    )
    np.testing.assert_array_equal(axis_rotation(z, 0.0), np.eye(3))
    half = axis_rotation(z, math.pi)
    np.testing.assert_allclose(half, np.diag([-1.0, -1.0, 1.0]), atol=1e-15)


def test_axis_rotation_equals_the_former_helpers():
    """Both earlier copies of this helper give the same matrices as before."""

    def generator_copy(axis: np.ndarray, angle: float) -> np.ndarray:
        # the SYNTHETIC assembly generator's helper (radians), verbatim
        x, y, z = axis
        k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
        return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)

    def benchmark_copy(axis: np.ndarray, angle_deg: float) -> np.ndarray:
        # the retrieval benchmark's hinge helper (degrees), verbatim
        return Rotation.from_rotvec(np.radians(angle_deg) * axis).as_matrix()

    rng = np.random.default_rng(2)
    for axis in _unit_axes(100, seed=3):
        radians = float(rng.uniform(0.0, 2 * math.pi))
        # bit for bit: the generator's outputs must not move
        np.testing.assert_array_equal(
            axis_rotation(axis, radians), generator_copy(axis, radians)
        )
        degrees = float(rng.uniform(15.0, 40.0))
        np.testing.assert_allclose(
            axis_rotation(axis, np.radians(degrees)),
            benchmark_copy(axis, degrees),
            rtol=0,
            atol=1e-14,
        )


def test_random_rotation_is_proper(rng):
    for _ in range(10):
        r = random_rotation(rng)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)
