"""The dashboard benchmark's browser side: page loads timed in headless Chromium.

The JavaScript snippets run in the page (Plotly's ``gd._fullData`` is read there);
:func:`measure` loads the page once in a fresh context and returns its timings;
see :mod:`benchmarks.bench_dashboard` for what each number means.
"""

from __future__ import annotations

import time
from typing import Any

VIEWPORT = {"width": 1500, "height": 1100}
TIMEOUT_MS = 600_000
RECOLOUR_VALUE = "resolution"
RECOLOUR_LABEL = "resolution (Å)"

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
    navigation: nav ? {request: nav.requestStart,
      response_start: nav.responseStart, response_end: nav.responseEnd,
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


#: The page's own requests answered by the dashboard's code (besides the page's
#: HTML): its layout, its callbacks' list, and the callbacks.
SERVER_ROUTES = ("_dash-layout", "_dash-dependencies", "_dash-update-component")


def server_requests(state: dict[str, Any], until: float) -> list[dict[str, Any]]:
    """The requests of the first render that the server computes: the page's HTML
    and every request to :data:`SERVER_ROUTES` sent before ``until`` (page
    clock, ms), each as ``{"route", "start_ms", "server_ms"}`` (request sent to
    first byte of the answer)."""
    nav = state["navigation"]
    out = [
        {
            "route": "page",
            "start_ms": 0.0,
            "server_ms": nav["response_start"] - nav["request"],
        }
    ]
    for r in sorted(state["resources"], key=lambda r: r["start"]):
        route = next((x for x in SERVER_ROUTES if x in r["name"]), None)
        if route and r["start"] < until:
            out.append(
                {
                    "route": route,
                    "start_ms": r["start"],
                    "server_ms": r["response_start"] - r["request"],
                }
            )
    return out


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
        first = server_requests(state, drawn)
        result: dict[str, Any] = {
            "render_ms": drawn,
            "first_render_server_ms": sum(r["server_ms"] for r in first),
            "first_render_requests": len(first),
            "first_render_server": first,
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
