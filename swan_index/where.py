"""The ``where`` sandbox: a user's SQL predicate over the entries, run safely.

A search or a listing may be restricted by a SQL predicate over the ``entries``
table (``"resolution < 4 AND method = 'singleParticle'"``). The predicate comes from
users (the command line, the HTTP API), so it is checked before it runs
(:func:`check_predicate`): it must parse as exactly the statement
``SELECT id FROM entries WHERE <one expression>`` and nothing else (no set
operation, ordering, limit or other clause, no comment or ``;``, no parameter); its
subqueries may read only ``entries`` and ``layout``; it calls no table function
(``read_csv``, ``range``...) and no function that reveals the server's setup.

It then runs (:func:`matching_ids`) in a separate worker process, on a read-only
connection with file access disabled, under :class:`WhereLimits`: the worker's
memory is capped by the operating system (DuckDB's own ``memory_limit`` does not
bound what functions such as ``repeat`` or ``list_resize`` allocate), it uses
``threads`` threads, and the predicate is interrupted after ``seconds``. A
predicate that fails therefore costs the caller nothing but its answer, and the
caller holds no lock of the store's database meanwhile. Error messages name the
kind of failure and the predicate; the text of errors that may quote stored
values (conversion and other run-time errors) is never passed on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import re
import resource
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from swan_index.db import StoreBusyError, connect

log = logging.getLogger(__name__)

#: Tables a ``where`` predicate may read.
WHERE_TABLES = frozenset({"entries", "layout"})
#: Functions a ``where`` predicate may not call (they reveal the server's setup).
WHERE_FORBIDDEN = frozenset({"current_setting", "getenv", "duckdb_settings"})
#: Sources of rows other than tables (``SHOW``/``DESCRIBE``/``SUMMARIZE``...).
OTHER_SOURCES = frozenset({"SHOW_REF", "PIVOT", "COLUMN_DATA", "DELIM_GET"})
#: The statement a predicate is run in; the user's text follows ``WHERE``.
STATEMENT = "SELECT id FROM entries WHERE "
#: DuckDB errors whose text quotes only the predicate itself and the schema
#: (passed on to the user); any other error may quote stored values.
TEXT_SAFE_ERRORS = frozenset({"ParserException", "BinderException", "CatalogException"})
#: What ``entries`` means inside a predicate: the stored entries with each one's
#: archive-map cluster (``layout.cluster``; NULL for an entry without a layout),
#: so a ``where`` can use the ``cluster`` the dashboard and tables show.
ENTRIES_VIEW = (
    "WITH entries AS (SELECT e.*, l.cluster FROM main.entries AS e "
    "LEFT JOIN main.layout AS l ON l.id = e.id) "
)
#: Seconds the caller waits past a predicate's time limit before it stops the
#: worker itself (the worker interrupts the query at the limit).
GRACE_SECONDS = 5.0
_EXAMPLE = "e.g. \"resolution < 4 AND method = 'singleParticle'\""


@dataclass(frozen=True)
class WhereLimits:
    """What one ``where`` predicate may use.

    Attributes:
        seconds: run time before it is interrupted.
        memory_mb: memory (MB) of the worker process that runs it (its data
            segment, enforced by the operating system); DuckDB's own
            ``memory_limit`` is half of it, so that joins and sorts stop with
            DuckDB's message first.
        threads: DuckDB threads per predicate.
        workers: predicates run at once (one worker process each, started on
            first use and kept); more wait their turn.
    """

    seconds: float = 3.0
    memory_mb: int = 512
    threads: int = 1
    workers: int = 2

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError(f"seconds={self.seconds}: give a positive time limit")
        if self.memory_mb < 128:
            raise ValueError(f"memory_mb={self.memory_mb}: allow at least 128 MB")
        if self.threads < 1 or self.workers < 1:
            raise ValueError(
                f"threads={self.threads}, workers={self.workers}: allow at least 1"
            )


# -- checking ------------------------------------------------------------------------
def _tree(sql: str) -> dict[str, Any]:
    """DuckDB's own parse of ``sql`` (``json_serialize_sql``), as a dict."""
    con = duckdb.connect(config={"enable_external_access": False})
    try:
        return json.loads(
            con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]
        )
    finally:
        con.close()


def _shape(tree: dict[str, Any]) -> list[Any]:
    """The parsed statements with the WHERE expression left out."""
    out = []
    for statement in tree.get("statements", []):
        node = dict(statement.get("node", {}))
        node.pop("where_clause", None)
        out.append({**statement, "node": node})
    return out


@functools.cache
def _template() -> list[Any]:
    """The shape every checked statement must have (parsed once)."""
    return _shape(_tree(STATEMENT + "TRUE"))


def _check_tokens(where: str) -> None:
    """Refuse comments, statement terminators and named windows (DuckDB's own
    tokenizer tells them from the same characters inside string literals)."""
    depth = 0
    tokens = duckdb.tokenize(where)
    for n, (start, kind) in enumerate(tokens):
        end = tokens[n + 1][0] if n + 1 < len(tokens) else len(where)
        text = where[start:end].strip()
        if kind == duckdb.token_type.comment:
            raise ValueError(f"where {where!r}: comments are not allowed; remove them")
        if kind == duckdb.token_type.operator:
            depth += text.count("(") - text.count(")")
            if ";" in text:
                raise ValueError(
                    f"where {where!r}: give one predicate, without ';', {_EXAMPLE}"
                )
        if kind == duckdb.token_type.keyword and depth <= 0:
            if text.lower() == "window":  # parsed, then dropped from the tree
                raise ValueError(f"where {where!r}: give one predicate, {_EXAMPLE}")


def check_predicate(where: str) -> str:
    """Refuse anything but one expression over ``entries`` (and ``layout``).

    Args:
        where: the user's predicate.

    Returns:
        The statement to run: :data:`STATEMENT` followed by ``where``, exactly
        the statement checked here.

    Raises:
        ValueError: empty, a syntax error, more than one expression or
            statement, another clause, a comment or ``;``, a parameter, another
            table, a table function or a forbidden function.
    """
    if not where.strip():
        raise ValueError(f"where {where!r}: empty; give a predicate, {_EXAMPLE}")
    if "\x00" in where:
        raise ValueError(f"where {where!r}: holds a NUL character; remove it")
    _check_tokens(where)
    sql = STATEMENT + where
    tree = _tree(sql)
    if tree.get("error"):
        msg = tree.get("error_message", "syntax error").splitlines()[0]
        raise ValueError(f"where {where!r}: {msg}")
    stack: list[Any] = [tree["statements"]]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        if kind == "BASE_TABLE" and (
            str(node.get("table_name")).lower() not in WHERE_TABLES
            or node.get("schema_name")
            or node.get("catalog_name")
        ):
            raise ValueError(
                f"where {where!r}: only the entries and layout tables can be used"
            )
        if kind == "TABLE_FUNCTION":
            raise ValueError(f"where {where!r}: table functions are not allowed")
        if kind in OTHER_SOURCES:
            raise ValueError(
                f"where {where!r}: only the entries and layout tables can be read"
            )
        if node.get("class") == "PARAMETER":
            raise ValueError(
                f"where {where!r}: parameters ('?', '$1') are not allowed; "
                "write the values"
            )
        if str(node.get("function_name", "")).lower() in WHERE_FORBIDDEN:
            raise ValueError(f"where {where!r}: {node['function_name']} is not allowed")
        stack.extend(node.values())
    if _shape(tree) != _template():
        raise ValueError(
            f"where {where!r}: give one predicate over entries (no other clause "
            f"or statement), {_EXAMPLE}"
        )
    return sql


# -- running (in a worker process) ---------------------------------------------------
def _run(con: duckdb.DuckDBPyConnection, sql: str, seconds: float) -> bytes:
    """The matching ids (int64 bytes), the query interrupted after ``seconds``."""
    timer = threading.Timer(seconds, con.interrupt)
    timer.start()
    try:
        ids = con.execute(ENTRIES_VIEW + sql).fetchnumpy()["id"]
    finally:
        timer.cancel()
    return np.sort(np.asarray(ids, np.int64)).tobytes()


def _answer(db: str, sql: str, wait: float, limits: WhereLimits) -> tuple:
    """One predicate, answered as ``("ok", ids bytes)`` or ``(error kind, text)``."""
    try:
        with connect(Path(db), read_only=True, timeout=wait) as con:
            con.execute(f"SET memory_limit = '{limits.memory_mb // 2}MB'")
            con.execute(f"SET threads = {int(limits.threads)}")
            con.execute("SET max_temp_directory_size = '0KiB'")  # no spilling
            con.execute("SET lock_configuration = true")
            return ("ok", _run(con, sql, limits.seconds))
    except StoreBusyError as exc:
        return ("StoreBusyError", str(exc))
    except MemoryError:
        return ("OutOfMemoryException", "")
    except duckdb.Error as exc:
        return (type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")


def _serve(requests: Connection, answers: Connection, limits: WhereLimits) -> None:
    """A worker's life: cap its memory, then answer ``(db, sql, wait)`` requests
    until the caller goes away."""
    cap = limits.memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    while True:
        try:
            request = requests.recv()
        except (EOFError, OSError):
            return
        answers.send(_answer(*request, limits))


def _worker_main() -> None:
    """Entry point of a worker process (started by :class:`_Worker`)."""
    limits = WhereLimits(**json.loads(sys.argv[1]))
    requests = Connection(int(sys.argv[2]), writable=False)
    answers = Connection(int(sys.argv[3]), readable=False)
    os.dup2(2, 1)  # stray prints go to stderr
    _serve(requests, answers, limits)


class _Worker:
    """A worker process and the caller's ends of its two pipes.

    Started as a new interpreter (``subprocess``, not ``multiprocessing``: that
    would import the caller's main script again, which breaks scripts without a
    ``__main__`` guard, and forking a server's threads is unsafe)."""

    def __init__(self, limits: WhereLimits) -> None:
        down_r, down_w = os.pipe()  # caller -> worker
        up_r, up_w = os.pipe()  # worker -> caller
        root = str(Path(__file__).resolve().parent.parent)  # holds swan_index
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from swan_index.where import _worker_main; _worker_main()",
                    json.dumps(dataclasses.asdict(limits)),
                    str(down_r),
                    str(up_w),
                ],
                pass_fds=(down_r, up_w),
                stdin=subprocess.DEVNULL,
                cwd=root,
                env={**os.environ, "PYTHONPATH": path},
            )
        finally:
            os.close(down_r)
            os.close(up_w)
        self.requests = Connection(down_w, readable=False)
        self.answers = Connection(up_r, writable=False)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(5)
        self.requests.close()
        self.answers.close()


class PredicateRunner:
    """Worker processes that run ``where`` predicates under one
    :class:`WhereLimits` (see the module docs); shared by every store of the
    process (:func:`runner_for`)."""

    def __init__(self, limits: WhereLimits) -> None:
        self.limits = limits
        self._slots = threading.BoundedSemaphore(limits.workers)
        self._idle: list[_Worker] = []
        self._mutex = threading.Lock()

    def run(self, db: Path, sql: str, wait: float) -> tuple:
        """Run ``sql`` on the database ``db`` in a worker.

        Args:
            db: the store's database file.
            sql: a statement from :func:`check_predicate`.
            wait: seconds to wait for a free worker, and for the database while
                another process holds it.

        Returns:
            ``("ok", ids bytes)``, or ``(error kind, text)``; the kind is
            ``"WorkerTimeout"`` when the worker did not answer in time (it is
            stopped) and ``"WorkerDied"`` when it died (e.g. out of memory).
        """
        if not self._slots.acquire(timeout=wait):
            raise StoreBusyError(
                f"{self.limits.workers} where predicates have been running for "
                f"over {wait:.0f} s; try again later"
            )
        try:
            with self._mutex:
                worker = self._idle.pop() if self._idle else None
            if worker is not None and not worker.alive():
                worker.stop()
                worker = None
            if worker is None:
                worker = _Worker(self.limits)
            try:
                # absolute: the worker runs in another folder
                worker.requests.send((str(Path(db).resolve()), sql, wait))
                if worker.answers.poll(wait + self.limits.seconds + GRACE_SECONDS):
                    answer = worker.answers.recv()
                else:
                    answer = ("WorkerTimeout", "")
            except (EOFError, OSError):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.process.wait(5)
                answer = ("WorkerDied", f"exit status {worker.process.returncode}")
            if answer[0] in ("WorkerTimeout", "WorkerDied"):
                log.warning("where worker: %s %s; it is replaced", *answer)
                worker.stop()
            else:
                with self._mutex:
                    self._idle.append(worker)
            return answer
        finally:
            self._slots.release()

    def close(self) -> None:
        """Stop the idle workers (busy ones are stopped by their callers)."""
        with self._mutex:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()


_RUNNERS: dict[WhereLimits, PredicateRunner] = {}
_RUNNERS_LOCK = threading.Lock()


def runner_for(limits: WhereLimits) -> PredicateRunner:
    """The process's :class:`PredicateRunner` for ``limits`` (made on first use;
    its workers end with the process)."""
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(limits)
        if runner is None:
            runner = _RUNNERS[limits] = PredicateRunner(limits)
        return runner


# -- the caller's side -----------------------------------------------------------------
def _error_kind(text: str) -> str:
    """``"Conversion Error"`` from DuckDB's ``"Conversion Error: ..."``; a fixed
    phrase, never data."""
    head = text.split(":", 1)[0].strip()
    return head if re.fullmatch(r"[A-Za-z ]{1,40} Error", head) else "run-time error"


def matching_ids(
    db: Path, where: str, limits: WhereLimits | None = None, wait: float = 120.0
) -> np.ndarray:
    """Ids (ascending) of the entries matching ``where``, checked
    (:func:`check_predicate`) and run in a worker under ``limits``.

    Args:
        db: the store's database file.
        where: the user's SQL predicate over ``entries``.
        limits: what it may use (default :class:`WhereLimits`).
        wait: seconds to wait for a free worker and for the database.

    Returns:
        int64 ids ``[n]``, ascending.

    Raises:
        ValueError: a predicate :func:`check_predicate` refuses, one that fails
            (one line: the kind of error and the predicate; the message of a
            parser or binder error, which quotes only the predicate and the
            columns, is kept), runs out of memory or runs too long.
        StoreBusyError: every worker stayed busy, or the database stayed held
            by another process, for ``wait`` seconds.
    """
    limits = WhereLimits() if limits is None else limits
    sql = check_predicate(where)
    kind, payload = runner_for(limits).run(db, sql, wait)
    if kind == "ok":
        return np.frombuffer(payload, np.int64).copy()
    if kind == "StoreBusyError":
        raise StoreBusyError(payload)
    if kind in ("InterruptException", "WorkerTimeout"):
        raise ValueError(
            f"where {where!r}: took over {limits.seconds:g} s; simplify it"
        )
    if kind == "WorkerDied":
        raise ValueError(
            f"where {where!r}: the process running it stopped ({payload}; out of "
            "memory?); simplify it, or see the log if every predicate fails"
        )
    if kind == "OutOfMemoryException":
        raise ValueError(
            f"where {where!r}: needs more than {limits.memory_mb} MB of memory; "
            "simplify it"
        )
    from swan_index.schema import record_columns  # pyarrow: not in the workers

    columns = ", ".join(["id", *record_columns(), "ingested_at", "cluster"])
    if kind in TEXT_SAFE_ERRORS:
        return_text = payload
    else:  # may quote a stored value (a path, a title...): never passed on
        return_text = (
            f"{_error_kind(payload)} on a stored value (not shown); check the "
            "types of the columns it uses"
        )
    raise ValueError(f"where {where!r}: {return_text} (columns: {columns})")
