"""The local ingest engine: reading and canonicalization in a pool of worker
processes on this machine, encoding in the process that writes the store.

Encoding overlaps reading: each map is queued for encoding as it comes back from
a worker, and a thread of this process encodes what has come so far in one
batch (from :data:`MIN_ENCODE_BATCH` to :data:`ENCODE_BATCH` maps), so the last
maps read are almost the last encoded instead of a whole batch waiting for the
end. While the workers run,
torch gets the CPUs they leave (at least one thread): more threads on busy cores
only wait for one another.

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
import queue
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


#: Most maps encoded in one batch (what came from the workers meanwhile).
ENCODE_BATCH = 8
#: Fewest maps encoded in one batch, unless the writer waits for the rest.
MIN_ENCODE_BATCH = 2


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
        # maps waiting for the encoding thread (bounded: a slow encoder holds
        # the readers back instead of piling up their maps), and their codes
        self._todo: queue.Queue[PreparedMap | None] = queue.Queue(ENCODE_BATCH)
        self._queued: set[PreparedMap] = set()
        self._codes: dict[PreparedMap, MultiScaleCode] = {}
        self._done = threading.Condition()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._threads: int | None = None  # torch's thread count to restore
        self._flushed = False

    def prepared(
        self, entries: list[Entry], grid: int
    ) -> Generator[tuple[Entry, list[PreparedMap] | str], None, None]:
        """Each entry's prepared maps (or why it failed), in completion order;
        each map is queued for encoding as it comes."""
        inner = _prepared(entries, grid, self.workers)
        try:
            for entry, result in inner:
                if not isinstance(result, str):
                    for prepared in result:
                        self._queue(prepared)
                yield entry, result
        finally:
            inner.close()

    def submit(self, batch: list[PreparedMap]) -> None:
        """Queue a batch for committing (its maps are encoded as they came)."""
        for prepared in batch:
            self._queue(prepared)
        self._batches.append(batch)

    def encoded(
        self, wait: bool = False
    ) -> Iterator[tuple[list[PreparedMap], MultiScaleCode]]:
        """The batches submitted so far whose maps are encoded, with their codes
        (``wait``: every batch submitted, waiting for the encoding thread).

        Raises:
            RuntimeError: encoding failed; the batches encoded before are given
                first, so the writer commits every whole batch it can.
        """
        while self._batches:
            batch = self._batches[0]
            if wait and not self._flushed:
                self._put(_FLUSH)  # a map left alone is encoded now
                self._flushed = True
            with self._done:
                if wait:
                    self._done.wait_for(
                        lambda b=batch: (
                            self._error is not None or all(p in self._codes for p in b)
                        )
                    )
                if not all(p in self._codes for p in batch):
                    self._raise_error()
                    return
                codes = [self._codes.pop(p) for p in batch]
            for prepared in batch:
                self._queued.discard(prepared)
            self._batches.pop(0)
            yield batch, concat_codes(codes)

    def close(self) -> None:
        """Stop the encoding thread and drop what was not committed (the pool
        stops with its generator)."""
        if self._thread is not None:
            while self._thread.is_alive():
                try:  # the thread may be blocked on nothing but a full queue
                    self._todo.put(None, timeout=0.1)
                    break
                except queue.Full:
                    continue
            self._thread.join()
            self._thread = None
        if self._threads is not None:
            _torch().set_num_threads(self._threads)
            self._threads = None
        self._batches.clear()
        self._queued.clear()
        self._codes.clear()

    def _queue(self, prepared: PreparedMap) -> None:
        """Hand ``prepared`` to the encoding thread (started on first use)."""
        if prepared in self._queued:
            return
        if self._thread is None:
            if self.workers > 0:
                torch = _torch()
                self._threads = torch.get_num_threads()
                cpus = os.cpu_count() or 1
                torch.set_num_threads(max(1, min(self._threads, cpus - self.workers)))
            self._thread = threading.Thread(
                target=self._encode_loop, name="ingest-encode", daemon=True
            )
            self._thread.start()
        self._queued.add(prepared)
        self._flushed = False
        self._put(prepared)

    def _put(self, item: object) -> None:
        """Queue ``item`` for the encoding thread; dropped when the thread failed
        (:meth:`encoded` raises its error, after the batches it did encode)."""
        while True:
            if self._error is not None:
                return
            try:
                self._todo.put(item, timeout=0.1)  # type: ignore[arg-type]
                return
            except queue.Full:
                continue

    def _raise_error(self) -> None:
        if self._error is not None:
            raise RuntimeError(
                f"encoding failed: {type(self._error).__name__}: {self._error}"
            ) from self._error

    def _encode_loop(self) -> None:
        """The encoding thread: encode what has come, in one batch, until told to
        stop. A map alone waits for a second one or for a flush: a batch of one
        takes about three times the CPU per map of a batch of two."""
        group: list[PreparedMap] = []
        while True:
            item = self._todo.get()
            flush = item is _FLUSH
            if item is None:
                return
            if not flush:
                group.append(item)  # type: ignore[arg-type]
            while len(group) < ENCODE_BATCH:  # and what else has come meanwhile
                try:
                    more = self._todo.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._todo.put(None)  # stop after this batch
                    flush = True
                    break
                if more is _FLUSH:
                    flush = True
                else:
                    group.append(more)
            if group and (flush or len(group) >= MIN_ENCODE_BATCH):
                if not self._encode(group):
                    return
                group = []

    def _encode(self, group: list[PreparedMap]) -> bool:
        """Encode ``group`` and hand each map its code; False when it failed (the
        error goes to the writer)."""
        try:
            code = self.encoder.encode(np.concatenate([p.volumes for p in group]))
        except BaseException as exc:  # noqa: BLE001 - raised in the writer
            with self._done:
                self._error = exc
                self._done.notify_all()
            return False
        with self._done:
            row = 0
            for prepared in group:
                n = len(prepared.volumes)
                self._codes[prepared] = code[row : row + n]
                row += n
            self._done.notify_all()
        return True


#: Tells the encoding thread to encode a map left alone.
_FLUSH = object()


def _torch() -> Any:
    """torch, imported in the writer only (the workers import this module)."""
    import torch

    return torch


def concat_codes(codes: list[MultiScaleCode]) -> MultiScaleCode:
    """:func:`swan_index.map_encoder.concat_codes`, imported in the writer only."""
    from swan_index.map_encoder import concat_codes as concat

    return concat(codes)


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
    # every map is back: the workers exit on their own while the writer
    # commits (waiting here would add their exit, up to seconds on a loaded
    # machine, to every run); the interpreter still joins them before it exits
    pool.shutdown(wait=False)
