"""Benchmark: the dashboard's time to first render of the archive map, at 50,000
entries against a 1,000-entry baseline measured in the same run.

For each size a store of *generated* entries is built in ``/tmp/bench_dash_*``
(deleted at the end): codes in the shape of the shipped encoder's (clustered
vectors, L2-normalised, random tokens, as ``_seeded`` in ``tests/test_store.py``),
realistic-looking metadata (resolutions and release dates drawn from
``../shared/data/real/headers/EMDB_metadata.csv`` when it exists), and a 2D layout
of Gaussian blobs around 50 cluster centres plus 4% noise (cluster -1); no UMAP is
run. ``swan serve`` serves each store in a subprocess (both at once), and Chromium
(``/usr/bin/chromium``, headless, driven by Playwright; no GPU, so WebGL is
software-rendered) loads the page in a fresh browser context (empty cache) per
repeat. The sizes are interleaved within each repeat, so load from other jobs on
the machine hits them alike.

Measured per page load, from navigation start (``performance.now()`` in the page):

* **first render** (``render_ms``): until ``#umap-graph`` holds every entry in
  its ``_fullData`` (the sum of ``_length`` over traces except the overlays
  "search hits" and "selected entry"), checked once per animation frame;
* **server time of the first render** (``first_render_server_ms``): the sum,
  over the requests of that first render that the server computes (the page's
  HTML, ``/_dash-layout``, ``/_dash-dependencies`` and every
  ``/_dash-update-component`` sent before the map is drawn: the filter, the
  address, the map...), of request sent to first byte of the answer
  (``first_render_server``: each request; ``first_render_requests``: how many);
* the map's ``/_dash-update-component`` request (output ``umap-graph.figure``),
  from the page's Resource Timing: when it is sent (``map_request_ms``), the
  server's time to answer (``map_server_ms``: request sent to first byte: the
  callback reads the store, builds the figure, serialises and gzips it), the
  download (``map_download_ms``), its bytes on the wire (gzip) and decoded;
  ``browser_ms`` is the rest: first render minus the end of that response
  (waiting for plotly.js, JSON parsing, React, Plotly and the WebGL draw);
* in the browser, from an init script that wraps ``window.Plotly.react`` (what
  ``dcc.Graph`` calls): when plotly.js (4.8 MB, loaded lazily by ``dcc.Graph``)
  has been evaluated (``plotly_ready_ms``), when the ``Plotly.react`` that draws
  the full map starts (``map_react_start_ms``) and how long it takes until its
  promise resolves (``map_react_ms``), and when the last ``Plotly.react`` of the
  map ends once the network is idle (``map_settled_ms``: callbacks that fire after
  the map is drawn patch it again);
* every ``/_dash-update-component`` response (output, timings, bytes) and the
  bytes of the whole page load;
* **recolour** (``recolour_ms``): ``#color-by`` set to "resolution (Å)" with the
  dropdown, from the click on the option until the recoloured map holds every
  entry again (its request, ``Plotly.react`` and bytes too).

Also, in this process and before the servers start, the map callback itself
(``dashboard.pages.explore.on_map``: store read and figure build), Dash's JSON
serialisation of the figure (``to_json_plotly``) and gzip at level 9 (as the
server's ``GZipMiddleware``), timed directly (``inprocess``): the server's share
of ``map_server_ms`` without HTTP, a2wsgi, Dash's dispatch or the browser
competing for the CPU.

One untimed warm-up load per size comes first (the server's first callbacks
import and compile things once). Medians over the repeats are reported, with
every repeat, and the ratio of the largest size to the smallest for each median.
The summary goes to ``benchmarks/results/bench_dashboard.json``, every page load
(``loads``, ``warmups`` of each size) to ``bench_dashboard.rows.jsonl.gz`` next to
it (:func:`benchmarks.common.load_result` joins them). The stores are built by
:mod:`benchmarks.dashboard_data`, the pages driven by
:mod:`benchmarks.dashboard_browser`.

    $ python -m benchmarks.bench_dashboard [--sizes 1000 50000] [--repeats 3] \\
          [--warmup 1] [--no-recolour] [--keep-stores]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import importlib.metadata
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import add_out_argument, machine_info, save_result, stop_process
from benchmarks.dashboard_browser import RECOLOUR_LABEL, VIEWPORT, measure
from benchmarks.dashboard_data import build_store
from dashboard.testing import CHROMIUM, CHROMIUM_ARGS, start_serve


# -- the server ------------------------------------------------------------------------
def start_server(store: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """``swan serve`` over ``store`` on a free port, once ``/api/health`` answers."""
    return start_serve(store, log, timeout=300)


def inprocess_map(store: Path, repeats: int) -> dict[str, Any]:
    """The map callback (store read + figure), its JSON and the JSON gzipped (level
    9, as the server's ``GZipMiddleware``), timed in-process."""
    from plotly.io.json import to_json_plotly

    from dashboard.pages.explore import on_map
    from dashboard.service import SwanService

    service = SwanService(store)
    try:
        on_map(service, None, "cluster")  # warm-up: imports, DuckDB caches
        build, dump, squeeze, size, packed_size = [], [], [], 0, 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            fig, _, meta = on_map(service, None, "cluster")
            t1 = time.perf_counter()
            data = to_json_plotly(fig).encode()
            t2 = time.perf_counter()
            packed = gzip.compress(data, compresslevel=9)
            t3 = time.perf_counter()
            build.append((t1 - t0) * 1e3)
            dump.append((t2 - t1) * 1e3)
            squeeze.append((t3 - t2) * 1e3)
            size, packed_size = len(data), len(packed)
    finally:
        service.close()
    return {
        "callback_ms": statistics.median(build),
        "json_ms": statistics.median(dump),
        "json_bytes": size,
        "gzip_ms": statistics.median(squeeze),
        "gzip_bytes": packed_size,
        "traces": meta["traces"],
        "callback_ms_all": build,
        "json_ms_all": dump,
        "gzip_ms_all": squeeze,
    }


# -- the run ---------------------------------------------------------------------------
#: Per-load numbers summarised by their median (and ratioed across sizes).
METRICS = (
    "render_ms",
    "first_render_server_ms",
    "first_render_requests",
    "html_ms",
    "dom_content_loaded_ms",
    "map_request_ms",
    "map_server_ms",
    "map_download_ms",
    "browser_ms",
    "plotly_ready_ms",
    "map_react_start_ms",
    "map_react_ms",
    "map_settled_ms",
    "map_wire_bytes",
    "map_decoded_bytes",
    "page_wire_bytes",
    "recolour_ms",
    "recolour_server_ms",
    "recolour_download_ms",
    "recolour_browser_ms",
    "recolour_react_ms",
    "recolour_wire_bytes",
    "recolour_decoded_bytes",
)


def _summary(loads: list[dict[str, Any]]) -> dict[str, float]:
    """Median of each of :data:`METRICS` over ``loads`` (where measured)."""
    out = {}
    for key in METRICS:
        values = [r[key] for r in loads if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
    return out


def _page_loads(
    servers: dict[int, str], args: argparse.Namespace
) -> tuple[dict[int, list[dict[str, Any]]], dict[int, list[dict[str, Any]]]]:
    """Every page load, sizes interleaved within each round: ``(timed loads,
    warm-up loads)`` per size (``servers``: size -> URL)."""
    from playwright.sync_api import sync_playwright

    loads: dict[int, list[dict[str, Any]]] = {n: [] for n in servers}
    warmups: dict[int, list[dict[str, Any]]] = {n: [] for n in servers}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            plan = [("warm-up", i) for i in range(args.warmup)]
            plan += [("repeat", i) for i in range(args.repeats)]
            for kind, i in plan:
                for n, url in servers.items():
                    r = measure(browser, url, n, args.recolour)
                    (warmups if kind == "warm-up" else loads)[n].append(r)
                    shown = f"{r.get('recolour_ms', float('nan')):.0f}"
                    print(
                        f"  {kind} {i + 1}: {n:>7,} entries: first render "
                        f"{r['render_ms']:.0f} ms (server "
                        f"{r['map_server_ms']:.0f} ms, browser "
                        f"{r['browser_ms']:.0f} ms), recolour {shown} ms",
                        flush=True,
                    )
        finally:
            browser.close()
    return loads, warmups


def _ratios(per_size: dict[str, dict[str, Any]], small: str, large: str) -> dict:
    """Medians (and in-process timings) of the ``large`` size over the ``small``."""
    a, b = per_size[small]["median"], per_size[large]["median"]
    ratio = {k: b[k] / a[k] for k in METRICS if k in a and k in b and a[k]}
    ia, ib = per_size[small]["inprocess"], per_size[large]["inprocess"]
    for k in ("callback_ms", "json_ms", "json_bytes", "gzip_ms", "gzip_bytes"):
        ratio[f"inprocess_{k}"] = ib[k] / ia[k]
    return ratio


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the stores, serve them, load the pages; save and return the result."""
    if not CHROMIUM.exists():
        raise SystemExit(f"no {CHROMIUM}")
    sizes = sorted(set(args.sizes))
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench_dash_", dir="/tmp"))
    servers: dict[int, tuple[subprocess.Popen, str]] = {}
    stores, inprocess = {}, {}
    try:
        for n in sizes:
            print(f"building a store of {n:,} generated entries ...", flush=True)
            stores[n] = build_store(tmp / f"store_{n}", n, seed=args.seed)
            built = stores[n]["build_s"]
            print(f"  {built} s; timing the map callback in-process", flush=True)
            inprocess[n] = inprocess_map(tmp / f"store_{n}", args.repeats)
        for n in sizes:
            servers[n] = start_server(tmp / f"store_{n}", tmp / f"serve_{n}.log")
        loads, warmups = _page_loads({n: url for n, (_, url) in servers.items()}, args)
    finally:
        for proc, _ in servers.values():
            stop_process(proc)
        if args.keep_stores:
            print(f"stores kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    per_size = {}
    for n in sizes:
        per_size[str(n)] = {
            "store": stores[n],
            "median": _summary(loads[n]),
            "inprocess": inprocess[n],
            "loads": loads[n],
            "warmups": warmups[n],
        }
    small, large = str(sizes[0]), str(sizes[-1])
    ratio = _ratios(per_size, small, large) if len(sizes) > 1 else {}

    import dash
    import plotly

    version = subprocess.run(
        [str(CHROMIUM), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    first = loads[sizes[0]][0]
    result = {
        "benchmark": "dashboard time to first render of the archive map "
        "(swan serve + headless Chromium)",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "data": "generated entries (clustered codes in the shipped encoder's shape, "
        "random tokens, realistic-looking metadata, Gaussian-blob layout)",
        "parameters": {
            "sizes": sizes,
            "repeats": args.repeats,
            "warmup_loads": args.warmup,
            "seed": args.seed,
            "recolour": f"color-by -> {RECOLOUR_LABEL}" if args.recolour else None,
            "color_by_at_load": "cluster",
            "viewport": VIEWPORT,
            "browser": f"{version} headless, {' '.join(CHROMIUM_ARGS)}",
            "webgl_renderer": first["webgl_renderer"],
            "cache": "fresh browser context per load (cold cache)",
            "clock": "ms from navigation start (performance.now() in the page)",
            "server": "swan serve (uvicorn, GZipMiddleware), one process per size",
        },
        "results": per_size,
        "ratio_largest_to_smallest": {"of": f"{large} / {small}", **ratio},
        "machine": machine_info(
            loadavg_1_5_15_before=load_before,
            loadavg_1_5_15_after=os.getloadavg(),
            dash=dash.__version__,
            plotly=plotly.__version__,
            playwright=importlib.metadata.version("playwright"),
        ),
        "command": " ".join(sys.argv),
    }
    rows = [f"results.{n}.{part}" for n in per_size for part in ("loads", "warmups")]
    return save_result(result, args.out, _print_table, rows_key=rows)


def _print_table(result: dict[str, Any]) -> None:
    rows = (
        ("first render (ms)", "render_ms", 1),
        ("  server time of the first render (ms)", "first_render_server_ms", 1),
        ("  its requests: page, layout, callbacks", "first_render_requests", 1),
        ("  page shell: HTML (ms)", "html_ms", 1),
        ("  map request sent at (ms)", "map_request_ms", 1),
        ("  server: map callback (ms)", "map_server_ms", 1),
        ("  download (ms)", "map_download_ms", 1),
        ("  browser: response end to drawn (ms)", "browser_ms", 1),
        ("    plotly.js evaluated at (ms)", "plotly_ready_ms", 1),
        ("    Plotly.react of the map at (ms)", "map_react_start_ms", 1),
        ("    Plotly.react of the map (ms)", "map_react_ms", 1),
        ("map settled: last Plotly.react (ms)", "map_settled_ms", 1),
        ("map response, gzip (kB)", "map_wire_bytes", 1e-3),
        ("map response, JSON (kB)", "map_decoded_bytes", 1e-3),
        ("whole page load (kB)", "page_wire_bytes", 1e-3),
        ("recolour by resolution (ms)", "recolour_ms", 1),
        ("  server (ms)", "recolour_server_ms", 1),
        ("  browser (ms)", "recolour_browser_ms", 1),
        ("    Plotly.react (ms)", "recolour_react_ms", 1),
        ("recolour response, gzip (kB)", "recolour_wire_bytes", 1e-3),
    )
    sizes = list(result["results"])
    ratio = result["ratio_largest_to_smallest"]
    print(f"\nmedians over {result['parameters']['repeats']} loads")
    head = "".join(f"{int(s):>11,}" for s in sizes)
    print(f"{'entries':<38}{head}{'ratio':>9}")
    for label, key, scale in rows:
        values = [result["results"][s]["median"].get(key) for s in sizes]
        if all(v is None for v in values):
            continue
        cells = "".join(
            f"{v * scale:>11,.0f}" if v is not None else f"{'-':>11}" for v in values
        )
        r = ratio.get(key)
        print(f"{label:<38}{cells}{f'x{r:.1f}' if r else '':>9}")
    print("in-process (no HTTP):")
    for label, key, scale in (
        ("  map callback: read + figure (ms)", "callback_ms", 1),
        ("  figure to JSON (ms)", "json_ms", 1),
        ("  JSON (kB)", "json_bytes", 1e-3),
        ("  JSON gzipped, level 9 (ms)", "gzip_ms", 1),
        ("  JSON gzipped (kB)", "gzip_bytes", 1e-3),
    ):
        values = [result["results"][s]["inprocess"][key] for s in sizes]
        cells = "".join(f"{v * scale:>11,.0f}" for v in values)
        r = ratio.get(f"inprocess_{key}")
        print(f"{label:<38}{cells}{f'x{r:.1f}' if r else '':>9}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1_000, 50_000],
        help="store sizes (entries); the smallest is the baseline",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed loads per size")
    parser.add_argument("--warmup", type=int, default=1, help="untimed loads per size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-recolour",
        dest="recolour",
        action="store_false",
        help="skip the recolour (colour by resolution) timing",
    )
    parser.add_argument(
        "--keep-stores", action="store_true", help="leave the stores in /tmp"
    )
    add_out_argument(parser, "bench_dashboard.json")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
