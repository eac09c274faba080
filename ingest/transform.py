"""Rigid transforms of density maps (used for augmentation and pose tests)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ingest.mapio import DensityMap

_REVERSE = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=np.float64)


def resample_xyz(
    data: np.ndarray,
    matrix_xyz: np.ndarray,
    offset_xyz: np.ndarray,
    output_shape: tuple[int, int, int],
    order: int = 1,
    cval: float = 0.0,
) -> np.ndarray:
    """Affine resampling written in (x, y, z) index order for ``[z, y, x]`` arrays.

    The output voxel with index ``n = (i, j, k)`` (x, y, z) takes the value of
    ``data`` at input index ``matrix_xyz @ n + offset_xyz`` (x, y, z); outside the
    input, ``cval``. This is ``scipy.ndimage.affine_transform`` with both sides of
    the map reversed into the arrays' [z, y, x] order.

    Returns:
        float32 array of ``output_shape`` ([z, y, x]).
    """
    out = ndimage.affine_transform(
        data,
        _REVERSE @ np.asarray(matrix_xyz, dtype=np.float64) @ _REVERSE,
        offset=_REVERSE @ np.asarray(offset_xyz, dtype=np.float64),
        output_shape=output_shape,
        order=order,
        mode="constant",
        cval=cval,
    )
    return out.astype(np.float32, copy=False)


def axis_rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix that turns by ``angle`` radians about ``axis``.

    Rodrigues' formula ``R = I + sin(angle) K + (1 - cos(angle)) K^2`` with ``K`` the
    cross-product matrix of ``axis`` (``K v = axis x v``). The rotation is active and
    right-handed: it acts on column vectors (``R @ v``; rows of points turn with
    ``points @ R.T``) and, seen from the tip of ``axis`` looking back at the origin,
    turns counter-clockwise (about z, x goes to y for ``angle = pi / 2``). This is
    ``scipy.spatial.transform.Rotation.from_rotvec(angle * axis).as_matrix()`` up
    to rounding (about 1e-15).

    Args:
        axis: unit vector, shape ``(3,)`` (x, y, z); not normalised here, so a
            non-unit axis gives a matrix that is not a rotation.
        angle: turning angle in radians (degrees: pass ``np.radians(deg)``).

    Returns:
        float64 array of shape ``(3, 3)``.
    """
    x, y, z = axis
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed 3x3 rotation matrix."""
    return Rotation.random(random_state=rng).as_matrix()


def rotate_map(
    dmap: DensityMap,
    rotation: np.ndarray,
    voxel_size: float | None = None,
    pad: float = 1.0,
    order: int = 3,
) -> DensityMap:
    """Rotate a map about its box centre and resample it on a fresh cubic grid.

    Args:
        dmap: the map.
        rotation: 3x3 proper rotation acting on physical (x, y, z) coordinates.
        voxel_size: Å per voxel of the new grid (default: the map's smallest).
        pad: extra box length, as a fraction of the rotated content's diagonal,
            (1.0 keeps every voxel of the old box inside the new one).
        order: spline order of the interpolation (1 = trilinear, faster).

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
    # new index n -> world w = new_origin + new_v n -> old world
    # r = R^T (w - c) + c -> old index (r - origin) / old_v
    inv_v = np.diag(1.0 / old_v)
    data = resample_xyz(
        dmap.data,
        inv_v @ rotation.T * new_v,
        inv_v @ (rotation.T @ (new_origin - center) + center - np.asarray(dmap.origin)),
        (side, side, side),
        order=order,
        cval=float(np.median(dmap.data[0])),
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
