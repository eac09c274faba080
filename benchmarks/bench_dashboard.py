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
JSON goes to ``benchmarks/results/bench_dashboard.json``.

    $ python benchmarks/bench_dashboard.py [--sizes 1000 50000] [--repeats 3] \\
          [--warmup 1] [--no-recolour] [--keep-stores]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import hashlib
import importlib.metadata
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import save_result  # noqa: E402
from dashboard.testing import CHROMIUM, CHROMIUM_ARGS, start_serve  # noqa: E402

#: Resolutions and release dates of real EMDB entries (optional).
EMDB_METADATA = ROOT.parent / "shared/data/real/headers/EMDB_metadata.csv"
VIEWPORT = {"width": 1500, "height": 1100}
CENTRES = 50
NOISE_FRACTION = 0.04
BATCH = 10_000
TIMEOUT_MS = 600_000
RECOLOUR_VALUE = "resolution"
RECOLOUR_LABEL = "resolution (Å)"

METHODS = ("singleParticle", "helical", "subtomogramAveraging", "tomography")
METHOD_WEIGHTS = (0.84, 0.06, 0.06, 0.04)
ORGANISMS = (
    ("Homo sapiens", 0.42),
    ("Saccharomyces cerevisiae", 0.08),
    ("Escherichia coli", 0.08),
    ("Mus musculus", 0.06),
    ("Severe acute respiratory syndrome coronavirus 2", 0.05),
    ("Thermus thermophilus", 0.03),
    ("Sus scrofa", 0.03),
    ("Bos taurus", 0.03),
    ("Oryctolagus cuniculus", 0.03),
    ("Arabidopsis thaliana", 0.02),
    ("Plasmodium falciparum", 0.02),
    ("Mycobacterium tuberculosis", 0.02),
    ("Drosophila melanogaster", 0.02),
    ("Rattus norvegicus", 0.02),
    ("Chlamydomonas reinhardtii", 0.02),
    (None, 0.13),
)
_SUBJECTS = (
    "the human 26S proteasome",
    "the 80S ribosome",
    "the bacterial 70S ribosome",
    "spike glycoprotein",
    "the TRPV1 ion channel",
    "GABA(A) receptor",
    "a class B GPCR",
    "the spliceosomal C complex",
    "RNA polymerase II",
    "the nuclear pore complex",
    "mitochondrial complex I",
    "ATP synthase",
    "the CRISPR-Cas9 surveillance complex",
    "an ABC transporter",
    "the tau filament",
    "alpha-synuclein fibril",
    "apoferritin",
    "the photosystem II supercomplex",
    "a bacteriophage capsid",
    "the dynein-dynactin complex",
    "the voltage-gated sodium channel Nav1.7",
    "the insulin receptor ectodomain",
    "glutamate dehydrogenase",
    "the type III secretion system needle complex",
)
_STATES = (
    "",
    " in the apo state",
    " bound to ATP",
    " in complex with an inhibitor",
    " in an open conformation",
    " in a closed conformation",
    " bound to a nanobody",
    " in lipid nanodiscs",
    " with its substrate",
    ", focused refinement",
    ", consensus map",
)
_PREFIXES = ("Cryo-EM structure of ", "Structure of ", "", "Cryo-EM map of ")

#: In the page: entries drawn in the map (``-1`` before the graph exists).
POINTS_JS = """() => {
  const gd = document.querySelector('#umap-graph .js-plotly-plot');
  if (!gd || !gd._fullData) return -1;
  const overlays = ['search hits', 'selected entry'];
  return gd._fullData.filter(t => !overlays.includes(t.name))
                     .reduce((n, t) => n + (t._length || 0), 0);
}"""
#: In the page: ``performance.now()`` once the map holds ``n`` entries (and, for a
#: recolour, a trace named ``label``), else ``false``.
DRAWN_JS = f"""([n, label]) => {{
  const count = ({POINTS_JS})();
  if (count !== n) return false;
  if (label) {{
    const gd = document.querySelector('#umap-graph .js-plotly-plot');
    if (!gd._fullData.some(t => t.name === label)) return false;
  }}
  return performance.now();
}}"""
#: In the page: navigation and resource timings, WebGL state.
TIMINGS_JS = """() => {
  const pick = e => ({name: e.name, start: e.startTime,
    request: e.requestStart, response_start: e.responseStart,
    response_end: e.responseEnd, transfer: e.transferSize,
    encoded: e.encodedBodySize, decoded: e.decodedBodySize});
  const nav = performance.getEntriesByType('navigation')[0];
  const gd = document.querySelector('#umap-graph .js-plotly-plot');
  const probe = document.createElement('canvas');
  const gl = probe.getContext('webgl');
  const dbg = gl && gl.getExtension('WEBGL_debug_renderer_info');
  return {
    time_origin: performance.timeOrigin,
    navigation: nav ? {response_end: nav.responseEnd,
      dom_content_loaded: nav.domContentLoadedEventEnd,
      load: nav.loadEventEnd, transfer: nav.transferSize} : null,
    resources: performance.getEntriesByType('resource').map(pick),
    webgl: !!gl,
    webgl_renderer: dbg ? gl.getParameter(dbg.UNMASKED_RENDERER_WEBGL) : null,
    gl_canvas: !!(gd && gd.querySelector('canvas.gl-canvas-context')),
    traces: gd && gd._fullData ? gd._fullData.length : null,
    plotly: window.__bench || null,
  };
}"""
#: In the page: every ``Plotly.react`` of the map has finished.
SETTLED_JS = """() => !window.__bench || window.__bench.react
  .filter(c => c.graph === 'umap-graph').every(c => c.end !== undefined)"""
#: Before the page's scripts run: note when plotly.js is evaluated (``window.Plotly``
#: set) and time every ``Plotly.react`` (what ``dcc.Graph`` calls): its graph, start,
#: end (its promise resolved) and the entries then drawn.
INIT_JS = """(() => {
  const log = window.__bench = {plotly_ready: null, react: []};
  const points = gd => {
    if (!gd || !gd._fullData) return -1;
    const overlays = ['search hits', 'selected entry'];
    return gd._fullData.filter(t => !overlays.includes(t.name))
                       .reduce((n, t) => n + (t._length || 0), 0);
  };
  let value;
  Object.defineProperty(window, 'Plotly', {
    configurable: true, enumerable: true,
    get() { return value; },
    set(v) {
      value = v;
      if (log.plotly_ready === null) log.plotly_ready = performance.now();
      if (!v || typeof v.react !== 'function' || v.react.__bench) return;
      const react = v.react;
      const wrapped = function (gd, ...rest) {
        const host = gd && gd.closest ? gd.closest('[id]') : null;
        const call = {graph: host ? host.id : null, start: performance.now()};
        log.react.push(call);
        const out = react.call(this, gd, ...rest);
        Promise.resolve(out).then(() => {
          call.end = performance.now();
          call.points = points(gd);
        });
        return out;
      };
      wrapped.__bench = true;
      v.react = wrapped;
    },
  });
})();"""


# -- the stores ------------------------------------------------------------------------
def _emdb_rows() -> list[tuple[float, dt.date | None]]:
    """(resolution, release date) of the real EMDB entries, when the file exists."""
    if not EMDB_METADATA.exists():
        return []
    rows = []
    with EMDB_METADATA.open(newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                res = float(row["resolution"])
            except (KeyError, ValueError):
                continue
            date = (row.get("map_release_date") or "")[:10]
            rows.append((res, dt.date.fromisoformat(date) if date else None))
    return rows


def _codes(info: Any, centre_of: np.ndarray, rng: np.random.Generator) -> Any:
    """Generated codes in the shape of the encoder's: each entry a noisy copy of
    its cluster centre, the noise shared across scales plus a little of each
    scale's own (as ``_seeded`` in ``tests/test_store.py``); random tokens."""
    from encoder.code import MultiScaleCode

    n = len(centre_of)
    shared = rng.normal(size=(n, 32))
    vectors, tokens = [], []
    for side, depth, dim, k in zip(
        info.scales, info.depths, info.dims, info.codebook_sizes, strict=True
    ):
        mix = np.random.default_rng(side).normal(size=(32, dim)) / np.sqrt(32)
        centres = np.random.default_rng(100 + side).normal(size=(CENTRES, dim))
        v = centres[centre_of] + 0.35 * (shared @ mix)
        v += 0.035 * rng.normal(size=(n, dim))
        vectors.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype("f4"))
        size = (n, depth, side, side, side)
        tokens.append(rng.integers(0, k, size, np.int16))
    return MultiScaleCode(info.scales, tuple(tokens), tuple(vectors), info.hash)


def _title(rng: np.random.Generator) -> str:
    return (
        _PREFIXES[rng.integers(len(_PREFIXES))]
        + _SUBJECTS[rng.integers(len(_SUBJECTS))]
        + _STATES[rng.integers(len(_STATES))]
    )


def _records(
    start: int,
    n: int,
    seed: int,
    rng: np.random.Generator,
    emdb: list[tuple[float, dt.date | None]],
) -> list[Any]:
    """Metadata of entries ``start .. start + n - 1`` (generated)."""
    from swan_index.schema import EntryRecord

    methods = rng.choice(len(METHODS), n, p=METHOD_WEIGHTS)
    org_p = np.array([w for _, w in ORGANISMS])
    organisms = rng.choice(len(ORGANISMS), n, p=org_p / org_p.sum())
    rgs = np.exp(rng.normal(np.log(45), 0.45, n))
    if emdb:
        drawn = [emdb[i] for i in rng.integers(0, len(emdb), n)]
    else:  # no real metadata: log-normal resolutions, dates 2002..2024
        res = np.exp(rng.normal(np.log(3.6), 0.35, n))
        days = rng.integers(0, 23 * 365, n)
        base = dt.date(2002, 1, 1)
        drawn = [
            (float(r), base + dt.timedelta(days=int(d)))
            for r, d in zip(res, days, strict=True)
        ]
    records = []
    for j in range(n):
        i = start + j
        method = METHODS[methods[j]]
        res, date = drawn[j]
        if method == "tomography":  # tomograms seldom state a resolution
            res = None if rng.random() < 0.7 else round(res * 3, 1)
        records.append(
            EntryRecord(
                sha256=hashlib.sha256(
                    f"bench-dashboard-{seed}-{i}".encode()
                ).hexdigest(),
                emdb_id=f"EMD-{1000 + i}",
                title=_title(rng),
                method=method,
                resolution=res,
                organism=ORGANISMS[organisms[j]][0],
                release_date=date,
                rg=round(float(rgs[j]), 2),
                label="generated",
            )
        )
    return records


def _layout(
    centre_of: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A 2D layout with visible clusters: a Gaussian blob per cluster centre (of
    its own width), and :data:`NOISE_FRACTION` of the entries as noise (cluster
    -1, wider blobs), as UMAP + a density clustering give."""
    layout_rng = np.random.default_rng(7)
    centres = layout_rng.uniform(-12, 12, (CENTRES, 2))
    widths = layout_rng.uniform(0.25, 0.9, CENTRES)
    n = len(centre_of)
    xy = centres[centre_of] + widths[centre_of, None] * rng.normal(size=(n, 2))
    noise = rng.random(n) < NOISE_FRACTION
    xy[noise] = centres[centre_of[noise]] + 2.5 * rng.normal(size=(noise.sum(), 2))
    cluster = np.where(noise, -1, centre_of).astype(np.int64)
    return xy, cluster


def build_store(path: Path, n: int, seed: int = 0) -> dict[str, Any]:
    """A store of ``n`` generated entries, with a layout, at ``path``."""
    from swan_index.map_encoder import MapEncoder
    from swan_index.store import Store

    t0 = time.perf_counter()
    info = MapEncoder().info
    rng = np.random.default_rng(seed)
    emdb = _emdb_rows()
    # uneven cluster sizes (a few big families, many small ones)
    weights = 1.0 / np.arange(1, CENTRES + 1) ** 0.8
    centre_of = rng.choice(CENTRES, n, p=weights / weights.sum())
    ids = []
    with Store.open(path, encoder=info) as store:
        for start in range(0, n, BATCH):
            part = centre_of[start : start + BATCH]
            code = _codes(info, part, rng)
            ids.append(store.add(code, _records(start, len(part), seed, rng, emdb)))
        xy, cluster = _layout(centre_of, rng)
        store.set_layout(np.concatenate(ids), xy, cluster)
        count = store.count()
    return {
        "entries": count,
        "clusters": CENTRES,
        "noise_fraction": NOISE_FRACTION,
        "metadata_source": str(EMDB_METADATA) if emdb else "generated",
        "build_s": round(time.perf_counter() - t0, 2),
    }


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


# -- the browser -----------------------------------------------------------------------
def _output_of(request: Any) -> str:
    try:
        return str((request.post_data_json or {}).get("output", ""))
    except (ValueError, TypeError):
        return ""


def _callbacks(
    state: dict[str, Any], seen: list[dict[str, Any]]
) -> list[dict[str, Any]] | None:
    """``/_dash-update-component`` calls, in the order they were sent: Resource
    Timing entries (page clock) matched to the responses Playwright saw (output,
    bytes) by decoded size and start time; ``None`` while the two disagree on how
    many there are (Playwright's events may lag)."""
    timed = [r for r in state["resources"] if "_dash-update-component" in r["name"]]
    timed.sort(key=lambda r: r["start"])
    if len(timed) != len(seen):
        return None
    left = list(seen)
    calls = []
    for r in timed:
        same = [
            s for s in left if not r["decoded"] or s["decoded_bytes"] == r["decoded"]
        ]
        if not same:
            raise RuntimeError(f"no response of {r['decoded']} bytes among {left}")
        s = min(
            same, key=lambda s: abs(s["epoch_ms"] - state["time_origin"] - r["start"])
        )
        left.remove(s)
        calls.append(
            {
                "output": s["output"],
                "status": s["status"],
                "start_ms": r["start"],
                "request_ms": r["request"],
                "response_start_ms": r["response_start"],
                "response_end_ms": r["response_end"],
                "server_ms": r["response_start"] - r["request"],
                "download_ms": r["response_end"] - r["response_start"],
                "wire_bytes": s["wire_bytes"],
                "decoded_bytes": s["decoded_bytes"],
                "content_encoding": s["content_encoding"],
            }
        )
    return calls


def _react(
    state: dict[str, Any], n: int, after: float = 0.0
) -> dict[str, float | None]:
    """The first finished ``Plotly.react`` of the map, started after ``after`` ms,
    that drew all ``n`` entries: ``{start, end}`` (``None`` when the page's
    ``Plotly`` could not be instrumented)."""
    log = state.get("plotly") or {}
    for call in log.get("react") or []:
        if (
            call.get("graph") == "umap-graph"
            and call["start"] >= after
            and call.get("end") is not None
            and call.get("points") == n
        ):
            return {"start": call["start"], "end": call["end"]}
    return {"start": None, "end": None}


def _map_reacts(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Every ``Plotly.react`` of the map so far (start, end, entries drawn)."""
    log = state.get("plotly") or {}
    return [c for c in log.get("react") or [] if c.get("graph") == "umap-graph"]


def _settled(state: dict[str, Any]) -> float | None:
    """When the last ``Plotly.react`` of the map ended (the map stops changing)."""
    ends = [c["end"] for c in _map_reacts(state) if c.get("end") is not None]
    return max(ends) if ends else None


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _map_call(calls: list[dict[str, Any]], after: float = 0.0) -> dict[str, Any]:
    """The map's callback (output ``umap-graph.figure``, not the overlay patch)
    sent after ``after`` ms."""
    for c in calls:
        if c["start_ms"] >= after and "..umap-graph.figure..." in c["output"]:
            return c
    raise RuntimeError(f"no map callback in {[c['output'] for c in calls]}")


def _seen(requests: list[Any]) -> tuple[list[dict[str, Any]], int]:
    """(the ``/_dash-update-component`` responses among ``requests``, and the
    bytes of all responses: headers and bodies as sent, gzip included)."""
    calls, wire = [], 0
    for request in requests:
        sizes = request.sizes()
        wire += sizes["responseBodySize"] + sizes["responseHeadersSize"]
        if "_dash-update-component" not in request.url:
            continue
        response = request.response()
        calls.append(
            {
                "epoch_ms": request.timing["startTime"],
                "output": _output_of(request),
                "status": response.status,
                "wire_bytes": sizes["responseBodySize"],
                "decoded_bytes": len(response.body()),
                "content_encoding": response.headers.get("content-encoding"),
            }
        )
    return calls, wire


def _collect(
    page: Any, requests: list[Any]
) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """(page timings, callbacks, bytes of all responses) once Playwright has seen
    every callback the page has timed (its events may lag a little)."""
    deadline = time.monotonic() + 30
    while True:
        state = page.evaluate(TIMINGS_JS)
        seen, wire = _seen(requests)
        calls = _callbacks(state, seen)
        if calls is not None:
            return state, calls, wire
        if time.monotonic() > deadline:
            raise RuntimeError(f"callbacks timed {state['resources']}, seen {seen}")
        page.wait_for_timeout(100)


def measure(browser: Any, url: str, n: int, recolour: bool) -> dict[str, Any]:
    """One page load in a fresh context: first render (and recolour) timings."""
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(INIT_JS)
    page = context.new_page()
    requests: list[Any] = []
    errors: list[str] = []
    page.on("requestfinished", lambda request: requests.append(request))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(url, wait_until="commit", timeout=TIMEOUT_MS)
        drawn = page.wait_for_function(
            DRAWN_JS, arg=[n, None], polling="raf", timeout=TIMEOUT_MS
        ).json_value()
        page.wait_for_load_state("networkidle", timeout=TIMEOUT_MS)
        state, calls, wire = _collect(page, requests)
        m = _map_call(calls)
        react = _react(state, n)
        result: dict[str, Any] = {
            "render_ms": drawn,
            "html_ms": state["navigation"]["response_end"],
            "dom_content_loaded_ms": state["navigation"]["dom_content_loaded"],
            "map_request_ms": m["request_ms"],
            "map_server_ms": m["server_ms"],
            "map_download_ms": m["download_ms"],
            "map_response_end_ms": m["response_end_ms"],
            "browser_ms": drawn - m["response_end_ms"],
            "plotly_ready_ms": (state.get("plotly") or {}).get("plotly_ready"),
            "map_react_start_ms": react["start"],
            "map_react_ms": _minus(react["end"], react["start"]),
            "map_settled_ms": _settled(state),
            "map_wire_bytes": m["wire_bytes"],
            "map_decoded_bytes": m["decoded_bytes"],
            "map_content_encoding": m["content_encoding"],
            "page_wire_bytes": wire,
            "requests": len(requests),
            "traces": state["traces"],
            "webgl": state["webgl"],
            "webgl_renderer": state["webgl_renderer"],
            "gl_canvas": state["gl_canvas"],
            "callbacks": calls,
            "map_react_calls": _map_reacts(state),
        }
        if recolour:
            result.update(_recolour(page, n, requests))
        result["page_errors"] = errors
        return result
    finally:
        context.close()


def _recolour(page: Any, n: int, requests: list[Any]) -> dict[str, Any]:
    """Colour by resolution with the dropdown; time from the click on the option
    until every entry is drawn again, recoloured (once the map has settled)."""
    page.wait_for_function(SETTLED_JS, timeout=TIMEOUT_MS)
    page.click("#color-by")
    option = page.locator(f'[role=option]:has(input[value="{RECOLOUR_VALUE}"])')
    option.wait_for(state="visible", timeout=30_000)
    t0 = page.evaluate("performance.now()")
    option.click()
    drawn = page.wait_for_function(
        DRAWN_JS, arg=[n, RECOLOUR_LABEL], polling="raf", timeout=TIMEOUT_MS
    ).json_value()
    page.wait_for_load_state("networkidle", timeout=TIMEOUT_MS)
    state, calls, _ = _collect(page, requests)
    m = _map_call(calls, after=t0)
    react = _react(state, n, after=t0)
    return {
        "recolour_ms": drawn - t0,
        "recolour_server_ms": m["server_ms"],
        "recolour_download_ms": m["download_ms"],
        "recolour_browser_ms": drawn - m["response_end_ms"],
        "recolour_react_ms": _minus(react["end"], react["start"]),
        "recolour_wire_bytes": m["wire_bytes"],
        "recolour_decoded_bytes": m["decoded_bytes"],
        "recolour_traces": state["traces"],
        "recolour_callbacks": [c for c in calls if c["start_ms"] >= t0],
    }


# -- the run ---------------------------------------------------------------------------
#: Per-load numbers summarised by their median (and ratioed across sizes).
METRICS = (
    "render_ms",
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
    out = {}
    for key in METRICS:
        values = [r[key] for r in loads if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise SystemExit(f"no {CHROMIUM}")
    sizes = sorted(set(args.sizes))
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench_dash_", dir="/tmp"))
    servers: dict[int, tuple[subprocess.Popen, str]] = {}
    stores, inprocess = {}, {}
    loads: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    warmups: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    try:
        for n in sizes:
            print(f"building a store of {n:,} generated entries ...", flush=True)
            stores[n] = build_store(tmp / f"store_{n}", n, seed=args.seed)
            built = stores[n]["build_s"]
            print(f"  {built} s; timing the map callback in-process", flush=True)
            inprocess[n] = inprocess_map(tmp / f"store_{n}", args.repeats)
        for n in sizes:
            servers[n] = start_server(tmp / f"store_{n}", tmp / f"serve_{n}.log")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            try:
                plan = [("warm-up", i) for i in range(args.warmup)]
                plan += [("repeat", i) for i in range(args.repeats)]
                for kind, i in plan:
                    for n in sizes:
                        r = measure(browser, servers[n][1], n, args.recolour)
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
    finally:
        for proc, _ in servers.values():
            proc.terminate()
        for proc, _ in servers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
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
    ratio = {}
    if len(sizes) > 1:
        a, b = per_size[small]["median"], per_size[large]["median"]
        ratio = {k: b[k] / a[k] for k in METRICS if k in a and k in b and a[k]}
        ia, ib = per_size[small]["inprocess"], per_size[large]["inprocess"]
        for k in ("callback_ms", "json_ms", "json_bytes", "gzip_ms", "gzip_bytes"):
            ratio[f"inprocess_{k}"] = ib[k] / ia[k]

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
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_1_5_15_before": load_before,
            "loadavg_1_5_15_after": os.getloadavg(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "dash": dash.__version__,
            "plotly": plotly.__version__,
            "playwright": importlib.metadata.version("playwright"),
        },
        "command": " ".join(sys.argv),
    }
    return save_result(result, args.out, _print_table)


def _print_table(result: dict[str, Any]) -> None:
    rows = (
        ("first render (ms)", "render_ms", 1),
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
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "bench_dashboard.json",
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
