"""Where ``swan denoise`` may take the molecule to be: with ``own_pieces`` the
noisy map's own pieces at the contour count too (always, or where the prior's
map and the smoothed map missed most of the molecule), so a molecule too thin
for the smoothed map to reach the contour is not flattened away as solvent
(options, off by default: docs/prior.md)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ingest.canonical import volume_correlation
from ingest.mapio import DensityMap
from swan_index.generate import (
    DEFAULT_PRIOR,
    Generator,
    consistent_on_input_grid,
    data_molecule,
)
from swan_index.map_encoder import DEFAULT_CHECKPOINT


def _map(data: np.ndarray, voxel: float = 4.0) -> DensityMap:
    return DensityMap(
        data.astype(np.float32), (voxel,) * 3, (0.0, 0.0, 0.0), "simulated:test", ""
    )


def test_the_maps_own_pieces_without_dust():
    data = np.zeros((20, 20, 20), np.float32)
    data[4:12, 4:12, 4:12] = 1.0  # a 512-voxel piece
    data[15, 15, 15] = 1.0  # dust: under 1 % of the largest piece
    mask = data_molecule(_map(data), 0.5)
    assert mask.shape == data.shape and mask.dtype == bool
    expected = np.zeros_like(mask)
    expected[4:12, 4:12, 4:12] = True
    assert np.array_equal(mask, expected)
    only_dust = np.zeros_like(data)
    only_dust[3, 3, 3] = only_dust[10, 10, 10] = 1.0
    assert not data_molecule(_map(only_dust), 0.5).any()  # no piece: nothing


@pytest.fixture(scope="module")
def shipped() -> Generator:
    return Generator.load(DEFAULT_CHECKPOINT, DEFAULT_PRIOR)


def test_a_thin_molecule_missed_by_the_prior_is_kept(shipped):
    """SIMULATED: four rods a voxel thick in a 24^3 box of 4 Å voxels; smoothed by
    a voxel they peak at 0.29 of their height, below the contour at half of it.
    The prior's map is empty (it missed the molecule)."""
    rng = np.random.default_rng(3)
    clean = np.zeros((24, 24, 24), np.float32)
    clean[12, 6:18, 12] = clean[6:18, 12, 8] = clean[12, 12, 6:18] = 1.0
    clean[8, 8:16, 16] = 1.0
    clean = ndimage.gaussian_filter(clean, 0.5)
    contour = 0.5 * float(clean.max())
    assert ndimage.gaussian_filter(clean, 1.0).max() < contour
    for noise in (0.25, 0.5):
        sd = noise * clean.std()
        noisy = _map(clean + rng.normal(0, sd, clean.shape).astype(np.float32))
        cv = shipped.canonical(noisy, contour)
        missed = np.zeros_like(cv.values)
        kept = consistent_on_input_grid(missed, cv, noisy, own_pieces="missed")
        assert np.array_equal(
            kept, consistent_on_input_grid(missed, cv, noisy, own_pieces=True)
        )
        before = consistent_on_input_grid(missed, cv, noisy)  # the default
        r_noisy = volume_correlation(noisy.data, clean)
        r_kept = volume_correlation(kept, clean)
        assert r_kept > r_noisy + 0.02
        assert r_kept > volume_correlation(before, clean) + 0.02
        assert kept.shape == clean.shape and kept.dtype == np.float32


def test_the_pieces_change_nothing_where_the_molecule_was_found(shipped):
    """SIMULATED blobs, the prior's map the noisy map's own canonical volume:
    the molecule is found without the pieces, and ``"missed"`` gives the
    output without them, to the bit."""
    rng = np.random.default_rng(5)
    clean = np.zeros((32, 32, 32), np.float32)
    for z, y, x in rng.integers(10, 22, (12, 3)):
        clean[z, y, x] += 1.0
    clean = ndimage.gaussian_filter(clean, 1.5)
    contour = 0.3 * float(clean.max())
    noisy = _map(clean + rng.normal(0, 0.3 * clean.std(), clean.shape), voxel=2.0)
    cv = shipped.canonical(noisy, contour)
    when = consistent_on_input_grid(cv.values, cv, noisy, own_pieces="missed")
    assert np.array_equal(when, consistent_on_input_grid(cv.values, cv, noisy))
    assert not np.array_equal(
        when, consistent_on_input_grid(cv.values, cv, noisy, own_pieces=True)
    )
