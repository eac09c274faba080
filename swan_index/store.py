"""The Store: DuckDB (source of truth) plus one FAISS index per scale.

A store is a folder::

    STORE/swan.duckdb            entries, codes, previews, layout, ingest_log, meta
    STORE/faiss/scale_<s>.index  one FAISS index per scale side s, ids = entry ids
    STORE/manifest.json          encoder hash + config, counts, index kinds, format
    STORE/write.lock             held by the one writer

**Consistency.** Every write is one DuckDB transaction (an entry, its code and its
preview land together or not at all); the FAISS indexes follow in memory and are
written to disk atomically by :meth:`Store.flush` (at the end of an ingest, every
minute during one, on close). Entry ids are never reused, so an index agrees with
the database exactly when it holds the same id set. On open (and on
:meth:`Store.refresh`) each index is compared with the ``codes`` table: ids the
database holds but the index lacks are added from the database, ids it no longer
holds are removed; an unreadable index is rebuilt. A crash between the two writes
therefore never gives a wrong answer.

**Locking.** One writer (an exclusive lock on ``write.lock`` for its whole life) and
any number of readers. Neither holds the DuckDB file for long: see
:mod:`swan_index.db`. A reader sees the store as of its last open or refresh.

**Search** (:meth:`Store.search`) is coarse-to-fine:

1. ``where`` (a SQL predicate over ``entries``) is run read-only and gives the
   allowed ids.
2. Candidates: the ``overfetch * k`` (at least ``min_candidates``) nearest entries
   at the coarsest scale, for each query pose, restricted to the allowed ids. With
   an approximate (IVF) coarsest index the scan widens until k allowed entries are
   found, so a filter matching at least k entries always gives k hits. When the
   filter leaves few entries (``<= exact_filter_limit``) they are all scored.
3. Re-ranking: every candidate is scored at every scale by cosine similarity of
   the retrieval vectors. The shape score is the weighted mean of the per-scale
   cosines (equal weights unless ``weights`` is given); an entry's score is its best
   over the query poses, minus ``size_weight * |ln(rg_query / rg_entry)|`` when the
   query's radius of gyration is known (a ribosome should not match a small protein
   just because their shapes rhyme).
4. Rotational fit (when ``fit`` is given, :mod:`swan_index.fit`): the best
   ``fit_top`` entries get, as their shape score, ``1 - fit_weight`` of it plus
   ``fit_weight`` times the best correlation of the query over all rotations with
   their stored previews; only they compete for the k hits. An entry without a
   preview (only a store built by hand lacks them) keeps its learned score, as if
   its fit equalled its shape score.

The steps run as :meth:`Store.rank` (1-3, reads the store), :meth:`Ranking.apply_fit`
(4, computation only) and :meth:`Store.hits` (the metadata of the best k), so that
a server can run the fit, the costly step, without holding the store.

``exact=True`` skips step 2 and scores every allowed entry (the ground truth).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from encoder.code import MultiScaleCode
from swan_index.db import DEFAULT_TIMEOUT, WriterLock, connect
from swan_index.files import atomic_write_text
from swan_index.fit import FIT_TOP, FIT_WEIGHT, FitQuery, comparable
from swan_index.schema import (
    ARROW_TYPES,
    FORMAT_VERSION,
    EntryRecord,
    ddl,
    record_columns,
)
from swan_index.vectors import DEFAULT_NPROBE, ScaleIndex, index_kind

log = logging.getLogger(__name__)

DB_NAME = "swan.duckdb"
#: Above this many entries the coarsest scale gets an approximate (IVF) index.
APPROX_THRESHOLD = 100_000
#: A filter leaving at most this many entries scores them all exactly.
EXACT_FILTER_LIMIT = 20_000
#: Default weight of the size term in the search score. Measured on the held-out
#: test split of the training dataset (399 maps, nearest neighbour of the same
#: molecule, mean of the four scale cosines): precision@1 0.865 without the size
#: term, 0.889 / 0.899 / 0.885 / 0.861 / 0.841 with weights 0.02 / 0.05 / 0.1 /
#: 0.2 / 0.5 (the cosines of this checkpoint's vectors span a narrow range).
SIZE_WEIGHT = 0.05
#: With a size term, the coarse stage fetches this many times the candidates and
#: keeps the best by coarse cosine minus the size term.
PRUNE_FACTOR = 4
#: Columns every hit carries from ``entries``.
HIT_COLUMNS = ("emdb_id", "title", "method", "resolution", "label", "rg")


@dataclass(frozen=True)
class EncoderInfo:
    """What a store needs to know about the encoder whose codes it holds."""

    hash: str
    scales: tuple[int, ...]
    depths: tuple[int, ...]
    dims: tuple[int, ...]
    codebook_size: int
    config: dict = field(default_factory=dict)

    @classmethod
    def of(cls, model: Any) -> EncoderInfo:
        """From a loaded :class:`encoder.CryoSwan`."""
        cfg = model.config
        dims = tuple(cfg.retrieval_dims)
        return cls(
            model.checkpoint_hash,
            tuple(cfg.scales),
            tuple(cfg.depths),
            dims,
            cfg.codebook_size,
            cfg.to_dict(),
        )

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        """Codebook size per scale (the coarse scales may have smaller ones)."""
        coarse = self.config.get("coarse_codebook_size") or self.codebook_size
        return (int(coarse),) * (len(self.scales) - 1) + (self.codebook_size,)

    def to_dict(self) -> dict:
        return {
            "hash": self.hash,
            "scales": list(self.scales),
            "depths": list(self.depths),
            "dims": list(self.dims),
            "codebook_size": self.codebook_size,
            "config": self.config,
        }

    @classmethod
    def from_dict(cls, d: dict) -> EncoderInfo:
        return cls(
            d["hash"],
            tuple(d["scales"]),
            tuple(d["depths"]),
            tuple(d["dims"]),
            int(d["codebook_size"]),
            d.get("config", {}),
        )


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        rank: 1-based.
        id: store entry id.
        score: combined score (see the module docs); higher is more similar.
        scores: per scale side (``"1"``, ``"2"``...) the cosine similarity, plus
            ``"size"``: ``ln(rg_query / rg_entry)`` when both are known.
        pose: index of the query pose that scored best.
        entry: the entry's ``emdb_id``, ``title``, ``method``, ``resolution``,
            ``label`` and ``rg``.
    """

    rank: int
    id: int
    score: float
    scores: dict[str, float]
    pose: int
    entry: dict[str, Any]

    @property
    def emdb_id(self) -> str | None:
        return self.entry.get("emdb_id")

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "id": self.id,
            "emdb_id": self.emdb_id,
            "score": self.score,
            "scores": self.scores,
            "pose": self.pose,
            **{k: v for k, v in self.entry.items() if k != "emdb_id"},
        }


@dataclass
class Ranking:
    """A search between its stages (:meth:`Store.rank`, :meth:`apply_fit`,
    :meth:`Store.hits`): the candidates with their scores, and the stored
    previews of those the rotational fit re-scores.

    The fit needs nothing from the store, so a server can run it without holding
    the store (see :mod:`dashboard.service`).
    """

    cand: np.ndarray  # entry ids
    score: np.ndarray  # [n] combined score
    shape: np.ndarray  # [n] shape score in the best pose
    pose: np.ndarray  # [n] best query pose
    per_scale: dict[str, np.ndarray]  # scale side -> [n] cosine in the best pose
    log_ratio: np.ndarray  # [n] ln(rg_query / rg_entry), NaN when unknown
    k: int
    fit_rows: np.ndarray | None = None  # positions the fit re-scores
    previews: dict[int, np.ndarray] = field(default_factory=dict)
    fit_weight: float = FIT_WEIGHT
    fit_of: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def apply_fit(self, fit: FitQuery | None) -> None:
        """Step 4 of the search (in place): the ``fit_rows`` entries get
        ``fit_weight * (fit - shape)`` added, where ``fit`` is the best correlation
        of the query's turned volumes with their previews (entries without a
        comparable preview keep the learned score); only they stay in the
        running. Nothing happens when the ranking was made without the fit."""
        if self.fit_rows is None:
            return
        self.fit_of = np.full(len(self.cand), np.nan)
        rows = self.fit_rows
        if fit is not None:
            have = [
                j
                for j in rows
                if int(self.cand[j]) in self.previews
                and comparable(self.previews[int(self.cand[j])].shape[0], fit.grid)
            ]
            if have:
                self.fit_of[have] = fit.score(
                    [self.previews[int(self.cand[j])] for j in have]
                )
                self.score[have] += self.fit_weight * (
                    self.fit_of[have] - self.shape[have]
                )
        keep = np.zeros(len(self.cand), bool)
        keep[rows] = True
        self.score = np.where(keep, self.score, -np.inf)
        self.fit_rows = None  # applied once


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def encode_preview(volume: np.ndarray) -> bytes:
    """A canonical volume ``[g, g, g]`` in [0, 1] -> zlib-compressed uint8."""
    q = np.clip(np.rint(np.asarray(volume, np.float32) * 255), 0, 255).astype(np.uint8)
    return zlib.compress(q.tobytes(), 6)


def decode_preview(blob: bytes, grid: int) -> np.ndarray:
    """Inverse of :func:`encode_preview`: float32 ``[g, g, g]`` in [0, 1]."""
    q = np.frombuffer(zlib.decompress(blob), np.uint8).reshape(grid, grid, grid)
    return q.astype(np.float32) / 255.0


#: Tables a ``where`` predicate may read.
WHERE_TABLES = frozenset({"entries", "layout"})
#: Functions a ``where`` predicate may not call (they reveal the server's setup).
WHERE_FORBIDDEN = frozenset({"current_setting", "getenv", "duckdb_settings"})
#: Seconds a ``where`` predicate may run.
WHERE_TIMEOUT = 10.0


def _check_predicate(where: str, sql: str) -> None:
    """Refuse anything but one expression over ``entries`` (and ``layout``)."""
    example = "e.g. \"resolution < 4 AND method = 'singleParticle'\""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ValueError(f"where {where!r}: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise ValueError(f"where {where!r}: give one predicate over entries, {example}")
    con = duckdb.connect(config={"enable_external_access": False})
    try:
        tree = json.loads(
            con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]
        )
    finally:
        con.close()
    if tree.get("error"):
        msg = tree.get("error_message", "syntax error")
        raise ValueError(f"where {where!r}: {msg}")
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        if kind == "BASE_TABLE" and str(node.get("table_name")).lower() not in (
            WHERE_TABLES
        ):
            raise ValueError(
                f"where {where!r}: only the entries and layout tables can be used"
            )
        if kind == "TABLE_FUNCTION":
            raise ValueError(f"where {where!r}: table functions are not allowed")
        if str(node.get("function_name", "")).lower() in WHERE_FORBIDDEN:
            raise ValueError(f"where {where!r}: {node['function_name']} is not allowed")
        stack.extend(node.values())


class Store:
    """A Cryo-SWAN store. Use :meth:`Store.open`; see the module docs."""

    def __init__(
        self,
        path: Path,
        encoder: EncoderInfo,
        read_only: bool,
        lock: WriterLock | None,
        approx_threshold: int,
        timeout: float,
    ) -> None:
        self.path = path
        self.encoder = encoder
        self.read_only = read_only
        self._lock = lock
        self.approx_threshold = approx_threshold
        self.timeout = timeout
        self._indexes = [ScaleIndex(d) for d in encoder.dims]
        self._dirty = [False] * len(encoder.dims)
        self._ids = np.zeros(0, np.int64)  # sorted entry ids
        self._rg = np.zeros(0, np.float64)  # aligned with _ids (NaN: unknown)
        self._generation = -1
        self._all_cache: dict[int, np.ndarray | None] = {}
        self._closed = False

    # -- opening -------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | Path,
        encoder: EncoderInfo | None = None,
        read_only: bool = False,
        approx_threshold: int = APPROX_THRESHOLD,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Store:
        """Open the store at ``path``; create it when ``encoder`` is given and the
        folder holds no store.

        Args:
            path: the store folder.
            encoder: the encoder whose codes go in (creates a new store; checked
                against an existing one).
            read_only: open as a reader (no write lock; nothing on disk changes).
            approx_threshold: entries above which the coarsest index becomes IVF.
            timeout: seconds to wait for the database while another process holds
                it.

        Raises:
            FileNotFoundError: no store at ``path`` and nothing to create it from.
            ValueError: ``encoder`` differs from the store's.
            StoreBusyError: another process is writing (``read_only=False`` only).
        """
        path = Path(path)
        db = path / DB_NAME
        lock = None
        if not db.exists():
            if encoder is None or read_only:
                raise FileNotFoundError(
                    f"{path}: no store here (no {DB_NAME}); create one with "
                    "`swan ingest MAPS --store DIR`"
                )
            path.mkdir(parents=True, exist_ok=True)
        if not read_only:
            lock = WriterLock(path)
            lock.acquire()
        try:
            if not db.exists():
                cls._create(db, encoder)
            with connect(db, read_only=True, timeout=timeout) as con:
                meta = cls._read_meta(con)
            if meta.get("format_version") != FORMAT_VERSION:
                raise ValueError(
                    f"{path}: store format {meta.get('format_version')}, this version "
                    f"reads {FORMAT_VERSION}; re-ingest into a new store"
                )
            stored = EncoderInfo.from_dict(meta["encoder"])
            if encoder is not None and encoder.hash != stored.hash:
                raise ValueError(
                    f"{path}: the store holds codes of encoder {stored.hash[:12]}, "
                    f"not {encoder.hash[:12]}; use that checkpoint or a new store"
                )
            store = cls(path, stored, read_only, lock, approx_threshold, timeout)
            store._load_indexes()
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        if not read_only:
            try:
                leftovers = [*(path / "faiss").glob("*.tmp"), *path.glob("*.json*.tmp")]
                for tmp in leftovers:
                    tmp.unlink(missing_ok=True)  # left by a crash mid-write
                store.flush()
            except BaseException:
                lock.release()
                raise
        return store

    @staticmethod
    def _create(db: Path, encoder: EncoderInfo) -> None:
        tmp = db.with_name(db.name + ".creating")
        tmp.unlink(missing_ok=True)
        con = duckdb.connect(str(tmp))
        try:
            for stmt in ddl(encoder.scales, encoder.dims):
                con.execute(stmt)
            meta = {
                "format_version": FORMAT_VERSION,
                "encoder": encoder.to_dict(),
                "next_id": 1,
                "generation": 0,
                "created": dt.datetime.now(dt.timezone.utc).isoformat(),
            }
            con.executemany(
                "INSERT INTO store_meta VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in meta.items()],
            )
            con.close()
            os.replace(tmp, db)
        finally:
            con.close()
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _read_meta(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        rows = con.execute("SELECT key, value FROM store_meta").fetchall()
        return {k: json.loads(v) for k, v in rows}

    def _db(self, read_only: bool):  # noqa: ANN202
        return connect(self.path / DB_NAME, read_only=read_only, timeout=self.timeout)

    def _index_path(self, i: int) -> Path:
        return self.path / "faiss" / f"scale_{self.encoder.scales[i]}.index"

    def _load_indexes(self) -> None:
        for i, dim in enumerate(self.encoder.dims):
            path = self._index_path(i)
            if path.exists():
                try:
                    self._indexes[i] = ScaleIndex.read(path, dim)
                except Exception as exc:  # noqa: BLE001 - any damage: rebuild
                    log.warning(
                        "%s unreadable (%s): rebuilding from the database", path, exc
                    )
                    self._indexes[i] = ScaleIndex(dim)
                    self._dirty[i] = True
        self._sync()

    def _sync(self) -> None:
        """Bring the in-memory indexes and size table in line with DuckDB."""
        with self._db(read_only=True) as con:
            generation = json.loads(
                con.execute(
                    "SELECT value FROM store_meta WHERE key = 'generation'"
                ).fetchone()[0]
            )
            if generation == self._generation:
                return
            got = con.execute("SELECT id, rg FROM entries ORDER BY id").fetchnumpy()
            code_ids = con.execute("SELECT id FROM codes ORDER BY id").fetchnumpy()[
                "id"
            ]
            self._ids = np.asarray(got["id"], np.int64)
            self._rg = np.asarray(
                np.ma.filled(np.ma.asarray(got["rg"], np.float64), np.nan), np.float64
            )
            for i, index in enumerate(self._indexes):
                have = np.sort(index.ids())  # ids are unique on both sides
                if np.array_equal(have, code_ids):
                    continue
                extra = np.setdiff1d(have, code_ids, assume_unique=True)
                missing = np.setdiff1d(code_ids, have, assume_unique=True)
                if len(extra) or len(missing):
                    if len(have) and self._generation < 0:  # on open: a crash
                        log.warning(
                            "%s disagreed with the database (%d missing, %d extra): "
                            "repaired",
                            self._index_path(i),
                            len(missing),
                            len(extra),
                        )
                    index.remove(extra)
                    for ids, vecs in self._fetch_vectors(con, i, missing):
                        index.add(ids, vecs)
                    self._dirty[i] = True
            self._generation = generation
        self._all_cache.clear()

    def _fetch_vectors(
        self,
        con: duckdb.DuckDBPyConnection,
        i: int,
        ids: np.ndarray,
        chunk: int = 200_000,
    ):  # noqa: ANN202 - generator of (ids, vectors)
        dim = self.encoder.dims[i]
        for start in range(0, len(ids), chunk):
            want = pa.table({"id": pa.array(ids[start : start + chunk], pa.int64())})
            con.register("want_ids", want)
            table = con.sql(
                f"SELECT c.id, c.vector_{i} AS v FROM codes c "
                "JOIN want_ids w ON c.id = w.id ORDER BY c.id"
            ).to_arrow_table()
            con.unregister("want_ids")
            got = table.column("id").to_numpy().astype(np.int64)
            vec = table.column("v").combine_chunks().values.to_numpy()
            yield got, vec.astype(np.float32, copy=False).reshape(len(got), dim)

    def refresh(self) -> None:
        """Pick up what a writer committed since this store was opened."""
        self._check_open()
        self._sync()

    # -- writing -------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: store is closed; open it again")

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise PermissionError(f"{self.path}: opened read-only; open it to write")

    def _check_code(self, code: MultiScaleCode) -> None:
        enc = self.encoder
        if code.checkpoint_hash != enc.hash:
            raise ValueError(
                f"code made by encoder {code.checkpoint_hash[:12]}, the store holds "
                f"codes of {enc.hash[:12]}; encode with the store's checkpoint"
            )
        if tuple(code.scales) != enc.scales:
            raise ValueError(f"code scales {code.scales}, store scales {enc.scales}")
        for i, (tok, vec) in enumerate(zip(code.tokens, code.vectors, strict=True)):
            side, depth = enc.scales[i], enc.depths[i]
            if tok.shape[1:] != (depth, side, side, side):
                raise ValueError(
                    f"scale {side}: tokens {tok.shape[1:]}, expected "
                    f"{(depth, side, side, side)}"
                )
            if vec.ndim != 2 or vec.shape[1] != enc.dims[i]:
                raise ValueError(
                    f"scale {side}: vectors {vec.shape[1:]}, expected ({enc.dims[i]},)"
                )
            if not np.all(np.isfinite(vec)):
                raise ValueError(f"scale {side}: vectors hold NaN or Inf")
            norms = np.linalg.norm(vec, axis=1)
            if np.any(np.abs(norms - 1) > 1e-3):
                raise ValueError(f"scale {side}: vectors must be L2-normalised")

    def add(
        self,
        code: MultiScaleCode,
        records: list[EntryRecord],
        previews: list[np.ndarray] | None = None,
        log_rows: list[dict[str, Any]] | None = None,
        replaces: list[int] | None = None,
    ) -> np.ndarray:
        """Store a batch of entries in one transaction.

        Args:
            code: codes of the batch, ``len(code) == len(records)``.
            records: their metadata.
            previews: optional small canonical volumes ``[g, g, g]`` in [0, 1].
            log_rows: ``ingest_log`` rows to commit with the batch (keys ``path``,
                ``sha256``, ``status``, ``reason``, ``run_id``; ``entry_id`` is
                filled in for rows whose ``sha256`` is in the batch).
            replaces: entry ids to delete in the same transaction (older versions
                of these maps).

        Returns:
            The new entry ids, int64 ``[B]``.

        Raises:
            ValueError: wrong encoder, shapes, or a sha256 that is already stored.
        """
        self._check_writable()
        self._check_code(code)
        n = len(code)
        if len(records) != n:
            raise ValueError(f"{len(records)} records for {n} codes")
        if previews is not None and len(previews) != n:
            raise ValueError(f"{len(previews)} previews for {n} codes")
        shas = [r.sha256 for r in records]
        if len(set(shas)) != n:
            raise ValueError("the batch holds the same map (sha256) twice")
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        with self._db(read_only=False) as con:
            con.begin()
            try:
                con.register("batch_sha", pa.table({"sha256": pa.array(shas)}))
                dup = con.execute(
                    "SELECT e.sha256, e.id FROM entries e "
                    "JOIN batch_sha b ON e.sha256 = b.sha256"
                ).fetchall()
                con.unregister("batch_sha")
                if dup:
                    raise ValueError(
                        f"{len(dup)} map(s) already stored (sha256 {dup[0][0][:12]} "
                        f"is entry {dup[0][1]}); delete them first or skip them"
                    )
                gone = np.unique(np.asarray(replaces or [], np.int64))
                if len(gone):
                    self._delete_rows(con, gone)
                meta = self._read_meta(con)
                first = int(meta["next_id"])
                ids = np.arange(first, first + n, dtype=np.int64)
                self._insert_entries(con, ids, records, now)
                self._insert_codes(con, ids, code)
                if previews is not None:
                    grid = int(previews[0].shape[0])
                    con.executemany(
                        "INSERT INTO previews VALUES (?, ?, ?)",
                        [
                            (int(i), grid, encode_preview(p))
                            for i, p in zip(ids, previews, strict=True)
                        ],
                    )
                if log_rows:
                    by_sha = dict(zip(shas, ids.tolist(), strict=True))
                    self._insert_log(con, log_rows, by_sha, now)
                self._bump(con, meta, next_id=first + n)
                con.commit()
            except BaseException:
                con.rollback()
                raise
        if len(gone):
            self._forget(gone)
        for i, index in enumerate(self._indexes):
            index.add(ids, code.vectors[i])
            self._dirty[i] = True
        rg = np.array([np.nan if r.rg is None else r.rg for r in records])
        self._ids = np.concatenate([self._ids, ids])
        self._rg = np.concatenate([self._rg, rg])
        self._generation += 1
        self._all_cache.clear()
        return ids

    @staticmethod
    def _bump(con: duckdb.DuckDBPyConnection, meta: dict, **changes: Any) -> None:
        changes["generation"] = int(meta["generation"]) + 1
        for key, value in changes.items():
            con.execute(
                "UPDATE store_meta SET value = ? WHERE key = ?",
                [json.dumps(value), key],
            )

    def _insert_entries(
        self,
        con: duckdb.DuckDBPyConnection,
        ids: np.ndarray,
        records: list[EntryRecord],
        now: dt.datetime,
    ) -> None:
        columns = {"id": pa.array(ids, pa.int64())}
        rows = [r.row() for r in records]
        for j, name in enumerate(record_columns()):
            columns[name] = pa.array([row[j] for row in rows], ARROW_TYPES[name])
        columns["encoder_hash"] = pa.array([self.encoder.hash] * len(ids))
        columns["ingested_at"] = pa.array([now] * len(ids), pa.timestamp("us"))
        con.register("batch_entries", pa.table(columns))
        con.execute("INSERT INTO entries SELECT * FROM batch_entries")
        con.unregister("batch_entries")

    def _insert_codes(
        self, con: duckdb.DuckDBPyConnection, ids: np.ndarray, code: MultiScaleCode
    ) -> None:
        columns: dict[str, pa.Array] = {"id": pa.array(ids, pa.int64())}
        for i, (tok, vec) in enumerate(zip(code.tokens, code.vectors, strict=True)):
            tok = np.ascontiguousarray(tok, dtype="<i2")
            columns[f"tokens_{i}"] = pa.array([t.tobytes() for t in tok], pa.binary())
            flat = pa.array(np.ascontiguousarray(vec, np.float32).ravel(), pa.float32())
            columns[f"vector_{i}"] = pa.FixedSizeListArray.from_arrays(
                flat, vec.shape[1]
            )
        con.register("batch_codes", pa.table(columns))
        con.execute("INSERT INTO codes SELECT * FROM batch_codes")
        con.unregister("batch_codes")

    @staticmethod
    def _insert_log(
        con: duckdb.DuckDBPyConnection,
        rows: list[dict[str, Any]],
        by_sha: dict[str, int],
        now: dt.datetime,
    ) -> None:
        con.executemany(
            "INSERT INTO ingest_log VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.get("run_id"),
                    now,
                    r.get("path"),
                    r.get("sha256"),
                    r["status"],
                    r.get("reason"),
                    r.get("entry_id", by_sha.get(r.get("sha256"))),
                )
                for r in rows
            ],
        )

    def log(self, rows: list[dict[str, Any]]) -> None:
        """Append ``ingest_log`` rows (skipped or failed files) in one transaction."""
        self._check_writable()
        if not rows:
            return
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        with self._db(read_only=False) as con:
            self._insert_log(con, rows, {}, now)

    def update_file_stats(self, rows: list[tuple[int, int | None, int | None]]) -> None:
        """Record new ``(id, file_size, file_mtime_ns)`` of entries whose source
        file was touched but not changed (so re-ingest skips it unread)."""
        self._check_writable()
        with self._db(read_only=False) as con:
            con.executemany(
                "UPDATE entries SET file_size = ?, file_mtime_ns = ? WHERE id = ?",
                [(size, mtime, int(i)) for i, size, mtime in rows],
            )

    def delete(self, ids: list[int] | np.ndarray) -> int:
        """Delete entries (metadata, codes, previews, layout); returns how many."""
        self._check_writable()
        ids = np.unique(np.asarray(ids, np.int64))
        if not len(ids):
            return 0
        with self._db(read_only=False) as con:
            con.begin()
            try:
                n = self._delete_rows(con, ids)
                self._bump(con, self._read_meta(con))
                con.commit()
            except BaseException:
                con.rollback()
                raise
        self._forget(ids)
        self._generation += 1
        return n

    @staticmethod
    def _delete_rows(con: duckdb.DuckDBPyConnection, ids: np.ndarray) -> int:
        con.register("del_ids", pa.table({"id": pa.array(ids, pa.int64())}))
        n = con.execute(
            "SELECT count(*) FROM entries WHERE id IN (SELECT id FROM del_ids)"
        ).fetchone()[0]
        for table in ("codes", "previews", "layout", "entries"):
            con.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM del_ids)")
        con.unregister("del_ids")
        return int(n)

    def _forget(self, ids: np.ndarray) -> None:
        """Drop deleted ids from the in-memory indexes and tables."""
        for i, index in enumerate(self._indexes):
            index.remove(ids)
            self._dirty[i] = True
        keep = ~np.isin(self._ids, ids)
        self._ids, self._rg = self._ids[keep], self._rg[keep]
        self._all_cache.clear()

    def flush(self) -> None:
        """Write changed FAISS indexes (atomically) and the manifest."""
        self._check_writable()
        n = len(self._ids)
        for i, index in enumerate(self._indexes):
            kind = index_kind(n, i == 0, self.approx_threshold)
            if kind != index.kind:
                log.info("scale %d: %s index for %d entries", i, kind, n)
                index.convert(kind)
                self._dirty[i] = True
            if self._dirty[i] or not self._index_path(i).exists():
                index.write(self._index_path(i))
                self._dirty[i] = False
        manifest = {
            "format_version": FORMAT_VERSION,
            "encoder": self.encoder.to_dict(),
            "count": n,
            "indexes": {
                str(side): {"kind": idx.kind, "ntotal": idx.ntotal, "nlist": idx.nlist}
                for side, idx in zip(self.encoder.scales, self._indexes, strict=True)
            },
            "approx_threshold": self.approx_threshold,
            "written": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        atomic_write_text(self.path / "manifest.json", json.dumps(manifest, indent=2))

    def close(self) -> None:
        if self._closed:
            return
        try:
            if not self.read_only:
                self.flush()
        finally:
            self._closed = True
            if self._lock is not None:
                self._lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------
    def count(self, where: str | None = None) -> int:
        """Number of entries (matching ``where``)."""
        self._check_open()
        if where is None:
            return len(self._ids)
        return len(self._allowed(where))

    def index_info(self) -> list[dict[str, Any]]:
        """Per scale: side, dims, index kind, entries, IVF lists (0: flat)."""
        return [
            {
                "scale": s,
                "dim": d,
                "kind": idx.kind,
                "ntotal": idx.ntotal,
                "nlist": idx.nlist,
            }
            for s, d, idx in zip(
                self.encoder.scales, self.encoder.dims, self._indexes, strict=True
            )
        ]

    def _query_sql(self, sql: str, params: list | None = None) -> list[dict]:
        with self._db(read_only=True) as con:
            cur = con.execute(sql, params or [])
            names = [d[0] for d in cur.description]
            return [
                {k: _jsonable(v) for k, v in zip(names, row, strict=True)}
                for row in cur.fetchall()
            ]

    def get(self, ids: list[int] | np.ndarray | int) -> list[dict[str, Any]]:
        """Metadata rows of ``ids`` (in that order; unknown ids are left out)."""
        self._check_open()
        ids = [int(i) for i in np.atleast_1d(np.asarray(ids, np.int64))]
        rows = self._query_sql(
            "SELECT * FROM entries WHERE list_contains(?, id)", [ids]
        )
        by_id = {r["id"]: r for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def find(self, key: str | int) -> int:
        """Entry id of a store id or an EMDB id (``EMD-1832``, ``emd_1832``, ``1832``
        is taken as a store id).

        Raises:
            KeyError: no such entry.
        """
        self._check_open()
        text = str(key).strip()
        if text.isdigit():
            i = int(text)
            pos = np.searchsorted(self._ids, i)
            if pos < len(self._ids) and self._ids[pos] == i:
                return i
            raise KeyError(f"no entry {i} in {self.path}")
        from ingest.header import emdb_id_from_name

        emdb = emdb_id_from_name(text)
        rows = self._query_sql(
            "SELECT id FROM entries WHERE emdb_id = ? ORDER BY id DESC",
            [emdb or text],
        )
        for row in rows:  # the newest one this snapshot holds
            i = int(row["id"])
            pos = np.searchsorted(self._ids, i)
            if pos < len(self._ids) and self._ids[pos] == i:
                return i
        raise KeyError(f"no entry {text!r} in {self.path}")

    def get_code(self, entry_id: int) -> MultiScaleCode:
        """The stored code of one entry (a batch of one)."""
        self._check_open()
        enc = self.encoder
        with self._db(read_only=True) as con:
            cols = ", ".join(f"tokens_{i}, vector_{i}" for i in range(len(enc.scales)))
            row = con.execute(
                f"SELECT {cols} FROM codes WHERE id = ?", [int(entry_id)]
            ).fetchone()
        if row is None:
            raise KeyError(f"no entry {entry_id} in {self.path}")
        tokens, vectors = [], []
        for i, side in enumerate(enc.scales):
            tok = np.frombuffer(row[2 * i], "<i2").astype(np.int16)
            tokens.append(tok.reshape(1, enc.depths[i], side, side, side))
            vectors.append(np.asarray(row[2 * i + 1], np.float32)[None])
        return MultiScaleCode(enc.scales, tuple(tokens), tuple(vectors), enc.hash)

    def get_previews(self, entry_ids: Any) -> dict[int, np.ndarray]:
        """``id -> preview volume`` of the given entries that have one."""
        ids = [int(i) for i in entry_ids]
        if not ids:
            return {}
        rows = self._query_sql(
            "SELECT id, grid, volume FROM previews WHERE list_contains(?, id)", [ids]
        )
        return {int(r["id"]): decode_preview(r["volume"], int(r["grid"])) for r in rows}

    def get_preview(self, entry_id: int) -> np.ndarray | None:
        """The stored preview volume of one entry, or ``None``."""
        rows = self._query_sql(
            "SELECT grid, volume FROM previews WHERE id = ?", [int(entry_id)]
        )
        if not rows:
            return None
        return decode_preview(rows[0]["volume"], int(rows[0]["grid"]))

    def known_files(self) -> dict[str, dict[str, Any]]:
        """``source_path -> {id, file_size, file_mtime_ns, sha256}`` of stored
        entries."""
        rows = self._query_sql(
            "SELECT source_path, id, file_size, file_mtime_ns, sha256 FROM entries "
            "WHERE source_path IS NOT NULL"
        )
        return {r.pop("source_path"): r for r in rows}

    def find_sha256(self, sha256: str) -> int | None:
        """Id of the entry holding the map with this content hash, or ``None``."""
        rows = self._query_sql("SELECT id FROM entries WHERE sha256 = ?", [sha256])
        return int(rows[0]["id"]) if rows else None

    def known_sha256(self) -> set[str]:
        return {r["sha256"] for r in self._query_sql("SELECT sha256 FROM entries")}

    def vectors(self, scale: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids [N], vectors [N, dim])`` of every entry at scale side ``scale``,
        ids ascending (a copy)."""
        self._check_open()
        if scale not in self.encoder.scales:
            raise ValueError(f"scale {scale}: choose from {self.encoder.scales}")
        ids, vecs = self._indexes[self.encoder.scales.index(scale)].all_vectors()
        order = np.argsort(ids)
        return ids[order], vecs[order]

    def entries(
        self,
        columns: tuple[str, ...] = ("id", "emdb_id", "title"),
        where: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> dict[str, np.ndarray]:
        """Columns of ``entries`` (joined with ``layout``: ``x``, ``y``, ``cluster``)
        as arrays, ordered by id, for tables and plots.

        Args:
            columns: column names of ``entries`` or ``layout``.
            where: SQL predicate over ``entries`` (as in :meth:`search`).
            limit, offset: paging.
        """
        self._check_open()
        known = {"id", *record_columns(), "encoder_hash", "ingested_at"}
        known |= {"x", "y", "cluster"}
        bad = [c for c in columns if c not in known]
        if bad:
            raise ValueError(f"unknown columns {bad}; choose from {sorted(known)}")
        select = ", ".join(
            f"l.{c}" if c in ("x", "y", "cluster") else f"e.{c}" for c in columns
        )
        sql = f"SELECT {select} FROM entries e LEFT JOIN layout l ON e.id = l.id"
        params: list = []
        if where is not None:
            allowed = self._allowed(where)
            sql += " WHERE list_contains(?, e.id)"
            params.append([int(i) for i in allowed])
        sql += " ORDER BY e.id"
        if limit is not None:
            sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
        with self._db(read_only=True) as con:
            got = con.execute(sql, params).fetchnumpy()
        return {c: got[c] for c in columns}

    def set_layout(
        self, ids: np.ndarray, xy: np.ndarray, cluster: np.ndarray | None = None
    ) -> None:
        """Replace the stored 2D layout (UMAP) of the archive in one transaction.

        Args:
            ids: entry ids ``[N]``.
            xy: coordinates ``[N, 2]``.
            cluster: cluster label per entry ``[N]`` (-1: none).
        """
        self._check_writable()
        ids = np.asarray(ids, np.int64)
        xy = np.asarray(xy, np.float64)
        if xy.shape != (len(ids), 2) or not np.all(np.isfinite(xy)):
            raise ValueError(f"xy {xy.shape}: expected finite [{len(ids)}, 2]")
        cluster = (
            np.full(len(ids), -1, np.int32)
            if cluster is None
            else np.asarray(cluster, np.int32)
        )
        table = pa.table(
            {
                "id": pa.array(ids, pa.int64()),
                "x": pa.array(xy[:, 0]),
                "y": pa.array(xy[:, 1]),
                "cluster": pa.array(cluster, pa.int32()),
            }
        )
        with self._db(read_only=False) as con:
            con.begin()
            try:
                con.execute("DELETE FROM layout")
                con.register("new_layout", table)
                con.execute(
                    "INSERT INTO layout SELECT n.* FROM new_layout n "
                    "JOIN entries e ON e.id = n.id"
                )
                con.unregister("new_layout")
                self._bump(con, self._read_meta(con))
                con.commit()
            except BaseException:
                con.rollback()
                raise
        self._generation += 1

    # -- search --------------------------------------------------------------------
    def _allowed(self, where: str) -> np.ndarray:
        """Ids of entries matching the SQL predicate ``where``.

        The predicate may use the columns of ``entries`` and subqueries over
        ``entries`` and ``layout`` only (no other table, no table function such as
        ``read_csv`` or ``range``, no settings); it runs on a read-only connection
        with file access disabled, and is interrupted after ``WHERE_TIMEOUT``
        seconds.
        """
        sql = f"SELECT id FROM entries WHERE ({where}) ORDER BY id"
        _check_predicate(where, sql)
        try:
            with self._db(read_only=True) as con:
                timer = threading.Timer(WHERE_TIMEOUT, con.interrupt)
                timer.start()
                try:
                    ids = con.execute(sql).fetchnumpy()["id"]
                finally:
                    timer.cancel()
        except duckdb.InterruptException:
            raise ValueError(
                f"where {where!r}: took over {WHERE_TIMEOUT:.0f} s; simplify it"
            ) from None
        except duckdb.Error as exc:
            columns = ", ".join(["id", *record_columns(), "ingested_at"])
            raise ValueError(
                f"where {where!r}: {str(exc).splitlines()[0]} (columns: {columns})"
            ) from None
        # Entries committed after this store's snapshot are not searchable yet.
        # (Both sides are sorted and unique: a binary search is ~50x faster than
        # np.intersect1d at a million entries.)
        ids = np.asarray(ids, np.int64)
        if not len(ids) or not len(self._ids):
            return ids[:0]
        pos = np.searchsorted(self._ids, ids).clip(0, len(self._ids) - 1)
        return ids[self._ids[pos] == ids]

    def _query_vectors(
        self, query: MultiScaleCode | int
    ) -> tuple[list[np.ndarray], float | None]:
        """Per scale ``[P, dim]`` query vectors (P poses) and the entry's rg."""
        if isinstance(query, MultiScaleCode):
            if query.checkpoint_hash != self.encoder.hash:
                raise ValueError(
                    f"query encoded by {query.checkpoint_hash[:12]}, the store holds "
                    f"codes of {self.encoder.hash[:12]}; encode with the same "
                    "checkpoint"
                )
            if tuple(query.scales) != self.encoder.scales:
                raise ValueError(
                    f"query scales {query.scales}, store scales {self.encoder.scales}"
                )
            vecs = [np.asarray(v, np.float32) for v in query.vectors]
            for v, d in zip(vecs, self.encoder.dims, strict=True):
                if v.ndim != 2 or v.shape[1] != d or not np.all(np.isfinite(v)):
                    raise ValueError(f"query vectors {v.shape}: expected [P, {d}]")
            return vecs, None
        entry_id = int(query)
        pos = np.searchsorted(self._ids, entry_id)
        if pos >= len(self._ids) or self._ids[pos] != entry_id:
            raise KeyError(f"no entry {entry_id} in {self.path}")
        ids = np.array([entry_id])
        rg = self._rg[pos]
        vecs = [index.lookup(ids) for index in self._indexes]
        return vecs, (None if np.isnan(rg) else float(rg))

    def _rg_of(self, ids: np.ndarray) -> np.ndarray:
        return self._rg[np.searchsorted(self._ids, ids)]

    def _all_scores(self, i: int, q: np.ndarray) -> np.ndarray:
        """``[P, N]`` cosines of every entry (in ``self._ids`` order) at scale i."""
        index = self._indexes[i]
        if i not in self._all_cache:
            ids, vecs = index.all_vectors(copy=False)
            if len(ids) != len(self._ids):
                raise RuntimeError(f"{self._index_path(i)} out of step; reopen")
            if np.all(ids == self._ids):  # the usual case: no copy needed
                self._all_cache[i] = None
            else:
                order = np.argsort(ids)
                self._all_cache[i] = np.ascontiguousarray(vecs[order])
        vecs = self._all_cache[i]
        if vecs is None:
            vecs = index.all_vectors(copy=False)[1]
        return q @ vecs.T

    def search(
        self,
        query: MultiScaleCode | int,
        k: int = 10,
        fit: FitQuery | None = None,
        **options: Any,
    ) -> list[Hit]:
        """Entries most similar to ``query``, best first: :meth:`rank`,
        :meth:`Ranking.apply_fit` and :meth:`hits` in a row.

        Args:
            query, k: as :meth:`rank`.
            fit: the query's volumes turned through every rotation
                (:class:`swan_index.fit.FitQuery`): the best ``fit_top`` entries
                are re-scored with the best correlation over those rotations
                against their stored previews (``scores["fit"]``), weighted
                ``fit_weight`` against the learned shape score. Entries without a
                preview keep the learned score.
            options: the other arguments of :meth:`rank` (``where``, ``scales``,
                ``exact``, ``rg``, ``size_weight``, ``weights``, ``overfetch``,
                ``min_candidates``, ``nprobe``, ``exact_filter_limit``,
                ``fit_top``, ``fit_weight``), by name.

        Returns:
            Up to ``k`` :class:`Hit` objects (fewer only when fewer entries match).

        Raises:
            ValueError: bad ``k``, ``scales``, ``weights``, ``where``, or a query
                from another encoder.
            KeyError: ``query`` is an id the store does not hold.
        """
        ranking = self.rank(query, k, fit=fit is not None, **options)
        ranking.apply_fit(fit)
        return self.hits(ranking)

    def rank(
        self,
        query: MultiScaleCode | int,
        k: int = 10,
        where: str | None = None,
        scales: tuple[int, ...] | None = None,
        exact: bool = False,
        rg: float | None = None,
        size_weight: float = SIZE_WEIGHT,
        weights: tuple[float, ...] | None = None,
        overfetch: int = 200,
        min_candidates: int = 2000,
        nprobe: int = DEFAULT_NPROBE,
        exact_filter_limit: int = EXACT_FILTER_LIMIT,
        fit: bool = False,
        fit_top: int = FIT_TOP,
        fit_weight: float = FIT_WEIGHT,
    ) -> Ranking:
        """Steps 1-3 of :meth:`search`: the candidates and their scores, as a
        :class:`Ranking` to finish with :meth:`Ranking.apply_fit` and :meth:`hits`.

        Args:
            query: the code of one map (its rows are candidate poses of that map;
                each entry keeps its best pose), or a stored entry id.
            k: hits wanted.
            where: SQL predicate over ``entries``, e.g. ``"resolution < 4"``.
            scales: scale sides to score with (default all); the coarsest of them
                gives the candidates.
            exact: score every (allowed) entry instead of coarse candidates.
            rg: the query's radius of gyration (Å), for the size term (taken from
                the entry when ``query`` is an id).
            size_weight: weight of ``|ln(rg_q / rg_e)|``; 0 disables it.
            weights: per selected scale, for the shape score (default equal).
            overfetch, min_candidates: coarse candidates = max(overfetch * k,
                min_candidates) per pose.
            nprobe: IVF lists scanned at first.
            exact_filter_limit: a filter leaving at most this many entries scores
                them all.
            fit: whether the rotational fit will follow (:meth:`search`,
                :meth:`Ranking.apply_fit`), and so which previews to fetch: the
                ``fit_top`` best entries' (at least ``k``).
            fit_top, fit_weight: how many entries the fit re-scores, and its
                weight against the learned shape score, in [0, 1].

        Raises:
            ValueError: bad ``k``, ``scales``, ``weights``, ``where`` or
                ``fit_weight``, or a query from another encoder.
            KeyError: ``query`` is an id the store does not hold.
        """
        self._check_open()
        if not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k={k!r}: ask for at least 1 hit")
        sides = tuple(self.encoder.scales) if scales is None else tuple(scales)
        bad = [s for s in sides if s not in self.encoder.scales]
        if bad or not sides:
            raise ValueError(f"scales {scales}: choose from {self.encoder.scales}")
        if len(set(sides)) != len(sides):
            raise ValueError(f"scales {scales}: each scale once")
        # in the caller's order (weights follow it); the coarsest is the candidate
        # scale
        sel = [self.encoder.scales.index(s) for s in sides]
        cand_scale = min(sel)
        w = np.ones(len(sel)) if weights is None else np.asarray(weights, np.float64)
        if w.shape != (len(sel),) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"weights {weights}: one non-negative weight per scale")
        w = w / w.sum()
        qv, entry_rg = self._query_vectors(query)
        rg = entry_rg if rg is None else rg
        allowed = self._allowed(where) if where is not None else None
        pool = self._ids if allowed is None else allowed
        if not len(pool):
            none = np.zeros(0)
            ids = np.zeros(0, np.int64)
            return Ranking(ids, none, none, ids, {}, none, 0)
        k = int(min(k, len(pool)))
        small = len(pool) <= max(min_candidates, k)
        if allowed is None and (exact or small):  # every entry, in _ids order
            cand = self._ids
            per_scale = [self._all_scores(i, qv[i]) for i in sel]
        else:
            if allowed is not None and (
                exact or small or len(allowed) <= exact_filter_limit
            ):
                cand = allowed
            else:
                cand = self._candidates(
                    qv[cand_scale],
                    cand_scale,
                    max(overfetch * k, min_candidates),
                    k,
                    allowed,
                    nprobe,
                    rg,
                    size_weight,
                )
            per_scale = [qv[i] @ self._indexes[i].lookup(cand).T for i in sel]
        shape = sum(wi * s for wi, s in zip(w, per_scale, strict=True))  # [P, n]
        pose = np.argmax(shape, axis=0)
        cols = np.arange(len(cand))
        score = shape[pose, cols]
        log_ratio = np.full(len(cand), np.nan)
        if rg is not None and rg > 0:
            cand_rg = self._rg_of(cand)
            with np.errstate(invalid="ignore", divide="ignore"):
                log_ratio = np.log(rg / cand_rg)
            score = score - size_weight * np.nan_to_num(np.abs(log_ratio), nan=0.0)
        ranking = Ranking(
            cand,
            score,
            shape[pose, cols],
            pose,
            {
                str(self.encoder.scales[i]): s[pose, cols]
                for i, s in zip(sel, per_scale, strict=True)
            },
            log_ratio,
            k,
        )
        if fit:
            if not 0.0 <= fit_weight <= 1.0:
                raise ValueError(f"fit_weight={fit_weight}: use a weight in [0, 1]")
            n_fit = int(min(len(cand), max(k, fit_top)))
            ranking.fit_rows = np.argsort(-score, kind="stable")[:n_fit]
            ranking.previews = self.get_previews(cand[ranking.fit_rows])
            ranking.fit_weight = fit_weight
        return ranking

    def hits(self, ranking: Ranking) -> list[Hit]:
        """The best ``ranking.k`` of a :class:`Ranking`, with their metadata. An
        entry deleted since the ranking was made (here or by another process
        since the last refresh) is left out and the next best takes its place.

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
            if want < len(score) / 4:  # partial sort: only the top ones ordered
                part = np.argpartition(-score, want - 1)[:want]
                top = part[np.argsort(-score[part], kind="stable")]
            else:
                top = np.argsort(-score, kind="stable")[:want]
            info = {
                r["id"]: r
                for r in self._query_sql(
                    f"SELECT id, {', '.join(HIT_COLUMNS)} FROM entries "
                    "WHERE list_contains(?, id)",
                    [[int(i) for i in cand[top]]],
                )
            }
        top = [j for j in top if int(cand[j]) in info][:k]
        hits = []
        for j in top:
            scores = {side: float(s[j]) for side, s in ranking.per_scale.items()}
            if not np.isnan(ranking.log_ratio[j]):
                scores["size"] = float(ranking.log_ratio[j])
            if len(ranking.fit_of) and not np.isnan(ranking.fit_of[j]):
                scores["fit"] = float(ranking.fit_of[j])
            entry = {c: info[int(cand[j])].get(c) for c in HIT_COLUMNS}
            hits.append(
                Hit(
                    len(hits) + 1,
                    int(cand[j]),
                    float(score[j]),
                    scores,
                    int(ranking.pose[j]),
                    entry,
                )
            )
        return hits

    def _candidates(
        self,
        q: np.ndarray,
        i: int,
        n_cand: int,
        k: int,
        allowed: np.ndarray | None,
        nprobe: int,
        rg: float | None = None,
        size_weight: float = 0.0,
    ) -> np.ndarray:
        """The coarse stage of :meth:`search`: entries nearest the query at the
        coarse scale ``i`` (union over poses), at most ``n_cand`` of them.

        With a size term, ``PRUNE_FACTOR`` times as many are fetched and ranked
        by coarse cosine minus the size term first, so that the candidates agree
        with the final score, which weighs size too.
        """
        index = self._indexes[i]
        # An IVF scan under a filter may meet few allowed entries: widen it until
        # it finds the candidates asked for (or all allowed entries, or k).
        need = k if allowed is None else min(n_cand, len(allowed))
        sized = rg is not None and rg > 0 and size_weight > 0
        n_fetch = n_cand * PRUNE_FACTOR if sized else n_cand
        while True:
            sims, found = index.search(q, n_fetch, allowed, nprobe)
            ok = found >= 0
            cand, inverse = np.unique(found[ok], return_inverse=True)
            if len(cand) > n_cand:
                best = np.full(len(cand), -np.inf)
                np.maximum.at(best, inverse, sims[ok])
                if sized:
                    with np.errstate(invalid="ignore", divide="ignore"):
                        gap = np.abs(np.log(rg / self._rg_of(cand)))
                    best -= size_weight * np.nan_to_num(gap, nan=0.0)
                keep = np.argpartition(-best, n_cand - 1)[:n_cand]
                cand = np.sort(cand[keep])
            if len(cand) >= need or index.kind != "ivf" or nprobe >= index.nlist:
                return cand
            nprobe *= 4  # the filter left too few in the lists scanned: widen

    def stats(self) -> dict[str, Any]:
        """Counts and sizes, for ``swan info --store`` and the manifest."""
        files = [self.path / DB_NAME, *sorted((self.path / "faiss").glob("*.index"))]
        return {
            "path": str(self.path),
            "entries": len(self._ids),
            "encoder": self.encoder.hash,
            "indexes": self.index_info(),
            "bytes": {f.name: f.stat().st_size for f in files if f.exists()},
            "time": time.time(),
        }
