"""How an entry's stored preview is drawn so that a user recognises the molecule:
in one piece where the map allows it, without specks.

A preview is the canonical volume box-averaged to 32³ and thresholded at the
map's contour (:mod:`swan_index.prepare`). Drawn at a fixed level its thin density
broke into dozens of fragments (EMD-21457, a zoned segment at 1.05 Å/voxel);
:func:`~dashboard.figures3d.isosurface_figure` smooths it lightly and contours it
to enclose what the map's contour enclosed (:func:`~dashboard.figures3d.contour_level`),
which keeps most maps whole. :func:`preview_view` adds two steps on top:

* when what is drawn is still scattered (its largest connected part holds less
  than :data:`ONE_PIECE` of it), the level is lowered, step by step up to
  enclosing :data:`MOST_MORE` times the contour's volume, until it is not (the
  view then says by how much); a molecule in a few large parts (the two layers
  of EMD-3197's membrane) is drawn as it is, its parts counted;
* parts smaller than :data:`SPECK` of the largest are left out (noise at the
  contour, not the molecule).

A molecule that its map's box cuts (a membrane patch, EMD-3197) is drawn as the
density the box holds, with the box's flat faces: no level brings back what the
box left out, so the panel says so (:func:`dashboard.pages.entry.box_note`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from dashboard.figures3d import contour_level, smoothed

#: The share of the drawn voxels the largest part must hold for a preview not to
#: count as scattered.
ONE_PIECE = 0.5
#: The level is lowered at most until it encloses this many times the volume the
#: map's contour encloses.
MOST_MORE = 1.6
#: Parts under this share of the largest part's voxels are not drawn.
SPECK = 0.01
_STEPS = 8
_CONNECTED = np.ones((3, 3, 3), bool)  # 26-connectivity: what the mesh joins


@dataclass(frozen=True)
class PreviewView:
    """A preview ready to draw.

    Attributes:
        volume: the smoothed preview ``[g, g, g]`` with specks set to 0 (draw it
            unsmoothed, at ``level``).
        level: the isosurface level.
        enclosed: the volume drawn over the volume the map's contour encloses
            (1.0 unless lowered to keep the molecule in one piece).
        parts: connected parts drawn.
        specks: parts left out.
    """

    volume: np.ndarray
    level: float
    enclosed: float
    parts: int
    specks: int


def _parts(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, voxels per label)``, label 0 the background."""
    labels, _ = ndimage.label(mask, structure=_CONNECTED)
    return labels, np.bincount(labels.ravel())


def largest_share(mask: np.ndarray) -> float:
    """The share of ``mask``'s voxels in its largest 26-connected part (1.0 for an
    empty mask)."""
    _, sizes = _parts(mask)
    total = int(sizes[1:].sum())
    return float(sizes[1:].max()) / total if total else 1.0


def preview_view(preview: np.ndarray) -> PreviewView:
    """The stored preview as drawn: smoothed, at the contour's level (lowered if
    that keeps the molecule in one piece), without specks.

    Args:
        preview: a stored preview ``[g, g, g]`` in [0, 1], 0 outside the map's
            contour.

    Returns:
        The :class:`PreviewView`.
    """
    vol = np.asarray(preview, np.float32)
    smooth = smoothed(vol)
    level = contour_level(vol, smooth)
    enclosed = 1.0
    inside = float(np.mean(smooth > level))
    if 0.0 < inside < 1.0 and largest_share(smooth > level) < ONE_PIECE:
        for factor in np.linspace(1.0, MOST_MORE, _STEPS + 1)[1:]:
            lower = float(np.quantile(smooth, 1.0 - min(inside * factor, 1.0)))
            if largest_share(smooth > lower) >= ONE_PIECE:
                level, enclosed = lower, float(factor)
                break
    labels, sizes = _parts(smooth > level)
    big = sizes[1:].max() if len(sizes) > 1 else 0
    small = np.flatnonzero(sizes[1:] < SPECK * big) + 1
    out = smooth.copy()
    out[np.isin(labels, small)] = 0.0
    return PreviewView(
        volume=out,
        level=level,
        enclosed=enclosed,
        parts=int(len(sizes) - 1 - len(small)),
        specks=int(len(small)),
    )
