"""What the HTTP API and the dashboard do, as plain Python over one store.

:class:`SwanService` holds a read-only :class:`~swan_index.store.Store` and the
encoder that made its codes. It is shared by the API routes and the Dash callbacks,
so both answer the same way, and it is what their tests call directly.

**Locking.** Reads of the store share a readers-writer lock; picking up a
writer's commits (:meth:`Store.refresh` swaps the store's in-memory state) and
the service's own writes hold it alone (DuckDB refuses a read-write and a
read-only connection to one file in one process at once). A ``where`` predicate
runs in a worker process (:mod:`swan_index.where`) while its request holds a
shared turn, so a slow predicate delays only writes and refreshes, up to the
predicate's time limit (:class:`~swan_index.where.WhereLimits`, 3 s by default).

Uploads are handled here: size-limited, written to a private temporary file whose
name never comes from the client, recognised by content (``read_map`` reads the
magic bytes), and removed after use. Their names carry the writing process's id
and host (:func:`~swan_index.query.upload_owner`), so that a service starting
later removes the files of a process killed mid-upload, and never a file another
live server is using (:func:`remove_leftovers`).

Write operations (ingest an upload, delete an entry) open the store as its writer
for the duration of the call; they are refused unless the operator configured a
write token (checked by the API).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from encoder.code import MultiScaleCode
from ingest.errors import IngestError, MapTooLargeError
from ingest.header import emdb_id_from_name
from ingest.mapio import read_map
from swan_index.db import StoreBusyError
from swan_index.fit import FitCache, apply_fit
from swan_index.generate import DEFAULT_PRIOR
from swan_index.indexer import ingest_paths
from swan_index.map_encoder import DEFAULT_CHECKPOINT, MapEncoder
from swan_index.placement import Placement, place_query
from swan_index.prepare import shrink
from swan_index.query import (
    UPLOAD_PREFIX,
    Query,
    StoredEntry,
    display_name,
    upload_owner,
)
from swan_index.ranking import Hit, SearchOptions
from swan_index.significance import Significance, StoreNull, judge
from swan_index.store import Store
from swan_index.where import WhereLimits

log = logging.getLogger(__name__)

#: Largest accepted upload (bytes); EMDB maps above this are rare and slow to send.
MAX_UPLOAD_BYTES = 512 * 2**20
#: the largest map a request may make the server hold: its float32 array, as
#: the header announces it (1 GiB is a 645^3 map), checked before any allocation
MAX_MAP_BYTES = 2**30
#: Seconds between checks for a writer's new commits.
REFRESH_EVERY = 2.0
#: Stored entries' maps read again and encoded at once for "similar" searches
#: (each takes about a second of all cores); a search waiting longer than
#: REREAD_WAIT seconds uses the entry's stored vectors.
REREAD_SLOTS = 2
REREAD_WAIT = 30.0
#: How many rotational fits (:mod:`swan_index.fit`) run at once; more requests wait
#: their turn (each fit already uses every core, and holds about 35 MB meanwhile).
FIT_SLOTS = 2
#: Stored entries' search queries kept (least recently used dropped).
ENTRY_QUERY_CACHE = 256
#: Name prefix of the copies of uploads ingested into ``STORE/uploads/``.
KEPT_PREFIX = "upload-"
#: Seconds after which an upload file named the older way (without its owner)
#: is taken for a leftover: an upload holds its file for as long as it is read
#: and encoded, seconds to minutes.
LEFTOVER_AGE = 3600.0

# The random part of a temporary name (tempfile's letters), after the owner
_OWNED = re.compile(r"(?P<pid>\d+)-(?P<host>[A-Za-z0-9._]+)-[a-z0-9_]+")
_UNOWNED = re.compile(r"[a-z0-9_]{8}")


class UploadError(ValueError):
    """A bad upload: the message says what is wrong and how to fix it."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class SearchCancelled(Exception):
    """A search stopped because its client cancelled it (see
    :meth:`SwanService.search_upload_query`)."""


class ReadWriteLock:
    """Shared reads, exclusive writes; a waiting writer holds back new readers
    (so a stream of reads cannot starve it). Not reentrant.

    Written here because the standard library has none and no maintained
    package for it is among the project's dependencies: it is a condition
    variable and three counters.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold a shared turn for the block."""
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock alone (as :meth:`threading.Lock.acquire`).

        Args:
            blocking: wait for it (else answer at once).
            timeout: seconds to wait at most (``None``: no limit).

        Returns:
            Whether it was taken.
        """
        with self._cond:
            if not blocking:
                if not self._free():
                    return False
            else:
                self._writers_waiting += 1
                try:
                    if not self._cond.wait_for(self._free, timeout):
                        return False
                finally:
                    self._writers_waiting -= 1
                    self._cond.notify_all()  # readers held back may go on
            self._writing = True
            return True

    def _free(self) -> bool:
        return not self._writing and not self._readers

    def release(self) -> None:
        """Give back the lock taken alone."""
        with self._cond:
            self._writing = False
            self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the lock alone for the block."""
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def __enter__(self) -> ReadWriteLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class AmbiguousEntry(ValueError):
    """An EMDB id that names several entries: delete one by its store id.

    Attributes:
        ids: the store ids holding that EMDB id, newest first.
    """

    def __init__(self, key: str, ids: list[int]) -> None:
        listed = ", ".join(str(i) for i in ids)
        super().__init__(
            f"{key} names {len(ids)} entries (store ids {listed}); delete one by "
            f"its store id (e.g. {ids[0]})"
        )
        self.ids = ids


class SwanService:
    """Search, details, encoding and (optional) writes over one store.

    Args:
        store_path: the store folder.
        checkpoint: the encoder checkpoint; must be the one the store was built with.
        write_token: enables ingest/delete when set (the API checks it).
        max_upload_bytes: uploads above this are refused (413).
        max_map_bytes: maps whose float32 array, as their header announces it,
            is larger than this are refused (413) before anything is allocated;
            a small compressed upload can announce a huge map.
        where_limits: what one ``where`` predicate may use (time, memory,
            threads, how many at once).
        prior: the latent prior for denoising and variations (default: the
            shipped one; :mod:`dashboard.generative` loads it on first use).
    """

    def __init__(
        self,
        store_path: str | Path,
        checkpoint: str | Path = DEFAULT_CHECKPOINT,
        write_token: str | None = None,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        where_limits: WhereLimits | None = None,
        max_map_bytes: int = MAX_MAP_BYTES,
        prior: str | Path | None = None,
    ) -> None:
        self.store_path = Path(store_path)
        self.prior_path = Path(prior) if prior is not None else DEFAULT_PRIOR
        self.store = Store.open(self.store_path, read_only=True)
        self.store.where_limits = where_limits or WhereLimits()
        kept = {Path(p).name for p in self.store.known_files()}
        remove_leftovers(self.store_path, kept)
        self.encoder = MapEncoder(checkpoint)
        if self.encoder.info.hash != self.store.encoder.hash:
            raise ValueError(
                f"{checkpoint}: encoder {self.encoder.info.hash[:12]}, but the store "
                f"holds codes of {self.store.encoder.hash[:12]}; pass its checkpoint"
            )
        self.write_token = write_token
        self.max_upload_bytes = max_upload_bytes
        self.max_map_bytes = max_map_bytes
        self._lock = ReadWriteLock()
        self._checked = time.monotonic()
        # queries of stored entries, keyed by what makes them stale (guarded by
        # their own mutex); at most REREAD_SLOTS maps read again and encoded at once
        self._entry_queries: OrderedDict[tuple, Query] = OrderedDict()
        self._fits = FitCache()  # the turned volumes of those queries
        self._cache_lock = threading.Lock()
        self._reread = threading.BoundedSemaphore(REREAD_SLOTS)
        self._fitting = threading.BoundedSemaphore(FIT_SLOTS)

    # -- housekeeping ----------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        """Pick up a writer's commits (checked at most every ``REFRESH_EVERY``
        seconds, under a shared turn; the lock is taken alone only when there is
        something to pick up, or when ``force``)."""
        now = time.monotonic()
        if not force and now - self._checked <= REFRESH_EVERY:
            return
        self._checked = now
        if not force:
            with self._lock.reading():
                if not self.store.stale():
                    return
        with self._lock.writing():
            self.store.refresh()

    def close(self) -> None:
        self.store.close()

    def table(
        self, columns: tuple[str, ...], where: str | None = None
    ) -> dict[str, np.ndarray]:
        """Entry columns (with the layout's x, y, cluster) as arrays, by id."""
        self.refresh()
        with self._lock.reading():
            return self.store.entries(columns, where=where)

    def count(self, where: str | None = None) -> int:
        self.refresh()
        with self._lock.reading():
            return self.store.count(where)

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "entries": self.store.count(),
            "encoder": self.store.encoder.hash,
            "scales": list(self.store.encoder.scales),
            "writes_enabled": self.write_token is not None,
        }

    # -- uploads ---------------------------------------------------------------------
    def _check_upload(self, data: bytes) -> None:
        if not data:
            raise UploadError("empty upload; send a .map/.mrc/.ccp4 file (gz/bz2 ok)")
        if len(data) > self.max_upload_bytes:
            raise UploadError(
                f"upload of {len(data):,} bytes is over the "
                f"{self.max_upload_bytes:,}-byte limit; send a smaller or gzipped map",
                status=413,
            )

    def _upload_query(self, data: bytes, name: str, contour: float | None) -> Query:
        """The query of an uploaded map, in every candidate pose.

        Raises:
            UploadError: empty, too large (413), or not a readable map.
        """
        self._check_upload(data)
        try:
            return Query.from_bytes(
                self.encoder, data, name, contour, max_bytes=self.max_map_bytes
            )
        except MapTooLargeError as exc:
            raise UploadError(str(exc), status=413) from None
        except IngestError as exc:
            raise UploadError(str(exc)) from None

    # -- reading ---------------------------------------------------------------------
    def search_upload(
        self,
        data: bytes,
        name: str = "upload",
        k: int = 10,
        where: str | None = None,
        exact: bool = False,
        contour: float | None = None,
        fit: bool = True,
    ) -> dict[str, Any]:
        """Search with an uploaded map: ``{"query": {...}, "hits": [...],
        "significance": {...}}``; ``fit``: re-score the best hits by a search
        over all rotations (:mod:`swan_index.fit`).

        Raises:
            UploadError: bad upload (status 400, or 413 when too large).
            ValueError: bad ``k`` or ``where``.
        """
        return self.search_upload_query(data, name, k, where, exact, contour, fit)[1]

    def search_upload_query(
        self,
        data: bytes,
        name: str = "upload",
        k: int = 10,
        where: str | None = None,
        exact: bool = False,
        contour: float | None = None,
        fit: bool = True,
        cancelled: Callable[[], bool] | None = None,
    ) -> tuple[Query, dict[str, Any]]:
        """:meth:`search_upload`, answering the :class:`Query` itself (the
        dashboard draws it and places it on the map) and the result.

        Args:
            cancelled: asked after each stage (reading and encoding, the
                rotational fit, ranking); once it answers true the search stops
                there. A stage under way runs to its end.

        Raises:
            SearchCancelled: ``cancelled`` answered true.
            UploadError, ValueError: as :meth:`search_upload`.
        """
        query, options = self.upload_query_for_search(
            data, name, k, where, exact, contour
        )
        return query, self._search(query, fit, k, options, cancelled)

    def upload_query_for_search(
        self,
        data: bytes,
        name: str,
        k: int,
        where: str | None,
        exact: bool,
        contour: float | None,
    ) -> tuple[Query, SearchOptions]:
        """The query of an upload and the search's options, ``k`` and ``where``
        checked first (before the upload's costly encoding).

        Raises:
            UploadError, ValueError: as :meth:`search_upload`.
        """
        self.refresh()
        options = SearchOptions(where=where, exact=exact)
        self._check_search(k, where)
        return self._upload_query(data, name, contour), options

    def placement(self, query: Query) -> Placement | None:
        """Where ``query`` (its first pose) lies on the archive map
        (:func:`swan_index.placement.place_query`); ``None`` without a layout."""
        with self._lock.reading():
            return place_query(self.store, query.code, query.rg)

    def _check_search(self, k: Any, where: str | None) -> None:
        """Refuse a bad ``k`` or ``where`` (ValueError, one line) before any
        encoding: the predicate is run once, in its sandbox, on the store."""
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k={k!r}: ask for at least 1 hit")
        if where is not None:
            with self._lock.reading():
                self.store.count(where=where)

    def similar(
        self,
        entry: str | int,
        k: int = 10,
        where: str | None = None,
        exact: bool = False,
        fit: bool = True,
    ) -> dict[str, Any]:
        """Entries most similar to a stored one (store id or EMDB id), searched in
        every candidate pose of its map when its file is still there
        (:meth:`Query.from_entry`); ``fit``: the best hits re-scored by a search
        over all rotations of its stored preview (:mod:`swan_index.fit`).

        Raises:
            KeyError: no such entry.
        """
        self.refresh()
        with self._lock.reading():
            stored = StoredEntry.read(self.store, entry)
        with self._cache_lock:
            query = self._entry_queries.get(stored.cache_key)
            if query is not None:
                self._entry_queries.move_to_end(stored.cache_key)
        if query is None:
            query = self._entry_query(stored)
        return self._search(query, fit, k, SearchOptions(where=where, exact=exact))

    def _search(
        self,
        query: Query,
        fit: bool,
        k: int,
        options: SearchOptions,
        cancelled: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """:func:`swan_index.query.search_explained` holding a shared turn only
        for what reads the store: the rotational fit and the E-values' background,
        the costly steps, run without it (at most :data:`FIT_SLOTS` at once).
        ``cancelled`` is asked between stages (:class:`SearchCancelled`).

        Returns:
            ``{"query": ..., "hits": [...], "significance": ...}``.
        """
        hits, sig = self.search_hits(query, fit, k, options, cancelled)
        return {
            "query": query.describe(),
            "hits": [h.to_dict() for h in hits],
            "significance": sig.to_dict(),
        }

    def search_hits(
        self,
        query: Query,
        fit: bool,
        k: int,
        options: SearchOptions,
        cancelled: Callable[[], bool] | None = None,
    ) -> tuple[list[Hit], Significance]:
        """:meth:`_search`'s hits and significance, as objects."""

        def check() -> None:
            if cancelled is not None and cancelled():
                raise SearchCancelled(query.name or "search")

        check()
        turned = self._fits.get(query) if fit else None
        check()
        with self._lock.reading():
            ranking = self.store.rank(
                query.code, k, options, rg=query.rg, fit=turned is not None
            )
        check()
        with self._fitting:
            apply_fit(ranking, turned)
        with self._lock.reading():
            hits = self.store.hits(ranking)
            null = StoreNull.read(self.store, options, turned is not None)
        check()
        with self._fitting:
            return judge(
                null, hits, query.code, query.rg, options, turned, query.entry_id
            )

    def _entry_query(self, stored: StoredEntry) -> Query:
        """:meth:`Query.from_stored`, outside the lock, at most
        :data:`REREAD_SLOTS` at once (else, after :data:`REREAD_WAIT` s, the stored
        vectors); remembered for the next search of the same entry when its map
        was read."""
        if not self._reread.acquire(timeout=REREAD_WAIT):
            return Query.stored_only(stored, "busy")
        try:
            query = Query.from_stored(stored, self.encoder)
        finally:
            self._reread.release()
        if query.source == "map":  # a fallback is cheap, and its cause may pass
            with self._cache_lock:
                self._entry_queries[stored.cache_key] = query
                while len(self._entry_queries) > ENTRY_QUERY_CACHE:
                    self._entry_queries.popitem(last=False)
        return query

    def entry(self, entry: str | int) -> dict[str, Any]:
        """Metadata of one entry.

        Raises:
            KeyError: no such entry.
        """
        self.refresh()
        with self._lock.reading():
            entry_id = self.store.find(entry)
            rows = self.store.get([entry_id])
        if not rows:
            raise KeyError(f"no entry {entry}")
        return rows[0]

    def list_entries(
        self, offset: int = 0, limit: int = 100, where: str | None = None
    ) -> dict[str, Any]:
        """One page of the entries (matching ``where``), ordered by store id.

        Args:
            offset: entries to pass over first.
            limit: entries in the page at most.
            where: SQL predicate over entries (run once, in its sandbox).

        Returns:
            ``{"total", "offset", "limit", "next_offset", "entries": [rows]}``;
            ``next_offset`` is ``None`` on the last page.

        Raises:
            ValueError: a bad ``offset``, ``limit`` or ``where``.
        """
        if offset < 0 or limit < 1:
            raise ValueError(
                f"offset={offset}, limit={limit}: give offset >= 0, limit >= 1"
            )
        self.refresh()
        with self._lock.reading():
            if where is None:
                total = self.store.count()
                page = self.store.entries(("id",), limit=limit, offset=offset)["id"]
            else:
                ids = self.store.entries(("id",), where=where)["id"]
                total, page = len(ids), ids[offset : offset + limit]
            rows = self.store.get(page)
        end = offset + len(rows)
        return {
            "total": int(total),
            "offset": offset,
            "limit": limit,
            "next_offset": end if end < total else None,
            "entries": rows,
        }

    def preview(self, entry: str | int) -> np.ndarray | None:
        """The stored preview volume ``[g, g, g]`` in [0, 1], or ``None``."""
        with self._lock.reading():
            return self.store.get_preview(self.store.find(entry))

    def code(self, entry: str | int) -> MultiScaleCode:
        """The entry's stored code (its primary pose).

        Raises:
            KeyError: no such entry.
        """
        with self._lock.reading():
            return self.store.get_code(self.store.find(entry))

    def coarse_to_fine(self, entry: str | int, grid: int = 32) -> list[np.ndarray]:
        """The entry decoded from its first 1, 2, ... all scales, each ``[grid]^3``
        in [0, 1] (what each scale of its code holds)."""
        code = self.code(entry)
        model = self.encoder.model
        out = []
        for s in range(1, len(code.scales) + 1):
            volume = model.decode(code, up_to=s)[0, 0].clamp(0, 1).cpu().numpy()
            out.append(shrink(volume, grid))
        return out

    def encode_upload(
        self, data: bytes, name: str = "upload", contour: float | None = None
    ) -> dict[str, Any]:
        """The code of an uploaded map in its primary pose: per scale, the token
        indices and the retrieval vector."""
        query = self._upload_query(data, name, contour)
        first = query.code[0]
        return {
            "query": query.describe(),
            "checkpoint_hash": first.checkpoint_hash,
            "bits": first.bits(self.store.encoder.codebook_sizes),
            "scales": [
                {
                    "scale": side,
                    "tokens": first.tokens[i][0].tolist(),
                    "vector": first.vectors[i][0].tolist(),
                }
                for i, side in enumerate(first.scales)
            ],
        }

    # -- writing (token-gated by the API) ---------------------------------------------
    @contextmanager
    def _writer(self) -> Iterator[Store]:
        if self.write_token is None:
            raise PermissionError("writes are disabled; start the server with a token")
        # DuckDB refuses a read-write and a read-only connection to one file in
        # one process at once: reads wait while a write runs.
        with self._lock.writing():
            self.store.release_connections()  # no reads run meanwhile
            try:
                store = Store.open(self.store_path)
            except StoreBusyError as exc:
                raise UploadError(str(exc), status=409) from None
            try:
                yield store
            finally:
                store.close()
                self.store.refresh()
                self._checked = time.monotonic()

    def ingest_upload(self, data: bytes, name: str = "upload") -> dict[str, Any]:
        """Store an uploaded map (kept under ``STORE/uploads/``)."""
        if self.write_token is None:
            raise PermissionError("writes are disabled; start the server with a token")
        self._check_upload(data)
        uploads = self.store_path / "uploads"
        uploads.mkdir(exist_ok=True)
        fd, kept = tempfile.mkstemp(
            dir=uploads, prefix=f"{KEPT_PREFIX}{upload_owner()}-", suffix=".map"
        )
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            dmap = read_map(kept, max_bytes=self.max_map_bytes)
            if dmap.generated:
                raise UploadError(
                    f"{display_name(name)}: its header says the Cryo-SWAN prior "
                    "generated it, so it was not measured; the API stores measured "
                    "maps only (swan ingest --allow-generated stores it, labelled)"
                )
            sha = dmap.sha256
            del dmap
            with self._writer() as store:
                summary = ingest_paths(
                    [kept], store, self.encoder, workers=0, progress=False
                )
                entry_id = store.find_sha256(sha)
            if summary.failed:
                raise UploadError(
                    _client_message_text(summary.failures[0]["reason"], kept, name)
                )
        except IngestError as exc:
            Path(kept).unlink(missing_ok=True)
            status = 413 if isinstance(exc, MapTooLargeError) else 400
            raise UploadError(_client_message(exc, kept, name), status) from None
        except BaseException:
            Path(kept).unlink(missing_ok=True)
            raise
        if summary.skipped:  # the same map was stored already: keep no copy
            Path(kept).unlink(missing_ok=True)
        return {**summary.to_dict(), "id": entry_id}

    def delete(self, entry: str | int) -> dict[str, Any]:
        """Delete an entry (and the file of an entry that came by upload).

        Args:
            entry: a store id, or an EMDB id that names exactly one entry.

        Returns:
            ``{"deleted": n, "id": store id}``.

        Raises:
            KeyError: no such entry.
            AmbiguousEntry: the EMDB id names several entries (status 409).
            PermissionError: writes are disabled.
        """
        with self._lock.reading():
            entry_id = self.store.find(entry)
            if not _is_store_id(entry):
                ids = self._ids_named(str(entry))
                if len(ids) > 1:
                    raise AmbiguousEntry(str(entry).strip(), ids)
            rows = self.store.get([entry_id])
        with self._writer() as store:
            n = store.delete([entry_id])
        uploads = (self.store_path / "uploads").resolve()
        source = rows[0].get("source_path") if rows else None
        if n and source and Path(source).resolve().parent == uploads:
            Path(source).unlink(missing_ok=True)
        return {"deleted": n, "id": entry_id}

    def _ids_named(self, key: str) -> list[int]:
        """Store ids of the entries whose EMDB id is ``key`` (as
        :meth:`Store.find <swan_index.store.Store.find>` reads it), newest first."""
        text = key.strip()
        emdb = emdb_id_from_name(text) or text
        literal = "'" + emdb.replace("'", "''") + "'"  # an SQL string literal
        ids = self.store.entries(("id",), where=f"emdb_id = {literal}")["id"]
        return sorted((int(i) for i in ids), reverse=True)


def _is_store_id(entry: str | int) -> bool:
    """Whether :meth:`Store.find` takes ``entry`` as a store id (not an EMDB id)."""
    return isinstance(entry, int) or str(entry).strip().isdigit()


def remove_leftovers(store_path: Path, stored_names: set[str]) -> list[Path]:
    """Remove the upload files that processes killed mid-upload left behind.

    ``swan-upload-PID-HOST-*.bin`` in the temporary folder (a search upload being
    read) and ``STORE/uploads/upload-PID-HOST-*.map`` that no entry holds (an
    upload being ingested) are removed when their process is gone: same host,
    no process with that id. Files of other hosts and of live processes are
    kept, as are stored entries' files (``stored_names``, base names, so a moved
    store keeps them). Files named the older way, without their owner, are
    removed once :data:`LEFTOVER_AGE` old. Failures are logged, never raised.

    Args:
        store_path: the store folder.
        stored_names: base names of the stored entries' source files.

    Returns:
        The files removed.
    """
    places = (
        (Path(tempfile.gettempdir()), UPLOAD_PREFIX, ".bin"),
        (store_path / "uploads", KEPT_PREFIX, ".map"),
    )
    host = upload_owner().split("-", 1)[1]
    removed = []
    for folder, prefix, suffix in places:
        try:
            found = sorted(folder.glob(f"{prefix}*{suffix}"))
        except OSError:
            continue
        for path in found:
            stem = path.name[len(prefix) : -len(suffix)]
            if path.name in stored_names or not _is_leftover(path, stem, host):
                continue
            try:
                path.unlink()
            except OSError as exc:
                log.debug("left %s: %s", path, exc)
                continue
            removed.append(path)
    if removed:
        log.warning(
            "removed %d upload file(s) left by stopped processes, e.g. %s",
            len(removed),
            removed[0],
        )
    return removed


def _is_leftover(path: Path, stem: str, host: str) -> bool:
    """Whether an upload file named ``PREFIX + stem + SUFFIX`` was left behind."""
    owned = _OWNED.fullmatch(stem)
    if owned is not None:
        return owned["host"] == host and not _alive(int(owned["pid"]))
    if _UNOWNED.fullmatch(stem):
        try:
            return time.time() - path.stat().st_mtime > LEFTOVER_AGE
        except OSError:
            return False
    return False


def _alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (``kill(pid, 0)``: the
    POSIX check; psutil's ``pid_exists`` does the same and is no dependency)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, ValueError):  # no such process id can exist
        return False
    except OSError:  # e.g. another user's process: it exists
        return True
    return True


def _client_message(exc: Exception, tmp: Path | str, name: str) -> str:
    return _client_message_text(str(exc), tmp, name)


def _client_message_text(text: str, tmp: Path | str, name: str) -> str:
    """The reader's one-line message, with the upload's name instead of the
    server's temporary path."""
    return text.replace(str(tmp), display_name(name))
