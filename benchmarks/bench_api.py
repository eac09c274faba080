"""Benchmark: the HTTP API under load, against calling the service in-process.

Serves ``create_server(SwanService(store), max_searches=0)`` (the API, no
dashboard, no search limit: every request is answered, however late; the limit
is measured by :mod:`benchmarks.bench_load`) with uvicorn in a subprocess on a
free loopback port, then measures, in the same run:

* **in-process baseline**: ``service.similar`` (search by entry id) and
  ``service.search_upload`` (search with a map's bytes) called directly, one at a
  time, in this process (in a worker thread, as the server runs them);
* **HTTP, one client**: the same searches through
  ``GET /api/entries/{id}/similar`` and ``POST /api/search`` (multipart upload),
  one at a time: the ratio to the baseline is the HTTP overhead (routing,
  multipart parsing, JSON, the loopback). The two are interleaved call by call,
  so that load from other jobs on the machine hits both alike;
* **HTTP, 8 clients, search by id**: 8 threads (one httpx client each) sending
  ``similar`` requests: latency p50/p95 and requests/s;
* **HTTP, 8 clients, mixed**: the same 8 threads, each also sending uploads, so
  that cheap searches run while maps are encoded (at most 2 at once, the server's
  default ``upload_slots``): the p95 of search by id shows whether the server
  stays responsive.

The store is built from ``data/maps`` (6 real EMDB maps) in a temporary folder
unless ``--store`` is given; the query map is ``data/maps/emd_6824.mrc``
(1.4 MB, 16 candidate poses), the same bytes every time. ``k = 10``. The server
and the clients share the machine's cores (so do the server's threads: requests
are handled in its thread pool). JSON goes to ``benchmarks/results/bench_api.json``.

    $ python -m benchmarks.bench_api [--store DIR] [--threads 8] [--similar 200] \\
          [--uploads 16]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    ROOT,
    add_out_argument,
    machine_info,
    save_result,
    stop_process,
)
from dashboard.testing import free_port, wait_healthy

QUERY_MAP = ROOT / "data" / "maps" / "emd_6824.mrc"
K = 10


def _serve(store: Path, port: int) -> None:
    """Server mode (the subprocess): the API over ``store`` on ``port``."""
    import uvicorn

    from dashboard.server import create_server
    from dashboard.service import SwanService

    service = SwanService(store)
    app = create_server(service, max_searches=0)  # every request waits its turn
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def build_store(folder: Path) -> Path:
    """A store of ``data/maps`` (6 real EMDB maps) at ``folder/store``."""
    from swan_index.indexer import ingest_paths
    from swan_index.map_encoder import MapEncoder
    from swan_index.store import Store

    encoder = MapEncoder()
    store = folder / "store"
    with Store.open(store, encoder=encoder.info) as s:
        summary = ingest_paths(
            [ROOT / "data" / "maps"], s, encoder, workers=0, progress=False
        )
    if summary.failed:
        raise RuntimeError(f"building the store failed: {summary.failures}")
    return store


def latency_stats(seconds: list[float]) -> dict[str, float]:
    """``n``, p50, p95, mean and max (ms) of request times in seconds."""
    ms = sorted(1000 * s for s in seconds)
    q = statistics.quantiles(ms, n=20, method="inclusive") if len(ms) > 1 else ms * 19
    return {
        "n": len(ms),
        "p50_ms": statistics.median(ms),
        "p95_ms": q[18],
        "mean_ms": statistics.fmean(ms),
        "max_ms": ms[-1],
    }


def _check(response: Any) -> Any:
    if response.status_code != 200:
        raise RuntimeError(f"{response.status_code}: {response.text[:200]}")
    return response.json()


def _load(
    url: str, threads: int, plans: list[list[str]], ids: list[int], data: bytes
) -> dict[str, Any]:
    """Run ``plans`` (one list of ``"similar"``/``"upload"`` per thread) at once."""
    import httpx

    times: dict[str, list[float]] = {"similar": [], "upload": []}
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker(plan: list[str], offset: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            start.wait()
            for i, kind in enumerate(plan):
                t0 = time.perf_counter()
                if kind == "similar":
                    entry = ids[(offset + i) % len(ids)]
                    _check(client.get(f"/api/entries/{entry}/similar?k={K}"))
                else:
                    files = {"file": (QUERY_MAP.name, data)}
                    _check(client.post(f"/api/search?k={K}", files=files))
                with lock:
                    times[kind].append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(threads) as pool:
        for fut in [pool.submit(worker, p, j) for j, p in enumerate(plans)]:
            fut.result()
    wall = time.perf_counter() - t0
    n = sum(len(t) for t in times.values())
    out: dict[str, Any] = {"threads": threads, "requests": n, "seconds": wall}
    out["requests_per_s"] = n / wall
    for kind, t in times.items():
        if t:
            out[kind] = latency_stats(t)
    return out


def _plans(threads: int, similar: int, uploads: int) -> list[list[str]]:
    """Per thread, ``similar`` and ``uploads`` requests spread evenly (uploads
    interleaved among the searches)."""
    plans = []
    for j in range(threads):
        ns = similar // threads + (j < similar % threads)
        nu = uploads // threads + (j < uploads % threads)
        plan = ["similar"] * ns
        for u in range(nu):
            plan.insert(min(len(plan), (u * (ns + nu)) // max(nu, 1)), "upload")
        plans.append(plan)
    return plans


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Serve the store, time the calls in-process and over HTTP; save the result."""
    import fastapi
    import httpx
    import uvicorn

    from dashboard.service import SwanService

    load_before = os.getloadavg()
    tmp = None
    if args.store is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_api_")
        print("building a store from data/maps ...", flush=True)
        store = build_store(Path(tmp.name))
    else:
        store = Path(args.store)
    data = QUERY_MAP.read_bytes()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_api",
            "--serve",
            str(store),
            "--port",
            str(port),
        ],
        cwd=ROOT,
    )
    try:
        wait_healthy(url, proc)
        service = SwanService(store)
        ids = [int(i) for i in service.store.entries(("id",))["id"].tolist()]
        print(f"{len(ids)} entries; server on {url}", flush=True)

        # warm-up (imports, first encode, caches) on both sides
        service.similar(ids[0], k=K)
        service.search_upload(data, QUERY_MAP.name, k=K)
        with httpx.Client(base_url=url, timeout=600) as client:
            _check(client.get(f"/api/entries/{ids[0]}/similar?k={K}"))
            _check(client.post(f"/api/search?k={K}", files={"file": ("q", data)}))

        results: dict[str, Any] = {}
        n_sim, n_up = args.sequential_similar, args.sequential_uploads
        print("in-process baseline and HTTP with one client, interleaved ...")
        # The server runs each call in a worker thread; so does the baseline (under
        # load from other jobs, torch in the main thread can be much slower).
        with (
            httpx.Client(base_url=url, timeout=600) as client,
            cf.ThreadPoolExecutor(1) as worker,
        ):
            files = {"file": (QUERY_MAP.name, data)}

            def direct_similar(entry: int) -> Any:
                return worker.submit(service.similar, entry, k=K).result()

            def direct_upload(entry: int) -> Any:
                call = worker.submit(service.search_upload, data, QUERY_MAP.name, k=K)
                return call.result()

            def http_similar(entry: int) -> Any:
                return _check(client.get(f"/api/entries/{entry}/similar?k={K}"))

            def http_upload(entry: int) -> Any:
                return _check(client.post(f"/api/search?k={K}", files=files))

            calls = {
                "direct": {"similar": direct_similar, "upload": direct_upload},
                "http_1": {"similar": http_similar, "upload": http_upload},
            }
            times = {name: {"similar": [], "upload": []} for name in calls}
            for kind, n in (("similar", n_sim), ("upload", n_up)):
                for i in range(n):  # ABAB: load from other jobs hits both alike
                    for name, fns in calls.items():
                        t0 = time.perf_counter()
                        fns[kind](ids[i % len(ids)])
                        times[name][kind].append(time.perf_counter() - t0)
        service.close()
        for name, by_kind in times.items():
            results[name] = {kind: latency_stats(t) for kind, t in by_kind.items()}
        print(f"HTTP, {args.threads} clients, search by id ...", flush=True)
        results[f"http_{args.threads}_similar"] = _load(
            url, args.threads, _plans(args.threads, args.similar, 0), ids, data
        )
        print(f"HTTP, {args.threads} clients, mixed ...", flush=True)
        results[f"http_{args.threads}_mixed"] = _load(
            url,
            args.threads,
            _plans(args.threads, args.similar, args.uploads),
            ids,
            data,
        )
    finally:
        stop_process(proc)
        if tmp is not None:
            tmp.cleanup()

    d, h1 = results["direct"], results["http_1"]
    result = {
        "benchmark": "HTTP API latency and throughput vs in-process service calls",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "store": "data/maps (6 real EMDB maps)" if args.store is None else args.store,
        "entries": len(ids),
        "query_map": str(QUERY_MAP.relative_to(ROOT)),
        "query_bytes": len(data),
        "k": K,
        "server": "uvicorn, API only, upload_slots=2, max_searches=0, one process",
        "results": results,
        "http_overhead": {
            "similar_p50_ratio": h1["similar"]["p50_ms"] / d["similar"]["p50_ms"],
            "similar_p50_extra_ms": h1["similar"]["p50_ms"] - d["similar"]["p50_ms"],
            "upload_p50_ratio": h1["upload"]["p50_ms"] / d["upload"]["p50_ms"],
            "upload_p50_extra_ms": h1["upload"]["p50_ms"] - d["upload"]["p50_ms"],
        },
        "machine": machine_info(
            loadavg_1_5_15_before=load_before,
            loadavg_1_5_15_after=os.getloadavg(),
            fastapi=fastapi.__version__,
            uvicorn=uvicorn.__version__,
            httpx=httpx.__version__,
        ),
        "command": " ".join(sys.argv),
    }
    return save_result(result, args.out, _print_table)


def _print_table(result: dict[str, Any]) -> None:
    head = ("setting", "kind", "n", "p50 ms", "p95 ms", "req/s")
    print("\n{:<28} {:<8} {:>5} {:>9} {:>9} {:>8}".format(*head))
    for name, block in result["results"].items():
        rate = block.get("requests_per_s")
        for kind in ("similar", "upload"):
            if kind in block:
                s = block[kind]
                shown = f"{rate:8.1f}" if rate is not None else f"{'':>8}"
                print(
                    f"{name:<28} {kind:<8} {s['n']:>5} {s['p50_ms']:>9.1f} "
                    f"{s['p95_ms']:>9.1f} {shown}"
                )
                rate = None
    o = result["http_overhead"]
    print(
        "\nHTTP overhead (one client, p50): "
        f"search by id x{o['similar_p50_ratio']:.2f} "
        f"(+{o['similar_p50_extra_ms']:.1f} ms), upload x{o['upload_p50_ratio']:.2f} "
        f"(+{o['upload_p50_extra_ms']:.1f} ms)"
    )


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """Run the benchmark (or, with ``--serve``, be its server)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, help="store folder (default: build)")
    parser.add_argument("--threads", type=int, default=8, help="concurrent clients")
    parser.add_argument(
        "--similar", type=int, default=200, help="search-by-id requests per load run"
    )
    parser.add_argument(
        "--uploads", type=int, default=16, help="upload searches in the mixed run"
    )
    parser.add_argument("--sequential-similar", type=int, default=50)
    parser.add_argument("--sequential-uploads", type=int, default=8)
    add_out_argument(parser, "bench_api.json")
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        _serve(Path(args.serve), args.port)
        return None
    return run(args)


if __name__ == "__main__":
    main()
