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


def test_noise_in_a_small_box_comes_from_its_few_solvent_voxels(rng):
    # 20^3 voxels, a molecule with detail up to the outermost shell filling
    # most of the box: a few hundred solvent voxels, too few for their
    # spectrum; the outermost shell holds the molecule's power too
    side, sigma = 20, 0.5
    molecule = np.zeros((side, side, side), bool)
    molecule[1:19, 1:19, 1:18] = True  # 620 voxels left beyond one voxel
    detail = rng.choice([0.0, 4.0], molecule.shape)  # power up to Nyquist
    x = (rng.normal(0, sigma, molecule.shape) + detail * molecule).astype(np.float32)
    shells = shell_index(x.shape, VOXEL)
    count = int(shells.max()) + 1
    solvent = solvent_mask(molecule, 1)
    assert 200 <= solvent.sum() < 1000
    measured = noise_spectrum(x, solvent, shells, count)
    expected = sigma**2 * x.size
    assert measured[0] == pytest.approx(expected, rel=0.2)
    # no solvent at all: the outermost shell, the molecule's power in it
    none = noise_spectrum(x, np.zeros_like(solvent), shells, count)
    assert none[0] > 3 * expected


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


def _box_wide(x, p, molecule):  # noqa: ANN001, ANN202
    """The data's weight measured over the whole box (the rule before the
    mask): the reference the masked rule must beat."""
    from scipy import fft

    shells = shell_index(x.shape, VOXEL)
    count = int(shells.max()) + 1
    noise = noise_spectrum(x, solvent_mask(molecule, 4), shells, count)
    fp = fft.rfftn(p)
    residual = fft.rfftn(x) - fp
    power = np.bincount(
        shells.ravel(), (np.abs(residual) ** 2).ravel(), minlength=count
    ) / np.maximum(np.bincount(shells.ravel(), minlength=count), 1)
    weight = np.clip((power - noise) / np.maximum(power, 1e-30), 0, 1)
    return fft.irfftn(fp + weight[shells] * residual, s=x.shape)


def test_the_data_weigh_more_where_the_molecule_is(rng):
    """A small molecule in a large box: over the whole box the solvent dilutes
    the data's signal-to-noise ratio; measured around the molecule, the data
    keep more of its detail."""
    clean = np.pad(_blobs(rng, 24), 20)  # 64^3, the molecule in the middle
    noisy = clean + rng.normal(0, clean.std(), clean.shape).astype(np.float32)
    guess = ndimage.gaussian_filter(clean, 2.0)  # right place, no detail
    molecule = guess > 0.05 * guess.max()
    masked = consistent_with_data(noisy, guess, VOXEL, molecule)
    box_wide = _box_wide(noisy, guess, molecule)
    inside = ndimage.binary_dilation(molecule, iterations=2)
    r_masked = volume_correlation(masked[inside], clean[inside])
    r_box = volume_correlation(box_wide[inside], clean[inside])
    assert 1 - r_masked < 0.5 * (1 - r_box), (r_masked, r_box)  # half the error


def test_density_outside_the_mask_still_comes_from_the_data(rng):
    """Weak density far from the molecule (a real map's detergent, a
    neighbour) is data too: outside the mask the box-wide weight keeps it."""
    clean = np.pad(_blobs(rng, 24), 20)
    far = np.zeros_like(clean)
    far[5:15, 5:15, 5:15] = 0.3 * clean.max()  # far outside the molecule
    truth = clean + ndimage.gaussian_filter(far, 1.0)
    noisy = truth + rng.normal(0, 0.05 * truth.std(), truth.shape).astype(np.float32)
    guess = ndimage.gaussian_filter(clean, 2.0)  # knows nothing of it
    molecule = guess > 0.05 * guess.max()
    out = consistent_with_data(noisy, guess, VOXEL, molecule)
    region = far > 0
    assert float(out[region].mean()) > 0.8 * float(truth[region].mean())


def test_outside_weighed_on_its_own_passes_less_noise_into_the_solvent(rng):
    """A guess wrong inside the molecule makes the box-wide disagreement
    large: weighed over the whole box, the data's noise then passes into the
    solvent too; weighed on the outside alone, the solvent stays quieter."""
    clean = np.pad(_blobs(rng, 24), 20)
    noisy = clean + rng.normal(0, clean.std(), clean.shape).astype(np.float32)
    guess = 0.5 * ndimage.gaussian_filter(clean, 2.0)  # too weak inside
    molecule = guess > 0.05 * guess.max()
    solvent = solvent_mask(molecule, 6)
    box = consistent_with_data(noisy, guess, VOXEL, molecule, outside="box")
    own = consistent_with_data(noisy, guess, VOXEL, molecule, outside="own")
    assert own[solvent].std() < 0.7 * box[solvent].std(), (
        own[solvent].std(),
        box[solvent].std(),
    )
    # inside, the same measure as before: its detail kept either way
    inside = ndimage.binary_dilation(molecule, iterations=2)
    r_own = volume_correlation(own[inside], clean[inside])
    r_box = volume_correlation(box[inside], clean[inside])
    assert abs(r_own - r_box) < 0.02, (r_own, r_box)
    with pytest.raises(ValueError, match="outside='nowhere'"):
        consistent_with_data(noisy, guess, VOXEL, molecule, outside="nowhere")
