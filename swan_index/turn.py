"""Small cubes turned about their centre, trilinear, as the rotational fit needs.

The fit (:mod:`swan_index.fit`) turns a query's ``16^3`` volume through 2,000
rotations, and some of them again through small local turns: millions of
trilinear samples per search. ``torch.nn.functional.grid_sample`` computes them
at about 25 ns a sample on a CPU (its per-sample bookkeeping: a sampling grid of
coordinates read from memory, bounds for any size); a compiled loop that derives
each sample's coordinates from the rotation matrix takes a few ns, with no grid
held in memory (the old sampling grid kept 98 MB between queries). Numba compiles
it (already a dependency through umap-learn); the result is the same as
``grid_sample(..., align_corners=False)`` with zero padding, to float32
rounding (:func:`grid_sample_turn` is that reference, for tests and
benchmarks).

The kernel releases the GIL, so a server's threads turn their queries at once.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch
import torch.nn.functional as F


@numba.njit(nogil=True, cache=True, fastmath=True, error_model="numpy")
def _turn_kernel(
    padded: np.ndarray,
    occupied: np.ndarray,
    mats: np.ndarray,
    out: np.ndarray,
    mean: np.ndarray,
    norm: np.ndarray,
    unit: bool,
) -> None:  # pragma: no cover - compiled
    # padded: the volume with one voxel of zeros on every side, so that a sample
    # with any corner inside reads its eight corners without bounds checks;
    # occupied: whether a cell of the padded volume has a corner that is not 0
    # (a sample in an empty cell is 0: most of a map's box is empty)
    g = padded.shape[0] - 2
    half = np.float32(0.5 * g)
    lin = np.empty(g, np.float32)
    for i in range(g):
        lin[i] = (2 * i + 1) / g - 1
    for r in range(mats.shape[0]):
        m00, m01, m02 = mats[r, 0, 0], mats[r, 0, 1], mats[r, 0, 2]
        m10, m11, m12 = mats[r, 1, 0], mats[r, 1, 1], mats[r, 1, 2]
        m20, m21, m22 = mats[r, 2, 0], mats[r, 2, 1], mats[r, 2, 2]
        i = 0
        for z in range(g):
            bz = lin[z]
            for y in range(g):
                by = lin[y]
                # where voxel (z, y, x) samples the original: R @ (x, y, z) in
                # grid_sample's coordinates, then in voxels of the padded cube
                cx = m01 * by + m02 * bz
                cy = m11 * by + m12 * bz
                cz = m21 * by + m22 * bz
                for x in range(g):
                    bx = lin[x]
                    fx = (m00 * bx + cx + 1) * half + np.float32(0.5)
                    fy = (m10 * bx + cy + 1) * half + np.float32(0.5)
                    fz = (m20 * bx + cz + 1) * half + np.float32(0.5)
                    if (
                        fx < 0
                        or fy < 0
                        or fz < 0
                        or fx >= g + 1
                        or fy >= g + 1
                        or fz >= g + 1
                    ):
                        out[r, i] = 0.0
                        i += 1
                        continue
                    x0 = int(fx)  # fx >= 0: truncation is the floor
                    y0 = int(fy)
                    z0 = int(fz)
                    if not occupied[z0, y0, x0]:
                        out[r, i] = 0.0
                    else:
                        wx = fx - x0
                        wy = fy - y0
                        wz = fz - z0
                        c00 = padded[z0, y0, x0] + wx * (
                            padded[z0, y0, x0 + 1] - padded[z0, y0, x0]
                        )
                        c01 = padded[z0, y0 + 1, x0] + wx * (
                            padded[z0, y0 + 1, x0 + 1] - padded[z0, y0 + 1, x0]
                        )
                        c10 = padded[z0 + 1, y0, x0] + wx * (
                            padded[z0 + 1, y0, x0 + 1] - padded[z0 + 1, y0, x0]
                        )
                        c11 = padded[z0 + 1, y0 + 1, x0] + wx * (
                            padded[z0 + 1, y0 + 1, x0 + 1] - padded[z0 + 1, y0 + 1, x0]
                        )
                        c0 = c00 + wy * (c01 - c00)
                        c1 = c10 + wy * (c11 - c10)
                        out[r, i] = c0 + wz * (c1 - c0)
                    i += 1
        # the row's mean and spread (float64 sums), and with unit the zero-mean
        # unit row, while the row is still in cache
        total = 0.0
        for j in range(out.shape[1]):
            total += out[r, j]
        mu = total / out.shape[1]
        square = 0.0
        for j in range(out.shape[1]):
            d = out[r, j] - mu
            square += d * d
        spread = max(np.sqrt(square), 1e-12)
        mean[r] = mu
        norm[r] = spread
        if unit:
            for j in range(out.shape[1]):
                out[r, j] = (out[r, j] - mu) / spread


def turn(
    volume: np.ndarray | torch.Tensor, rotations: np.ndarray, unit: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``volume`` ``[g, g, g]`` turned about its centre by each of ``rotations``
    ``[R, 3, 3]``, trilinear, zero outside: :func:`grid_sample_turn` without its
    cost, split over :data:`THREADS` threads.

    Voxel ``(z, y, x)`` of a turned volume takes the original's value at
    ``R @ (x, y, z)`` in ``grid_sample`` coordinates (voxel centres in
    ``(-1, 1)``).

    Returns:
        ``(rows [R, g^3], mean [R, 1], norm [R, 1])`` float32 (x fastest): the
        turned volumes, or with ``unit`` their zero-mean unit rows (``rows *
        norm + mean`` gives the volumes back); ``norm`` is the spread
        ``|row - mean|`` (at least 1e-12).
    """
    vol = np.ascontiguousarray(np.asarray(volume, dtype=np.float32))
    mats = np.ascontiguousarray(np.asarray(rotations, dtype=np.float32))
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise ValueError(f"volume of shape {vol.shape}: pass a cube [g, g, g]")
    if mats.ndim != 3 or mats.shape[1:] != (3, 3):
        raise ValueError(f"rotations of shape {mats.shape}: pass [R, 3, 3]")
    n = len(mats)
    out = np.empty((n, vol.size), np.float32)
    mean = np.empty((n, 1), np.float32)
    norm = np.empty((n, 1), np.float32)
    padded = np.pad(vol, 1)
    occupied = _occupied(padded)
    parts = min(THREADS, max(1, n // _MIN_PART))
    cuts = np.linspace(0, n, parts + 1).astype(int)

    def run(i: int) -> None:
        a, b = cuts[i], cuts[i + 1]
        _turn_kernel(padded, occupied, mats[a:b], out[a:b], mean[a:b], norm[a:b], unit)

    if parts == 1:
        run(0)
    else:
        list(_pool().map(run, range(parts)))
    return torch.from_numpy(out), torch.from_numpy(mean), torch.from_numpy(norm)


def _occupied(padded: np.ndarray) -> np.ndarray:
    """Per cell of ``padded`` (the cube between 8 voxel centres, named by its
    lowest corner): whether any of its corners is not 0. ``[g+1, g+1, g+1]``."""
    nz = padded != 0
    return (
        nz[:-1, :-1, :-1]
        | nz[1:, :-1, :-1]
        | nz[:-1, 1:, :-1]
        | nz[:-1, :-1, 1:]
        | nz[1:, 1:, :-1]
        | nz[1:, :-1, 1:]
        | nz[:-1, 1:, 1:]
        | nz[1:, 1:, 1:]
    )


#: Threads :func:`turn` splits its rotations over (the kernel releases the GIL).
THREADS = max(1, min(4, os.cpu_count() or 1))
#: Fewest rotations worth a thread of their own.
_MIN_PART = 64


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(THREADS, thread_name_prefix="swan-turn")


@numba.njit(nogil=True, cache=True)
def _window_kernel(
    x: np.ndarray, lo: np.ndarray, hi: np.ndarray, total: np.ndarray, square: np.ndarray
) -> None:  # pragma: no cover - compiled
    n, g = x.shape[0], x.shape[1]
    k = len(lo)
    rows = np.empty((2, g, g, k))  # per (z, y): sums over each x range
    planes = np.empty((2, g, k, k))  # per z: sums over each (y, x) range
    for b in range(n):
        for z in range(g):
            for y in range(g):
                for c in range(k):
                    t = 0.0
                    t2 = 0.0
                    for w in range(lo[c], hi[c]):
                        v = np.float64(x[b, z, y, w])
                        t += v
                        t2 += v * v
                    rows[0, z, y, c] = t
                    rows[1, z, y, c] = t2
        for z in range(g):
            for a in range(k):
                for c in range(k):
                    for p in range(2):
                        t = 0.0
                        for y in range(lo[a], hi[a]):
                            t += rows[p, z, y, c]
                        planes[p, z, a, c] = t
        i = 0
        for a in range(k):
            for bb in range(k):
                for c in range(k):
                    t = 0.0
                    t2 = 0.0
                    for z in range(lo[a], hi[a]):
                        t += planes[0, z, bb, c]
                        t2 += planes[1, z, bb, c]
                    total[b, i] = t
                    square[b, i] = t2
                    i += 1


def window_sums(x: np.ndarray, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """For each cube of ``x`` ``[B, g, g, g]`` and each ``(a, b, c)`` in
    ``range(2 shift + 1)^3`` (``S`` of them, ``a`` slowest): the sum and the
    sum of squares (float64) of the voxels in ``[shift - a, g + shift - a)``
    along z, ``[shift - b, g + shift - b)`` along y, ``[shift - c, g + shift -
    c)`` along x (clipped to the cube): what stays inside the box when the
    cube moves by ``(shift - a, shift - b, shift - c)``.

    Returns:
        ``(total [B, S], square [B, S])``.
    """
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    g = x.shape[-1]
    a = np.arange(2 * shift + 1)
    lo, hi = np.clip(shift - a, 0, g), np.clip(g + shift - a, 0, g)
    total = np.empty((len(x), len(a) ** 3))
    square = np.empty_like(total)
    if len(x):
        _window_kernel(x, lo, hi, total, square)
    return total, square


def grid_sample_turn(volume: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """The reference :func:`turn` computes: ``F.affine_grid``'s voxel centres
    turned by ``rotations`` ``[R, 3, 3]``, sampled by ``F.grid_sample``
    (``align_corners=False``, zero padding): ``[R, g^3]``."""
    g = volume.shape[-1]
    lin = (2 * torch.arange(g, dtype=torch.float32) + 1) / g - 1
    zyx = torch.meshgrid(lin, lin, lin, indexing="ij")
    base = torch.stack(zyx[::-1], dim=-1).reshape(-1, 3)
    grid = torch.einsum("mj,rij->rmi", base, rotations).reshape(-1, g, g, g, 3)
    src = volume.reshape(1, 1, g, g, g).expand(len(grid), 1, g, g, g)
    return F.grid_sample(src, grid, align_corners=False).flatten(1)
