"""The Store: DuckDB (source of truth) plus the vectors of every scale.

A store is a folder::

    STORE/swan.duckdb            entries, codes, previews, layout, ingest_log, meta
    STORE/faiss/scale_<s>.vectors  the vectors of scale side s, ids = entry ids
                                 (memory-mapped when read: swan_index.vectors)
    STORE/faiss/joint.ivf        above the approximate threshold: the joint
                                 first-stage index (swan_index.joint)
    STORE/manifest.json          encoder hash + config, counts, index kinds, format,
                                 the high-water mark of the last committed write
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

**Lost commits.** After every commit the writer records its high-water mark in
the manifest (:mod:`swan_index.manifest`); a database behind it (a damaged or lost
write-ahead log) is not written to until the loss is accepted, so ids are never
handed out twice. Readers open it with a warning.

**Locking.** One writer (an exclusive lock on ``write.lock`` for its whole life) and
any number of readers. Neither holds the DuckDB file for long: see
:mod:`swan_index.db` (a reader keeps one connection between queries only while
no writer exists). A reader sees the store as of its last open or refresh.

**Search** runs in three stages: :meth:`Store.rank` (reads the store; the
scoring itself is :mod:`swan_index.ranking`), the rotational fit
(:func:`swan_index.fit.apply_fit`, computation only, applied by the caller:
:func:`swan_index.query.search`) and :meth:`Store.hits` (the metadata of the best
k). :meth:`Store.search` is rank and hits, without the fit.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from encoder.code import MultiScaleCode
from swan_index.db import (
    DEFAULT_TIMEOUT,
    SharedReader,
    StoreLossError,
    WriterLock,
    connect,
    readable,
)
from swan_index.indexes import ScaleIndexes
from swan_index.manifest import (
    Mark,
    check_mark,
    load_manifest,
    refuse_new_database,
    write_manifest,
)
from swan_index.schema import (
    EncoderInfo,
    EntryRecord,
    decode_preview,
    record_columns,
    reencode_hint,
)
from swan_index.store_search import DB_NAME, HitColumns, PreviewCache, StoreSearch
from swan_index.tables import (
    Connection,
    accept_loss,
    add_columns,
    bump,
    create_db,
    delete_rows,
    id_in,
    insert_codes,
    insert_entries,
    insert_log,
    insert_previews,
    query_rows,
    read_code,
    read_generation,
    read_meta,
    replace_layout,
    stored_encoder,
)

log = logging.getLogger(__name__)

#: Above this many entries the coarsest scale gets an approximate (IVF) index.
APPROX_THRESHOLD = 100_000


class Store(StoreSearch):
    """A Cryo-SWAN store. Use :meth:`Store.open`; see the module docs."""

    def __init__(
        self,
        path: Path,
        encoder: EncoderInfo,
        read_only: bool,
        lock: WriterLock | None,
        approx_threshold: int,
        timeout: float,
        reads: SharedReader | None = None,
    ) -> None:
        self.path = path
        self.encoder = encoder
        self.read_only = read_only
        self._lock = lock
        self.approx_threshold = approx_threshold
        self.timeout = timeout
        self._indexes = ScaleIndexes(path / "faiss", encoder.scales, encoder.dims)
        self._ids = np.zeros(0, np.int64)  # sorted entry ids
        self._rg = np.zeros(0, np.float64)  # aligned with _ids (NaN: unknown)
        self._rg_by_id: np.ndarray | None = None  # see _rg_of
        self._generation = -1
        self._previews = PreviewCache()  # for the fit (get_previews)
        self._hit_columns = HitColumns()  # for the hits' metadata
        self._next_id = 1  # the database's next entry id (writers keep it current)
        self._index_info: dict[str, Any] = {}  # the FAISS files as last written
        self._closed = False
        # a reader keeps one connection between queries while no writer exists
        self._reads = reads
        if read_only and reads is None:
            self._reads = SharedReader(path / DB_NAME, path / "write.lock", timeout)

    # -- opening -------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | Path,
        encoder: EncoderInfo | None = None,
        read_only: bool = False,
        approx_threshold: int = APPROX_THRESHOLD,
        timeout: float = DEFAULT_TIMEOUT,
        accept_loss: bool = False,
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
            accept_loss: when the database lacks writes it had committed (see
                :mod:`swan_index.manifest`), record that the loss is accepted and
                open it; new ids continue past the lost ones (writers only).

        Raises:
            FileNotFoundError: no store at ``path`` and nothing to create it from.
            ValueError: ``path`` is a file; ``encoder`` differs from the store's;
                another store format.
            StoreDamagedError: the database cannot be read, or is missing while
                the manifest records entries (a ``ValueError``).
            StoreLossError: the database lacks committed writes (writers only,
                unless ``accept_loss``; a ``StoreDamagedError``).
            StoreBusyError: another process is writing (``read_only=False`` only).
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ValueError(
                f"{path}: a file, not a store folder; give the store's folder (or a "
                "new folder for a new store)"
            )
        db = path / DB_NAME
        lock = None
        if not db.exists():
            if encoder is None or read_only:
                raise FileNotFoundError(
                    f"{path}: no store here (no {DB_NAME}); create one with "
                    "`swan ingest MAPS --store DIR`"
                )
            refuse_new_database(path, DB_NAME)
            path.mkdir(parents=True, exist_ok=True)
        if not read_only:
            lock = WriterLock(path)
            lock.acquire()
        reads = None
        try:
            if not db.exists():
                create_db(db, encoder)
            manifest = load_manifest(path)  # before the database (see _check_loss)
            with readable(db):
                if not read_only:  # an older store gets the columns added since
                    with connect(db, read_only=False, timeout=timeout) as con:
                        add_columns(con)
                # a reader's one connection serves the open too (a connection
                # costs ~0.1 s)
                if read_only:
                    reads = SharedReader(db, path / "write.lock", timeout)
                with (
                    reads.connection()
                    if reads is not None
                    else connect(db, read_only=True, timeout=timeout)
                ) as con:
                    meta = read_meta(con)
                stored = stored_encoder(path / DB_NAME, meta)
                if encoder is not None and encoder.hash != stored.hash:
                    raise ValueError(
                        f"{path}: the store holds codes of encoder {stored.hash[:12]}, "
                        f"not {encoder.hash[:12]}; use that checkpoint, or re-encode "
                        f"the store with this one: {reencode_hint(path)}"
                    )
                store = cls(
                    path, stored, read_only, lock, approx_threshold, timeout, reads
                )
                store._indexes.load()
                if store._indexes.legacy:
                    store._legacy_note()
                store._check_loss(manifest, accept_loss)
                store._sync()
        except BaseException:
            if lock is not None:
                lock.release()
            if reads is not None:
                reads.close()
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

    def _legacy_note(self) -> None:
        """One line on a store whose vectors are in the previous format."""
        if self.read_only:
            log.warning(
                "%s: vectors in the previous format (faiss/scale_<s>.index, "
                "joint.npz), read into memory on every open; open the store once for "
                "writing (`swan check --store %s --repair`) to convert them",
                self.path,
                self.path,
            )
        else:
            log.warning(
                "%s: vectors in the previous format (faiss/scale_<s>.index, "
                "joint.npz): converting them (faiss/scale_<s>.vectors, joint.ivf)",
                self.path,
            )

    def _check_loss(self, manifest: tuple, accept: bool) -> None:
        """Compare the database with the manifest's mark and the FAISS files'
        ids, both read before it (a writer commits, then records the mark, then
        writes FAISS files); refuse a database that lost committed writes."""
        held = [int(ix.ids().max()) for ix in self._indexes.indexes if ix.ntotal]
        with self._db(read_only=True) as con:
            meta = read_meta(con)
        self._next_id = int(meta["next_id"])
        loss = check_mark(self.path, manifest, max(held, default=-1) + 1, meta)
        if loss is not None and self.read_only:
            log.warning("%s (opened read-only)", loss.message(self.path))
        if loss is None or self.read_only:
            return
        if not accept:
            raise StoreLossError(loss.message(self.path), loss)
        with self._transaction() as con:
            self._next_id = accept_loss(con, loss)
        msg = "%s: accepted the loss (%s); new entries get ids from %d"
        log.warning(msg, self.path, loss.describe(), self._next_id)

    def _db(self, read_only: bool):  # noqa: ANN202
        if read_only and self._reads is not None:
            return self._reads.connection()
        return connect(self.path / DB_NAME, read_only=read_only, timeout=self.timeout)

    def release_connections(self) -> None:
        """Close the connection a reader keeps between queries (at once, or when
        the queries using it end); the next query opens one again. A writer in
        another process needs no call: the reader closes it when the writer
        takes the store's write lock (:class:`swan_index.db.SharedReader`)."""
        if self._reads is not None:
            self._reads.release()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A writing connection in one transaction: committed when the block
        ends, rolled back when it raises."""
        with self._db(read_only=False) as con:
            con.begin()
            try:
                yield con
                con.commit()
            except BaseException:
                con.rollback()
                raise

    def _sync(self) -> None:
        """Bring the in-memory indexes and size table in line with DuckDB."""
        with self._db(read_only=True) as con:
            generation = read_generation(con)
            if generation == self._generation:
                return
            now = read_meta(con)["encoder"]["hash"]
            if now != self.encoder.hash:  # swapped for a re-encoded store
                raise ValueError(
                    f"{self.path}: now holds codes of encoder {now[:12]}, not "
                    f"{self.encoder.hash[:12]} (re-encoded); open the store again "
                    "(restart `swan serve`)"
                )
            # (in insertion order, so by id as a rule: sorted here when not,
            # which costs less than an ORDER BY at a million entries)
            got = con.execute("SELECT id, rg FROM entries").fetchnumpy()
            code_ids = _sorted(con.execute("SELECT id FROM codes").fetchnumpy()["id"])
            ids = np.asarray(got["id"], np.int64)
            rg = np.ma.filled(np.ma.asarray(got["rg"], np.float64), np.nan)
            order = _sorted(ids, order=True)
            self._ids = ids if order is None else ids[order]
            self._rg = np.asarray(rg if order is None else rg[order], np.float64)
            self._rg_by_id = None
            # a disagreement found on open means a crash between the two writes
            self._indexes.reconcile(con, code_ids, warn=self._generation < 0)
            # a store written before the joint index existed gets it here
            n = len(code_ids)
            self._indexes.ensure_joint(n, self.approx_threshold, drop=False)
            self._generation = generation

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
        self.encoder.check_code(code)
        n = len(code)
        if len(records) != n:
            raise ValueError(f"{len(records)} records for {n} codes")
        if previews is not None and len(previews) != n:
            raise ValueError(f"{len(previews)} previews for {n} codes")
        shas = [r.sha256 for r in records]
        if len(set(shas)) != n:
            raise ValueError("the batch holds the same map (sha256) twice")
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        with self._transaction() as con:
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
                delete_rows(con, gone)
            meta = read_meta(con)
            first = int(meta["next_id"])
            ids = np.arange(first, first + n, dtype=np.int64)
            insert_entries(con, ids, records, self.encoder.hash, now)
            insert_codes(con, ids, code)
            if previews is not None:
                insert_previews(con, ids, previews)
            if log_rows:
                by_sha = dict(zip(shas, ids.tolist(), strict=True))
                insert_log(con, log_rows, by_sha, now)
            bump(con, meta, next_id=first + n)
        if len(gone):
            self._forget(gone)
        self._indexes.add(ids, code.vectors)
        rg = np.array([np.nan if r.rg is None else r.rg for r in records])
        self._ids = np.concatenate([self._ids, ids])
        self._rg = np.concatenate([self._rg, rg])
        self._rg_by_id = None
        self._generation += 1
        self._next_id = first + n
        self._write_manifest()
        return ids

    def log(self, rows: list[dict[str, Any]]) -> None:
        """Append ``ingest_log`` rows (skipped or failed files) in one transaction."""
        self._check_writable()
        if not rows:
            return
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        with self._db(read_only=False) as con:
            insert_log(con, rows, {}, now)

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
        with self._transaction() as con:
            n = delete_rows(con, ids)
            bump(con, read_meta(con))
        self._forget(ids)
        self._generation += 1
        self._write_manifest()
        return n

    def _forget(self, ids: np.ndarray) -> None:
        """Drop deleted ids from the in-memory indexes and tables."""
        self._indexes.remove(ids)
        keep = ~np.isin(self._ids, ids)
        self._ids, self._rg = self._ids[keep], self._rg[keep]
        self._rg_by_id = None

    def flush(self) -> None:
        """Write changed FAISS indexes (atomically) and the manifest."""
        self._check_writable()
        self._indexes.write(len(self._ids), self.approx_threshold)
        self._index_info = {
            str(i["scale"]): {k: i[k] for k in ("kind", "ntotal", "nlist")}
            for i in self._indexes.info()
        }
        self._write_manifest()

    def rebuild_indexes(self) -> None:
        """Build every FAISS index anew from the database and write it (an open
        reconciles id sets only; this also mends vectors a file got wrong)."""
        self._check_writable()
        enc = self.encoder
        self._indexes = ScaleIndexes(self.path / "faiss", enc.scales, enc.dims)
        with self._db(read_only=True) as con:
            ids = con.execute("SELECT id FROM codes ORDER BY id").fetchnumpy()["id"]
            self._indexes.reconcile(con, np.asarray(ids, np.int64), warn=False)
        for i in range(len(self.encoder.scales)):
            self._indexes.path(i).unlink(missing_ok=True)  # so that all are written
        self.flush()

    def _write_manifest(self) -> None:
        """Record the last committed write (the high-water mark) and the FAISS
        files as last written; after every commit, durably (a few ms)."""
        mark = Mark(self._next_id, self._generation, len(self._ids))
        info = {"indexes": self._index_info, "approx_threshold": self.approx_threshold}
        write_manifest(self.path, self.encoder.to_dict(), mark, info)

    def close(self) -> None:
        if self._closed:
            return
        try:
            if not self.read_only:
                self.flush()
        finally:
            self._closed = True
            if self._reads is not None:
                self._reads.close()
            if self._lock is not None:
                self._lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------
    @property
    def ids(self) -> np.ndarray:
        """The entry ids of this snapshot, ascending (read-only)."""
        view = self._ids.view()
        view.flags.writeable = False
        return view

    def count(self, where: str | None = None) -> int:
        """Number of entries (matching ``where``)."""
        self._check_open()
        if where is None:
            return len(self._ids)
        return len(self._allowed(where))

    def stale(self) -> bool:
        """Whether a writer committed since this snapshot was taken (then
        :meth:`refresh` changes it); reads the database only."""
        self._check_open()
        with self._db(read_only=True) as con:
            return read_generation(con) != self._generation

    def index_info(self) -> list[dict[str, Any]]:
        """Per scale: side, dims, index kind, entries, IVF lists (0: flat)."""
        return self._indexes.info()

    def joint_info(self) -> dict[str, Any] | None:
        """The joint first-stage index (dims, entries, IVF lists), or ``None``
        where the store has none (at or below its approximate threshold)."""
        return self._indexes.joint_info()

    def _query_sql(self, sql: str, params: list | None = None) -> list[dict]:
        with self._db(read_only=True) as con:
            return query_rows(con, sql, params)

    def get(self, ids: list[int] | np.ndarray | int) -> list[dict[str, Any]]:
        """Metadata rows of ``ids`` (in that order; unknown ids are left out)."""
        self._check_open()
        ids = [int(i) for i in np.atleast_1d(np.asarray(ids, np.int64))]
        rows = self._query_sql(f"SELECT * FROM entries WHERE {id_in(ids)}")
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
        """The stored code of one entry (a batch of one).

        Raises:
            KeyError: no such entry.
        """
        self._check_open()
        with self._db(read_only=True) as con:
            try:
                return read_code(con, entry_id, self.encoder)
            except KeyError:
                raise KeyError(f"no entry {entry_id} in {self.path}") from None

    def get_previews(self, entry_ids: Any) -> dict[int, np.ndarray]:
        """``id -> preview volume`` (read-only) of the given entries that have
        one; the last ones read are kept until the entries change."""
        ids = [int(i) for i in entry_ids]
        if not ids:
            return {}
        return self._previews.get(ids, self._generation, self._read_previews)

    def _read_previews(self, ids: list[int]) -> dict[int, np.ndarray]:
        rows = self._query_sql(
            f"SELECT id, grid, volume FROM previews WHERE {id_in(ids)}"
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
        return self._indexes.sorted_vectors(self.encoder.scales.index(scale))

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
        with self._transaction() as con:
            replace_layout(con, ids, xy, cluster)
            bump(con, read_meta(con))
        self._generation += 1
        self._write_manifest()

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


def _sorted(ids: np.ndarray, order: bool = False) -> np.ndarray | None:
    """``ids`` (int64) sorted, or with ``order`` the order that sorts them
    (``None`` where they already are)."""
    ids = np.asarray(ids, np.int64)
    done = bool(np.all(ids[1:] > ids[:-1]))
    if order:
        return None if done else np.argsort(ids, kind="stable")
    return ids if done else np.sort(ids)
