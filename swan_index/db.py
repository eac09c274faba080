"""DuckDB connections under the store's locking rules.

DuckDB lets one process open a database file read-write, or several processes open
it read-only, never both at once. So the store never holds a connection for long:
the writer opens one per transaction (a batch of entries), a reader one per query
or refresh, and each waits (with backoff, up to ``timeout`` seconds) while another
process holds the file. One writer at a time is enforced separately by an
exclusive lock on ``STORE/write.lock`` held for the writer's whole life.
"""

from __future__ import annotations

import fcntl
import os
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


@contextmanager
def connect(
    path: Path, read_only: bool, timeout: float = DEFAULT_TIMEOUT
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived connection; retries while another process holds the file.

    Read-only connections also have external access (files, extensions) disabled:
    they run user ``--where`` predicates.
    """
    config = {"enable_external_access": False} if read_only else {}
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=config)
            break
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
