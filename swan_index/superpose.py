"""Superpose a search hit on its query: the rigid pose, in Å, that lays the
query's density on the hit's, and the files a user takes to ChimeraX.

The rotational fit of a search (:mod:`swan_index.fit`) scores each hit by its
best correlation over rotations but keeps no pose, and it compares volumes that
were each scaled to fill their box (the canonical volumes), which is right for a
shape score and wrong for a picture: a subunit and its complex would be drawn
the same size. So the pose of one picked hit is found again here, at one
physical scale:

1. Both maps are canonicalized (:func:`ingest.canonicalize`, at their contours):
   centre of mass, principal axes, Å per voxel.
2. **Search** (:func:`superpose`): the query's canonical volume is turned by its
   candidate poses and by the rotation grid of the fit
   (:func:`swan_index.fit.rotation_grid`, :data:`~swan_index.fit.FIT_ROTATIONS`)
   and laid, at its own Å per voxel, on a common grid of :data:`SEARCH_GRID`^3
   in the hit's canonical frame; for every rotation the best shift comes from
   one FFT cross-correlation with the hit. The best few, and the best few of
   the candidate poses, are refined with smaller and smaller turns
   (:data:`REFINE_DEGREES`) on a finer grid (:data:`REFINE_GRID`^3), then
   polished by a local optimisation of the six parameters (Powell,
   :func:`scipy.optimize.minimize`).
3. The pose, canonical frame to canonical frame, is written as one rigid
   transform of physical coordinates: ``x_hit = R x_query + t``
   (:class:`Superposition`).

What is compared is the canonical values (0 outside the contour, 0.5 to 1
inside), as the fit compares them, so two maps in different density units meet
alike; the correlation reported (:attr:`Superposition.correlation`) is their
Pearson correlation on the refined grid.

**Files** (:func:`pair_files`): the query resampled onto the hit's own grid
(same shape, voxel size and origin: it overlays the hit's map file in ChimeraX
as it is), written as MRC with labels saying it was resampled here; the hit's
map as stored (decompressed); and a ChimeraX command file that opens both at
their contours in two colours. :func:`pair_zip` packs them.
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.optimize import minimize
from scipy.spatial.transform import Rotation

from ingest.canonical import DEFAULT_GRID, FILL, CanonicalVolume, canonicalize
from ingest.mapio import DensityMap
from ingest.transform import resample_xyz
from swan_index.fit import FIT_ROTATIONS, rotation_grid

log = logging.getLogger(__name__)

#: Side of the common grid of the global search (every rotation of the grid).
SEARCH_GRID = 16
#: Side of the common grid the best poses are refined on.
REFINE_GRID = 32
#: Turns (degrees) of the local refinement, largest first, each about 12 axes.
REFINE_DEGREES = (8.0, 4.0, 2.0)
#: How many of the best rotations of the global search are refined (and as
#: many of the best candidate poses).
REFINE_TOP = 2
#: The common grid spans this many times the larger molecule's canonical box
#: (room for the shifts: the FFT's shifts wrap around).
MARGIN = 1.25
#: Side of the display grid of :func:`display_volumes`.
DISPLAY_GRID = 48
#: Colours of the pair, in the dashboard and in ChimeraX.
QUERY_COLOR = "#4c78a8"
HIT_COLOR = "#f58518"
#: What made the files (MRC labels, command file comments).
TOOL = "Cryo-SWAN search"


@dataclass(frozen=True, eq=False)
class Placed:
    """A map with its canonical frame (what a superposition needs of it).

    Attributes:
        dmap: the map as read.
        canon: its canonical volume in the primary pose (centre, axes, Å per
            voxel, the contour used).
        name: what to call it (file name or EMDB id).
    """

    dmap: DensityMap
    canon: CanonicalVolume
    name: str

    @classmethod
    def of(
        cls,
        dmap: DensityMap,
        contour: float | None = None,
        name: str | None = None,
        grid: int = DEFAULT_GRID,
    ) -> Placed:
        """Canonicalize ``dmap`` at ``contour`` (default: from the map, else
        automatic).

        Raises:
            IngestError: nothing in the map reaches the contour.
        """
        canon = canonicalize(dmap, contour, grid)
        return cls(dmap, canon, name or Path(dmap.path).name)

    @property
    def contour(self) -> float:
        """The contour level, map units."""
        return float(self.canon.contour)

    @property
    def half_box(self) -> float:
        """Half the side of the canonical box, Å (the molecule fills
        :data:`~ingest.canonical.FILL` of it)."""
        return 0.5 * self.canon.grid * self.canon.angstrom_per_voxel

    @property
    def radius(self) -> float:
        """The radius holding the molecule (as its canonical scale took it), Å."""
        return FILL * self.half_box


@dataclass(frozen=True)
class Superposition:
    """A rigid transform of the query onto a hit: ``x_hit = rotation @ x_query +
    translation`` for physical coordinates (Å, x y z).

    Attributes:
        rotation: 3x3, proper.
        translation: Å, ``(3,)``.
        correlation: Pearson correlation of the two canonical volumes on the
            common grid at this pose.
        canonical: the same correlation with the two canonical frames laid on
            each other unturned (what a superposition without the search gives).
    """

    rotation: np.ndarray
    translation: np.ndarray
    correlation: float
    canonical: float

    def apply(self, xyz: np.ndarray) -> np.ndarray:
        """Query points ``[..., 3]`` (Å) in the hit's frame."""
        return np.asarray(xyz, np.float64) @ self.rotation.T + self.translation

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: rotation (rows), translation, correlations."""
        return {
            "rotation": np.round(self.rotation, 6).tolist(),
            "translation": np.round(self.translation, 4).tolist(),
            "correlation": round(float(self.correlation), 4),
            "canonical_correlation": round(float(self.canonical), 4),
        }


# -- the pose search -------------------------------------------------------------------
def _points(n: int, spacing: float) -> torch.Tensor:
    """Centres of an ``n``^3 grid of ``spacing`` Å about 0: ``[n^3, 3]`` (x y z,
    x fastest, so a ``[n, n, n]`` reshape is ``[z, y, x]``)."""
    lin = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) * spacing
    z, y, x = torch.meshgrid(lin, lin, lin, indexing="ij")
    return torch.stack([x, y, z], dim=-1).reshape(-1, 3)


def _sample_canonical(
    canon: CanonicalVolume, points: torch.Tensor, n: int
) -> torch.Tensor:
    """``canon.values`` at canonical points ``[B, n^3, 3]`` (Å): ``[B, n^3]``,
    trilinear, 0 outside. ``grid_sample``'s coordinates are Å over half the box."""
    g = canon.grid
    vol = torch.from_numpy(np.asarray(canon.values, np.float32)).reshape(1, 1, g, g, g)
    coords = points.float() / (0.5 * g * canon.angstrom_per_voxel)
    out = []
    for part in coords.split(256):
        grid = part.reshape(len(part), n, n, n, 3)
        src = vol.expand(len(part), 1, g, g, g)
        out.append(F.grid_sample(src, grid, align_corners=False).flatten(1))
    return torch.cat(out)


class _Scorer:
    """The query turned onto the hit's canonical frame on an ``n``^3 grid of
    ``spacing`` Å, scored against the hit."""

    def __init__(self, query: Placed, hit: Placed, n: int, spacing: float) -> None:
        self.query, self.n = query, n
        self.points = _points(n, spacing)
        target = _sample_canonical(hit.canon, self.points[None], n)[0]
        target = (target - target.mean()).double()
        self.target = target / target.norm().clamp_min(1e-12)
        self.spacing = spacing
        self._target_fft = torch.fft.rfftn(self.target.reshape(n, n, n).float())

    def turned(
        self, rotations: torch.Tensor, shift: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The query at ``u_hit = T u_query + shift`` for each ``T`` of
        ``rotations`` ``[B, 3, 3]``: ``[B, n^3]``."""
        pts = self.points if shift is None else self.points - shift
        # u_query = T^T (u_hit - shift); as rows: (u_hit - shift) @ T, for every
        # T at once as one matrix product (a batched one of 3x3s is slow)
        b = len(rotations)
        flat = rotations.permute(1, 0, 2).reshape(3, 3 * b)
        turned = (pts.float() @ flat.float()).reshape(-1, b, 3).permute(1, 0, 2)
        return _sample_canonical(self.query.canon, turned, self.n)

    def best_shifts(self, rotations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For each rotation, the correlation at its best whole-voxel shift and
        that shift (Å): ``([B], [B, 3])``. One FFT cross-correlation per
        rotation (the shifts wrap around: the grid leaves room, :data:`MARGIN`)."""
        n = self.n
        scores, shifts = [], []
        for part in rotations.split(250):
            q = self.turned(part)
            q = q - q.mean(dim=1, keepdim=True)
            q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
            cc = torch.fft.irfftn(
                torch.fft.rfftn(q.reshape(-1, n, n, n), dim=(1, 2, 3)).conj()
                * self._target_fft,
                s=(n, n, n),
                dim=(1, 2, 3),
            ).reshape(len(part), -1)
            best, where = cc.max(dim=1)
            zyx = torch.stack(torch.unravel_index(where, (n, n, n)), dim=1)
            zyx = torch.where(zyx > n // 2, zyx - n, zyx)  # wrapped: negative
            scores.append(best.double())
            shifts.append(zyx.flip(1).double() * self.spacing)  # x y z, Å
        return torch.cat(scores), torch.cat(shifts)

    def correlation(self, rotation: np.ndarray, shift: np.ndarray) -> float:
        """Pearson correlation at one pose."""
        q = self.turned(
            torch.from_numpy(np.asarray(rotation, np.float64))[None],
            torch.from_numpy(np.asarray(shift, np.float64)),
        )[0].double()
        q = q - q.mean()
        return float((q @ self.target) / q.norm().clamp_min(1e-12))


def _local_turns(degrees: float) -> torch.Tensor:
    """Turns of ``degrees`` about the 12 axes through an icosahedron's
    vertices: ``[12, 3, 3]``."""
    phi = (1 + 5**0.5) / 2
    axes = np.array(
        [(0, a, b * phi) for a in (-1, 1) for b in (-1, 1)]
        + [(a, b * phi, 0) for a in (-1, 1) for b in (-1, 1)]
        + [(b * phi, 0, a) for a in (-1, 1) for b in (-1, 1)],
        dtype=np.float64,
    )
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    return torch.from_numpy(
        Rotation.from_rotvec(axes * np.radians(degrees)).as_matrix()
    )


def superpose(
    query: Placed, hit: Placed, rotations: int = FIT_ROTATIONS
) -> Superposition:
    """The rigid pose that lays ``query`` on ``hit`` (see the module docs).

    Args:
        query: the query map, canonicalized.
        hit: the hit's map, canonicalized.
        rotations: rotations of the global search (on top of the query's
            candidate poses); 0 tries the candidate poses only.

    Returns:
        The :class:`Superposition` (query physical -> hit physical).
    """
    qc, hc = query.canon, hit.canon
    half = MARGIN * max(query.half_box, hit.half_box)
    coarse = _Scorer(query, hit, SEARCH_GRID, 2 * half / SEARCH_GRID)
    # T turns the query's canonical frame into the hit's: a candidate pose C of
    # the query is the turn C^T R_query (identity for the primary pose)
    cands = [c.T @ qc.rotation for c in qc.candidates]
    mats = [torch.from_numpy(np.asarray(cands, np.float64))]
    if rotations > 0:
        mats.append(torch.from_numpy(rotation_grid(rotations).astype(np.float64)))
    turns = torch.cat(mats)
    with torch.no_grad():
        scores, _ = coarse.best_shifts(turns)
        fine = _Scorer(query, hit, REFINE_GRID, 2 * half / REFINE_GRID)
        # the best of the grid and, always, the best candidate poses: on the
        # coarse grid a wrong turn can outscore the right candidate (measured on
        # maps filling their box, EMD-3001 and EMD-3197: bench_superpose)
        keep = max(1, REFINE_TOP)
        n_cands = len(cands)
        top = torch.argsort(scores, descending=True)[:keep].tolist()
        top += torch.argsort(scores[:n_cands], descending=True)[:keep].tolist()
        best = (-2.0, np.eye(3), np.zeros(3))
        for j in dict.fromkeys(top):
            rot = turns[j]
            score, shift = fine.best_shifts(rot[None])
            score, shift = float(score[0]), shift[0]
            for degrees in REFINE_DEGREES:
                near = rot[None] @ _local_turns(degrees)
                s, sh = fine.best_shifts(near)
                k = int(torch.argmax(s))
                if float(s[k]) > score:
                    rot, score, shift = near[k], float(s[k]), sh[k]
            if score > best[0]:
                best = (score, rot.numpy(), shift.numpy())
        rot, shift = _polish(fine, best[1], best[2])
        corr = fine.correlation(rot, shift)
        canonical = fine.correlation(np.eye(3), np.zeros(3))
    # x_hit = c_h + R_h (T R_q^T (x_q - c_q) + d)
    rotation = hc.rotation @ rot @ qc.rotation.T
    translation = hc.center + hc.rotation @ shift - rotation @ qc.center
    return Superposition(rotation, translation, corr, canonical)


def canonical_superposition(query: Placed, hit: Placed) -> Superposition:
    """The two canonical frames laid on each other, unturned (the primary
    poses' centres and principal axes matched): what a superposition without
    the search gives, the baseline of ``benchmarks.bench_superpose``.

    Returns:
        The transform; its ``correlation`` and ``canonical`` are that of the
        frames, on the common grid of :func:`superpose`'s refinement.
    """
    half = MARGIN * max(query.half_box, hit.half_box)
    with torch.no_grad():
        corr = _Scorer(query, hit, REFINE_GRID, 2 * half / REFINE_GRID).correlation(
            np.eye(3), np.zeros(3)
        )
    qc, hc = query.canon, hit.canon
    rotation = hc.rotation @ qc.rotation.T
    translation = hc.center - rotation @ qc.center
    return Superposition(rotation, translation, corr, corr)


def _polish(
    scorer: _Scorer, rotation: np.ndarray, shift: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Local optimisation of the six parameters (turn vector in radians, shift
    in Å) from a pose; the start is kept when nothing better is found."""

    def pose(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return rotation @ Rotation.from_rotvec(p[:3]).as_matrix(), shift + p[3:]

    def loss(p: np.ndarray) -> float:
        return -scorer.correlation(*pose(p))

    start = loss(np.zeros(6))
    res = minimize(
        loss,
        np.zeros(6),
        method="Powell",
        options={"xtol": 1e-3, "ftol": 1e-5, "maxfev": 400},
    )
    if res.fun >= start:
        return rotation, shift
    return pose(res.x)


# -- resampling ----------------------------------------------------------------------
def _background(dmap: DensityMap) -> float:
    """A value for space outside the map: the median of its first slab (as
    :func:`ingest.transform.rotate_map` fills)."""
    return float(np.median(dmap.data[0]))


def resample_query(
    query: DensityMap, sup: Superposition, like: DensityMap
) -> np.ndarray:
    """The query's density on ``like``'s grid (the hit's), through the
    superposition: float32 ``[z, y, x]`` of ``like.shape``, trilinear.

    Args:
        query: the query map.
        sup: from :func:`superpose`.
        like: the map whose grid (shape, voxel size, origin) to fill.
    """
    v_q = np.asarray(query.voxel_size, np.float64)
    v_h = np.asarray(like.voxel_size, np.float64)
    o_q = np.asarray(query.origin, np.float64)
    o_h = np.asarray(like.origin, np.float64)
    # hit index n -> x_h = o_h + v_h n -> x_q = R^T (x_h - t) -> (x_q - o_q) / v_q
    r_t = sup.rotation.T
    matrix = np.diag(1.0 / v_q) @ r_t @ np.diag(v_h)
    offset = (r_t @ (o_h - sup.translation) - o_q) / v_q
    # one voxel of the map's own border around it: a point a rounding error
    # outside the box (a map laid on itself) takes the border's value, not the fill
    padded = np.pad(query.data, 1, mode="edge")
    return resample_xyz(
        padded, matrix, offset + 1.0, like.shape, order=1, cval=_background(query)
    )


@dataclass(frozen=True)
class PairVolumes:
    """The pair on one display grid in the hit's frame, in map units.

    Attributes:
        query, hit: ``[n, n, n]`` densities (``[z, y, x]``).
        spacing: Å per voxel of the grid.
        query_level, hit_level: the maps' contours.
        query_range, hit_range: ``(low, high)`` levels a contour control offers.
    """

    query: np.ndarray
    hit: np.ndarray
    spacing: float
    query_level: float
    hit_level: float
    query_range: tuple[float, float]
    hit_range: tuple[float, float]


def _on_grid(
    dmap: DensityMap,
    rotation: np.ndarray,
    translation: np.ndarray,
    corner: np.ndarray,
    n: int,
    spacing: float,
) -> np.ndarray:
    """``dmap`` at the points ``corner + spacing * idx`` of the hit's frame,
    where map point ``x`` sits at ``rotation @ x + translation``; low-passed
    first when the grid is coarser than the map (against aliasing)."""
    v = np.asarray(dmap.voxel_size, np.float64)
    o = np.asarray(dmap.origin, np.float64)
    data = dmap.data
    sigma = 0.4 * spacing / v[::-1]  # z y x
    if np.any(sigma > 0.5):
        data = ndimage.gaussian_filter(data, np.where(sigma > 0.5, sigma, 0.0))
    r_t = rotation.T
    matrix = np.diag(1.0 / v) @ r_t * spacing
    offset = (r_t @ (corner - translation) - o) / v
    return resample_xyz(
        data, matrix, offset, (n, n, n), order=1, cval=_background(dmap)
    )


def _level_range(volume: np.ndarray, level: float) -> tuple[float, float]:
    """Levels a contour control offers: from the median to the maximum (and
    always the contour)."""
    lo, hi = float(np.median(volume)), float(volume.max())
    return (min(lo, level), max(hi, level))


def display_volumes(
    query: Placed, hit: Placed, sup: Superposition, n: int = DISPLAY_GRID
) -> PairVolumes:
    """Both maps on one ``n``^3 grid along the hit's axes, about the midpoint
    of their centres of mass (the query's where the superposition puts it),
    wide enough for both molecules: what a 3D view draws.

    Args:
        query, hit: the maps.
        sup: the query's pose on the hit.
        n: grid side.
    """
    hit_centre = np.asarray(hit.canon.center, np.float64)
    query_centre = sup.apply(query.canon.center)
    mid = 0.5 * (hit_centre + query_centre)
    reach = 0.5 * float(np.linalg.norm(query_centre - hit_centre))
    half = 1.1 * (max(query.radius, hit.radius) + reach)
    spacing = 2 * half / (n - 1)
    corner = mid - half
    hit_vol = _on_grid(hit.dmap, np.eye(3), np.zeros(3), corner, n, spacing)
    query_vol = _on_grid(query.dmap, sup.rotation, sup.translation, corner, n, spacing)
    return PairVolumes(
        query=query_vol,
        hit=hit_vol,
        spacing=spacing,
        query_level=query.contour,
        hit_level=hit.contour,
        query_range=_level_range(query_vol, query.contour),
        hit_range=_level_range(hit_vol, hit.contour),
    )


# -- files -------------------------------------------------------------------------
def safe_name(text: str, default: str = "map") -> str:
    """A file name made of letters, digits, ``.``, ``_`` and ``-`` only."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(text)).name).strip("._")
    return base[:80] or default


def _stem(name: str) -> str:
    """A file name without its map suffixes (``.map``, ``.mrc.gz`` ...)."""
    stem = safe_name(name)
    for suffix in (".gz", ".bz2", ".map", ".mrc", ".ccp4", ".bin"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem or "map"


def mrc_bytes(
    data: np.ndarray, like: DensityMap, labels: list[str] | tuple[str, ...] = ()
) -> bytes:
    """An MRC2014 file (float32, axes x y z) of ``data`` on ``like``'s grid:
    its voxel size, and its origin in the ORIGIN field (N*START 0), which is
    where ChimeraX, as :func:`ingest.read_map`, places voxel ``[0, 0, 0]``.

    Args:
        data: ``[z, y, x]`` of ``like.shape``.
        like: the map whose grid it is.
        labels: header labels (80 characters each, 10 at most).
    """
    if tuple(data.shape) != like.shape:
        raise ValueError(f"data of shape {data.shape} is not on a grid of {like.shape}")
    labels = [str(t)[:80] for t in labels][:10]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "map.mrc"
        with mrcfile.new(path) as mrc:
            mrc.set_data(np.ascontiguousarray(data, dtype=np.float32))
            mrc.voxel_size = tuple(float(v) for v in like.voxel_size)
            mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = (
                float(o) for o in like.origin
            )
            mrc.header.nlabl = 0  # ours first, in place of mrcfile's own
            mrc.header.label[:] = b""
            for label in labels:
                mrc.add_label(label)
        return path.read_bytes()


def plain_bytes(path: str | Path) -> bytes:
    """A map file's bytes, decompressed when gzip or bzip2 (ChimeraX opens
    MRC files, not compressed ones)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    if raw[:3] == b"BZh":
        return bz2.decompress(raw)
    return raw


def _quoted(name: str) -> str:
    return f'"{name}"' if re.search(r"\s", name) else name


def chimerax_script(
    hit_file: str,
    query_file: str,
    hit_level: float,
    query_level: float,
    hit_name: str,
    query_name: str,
    correlation: float | None = None,
) -> str:
    """A ChimeraX command file (.cxc) that opens the hit's map (#1) and the
    resampled query (#2) as surfaces at their levels, in two colours (the
    query half transparent). Paths are relative to the command file's folder
    (ChimeraX runs a command file from its own folder); the model numbers are
    those of a session with no models open, which the file's comments say.

    Args:
        hit_file, query_file: file names beside the command file.
        hit_level, query_level: contour levels, map units.
        hit_name, query_name: what to call them in the comments.
        correlation: of the superposition, for the comments.
    """
    fit = "" if correlation is None else f", correlation {correlation:.3f}"
    return "\n".join(
        [
            f"# {TOOL}: query {query_name} superposed on hit {hit_name}",
            f"# (rigid fit{fit}); the query was resampled into the hit's frame by "
            f"{TOOL}.",
            "# Open in a session with no models (the hit becomes #1, the query #2).",
            f"open {_quoted(hit_file)}",
            f"open {_quoted(query_file)}",
            f"volume #1 style surface level {hit_level:.6g} color {HIT_COLOR}",
            f"volume #2 style surface level {query_level:.6g} color {QUERY_COLOR} "
            "transparency 0.5",
            "view",
            "",
        ]
    )


def pair_files(
    query: Placed,
    hit: Placed,
    sup: Superposition,
    hit_path: str | Path | None = None,
    query_level: float | None = None,
    hit_level: float | None = None,
) -> dict[str, bytes]:
    """The superposed pair as files: the query resampled onto the hit's grid
    (MRC, labelled as resampled), the hit's map (``hit_path``'s bytes,
    decompressed; left out when ``None``) and the ChimeraX command file that
    opens both at their levels.

    Args:
        query, hit: the maps.
        sup: the query's pose on the hit (:func:`superpose`).
        hit_path: the hit's map file.
        query_level, hit_level: contour levels (default: the maps' contours).

    Returns:
        ``{file name: bytes}``, the command file last.
    """
    q_level = query.contour if query_level is None else float(query_level)
    h_level = hit.contour if hit_level is None else float(hit_level)
    hit_stem, query_stem = _stem(hit.name), _stem(query.name)
    query_file = f"{query_stem}_on_{hit_stem}.mrc"
    hit_file = f"{hit_stem}.mrc"
    data = resample_query(query.dmap, sup, hit.dmap)
    labels = [
        f"{TOOL}: {query.name} resampled"[:80],
        f"into the frame of {hit.name} (rigid fit, corr {sup.correlation:.3f})"[:80],
        "not a deposited map: a copy turned and interpolated (trilinear)",
    ]
    files = {query_file: mrc_bytes(data, hit.dmap, labels)}
    if hit_path is not None:
        files[hit_file] = plain_bytes(hit_path)
    else:  # the user opens the hit's own file, named as it was stored
        hit_file = safe_name(Path(hit.dmap.path).name)
    script = chimerax_script(
        hit_file, query_file, h_level, q_level, hit.name, query.name, sup.correlation
    )
    files[f"{query_stem}_on_{hit_stem}.cxc"] = script.encode()
    return files


def pair_zip(files: dict[str, bytes]) -> bytes:
    """A zip archive of ``{name: bytes}`` (deflated)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()
