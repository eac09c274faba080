"""DensityMap -> CanonicalVolume: the cube of side G the encoder sees.

Steps (one interpolation in all, so nothing is resampled twice):

1. **Contour**: the caller's level, else the header's recommended level, else the
   level a simulated map carries, else :func:`ingest.contour.auto_contour`.
2. **Dust removal**: connected components of the thresholded map smaller than
   :data:`DUST_FRACTION` of the largest one are ignored.
3. **Centre and pose**: the density above the contour (weight ``d - contour``) gives
   a centre of mass and an inertia (covariance) tensor, computed in physical Å, so
   anisotropic voxels are handled exactly. Its principal axes, largest spread first,
   become canonical x', y'; z' = x' cross y' (a proper rotation: a map is never
   mirrored, because mirror images are different molecules).
4. **Sign rule**: x' and y' point towards the side with the positive third moment
   (skewness) of the density along them.
5. **Scale**: the radius holding :data:`RADIUS_QUANTILE` of the kept voxels fills
   :data:`FILL` of the half box: Å per voxel is ``2 * radius / (FILL * G)``, the
   same on all axes (shape is never stretched). It does not depend on the pose, so
   an ambiguous pose cannot change the scale.
6. **Resample** the density (box-averaged first when shrinking, against aliasing)
   into the G^3 grid with trilinear interpolation.
7. **Normalise**: below the contour -> 0; at or above it,
   ``0.5 + 0.5 * min((d - contour) / (p99 - contour), 1)`` where p99 is the 99th
   percentile of the density above the contour. So ``values >= SURFACE_LEVEL`` (0.5)
   is exactly the molecule at the contour, and interior detail is kept in [0.5, 1].

**Ambiguous poses.** The pose is unstable when two principal spreads are nearly
equal (relative gap below :data:`EIGEN_GAP`: symmetric complexes such as C4 channels,
or globular proteins) or when a skewness is near zero (|skew| below
:data:`SKEW_MIN`: a sign flip is a coin toss). Then :attr:`CanonicalVolume.candidates`
lists alternative rotations: the sign flips of the ambiguous axes and, for a
degenerate pair of axes, rotations about the third (spin) axis, with the in-plane
angle fixed by the strongest angular harmonic. The spin axis takes its sign from its
own skewness (z' = x' cross y' would inherit the arbitrary signs of a degenerate
x'/y' pair); when all three spreads are close, the spin axis is the one that stands
out most. :func:`canonicalize_poses` renders every candidate; a search keeps, per
entry, the best score over the query's candidates. The primary pose is always
candidate 0.

The physical size (radius of gyration, extents, enclosed volume in Å) is kept as a
feature because the scaling step removes it from the volume itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ingest.contour import auto_contour
from ingest.errors import MapFormatError
from ingest.header import EntryMetadata
from ingest.mapio import DensityMap
from ingest.transform import resample_xyz

log = logging.getLogger(__name__)

DEFAULT_GRID = 64
#: The molecule's largest half-extent fills this fraction of the half box.
FILL = 0.9
#: Canonical values at or above this are inside the contour.
SURFACE_LEVEL = 0.5
#: Components smaller than this fraction of the largest are dust.
DUST_FRACTION = 0.01
#: Quantile of the kept voxels' distance from the centre that sets the scale.
RADIUS_QUANTILE = 0.995
#: Relative gap between principal spreads below which two axes are degenerate.
EIGEN_GAP = 0.1
#: Skewness below which an axis' sign is ambiguous.
SKEW_MIN = 0.1
#: Cap on candidate poses.
MAX_CANDIDATES = 32
#: A query (:func:`canonicalize_poses`) also tries the poses that thresholds this
#: many times wider would give: a stored map whose spreads or skews sit just on
#: the other side of :data:`EIGEN_GAP` / :data:`SKEW_MIN` got its pose from the
#: other rule, and the query must still meet it. When all three spreads are that
#: close (a near-spherical map, whose principal axes may come in another order in
#: the stored copy), it also tries the spins about each of the three axes.
QUERY_MARGIN = 3.0


@dataclass(frozen=True)
class SizeFeatures:
    """Rotation-invariant physical size of the density above the contour.

    Attributes:
        radius_of_gyration: density-weighted, Å.
        extents: full length along canonical x', y', z' (Å), largest first.
        volume: enclosed volume at the contour, Å^3.
    """

    radius_of_gyration: float
    extents: tuple[float, float, float]
    volume: float

    def as_array(self) -> np.ndarray:
        """``[rg, ext_x, ext_y, ext_z, volume^(1/3)]`` in Å, float32, shape (5,)."""
        return np.array(
            [self.radius_of_gyration, *self.extents, self.volume ** (1.0 / 3.0)],
            dtype=np.float32,
        )


@dataclass(frozen=True, eq=False)
class CanonicalVolume:
    """What the encoder sees, and how to map it back into the original frame.

    Attributes:
        values: float32 ``[G, G, G]`` indexed ``[z', y', x']`` in the canonical frame.
            0 outside the contour, in [0.5, 1] inside (see module docs).
        grid: G.
        angstrom_per_voxel: canonical voxel size, Å.
        rotation: 3x3; its columns are the canonical axes x', y', z' written in the
            map's physical (x, y, z) frame.
        center: centre of mass in the map's physical frame, Å ``(x, y, z)``.
        contour: contour level used, map units.
        contour_source: ``"user"``, ``"header"``, ``"map"`` (simulated) or ``"auto"``.
        density_scale: ``p99 - contour``, to turn values back into map units.
        size: physical size features.
        candidates: candidate rotations (primary first); more than one when the pose
            is ambiguous.
        pose_index: which candidate ``rotation`` is.
        ambiguity: why the pose is ambiguous (empty when it is not).
        source_sha256: the map's content hash.
        simulated: the map was computed from a model.
    """

    values: np.ndarray
    grid: int
    angstrom_per_voxel: float
    rotation: np.ndarray
    center: np.ndarray
    contour: float
    contour_source: str
    density_scale: float
    size: SizeFeatures
    candidates: tuple[np.ndarray, ...]
    pose_index: int = 0
    ambiguity: str = ""
    source_sha256: str = ""
    simulated: bool = False

    @property
    def pose_ambiguous(self) -> bool:
        """True when more than one candidate pose exists."""
        return len(self.candidates) > 1

    def index_to_world(self, index_zyx: np.ndarray) -> np.ndarray:
        """Canonical voxel indices ``[..., (k, j, i)]`` -> Å ``[..., (x, y, z)]``."""
        index_zyx = np.asarray(index_zyx, dtype=np.float64)
        c0 = (self.grid - 1) / 2.0
        q = (index_zyx[..., ::-1] - c0) * self.angstrom_per_voxel
        return self.center + q @ self.rotation.T

    def world_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Å ``[..., (x, y, z)]`` -> canonical voxel indices ``[..., (k, j, i)]``."""
        xyz = np.asarray(xyz, dtype=np.float64)
        c0 = (self.grid - 1) / 2.0
        q = (xyz - self.center) @ self.rotation / self.angstrom_per_voxel + c0
        return q[..., ::-1]

    def to_density(self, values: np.ndarray) -> np.ndarray:
        """Canonical values -> map units (values below 0.5 become the contour)."""
        v = np.asarray(values, dtype=np.float32)
        return self.contour + np.clip(v - 0.5, 0.0, None) * 2.0 * self.density_scale


@dataclass
class _Prepared:
    """A map cropped and binned around its molecule, with the pose statistics."""

    crop: np.ndarray  # [z, y, x], dust set below the contour
    crop_origin: np.ndarray  # physical Å of crop[0, 0, 0] (voxel centre), xyz
    crop_voxel: np.ndarray  # Å per crop voxel, xyz
    low: float  # a value below the contour (background fill)
    contour: float
    contour_source: str
    density_scale: float
    center: np.ndarray
    base_rotation: np.ndarray
    candidates: tuple[np.ndarray, ...]
    ambiguity: str
    extent: float
    size: SizeFeatures
    sha256: str
    simulated: bool


def choose_contour(
    dmap: DensityMap,
    contour: float | None = None,
    metadata: EntryMetadata | None = None,
) -> tuple[float, str]:
    """The contour level to use and where it came from.

    Precedence: the caller's ``contour`` (``"user"``), the header's recommended level
    (``"header"``), the level a simulated map carries (``"map"``), then
    :func:`~ingest.contour.auto_contour` (``"auto"``).
    """
    if contour is not None:
        return float(contour), "user"
    if metadata is not None and metadata.contour_level is not None:
        return float(metadata.contour_level), "header"
    recommended = dmap.header.get("recommended_contour")
    if recommended is not None:
        return float(recommended), "map"
    return auto_contour(dmap.data), "auto"


def _rotation_about(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    rot = np.eye(3)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot


def _spin_degenerate_plane(
    frame: np.ndarray, proj: np.ndarray, weights: np.ndarray, axis: int
) -> tuple[np.ndarray, int, float]:
    """Fix the in-plane angle about ``axis`` when the other two spreads are equal.

    Equal spreads leave the angle about ``axis`` undetermined by second moments (as
    for any Cn-symmetric complex, n >= 3). The angular harmonics
    ``c_m = sum w exp(i m phi) / sum w`` for m = 2..8 pick it up: the strongest one
    sets the angle modulo 2 pi / m (m = 2 is kept: a pair only just inside the
    threshold still has a usable two-fold anisotropy), so the n-fold symmetric
    copies all give the same volume.

    Returns:
        ``(frame, m, strength)``: the rotated frame, the harmonic used and |c_m|.
    """
    a, b = [i for i in range(3) if i != axis]
    phi = np.arctan2(proj[:, b], proj[:, a])
    total = weights.sum()
    harmonics = {m: (weights @ np.exp(1j * m * phi)) / total for m in range(2, 9)}
    strongest = max(abs(c) for c in harmonics.values())
    m = min(k for k, c in harmonics.items() if abs(c) >= 0.8 * strongest)
    phi0 = float(np.angle(harmonics[m])) / m
    frame = frame.copy()
    ea, eb = frame[:, a].copy(), frame[:, b].copy()
    frame[:, a] = np.cos(phi0) * ea + np.sin(phi0) * eb
    frame[:, b] = -np.sin(phi0) * ea + np.cos(phi0) * eb
    return frame, m, float(abs(harmonics[m]))


def _candidate_poses(
    base: np.ndarray,
    evals: np.ndarray,
    skew: np.ndarray,
    proj: np.ndarray,
    weights: np.ndarray,
    margin: float = 1.0,
    spin_about: int | None = None,
) -> tuple[tuple[np.ndarray, ...], str]:
    """Primary rotation and alternatives when the principal frame is not determined.

    ``base`` columns are the principal axes (sign rule applied); ``proj`` the kept
    voxels' coordinates along them and ``skew`` their skewness. ``margin`` widens
    both ambiguity thresholds; ``spin_about`` names the spin axis when all three
    spreads are degenerate (default: the rule below).
    """
    eigen_gap, skew_min = EIGEN_GAP * margin, SKEW_MIN * margin
    reasons = []
    gaps = (
        (evals[0] - evals[1]) / evals[0],
        (evals[1] - evals[2]) / max(evals[1], 1e-12),
    )
    spins = [np.eye(3)]
    spin_axis = None
    if gaps[1] < eigen_gap:
        spin_axis = 0
    elif gaps[0] < eigen_gap:
        spin_axis = 2
    if gaps[0] < eigen_gap and gaps[1] < eigen_gap:
        # Near-spherical: spin about the axis that stands out most. The other two
        # are the closer pair, whose directions within their plane the second
        # moments hardly fix, so a spin about either of them would start from an
        # arbitrary angle.
        spin_axis = 2 if gaps[0] < gaps[1] else 0
        if spin_about is not None:
            spin_axis = spin_about
        reasons.append(
            "all three spreads within "
            f"{max(gaps):.1%}: candidate spins cover the degenerate plane"
        )
    if spin_axis is not None:
        if skew[spin_axis] < 0:
            # Orient the spin axis by its own skew. (z' is x' cross y', and when
            # x'/y' are degenerate their signs are arbitrary, so z' would be too.)
            # A half turn about an in-plane axis keeps the frame right-handed.
            turn = [spin_axis, next(a for a in range(3) if a != spin_axis)]
            base, proj, skew = base.copy(), proj.copy(), skew.copy()
            base[:, turn] *= -1
            proj[:, turn] *= -1
            skew[turn] *= -1
        base, m, strength = _spin_degenerate_plane(base, proj, weights, spin_axis)
        plane = "y'/z'" if spin_axis == 0 else "x'/y'"
        reasons.append(
            f"{plane} spreads within {gaps[1 if spin_axis == 0 else 0]:.1%}"
            f" (in-plane angle from the {m}-fold harmonic, "
            f"|c{m}|={strength:.2f})"
        )
        steps = m if strength >= 0.05 * margin else max(m, 8)
        spins = [
            _rotation_about(spin_axis, 2 * np.pi * k / steps) for k in range(steps)
        ]
    flips = [np.eye(3)]
    signed = [0, 1] if spin_axis is None else [spin_axis]
    for axis in signed:
        if abs(skew[axis]) < skew_min:
            reasons.append(f"{'xyz'[axis]}' sign (skew {skew[axis]:+.2f})")
            # A half turn about another axis flips this one and keeps the frame
            # right-handed.
            flip = (
                np.diag([1.0, -1.0, -1.0]) if axis == 1 else np.diag([-1.0, 1.0, -1.0])
            )
            flips += [f @ flip for f in list(flips)]
    candidates: list[np.ndarray] = []
    for flip in flips:
        for spin in spins:
            rot = base @ spin @ flip
            if not any(np.allclose(rot, c, atol=1e-6) for c in candidates):
                candidates.append(rot)
    return tuple(candidates[:MAX_CANDIDATES]), "; ".join(reasons)


def _prepare(
    dmap: DensityMap,
    contour: float | None,
    grid: int,
    metadata: EntryMetadata | None,
    margin: float = 1.0,
) -> _Prepared:
    data = dmap.data
    path = dmap.path
    level, source = choose_contour(dmap, contour, metadata)
    mask = data >= level
    if not mask.any():
        raise MapFormatError(
            path,
            f"no density at or above the contour {level:g} "
            f"(map maximum {float(data.max()):g}, contour from {source})",
            "pass a lower contour level",
        )
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        keep = sizes >= DUST_FRACTION * sizes.max()
        keep[0] = False
        mask = keep[labels]
    del labels
    zyx = np.nonzero(mask)
    vsize = np.asarray(dmap.voxel_size, dtype=np.float64)
    origin = np.asarray(dmap.origin, dtype=np.float64)
    weights = data[zyx].astype(np.float64) - level
    weights = np.maximum(weights, 0.0) + 1e-12
    xyz = np.stack([zyx[2], zyx[1], zyx[0]], axis=1).astype(np.float64) * vsize + origin
    total = weights.sum()
    center = weights @ xyz / total
    rel = xyz - center
    cov = (rel * weights[:, None]).T @ rel / total
    evals, evecs = np.linalg.eigh(cov)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    proj = rel @ evecs
    sigma = np.sqrt(np.maximum(evals, 1e-12))
    skew = (weights @ proj**3) / total / sigma**3
    for axis in (0, 1):
        if skew[axis] < 0:
            evecs[:, axis] *= -1
            proj[:, axis] *= -1
            skew[axis] *= -1
    evecs[:, 2] = np.cross(evecs[:, 0], evecs[:, 1])
    proj[:, 2] = rel @ evecs[:, 2]
    skew[2] = (weights @ proj[:, 2] ** 3) / total / sigma[2] ** 3
    candidates, ambiguity = _candidate_poses(evecs, evals, skew, proj, weights)
    if margin > 1.0:  # a query: also the poses of the wider thresholds, and, for
        # a near-spherical map (whose principal axes may come in another order in
        # the stored copy), spins about each of the three axes
        extra: list[np.ndarray] = []
        for axis in (None, 0, 1, 2):
            wider, _ = _candidate_poses(
                evecs, evals, skew, proj, weights, margin, spin_about=axis
            )
            extra += [
                w
                for w in wider
                if not any(np.allclose(w, c) for c in (*candidates, *extra))
            ]
        candidates = (*candidates, *extra)[:MAX_CANDIDATES]
    # Scale from the radial distribution, not from the pose: a sphere holding
    # RADIUS_QUANTILE of the kept voxels fills FILL of the half box. A quantile, not
    # the maximum, so that one stray voxel does not change the scale.
    half_voxel = 0.5 * float(vsize.max())
    extent = (
        float(np.quantile(np.linalg.norm(rel, axis=1), RADIUS_QUANTILE)) + half_voxel
    )
    span = proj.max(axis=0) - proj.min(axis=0) + 2 * half_voxel
    size = SizeFeatures(
        radius_of_gyration=float(np.sqrt(np.trace(cov))),
        extents=(float(span[0]), float(span[1]), float(span[2])),
        volume=float(mask.sum() * np.prod(vsize)),
    )
    inside = data[zyx]
    p99 = float(np.percentile(inside, 99)) if inside.size else level
    scale = p99 - level if p99 > level else max(abs(level), 1.0)
    low = min(float(data.min()), level - abs(level) - 1.0)
    # Crop to the molecule plus a margin of two output voxels, then box-average.
    out_voxel = 2.0 * extent / (FILL * grid)
    margin = np.ceil(2 * out_voxel / vsize).astype(int)  # xyz
    lo = np.array([zyx[2].min(), zyx[1].min(), zyx[0].min()]) - margin
    hi = np.array([zyx[2].max(), zyx[1].max(), zyx[0].max()]) + margin + 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [data.shape[2], data.shape[1], data.shape[0]])
    box = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    crop = np.where(mask[box] | (data[box] < level), data[box], low).astype(np.float32)
    del mask
    factor = np.maximum(np.floor(out_voxel / vsize).astype(int), 1)  # xyz
    crop_origin = origin + lo * vsize
    if (factor > 1).any():
        fz, fy, fx = int(factor[2]), int(factor[1]), int(factor[0])
        nz, ny, nx = (
            (crop.shape[0] // fz) * fz,
            (crop.shape[1] // fy) * fy,
            (crop.shape[2] // fx) * fx,
        )
        if min(nz, ny, nx) > 0:
            crop = (
                crop[:nz, :ny, :nx]
                .reshape(nz // fz, fz, ny // fy, fy, nx // fx, fx)
                .mean(axis=(1, 3, 5))
            )
            crop_origin = crop_origin + (factor - 1) / 2.0 * vsize
            vsize = vsize * factor
    return _Prepared(
        crop=np.ascontiguousarray(crop, dtype=np.float32),
        crop_origin=crop_origin,
        crop_voxel=vsize,
        low=low,
        contour=level,
        contour_source=source,
        density_scale=scale,
        center=center,
        base_rotation=evecs,
        candidates=candidates,
        ambiguity=ambiguity,
        extent=extent,
        size=size,
        sha256=dmap.sha256,
        simulated=dmap.simulated,
    )


def _render(prep: _Prepared, rotation: np.ndarray, grid: int) -> np.ndarray:
    """Resample the prepared crop into the canonical grid for one pose."""
    s = 2.0 * prep.extent / (FILL * grid)
    c0 = (grid - 1) / 2.0
    # canonical index o -> world center + s R (o - c0) -> crop index
    inv_v = np.diag(1.0 / prep.crop_voxel)
    matrix = inv_v @ rotation * s
    dens = resample_xyz(
        prep.crop,
        matrix,
        inv_v @ (prep.center - prep.crop_origin) - matrix @ np.full(3, c0),
        (grid, grid, grid),
        cval=prep.low,
    )
    inside = dens >= prep.contour
    values = 0.5 + 0.5 * np.clip((dens - prep.contour) / prep.density_scale, 0.0, 1.0)
    return np.where(inside, values, 0.0).astype(np.float32)


def canonicalize_poses(
    dmap: DensityMap,
    contour: float | None = None,
    grid: int = DEFAULT_GRID,
    metadata: EntryMetadata | None = None,
    margin: float = QUERY_MARGIN,
) -> list[CanonicalVolume]:
    """Canonical volumes of ``dmap`` for every candidate pose (primary first).

    Args:
        dmap: the map.
        contour: contour level; default from ``metadata``, else from the map
            (simulated maps), else automatic.
        grid: G, side of the output cube.
        metadata: the entry's header, for its recommended contour.
        margin: the candidates also include those of ambiguity thresholds
            ``margin`` times wider, and spins about every axis of a near-spherical
            map (see :data:`QUERY_MARGIN`); 1 gives exactly the stored map's
            candidates.

    Returns:
        One :class:`CanonicalVolume` per candidate pose; a single one when the pose
        is unambiguous.

    Raises:
        MapFormatError: nothing in the map reaches the contour.
    """
    return _canonical_volumes(dmap, contour, grid, metadata, True, margin)


def canonicalize(
    dmap: DensityMap,
    contour: float | None = None,
    grid: int = DEFAULT_GRID,
    metadata: EntryMetadata | None = None,
) -> CanonicalVolume:
    """The canonical volume of ``dmap`` in its primary pose.

    See :func:`canonicalize_poses` for the arguments; candidate poses are listed in
    the result's ``candidates`` but not rendered.
    """
    return _canonical_volumes(dmap, contour, grid, metadata, False)[0]


def _canonical_volumes(
    dmap: DensityMap,
    contour: float | None,
    grid: int,
    metadata: EntryMetadata | None,
    all_poses: bool,
    margin: float = 1.0,
) -> list[CanonicalVolume]:
    if grid < 8:
        raise ValueError(f"grid={grid} is too small; use 32 or 64")
    prep = _prepare(dmap, contour, grid, metadata, margin)
    poses = prep.candidates if all_poses else prep.candidates[:1]
    return [
        CanonicalVolume(
            values=_render(prep, rotation, grid),
            grid=grid,
            angstrom_per_voxel=2.0 * prep.extent / (FILL * grid),
            rotation=rotation,
            center=prep.center,
            contour=prep.contour,
            contour_source=prep.contour_source,
            density_scale=prep.density_scale,
            size=prep.size,
            candidates=prep.candidates,
            pose_index=index,
            ambiguity=prep.ambiguity,
            source_sha256=prep.sha256,
            simulated=prep.simulated,
        )
        for index, rotation in enumerate(poses)
    ]


def to_original_frame(
    values: np.ndarray, cv: CanonicalVolume, like: DensityMap
) -> np.ndarray:
    """Resample canonical-frame ``values`` back onto ``like``'s grid.

    Args:
        values: float ``[G, G, G]`` in ``cv``'s canonical frame (e.g. ``cv.values`` or
            a decoder's reconstruction).
        cv: the canonical volume that defines the frame.
        like: the map whose grid (shape, voxel size, origin) to fill.

    Returns:
        float32 array of ``like.shape``, ``[z, y, x]``, 0 outside the cube.
    """
    vsize = np.asarray(like.voxel_size, dtype=np.float64)
    origin = np.asarray(like.origin, dtype=np.float64)
    s = cv.angstrom_per_voxel
    c0 = (cv.grid - 1) / 2.0
    # map index n -> world origin + v n -> canonical index R^T (w - center) / s + c0
    return resample_xyz(
        np.asarray(values, dtype=np.float32),
        cv.rotation.T @ np.diag(vsize) / s,
        cv.rotation.T @ (origin - cv.center) / s + c0,
        like.shape,
    )


def volume_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two volumes of one shape (1.0 = identical up to scale).

    Raises:
        ValueError: the shapes differ.
    """
    if a.shape != b.shape:
        raise ValueError(f"volumes differ in shape: {a.shape} vs {b.shape}")
    x = a.ravel().astype(np.float64)
    y = b.ravel().astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    denom = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / denom) if denom > 0 else 0.0
