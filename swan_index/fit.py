"""Rotational fit: re-score the best hits by a search over all rotations.

The canonical pose (principal axes, see :mod:`ingest.canonical`) is stable when two
maps show the same molecule, but not when one of them lacks a subunit or has a
domain moved: the principal axes of the part that is left point elsewhere, and
no candidate pose meets the stored one. The retrieval benchmark measured it: for
incomplete versions, the canonical volumes of query and reference correlate 0.53
on average in the best candidate pose, and 0.86 when the query is turned into the
reference's true pose.

So the best ``top`` hits of the vector search are re-scored here by the best
Pearson correlation, over a near-uniform grid of rotations of SO(3)
(:func:`rotation_grid`, plus the query's own candidate poses), between the query's
canonical volume and each entry's stored preview, both box-averaged to
:data:`FIT_GRID`^3. The rotations turn the query, once per search; scoring an
entry is then one matrix product. A coarse grid keeps it cheap and is enough for
the global shape, which is what a pose search needs (finer detail is what the
learned vectors score).

The rotation grid is the super-Fibonacci spiral of Alexa (CVPR 2022): written
out here because it is a few lines and neither SciPy nor PyTorch has a
deterministic near-uniform SO(3) sample of arbitrary size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation

from swan_index.prepare import shrink

#: Side of the cube the fit compares at (the previews are box-averaged to it).
FIT_GRID = 16
#: Rotations of the query tried (on top of its candidate poses).
FIT_ROTATIONS = 2000
#: Hits of the vector search that the fit re-scores.
FIT_TOP = 200
#: Weight of the fit in the re-scored hits' score; the rest is the learned score.
FIT_WEIGHT = 0.5
_BATCH = 500


def rotation_grid(n: int) -> np.ndarray:
    """``n`` rotation matrices ``[n, 3, 3]`` spread near-uniformly over SO(3)
    (super-Fibonacci spiral; deterministic)."""
    if n < 1:
        raise ValueError(f"n={n}: ask for at least one rotation")
    phi, psi = np.sqrt(2.0), 1.533751168755204288118041
    s = np.arange(n) + 0.5
    r, big_r = np.sqrt(s / n), np.sqrt(1.0 - s / n)
    alpha, beta = 2 * np.pi * s / phi, 2 * np.pi * s / psi
    quats = np.stack(
        [
            r * np.sin(alpha),
            r * np.cos(alpha),
            big_r * np.sin(beta),
            big_r * np.cos(beta),
        ],
        axis=1,
    )
    return Rotation.from_quat(quats).as_matrix().astype(np.float32)


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    x = x - x.mean(dim=1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _rotate(volume: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """``volume`` ``[g, g, g]`` turned about its centre by each rotation:
    ``[R, g^3]``, trilinear, zero outside."""
    g = volume.shape[-1]
    out = []
    for start in range(0, len(rotations), _BATCH):
        m = rotations[start : start + _BATCH]
        theta = torch.cat([m, torch.zeros(len(m), 3, 1)], dim=2)
        grid = F.affine_grid(theta, [len(m), 1, g, g, g], align_corners=False)
        src = volume.expand(len(m), 1, g, g, g)
        out.append(F.grid_sample(src, grid, align_corners=False).flatten(1))
    return torch.cat(out)


class FitQuery:
    """A query's canonical volume in every rotation of the grid, ready to score.

    Args:
        volumes: ``[P, G, G, G]`` the query's canonical volumes (candidate poses,
            primary first; G a multiple of ``grid``), or one ``[G, G, G]``.
        rotations: how many rotations of the primary pose to try (0: only the
            candidate poses).
        grid: side of the cube compared.
    """

    def __init__(
        self,
        volumes: np.ndarray,
        rotations: int = FIT_ROTATIONS,
        grid: int = FIT_GRID,
    ) -> None:
        vols = np.asarray(volumes, np.float32)
        if vols.ndim == 3:
            vols = vols[None]
        if vols.ndim != 4 or not len(vols) or len(set(vols.shape[1:])) != 1:
            raise ValueError(f"volumes of shape {vols.shape}: pass [P, G, G, G]")
        self.grid = grid
        small = torch.from_numpy(np.stack([shrink(v, grid) for v in vols]))
        rows = [small.flatten(1)]
        if rotations > 0:
            mats = torch.from_numpy(rotation_grid(rotations))
            with torch.no_grad():
                rows.append(_rotate(small[0][None, None], mats))
        self._rows = _unit_rows(torch.cat(rows))  # [P + R, grid^3]

    def __len__(self) -> int:
        return len(self._rows)

    def score(self, previews: np.ndarray) -> np.ndarray:
        """Best Pearson correlation of the query over its rotations with each of
        ``previews`` ``[N, g, g, g]`` (g a multiple of the fit grid): ``[N]``."""
        if not len(previews):
            return np.zeros(0, np.float32)
        small = np.stack(
            [shrink(np.asarray(p, np.float32), self.grid) for p in previews]
        )
        if small.shape[1:] != (self.grid,) * 3:
            raise ValueError(
                f"previews of side {previews.shape[1]} cannot be compared at "
                f"{self.grid}^3: use a multiple of {self.grid}"
            )
        ent = _unit_rows(torch.from_numpy(small).flatten(1))
        best = torch.full((len(ent),), -1.0)
        with torch.no_grad():
            for start in range(0, len(self._rows), _BATCH):
                part = self._rows[start : start + _BATCH] @ ent.T
                best = torch.maximum(best, part.max(dim=0).values)
        return best.numpy()


__all__ = [
    "FIT_GRID",
    "FIT_ROTATIONS",
    "FIT_TOP",
    "FIT_WEIGHT",
    "FitQuery",
    "rotation_grid",
]
