"""Make a simulated map look more like an experimental one (training data).

Maps simulated from models or synthetic assemblies are smooth, noise-free and
isotropic; EMDB maps are not. :func:`make_realistic` applies, each with its own
chance, what the real maps of the training data show and these lack:

* **B-factor** blurring or sharpening (``exp(-B s^2 / 4)`` on the amplitudes,
  B from -80 to 150 Å^2): deposited maps are often sharpened, some blurred;
* **anisotropic resolution**: an extra Gaussian blur along one axis (preferred
  orientations smear a map along one direction);
* **solvent noise**: Gaussian noise low-passed to a correlation length of one to
  two voxels (the noise of a reconstruction is not white), 5 to 30 % of the
  spread of the density inside the contour;
* a **soft mask**: the noise kept only within a few voxels of the molecule and
  flattened beyond, as in masked (post-processed) depositions.

The contour moves with the density (blurring and sharpening keep the volume it
encloses; noise leaves it where it was). Every change is named in the returned
dict, which the dataset writes to ``items.csv``: the items stay labelled
simulated or synthetic. Written here because no library models these map
artefacts; the filters are SciPy's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from scipy import ndimage

from ingest.contour import contour_for_volume
from ingest.mapio import DensityMap

#: Chance of each augmentation, given that an item is made realistic.
CHANCES = {"bfactor": 0.6, "anisotropy": 0.3, "noise": 0.7, "mask": 0.5}


def make_realistic(
    dmap: DensityMap, contour: float, rng: np.random.Generator
) -> tuple[DensityMap, float, dict[str, Any]]:
    """``dmap`` with some of the augmentations above (drawn from ``rng``).

    Args:
        dmap: a simulated map.
        contour: its contour level.
        rng: random generator.

    Returns:
        ``(map, contour, applied)``: the new map, its contour, and what was
        applied with its parameters (empty when nothing was drawn).
    """
    data = np.asarray(dmap.data, np.float64)
    inside = data >= contour
    volume = float(inside.sum())
    spread = float(data[inside].std()) if inside.any() else float(data.std())
    applied: dict[str, Any] = {}
    if rng.random() < CHANCES["bfactor"]:
        b = float(rng.uniform(-80.0, 150.0))
        data = _bfactor(data, dmap.voxel_size, b)
        applied["bfactor"] = round(b, 1)
    if rng.random() < CHANCES["anisotropy"]:
        axis = int(rng.integers(3))
        sigma = float(rng.uniform(0.5, 2.0))
        data = ndimage.gaussian_filter1d(data, sigma, axis=axis, mode="nearest")
        applied["anisotropy"] = {"axis": "zyx"[axis], "sigma_voxels": round(sigma, 2)}
    if applied and volume > 0:  # the same enclosed volume
        contour = contour_for_volume(data, volume, 1.0)
        spread = float(data[data >= contour].std())
    if rng.random() < CHANCES["noise"]:
        level = float(rng.uniform(0.05, 0.3))
        length = float(rng.uniform(1.0, 2.0))
        noise = ndimage.gaussian_filter(rng.standard_normal(data.shape), length)
        noise *= level * spread / max(float(noise.std()), 1e-12)
        if rng.random() < CHANCES["mask"]:
            margin = int(rng.integers(3, 7))
            near = ndimage.binary_dilation(data >= contour, iterations=margin)
            noise *= ndimage.gaussian_filter(near.astype(np.float64), 1.0)
            applied["mask_margin_voxels"] = margin
        data = data + noise
        applied["noise"] = {"level": round(level, 3), "length": round(length, 2)}
    header = {**dmap.header, "recommended_contour": contour}
    out = replace(dmap, data=data.astype(np.float32), header=header)
    return out, float(contour), applied


def _bfactor(
    data: np.ndarray, voxel_size: tuple[float, float, float], b: float
) -> np.ndarray:
    """``data`` with its Fourier amplitudes times ``exp(-b s^2 / 4)`` (``s`` in
    1/Å; negative ``b`` sharpens)."""
    fz = np.fft.fftfreq(data.shape[0], d=voxel_size[2])[:, None, None]
    fy = np.fft.fftfreq(data.shape[1], d=voxel_size[1])[None, :, None]
    fx = np.fft.rfftfreq(data.shape[2], d=voxel_size[0])[None, None, :]
    s2 = fz**2 + fy**2 + fx**2
    spectrum = np.fft.rfftn(data)
    spectrum *= np.exp(-b * s2 / 4.0)
    return np.fft.irfftn(spectrum, s=data.shape, axes=(0, 1, 2))
