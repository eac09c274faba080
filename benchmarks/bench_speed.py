"""Benchmark: search speed of the served API, this code against a baseline commit.

Serves one store twice at once, each server in its own subprocess
(``create_server(SwanService(store), max_searches=0)``, uvicorn, the API only):
``new`` with this tree's code and ``old`` with the tree of ``--baseline``
(default :data:`benchmarks.baseline.BASELINE_COMMIT`, written out of git
history into a temporary folder, :func:`benchmarks.baseline.export`). Then, on
both, interleaved request by request (ABAB, so that load from other jobs on the
shared machine hits both alike):

* **search by id**, one client: ``GET /api/entries/{id}/similar?k=10`` with the
  rotational fit (the default) and with ``fit=false``; the ratio of the two is
  what the fit adds to a search. Each entry's first search (the warm-up: its
  map read again and encoded, its volume turned) is reported apart, as
  ``similar_first``;
* **upload search**, one client: ``POST /api/search?k=10`` with
  ``data/maps/emd_6824.mrc`` (1.4 MB, 16 candidate poses), fit included;
* **upload search with each sample map** of ``data/maps``, one client,
  ``--uploads-per-map`` per server after one warm-up, with each map's number
  of candidate poses and of distinct canonical volumes among them;
* **8 clients**: ``--threads`` threads (one httpx client each) sending search by
  id, fit included, back to back, ``--similar`` requests per server per round,
  ``--rounds`` rounds alternating the servers: requests/s. Any answer but 200
  stops the run (so a finished run had no errors).

The store is ``data/maps`` (6 real EMDB maps) built in a temporary folder unless
``--store`` is given. Each server warms up first (every entry searched once: its
map read again and its query cached, as in a server that has run a while). JSON
goes to ``benchmarks/results/bench_speed.json``.

    $ python -m benchmarks.bench_speed [--store DIR] [--baseline REV] \\
          [--sequential 30] [--uploads 8] [--threads 8] [--similar 96] [--rounds 2] \\
          [--uploads-per-map 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.baseline import BASELINE_COMMIT, export, resolve
from benchmarks.bench_api import (
    QUERY_MAP,
    K,
    _check,
    _load,
    _plans,
    build_store,
    latency_stats,
)
from benchmarks.common import (
    ROOT,
    add_out_argument,
    machine_info,
    save_result,
    stop_process,
)
from dashboard.testing import free_port, wait_healthy
from swan_index.store import Store


def _server(code: Path, store: Path) -> tuple[subprocess.Popen, str]:
    """``bench_api``'s server mode run from the tree at ``code``."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(code)}
    cmd = [sys.executable, "-m", "benchmarks.bench_api", "--serve", str(store)]
    proc = subprocess.Popen([*cmd, "--port", str(port)], cwd=code, env=env)
    return proc, f"http://127.0.0.1:{port}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Serve the store with both codes and time them side by side."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_speed_") as tmp:
        base = export(args.baseline, Path(tmp) / "baseline")
        store = Path(args.store) if args.store else build_store(Path(tmp))
        servers = {"new": _server(ROOT, store), "old": _server(base, store)}
        try:
            for proc, url in servers.values():
                wait_healthy(url, proc)
            with Store.open(store, read_only=True) as st:
                ids = [int(i) for i in st.entries(("id",))["id"]]
            result = _measure(args, servers, ids, QUERY_MAP.read_bytes())
        finally:
            for proc, _ in servers.values():
                stop_process(proc)
    result.update(
        {
            "benchmark": "served search speed, this code vs a baseline commit",
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "baseline": resolve(args.baseline),
            "store": args.store or "data/maps (6 real EMDB maps)",
            "entries": len(ids),
            "query_map": str(QUERY_MAP.relative_to(ROOT)),
            "k": K,
            "machine": machine_info(
                loadavg_1_5_15_before=load_before,
                loadavg_1_5_15_after=os.getloadavg(),
            ),
            "command": " ".join(sys.argv),
        }
    )
    return save_result(result, args.out, _print_table)


def _measure(
    args: argparse.Namespace,
    servers: dict[str, tuple[subprocess.Popen, str]],
    ids: list[int],
    data: bytes,
) -> dict[str, Any]:
    import httpx

    clients = {
        name: httpx.Client(base_url=url, timeout=600)
        for name, (_, url) in servers.items()
    }
    files = {"file": (QUERY_MAP.name, data)}
    calls = {
        "similar": lambda c, i: c.get(f"/api/entries/{i}/similar?k={K}"),
        "similar_no_fit": lambda c, i: c.get(
            f"/api/entries/{i}/similar?k={K}&fit=false"
        ),
        "upload": lambda c, i: c.post(f"/api/search?k={K}", files=files),
    }
    try:
        print(f"{len(ids)} entries; warming up ...", flush=True)
        first: dict[str, list[float]] = {name: [] for name in clients}
        for i in ids:  # each entry's first search: its map read, encoded, turned
            for name, client in clients.items():
                t0 = time.perf_counter()
                _check(calls["similar"](client, i))
                first[name].append(time.perf_counter() - t0)
        for client in clients.values():
            _check(calls["upload"](client, ids[0]))
        times = {name: {kind: [] for kind in calls} for name in clients}
        for kind in calls:
            n = args.uploads if kind == "upload" else args.sequential
            print(f"one client, {kind}: {n} per server ...", flush=True)
            for j in range(n):  # ABAB
                for name, client in clients.items():
                    t0 = time.perf_counter()
                    _check(calls[kind](client, ids[j % len(ids)]))
                    times[name][kind].append(time.perf_counter() - t0)
        by_map = _uploads_by_map(args, clients)
    finally:
        for client in clients.values():
            client.close()
    one = {
        name: {kind: latency_stats(t) for kind, t in by_kind.items()}
        for name, by_kind in times.items()
    }
    for name, t in first.items():
        one[name]["similar_first"] = latency_stats(t)
    plans = _plans(args.threads, args.similar, 0)
    rates: dict[str, list[float]] = {name: [] for name in servers}
    for r in range(args.rounds):
        order = list(servers) if r % 2 == 0 else list(servers)[::-1]
        for name in order:
            print(f"{args.threads} clients, round {r + 1}, {name} ...", flush=True)
            got = _load(servers[name][1], args.threads, plans, ids, data)
            rates[name].append(got["requests_per_s"])
    out: dict[str, Any] = {"one_client": one, "clients": args.threads}
    out["upload_by_map"] = by_map
    out["requests_per_s"] = {n: statistics.median(v) for n, v in rates.items()}
    out["requests_per_s_rounds"] = rates
    out["errors"] = 0  # any answer but 200 stops the run
    out["fit_ratio_p50"] = {
        name: one[name]["similar"]["p50_ms"] / one[name]["similar_no_fit"]["p50_ms"]
        for name in one
    }
    out["new_over_old"] = {
        "similar_p50": one["new"]["similar"]["p50_ms"]
        / one["old"]["similar"]["p50_ms"],
        "upload_p50": one["new"]["upload"]["p50_ms"] / one["old"]["upload"]["p50_ms"],
        "requests_per_s": out["requests_per_s"]["new"] / out["requests_per_s"]["old"],
    }
    return out


def _uploads_by_map(args: argparse.Namespace, clients: dict[str, Any]) -> dict:
    """Upload search with each sample map, ``--uploads-per-map`` per server
    (ABAB): per map its size, candidate poses, how many of their canonical
    volumes differ (a symmetric map's often coincide, and are encoded once),
    and per server the median ms."""
    from ingest import canonicalize_poses, is_map_file, read_map

    out = {}
    for path in sorted(p for p in (ROOT / "data" / "maps").iterdir() if is_map_file(p)):
        poses = canonicalize_poses(read_map(path))
        distinct = len({v.values.tobytes() for v in poses})
        files = {"file": (path.name, path.read_bytes())}
        print(f"one client, upload {path.name} ...", flush=True)
        t: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(args.uploads_per_map + 1):  # the first is a warm-up
            for name, client in clients.items():
                t0 = time.perf_counter()
                _check(client.post(f"/api/search?k={K}", files=files))
                t[name].append(time.perf_counter() - t0)
        out[path.name] = {
            "bytes": path.stat().st_size,
            "poses": len(poses),
            "distinct_volumes": distinct,
            **{n: 1000 * statistics.median(v[1:]) for n, v in t.items()},
        }
    return out


def _print_table(result: dict[str, Any]) -> None:
    print(f"\n{'code':<5} {'kind':<16} {'p50 ms':>9} {'p95 ms':>9}")
    for name, by_kind in result["one_client"].items():
        for kind, s in by_kind.items():
            print(f"{name:<5} {kind:<16} {s['p50_ms']:>9.1f} {s['p95_ms']:>9.1f}")
    for name, rate in result["requests_per_s"].items():
        ratio = result["fit_ratio_p50"][name]
        print(
            f"{name}: {result['clients']} clients {rate:.1f} requests/s; search by "
            f"id with the fit / without: x{ratio:.2f}"
        )
    print("new / old:", {k: round(v, 3) for k, v in result["new_over_old"].items()})
    print(f"\n{'upload':<20} {'poses':>5} {'distinct':>8} {'new ms':>8} {'old ms':>8}")
    for name, m in result.get("upload_by_map", {}).items():
        print(
            f"{name:<20} {m['poses']:>5} {m['distinct_volumes']:>8} "
            f"{m['new']:>8.0f} {m['old']:>8.0f}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; save and return the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, help="store folder (default: build)")
    parser.add_argument("--baseline", default=BASELINE_COMMIT, help="git revision")
    parser.add_argument("--sequential", type=int, default=30)
    parser.add_argument("--uploads", type=int, default=8)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--similar", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--uploads-per-map", type=int, default=3)
    add_out_argument(parser, "bench_speed.json")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
