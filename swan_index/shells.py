"""Fourier shells of a map: the FSC between two maps, and a denoised map made
consistent with the noisy map it came from.

No well-kept FSC implementation is importable here (the cryo-EM packages that
have one, cryoDRGN or EMDA, bring their own large dependency trees for one
function), so :func:`fsc` is the textbook shell average, a few lines of numpy.

**Data consistency** (:func:`consistent_with_data`): a generative prior's
denoised map ``p`` is a guess; the noisy map ``x`` is the measurement. Shell by
shell in Fourier space, the output is ``p + W (x - p)``, a Wiener filter of the
data's disagreement with the prior: ``W = max(R - N, 0) / R``, where ``R`` is
the power of ``x - p`` in the shell and ``N`` the noise power there. Where the
data are clean (N << R) the output is the data; where the noise swamps what
the data add to ``p``, it is ``p``. ``N`` comes from the map itself, never from
a clean copy: the spectrum of its solvent, the voxels outside the molecule
dilated by a margin (zero-mean there, over the fraction of the box they fill),
taken as white at its level in the outer half of the shells
(:func:`noise_spectrum`).

The signal is where the molecule is, the noise everywhere: over the whole box
a shell's signal-to-noise ratio is diluted by the solvent, which would give the
data too little weight where the molecule is. So the filter is applied in two
parts of the box: inside a soft mask around the molecule (dilated by
:data:`MASK_MARGIN` voxels, softened by a Gaussian of :data:`MASK_SOFTNESS`
voxels) ``W`` is measured on the masked disagreement, with the noise power
scaled by the mask's mean square; outside it, on the whole box's, as before.
The two parts add up to the whole disagreement, so density outside the mask
(weak density below the contour of a real map) still comes from the data where
the box-wide ratio supports it.

:func:`restore_with_data` adds what the prior knows in real space, where the
molecule is: the consistent map is flattened to the solvent's mean farther than
``solvent_margin`` voxels from the molecule (solvent flattening, as density
modification does), and the flattened map is made consistent with the data
again, a few rounds. The margins and the rounds were chosen on training-split
maps: SIMULATED maps of training-split molecules and real training-split maps
that the benchmark does not report (``python -m benchmarks.bench_denoise
--training-split``), never on the maps the benchmark reports.
"""

from __future__ import annotations

import numpy as np
from scipy import fft, ndimage

#: Voxels between the molecule and the solvent whose spectrum is the noise's.
NOISE_MARGIN = 4
#: Voxels of the molecule's dilation kept when the solvent is flattened.
SOLVENT_MARGIN = 4
#: Rounds of flattening the solvent and making the map consistent again.
ROUNDS = 2
#: Voxels the molecule is dilated by for the mask inside which the data's
#: weight is measured (:func:`consistent_with_data`)...
MASK_MARGIN = 1
#: ...and the sigma (voxels) of the Gaussian that softens that mask's edge.
#: Both chosen on training-split maps (``python -m benchmarks.bench_denoise
#: --training-split --strength 0.5``, the best mean Pearson over the six
#: noise levels and kinds among margins 0-3 and softness 1-2), never on the
#: maps the benchmark reports.
MASK_SOFTNESS = 1.0
#: How the data's weight outside the molecule's mask is measured
#: (:func:`consistent_with_data`): ``"box"``, on the whole box's disagreement;
#: ``"own"``, on the disagreement outside the mask alone (its own
#: signal-to-noise ratio, as inside).
OUTSIDE_WEIGHT = "box"
OUTSIDE_WEIGHTS = ("box", "own")
#: Fewer solvent voxels than this (or than 5 % of the box): too few for the
#: solvent's spectrum; the noise is taken as white at the solvent's variance
#: instead...
MIN_SOLVENT_VOXELS = 1000
#: ...and with fewer than this, from the outermost Fourier shell (a small box
#: whose molecule leaves no solvent). Why the variance first: in a small box of
#: large voxels the density reaches the outermost shell, whose power then
#: misjudges the noise (by 0.27 to 2.8 times on a 20^3 map with 350-390
#: solvent voxels); chosen on training-split maps resampled into small boxes
#: (``docs/prior.md``).
FEW_SOLVENT_VOXELS = 200


def shell_index(shape: tuple[int, ...], voxel_size: tuple[float, ...]) -> np.ndarray:
    """The Fourier shell of every ``rfftn`` coefficient of a map of ``shape``
    ``[z, y, x]`` with ``voxel_size`` (Å, x y z): shells are
    ``1 / (largest box side in Å)`` wide, 0 is the origin.

    Returns:
        int32 array of ``rfftn``'s output shape.
    """
    spacing = np.asarray(voxel_size, float)[::-1]  # z, y, x
    pairs = zip(shape[:-1], spacing[:-1], strict=True)
    freqs = [np.fft.fftfreq(n, d) for n, d in pairs]
    freqs.append(np.fft.rfftfreq(shape[-1], spacing[-1]))
    grids = np.meshgrid(*freqs, indexing="ij", sparse=True)
    radius = np.sqrt(sum(g**2 for g in grids))
    width = 1.0 / float(np.max(np.asarray(shape) * spacing))
    return np.rint(radius / width).astype(np.int32)


def _shell_mean(values: np.ndarray, shells: np.ndarray, count: int) -> np.ndarray:
    total = np.bincount(shells.ravel(), values.ravel(), minlength=count)
    n = np.bincount(shells.ravel(), minlength=count)
    return total / np.maximum(n, 1)


def fsc(
    a: np.ndarray, b: np.ndarray, voxel_size: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Fourier shell correlation of two maps on one grid.

    Args:
        a, b: maps ``[z, y, x]`` of one shape.
        voxel_size: Å per voxel (x, y, z).

    Returns:
        ``(frequency, fsc)``: each shell's spatial frequency (1/Å) and correlation,
        from the origin to the Nyquist frequency of the coarsest axis.
    """
    if a.shape != b.shape:
        raise ValueError(f"maps of shapes {a.shape} and {b.shape}: use one grid")
    fa, fb = fft.rfftn(a), fft.rfftn(b)
    shells = shell_index(a.shape, voxel_size)
    spacing = np.asarray(voxel_size, float)
    width = 1.0 / float(np.max(np.asarray(a.shape) * spacing[::-1]))
    last = int(np.floor(0.5 / float(spacing.max()) / width))
    keep = shells <= last
    n = last + 1
    cross = np.bincount(shells[keep], (fa * fb.conj()).real[keep], minlength=n)
    pa = np.bincount(shells[keep], (np.abs(fa) ** 2)[keep], minlength=n)
    pb = np.bincount(shells[keep], (np.abs(fb) ** 2)[keep], minlength=n)
    curve = cross / np.sqrt(np.maximum(pa * pb, 1e-30))
    return np.arange(n) * width, curve


def fsc_resolution(
    a: np.ndarray,
    b: np.ndarray,
    voxel_size: tuple[float, float, float],
    threshold: float = 0.5,
) -> float:
    """The resolution (Å) at which the FSC of ``a`` and ``b`` first falls below
    ``threshold`` (linear between shells, from shell 1: the origin is
    skipped); the box's size when it is below at shell 1 already, the Nyquist
    resolution when it never falls (smaller is better)."""
    freq, curve = fsc(a, b, voxel_size)
    if curve[1] < threshold:  # below already at the first shell past the origin
        return float(1.0 / freq[1])
    for i in range(2, len(curve)):
        if curve[i] < threshold:
            lo, hi = curve[i - 1], curve[i]
            f = freq[i - 1] + (lo - threshold) / (lo - hi) * (freq[i] - freq[i - 1])
            return float(1.0 / f)
    return float(1.0 / freq[-1])


def solvent_mask(molecule: np.ndarray, margin: int) -> np.ndarray:
    """The voxels farther than ``margin`` voxels from ``molecule`` (bool)."""
    if not molecule.any():
        return np.ones_like(molecule, bool)
    near = ndimage.binary_dilation(molecule, iterations=margin) if margin else molecule
    return ~near


def noise_spectrum(
    x: np.ndarray, solvent: np.ndarray, shells: np.ndarray, count: int
) -> np.ndarray:
    """Noise power per shell of ``x`` (``|rfftn|^2`` units), taken as white: the
    median, over the outer half of the shells, of the spectrum of ``x`` minus
    its solvent mean there (zero elsewhere) over the solvent's fraction of the
    box. Only the outer half, because a real map's solvent holds weak density
    below the contour (detergent, flexible parts) whose low-frequency power is
    not noise. Too little solvent for its spectrum
    (:data:`MIN_SOLVENT_VOXELS`): white at the solvent's variance; too little
    for that too (:data:`FEW_SOLVENT_VOXELS`): the mean power of ``x``'s
    outermost shell."""
    n_solvent = int(solvent.sum())
    if n_solvent < max(MIN_SOLVENT_VOXELS, 0.05 * x.size):
        if n_solvent >= FEW_SOLVENT_VOXELS:  # |rfftn|^2 of white noise: size var
            variance = float(np.var(x[solvent], dtype=np.float64))
            return np.full(count, variance * x.size)
        power = np.abs(fft.rfftn(x)) ** 2
        outer = _shell_mean(power, shells, count)[-1]
        return np.full(count, outer)
    inside = np.where(solvent, x - x[solvent].mean(), 0.0)
    power = np.abs(fft.rfftn(inside)) ** 2
    spectrum = _shell_mean(power, shells, count) / (n_solvent / x.size)
    return np.full(count, float(np.median(spectrum[count // 2 :])))


def consistent_with_data(
    x: np.ndarray,
    p: np.ndarray,
    voxel_size: tuple[float, float, float],
    molecule: np.ndarray,
    margin: int = NOISE_MARGIN,
    outside: str = OUTSIDE_WEIGHT,
) -> np.ndarray:
    """The denoised map ``p`` made consistent with the noisy map ``x`` it came
    from (see the module docstring).

    Args:
        x: the noisy map ``[z, y, x]``.
        p: the denoised map on ``x``'s grid, in its units.
        voxel_size: Å per voxel (x, y, z).
        molecule: bool ``[z, y, x]``, where the molecule is (e.g. ``p`` at the
            contour); the noise is measured outside it, ``margin`` voxels away.
        margin: voxels between the molecule and the solvent.
        outside: :data:`OUTSIDE_WEIGHT`'s choices.

    Returns:
        float32 map on ``x``'s grid.
    """
    if outside not in OUTSIDE_WEIGHTS:
        raise ValueError(f"outside={outside!r}: one of {', '.join(OUTSIDE_WEIGHTS)}")
    if x.shape != p.shape or x.shape != molecule.shape:
        raise ValueError(f"maps of shapes {x.shape}, {p.shape}, {molecule.shape}")
    x = np.asarray(x, np.float32)
    p = np.asarray(p, np.float32)
    shells = shell_index(x.shape, voxel_size)
    count = int(shells.max()) + 1
    noise = noise_spectrum(x, solvent_mask(molecule, margin), shells, count)
    mask = molecule_mask(molecule)
    difference = x - p
    everywhere = fft.rfftn(difference)  # the whole disagreement
    difference *= mask
    inside = fft.rfftn(difference)  # the disagreement inside the mask
    del difference
    weight_in = wiener_weight(inside, noise * float(np.mean(mask**2)), shells, count)
    if outside == "own":  # outside the mask: its own disagreement and noise
        rest = np.mean((1.0 - mask) ** 2)
        weight_all = wiener_weight(everywhere - inside, noise * rest, shells, count)
    else:
        weight_all = wiener_weight(everywhere, noise, shells, count)
    # p + W_in (inside) + W_all (everywhere - inside), in place: one map's
    # spectrum at a time beside the two above
    everywhere *= weight_all.astype(np.float32)[shells]
    inside *= (weight_in - weight_all).astype(np.float32)[shells]
    everywhere += inside
    del inside
    everywhere += fft.rfftn(p)
    return fft.irfftn(everywhere, s=x.shape).astype(np.float32)


def molecule_mask(molecule: np.ndarray) -> np.ndarray:
    """A soft mask (float32, 0 to 1) around ``molecule``: dilated by
    :data:`MASK_MARGIN` voxels, its edge softened by a Gaussian of
    :data:`MASK_SOFTNESS` voxels."""
    near = molecule
    if MASK_MARGIN and molecule.any():
        near = ndimage.binary_dilation(molecule, iterations=MASK_MARGIN)
    soft = ndimage.gaussian_filter(near.astype(np.float32), MASK_SOFTNESS)
    return np.clip(soft, 0.0, 1.0)


def wiener_weight(
    spectrum: np.ndarray, noise: np.ndarray, shells: np.ndarray, count: int
) -> np.ndarray:
    """Per shell ``max(R - N, 0) / R``: ``R`` the mean power of ``spectrum`` in
    the shell, ``N`` the noise power there."""
    power = _shell_mean(np.abs(spectrum) ** 2, shells, count)
    return np.clip((power - noise) / np.maximum(power, 1e-30), 0.0, 1.0)


def restore_with_data(
    x: np.ndarray,
    p: np.ndarray,
    voxel_size: tuple[float, float, float],
    molecule: np.ndarray,
    solvent_margin: int = SOLVENT_MARGIN,
    rounds: int = ROUNDS,
    outside: str = OUTSIDE_WEIGHT,
) -> np.ndarray:
    """``p`` made consistent with ``x``, then ``rounds`` times: its solvent
    flattened and the result made consistent with ``x`` again (see the module
    docstring).

    Args:
        x, p, voxel_size, molecule, outside: as :func:`consistent_with_data`.
        solvent_margin: voxels around ``molecule`` that are not flattened.
        rounds: how many times to flatten and make consistent (0: once
            consistent, no flattening).

    Returns:
        float32 map on ``x``'s grid.
    """
    out = consistent_with_data(x, p, voxel_size, molecule, outside=outside)
    solvent = solvent_mask(molecule, solvent_margin)
    if solvent.all() or not solvent.any():
        return out
    level = float(np.mean(x[solvent]))
    for _ in range(rounds):
        flat = np.where(solvent, level, out)
        out = consistent_with_data(x, flat, voxel_size, molecule, outside=outside)
    return out
