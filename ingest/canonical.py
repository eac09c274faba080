"""DensityMap -> CanonicalVolume: the cube of side G the encoder sees.

Steps (one interpolation in all, so nothing is resampled twice):

1. **Contour**: the caller's level, else the header's recommended level, else the
   level a simulated map carries, else :func:`ingest.contour.auto_contour`.
2. **Dust removal**: connected components of the thresholded map smaller than
   :data:`DUST_FRACTION` of the largest one are ignored
   (:func:`ingest.contour.find_molecule`, which also refuses a map whose largest
   piece is a few stray voxels).
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

**Bad input and memory.** Blank, constant and nearly constant maps, maps whose
largest piece at the contour is a few stray voxels (pure noise), and contours that
are not finite or leave nothing (or everything) inside are refused with one line
(:mod:`ingest.contour`). The statistics of steps 3-5 are accumulated in float64 over
slabs of :data:`~ingest.contour.SLAB_VOXELS` voxels of the molecule's bounding box,
never over per-voxel arrays of the whole map, so canonicalizing takes at most about
:data:`MEMORY_FACTOR` times the map's float32 size on top of the map, whatever
the map and the contour.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ingest.contour import (
    DUST_FRACTION,  # noqa: F401 - a step of this module (see above), kept here
    Molecule,
    auto_contour,
    check_contour,
    find_molecule,
    value_range,
)
from ingest.errors import MapFormatError, MapTooLargeError
from ingest.header import EntryMetadata
from ingest.mapio import DensityMap, available_memory
from ingest.transform import resample_xyz

log = logging.getLogger(__name__)

DEFAULT_GRID = 64
#: The molecule's largest half-extent fills this fraction of the half box.
FILL = 0.9
#: Canonical values at or above this are inside the contour.
SURFACE_LEVEL = 0.5
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
#: Canonicalizing takes up to about this many times the map's float32 size on top
#: of the map (masks, labels, distances, the crop; measured 1.9 at most over the
#: corpus of ``benchmarks/bench_bad_input.py``), plus a few MB of slabs.
MEMORY_FACTOR = 2

#: Yields, a slab at a time, the kept voxels' positions relative to the centre of
#: mass (Å, float64 ``(3, n)``: rows x, y, z) and their weights (float64 ``(n,)``).
Voxels = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]


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


def _along(rel: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """``axis @ rel`` for positions ``rel`` ``(3, n)``: three products, two sums.

    The statistics over slabs of voxels (here and in :func:`_pose`) stay out of
    BLAS: its threads busy-wait after each of the many small calls and slow the
    rest of the work down several times on a loaded machine, and its results
    depend on the thread count.
    """
    return rel[0] * axis[0] + rel[1] * axis[1] + rel[2] * axis[2]


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a @ b`` for two vectors, outside BLAS (see :func:`_along`)."""
    return float(np.einsum("i,i->", a, b))


def _spin_degenerate_plane(
    frame: np.ndarray, voxels: Voxels, axis: int, on_axis: float = 0.0
) -> tuple[np.ndarray, int, float]:
    """Fix the in-plane angle about ``axis`` when the other two spreads are equal.

    Equal spreads leave the angle about ``axis`` undetermined by second moments (as
    for any Cn-symmetric complex, n >= 3). The angular harmonics
    ``c_m = sum w exp(i m phi) / sum w`` for m = 2..8 pick it up: the strongest one
    sets the angle modulo 2 pi / m (m = 2 is kept: a pair only just inside the
    threshold still has a usable two-fold anisotropy), so the n-fold symmetric
    copies all give the same volume. Voxels within ``on_axis`` Å of the axis have
    no angle and are left out of the sums (not out of the total weight).

    Returns:
        ``(frame, m, strength)``: the rotated frame, the harmonic used and |c_m|.
    """
    a, b = [i for i in range(3) if i != axis]
    orders = range(2, 9)
    sums = np.zeros(len(orders), dtype=np.complex128)
    total = 0.0
    for rel, weights in voxels():
        pa, pb = _along(rel, frame[:, a]), _along(rel, frame[:, b])
        total += weights.sum()
        # A voxel on the axis has no angle: its arctan2 would be the angle of
        # rounding residue (1e-13 Å), which differs with the order of summation.
        squared = pa * pa + pb * pb
        off = squared > on_axis * on_axis
        # exp(i m phi) as powers of exp(i phi): a product each, not an exp
        unit = (pa[off] + 1j * pb[off]) / np.sqrt(squared[off])
        power, w = unit * unit, weights[off]
        for i in range(len(orders)):
            # two real sums: float64 @ complex128 takes a slow generic loop
            sums[i] += complex(_dot(w, power.real), _dot(w, power.imag))
            power *= unit
    harmonics = {m: sums[i] / total for i, m in enumerate(orders)}
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
    voxels: Voxels,
    margin: float = 1.0,
    spin_about: int | None = None,
) -> tuple[tuple[np.ndarray, ...], str]:
    """Primary rotation and alternatives when the principal frame is not determined.

    ``base`` columns are the principal axes (sign rule applied), ``skew`` the
    skewness along them; ``voxels`` visits the kept voxels. ``margin`` widens
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
            base, skew = base.copy(), skew.copy()
            base[:, turn] *= -1
            skew[turn] *= -1
        on_axis = 1e-7 * float(np.sqrt(max(evals[0], 0.0)))
        base, m, strength = _spin_degenerate_plane(base, voxels, spin_axis, on_axis)
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


@dataclass(frozen=True)
class _Pose:
    """Centre, principal frame and shape statistics of a molecule."""

    center: np.ndarray  # Å, xyz
    cov: np.ndarray  # 3x3, Å^2
    evals: np.ndarray  # principal spreads, largest first
    evecs: np.ndarray  # columns x', y', z' (sign rule applied, right-handed)
    skew: np.ndarray  # skewness along them
    span: np.ndarray  # extent of the kept voxels along them, Å
    radius: float  # RADIUS_QUANTILE of the kept voxels' distance from the centre
    count: int  # kept voxels


def _pose(mol: Molecule, path: str) -> _Pose:
    """Centre of mass, principal axes, skewness and extents of ``mol``, each
    accumulated in float64 over slabs of its voxels."""
    total, first = 0.0, np.zeros(3)
    for xyz, weights in mol.voxels(np.zeros(3)):
        total += weights.sum()
        first += [_dot(weights, row) for row in xyz]
    center = first / total
    cov = np.zeros((3, 3))
    for rel, weights in mol.voxels(center):
        weighted = rel * weights
        for j, k in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)):
            cov[j, k] += _dot(weighted[j], rel[k])
    cov = np.triu(cov) + np.triu(cov, 1).T
    cov /= total
    try:
        evals, evecs = np.linalg.eigh(cov)
    except np.linalg.LinAlgError as err:  # only for absurd voxel sizes or values
        raise MapFormatError(
            path,
            f"its pose cannot be computed ({err})",
            "check the map's voxel size and values",
        ) from None
    evals, evecs = evals[::-1], evecs[:, ::-1].copy()
    # Along x', y' and z0 = x' cross y' before the sign rule; flipping an axis only
    # negates its third moment and swaps its min and max.
    axes = evecs.copy()
    axes[:, 2] = np.cross(evecs[:, 0], evecs[:, 1])
    third, low, high = np.zeros(3), np.full(3, np.inf), np.full(3, -np.inf)
    count = int(np.count_nonzero(mol.mask))
    dist = np.empty(count, dtype=np.float32)
    done = 0
    for rel, weights in mol.voxels(center):
        for k in range(3):
            proj = _along(rel, axes[:, k])
            third[k] += _dot(weights, proj * proj * proj)  # not ** 3: pow() is slow
            low[k], high[k] = min(low[k], proj.min()), max(high[k], proj.max())
        n = len(weights)
        dist[done : done + n] = np.sqrt(_along(rel * rel, np.ones(3)))
        done += n
    sigma = np.sqrt(np.maximum(evals, 1e-12))
    skew = third / total / sigma**3
    signs = np.ones(3)
    for axis in (0, 1):
        if skew[axis] < 0:
            signs[axis] = -1.0
            evecs[:, axis] *= -1
    skew[:2] *= signs[:2]
    evecs[:, 2] = np.cross(evecs[:, 0], evecs[:, 1])
    skew[2] *= signs[0] * signs[1]
    radius = float(np.quantile(dist, RADIUS_QUANTILE, overwrite_input=True))
    del dist
    return _Pose(center, cov, evals, evecs, skew, high - low, radius, count)


def _check_memory(dmap: DensityMap) -> None:
    """Refuse a map that canonicalizing could not hold in the memory available."""
    need = MEMORY_FACTOR * dmap.data.nbytes
    room = available_memory()
    if room is not None and need > room:
        raise MapTooLargeError(
            dmap.path,
            f"canonicalizing its {'x'.join(map(str, dmap.shape[::-1]))} voxels "
            f"needs about {need / 2**20:,.0f} MiB, but only {room / 2**20:,.0f} MiB "
            "of memory is available",
            "free memory or use a machine with more, or bin the map to fewer "
            "voxels first",
        )


def _prepare(
    dmap: DensityMap,
    contour: float | None,
    grid: int,
    metadata: EntryMetadata | None,
    margin: float = 1.0,
) -> _Prepared:
    data = dmap.data
    path = dmap.path
    lo, hi = value_range(data, path)
    level, source = choose_contour(dmap, contour, metadata)
    check_contour(level, source, lo, hi, path)
    _check_memory(dmap)
    mol = find_molecule(dmap, level, source)
    pose = _pose(mol, path)
    evecs, evals, skew, center = pose.evecs, pose.evals, pose.skew, pose.center

    def voxels() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return mol.voxels(center)

    candidates, ambiguity = _candidate_poses(evecs, evals, skew, voxels)
    if margin > 1.0:  # a query: also the poses of the wider thresholds, and, for
        # a near-spherical map (whose principal axes may come in another order in
        # the stored copy), spins about each of the three axes
        extra: list[np.ndarray] = []
        for axis in (None, 0, 1, 2):
            wider, _ = _candidate_poses(
                evecs, evals, skew, voxels, margin, spin_about=axis
            )
            extra += [
                w
                for w in wider
                if not any(np.allclose(w, c) for c in (*candidates, *extra))
            ]
        candidates = (*candidates, *extra)[:MAX_CANDIDATES]
    vsize = mol.vsize
    # Scale from the radial distribution, not from the pose: a sphere holding
    # RADIUS_QUANTILE of the kept voxels fills FILL of the half box. A quantile, not
    # the maximum, so that one stray voxel does not change the scale.
    half_voxel = 0.5 * float(vsize.max())
    extent = pose.radius + half_voxel
    span = pose.span + 2 * half_voxel
    size = SizeFeatures(
        radius_of_gyration=float(np.sqrt(np.trace(pose.cov))),
        extents=(float(span[0]), float(span[1]), float(span[2])),
        volume=float(pose.count * np.prod(vsize)),
    )
    p99 = float(np.percentile(mol.data[mol.mask], 99, overwrite_input=True))
    scale = p99 - level if p99 > level else max(abs(level), 1.0)
    low = min(lo, level - abs(level) - 1.0)
    crop, crop_origin, crop_voxel = _crop(mol, extent, grid, low)
    return _Prepared(
        crop=crop,
        crop_origin=crop_origin,
        crop_voxel=crop_voxel,
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


def _crop(
    mol: Molecule, extent: float, grid: int, low: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The molecule plus a margin of two output voxels, dust set to ``low``,
    box-averaged towards the output voxel size.

    Returns:
        ``(crop, origin, voxel)``: float32 ``[z, y, x]``, the Å position of its
        voxel ``[0, 0, 0]`` (centre) and its Å per voxel, both xyz.
    """
    full, vsize = mol.full, mol.vsize
    out_voxel = 2.0 * extent / (FILL * grid)
    margin = np.ceil(2 * out_voxel / vsize).astype(int)[::-1]  # zyx
    start = np.asarray(mol.start)
    lo = np.maximum(start - margin, 0)
    hi = np.minimum(start + mol.mask.shape + margin, full.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    # keep a voxel when it is below the contour or in the molecule; dust -> low
    keep = full[box] < mol.level
    inner = tuple(
        slice(int(s - a), int(s - a + n))
        for s, a, n in zip(start, lo, mol.mask.shape, strict=True)
    )
    keep[inner] |= mol.mask
    crop = np.where(keep, full[box], low).astype(np.float32, copy=False)
    del keep
    factor = np.maximum(np.floor(out_voxel / vsize).astype(int), 1)  # xyz
    crop_origin = mol.origin + lo[::-1] * vsize
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
    return np.ascontiguousarray(crop, dtype=np.float32), crop_origin, vsize


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
        MapFormatError: the map is blank, nearly constant or pure noise (no
            connected piece of :data:`~ingest.contour.MIN_MOLECULE_VOXELS` at the
            contour), or the contour is not finite or outside the map's range.
        MapTooLargeError: the memory available cannot hold the work (checked
            before starting; a ``MemoryError`` becomes this one line too).
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
    try:
        prep = _prepare(dmap, contour, grid, metadata, margin)
        poses = prep.candidates if all_poses else prep.candidates[:1]
        return _volumes(prep, poses, grid)
    except MemoryError:
        raise MapTooLargeError(
            dmap.path,
            f"ran out of memory canonicalizing its "
            f"{'x'.join(map(str, dmap.shape[::-1]))} voxels",
            "free memory or use a machine with more, or bin the map to fewer "
            "voxels first",
        ) from None


def _volumes(
    prep: _Prepared, poses: tuple[np.ndarray, ...], grid: int
) -> list[CanonicalVolume]:
    """One :class:`CanonicalVolume` per pose of a prepared map."""
    return [
        CanonicalVolume(
            values=values,
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
        for index, (rotation, values) in enumerate(
            zip(poses, _render_poses(prep, poses, grid), strict=True)
        )
    ]


def _render_poses(
    prep: _Prepared, poses: tuple[np.ndarray, ...], grid: int
) -> list[np.ndarray]:
    """:func:`_render` of each pose. Candidate poses mostly differ from an
    earlier one by a signed permutation of the axes (the sign and order
    ambiguities of the principal axes): such a pose samples the same points as
    the earlier one, so its volume is the earlier one's voxels rearranged, not
    resampled (the same values to rounding, at a fraction of the cost)."""
    done: list[tuple[np.ndarray, np.ndarray]] = []
    out = []
    for rotation in poses:
        for first, values in done:
            swap = first.T @ rotation  # rotation = first @ swap
            if np.allclose(np.abs(swap), np.round(np.abs(swap)), rtol=0, atol=1e-9):
                out.append(_rearranged(values, np.round(swap).astype(int)))
                break
        else:
            out.append(_render(prep, rotation, grid))
            done.append((rotation, out[-1]))
    return out


def _rearranged(values: np.ndarray, swap: np.ndarray) -> np.ndarray:
    """The volume of pose ``first @ swap`` from pose ``first``'s ``values``
    (``[z, y, x]``), ``swap`` a signed permutation: voxel ``o`` (x, y, z) of
    the new one is voxel ``c + swap (o - c)`` of the old one, ``c`` the centre
    (flips and a transpose, no arithmetic)."""
    # source coordinate i (x, y, z) is output coordinate perm[i], flipped
    # where its sign is negative; array axis 2 - i holds coordinate i
    perm = np.abs(swap).argmax(axis=1)
    flipped = values[
        tuple(
            slice(None, None, -1 if swap[2 - a, perm[2 - a]] < 0 else 1)
            for a in range(3)
        )
    ]
    inverse = np.argsort(perm)
    return np.ascontiguousarray(
        flipped.transpose([2 - inverse[2 - k] for k in range(3)])
    )


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
