"""Benchmark: the server under more searches than it answers, search limit off and on.

For each ``--limits`` value (default ``0,4``: no limit, as before the limit
existed, then the server's default ``MAX_SEARCHES``), serves the store with
``create_server(SwanService(store), max_searches=LIMIT)`` (the API, no
dashboard) with uvicorn in its own subprocess on a free loopback port; then:

* **warm-up**: each entry searched once per server, one at a time (its map read
  again and its query cached, as in a server that has run a while);
* **load**, in ``--rounds`` rounds, each server loaded in turn within a round
  (ABAB, so that load from other jobs on the machine hits every setting alike),
  ``--seconds`` per server in all: ``--clients`` threads (one httpx client each)
  send ``GET /api/entries/{id}/similar?k=10`` (with the rotational fit, the
  default) back to back; a client answered 503 waits the ``Retry-After``
  seconds, as a polite client does, then goes on. A round ends when every
  client has its last answer.

Reported per limit: answered (200) requests/s, their latency p50/p95/max, the
share and latency of 503s, and the server's peak resident memory (``VmHWM`` of
``/proc/PID/status``, the kernel's high-water mark) after warm-up and after the
load. The store is ``data/maps`` (6 real EMDB maps) built in a temporary folder
unless ``--store`` is given. The clients share the machine's cores with the
server; the load averages before and after each run are recorded. JSON goes to
``benchmarks/results/bench_load.json``.

    $ python -m benchmarks.bench_load [--store DIR] [--clients 12] \\
          [--seconds 60] [--rounds 4] [--limits 0,4]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_api import K, build_store, latency_stats
from benchmarks.common import (
    ROOT,
    add_out_argument,
    machine_info,
    save_result,
    stop_process,
)
from dashboard.testing import free_port, wait_healthy


def _serve(store: Path, port: int, limit: int) -> None:
    """Server mode (the subprocess): the API over ``store`` on ``port``."""
    import uvicorn

    from dashboard.server import create_server
    from dashboard.service import SwanService

    app = create_server(SwanService(store), max_searches=limit)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (``VmHWM``), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


class Tally:
    """What the clients saw of one server, over all rounds."""

    def __init__(self) -> None:
        self.answered: list[float] = []
        self.refused: list[float] = []
        self.retry_after: set[int] = set()
        self.seconds = 0.0

    def summary(self, clients: int) -> dict[str, Any]:
        """Requests/s, latencies and the share of 503s."""
        total = len(self.answered) + len(self.refused)
        return {
            "clients": clients,
            "seconds": self.seconds,
            "requests": total,
            "answered": len(self.answered),
            "refused_503": len(self.refused),
            "share_503": len(self.refused) / total if total else 0.0,
            "answered_per_s": len(self.answered) / self.seconds,
            "latency_answered": latency_stats(self.answered) if self.answered else None,
            "latency_503": latency_stats(self.refused) if self.refused else None,
            "retry_after_s": sorted(self.retry_after),
        }


def _load(url: str, ids: list[int], clients: int, seconds: float, tally: Tally) -> None:
    """``clients`` threads searching by id for ``seconds`` (503s honoured);
    what they saw is added to ``tally``."""
    import httpx

    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    box: dict[str, float] = {}

    def client(offset: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            start.wait()
            i = offset
            while time.perf_counter() < box["end"]:
                t0 = time.perf_counter()
                response = http.get(f"/api/entries/{ids[i % len(ids)]}/similar?k={K}")
                took = time.perf_counter() - t0
                i += 1
                wait = 0
                with lock:
                    if response.status_code == 200:
                        tally.answered.append(took)
                    elif response.status_code == 503:
                        tally.refused.append(took)
                        wait = int(response.headers["retry-after"])
                        tally.retry_after.add(wait)
                    else:
                        errors.append(f"{response.status_code}: {response.text[:200]}")
                left = box["end"] - time.perf_counter()
                time.sleep(max(0.0, min(wait, left)))

    with cf.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client, j) for j in range(clients)]
        box["end"] = time.perf_counter() + seconds
        start.wait()
        t0 = time.perf_counter()
        for future in futures:
            future.result()
        tally.seconds += time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[0]}")


def _start(store: Path, limit: int) -> tuple[subprocess.Popen, str]:
    """A server of ``store`` with ``max_searches=limit``, warmed up."""
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "benchmarks.bench_load", "--serve", str(store)]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--limit", str(limit)], cwd=ROOT
    )
    try:
        wait_healthy(url, proc)
        with httpx.Client(base_url=url, timeout=600) as http:
            for entry in _entry_ids(store):
                response = http.get(f"/api/entries/{entry}/similar?k={K}")
                if response.status_code != 200:
                    raise RuntimeError(f"warm-up: {response.text[:200]}")
    except BaseException:
        stop_process(proc)
        raise
    return proc, url


def _measure(store: Path, limits: list[int], args: argparse.Namespace) -> list[dict]:
    """One server per limit, loaded in turn for ``args.rounds`` rounds."""
    servers: list[tuple[subprocess.Popen, str]] = []
    try:
        for limit in limits:
            servers.append(_start(store, limit))
        warm = [_peak_rss_mb(proc.pid) for proc, _ in servers]
        ids = _entry_ids(store)
        tallies = [Tally() for _ in limits]
        load: dict[str, Any] = {"before": os.getloadavg()}
        per_round = args.seconds / args.rounds
        for r in range(args.rounds):
            for limit, (_, url), tally in zip(limits, servers, tallies, strict=True):
                print(f"round {r + 1}/{args.rounds}: max_searches={limit} ...")
                _load(url, ids, args.clients, per_round, tally)
        load["after"] = os.getloadavg()
        return [
            {
                "max_searches": limit,
                **tally.summary(args.clients),
                "peak_rss_mb_after_warmup": warm_mb,
                "peak_rss_mb": _peak_rss_mb(proc.pid),
                "loadavg_1_5_15": load,
            }
            for limit, (proc, _), tally, warm_mb in zip(
                limits, servers, tallies, warm, strict=True
            )
        ]
    finally:
        for proc, _ in servers:
            stop_process(proc)


def _entry_ids(store: Path) -> list[int]:
    from swan_index.store import Store

    with Store.open(store, read_only=True) as s:
        return sorted(int(i) for i in s.entries(("id",))["id"])


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load a server once per limit; save the result."""
    import fastapi
    import httpx
    import uvicorn

    limits = [int(x) for x in args.limits.split(",")]
    tmp = None
    if args.store is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_load_")
        print("building a store from data/maps ...", flush=True)
        store = build_store(Path(tmp.name))
    else:
        store = Path(args.store)
    try:
        entries = len(_entry_ids(store))
        runs = _measure(store, limits, args)
    finally:
        if tmp is not None:
            tmp.cleanup()
    result = {
        "benchmark": "HTTP search by id under overload, search limit off and on",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "store": "data/maps (6 real EMDB maps)" if args.store is None else args.store,
        "entries": entries,
        "request": f"GET /api/entries/{{id}}/similar?k={K} (fit on), ids in turn",
        "server": "uvicorn, API only, one process, upload_slots=2",
        "clients_honour_retry_after": True,
        "rounds": args.rounds,
        "runs": runs,
        "machine": machine_info(
            fastapi=fastapi.__version__,
            uvicorn=uvicorn.__version__,
            httpx=httpx.__version__,
        ),
        "command": " ".join(sys.argv),
    }
    return save_result(result, args.out, _print_table)


def _print_table(result: dict[str, Any]) -> None:
    head = ("max_searches", "ok/s", "p50 s", "p95 s", "max s", "503 %", "peak MiB")
    print("\n{:>12} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9}".format(*head))
    for r in result["runs"]:
        lat = r["latency_answered"] or {"p50_ms": 0, "p95_ms": 0, "max_ms": 0}
        limit = r["max_searches"] or "off"
        print(
            f"{limit:>12} {r['answered_per_s']:7.2f} {lat['p50_ms'] / 1000:7.2f} "
            f"{lat['p95_ms'] / 1000:7.2f} {lat['max_ms'] / 1000:7.2f} "
            f"{100 * r['share_503']:7.1f} {r['peak_rss_mb']:9.0f}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """Run the benchmark (or, with ``--serve``, be its server)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, help="store folder (default: build)")
    parser.add_argument("--clients", type=int, default=12, help="concurrent clients")
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="load time per limit, in all"
    )
    parser.add_argument("--rounds", type=int, default=4, help="rounds (ABAB)")
    parser.add_argument(
        "--limits", default="0,4", help="max_searches values, 0: no limit"
    )
    add_out_argument(parser, "bench_load.json")
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        _serve(Path(args.serve), args.port, args.limit)
        return None
    return run(args)


if __name__ == "__main__":
    main()
