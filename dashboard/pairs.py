"""A query and one of its hits, superposed: what the search page draws and the
API hands out (:mod:`swan_index.superpose` does the geometry).

:class:`Pairs` reads the maps a superposition needs and keeps a few of them:

* the uploads searched from the dashboard, by content hash (the bytes as sent,
  at most :data:`UPLOADS_KEPT` of them and :data:`UPLOAD_BYTES_KEPT` bytes in
  all, oldest dropped first): picking a hit later needs the query's map again;
* the last :data:`PAIRS_KEPT` superpositions, so that moving a contour or
  downloading the pair does not search the pose again.

A hit's map is read from the file it was ingested from; an entry without one
(a simulated entry, a file moved or changed since) cannot be superposed, and
:class:`MapUnavailable` says so in one line.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboard.service import SwanService, UploadError
from ingest.errors import IngestError, MapTooLargeError
from ingest.mapio import read_map
from swan_index.query import display_name, read_upload
from swan_index.superpose import (
    PairVolumes,
    Placed,
    Superposition,
    display_volumes,
    pair_files,
    pair_zip,
    safe_name,
    superpose,
)

log = logging.getLogger(__name__)

#: Uploads kept for superpositions (count, and bytes in all).
UPLOADS_KEPT = 4
UPLOAD_BYTES_KEPT = 256 * 2**20
#: Superpositions kept (each holds both maps).
PAIRS_KEPT = 4
#: Superpositions computed at once (each uses every core for seconds).
PAIR_SLOTS = 2


class MapUnavailable(UploadError):
    """A map a superposition needs cannot be read: the message says which and
    why (status 404)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=404)


@dataclass(frozen=True, eq=False)
class Pair:
    """A query superposed on a hit.

    Attributes:
        query, hit: the maps, canonicalized.
        sup: the query's pose on the hit.
        volumes: both on one display grid.
        hit_id: the hit's store id.
        hit_path: the hit's map file.
    """

    query: Placed
    hit: Placed
    sup: Superposition
    volumes: PairVolumes
    hit_id: int
    hit_path: str

    def describe(self) -> dict[str, Any]:
        """JSON-ready: names, contours, the transform and its correlations."""
        return {
            "query": self.query.name,
            "hit": self.hit.name,
            "hit_id": self.hit_id,
            "query_contour": self.query.contour,
            "hit_contour": self.hit.contour,
            **self.sup.to_dict(),
        }

    def archive(
        self,
        query_level: float | None = None,
        hit_level: float | None = None,
        include_hit: bool = True,
    ) -> tuple[str, bytes]:
        """``(file name, zip bytes)`` of the pair at these levels (default: the
        maps' contours): the query resampled onto the hit's grid, the hit's map
        (unless ``include_hit`` is false: the user has it) and a ChimeraX command
        file (:func:`swan_index.superpose.pair_files`)."""
        hit_path = self.hit_path if include_hit else None
        files = pair_files(
            self.query, self.hit, self.sup, hit_path, query_level, hit_level
        )
        name = f"{safe_name(self.query.name)}_on_{safe_name(self.hit.name)}.zip"
        return name, pair_zip(files)


def upload_key(data: bytes) -> str:
    """The key an upload is kept under: the start of its sha256."""
    return hashlib.sha256(data).hexdigest()[:24]


class Pairs:
    """Superpositions over one service's store (thread-safe).

    Args:
        service: the store's service (for entries and the map size limit).
    """

    def __init__(self, service: SwanService) -> None:
        self.service = service
        self._uploads: OrderedDict[str, tuple[str, bytes, float | None]] = OrderedDict()
        self._pairs: OrderedDict[tuple, Pair] = OrderedDict()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(PAIR_SLOTS)

    # -- uploads -----------------------------------------------------------------
    def keep_upload(self, data: bytes, name: str, contour: float | None) -> str:
        """Keep an upload for later superpositions; its key."""
        key = upload_key(data)
        with self._lock:
            self._uploads[key] = (display_name(name), data, contour)
            self._uploads.move_to_end(key)
            while len(self._uploads) > UPLOADS_KEPT or (
                len(self._uploads) > 1
                and sum(len(v[1]) for v in self._uploads.values()) > UPLOAD_BYTES_KEPT
            ):
                self._uploads.popitem(last=False)
        return key

    def kept_upload(self, key: str) -> tuple[str, bytes, float | None]:
        """``(name, bytes, contour)`` of an upload kept under ``key``.

        Raises:
            MapUnavailable: it is no longer kept.
        """
        with self._lock:
            kept = self._uploads.get(key)
        if kept is None:
            raise MapUnavailable(
                "the query map is no longer held on the server; upload it again"
            )
        return kept

    def _upload(self, key: str) -> Placed:
        name, data, contour = self.kept_upload(key)
        return self._placed_upload(data, name, contour)

    def _placed_upload(self, data: bytes, name: str, contour: float | None) -> Placed:
        try:
            dmap = read_upload(data, name, max_bytes=self.service.max_map_bytes)
            return Placed.of(dmap, contour, display_name(name))
        except MapTooLargeError as exc:
            raise UploadError(str(exc), status=413) from None
        except IngestError as exc:
            raise UploadError(str(exc)) from None

    # -- stored entries ----------------------------------------------------------
    def entry_map(self, entry: str | int) -> tuple[Placed, int, str]:
        """A stored entry's map, read again from its file and canonicalized at
        its stored contour: ``(map, store id, path)``.

        Raises:
            KeyError: no such entry.
            MapUnavailable: no file, or it is gone, changed or unreadable.
        """
        row = self.service.entry(entry)
        name = row.get("emdb_id") or f"entry {row['id']}"
        path = row.get("source_path")
        if not path:
            raise MapUnavailable(
                f"{name}: no map file is recorded for it (a simulated entry); "
                "superpose maps of stored files"
            )
        if not Path(path).is_file():
            raise MapUnavailable(
                f"{name}: its map file {Path(path).name} is no longer where it was "
                "ingested from; put it back to superpose it"
            )
        try:
            dmap = read_map(path, max_bytes=self.service.max_map_bytes)
            if row.get("sha256") and dmap.sha256 != row["sha256"]:
                raise MapUnavailable(
                    f"{name}: its map file {Path(path).name} changed since it was "
                    "ingested; ingest it again to superpose it"
                )
            placed = Placed.of(dmap, row.get("contour"), name)
        except IngestError as exc:
            raise MapUnavailable(
                f"{name}: its map cannot be read again ({exc})"
            ) from None
        return placed, int(row["id"]), str(path)

    # -- pairs -------------------------------------------------------------------
    def _pair(self, query: Placed, hit: str | int) -> Pair:
        hit_map, hit_id, path = self.entry_map(hit)
        with self._slots:
            sup = superpose(query, hit_map)
            volumes = display_volumes(query, hit_map, sup)
        return Pair(query, hit_map, sup, volumes, hit_id, path)

    def for_upload_key(self, key: str, hit: int) -> Pair:
        """The upload kept under ``key`` superposed on entry ``hit`` (kept for
        the next call with the same pair).

        Raises:
            MapUnavailable: the upload is no longer kept, or the hit's map
                cannot be read.
            KeyError: no such entry.
        """
        cache_key = (key, int(hit))
        with self._lock:
            pair = self._pairs.get(cache_key)
            if pair is not None:
                self._pairs.move_to_end(cache_key)
                return pair
        pair = self._pair(self._upload(key), hit)
        with self._lock:
            self._pairs[cache_key] = pair
            while len(self._pairs) > PAIRS_KEPT:
                self._pairs.popitem(last=False)
        return pair

    def for_upload(
        self, data: bytes, name: str, hit: str | int, contour: float | None = None
    ) -> Pair:
        """An uploaded map superposed on a stored entry (nothing kept).

        Raises:
            UploadError: a bad upload; MapUnavailable: the hit's map.
            KeyError: no such entry.
        """
        return self._pair(self._placed_upload(data, name, contour), hit)

    def for_entries(self, entry: str | int, hit: str | int) -> Pair:
        """One stored entry superposed on another.

        Raises:
            KeyError: no such entry; MapUnavailable: a map cannot be read.
        """
        query, _, _ = self.entry_map(entry)
        return self._pair(query, hit)
