"""What every benchmark records next to its figures, and how it saves them.

A result is a JSON object. :func:`save_result` writes it to ``NAME.json``; with
``rows_key``, the per-item rows (one list per key: per query, per page load, ...)
go to a gzipped sibling, ``NAME.rows.jsonl.gz`` (one JSON object a line), and the
summary keeps, in their place, a pointer::

    "rows": {"rows_file": "NAME.rows.jsonl.gz", "first_line": 0, "count": 3512}

:func:`load_result` reads the summary and puts the rows back, so that what it
returns equals what was saved. The gzip stream carries no time stamp and no file
name: the same result gives the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Where the benchmarks' results are kept.
RESULTS = ROOT / "benchmarks" / "results"
#: The larger real data set beside the repository (maps, models, shapes, EMDB
#: headers; ``SOURCES.md`` says where each came from): the benchmarks' default
#: inputs, never needed by the tests.
SHARED_DATA = ROOT.parent / "shared" / "data" / "real"
#: Ending of the per-item rows file next to a result's ``NAME.json``.
ROWS_SUFFIX = ".rows.jsonl.gz"
_POINTER_KEYS = frozenset({"rows_file", "first_line", "count"})


def code_version() -> dict[str, str]:
    """sha256 (first 12 hex digits) of the store's sources, to tell which version
    of the code a result measured."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12]
        for p in sorted((ROOT / "swan_index").glob("*.py"))
    }


def machine_info(**versions: Any) -> dict[str, Any]:
    """Python, platform, CPU count, plus the library ``versions`` given (and any
    other facts about the machine, such as load averages)."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        **versions,
    }


class RunRecord:
    """Wall time, load averages and the store's source hashes over one run.

    Made when the run starts; :meth:`mark` notes the load average at a named
    point, :meth:`finish` returns what a result records about the run.
    """

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.load: dict[str, tuple[float, float, float]] = {"start": os.getloadavg()}
        self.version = code_version()

    def mark(self, label: str) -> None:
        """Note the 1, 5 and 15 minute load averages now, as ``label``."""
        self.load[label] = os.getloadavg()

    def finish(self) -> dict[str, Any]:
        """``seconds_total``, ``load_average_1_5_15_min`` (with ``end``), the
        ``swan_index`` sources' hashes at the start and whether they changed."""
        self.mark("end")
        return {
            "seconds_total": time.perf_counter() - self.started,
            "load_average_1_5_15_min": self.load,
            "swan_index_sha256": self.version,
            "swan_index_changed_during_run": code_version() != self.version,
        }


def add_out_argument(parser: argparse.ArgumentParser, name: str) -> None:
    """Add ``--out`` to ``parser``: where to write the result, by default
    ``benchmarks/results/<name>``."""
    parser.add_argument(
        "--out", type=Path, default=RESULTS / name, help="result JSON file"
    )


def time_calls(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    """Call ``fn`` ``repeat`` times; the seconds of each call and the last
    call's return value."""
    seconds, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        seconds.append(time.perf_counter() - t0)
    return seconds, value


def stop_process(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Terminate ``proc``; kill it if it has not exited after ``timeout`` s."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rows_path(out: Path) -> Path:
    """The per-item rows file of the result ``out``: ``NAME.json`` ->
    ``NAME.rows.jsonl.gz`` (same folder)."""
    out = Path(out)
    return out.with_name(out.stem + ROWS_SUFFIX)


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole (through ``path.tmp``)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _split_rows(
    result: dict[str, Any], keys: Sequence[str], rows_file: str
) -> tuple[dict[str, Any], list[Any]]:
    """A copy of ``result`` whose lists at ``keys`` (dotted paths) are pointers
    into ``rows_file``, and the rows, in file order."""
    summary = dict(result)
    rows: list[Any] = []
    for key in keys:
        parts = key.split(".")
        node = summary
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise KeyError(f"{key}: no object at {part!r}")
            node[part] = dict(node[part])  # copy the path, not the caller's dicts
            node = node[part]
        value = node.get(parts[-1])
        if not isinstance(value, list):
            raise TypeError(f"{key}: expected a list of rows, got {type(value)}")
        node[parts[-1]] = {
            "rows_file": rows_file,
            "first_line": len(rows),
            "count": len(value),
        }
        rows.extend(value)
    return summary, rows


def save_result(
    result: dict[str, Any],
    out: Path,
    print_table: Callable[[dict[str, Any]], None] | None = None,
    *,
    rows_key: str | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Save ``result`` to ``out`` (JSON), print its table, say where it went.

    Args:
        result: the benchmark's result (JSON types; others are written as text).
        out: the summary file, ``NAME.json``.
        print_table: prints the result's table (after saving), if given.
        rows_key: the key of the per-item rows (a list), or several; a dotted
            key (``"results.1000.loads"``) names a list inside nested objects.
            Those lists go to :func:`rows_path` (``NAME.rows.jsonl.gz``, one
            row a line, gzip without time stamp) and the summary holds a
            pointer in their place. Without it everything stays in ``out``
            and a rows file left by an earlier save is removed.

    Returns:
        ``result`` itself (rows included; it is not changed).

    Raises:
        KeyError, TypeError: a ``rows_key`` does not name a list.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = [rows_key] if isinstance(rows_key, str) else list(rows_key or ())
    side = rows_path(out)
    summary, rows = _split_rows(result, keys, side.name)
    if keys:
        lines = "".join(
            json.dumps(row, separators=(",", ":"), default=str) + "\n" for row in rows
        )
        _write(side, gzip.compress(lines.encode(), compresslevel=9, mtime=0))
    elif side.exists():
        side.unlink()
    _write(out, (json.dumps(summary, indent=2, default=str) + "\n").encode())
    if print_table is not None:
        print_table(result)
    print(f"\nsaved {out}" + (f" (rows: {side.name})" if keys else ""))
    return result


def load_result(path: Path) -> dict[str, Any]:
    """A result saved by :func:`save_result`, its rows back in place.

    A plain JSON result (no rows file) is returned as it is.

    Raises:
        FileNotFoundError: ``path`` or the rows file it points to is missing.
    """
    path = Path(path)
    summary = json.loads(path.read_text())
    files: dict[str, list[Any]] = {}

    def rows_of(name: str) -> list[Any]:
        if name not in files:
            with gzip.open(path.with_name(name), "rt") as fh:
                files[name] = [json.loads(line) for line in fh if line.strip()]
        return files[name]

    def join(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == _POINTER_KEYS:
                start = node["first_line"]
                return rows_of(node["rows_file"])[start : start + node["count"]]
            return {k: join(v) for k, v in node.items()}
        if isinstance(node, list):
            return [join(v) for v in node]
        return node

    return join(summary)
