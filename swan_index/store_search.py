"""Search over a :class:`~swan_index.store.Store`: the candidates of the first
stage (the coarse scale or, in large stores, the joint index), their exact
scores, and the hits' metadata; mixed into the store as :class:`StoreSearch`."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from encoder.code import MultiScaleCode
from swan_index.joint import JOINT_NPROBE, JOINT_PRUNE_FACTOR
from swan_index.ranking import (
    Hit,
    Ranking,
    SearchOptions,
    coarse_candidates,
    fit_rows,
    score_candidates,
    size_gap,
    top_rows,
)
from swan_index.tables import id_in, jsonable, query_rows, read_generation
from swan_index.where import WhereLimits, matching_ids

log = logging.getLogger(__name__)

#: The database file in a store folder.
DB_NAME = "swan.duckdb"
#: Columns every hit carries from ``entries``.
HIT_COLUMNS = ("emdb_id", "title", "method", "resolution", "label", "rg")
#: Decoded previews a store keeps for the rotational fit (32^3 float32 each:
#: 32 MB at most), the most recently fetched; dropped whenever the store's
#: entries change.
PREVIEW_CACHE = 256


class PreviewCache:
    """Decoded preview volumes by entry id, for the fit of the next search of
    the same entries (a search's best hits are mostly the last search's):
    bounded, least recently used out, thread-safe, emptied when ``generation``
    differs from the one the volumes were read at. The volumes are read-only."""

    def __init__(self, size: int = PREVIEW_CACHE) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[int, np.ndarray] = OrderedDict()
        self._generation: int | None = None

    def get(
        self,
        ids: list[int],
        generation: int,
        fetch: Callable[[list[int]], dict[int, np.ndarray]],
    ) -> dict[int, np.ndarray]:
        """``id -> volume`` of those of ``ids`` that have one: kept ones, and the
        others from ``fetch`` (then kept)."""
        with self._lock:
            if generation != self._generation:
                self._items.clear()
                self._generation = generation
            out = {i: self._items[i] for i in ids if i in self._items}
            for i in out:
                self._items.move_to_end(i)
        todo = [i for i in ids if i not in out]
        if not todo:
            return out
        got = fetch(todo)
        for volume in got.values():
            volume.flags.writeable = False
        with self._lock:
            if generation == self._generation:
                self._items.update(got)
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        out.update(got)
        return out


class HitColumns:
    """The :data:`HIT_COLUMNS` of every entry, in memory, for the metadata of
    search hits.

    Asking DuckDB for ten hits by id (``id IN (...)``) scans every row group
    for them: about 3 ms a search at a million entries, half of a search
    without the fit. Here a search takes its rows from Arrow columns (0.3 ms),
    read in one query (0.2 s and about 150 bytes per entry at a million
    entries) together with the generation they are of, so that rows are never
    older than the store's view. The first search at a generation still asks
    DuckDB (a process that searches once, such as ``swan search``, never pays
    for the read); the second reads the columns. Thread-safe; the columns are
    replaced, never changed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = -1
        self._asked = -1  # the generation at which a search last asked DuckDB
        self._ids = np.zeros(0, np.int64)  # sorted
        self._table = None  # pyarrow.Table aligned with _ids

    def rows(
        self, ids: np.ndarray, generation: int, connection: Callable
    ) -> dict[int, dict]:
        """``id -> {column: value}`` of those of ``ids`` that exist (at
        ``generation`` or later); ``connection()`` gives a read-only connection
        when they must be read."""
        ids = np.asarray(ids, np.int64)
        with self._lock:
            stale = self._table is None or self._generation < generation
            ask = stale and self._asked != generation
            if ask:
                self._asked = generation
            elif stale:
                self._load(connection)
            held, table = self._ids, self._table
        if ask:  # (outside the lock: other searches go on meanwhile)
            return _query_hits(connection, ids)
        if not len(held) or not len(ids):
            return {}
        pos = np.searchsorted(held, ids).clip(0, len(held) - 1)
        found = held[pos] == ids
        import pyarrow as pa

        rows = table.take(pa.array(pos[found])).to_pylist()
        return {
            int(i): {k: jsonable(v) for k, v in row.items()}
            for i, row in zip(ids[found], rows, strict=True)
        }

    def _load(self, connection: Callable) -> None:
        with connection() as con:
            con.begin()  # the generation and the rows agree
            try:
                generation = read_generation(con)
                table = con.sql(
                    f"SELECT id, {', '.join(HIT_COLUMNS)} FROM entries"
                ).to_arrow_table()
            finally:
                con.commit()
        ids = table.column("id").to_numpy()
        table = table.drop_columns(["id"])
        if len(ids) > 1 and not (ids[1:] > ids[:-1]).all():
            order = np.argsort(ids, kind="stable")
            ids, table = ids[order], table.take(order)
        self._ids = np.ascontiguousarray(ids, np.int64)
        self._table = table.combine_chunks()
        self._generation = generation


def _query_hits(connection: Callable, ids: np.ndarray) -> dict[int, dict]:
    """``id -> {column: value}`` of those of ``ids`` that exist, from DuckDB."""
    with connection() as con:
        rows = query_rows(
            con,
            f"SELECT id, {', '.join(HIT_COLUMNS)} FROM entries WHERE "
            f"{id_in(ids.tolist())}",
        )
    return {r.pop("id"): r for r in rows}


class StoreSearch:
    """The store's search methods (:meth:`search`, :meth:`rank`, :meth:`hits`);
    the state they read (connections, indexes, vectors) is the store's."""

    # -- search --------------------------------------------------------------------
    def _allowed(self, where: str) -> np.ndarray:
        """Ids of this snapshot's entries matching the SQL predicate ``where``
        (checked, then run in a worker process under :attr:`where_limits`, by
        :mod:`swan_index.where`; no connection of this process is held
        meanwhile)."""
        ids = matching_ids(self.path / DB_NAME, where, self.where_limits, self.timeout)
        # Entries committed after this store's snapshot are not searchable yet.
        # (Both sides are sorted and unique: a binary search is ~50x faster than
        # np.intersect1d at a million entries.)
        if not len(ids) or not len(self._ids):
            return ids[:0]
        pos = np.searchsorted(self._ids, ids).clip(0, len(self._ids) - 1)
        return ids[self._ids[pos] == ids]

    #: What a ``where`` predicate may use (time, memory, threads); a server sets
    #: its own on the store it serves.
    where_limits: WhereLimits = WhereLimits()

    def _query_vectors(
        self, query: MultiScaleCode | int
    ) -> tuple[list[np.ndarray], float | None]:
        """Per scale ``[P, dim]`` query vectors (P poses) and the entry's rg."""
        if isinstance(query, MultiScaleCode):
            return self.encoder.query_vectors(query), None
        entry_id = int(query)
        pos = np.searchsorted(self._ids, entry_id)
        if pos >= len(self._ids) or self._ids[pos] != entry_id:
            raise KeyError(f"no entry {entry_id} in {self.path}")
        ids = np.array([entry_id])
        rg = self._rg[pos]
        vecs = [self._indexes.lookup(i, ids) for i in range(len(self.encoder.scales))]
        return vecs, (None if np.isnan(rg) else float(rg))

    def _rg_of(self, ids: np.ndarray) -> np.ndarray:
        """rg of held ``ids`` (NaN: unknown), from a table by id made on first
        use after a change (a binary search per id costs ~5x more)."""
        if self._rg_by_id is None or len(self._rg_by_id) != self._next_rg_top():
            table = np.full(self._next_rg_top(), np.nan)
            table[self._ids] = self._rg
            self._rg_by_id = table
        return self._rg_by_id[ids]

    def _next_rg_top(self) -> int:
        return int(self._ids[-1]) + 1 if len(self._ids) else 0

    def search(
        self,
        query: MultiScaleCode | int,
        k: int = 10,
        options: SearchOptions | None = None,
        rg: float | None = None,
    ) -> list[Hit]:
        """Entries most similar to ``query`` by their vectors, best first:
        :meth:`rank` then :meth:`hits`, without the rotational fit (for that, see
        :func:`swan_index.query.search`, which applies it between the two).

        Args, Raises: as :meth:`rank`.

        Returns:
            Up to ``k`` :class:`Hit` objects (fewer only when fewer entries match).
        """
        return self.hits(self.rank(query, k, options, rg))

    def rank(
        self,
        query: MultiScaleCode | int,
        k: int = 10,
        options: SearchOptions | None = None,
        rg: float | None = None,
        fit: bool = False,
    ) -> Ranking:
        """Steps 1-3 of a search (see the module docs): the candidates and their
        scores, as a :class:`Ranking` to finish with :meth:`hits` (after
        :func:`swan_index.fit.apply_fit` when ``fit``).

        Args:
            query: the code of one map (its rows are candidate poses of that map;
                each entry keeps its best pose), or a stored entry id.
            k: hits wanted.
            options: how to rank (:class:`SearchOptions`; default: its defaults).
            rg: the query's radius of gyration (Å), for the size term (taken from
                the entry when ``query`` is an id).
            fit: whether the rotational fit will follow, and so which previews
                to fetch: the ``options.fit_top`` best entries' (at least ``k``).

        Raises:
            ValueError: bad ``k``, ``scales``, ``weights`` or ``where``, or a query
                from another encoder.
            KeyError: ``query`` is an id the store does not hold.
        """
        self._check_open()
        opts = SearchOptions() if options is None else options
        if not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k={k!r}: ask for at least 1 hit")
        sel, weights = opts.scale_weights(self.encoder.scales)
        qv, entry_rg = self._query_vectors(query)
        rg = entry_rg if rg is None else rg
        allowed = self._allowed(opts.where) if opts.where is not None else None
        pool = self._ids if allowed is None else allowed
        if not len(pool):
            return Ranking.empty()
        k = int(min(k, len(pool)))
        joint = opts.joint and self._indexes.joint is not None
        small = len(pool) <= opts.candidates(k, joint)
        if allowed is None and (opts.exact or small):  # every entry, in _ids order
            cand = self._ids
            per_scale = [self._indexes.all_scores(i, qv[i], self._ids) for i in sel]
        else:
            if allowed is not None and (
                opts.exact or small or len(allowed) <= opts.exact_filter_limit
            ):
                cand = allowed
            elif joint:  # a large store: the first stage weighs every scale
                cand = self._joint_candidates(qv, sel, weights, k, allowed, opts, rg)
            else:
                coarse = min(sel)  # the coarsest selected scale gives candidates
                cand = coarse_candidates(
                    self._indexes.indexes[coarse],
                    qv[coarse],
                    opts.candidates(k, joint=False),
                    k,
                    allowed,
                    0,  # a scale's index is exact
                    None if rg is None else lambda c: size_gap(rg, self._rg_of(c)),
                    opts.size_weight,
                )
            per_scale = [qv[i] @ self._indexes.lookup(i, cand).T for i in sel]
        ranking = score_candidates(
            cand,
            per_scale,
            [self.encoder.scales[i] for i in sel],
            weights,
            size_gap(rg, self._rg_of(cand)),
            opts.size_weight,
            k,
        )
        if fit:
            ranking.fit_rows = fit_rows(ranking.score, k, opts.fit_top)
            ranking.previews = self.get_previews(cand[ranking.fit_rows])
            ranking.fit_weight = opts.fit_weight
        return ranking

    def _joint_candidates(
        self,
        qv: list[np.ndarray],
        sel: list[int],
        weights: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        opts: SearchOptions,
        rg: float | None,
    ) -> np.ndarray:
        """The first stage from the joint index (:mod:`swan_index.joint`)."""
        joint = self._indexes.joint
        full = np.zeros(len(self.encoder.scales))
        full[sel] = weights
        q = joint.query([qv[i] if full[i] else None for i in range(len(qv))], full)
        nprobe = opts.nprobe
        if nprobe is None:
            nprobe = JOINT_NPROBE
            if allowed is not None and len(allowed):
                # a filter leaves a share of every list: scan as many more lists,
                # so that as many allowed entries are scanned as without it
                share = len(allowed) / max(1, joint.ntotal)
                nprobe = int(min(joint.nlist, np.ceil(nprobe / share)))
        return coarse_candidates(
            joint,
            q,
            opts.candidates(k, joint=True),
            k,
            allowed,
            nprobe,
            None if rg is None else lambda c: size_gap(rg, self._rg_of(c)),
            opts.size_weight,
            JOINT_PRUNE_FACTOR,
        )

    def hits(self, ranking: Ranking) -> list[Hit]:
        """The best ``ranking.k`` of a :class:`Ranking`, with their metadata
        (from :class:`HitColumns`). An entry deleted since the ranking was made
        (here, or by another process as of this store's last refresh) is left
        out and the next best takes its place.

        Raises:
            ValueError: the ranking was made for the fit, not yet applied.
        """
        self._check_open()
        if ranking.fit_rows is not None:
            raise ValueError("the ranking waits for its fit: call apply_fit first")
        score, cand, k = ranking.score, ranking.cand, ranking.k
        n = int(np.isfinite(score).sum())  # -inf: left out by the fit
        want, top, info = k, np.zeros(0, np.int64), {}
        while len(info) < k and len(top) < n:
            want = min(n, 2 * want if len(top) else want)
            top = top_rows(score, want)
            info = self._hit_columns.rows(
                cand[top], self._generation, lambda: self._db(read_only=True)
            )
        top = [j for j in top if int(cand[j]) in info][:k]
        return [
            Hit(
                rank,
                int(cand[j]),
                float(score[j]),
                ranking.hit_scores(j),
                int(ranking.pose[j]),
                {c: info[int(cand[j])].get(c) for c in HIT_COLUMNS},
            )
            for rank, j in enumerate(top, start=1)
        ]
