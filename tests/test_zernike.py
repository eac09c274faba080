"""3D Zernike descriptor baseline (benchmarks/retrieval/zernike.py).

The module imports the compiled ``pyzernike`` package at import time: without it
this file fails to collect (an error, never a skip), because CI must install the
``zernike-descriptors`` dependency of the ``test`` extra.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.retrieval.zernike import (
    descriptor_labels,
    descriptor_length,
    voxelise,
    zernike_descriptor,
    zernike_distance,
)
from ingest import read_map, rotate_map
from ingest.canonical import choose_contour
from ingest.transform import random_rotation
from tests.conftest import MAPS

SAMPLES = ("emd_5625", "emd_6824", "emd_1832", "emd_21457_seg")


@pytest.fixture(scope="module")
def samples():
    """name -> (DensityMap, contour, descriptor) for a few shipped maps."""
    out = {}
    for name in SAMPLES:
        dmap = read_map(MAPS[name])
        level, _ = choose_contour(dmap)
        out[name] = (dmap, level, zernike_descriptor(dmap.data, level))
    return out


def _blobs(shape, voxel=(1.0, 1.0, 1.0), shift=(0.0, 0.0, 0.0)):
    """Two overlapping Gaussian blobs (no symmetry), sampled on any grid (x, y, z Å)."""
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]].astype(np.float64)
    x, y, z = x * voxel[0] + shift[0], y * voxel[1] + shift[1], z * voxel[2] + shift[2]
    body = ((x - 30) / 14) ** 2 + ((y - 28) / 9) ** 2 + ((z - 27) / 7) ** 2
    arm = ((x - 44) / 4) ** 2 + ((y - 40) / 4) ** 2 + ((z - 27) / 10) ** 2
    return (np.exp(-body) + np.exp(-arm)).astype(np.float32)


def test_shape_and_finite(samples):
    for _, _, desc in samples.values():
        assert desc.shape == (121,) and desc.dtype == np.float64
        assert np.all(np.isfinite(desc)) and np.all(desc >= 0) and desc.any()
    assert descriptor_length(20) == 121 == len(descriptor_labels(20))
    assert descriptor_labels(3) == [(0, 0), (1, 1), (2, 0), (2, 2), (3, 1), (3, 3)]
    low = zernike_descriptor(_blobs((40, 48, 64)), 0.5, order=8, grid=32)
    assert low.shape == (descriptor_length(8),) == (25,)


def test_solid_ball_known_answer():
    """Normalisation: twice the RMS radius is the unit ball, so a solid ball has
    radius 1 / (2 sqrt(3/5)) and |Omega_000| = radius^3; l > 0 moments vanish."""
    n = 48
    z, y, x = np.mgrid[:n, :n, :n]
    ball = (x - 20.3) ** 2 + (y - 25.1) ** 2 + (z - 22.7) ** 2 <= 15**2
    desc = zernike_descriptor(ball.astype(np.float32), 0.5)
    assert desc[0] == pytest.approx((1 / (2 * np.sqrt(0.6))) ** 3, rel=0.02)
    odd_l = [i for i, (_, ell) in enumerate(descriptor_labels()) if ell > 0]
    assert desc[odd_l].max() < 0.03 * desc[0]


def test_exact_quarter_turns_are_tight(samples):
    dmap, level, desc = samples["emd_5625"]
    turned = [
        np.rot90(dmap.data, 1, axes=(0, 1)),
        np.rot90(dmap.data, 1, axes=(1, 2)),
        dmap.data[::-1, :, ::-1],  # half turn about y
        np.ascontiguousarray(dmap.data.transpose(2, 0, 1)),  # cyclic axis swap
    ]
    scale = np.linalg.norm(desc)
    for volume in turned:
        assert zernike_distance(zernike_descriptor(volume, level), desc) < 1e-3 * scale


def test_random_rotation_keeps_a_map_nearest_itself(samples):
    dmap, level, desc = samples["emd_5625"]
    rotation = random_rotation(np.random.default_rng(7))
    turned = rotate_map(dmap, rotation, order=1)
    moved = zernike_descriptor(turned.data, level)
    own = zernike_distance(moved, desc)
    others = [
        zernike_distance(moved, d)
        for n, (_, _, d) in samples.items()
        if n != "emd_5625"
    ]
    assert own < 0.2 * min(others)


def test_padding_and_translation(samples):
    dmap, level, desc = samples["emd_21457_seg"]
    low = float(dmap.data.min())
    padded = np.pad(dmap.data, ((3, 11), (0, 7), (20, 1)), constant_values=low)
    assert zernike_distance(zernike_descriptor(padded, level), desc) < 1e-9
    # sub-voxel translation, and the same object on a coarser, anisotropic grid
    base = zernike_descriptor(_blobs((56, 64, 64)), 0.5)
    shifted = zernike_descriptor(_blobs((56, 64, 64), shift=(-3.37, 1.21, -2.6)), 0.5)
    aniso = zernike_descriptor(
        _blobs((52, 52, 80), voxel=(0.8, 1.3, 1.1)), 0.5, voxel_size=(0.8, 1.3, 1.1)
    )
    scale = np.linalg.norm(base)
    assert zernike_distance(shifted, base) < 0.03 * scale
    assert zernike_distance(aniso, base) < 0.03 * scale


def test_inputs_not_modified_and_cube_normalised(samples):
    dmap, level, _ = samples["emd_1832"]
    before = dmap.data.copy()
    cube = voxelise(dmap.data, level, grid=32)
    zernike_descriptor(dmap.data, level, grid=32)
    assert np.array_equal(dmap.data, before)
    assert cube.shape == (32, 32, 32) and set(np.unique(cube)) <= {0.0, 1.0}
    zyx = np.argwhere(cube > 0)
    assert np.allclose(zyx.mean(axis=0), 15.5, atol=0.5)  # centred
    assert np.linalg.norm(zyx - 15.5, axis=1).max() <= 15.0  # inside the ball


def test_distance():
    a, b = np.zeros(121), np.full(121, 0.5)
    assert zernike_distance(a, b) == pytest.approx(np.sqrt(121 * 0.25))
    assert zernike_distance(b, b) == 0.0
    batch = zernike_distance(np.stack([a, b, a]), b)
    assert np.allclose(batch, [5.5, 0.0, 5.5])
    with pytest.raises(ValueError, match="same order"):
        zernike_distance(np.zeros(121), np.zeros(25))


@pytest.mark.parametrize(
    ("volume", "contour", "message"),
    [
        (np.full((8, 8, 8), np.nan, np.float32), 0.5, "NaN/Inf.*nan_to_num"),
        (np.pad(np.ones((4, 4, 4)), 2) * np.inf, 0.5, "NaN/Inf"),
        (
            np.zeros((8, 8, 8)),
            0.5,
            "no voxel is at or above the contour.*below the maximum",
        ),
        (np.ones((8, 8, 8)), 0.5, "every voxel.*above the background"),
        (np.ones((8, 8)), 0.5, "3D array"),
        (np.ones((2, 8, 8, 8)), 0.5, "3D array"),
        (np.pad(np.ones((4, 4, 4)), 2), float("nan"), "contour must be finite"),
    ],
)
def test_errors_say_how_to_fix(volume, contour, message):
    with pytest.raises(ValueError, match=message):
        zernike_descriptor(volume, contour)


def test_bad_parameters():
    volume = np.pad(np.ones((4, 5, 6), np.float32), 3)
    with pytest.raises(ValueError, match="grid must be >= 16"):
        zernike_descriptor(volume, 0.5, grid=8)
    with pytest.raises(ValueError, match="order must be an integer"):
        zernike_descriptor(volume, 0.5, order=2.5)
    with pytest.raises(ValueError, match="voxel_size"):
        zernike_descriptor(volume, 0.5, voxel_size=(1.0, -1.0, 1.0))


def test_loading_the_package_leaves_subnormal_floats_alone():
    # pyzernike is built with -ffast-math, which turns on flush-to-zero for the
    # whole process when it loads; the module resets it (hypothesis needs it off)
    assert np.nextafter(0.0, 1.0) > 0.0
    assert np.float64(np.finfo(np.float64).tiny) / 2 > 0.0
