"""One query type for every caller: what a search searches with.

The command line, the HTTP service and dashboard, ``swan eval retrieval`` and the
retrieval benchmark all build their queries here, so they search the same way:

* :meth:`Query.from_file`: a map file (its EMDB header, when one lies beside it,
  gives the contour, as ingest finds it);
* :meth:`Query.from_bytes`: an uploaded map (a private temporary file named
  after the process writing it, :func:`upload_owner`; error messages name the
  upload, never the temporary path);
* :meth:`Query.from_map`: a :class:`~ingest.DensityMap` already in memory;
* :meth:`Query.from_model`: an atomic model file (PDB/mmCIF), simulated at a
  resolution as ``swan ingest`` simulates it (first biological assembly);
* :meth:`Query.from_entry`: an entry of the store (store id or EMDB id). The
  store keeps one pose per entry, but a map whose canonical pose is ambiguous may
  have been stored in a different pose from its relatives, and a map file is
  searched in every candidate pose. So the entry's map is read again (at the
  contour it was stored at) and encoded in every candidate pose, after its
  stored vectors (which keep a store built by older pose rules finding its own
  entries). That needs its file where it was ingested from, unchanged (size,
  modification time, sha256), readable and at most ``max_bytes``; otherwise its
  stored vectors alone are the query, and ``note`` says why.

A query carries its code in every candidate pose, its radius of gyration (for the
size term) and the volumes the rotational fit turns: the canonical volumes of a
map, or an entry's stored preview. :func:`search` runs the three stages of a
search: :meth:`Store.rank <swan_index.store.Store.rank>`, the rotational fit
(:func:`swan_index.fit.apply_fit`) and :meth:`Store.hits
<swan_index.store.Store.hits>`.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from encoder.code import MultiScaleCode
from ingest.discover import ModelEntry, find_entries
from ingest.errors import IngestError
from ingest.header import read_header
from ingest.mapio import DensityMap, read_map
from ingest.models import DEFAULT_MODEL_RESOLUTION, check_resolutions
from swan_index.fit import FitQuery, apply_fit, fit_query
from swan_index.map_encoder import MapEncoder, concat_codes
from swan_index.prepare import PreparedMap, prepare_map, prepare_model
from swan_index.ranking import Hit, SearchOptions
from swan_index.significance import NullModels, Significance, assess
from swan_index.store import Store

log = logging.getLogger(__name__)

#: A stored entry's map is read again for a search only up to this many bytes; a
#: larger one is searched with its stored vectors.
REREAD_LIMIT = 512 * 2**20
#: Name prefix of the temporary file of an upload in the temporary folder.
UPLOAD_PREFIX = "swan-upload-"


def upload_owner() -> str:
    """``PID-HOST`` of this process, for the names of its temporary upload files:
    a file whose owner is gone (killed mid-upload) can be told from one in use.
    The host name keeps only letters, digits and dots (no ``-``, the separator).
    """
    host = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:63] or "host"
    return f"{os.getpid()}-{host}"


@dataclass(frozen=True, eq=False)
class StoredEntry:
    """What a query of a stored entry needs from the store, read at once (a
    server holds its store lock for this part only).

    Attributes:
        id: the entry id.
        row: its ``entries`` row (:meth:`Store.get`).
        code: its stored code (one row).
        preview: its stored preview volume, or ``None``.
    """

    id: int
    row: dict[str, Any]
    code: MultiScaleCode
    preview: np.ndarray | None

    @classmethod
    def read(cls, store: Store, key: str | int) -> StoredEntry:
        """Read an entry by store id or EMDB id (:meth:`Store.find`).

        Raises:
            KeyError: no such entry.
        """
        entry_id = store.find(key)
        return cls(
            entry_id,
            store.get([entry_id])[0],
            store.get_code(entry_id),
            store.get_preview(entry_id),
        )

    @property
    def cache_key(self) -> tuple:
        """What makes a query of this entry stale: id, content hash, file time."""
        return (self.id, self.row.get("sha256"), self.row.get("file_mtime_ns"))


@dataclass(frozen=True, eq=False)
class Query:
    """A search query: one map in every candidate pose.

    Attributes:
        code: one row per pose (for a stored entry, its stored vectors first).
        rg: the radius of gyration, Å, for the size term (``None``: unknown).
        volumes: what the rotational fit turns: canonical volumes
            ``[P, G, G, G]`` of a map, or an entry's stored preview ``[g, g, g]``
            (``None``: no fit).
        source: ``"file"``, ``"upload"`` or ``"memory"`` for a map; for a stored
            entry ``"map"`` (its file read again) or ``"stored"`` (its stored
            vectors only).
        note: for a stored entry, why its file was not read again.
        entry_id: the stored entry queried, if any.
        prepared: the map's canonical volumes and record (contour, rg...), for
            a map.
        name: what to call the query in messages (file or upload name).
    """

    code: MultiScaleCode
    rg: float | None
    volumes: np.ndarray | None
    source: str
    note: str | None = None
    entry_id: int | None = None
    prepared: PreparedMap | None = None
    name: str | None = None

    @property
    def poses(self) -> int:
        """Rows of :attr:`code`."""
        return len(self.code)

    def fit(self) -> FitQuery | None:
        """The query's volumes turned through every rotation of the fit's grid
        (:class:`~swan_index.fit.FitQuery`; tens of ms), or ``None`` when there
        are none or they cannot be compared (logged)."""
        return fit_query(self.volumes)

    # -- maps --------------------------------------------------------------------------
    @classmethod
    def from_map(
        cls,
        encoder: MapEncoder,
        dmap: DensityMap,
        contour: float | None = None,
        label: str | None = None,
        source: str = "memory",
    ) -> Query:
        """A map already read, in every candidate pose.

        Args:
            encoder: the store's encoder.
            dmap: the map.
            contour: its contour (default: an automatic one).
            label: a label for its record (benchmarks).
            source: how the map came (:attr:`source`).

        Raises:
            IngestError: nothing in the map reaches the contour.
        """
        prepared = prepare_map(dmap, encoder.grid, True, contour=contour, label=label)
        return cls._of_prepared(encoder, prepared, source, Path(dmap.path).name)

    @classmethod
    def from_file(
        cls, encoder: MapEncoder, path: str | Path, contour: float | None = None
    ) -> Query:
        """A map file, in every candidate pose. Its EMDB header, when one lies
        beside it (as ingest finds them), gives the contour, so that a stored map
        searched again gives the same volume.

        Raises:
            IngestError: the file (or its header) cannot be read or holds no
                density above the contour.
        """
        entry = next(iter(find_entries(path)), None)
        metadata = None
        if entry is not None and entry.header_path is not None:
            metadata = read_header(entry.header_path)
        prepared = prepare_map(
            read_map(path), encoder.grid, True, metadata, entry, contour=contour
        )
        return cls._of_prepared(encoder, prepared, "file", str(path))

    @classmethod
    def from_model(
        cls,
        encoder: MapEncoder,
        path: str | Path,
        resolution: float = DEFAULT_MODEL_RESOLUTION,
        assembly: bool = True,
    ) -> Query:
        """An atomic model file simulated at ``resolution`` (Å), in every
        candidate pose: the map ``swan ingest`` stores for it at that resolution.

        Raises:
            IngestError: the model cannot be read or simulated (one line naming
                the file and the fix).
            ValueError: resolution out of 0.5-100 Å.
        """
        entry = ModelEntry(
            Path(path), check_resolutions([resolution]), assembly=assembly
        )
        (prepared,) = prepare_model(entry, encoder.grid, all_poses=True)
        return cls._of_prepared(encoder, prepared, "model", str(path))

    @classmethod
    def from_bytes(
        cls,
        encoder: MapEncoder,
        data: bytes,
        name: str = "upload",
        contour: float | None = None,
        max_bytes: int | None = None,
    ) -> Query:
        """An uploaded map (any format :func:`ingest.read_map` reads, recognised
        by content), through a private temporary file removed after use
        (``swan-upload-PID-HOST-*.bin`` in the temporary folder: a process
        killed meanwhile leaves it, and ``swan serve`` removes it when it
        starts). ``max_bytes`` bounds the float32 array the header announces
        (:func:`ingest.read_map`), checked before anything is allocated.

        Raises:
            MapTooLargeError: the map announced is over ``max_bytes`` or the
                memory available.
            IngestError: the upload cannot be read or holds no density above the
                contour; the message names ``name``, not the temporary file.
        """
        shown = display_name(name)
        with _upload_file(data, shown) as tmp:
            dmap = read_map(tmp, max_bytes=max_bytes)
            prepared = prepare_map(dmap, encoder.grid, True, contour=contour)
        return cls._of_prepared(encoder, prepared, "upload", shown)

    @classmethod
    def _of_prepared(
        cls, encoder: MapEncoder, prepared: PreparedMap, source: str, name: str
    ) -> Query:
        return cls(
            encoder.encode(prepared.volumes),
            prepared.record.rg,
            prepared.volumes,
            source,
            prepared=prepared,
            name=name,
        )

    # -- stored entries ----------------------------------------------------------------
    @classmethod
    def from_entry(
        cls,
        store: Store,
        encoder: MapEncoder | None,
        key: str | int,
        max_bytes: int = REREAD_LIMIT,
    ) -> Query:
        """A stored entry (store id or EMDB id): its map read again in every
        candidate pose when it can be, else its stored vectors (see the module
        docs). ``encoder=None`` searches with the stored vectors.

        Raises:
            KeyError: no such entry.
        """
        return cls.from_stored(StoredEntry.read(store, key), encoder, max_bytes)

    @classmethod
    def from_stored(
        cls,
        entry: StoredEntry,
        encoder: MapEncoder | None,
        max_bytes: int = REREAD_LIMIT,
    ) -> Query:
        """:meth:`from_entry` from an entry already read (:meth:`StoredEntry.read`):
        needs nothing from the store."""
        if encoder is None:
            return cls.stored_only(entry, "its stored pose was asked for")
        if entry.code.checkpoint_hash != encoder.info.hash:
            return cls.stored_only(entry, "the store holds another encoder's codes")
        row = entry.row
        path = row.get("source_path")
        if not path:
            return cls.stored_only(entry, "no map file recorded (a simulated entry)")
        try:
            stat = Path(path).stat()
        except OSError:
            return cls.stored_only(entry, f"{path}: not found")
        size, mtime = row.get("file_size"), row.get("file_mtime_ns")
        if (size is not None and size != stat.st_size) or (
            mtime is not None and mtime != stat.st_mtime_ns
        ):
            return cls.stored_only(entry, f"{path}: changed since it was ingested")
        if stat.st_size > max_bytes:
            return cls.stored_only(entry, f"{path}: over {max_bytes / 2**20:.0f} MiB")
        try:
            dmap = read_map(path)
            if row.get("sha256") and dmap.sha256 != row["sha256"]:
                return cls.stored_only(entry, f"{path}: changed since it was ingested")
            prepared = prepare_map(dmap, encoder.grid, True, contour=row.get("contour"))
            fresh = encoder.encode(prepared.volumes)
        except (IngestError, OSError, ValueError, MemoryError) as exc:
            log.warning("%s: searching with its stored vectors: %s", path, exc)
            return cls.stored_only(entry, f"{path}: cannot be read again")
        both = concat_codes([entry.code, fresh])
        return cls(both, _rg_of(row), entry.preview, "map", None, entry.id)

    @classmethod
    def stored_only(cls, entry: StoredEntry, why: str) -> Query:
        """A stored entry searched with its stored vectors; ``why`` says why."""
        return cls(
            entry.code, _rg_of(entry.row), entry.preview, "stored", why, entry.id
        )

    def describe(self) -> dict[str, Any]:
        """What a client is told about the query: for a map its name, grid
        (x, y, z), voxel size, contour and its source, rg and poses; for a stored
        entry its id, poses and source."""
        if self.entry_id is not None:
            return {"id": self.entry_id, "poses": self.poses, "source": self.source}
        rec = self.prepared.record
        return {
            "name": self.name,
            "grid": list(rec.box),
            "voxel_size": float(rec.voxel_size),
            "contour": float(rec.contour or 0.0),
            "contour_source": str(rec.contour_source),
            "rg": float(rec.rg or 0.0),
            "poses": self.poses,
        }


def _rg_of(row: dict[str, Any]) -> float | None:
    rg = row.get("rg")
    return None if rg is None or not np.isfinite(rg) else float(rg)


@contextmanager
def _upload_file(data: bytes, shown: str) -> Iterator[str]:
    """A private temporary file holding ``data`` (named after this process,
    :func:`upload_owner`), removed after the block; an :class:`IngestError`
    raised in the block names ``shown`` instead of the file."""
    prefix = f"{UPLOAD_PREFIX}{upload_owner()}-"
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".bin")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        yield tmp
    except IngestError as exc:
        problem, fix = (part.replace(tmp, shown) for part in (exc.problem, exc.fix))
        raise type(exc)(shown, problem, fix) from None
    finally:
        os.unlink(tmp)


def read_upload(
    data: bytes, name: str = "upload", max_bytes: int | None = None
) -> DensityMap:
    """An uploaded map read as :meth:`Query.from_bytes` reads it (through a
    private temporary file; messages name ``name``).

    Raises:
        IngestError: the upload is not a readable map (or over ``max_bytes``).
    """
    with _upload_file(data, display_name(name)) as tmp:
        return read_map(tmp, max_bytes=max_bytes)


def display_name(name: str | None) -> str:
    """A client's file name fit for display only (never used as a path)."""
    base = os.path.basename(str(name or "upload")).strip() or "upload"
    return "".join(c if c.isprintable() else "?" for c in base)[:120]


def search(
    store: Store,
    query: Query,
    k: int = 10,
    options: SearchOptions | None = None,
    fit: FitQuery | None = None,
    significance: bool = True,
) -> list[Hit]:
    """The entries of ``store`` most similar to ``query``, best first: rank, the
    rotational fit of the best ``options.fit_top`` (unless 0), then hits, and
    (unless ``significance=False``) each hit's score terms and E-value
    (:func:`search_explained`).

    Args:
        store: an open store of the query's encoder.
        query: from one of the ``Query.from_*`` constructors.
        k: hits wanted.
        options: how to rank (:class:`~swan_index.ranking.SearchOptions`).
        fit: ``query.fit()`` already computed, for a caller that searches with
            one query several times (default: computed here when needed).
        significance: fill the hits' ``terms``, ``excess``, ``evalue``...
            (:func:`swan_index.significance.assess`; about 0.1 s, and the null
            model's calibration on the first search of a changed store).

    Returns:
        Up to ``k`` hits (fewer only when fewer entries match).

    Raises:
        ValueError: bad ``k`` or options, or a query of another encoder.
    """
    if significance:
        return search_explained(store, query, k, options, fit)[0]
    return _search(store, query, k, options, fit)[0]


def search_explained(
    store: Store,
    query: Query,
    k: int = 10,
    options: SearchOptions | None = None,
    fit: FitQuery | None = None,
    models: NullModels | None = None,
) -> tuple[list[Hit], Significance]:
    """:func:`search`, with every hit's score terms, z-scores and E-value, and
    the :class:`~swan_index.significance.Significance` of the whole (the
    score's formula, how many hits are significant, the null model)."""
    hits, opts, fit = _search(store, query, k, options, fit)
    return assess(store, hits, query.code, query.rg, opts, fit, query.entry_id)


def _search(
    store: Store,
    query: Query,
    k: int,
    options: SearchOptions | None,
    fit: FitQuery | None,
) -> tuple[list[Hit], SearchOptions, FitQuery | None]:
    opts = SearchOptions() if options is None else options
    if opts.fit_top == 0:
        fit = None
    elif fit is None:
        fit = query.fit()
    ranking = store.rank(query.code, k, opts, rg=query.rg, fit=fit is not None)
    apply_fit(ranking, fit)
    return store.hits(ranking), opts, fit
