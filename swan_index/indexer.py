"""The indexer: files, folders and EMDB mirrors into a store (what `swan ingest` runs).

Reading and canonicalization run in a pool of worker processes (they need no
model); the main process encodes in batches and commits each batch in one
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

The worker processes die with the process that started them, however it ends (even
SIGKILL): none is left behind holding memory. An exception that ends the run (an
interrupt: ``swan ingest`` turns SIGTERM and Ctrl-C into one) stops them without
waiting for the queued maps, and propagates; the batches committed so far stay.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import errno
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from ingest.discover import MapEntry, ModelEntry, find_entries, stat_map
from ingest.errors import IngestError
from ingest.models import (
    DEFAULT_MODEL_RESOLUTION,
    check_resolutions,
    file_sha256,
    model_key,
)
from swan_index.prepare import PreparedMap, prepare_entry, prepare_model

if TYPE_CHECKING:  # the worker processes import this module: no torch, no store
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


class _WorkerState:
    """How a worker process stops on SIGTERM.

    A worker killed while it writes a result into the pool's pipe leaves half a
    message there, and the pool's manager thread in the parent then waits for the
    rest for ever (the parent holds the pipe's other write end, so it never sees
    EOF) and the parent cannot exit. So a SIGTERM ends a worker at once only while
    it computes; otherwise the worker ends before it would start or return another
    map, or after ``grace`` seconds (by then a result it was writing has been read).

    Attributes:
        computing: inside :func:`_prepare`.
        stopping: a SIGTERM came.
        grace: seconds an idle worker lives on after a SIGTERM.
    """

    computing = False
    stopping = False
    grace = 5.0


#: This process's stop state (used only in worker processes).
_WORKER = _WorkerState()


def _on_sigterm(signum: int, frame: object) -> None:
    """A worker's SIGTERM handler (see :class:`_WorkerState`)."""
    if _WORKER.computing:
        os._exit(1)
    if not _WORKER.stopping:
        _WORKER.stopping = True
        timer = threading.Timer(_WORKER.grace, os._exit, args=(1,))
        timer.daemon = True
        timer.start()


#: What the indexer ingests from one file.
Entry = MapEntry | ModelEntry


def _prepare(entry: Entry, grid: int) -> tuple[Entry, list[PreparedMap] | str]:
    """Worker: the prepared maps (a model gives one per resolution), or a
    one-line reason it failed."""
    if _WORKER.stopping:
        os._exit(1)
    _WORKER.computing = True
    try:
        if isinstance(entry, ModelEntry):
            result: list[PreparedMap] | str = prepare_model(entry, grid)
        else:
            result = [prepare_entry(entry, grid)]
    except IngestError as exc:
        result = str(exc)
    except MemoryError:
        result = (
            f"{entry.path}: out of memory; ingest it alone, on a machine with more "
            "memory (or a model with --max-model-atoms lower to refuse such files)"
        )
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the run
        result = (
            f"{entry.path}: unexpected {type(exc).__name__}: "
            f"{' '.join(str(exc).split())}; "
            "check the file, and report it if it opens in other tools"
        )
    finally:
        _WORKER.computing = False
    if _WORKER.stopping:  # a SIGTERM came as it finished: no result to write
        os._exit(1)
    return entry, result


#: ``PR_SET_PDEATHSIG`` from ``<linux/prctl.h>``.
_PR_SET_PDEATHSIG = 1


def _worker_init(parent_pid: int) -> None:
    """Worker initializer: die with the parent; leave Ctrl-C to the parent (which
    stops the workers), so that a terminal's SIGINT prints no worker tracebacks;
    stop safely on SIGTERM (:class:`_WorkerState`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if sys.platform.startswith("linux"):
        # the kernel kills this worker when the parent dies, even by SIGKILL
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watching thread below still does it
    if os.getppid() != parent_pid:  # the parent died before that was in place
        os._exit(1)
    threading.Thread(
        target=_exit_with_parent, args=(parent_pid,), name="parent-watch", daemon=True
    ).start()


def _exit_with_parent(parent_pid: int) -> None:
    """Block until the parent process is gone, then exit at once (portable: the
    parent's sentinel is a pipe that closes when it dies)."""
    parent = multiprocessing.parent_process()
    if parent is not None and parent.sentinel is not None:
        multiprocessing.connection.wait([parent.sentinel])
    else:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
    os._exit(1)


def _stop_workers(pool: cf.ProcessPoolExecutor, before: set[Any]) -> None:
    """Stop a pool without waiting: drop queued tasks and send SIGTERM to its
    workers (the children started since ``before`` was taken), which end as
    :class:`_WorkerState` says."""
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in multiprocessing.active_children():
        if proc not in before:
            proc.terminate()


def _prepared(
    entries: list[Entry], grid: int, workers: int
) -> Iterator[tuple[Entry, list[PreparedMap] | str]]:
    """Prepared maps in completion order (in process when ``workers == 0``).

    Closing the generator early (or an interrupt while it waits) stops the workers
    (:func:`_stop_workers`) instead of waiting for every queued map."""
    if workers <= 0:
        for entry in entries:
            yield _prepare(entry, grid)
        return
    # spawn: the workers import only ingest + numpy, never a forked copy of torch.
    ctx = multiprocessing.get_context("spawn")
    before = set(multiprocessing.active_children())
    pool = cf.ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),)
    )
    try:
        pending: set[cf.Future] = set()
        todo = iter(entries)
        for entry in todo:
            pending.add(pool.submit(_prepare, entry, grid))
            if len(pending) >= 2 * workers:
                break
        while pending:
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.add(pool.submit(_prepare, nxt, grid))
    except BaseException:  # an interrupt, a broken pool, or closed early
        _stop_workers(pool, before)
        raise
    pool.shutdown()


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
) -> IngestSummary:
    """Ingest every map and atomic model under ``paths`` into ``store``.

    Args:
        paths: map files, model files, folders, EMDB mirrors.
        store: a store opened for writing with ``encoder``'s codes.
        encoder: the checkpoint that encodes.
        workers: reader processes (default: CPU count, at most 8; 0 = in process).
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

    Returns:
        An :class:`IngestSummary`.

    Raises:
        ValueError: a model resolution out of range.
    """
    model_resolutions = check_resolutions(model_resolutions)
    t0 = time.perf_counter()
    paths = list(paths)
    run = IngestSummary(run_id=uuid.uuid4().hex[:12])
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
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
            todo.append(entry)

    batch: list[PreparedMap] = []
    touched: list[tuple[int, int | None, int | None]] = []
    last_flush = time.monotonic()

    def commit() -> None:
        nonlocal batch, pending_log, last_flush
        if batch:
            code = encoder.encode(np.concatenate([p.volumes for p in batch]))
            rows = pending_log + [
                _row(run.run_id, p.record.source_path, "ok", None, p.record.sha256)
                for p in batch
            ]
            # a changed file replaces the entry its older version made (for a
            # model: the entry of the same resolution)
            old = [i for i in map(_replaced, batch) if i is not None]
            store.add(
                code,
                [p.record for p in batch],
                [p.preview() for p in batch],
                rows,
                replaces=old,
            )
            run.ok += len(batch)
        elif pending_log:
            store.log(pending_log)
        batch, pending_log = [], []
        if time.monotonic() - last_flush > flush_every:
            store.flush()
            last_flush = time.monotonic()

    def _replaced(p: PreparedMap) -> int | None:
        src = p.record.source_path
        if p.record.simulated:
            return known_models.get((src or "", float(p.record.resolution or 0)))
        return known[src]["id"] if src in known else None

    bar = tqdm(
        total=len(todo), unit="map", disable=not progress or not todo, leave=False
    )
    prepared = _prepared(todo, encoder.grid, workers)
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
                commit()
            bar.set_postfix(ok=run.ok + len(batch), skip=run.skipped, fail=run.failed)
        commit()
        if touched:
            store.update_file_stats(touched)
    finally:
        prepared.close()  # stops the workers now if the loop ended early
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
