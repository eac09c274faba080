"""DuckDB connections under the store's locking rules.

DuckDB lets one process open a database file read-write, or several processes open
it read-only, never both at once. So the store never holds a connection while a
writer may want the file: the writer opens one per transaction (a batch of
entries), and each waits (with backoff, up to ``timeout`` seconds) while another
process holds the file. One writer at a time is enforced separately by an
exclusive lock on ``STORE/write.lock`` held for the writer's whole life.

A reader (:class:`SharedReader`) keeps one read-only connection open between
queries, each query on its own cursor, for as long as no process holds
``write.lock`` (the kernel's lock table, ``/proc/locks``, tells without taking
the lock): opening a connection costs more than most queries. A watcher thread
closes it within :data:`WATCH_EVERY` seconds of a writer taking the lock (the
writer's connect retries meanwhile), or after :data:`IDLE_CLOSE` seconds unused;
while a writer holds the lock, each query opens its own connection, as before.
Where the lock table cannot be read (not Linux), every query opens its own.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

#: Seconds to wait for the database file before giving up.
DEFAULT_TIMEOUT = 120.0


class StoreBusyError(RuntimeError):
    """Another process holds the store."""


class StoreDamagedError(ValueError):
    """The store's files cannot be used as they are. The message is one line: the
    file, what is wrong, and how to recover (restore a backup, or accept a loss
    with ``swan check --accept-loss``; see ``docs/operations.md``)."""


class StoreLossError(StoreDamagedError):
    """The database lacks writes it had committed (its write-ahead log was
    damaged or lost): writing is refused until the loss is accepted.

    Attributes:
        loss: what is missing (a :class:`swan_index.manifest.Loss`).
    """

    def __init__(self, message: str, loss: object) -> None:
        super().__init__(message)
        self.loss = loss


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message, at most ``limit`` characters."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextmanager
def readable(db: Path) -> Iterator[None]:
    """Turn DuckDB's errors while reading ``db`` into a one-line
    :class:`StoreDamagedError` that names the file and the fix.

    Raises:
        StoreDamagedError: DuckDB cannot read the file (truncated, overwritten,
            not a store's database).
    """
    try:
        yield
    except duckdb.Error as exc:
        raise StoreDamagedError(
            f"{db}: not a readable store database ({first_line(exc)}); restore the "
            "store folder from a backup (docs/operations.md)"
        ) from exc


def _is_lock_conflict(exc: Exception) -> bool:
    text = str(exc)
    return (
        "Could not set lock" in text
        or "Conflicting lock" in text
        or "different configuration" in text  # same process, read-write open
    )


def open_connection(
    path: Path, read_only: bool, timeout: float = DEFAULT_TIMEOUT
) -> duckdb.DuckDBPyConnection:
    """A connection (the caller closes it); retries while another process holds
    the file.

    Read-only connections also have external access (files, extensions) disabled:
    they run user ``--where`` predicates.

    Raises:
        StoreBusyError: the file stayed held for over ``timeout`` seconds.
    """
    config = {"enable_external_access": False} if read_only else {}
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=config)
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            if not _is_lock_conflict(exc) or time.monotonic() > deadline:
                if _is_lock_conflict(exc):
                    raise StoreBusyError(
                        f"{path}: held by another process for over {timeout:.0f} s; "
                        "wait for it to finish or raise the timeout"
                    ) from exc
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


@contextmanager
def connect(
    path: Path, read_only: bool, timeout: float = DEFAULT_TIMEOUT
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived connection (:func:`open_connection`), closed when the block
    ends."""
    con = open_connection(path, read_only, timeout)
    try:
        yield con
    finally:
        con.close()


class WriterLock:
    """Exclusive, process-wide lock on ``STORE/write.lock`` (one writer)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "write.lock"
        self._fh = None

    def acquire(self) -> None:
        fh = open(self.path, "a+")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise StoreBusyError(
                f"{self.path.parent}: another process (pid {holder}) is writing to "
                "this store; wait for it to finish, or open the store read-only"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


#: Seconds between two looks of a :class:`SharedReader` at the lock table.
WATCH_EVERY = 0.2
#: Seconds unused after which a :class:`SharedReader` closes its connection.
IDLE_CLOSE = 2.0
_LOCKS = Path("/proc/locks")


def writer_holds(lock_file: Path) -> bool | None:
    """Whether some process (this one included) holds a ``flock`` on
    ``lock_file``, from the kernel's lock table without taking the lock;
    ``None`` when it cannot be told (no lock table)."""
    try:
        st = os.stat(lock_file)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        table = _LOCKS.read_text()
    except OSError:
        return None
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:2286595 0 EOF" (device in hex);
    # "->" lines are requests waiting for a lock, not held ones
    for line in table.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and _file_of(fields[5]) == want:
            return True
    return False


def _file_of(field: str) -> tuple[int, int, int] | None:
    """``(major, minor, inode)`` of a lock table's ``maj:min:inode`` field."""
    parts = field.split(":")
    try:
        return int(parts[0], 16), int(parts[1], 16), int(parts[2])
    except (IndexError, ValueError):
        return None


class SharedReader:
    """A read-only connection to ``db`` kept open between queries while no
    process holds ``lock_file`` (see the module docs).

    Args:
        db: the database file.
        lock_file: the writers' lock (``STORE/write.lock``).
        timeout: seconds a connection waits for the file.
    """

    def __init__(self, db: Path, lock_file: Path, timeout: float) -> None:
        self.db = db
        self.lock_file = lock_file
        self.timeout = timeout
        self._mutex = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._users = 0
        self._last = 0.0
        self._retire = False  # no new cursors from _con; the last user closes it
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.opened = 0  # connections opened to share (for tests and stats)

    @contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of the shared connection, or a connection of its own when a
        writer holds the lock (or the lock table cannot be read)."""
        cursor = self._acquire()
        if cursor is None:
            with connect(self.db, read_only=True, timeout=self.timeout) as con:
                yield con
            return
        try:
            yield cursor
        finally:
            cursor.close()
            self._release()

    def _acquire(self) -> duckdb.DuckDBPyConnection | None:
        """A cursor of the shared connection (opened if need be), or ``None``."""
        with self._mutex:
            if self._stop.is_set():
                return None
            if self._con is None:
                if writer_holds(self.lock_file) is not False:
                    return None
                self._con = open_connection(self.db, True, self.timeout)
                self._retire = False
                self.opened += 1
                self._watch()
            elif self._retire:
                return None
            cursor = self._con.cursor()
            self._users += 1
            return cursor

    def _release(self) -> None:
        with self._mutex:
            self._users -= 1
            self._last = time.monotonic()
            if self._retire and not self._users:
                self._close_locked()

    def _close_locked(self) -> None:
        if self._con is not None:
            self._con.close()
        self._con = None
        self._retire = False

    def release(self) -> None:
        """Close the shared connection now (or when its last query ends)."""
        with self._mutex:
            if self._users:
                self._retire = True
            else:
                self._close_locked()

    def close(self) -> None:
        """Release and stop watching: from now on every query opens its own."""
        self._stop.set()
        self.release()

    def _watch(self) -> None:
        if self._watcher is None or not self._watcher.is_alive():
            self._watcher = threading.Thread(
                target=self._run, name="swan-db-watch", daemon=True
            )
            self._watcher.start()

    def _run(self) -> None:
        while not self._stop.wait(WATCH_EVERY):
            with self._mutex:
                if self._con is None:
                    self._watcher = None
                    return  # started again by the next open
                idle = not self._users and time.monotonic() - self._last > IDLE_CLOSE
            if idle or writer_holds(self.lock_file) is not False:
                self.release()
