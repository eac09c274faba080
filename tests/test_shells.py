"""Fourier shells: the FSC, the noise measured in a map's solvent, and a denoised
map made consistent with the noisy map it came from."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ingest.canonical import volume_correlation
from swan_index.shells import (
    consistent_with_data,
    fsc,
    fsc_resolution,
    noise_spectrum,
    restore_with_data,
    shell_index,
    solvent_mask,
)

VOXEL = (2.0, 2.0, 2.0)


def _blobs(rng: np.random.Generator, side: int = 40) -> np.ndarray:
    """A SIMULATED molecule: Gaussian blobs in the middle of an empty box."""
    vol = np.zeros((side, side, side), np.float32)
    for _ in range(30):
        z, y, x = rng.integers(side // 3, 2 * side // 3, 3)
        vol[z, y, x] += rng.uniform(0.5, 1.5)
    return ndimage.gaussian_filter(vol, 1.5).astype(np.float32)


def test_fsc_of_a_map_with_itself_is_one_to_nyquist(rng):
    a = _blobs(rng)
    freq, curve = fsc(a, a, VOXEL)
    assert np.allclose(curve[1:], 1.0)
    assert freq[-1] == pytest.approx(0.25)  # Nyquist of 2 Å voxels
    assert fsc_resolution(a, a, VOXEL) == pytest.approx(4.0)


def test_fsc_resolution_worsens_with_noise(rng):
    a = _blobs(rng)
    sd = a.std()
    res = [
        fsc_resolution(a + rng.normal(0, level * sd, a.shape), a, VOXEL)
        for level in (0.1, 1.0, 4.0)
    ]
    assert res[0] < res[1] < res[2]
    assert fsc_resolution(rng.normal(size=a.shape), a, VOXEL) > 20


def test_fsc_refuses_two_grids():
    with pytest.raises(ValueError, match="one grid"):
        fsc(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), VOXEL)


def test_noise_spectrum_from_the_solvent_matches_white_noise(rng):
    side, sigma = 40, 0.7
    noise = rng.normal(0, sigma, (side, side, side)).astype(np.float32)
    molecule = np.zeros(noise.shape, bool)
    molecule[12:28, 12:28, 12:28] = True
    x = noise + 5.0 * molecule  # a molecule the solvent must not see
    shells = shell_index(x.shape, VOXEL)
    count = int(shells.max()) + 1
    measured = noise_spectrum(x, solvent_mask(molecule, 2), shells, count)
    expected = sigma**2 * x.size  # |rfftn|^2 of white noise
    assert np.median(measured[2:]) == pytest.approx(expected, rel=0.15)


def test_a_clean_map_is_kept_as_it_is(rng):
    clean = _blobs(rng)
    wrong = np.roll(clean, 6, axis=0)  # a denoised guess that is off
    out = consistent_with_data(clean, wrong, VOXEL, clean > 0.01)
    assert volume_correlation(out, clean) > 0.999


def test_consistency_beats_both_the_noisy_map_and_the_guess(rng):
    clean = _blobs(rng)
    noisy = clean + rng.normal(0, clean.std(), clean.shape).astype(np.float32)
    guess = ndimage.gaussian_filter(np.roll(clean, 2, axis=1), 2.0)  # off, blurred
    out = restore_with_data(noisy, guess, VOXEL, guess > 0.05 * guess.max())
    r_out = volume_correlation(out, clean)
    assert r_out > volume_correlation(noisy, clean) + 0.1
    assert r_out > volume_correlation(guess, clean)
    assert out.shape == noisy.shape and out.dtype == np.float32


def test_no_solvent_falls_back_to_the_outer_shell(rng):
    clean = _blobs(rng)
    noisy = clean + rng.normal(0, clean.std(), clean.shape).astype(np.float32)
    full = np.ones(clean.shape, bool)  # the molecule fills the box
    out = restore_with_data(noisy, np.zeros_like(noisy), VOXEL, full)
    assert volume_correlation(out, clean) > volume_correlation(noisy, clean)
