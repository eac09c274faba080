"""Turning small cubes: the compiled kernel against torch's grid_sample."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation

from swan_index.fit import rotation_grid
from swan_index.turn import grid_sample_turn, turn, window_sums


def test_reference_samples_at_affine_grid_voxel_centres():
    mats = torch.from_numpy(rotation_grid(7))
    theta = torch.cat([mats, torch.zeros(7, 3, 1)], dim=2)
    rng = np.random.default_rng(0)
    for g in (4, 5, 16):
        vol = torch.from_numpy(rng.random((g, g, g), np.float32))
        grid = F.affine_grid(theta, [7, 1, g, g, g], align_corners=False)
        src = vol.reshape(1, 1, g, g, g).expand(7, 1, g, g, g)
        want = F.grid_sample(src, grid, align_corners=False).flatten(1)
        got = grid_sample_turn(vol, mats)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("g", [3, 8, 16])
def test_turn_equals_grid_sample(g):
    rng = np.random.default_rng(g)
    vol = rng.random((g, g, g), np.float32)
    vol[0] = 0  # an empty face, as a map inside its box has
    mats = np.concatenate(
        [
            rotation_grid(300),
            Rotation.random(200, random_state=g).as_matrix().astype(np.float32),
            np.eye(3, dtype=np.float32)[None],
        ]
    )
    want = grid_sample_turn(torch.from_numpy(vol), torch.from_numpy(mats))
    rows, mean, norm = turn(vol, mats)
    torch.testing.assert_close(rows, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(mean, want.mean(dim=1, keepdim=True), atol=1e-6, rtol=0)
    centred = want - want.mean(dim=1, keepdim=True)
    torch.testing.assert_close(
        norm, centred.norm(dim=1, keepdim=True), atol=1e-5, rtol=1e-5
    )
    # unit rows: zero mean, norm one, and the volumes back from mean and norm
    unit, mean_u, norm_u = turn(vol, mats, unit=True)
    torch.testing.assert_close(unit, centred / norm, atol=1e-5, rtol=0)
    torch.testing.assert_close(unit * norm_u + mean_u, want, atol=1e-5, rtol=0)
    # the identity leaves the volume as it is
    np.testing.assert_allclose(rows[-1].numpy(), vol.ravel(), atol=1e-6)


def test_turn_of_an_empty_cube_and_no_rotations():
    rows, mean, norm = turn(np.zeros((4, 4, 4), np.float32), rotation_grid(3), True)
    assert torch.all(rows == 0) and torch.all(mean == 0)
    assert torch.all(norm == 1e-12)
    rows, mean, norm = turn(np.ones((4, 4, 4), np.float32), np.zeros((0, 3, 3)))
    assert rows.shape == (0, 64) and mean.shape == (0, 1)


def test_turn_checks_its_input():
    with pytest.raises(ValueError, match="cube"):
        turn(np.zeros((4, 4, 5), np.float32), rotation_grid(2))
    with pytest.raises(ValueError, match=r"\[R, 3, 3\]"):
        turn(np.zeros((4, 4, 4), np.float32), np.zeros((2, 3)))


@pytest.mark.parametrize("shift", [1, 2])
def test_window_sums_are_sums_over_the_boxes_left_in_place(shift):
    g = 6
    rng = np.random.default_rng(shift)
    x = rng.random((4, g, g, g), np.float32)
    total, square = window_sums(x, shift)
    side = 2 * shift + 1
    assert total.shape == square.shape == (4, side**3)
    i = 0
    for a, b, c in itertools.product(range(side), repeat=3):
        z, y, w = (slice(max(shift - t, 0), min(g + shift - t, g)) for t in (a, b, c))
        box = x[:, z, y, w].astype(np.float64).reshape(4, -1)
        np.testing.assert_allclose(total[:, i], box.sum(1), rtol=1e-12)
        np.testing.assert_allclose(square[:, i], (box * box).sum(1), rtol=1e-12)
        i += 1
