"""Rigid transforms of density maps (used for augmentation and pose tests)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ingest.mapio import DensityMap


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed 3x3 rotation matrix."""
    return Rotation.random(random_state=rng).as_matrix()


def rotate_map(
    dmap: DensityMap,
    rotation: np.ndarray,
    voxel_size: float | None = None,
    pad: float = 1.0,
) -> DensityMap:
    """Rotate a map about its box centre and resample it on a fresh cubic grid.

    Args:
        dmap: the map.
        rotation: 3x3 proper rotation acting on physical (x, y, z) coordinates.
        voxel_size: Å per voxel of the new grid (default: the map's smallest).
        pad: extra box length, as a fraction of the rotated content's diagonal,
            (1.0 keeps every voxel of the old box inside the new one).

    Returns:
        A new :class:`DensityMap` (same path and hash, marked as transformed in its
        warnings) whose density at ``R (r - c) + c`` equals the old one's at ``r``.
    """
    rotation = np.asarray(rotation, dtype=np.float64)
    old_v = np.asarray(dmap.voxel_size, dtype=np.float64)
    new_v = float(voxel_size or old_v.min())
    extent = np.asarray(dmap.extent_angstrom)
    center = np.asarray(dmap.origin) + (np.array(dmap.shape[::-1]) - 1) / 2.0 * old_v
    side = int(np.ceil(np.linalg.norm(extent) * pad / new_v)) | 1
    new_origin = center - (side - 1) / 2.0 * new_v
    rev = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=np.float64)
    # new index n (zyx) -> world w -> old world r = R^T (w - c) + c -> old index
    matrix = rev @ np.diag(1.0 / old_v) @ rotation.T @ (new_v * rev)
    offset = rev @ (
        np.diag(1.0 / old_v)
        @ (rotation.T @ (new_origin - center) + center - np.asarray(dmap.origin))
    )
    background = float(np.median(dmap.data[0]))
    data = ndimage.affine_transform(
        dmap.data,
        matrix,
        offset=offset,
        output_shape=(side, side, side),
        order=3,
        mode="constant",
        cval=background,
    )
    return DensityMap(
        data=data.astype(np.float32),
        voxel_size=(new_v, new_v, new_v),
        origin=tuple(float(o) for o in new_origin),
        path=dmap.path,
        sha256=dmap.sha256,
        mode=2,
        header=dict(dmap.header),
        warnings=dmap.warnings + ("rotated and resampled",),
        simulated=dmap.simulated,
    )
