"""The local ingest engine: reading and canonicalization in a pool of worker
processes on this machine, encoding in the process that writes the store.

The worker processes import only ingest, numpy and :mod:`swan_index.prepare`
(spawned, never a forked copy of torch). They die with the process that started
them, however it ends (even SIGKILL): none is left behind holding memory. An
exception that ends the run (an interrupt: ``swan ingest`` turns SIGTERM and Ctrl-C
into one) stops them without waiting for the queued maps.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from swan_index.prepare import Entry, PreparedMap, prepare_one

if TYPE_CHECKING:  # the worker processes import this module: no torch
    from encoder.code import MultiScaleCode
    from swan_index.map_encoder import MapEncoder


class LocalEngine:
    """Prepares maps in worker processes on this machine and encodes them here.

    Args:
        encoder: the checkpoint that encodes (in this process).
        workers: reader processes (default: CPU count, at most 8; 0 = in process).
    """

    def __init__(self, encoder: MapEncoder, workers: int | None = None) -> None:
        self.encoder = encoder
        self.workers = min(8, os.cpu_count() or 1) if workers is None else workers
        self._batches: list[list[PreparedMap]] = []

    def prepared(
        self, entries: list[Entry], grid: int
    ) -> Generator[tuple[Entry, list[PreparedMap] | str], None, None]:
        """Each entry's prepared maps (or why it failed), in completion order."""
        return _prepared(entries, grid, self.workers)

    def submit(self, batch: list[PreparedMap]) -> None:
        """Queue a batch for encoding (encoded by the next :meth:`encoded`)."""
        self._batches.append(batch)

    def encoded(
        self, wait: bool = False
    ) -> Iterator[tuple[list[PreparedMap], MultiScaleCode]]:
        """The batches submitted so far with their codes, encoded here and now."""
        while self._batches:
            batch = self._batches.pop(0)
            yield batch, self.encoder.encode(np.concatenate([p.volumes for p in batch]))

    def close(self) -> None:
        """Drop what was not encoded (the pool stops with its generator)."""
        self._batches.clear()


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


def _prepare(entry: Entry, grid: int) -> tuple[Entry, list[PreparedMap] | str]:
    """Worker: :func:`~swan_index.prepare.prepare_one`, stopping as
    :class:`_WorkerState` says."""
    if _WORKER.stopping:
        os._exit(1)
    _WORKER.computing = True
    try:
        result = prepare_one(entry, grid)
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
) -> Generator[tuple[Entry, list[PreparedMap] | str], None, None]:
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
