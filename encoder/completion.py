"""Partial/whole pairs for the completion prior (SIMULATED partial maps).

A map with parts missing is canonicalized in its own frame: centred on what is
left, turned to its principal axes and scaled by its own size, so the molecule
it belongs to sits off-centre, turned and rescaled there. The completion prior
(:mod:`encoder.prior`, ``task="completion"``) learns the whole molecule's latent
*in the partial map's frame* given the partial map's latent; the completed
volume is then canonicalized again (:func:`swan_index.generate.completion_of`)
so that it is searched in its own frame, as a stored entry is.

Pairs are made from the canonical volumes of a dataset's training split (never
from held-out molecules): a share of 10-35 % of the density above the contour
(the retrieval benchmark's incomplete queries leave out 10-35 % of the
residues) is cut away, either everything beyond a plane of random direction
(a terminal domain or a chain at one end) or everything within a ball around a
random point of the molecule (an internal stretch or a subunit). The partial
volume is canonicalized as a map is (:func:`ingest.canonical.canonicalize`,
contour 0.5) and the whole volume resampled into that frame with the same
normalisation. Every partial map made here is simulated.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ingest.canonical import SURFACE_LEVEL, CanonicalVolume, canonicalize
from ingest.mapio import DensityMap

#: The share of the density above the contour a partial map loses.
MISSING = (0.10, 0.35)
#: Cut kinds (drawn equally often).
CUTS = ("plane", "ball")
#: The level a canonical volume is canonicalized at again: halfway between the
#: empty voxels (0) and the surface (0.5), where the binary surface lies; at 0.5
#: itself, trilinear resampling would erode every surface voxel away.
RECONTOUR = 0.25


def cut_partial(
    volume: np.ndarray, rng: np.random.Generator, share: float | None = None
) -> tuple[np.ndarray, str, float]:
    """``volume`` (canonical values, 0 outside) with a share of its density cut.

    Returns:
        The partial volume (float32, removed voxels 0), the cut's kind and the
        share of the density above the contour actually removed.
    """
    v = np.asarray(volume, np.float32)
    inside = v >= SURFACE_LEVEL
    pos = np.argwhere(inside).astype(np.float64)
    if len(pos) < 8:
        raise ValueError("a volume with almost nothing inside cannot be cut")
    weight = v[inside].astype(np.float64)
    share = float(rng.uniform(*MISSING)) if share is None else share
    kind = CUTS[int(rng.integers(len(CUTS)))]
    if kind == "plane":
        normal = rng.normal(size=3)
        score = pos @ (normal / np.linalg.norm(normal))
    else:
        centre = pos[rng.choice(len(pos), p=weight / weight.sum())]
        score = -np.linalg.norm(pos - centre, axis=1)  # nearest first
    order = np.argsort(-score)
    cum = np.cumsum(weight[order]) / weight.sum()
    n_cut = int(np.searchsorted(cum, share)) + 1
    gone = pos[order[:n_cut]].astype(int)
    out = v.copy()
    out[gone[:, 0], gone[:, 1], gone[:, 2]] = 0.0
    return out, kind, float(weight[order[:n_cut]].sum() / weight.sum())


def as_map(volume: np.ndarray, label: str = "partial") -> DensityMap:
    """A canonical volume as a map of 1 Å voxels at the origin (SIMULATED)."""
    return DensityMap(
        data=np.ascontiguousarray(volume, np.float32),
        voxel_size=(1.0, 1.0, 1.0),
        origin=(0.0, 0.0, 0.0),
        path=f"simulated:{label}",
        sha256="",
        simulated=True,
    )


def render_in_frame(volume: np.ndarray, cv: CanonicalVolume) -> np.ndarray:
    """``volume`` (a map of 1 Å voxels at the origin) resampled into
    ``cv``'s canonical frame with ``cv``'s normalisation (0 below the contour)."""
    g = cv.grid
    idx = np.stack(np.meshgrid(*(np.arange(g),) * 3, indexing="ij"), axis=-1)
    xyz = cv.index_to_world(idx.reshape(-1, 3))
    coords = xyz[:, ::-1].T  # map index (z, y, x) = physical (x, y, z) reversed
    # Box-average first when the partial frame's voxels are larger (as the
    # canonical transform does against aliasing).
    src = np.asarray(volume, np.float32)
    if cv.angstrom_per_voxel > 1.5:
        src = ndimage.uniform_filter(src, size=int(round(cv.angstrom_per_voxel)))
    d = ndimage.map_coordinates(src, coords, order=1, cval=0.0).reshape(g, g, g)
    values = 0.5 + 0.5 * np.clip((d - cv.contour) / cv.density_scale, 0.0, 1.0)
    return np.where(d >= cv.contour, values, 0.0).astype(np.float32)


def completion_pair(
    volume: np.ndarray, rng: np.random.Generator, grid: int | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One SIMULATED training pair from a whole canonical volume.

    Returns:
        ``(partial, whole)``: the partial map canonicalized in its own frame, and
        the whole volume in that frame (float32 ``[G, G, G]`` each), and what was
        cut (``kind``, ``share``).
    """
    v = np.asarray(volume, np.float32)
    partial, kind, share = cut_partial(v, rng)
    cv = canonicalize(as_map(partial), RECONTOUR, grid or v.shape[0])
    whole = render_in_frame(v, cv)
    return cv.values, whole, {"kind": kind, "share": round(share, 4)}


__all__ = [
    "CUTS",
    "MISSING",
    "RECONTOUR",
    "as_map",
    "completion_pair",
    "cut_partial",
    "render_in_frame",
]
