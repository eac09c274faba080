"""Choosing a contour level when the depositor's recommended one is not known, and
checking that a map and a contour can make a shape at all.

EMDB headers always carry the depositor's recommended contour and it is always
preferred. :func:`auto_contour` and :func:`contour_for_volume` serve maps without a
header (user uploads, loose files) and simulated maps. :func:`value_range` refuses
maps with nothing to contour (blank, constant, nearly constant, NaN/Inf) and
:func:`check_contour` contours that leave nothing inside the map, or everything.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph
from skimage.filters import threshold_otsu

from ingest.errors import MapFormatError
from ingest.mapio import DensityMap

#: Protein density ~1.35 g/cm^3 gives ~1.21 Å^3 per dalton (Matthews' constant).
ANGSTROM3_PER_DALTON = 1.21
#: A map whose values all lie within this fraction of their magnitude is nearly
#: constant (float32 rounding of one value, not density): it is refused.
NEAR_CONSTANT = 1e-5
#: Connected pieces smaller than this fraction of the largest are dust.
DUST_FRACTION = 0.01
#: A molecule must have a connected piece of at least this many voxels at the
#: contour: fewer is a blank map's stray voxel or pure noise, not a shape.
MIN_MOLECULE_VOXELS = 27
#: The molecule's voxels are visited this many at a time, so that float64
#: statistics over them (centre, inertia, skewness, harmonics) take a few MB
#: whatever the map's size.
SLAB_VOXELS = 2**16
#: Where each contour source comes from, as a message says it.
_SOURCES = {
    "user": "given",
    "header": "the header's recommended level",
    "map": "the level the simulated map carries",
    "auto": "chosen automatically",
}
_BLANK_FIX = (
    "the file holds no density to search; check that it is the map you meant "
    "(not an empty or masked-out one)"
)


def value_range(data: np.ndarray, path: str) -> tuple[float, float]:
    """The map's minimum and maximum, refusing maps that hold no shape.

    Args:
        data: the map, any shape.
        path: the map's file, for the message.

    Returns:
        ``(minimum, maximum)``, finite, with ``minimum < maximum``.

    Raises:
        MapFormatError: the map holds NaN/Inf, is constant (blank), or is nearly
            constant (see :data:`NEAR_CONSTANT`).
    """
    lo, hi = float(data.min()), float(data.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise MapFormatError(
            path,
            "holds NaN/Inf values",
            "replace them (e.g. with 0) or re-export the map",
        )
    if lo == hi:
        raise MapFormatError(path, f"is blank: every voxel is {lo:g}", _BLANK_FIX)
    if hi - lo <= NEAR_CONSTANT * max(abs(lo), abs(hi)):
        raise MapFormatError(
            path,
            f"is nearly blank: every voxel is within {hi - lo:.3g} of {lo:g}",
            _BLANK_FIX,
        )
    return lo, hi


def check_contour(level: float, source: str, lo: float, hi: float, path: str) -> None:
    """Refuse a contour that leaves nothing, or everything, inside the map.

    Args:
        level: the contour, map units.
        source: where it came from (``"user"``, ``"header"``, ``"map"``, ``"auto"``).
        lo: the map's minimum; hi: its maximum (from :func:`value_range`).
        path: the map's file, for the message.

    Raises:
        MapFormatError: ``level`` is NaN or infinite, above the map's maximum
            (nothing inside) or at or below its minimum (every voxel inside).
    """
    said = f"the contour {level:g} ({_SOURCES.get(source, source)})"
    fix = f"pass a contour level between the map's minimum {lo:g} and maximum {hi:g}"
    if not np.isfinite(level):
        raise MapFormatError(path, f"{said} is not a finite number", fix)
    if level > hi:
        raise MapFormatError(
            path,
            f"no density at or above {said}: it is above the map's maximum "
            f"{hi:g}, so nothing is inside",
            fix,
        )
    if level <= lo:
        raise MapFormatError(
            path,
            f"{said} is at or below the map's minimum {lo:g}, so every voxel is "
            "inside and there is no shape",
            fix,
        )


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of ``values`` (scikit-image's).

    When the values span less than about a thousand float32 steps, scikit-image's
    float32 histogram bins collapse and it raises; the histogram is then taken with
    float64 bin edges (``np.histogram`` works through the array in blocks, so no
    copy of it is made).
    """
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        return lo
    step = float(np.spacing(np.float32(max(abs(lo), abs(hi)))))
    if hi - lo > 1024 * step:
        return float(threshold_otsu(values))
    counts, edges = np.histogram(
        values, bins=256, range=(np.float64(lo), np.float64(hi))
    )
    return float(threshold_otsu(hist=(counts, (edges[:-1] + edges[1:]) / 2)))


def _edge_shell(data: np.ndarray, width: int = 2) -> np.ndarray:
    """Voxels within ``width`` of the box faces: where the background is."""
    w = max(1, min(width, min(data.shape) // 4))
    return np.concatenate(
        [
            data[:w].ravel(),
            data[-w:].ravel(),
            data[w:-w, :w].ravel(),
            data[w:-w, -w:].ravel(),
            data[w:-w, w:-w, :w].ravel(),
            data[w:-w, w:-w, -w:].ravel(),
        ]
    )


def background_level(data: np.ndarray) -> tuple[float, float]:
    """Robust background level and noise (median and 1.4826 * MAD of the box edge).

    Returns:
        ``(level, noise)`` in map units; ``noise`` is 0 for masked maps.
    """
    shell = _edge_shell(data).astype(np.float64)
    level = float(np.median(shell))
    noise = 1.4826 * float(np.median(np.abs(shell - level)))
    return level, noise


def auto_contour(data: np.ndarray) -> float:
    """A contour level for a map without a recommended one.

    Heuristic (documented, not learned): estimate the background and its noise from
    the box edge; keep the voxels more than 3 noise sigmas above it; split those into
    "weak" and "strong" density with Otsu's threshold; contour halfway between the
    noise floor and that threshold. On the real EMDB segment EMD-21457 this gives
    0.34 against the author's 0.40. When no voxel stands above the noise (a very
    noisy map), Otsu's threshold of the whole map is used.

    Args:
        data: the map, any shape.

    Returns:
        The contour level in map units.
    """
    level, noise = background_level(data)
    floor = level + 3.0 * noise
    top = float(data.max())
    above = data[data > floor + 1e-6 * max(top - floor, 0.0)]
    if above.size < 16 or float(above.min()) == float(above.max()):
        return _otsu(data)
    split = _otsu(above)
    return floor + 0.5 * (split - floor)


def contour_for_volume(
    data: np.ndarray, volume_angstrom3: float, voxel_volume: float
) -> float:
    """The level that encloses ``volume_angstrom3`` (e.g. from the molecular mass).

    Args:
        data: the map.
        volume_angstrom3: the volume to enclose, Å^3.
        voxel_volume: Å^3 per voxel.

    Returns:
        The contour level; the map's maximum when the volume is below one voxel.
    """
    n = int(round(volume_angstrom3 / voxel_volume))
    flat = data.ravel()
    if n <= 0:
        return float(flat.max())
    if n >= flat.size:
        return float(flat.min())
    return float(np.partition(flat, flat.size - n)[flat.size - n])


@dataclass(frozen=True, eq=False)
class Molecule:
    """The voxels at or above the contour, dust removed, on their bounding box.

    Attributes:
        full: the whole map, float32 ``[z, y, x]``.
        mask: bool, the bounding box's shape: the kept voxels.
        start: the box's first voxel in the map, ``(z, y, x)``.
        level: the contour.
        vsize: Å per voxel, xyz.
        origin: Å of the map's voxel ``[0, 0, 0]``, xyz.
    """

    full: np.ndarray
    mask: np.ndarray
    start: tuple[int, int, int]
    level: float
    vsize: np.ndarray
    origin: np.ndarray

    @property
    def data(self) -> np.ndarray:
        """The map over the box (a view)."""
        return self.full[
            tuple(
                slice(a, a + n)
                for a, n in zip(self.start, self.mask.shape, strict=True)
            )
        ]

    def voxels(self, center: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The kept voxels a slab at a time: positions relative to ``center``
        (Å, float64 ``(3, n)``, rows x y z) and weights ``d - contour``
        (float64 ``(n,)``)."""
        nz, ny, nx = self.mask.shape
        step = max(1, SLAB_VOXELS // (ny * nx))
        z0, y0, x0 = self.start
        data = self.data
        for k0 in range(0, nz, step):
            k, j, i = np.nonzero(self.mask[k0 : k0 + step])
            if not k.size:
                continue
            weights = data[k0 : k0 + step][k, j, i].astype(np.float64)
            weights -= self.level
            np.maximum(weights, 0.0, out=weights)
            weights += 1e-12
            rel = np.empty((3, k.size))
            rel[0], rel[1], rel[2] = i + x0, j + y0, k + (k0 + z0)
            del k, j, i
            rel *= self.vsize[:, None]  # in place: a slab's temporaries stay few
            rel += self.origin[:, None]
            rel -= center[:, None]
            yield rel, weights


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice]:
    """The smallest box holding every True voxel of a non-empty 3D ``mask``."""
    box = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return box[0], box[1], box[2]


def _component_sizes(labels: np.ndarray, n: int) -> np.ndarray:
    """Voxels per label (``[0]`` is the background), counted a slab at a time:
    ``np.bincount`` of the whole array would first copy it as int64."""
    sizes = np.zeros(n + 1, dtype=np.int64)
    flat = labels.reshape(-1)
    for i in range(0, flat.size, SLAB_VOXELS):
        chunk = flat[i : i + SLAB_VOXELS]
        if n < SLAB_VOXELS:
            sizes += np.bincount(chunk, minlength=n + 1)
        else:  # many labels (noise): count only the ones in this slab
            found, counts = np.unique(chunk, return_counts=True)
            sizes[found] += counts
    return sizes


#: A mask holding fewer voxels than this fraction of the map is split into
#: connected pieces as a graph of its voxels (:func:`_sparse_pieces`): its
#: index arrays, about 150 bytes per set voxel (measured), then take at most
#: about 2.4 bytes per map voxel, less than the 4 of int32 labels over a
#: bounding box that is the whole map. Denser masks are labelled on their
#: bounding box (:func:`_box_pieces`).
SPARSE_FRACTION = 1 / 64


def _sparse_pieces(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The face-connected pieces of a sparse 3D ``mask``, as a graph of its voxels.

    ``scipy.ndimage.label`` visits every voxel of the box and writes an int32
    label for each; at a contour, a map's mask holds well under 1 % of its voxels
    (the molecule plus noise specks that fill the whole box, so the bounding box
    is the map). Joining each set voxel to its set +x, +y and +z neighbours and
    taking the graph's connected components (``scipy.sparse.csgraph``) gives the
    same pieces from a few arrays the size of the set voxels: about ten times
    faster on such maps.

    Returns:
        ``(flat, piece)``: the set voxels' flat indices into ``mask`` (sorted,
        int64) and the piece of each (int32, numbered from 0).
    """
    nz, ny, nx = mask.shape
    plane = ny * nx
    every = mask.reshape(-1)
    flat = np.flatnonzero(every)
    # +x: the next set voxel is the next index, unless a row ends there
    first = np.flatnonzero((np.diff(flat) == 1) & (flat[:-1] % nx != nx - 1))
    src, dst = [first], [first + 1]
    for step, last in (
        (nx, flat % plane >= plane - nx),
        (plane, flat >= every.size - plane),
    ):
        near = ~last
        near[near] = every[flat[near] + step]
        k = np.flatnonzero(near)
        src.append(k)
        dst.append(np.searchsorted(flat, flat[k] + step))
    rows, cols = np.concatenate(src), np.concatenate(dst)
    graph = sparse.coo_matrix(
        (np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(flat.size,) * 2
    )
    _, piece = csgraph.connected_components(graph, directed=False)
    return flat, piece.astype(np.int32, copy=False)


def _box_pieces(
    mask: np.ndarray,
) -> tuple[np.ndarray, int, tuple[slice, slice, slice]]:
    """``scipy.ndimage.label`` of ``mask`` over its bounding box.

    Returns:
        ``(labels, n, box)``: int32 labels of the box (0 = not set), the number
        of pieces, and the box in ``mask``.
    """
    box = _bounding_box(mask)
    labels, n = ndimage.label(mask[box])
    return labels, n, box


def find_molecule(dmap: DensityMap, level: float, source: str) -> Molecule:
    """The voxels at or above ``level`` without dust, on their bounding box.

    Dust is the connected (by faces) pieces smaller than :data:`DUST_FRACTION` of
    the largest. Memory: a boolean mask of the map, plus index arrays of the set
    voxels (a mask sparser than :data:`SPARSE_FRACTION`) or int32 labels and a
    second mask over the mask's bounding box.

    Args:
        dmap: the map.
        level: the contour, within the map's range (:func:`check_contour`).
        source: where the contour came from, for the message.

    Returns:
        The :class:`Molecule`.

    Raises:
        MapFormatError: no connected piece has :data:`MIN_MOLECULE_VOXELS`.
    """
    data = dmap.data
    mask = data >= level
    sparse_mask = np.count_nonzero(mask) <= SPARSE_FRACTION * mask.size
    if sparse_mask:
        flat, piece = _sparse_pieces(mask)
        sizes = np.bincount(piece)
    else:
        labels, n, box = _box_pieces(mask)
        sizes = _component_sizes(labels, n)
        sizes[0] = 0
    largest = int(sizes.max())
    if largest < MIN_MOLECULE_VOXELS:
        raise MapFormatError(
            dmap.path,
            f"holds no molecule at the contour {level:g} "
            f"({_SOURCES.get(source, source)}): its "
            f"largest connected piece of density is {largest} voxel(s), fewer than "
            f"{MIN_MOLECULE_VOXELS}",
            "the map looks blank or pure noise; check the file, or pass a lower "
            "contour level",
        )
    keep = sizes >= DUST_FRACTION * largest
    if sparse_mask:
        del mask
        inside, start = _kept_box(flat[keep[piece]], data.shape)
    else:
        keep[0] = False
        inside, start = _kept_labels(labels, keep, box)
    return Molecule(
        full=data,
        mask=inside,
        start=start,
        level=level,
        vsize=np.asarray(dmap.voxel_size, dtype=np.float64),
        origin=np.asarray(dmap.origin, dtype=np.float64),
    )


def _kept_box(
    flat: np.ndarray, shape: tuple[int, ...]
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The kept voxels (flat indices into a map of ``shape``) as a mask over their
    bounding box, and the box's first voxel ``(z, y, x)``."""
    zyx = np.unravel_index(flat, shape)
    start = tuple(int(a.min()) for a in zyx)
    stop = tuple(int(a.max()) + 1 for a in zyx)
    inside = np.zeros([b - a for a, b in zip(start, stop, strict=True)], dtype=bool)
    inside[tuple(a - s for a, s in zip(zyx, start, strict=True))] = True
    return inside, start  # type: ignore[return-value]


def _kept_labels(
    labels: np.ndarray, keep: np.ndarray, box: tuple[slice, slice, slice]
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The voxels of the kept labels (``keep[label]``) of ``labels`` over ``box``,
    as a mask over their own bounding box, and that box's first voxel."""
    if keep.sum() == len(keep) - 1:  # nothing is dust: every set voxel is kept
        inside = labels > 0
    else:
        inside = np.empty(labels.shape, dtype=bool)
        flat, out = labels.reshape(-1), inside.reshape(-1)
        for i in range(0, flat.size, SLAB_VOXELS):
            out[i : i + SLAB_VOXELS] = keep[flat[i : i + SLAB_VOXELS]]
    del labels
    inner = _bounding_box(inside)
    start = tuple(
        outer.start + part.start for outer, part in zip(box, inner, strict=True)
    )
    return inside[inner], start  # type: ignore[return-value]
