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
learned vectors score). Two further steps, each measured on the benchmark's
incomplete and conformational queries against the 53 held-out references
(seed 0; precision@1 of the fit alone):

* the ``FIT_REFINE`` best-fitting entries also try rotations within 10 degrees
  of their two best (the grid leaves up to 16 degrees between rotations, which
  matters for thin maps): 0.85 / 0.88 -> 0.90 / 0.92, as 8,000 grid rotations
  would give at a fraction of the cost;
* each entry's ``FIT_KEEP`` best rotations are tried shifted by up to
  ``FIT_SHIFT`` voxels per axis, because the centre of mass of a map with a part
  missing is not its relative's: 0.79 -> 0.85 on the incomplete ones.

The rotation grid is the super-Fibonacci spiral of Alexa (CVPR 2022): written
out here because it is a few lines and neither SciPy nor PyTorch has a
deterministic near-uniform SO(3) sample of arbitrary size.

The query is turned by :func:`swan_index.turn.turn` (a compiled trilinear loop,
``grid_sample``'s values without its cost); the shifted correlations are a
grouped 3D convolution, their window sums :func:`swan_index.turn.window_sums`.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation

from swan_index.prepare import shrink
from swan_index.ranking import Ranking
from swan_index.turn import turn, window_sums

log = logging.getLogger(__name__)

#: Side of the cube the fit compares at (the previews are box-averaged to it).
FIT_GRID = 16
#: Rotations of the query tried (on top of its candidate poses).
FIT_ROTATIONS = 2000
#: Per entry, its best rotations are also tried shifted by up to this many
#: voxels (of the fit grid) along each axis: the centre of mass of a map with a
#: part missing is not its relative's.
FIT_SHIFT = 1
#: How many of each entry's best rotations are tried shifted.
FIT_KEEP = 4
#: Entries (the best-fitting) whose best rotations are refined locally.
FIT_REFINE = 32
_CHUNK = 1000
#: Grid rotations whose local turns (:meth:`FitQuery._refine`) a query keeps
#: for its next search (each ``len(LOCAL_ANGLES) * 12`` turned cubes).
FIT_LOCAL_MEMO = 64
#: Bytes of turned queries a :class:`FitCache` keeps: six queries of 2,018
#: rotations at about 72 MB each (float32 rows 33 MB, their bfloat16 copy 16.5
#: MB, the local turns kept at their most 26 MB).
FIT_CACHE_BYTES = 448 * 2**20


def comparable(side: int, grid: int = FIT_GRID) -> bool:
    """Whether a cube of ``side`` can be box-averaged to ``grid``."""
    return side >= grid and side % grid == 0


def fit_query(volumes: Any) -> FitQuery | None:
    """:class:`FitQuery` of ``volumes``, or ``None`` (logged) when there are none
    or they cannot be compared at :data:`FIT_GRID` (an encoder of another grid)."""
    if volumes is None:
        return None
    try:
        return FitQuery(volumes)
    except ValueError as exc:
        log.warning("searching without the rotational fit: %s", exc)
        return None


def apply_fit(ranking: Ranking, fit: FitQuery | None) -> None:
    """The fit stage of a search, in place (between :meth:`Store.rank` made with
    ``fit=True`` and :meth:`Store.hits`): the ``ranking.fit_rows`` entries get
    ``fit_weight * (fit - shape)`` added to their score, where ``fit`` is the best
    correlation of the query's turned volumes with their previews (entries
    without a comparable preview keep the learned score); only they stay in the
    running. Nothing happens when the ranking was made without the fit.

    Args:
        ranking: from :meth:`Store.rank`.
        fit: the query's turned volumes (:func:`fit_query`), or ``None`` (then
            the fit rows keep their learned scores).
    """
    if ranking.fit_rows is None:
        return
    ranking.fit_of = np.full(len(ranking.cand), np.nan)
    rows = ranking.fit_rows
    if fit is not None:
        previews = ranking.previews
        have = [
            j
            for j in rows
            if int(ranking.cand[j]) in previews
            and comparable(previews[int(ranking.cand[j])].shape[0], fit.grid)
        ]
        if have:
            ranking.fit_of[have] = fit.score(
                [previews[int(ranking.cand[j])] for j in have]
            )
            ranking.score[have] += ranking.fit_weight * (
                ranking.fit_of[have] - ranking.shape[have]
            )
    keep = np.zeros(len(ranking.cand), bool)
    keep[rows] = True
    ranking.score = np.where(keep, ranking.score, -np.inf)
    ranking.fit_rows = None  # applied once


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
    x = x - x.mean(dim=-1, keepdim=True)
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


@functools.lru_cache(maxsize=2)
def _grid_rotations(n: int) -> np.ndarray:
    """:func:`rotation_grid` (``n``), kept between queries (read-only)."""
    mats = rotation_grid(n)
    mats.flags.writeable = False
    return mats


def _turn(
    volume: torch.Tensor, mats: np.ndarray, unit: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``volume`` ``[g, g, g]`` turned by each of ``mats`` ``[R, 3, 3]``: rows
    ``[R, g^3]`` (with ``unit``, zero-mean unit rows), their means and norms
    ``[R, 1]`` (:func:`swan_index.turn.turn`, trilinear as ``grid_sample``)."""
    return turn(volume.numpy(), mats, unit=unit)


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
        if not comparable(vols.shape[-1], grid):
            raise ValueError(
                f"volumes of side {vols.shape[-1]} cannot be compared at {grid}^3: "
                f"use a multiple of {grid}"
            )
        self.grid = grid
        self._small = torch.from_numpy(np.stack([shrink(v, grid) for v in vols]))
        n_poses = len(self._small)
        # row r is volume _source[r] turned by _turn[r]: the candidate poses as
        # they are, then the primary pose in every rotation of the grid
        self._source = torch.zeros(n_poses + max(rotations, 0), dtype=torch.long)
        self._source[:n_poses] = torch.arange(n_poses)
        turns = [torch.eye(3).expand(n_poses, 3, 3)]
        # unit rows for the scoring, and what turns them back into volumes
        raw = self._small.flatten(1)
        mean = [raw.mean(dim=1, keepdim=True)]
        norm = [(raw - mean[0]).norm(dim=1, keepdim=True).clamp_min(1e-12)]
        rows = [(raw - mean[0]) / norm[0]]
        if rotations > 0:
            mats = _grid_rotations(rotations)
            turns.append(torch.tensor(mats))
            turned = _turn(self._small[0], mats, True)
            for got, part in zip((rows, mean, norm), turned, strict=True):
                got.append(part)
        self._turn = torch.cat(turns)
        self._rows = _Rows(torch.cat(rows))  # [P + R, grid^3]
        self._mean = torch.cat(mean)
        self._norm = torch.cat(norm)
        # row -> (shift, its local turns [len(_local_turns()), grid^3] and their
        # window sums) (see _refine)
        self._near: OrderedDict[int, tuple] = OrderedDict()
        self._near_lock = threading.Lock()

    def forget(self) -> None:
        """Drop the local turns kept between searches (as a first search)."""
        with self._near_lock:
            self._near.clear()

    @property
    def nbytes(self) -> int:
        """Bytes held, counting the local turns kept at their most."""
        sums = 2 * 8 * (2 * FIT_SHIFT + 1) ** 3  # window sums, float64
        near = FIT_LOCAL_MEMO * len(LOCAL_ANGLES) * 12 * (self.grid**3 * 4 + sums)
        held = (self._small, self._turn, self._mean, self._norm)
        fixed = sum(t.numel() * t.element_size() for t in held)
        return fixed + self._rows.nbytes + near

    def __len__(self) -> int:
        return len(self._rows)

    def score(
        self,
        previews: Sequence[np.ndarray] | np.ndarray,
        shift: int = FIT_SHIFT,
        keep: int = FIT_KEEP,
        refine: int = FIT_REFINE,
    ) -> np.ndarray:
        """Best Pearson correlation of the query over its rotations with each of
        ``previews`` ``[N, g, g, g]`` (g a multiple of the fit grid): ``[N]``.

        Three steps: every rotation against every entry; for the ``refine``
        entries that fit best, rotations within :data:`LOCAL_ANGLES` of their two
        best (the grid leaves up to 16 degrees between rotations, which matters
        for thin maps); then each entry's ``keep`` best rotations shifted by up to
        ``shift`` voxels along each axis (0: no shifts).
        """
        if not len(previews):
            return np.zeros(0, np.float32)
        bad = [p.shape for p in previews if not comparable(p.shape[0], self.grid)]
        if bad:
            raise ValueError(
                f"previews of shape {bad[0]} cannot be compared at "
                f"{self.grid}^3: use a multiple of {self.grid}"
            )
        if len(previews) > _CHUNK:  # bounded memory for a large fit_top
            return np.concatenate(
                [
                    self.score(previews[i : i + _CHUNK], shift, keep, refine)
                    for i in range(0, len(previews), _CHUNK)
                ]
            )
        ent = _entry_rows(previews, self.grid)
        keep = max(1, min(keep, len(self._rows)))
        with torch.no_grad():
            which, corr = self._best_rows(ent, keep)  # [N, keep], best first
            # each kept rotation at its best shift (without shifts: as it is)
            if shift > 0:
                flat = which.reshape(-1)
                vols = self._rows.f32[flat] * self._norm[flat] + self._mean[flat]
                vols = vols.reshape(len(ent), keep, -1)
                shifted = _shift_corr(vols, ent, self.grid, shift)
            else:
                shifted = corr.clone()
            if refine > 0:
                self._refine(which, corr, shifted, ent, refine, shift)
            top = torch.maximum(corr.max(dim=1).values, shifted.max(dim=1).values)
        return np.minimum(top.numpy(), 1.0)  # float32 rounding can pass 1

    def _best_rows(
        self, ent: torch.Tensor, keep: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each entry's ``keep`` best rows (rotations) and their correlations,
        ``[N, keep]`` each, best first (:meth:`_Rows.best`)."""
        return self._rows.best(ent, keep)

    def _refine(
        self,
        which: torch.Tensor,
        corr: torch.Tensor,
        shifted: torch.Tensor,
        ent: torch.Tensor,
        n: int,
        shift: int,
    ) -> None:
        """For the ``n`` best-fitting entries, try rotations near their two best
        (each scored at its best shift); the best replaces the entry's last kept
        rotation (in place: its correlation, and in ``shifted`` its best over
        shifts) when it beats it at its best shift."""
        local = _local_turns()
        g = self.grid
        js = torch.argsort(corr[:, 0], descending=True)[:n]
        rows = which[js, : min(2, which.shape[1])].reshape(-1)
        # (entries that fit alike share best rotations: each is turned once)
        turned, total, square = self._near_turns(rows.tolist(), local, shift)
        cand = turned.reshape(len(js), -1, g**3)
        sums = (total.reshape(len(js), -1), square.reshape(len(js), -1))
        c = _shift_corr(cand, ent[js], g, shift, sums)  # [n, candidates]
        score, k = c.max(dim=1)
        # against the last kept rotation scored the same way (at its best shift)
        better = score > shifted[js, -1]
        upd = js[better]
        pick = cand[better, k[better]]
        corr[upd, -1] = (_unit_rows(pick) * ent[upd]).sum(dim=-1)  # unshifted
        shifted[upd, -1] = score[better]

    def _near_turns(
        self, rows: list[int], local: torch.Tensor, shift: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each of ``rows`` (its turn) followed by each of the small turns
        ``local``, as :meth:`_refine` tries them: the volumes ``[len(rows),
        len(local), g^3]`` and their :func:`~swan_index.turn.window_sums` for
        ``shift`` (sums and sums of squares, ``[len(rows), len(local) * S]``).
        A query searched again (a stored entry, from a server's cache) mostly
        meets the same best rotations: the last :data:`FIT_LOCAL_MEMO` are kept.
        """
        g = self.grid
        with self._near_lock:
            out = {
                r: self._near[r]
                for r in rows
                if r in self._near and self._near[r][0] == shift
            }
            for r in out:
                self._near.move_to_end(r)
        todo = list(dict.fromkeys(r for r in rows if r not in out))
        if todo:
            idx = torch.tensor(todo)
            mats = (self._turn[idx][:, None] @ local[None]).reshape(-1, 3, 3)
            src = self._source[idx].repeat_interleave(len(local))
            turned = torch.empty(len(mats), g**3)
            for s in src.unique().tolist():
                sel = (src == s).nonzero().flatten()
                turned[sel] = _turn(self._small[s], mats[sel].numpy(), False)[0]
            total, square = (
                torch.from_numpy(a).reshape(len(todo), -1)
                for a in window_sums(turned.reshape(-1, g, g, g).numpy(), shift)
            )
            turned = turned.reshape(len(todo), len(local), g**3)
            with self._near_lock:
                for i, r in enumerate(todo):
                    out[r] = self._near[r] = (shift, turned[i], total[i], square[i])
                while len(self._near) > FIT_LOCAL_MEMO:
                    self._near.popitem(last=False)
        return tuple(torch.stack([out[r][i] for r in rows]) for i in (1, 2, 3))


@functools.lru_cache(maxsize=1)
def _bf16_products() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively: oneDNN takes
    bfloat16 here and the CPU has bfloat16 instructions (``avx512_bf16`` or
    ``amx_bf16``; elsewhere oneDNN emulates them, no faster than float32)."""
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
    except (AttributeError, RuntimeError):
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


#: Unit roundoff of a bfloat16 (8 significant bits).
_BF16_U = 2.0**-8
#: Unit roundoff of a float32 (24 significant bits).
_F32_U = 2.0**-24


class _Rows:
    """The query's turned rows (zero-mean, unit, float32), with a bfloat16 copy
    to pick each entry's best rotations from when few entries are scored.

    Why: scoring every rotation against every entry reads all the rows, 33 MB
    of float32 at 2,018 rotations of 16^3, once a search, whatever the number of
    entries: with a few entries (a small store, or a search re-scoring few
    hits) that read is the cost. The bfloat16 copy is half of it and this CPU
    multiplies it natively (oneDNN), about three times faster. :meth:`best`
    stays exact: the bfloat16 product only rules out the rows that cannot be
    among an entry's best (by a bound on its rounding), and the rows left are
    scored in float32. With many entries the product is compute-bound and
    the rows left are most of them: one float32 product. Where bfloat16 is
    not native there is no copy.
    """

    def __init__(self, rows: torch.Tensor) -> None:
        self.f32 = rows.contiguous()
        self.hi: torch.Tensor | None = None
        if _bf16_products():
            self.hi = rows.to(torch.bfloat16)
            wide = self.hi.float()
            # |hi| and |row - hi|, largest over the rows: for the rounding bound
            self._hi_norm = float(wide.norm(dim=1).max())
            self._gap = float(torch.sub(rows, wide, out=wide).norm(dim=1).max())

    def __len__(self) -> int:
        return len(self.f32)

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        held = [self.f32] + ([self.hi] if self.hi is not None else [])
        return sum(t.numel() * t.element_size() for t in held)

    def best(self, ent: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each of ``ent``'s (zero-mean unit rows ``[N, D]``, float32) ``keep``
        best rows and their correlations, ``[N, keep]`` each, best first: what
        the float32 product ``ent @ rows.T`` gives."""
        if self.hi is None or len(ent) > _BF16_MAX_ENTRIES:
            # one product with the rows as its transposed second operand: it reads
            # them once, a third faster than ``rows @ ent.T`` (2,018 rows, 6 entries)
            best, which = (ent @ self.f32.T).topk(keep, dim=1)
            return which, best.contiguous()
        e16 = ent.to(torch.bfloat16)
        approx = (e16 @ self.hi.T).float()  # [N, rows], rounded to bfloat16
        # |ent . row - approx| <= |ent - e16| |hi| + |ent| |row - hi| (the inputs'
        # rounding) + the float32 sum's rounding + the bfloat16 result's (2u:
        # rounded to nearest or truncated)
        e16_norm = e16.float().norm(dim=1, keepdim=True)
        bound = (
            (ent - e16.float()).norm(dim=1, keepdim=True) * self._hi_norm
            + ent.norm(dim=1, keepdim=True) * self._gap
            + ent.shape[1] * _F32_U * 1.01 * self._hi_norm * e16_norm
            + 2 * _BF16_U * 1.01 * (approx.abs() + 1e-6)
        )
        # keep rows have a lower bound >= floor, so the keep best have values
        # >= floor and upper bounds >= floor: no row of theirs is ruled out
        floor = (approx - bound).topk(keep, dim=1).values[:, -1:]
        n, j = (approx + bound >= floor).nonzero(as_tuple=True)
        # the rows left (a few per entry, shared by entries alike) in float32
        uniq, col = j.unique(return_inverse=True)
        scored = ent @ self.f32[uniq].T  # [N, len(uniq)]
        exact = torch.full_like(approx, -torch.inf)
        exact[n, j] = scored[n, col]
        best, which = exact.topk(keep, dim=1)
        return which, best.contiguous()


#: Up to this many entries :meth:`_Rows.best` picks rows by the bfloat16 product.
_BF16_MAX_ENTRIES = 32


class FitCache:
    """Turned queries (:class:`FitQuery`) of stored entries, kept for the next
    search of the same :class:`~swan_index.query.Query` object (a server keeps
    its stored entries' queries: the same entry searched again, with another
    filter or ``k``, skips turning its volume through every rotation, about
    0.1 s of CPU). Other queries (uploads, files) are turned and not kept.
    Least recently used first out, bounded in bytes; thread-safe. A query that
    is gone is never matched.
    """

    def __init__(self, max_bytes: int = FIT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[int, tuple[weakref.ref, FitQuery]] = OrderedDict()
        self._bytes = 0

    def get(self, query: Any) -> FitQuery | None:
        """``query.fit()``, kept or computed (then kept)."""
        if getattr(query, "entry_id", None) is None:
            return query.fit()
        key = id(query)
        with self._lock:
            item = self._items.get(key)
            if item is not None and item[0]() is query:
                self._items.move_to_end(key)
                return item[1]
        fit = query.fit()
        if fit is None or fit.nbytes > self.max_bytes:
            return fit
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1].nbytes
            self._items[key] = (weakref.ref(query), fit)
            self._bytes += fit.nbytes
            while self._bytes > self.max_bytes:
                self._bytes -= self._items.popitem(last=False)[1][1].nbytes
        return fit


#: ``id(preview) -> (weak reference to it, its unit row)``: the fit rows of
#: read-only previews (a store's :class:`~swan_index.store_search.PreviewCache`
#: hands out the same arrays search after search), kept while they live.
_ENTRY_ROWS: dict[int, tuple[weakref.ref, torch.Tensor]] = {}
_ENTRY_ROWS_LOCK = threading.RLock()  # a collection may call back inside it


def _entry_rows(previews: Sequence[np.ndarray] | np.ndarray, g: int) -> torch.Tensor:
    """``[N, g^3]``: each preview box-averaged to ``g``^3 as a zero-mean unit row
    (:func:`_shrink_all`, :func:`_unit_rows`); a read-only preview's row is
    made once and kept while the preview lives (about 0.2 ms an entry less a
    search for the hits a server meets again)."""
    if isinstance(previews, np.ndarray):
        return _unit_rows(torch.from_numpy(_shrink_all(previews, g)).flatten(1))
    rows: list[torch.Tensor | None] = [None] * len(previews)
    with _ENTRY_ROWS_LOCK:
        for i, p in enumerate(previews):
            item = _ENTRY_ROWS.get(id(p))
            if item is not None and item[0]() is p and item[1].shape[0] == g**3:
                rows[i] = item[1]
    todo = [i for i, r in enumerate(rows) if r is None]
    if todo:
        made = _unit_rows(
            torch.from_numpy(_shrink_all([previews[i] for i in todo], g)).flatten(1)
        )
        with _ENTRY_ROWS_LOCK:
            for i, row in zip(todo, made, strict=True):
                rows[i] = row
                p = previews[i]
                if isinstance(p, np.ndarray) and not p.flags.writeable:
                    key = id(p)
                    _ENTRY_ROWS[key] = (weakref.ref(p, _forget_row(key)), row)
    return torch.stack(rows)


def _forget_row(key: int) -> Any:
    """Weak-reference callback: drop ``key``'s kept row (unless replaced)."""

    def forget(ref: weakref.ref) -> None:
        with _ENTRY_ROWS_LOCK:
            item = _ENTRY_ROWS.get(key)
            if item is not None and item[0] is ref:
                del _ENTRY_ROWS[key]

    return forget


def _shrink_all(previews: Sequence[np.ndarray] | np.ndarray, g: int) -> np.ndarray:
    """``previews`` box-averaged to ``g``^3, ``[N, g, g, g]`` (in one call when they
    share a side, as a store's do)."""
    sides = {p.shape[0] for p in previews}
    if len(sides) > 1:
        return np.stack([shrink(np.asarray(p, np.float32), g) for p in previews])
    stack = torch.from_numpy(np.asarray(previews, np.float32))
    return F.avg_pool3d(stack[:, None], sides.pop() // g)[:, 0].numpy()


#: Angles (degrees) of the local rotations :meth:`FitQuery.score` refines with,
#: each about the 12 axes through an icosahedron's vertices.
LOCAL_ANGLES = (5.0, 10.0)


@functools.lru_cache(maxsize=1)
def _local_turns() -> torch.Tensor:
    """Small rotations ``[24, 3, 3]``: :data:`LOCAL_ANGLES` about 12 axes (made
    once; read-only)."""
    phi = (1 + 5**0.5) / 2
    axes = np.array(
        [(0, s1, s2 * phi) for s1 in (-1, 1) for s2 in (-1, 1)]
        + [(s1, s2 * phi, 0) for s1 in (-1, 1) for s2 in (-1, 1)]
        + [(s2 * phi, 0, s1) for s1 in (-1, 1) for s2 in (-1, 1)],
        dtype=np.float64,
    )
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    vecs = np.concatenate([axes * np.radians(a) for a in LOCAL_ANGLES])
    return torch.from_numpy(Rotation.from_rotvec(vecs).as_matrix().astype(np.float32))


def _shift_corr(
    vols: torch.Tensor,
    ent: torch.Tensor,
    g: int,
    shift: int,
    sums: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``[N, K]``: the best Pearson correlation of each of ``vols`` ``[N, K, g^3]``
    shifted by up to ``shift`` voxels per axis (zero fill) with its entry's
    zero-mean unit row ``ent`` ``[N, g^3]``. ``sums``: the volumes'
    :func:`~swan_index.turn.window_sums` when known (``[N, K * S]`` each)."""
    n, keep = vols.shape[:2]
    if shift <= 0:
        return (_unit_rows(vols) * ent[:, None]).sum(dim=-1)
    # Pearson with a zero-mean unit entry: win . e / |win - mean(win)| for every
    # window of the shifted volume. The products with the entry are one batched
    # matrix product or a grouped 3D convolution (:func:`_moved_dots`); the
    # window sums from :func:`swan_index.turn.window_sums`. A bounded number of
    # entries at a time.
    side = 2 * shift + 1
    step = max(1, _SHIFT_FLOATS // (max(keep, side**3) * (g + 2 * shift) ** 3))
    out = []
    for i in range(0, n, step):
        v = vols[i : i + step]
        dot = _moved_dots(v, ent[i : i + step], g, shift)  # [m, keep, side^3]
        if sums is None:
            total, square = (
                torch.from_numpy(a)
                for a in window_sums(v.reshape(-1, g, g, g).numpy(), shift)
            )
        else:
            total, square = (a[i : i + step] for a in sums)
        total, square = total.reshape(dot.shape), square.reshape(dot.shape)
        spread = (square - total * total / g**3).clamp_min(1e-12).float()
        out.append((dot / spread.sqrt()).max(dim=-1).values)
    return torch.cat(out)


def _moved_dots(v: torch.Tensor, e: torch.Tensor, g: int, shift: int) -> torch.Tensor:
    """``[m, keep, side^3]``: the dot product of each of ``v`` ``[m, keep, g^3]``
    with its entry ``e`` ``[m, g^3]`` moved by each offset in ``[-shift,
    shift]^3`` (zero fill), in :func:`swan_index.turn.window_sums`' order. Many
    volumes per entry (the local refinement's): one batched matrix product
    against the entry's moved copies; a few: a grouped 3D convolution (one group
    per entry, its volumes the batch), cheaper than making the copies."""
    m, keep = v.shape[:2]
    side = 2 * shift + 1
    if keep >= _MOVED_COPIES_FROM:
        pad = F.pad(e.reshape(m, g, g, g), (shift,) * 6)
        moved = torch.stack(
            [
                pad[:, a : a + g, b : b + g, c : c + g]
                for a in range(side)
                for b in range(side)
                for c in range(side)
            ],
            dim=1,
        )  # column (a, b, c): e[y + (a, b, c) - shift]
        return torch.bmm(v, moved.reshape(m, side**3, g**3).transpose(1, 2))
    padded = F.pad(v.reshape(m, keep, g, g, g).transpose(0, 1), (shift,) * 6)
    conv = F.conv3d(padded, e.reshape(m, 1, g, g, g), groups=m)
    # output (a, b, c) is the volume moved by (shift - a, ...): flipped, the
    # order of window_sums
    return conv.flip((2, 3, 4)).reshape(keep, m, side**3).transpose(0, 1)


#: Volumes per entry from which :func:`_moved_dots` moves the entry instead.
_MOVED_COPIES_FROM = 16
#: Bound on the floats of shifted entries :func:`_shift_corr` holds at once.
_SHIFT_FLOATS = 1 << 23
