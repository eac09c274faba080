"""The indexer: files, folders and EMDB mirrors into a store (what `swan ingest` runs).

Reading and canonicalization run in worker processes (they need no model); the
maps are encoded in batches, and this process commits each batch in one
transaction. It is idempotent and resumable:

* a file whose path, size and modification time match a stored entry is skipped
  without being read;
* a file whose content (sha256) is already stored with this encoder is skipped;
* so after a crash (even SIGKILL) running the same command again ingests exactly
  what is missing: committed batches are whole, uncommitted ones left no trace.

Atomic models (PDB, mmCIF) are ingested as maps simulated at each of the
``model_resolutions`` (:func:`swan_index.prepare.prepare_model`), one entry per
resolution, keyed by the file's content and the resolution: a resolution already
stored for the same file is skipped without simulating it again, and a changed
model file replaces the entries its older version made at the same resolutions.

Every file tried gets an ``ingest_log`` row (``ok``, ``skipped`` or ``error`` with the
reason); a bad file never stops the run, and neither does a folder that cannot be
listed, a dangling link or a link loop (each gets its ``error`` row). Entries whose
source files vanished (obsoleted EMDB entries) are removed only with
``prune=True``; an entry whose file cannot be checked (permission denied) is kept.

How the maps are prepared and encoded is the engine's part (:class:`Engine`):
``local`` (:mod:`swan_index.local_engine`, the default) reads in worker processes
on this machine and encodes here; ``ray`` (:mod:`swan_index.ray_engine`, the
``cluster`` extra) reads as Ray tasks and encodes in Ray actors across a cluster.
Everything else (discovery, what is skipped, the ``ingest_log`` rows, the commits)
is this module's, the same for both: the same input gives the same entries
whichever engine ran. An exception that ends the run (an interrupt: ``swan
ingest`` turns SIGTERM and Ctrl-C into one) stops the engine's workers without
waiting for the queued maps, and propagates; the batches committed so far stay.
"""

from __future__ import annotations

import errno
import logging
import os
import time
import uuid
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from tqdm import tqdm

from ingest.discover import ModelEntry, find_entries, stat_map
from ingest.errors import IngestError
from ingest.models import (
    DEFAULT_MODEL_RESOLUTION,
    check_resolutions,
    file_sha256,
    model_key,
)
from swan_index.prepare import Entry, PreparedMap

if TYPE_CHECKING:
    from encoder.code import MultiScaleCode
    from swan_index.map_encoder import MapEncoder
    from swan_index.store import Store

log = logging.getLogger(__name__)


@dataclass
class IngestSummary:
    """What an ingest run did.

    Attributes:
        ok: entries stored.
        skipped: files already stored (unchanged, or same content).
        failed: files that could not be ingested (reasons in ``failures``).
        removed: entries deleted because their files vanished (``prune``).
        failures: ``{"path", "reason"}`` per failed file.
        removed_entries: ``{"id", "emdb_id", "path"}`` per removed entry.
        run_id: the ``ingest_log`` run id.
        seconds: wall time.
    """

    ok: int = 0
    skipped: int = 0
    failed: int = 0
    removed: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    removed_entries: list[dict[str, Any]] = field(default_factory=list)
    run_id: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "skipped": self.skipped,
            "failed": self.failed,
            "removed": self.removed,
            "failures": self.failures,
            "removed_entries": self.removed_entries,
            "run_id": self.run_id,
            "seconds": round(self.seconds, 3),
        }


#: The ingest engines (``swan ingest --engine``).
ENGINES = ("local", "ray")


class Engine(Protocol):
    """How an ingest run gets its maps prepared and encoded (the rest is shared).

    The writer (:func:`ingest_paths`) takes each file's prepared maps from
    :meth:`prepared`, drops those already stored, gathers the others in batches,
    hands each batch to :meth:`submit`, and commits the batches :meth:`encoded`
    gives back, each in one transaction.
    """

    def prepared(
        self, entries: list[Entry], grid: int
    ) -> Generator[tuple[Entry, list[PreparedMap] | str], None, None]:
        """Each entry with its prepared maps (a model gives one per resolution)
        or the one-line reason it failed, in any order, streaming. Closing the
        iterator stops the work still queued."""
        ...

    def submit(self, batch: list[PreparedMap]) -> None:
        """Start encoding a batch."""
        ...

    def encoded(
        self, wait: bool = False
    ) -> Iterator[tuple[list[PreparedMap], MultiScaleCode]]:
        """Batches submitted and encoded since the last call, with their codes
        (one row per volume, in order). ``wait``: every batch submitted;
        otherwise those done, waiting only while too many are in flight."""
        ...

    def close(self) -> None:
        """Release the engine's workers (and a cluster it started)."""
        ...


class EngineError(RuntimeError):
    """An engine cannot start (a cluster that cannot be joined): one line with
    the fix."""


def check_engine(engine: str) -> None:
    """Refuse an engine that does not exist or is not installed.

    Raises:
        ValueError: one line naming the engine and the fix (for ``ray``: how
            to install it).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: use one of {', '.join(ENGINES)}")
    if engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ValueError(
                "the ray engine needs Ray, which is not installed: "
                "pip install -e '.[cluster]' (or pip install 'cryo-swan[cluster]')"
            ) from None


def make_engine(
    engine: str,
    encoder: MapEncoder,
    workers: int | None = None,
    address: str | None = None,
) -> Engine:
    """The engine named ``engine`` (see :func:`ingest_paths` for the arguments).

    Raises:
        ValueError: an unknown engine, or ``ray`` when Ray is not installed.
    """
    check_engine(engine)
    if engine == "ray":
        from swan_index.ray_engine import RayEngine

        return RayEngine(encoder, address=address, window=workers)
    from swan_index.local_engine import LocalEngine

    if address is not None:
        raise ValueError(f"address {address!r}: only the ray engine takes one")
    return LocalEngine(encoder, workers)


def discover(
    paths: Iterable[str | Path], models: bool = True
) -> tuple[list[Entry], list[dict[str, str]]]:
    """Map (and model) entries under ``paths`` (deduplicated) and the problems
    met finding them.

    Args:
        paths: map files, model files, folders, EMDB mirrors.
        models: find atomic model files too.

    Returns:
        The entries, and one ``{"path", "reason"}`` per problem: a path that does
        not exist, a folder that cannot be listed, a dangling link, a link loop,
        something that is not a regular file.
    """
    entries, problems, seen = [], [], set()

    def problem(err: IngestError) -> None:
        problems.append({"path": err.path, "reason": str(err)})

    for p in paths:
        for entry in find_entries(p, onerror=problem, models=models):
            key = os.path.realpath(entry.path)  # never raises, unlike resolve()
            if key not in seen:
                seen.add(key)
                entries.append(entry)
    return entries, problems


def ingest_paths(
    paths: Iterable[str | Path],
    store: Store,
    encoder: MapEncoder,
    workers: int | None = None,
    batch_size: int = 16,
    prune: bool = False,
    progress: bool = True,
    flush_every: float = 60.0,
    model_resolutions: tuple[float, ...] = (DEFAULT_MODEL_RESOLUTION,),
    max_model_atoms: int | None = None,
    model_assembly: bool = True,
    *,
    engine: str = "local",
    address: str | None = None,
    allow_generated: bool = False,
) -> IngestSummary:
    """Ingest every map and atomic model under ``paths`` into ``store``.

    Args:
        paths: map files, model files, folders, EMDB mirrors.
        store: a store opened for writing with ``encoder``'s codes.
        encoder: the checkpoint that encodes.
        workers: local engine: reader processes (default: CPU count, at most 8;
            0 = in process); ray engine: most maps in flight (default: twice
            the cluster's CPUs).
        batch_size: maps per encoding batch and per transaction.
        prune: delete stored entries whose files under a given folder vanished.
        progress: show a progress bar (stderr).
        flush_every: seconds between writes of the FAISS indexes.
        model_resolutions: resolutions (Å) each atomic model is simulated at,
            one entry each.
        max_model_atoms: most atoms a model may have (default
            :data:`ingest.models.MAX_MODEL_ATOMS`).
        model_assembly: simulate a model's first biological assembly when its
            file defines one (else the asymmetric unit).
        engine: ``local`` (worker processes on this machine) or ``ray`` (a Ray
            cluster; needs the ``cluster`` extra).
        address: the Ray cluster to join (``ray`` engine only; ``auto``: the
            one started on this machine with ``ray start``); default: a Ray
            instance on this machine for this run only.
        allow_generated: store maps whose header says the latent prior
            generated them (labelled: method ``generated``); default: each
            fails in one line.

    Returns:
        An :class:`IngestSummary`.

    Raises:
        ValueError: a model resolution out of range, an unknown engine, or
            ``ray`` when Ray is not installed.
    """
    model_resolutions = check_resolutions(model_resolutions)
    check_engine(engine)
    t0 = time.perf_counter()
    paths = list(paths)
    run = IngestSummary(run_id=uuid.uuid4().hex[:12])
    entries, missing = discover(paths)
    pending_log: list[dict[str, Any]] = []

    def fail(path: str, reason: str, sha: str | None = None) -> None:
        run.failed += 1
        run.failures.append({"path": path, "reason": reason})
        pending_log.append(_row(run.run_id, path, "error", reason, sha))
        log.info("%s", reason)

    def skip(path: str, reason: str, sha: str | None = None) -> None:
        run.skipped += 1
        pending_log.append(_row(run.run_id, path, "skipped", reason, sha))

    for m in missing:
        fail(m["path"], m["reason"])
    known = store.known_files()
    known_sha = store.known_sha256()
    known_models = _simulated_entries(store)
    todo: list[Entry] = []
    for entry in entries:
        try:  # it may have changed since it was found
            st = stat_map(entry.path)
        except IngestError as err:
            fail(str(entry.path), str(err))
            continue
        src = os.path.realpath(entry.path)  # as Path.resolve(): the stored path
        if isinstance(entry, ModelEntry):
            try:
                sha = file_sha256(src)
            except OSError as exc:
                fail(src, f"{src}: cannot be read ({exc.strerror}); check the file")
                continue
            missing = []
            for r in model_resolutions:
                key = model_key(sha, r, model_assembly)
                if key in known_sha:
                    skip(src, f"already stored at {r:g} Å", key)
                else:
                    missing.append(r)
            if missing:
                todo.append(
                    replace(
                        entry,
                        resolutions=tuple(missing),
                        sha256=sha,
                        max_atoms=max_model_atoms,
                        assembly=model_assembly,
                    )
                )
            continue
        stored = known.get(src)
        if (
            stored
            and stored["file_size"] == st.st_size
            and stored["file_mtime_ns"] == st.st_mtime_ns
        ):
            skip(src, "unchanged since it was stored", stored["sha256"])
        else:
            todo.append(replace(entry, allow_generated=allow_generated))

    batch: list[PreparedMap] = []
    touched: list[tuple[int, int | None, int | None]] = []
    last_flush = time.monotonic()

    def commit(done: list[PreparedMap], code: MultiScaleCode) -> None:
        nonlocal pending_log, last_flush
        rows = pending_log + [
            _row(run.run_id, p.record.source_path, "ok", None, p.record.sha256)
            for p in done
        ]
        # a changed file replaces the entry its older version made (for a
        # model: the entry of the same resolution)
        old = [i for i in map(_replaced, done) if i is not None]
        store.add(
            code,
            [p.record for p in done],
            [p.preview() for p in done],
            rows,
            replaces=old,
        )
        run.ok += len(done)
        pending_log = []
        if time.monotonic() - last_flush > flush_every:
            store.flush()
            last_flush = time.monotonic()

    def _replaced(p: PreparedMap) -> int | None:
        src = p.record.source_path
        if p.record.simulated:
            return known_models.get((src or "", float(p.record.resolution or 0)))
        return known[src]["id"] if src in known else None

    # the engine starts after the store's files were checked: a cluster is
    # joined (or started) only when there is something to read
    runner = make_engine(engine, encoder, workers, address) if todo else None
    bar = tqdm(
        total=len(todo), unit="map", disable=not progress or not todo, leave=False
    )
    prepared = runner.prepared(todo, encoder.grid) if runner else iter(())
    try:
        for entry, results in prepared:
            bar.update(1)
            if isinstance(results, str):
                fail(str(entry.path), results)
                results = []
            for result in results:
                if result.record.sha256 not in known_sha:
                    known_sha.add(result.record.sha256)
                    batch.append(result)
                    continue
                skip(
                    str(entry.path),
                    "same content as an entry already stored",
                    result.record.sha256,
                )
                stored = known.get(result.record.source_path or "")
                if stored and stored["sha256"] == result.record.sha256:
                    touched.append(  # only its time changed: skip unread next time
                        (
                            stored["id"],
                            result.record.file_size,
                            result.record.file_mtime_ns,
                        )
                    )
            if len(batch) >= batch_size:
                runner.submit(batch)
                batch = []
            for done, code in runner.encoded() if runner else ():
                commit(done, code)
            bar.set_postfix(ok=run.ok, skip=run.skipped, fail=run.failed)
        if batch:
            runner.submit(batch)
        for done, code in runner.encoded(wait=True) if runner else ():
            commit(done, code)
        if pending_log:
            store.log(pending_log)
        if touched:
            store.update_file_stats(touched)
    finally:
        if runner:
            prepared.close()  # stops the workers now if the loop ended early
            runner.close()
        bar.close()
    if prune:
        _prune(paths, store, run)
    store.flush()
    run.seconds = time.perf_counter() - t0
    return run


def _row(
    run_id: str, path: str | None, status: str, reason: str | None, sha: str | None
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "path": path,
        "status": status,
        "reason": reason,
        "sha256": sha,
    }


def _simulated_entries(store: Store) -> dict[tuple[str, float], int]:
    """``(source_path, resolution) -> id`` of the entries simulated from model
    files."""
    table = store.entries(("id", "source_path", "resolution", "simulated"))
    return {
        (str(src), float(res)): int(i)
        for i, src, res, sim in zip(
            table["id"],
            table["source_path"],
            table["resolution"],
            table["simulated"],
            strict=True,
        )
        if src is not None and _true(sim) and not np.ma.is_masked(res)
    }


def _true(value: Any) -> bool:
    return not np.ma.is_masked(value) and bool(value)


def _vanished(path: str) -> bool:
    """True only when ``path`` is certainly gone: a file that cannot be checked
    (permission denied, I/O error) is kept."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno in (errno.ENOENT, errno.ENOTDIR)
    return False


def _prune(paths: list[str | Path], store: Store, run: IngestSummary) -> None:
    """Delete entries whose source file under one of ``paths`` no longer exists."""
    roots = [Path(os.path.realpath(p)) for p in paths if os.path.isdir(p)]
    gone = []
    for src in store.known_files():
        path = Path(src)
        if any(path.is_relative_to(r) for r in roots) and _vanished(src):
            gone.append(src)
    if not gone:
        return
    table = store.entries(("id", "source_path"))
    gone_set = set(gone)
    rows = [  # every entry of a vanished file (a model may have several)
        {"id": int(i), "path": str(src)}
        for i, src in zip(table["id"], table["source_path"], strict=True)
        if src in gone_set
    ]
    info = {r["id"]: r for r in store.get([r["id"] for r in rows])}
    store.delete([r["id"] for r in rows])
    run.removed = len(rows)
    run.removed_entries = [
        {"id": r["id"], "emdb_id": info[r["id"]]["emdb_id"], "path": r["path"]}
        for r in rows
    ]
    store.log(
        [_row(run.run_id, r["path"], "removed", "file vanished", None) for r in rows]
    )
