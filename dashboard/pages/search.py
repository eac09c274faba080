"""Search with an uploaded map: the query beside its hits.

Component ids: ``upload-map``, ``upload-progress`` and ``upload-cancel`` (the
file being searched, and a button to cancel it), ``upload-message``,
``hits-heading`` (whose hits these are), ``hits-csv`` / ``hits-json`` (export
the hits; ``hits-download``), ``hits-table``, ``query-panel`` with
``query-graph`` (the query's isosurface) and ``query-map`` (the query placed on
the archive map among its hits), ``pair-panel`` with ``pair-message``,
``pair-graph`` (the picked hit superposed on the query), ``pair-query-level``
and ``pair-hit-level`` (their contours, map units) and ``pair-download`` (the
superposed pair as a zip for ChimeraX; ``pair-file``). State:
``upload-token`` (the search under way), ``query-store`` (the query searched),
``pair-store`` (the pair shown).

**The flow.** Dropping a file shows its name at once ("Searching
emd_6824.mrc…", a browser-side callback that also draws a fresh token for the
search) with a Cancel button; the search runs when the token changes. A search
uses the filter in effect when the map is uploaded (and the "hits per search"
setting). A bad upload gives the service's one-line message
(:class:`~dashboard.service.UploadError`), never a traceback, and clears the
hits of the previous search, so no list is shown under a name it does not
belong to (``hits-heading`` names the query of the hits shown).

**Cancelling** marks the token cancelled on the server. The search stops at its
next stage (after reading and encoding the map, after the rotational fit,
after ranking: :meth:`~dashboard.service.SwanService.search_upload_query`) and
its result is dropped; the hits shown before stay. A stage under way runs to
its end (the encoder and the fit cannot be stopped midway), and a file still
being sent by the browser is sent to the end first.

**Picking a hit** (a cell of its row) superposes it on the query
(:mod:`dashboard.pairs`, :mod:`swan_index.superpose`): both maps in Å, the
query half transparent over the hit, each with its own contour slider; the
download button gives the query resampled into the hit's frame (MRC), the
hit's map and a ChimeraX command file at the levels chosen.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from dashboard.export import rows_csv, rows_json, table_export_rows
from dashboard.figures3d import isosurface_figure, pair_figure
from dashboard.figures_query import query_map_figure
from dashboard.pages.common import (
    CARD,
    LABEL,
    SECTION_TITLE,
    data_table,
    filter_error,
    graph_config,
    hit_details,
    hits_columns,
    hits_k,
    message,
)
from dashboard.pairs import Pairs
from dashboard.service import SearchCancelled, SwanService, UploadError
from dashboard.tables import hits_table_rows
from swan_index.prepare import PREVIEW_GRID, shrink
from swan_index.superpose import HIT_COLOR, QUERY_COLOR

log = logging.getLogger(__name__)

HIDDEN = {"display": "none"}
_BUTTON = {"fontSize": "12px", "padding": "2px 10px", "marginRight": "6px"}
_SLIDER_LABEL = {**LABEL, "paddingLeft": "6px"}
_PANEL = {"marginTop": "10px", "borderTop": "1px solid #eee", "paddingTop": "8px"}
#: Slider steps across a contour's range.
LEVEL_STEPS = 200


def decode_upload(contents: str) -> bytes:
    """The file bytes of a ``dcc.Upload`` ``contents`` value
    (``data:<type>;base64,<data>``).

    Raises:
        UploadError: not a base64 data URL.
    """
    head, sep, data = str(contents).partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise UploadError("the upload did not arrive as a file; choose the file again")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise UploadError("the upload arrived damaged; choose the file again") from None


def _query_text(query: dict[str, Any]) -> str:
    grid = "×".join(str(n) for n in query.get("grid", []))
    return (
        f"{query.get('name')}: grid {grid}, {query.get('voxel_size', 0):.3g} Å/voxel, "
        f"contour {query.get('contour', 0):.3g} ({query.get('contour_source')}), "
        f"Rg {query.get('rg', 0):.1f} Å"
    )


class SearchTokens:
    """Tokens of the searches cancelled by their clients (the last
    :data:`KEPT` of them; thread-safe)."""

    KEPT = 256

    def __init__(self) -> None:
        self._cancelled: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def cancel(self, token: str) -> None:
        with self._lock:
            self._cancelled[token] = None
            while len(self._cancelled) > self.KEPT:
                self._cancelled.popitem(last=False)

    def is_cancelled(self, token: str | None) -> bool:
        with self._lock:
            return token is not None and token in self._cancelled


#: What :func:`on_upload` answers, in the order of the callback's outputs.
UPLOAD_OUTPUTS = (
    "hits",  # hits-store.data
    "rows",  # hits-table.data
    "message",  # upload-message.children
    "heading",  # hits-heading.children
    "query",  # query-store.data
    "query_figure",  # query-graph.figure
    "map_figure",  # query-map.figure
    "query_panel",  # query-panel.style
    "pair_panel",  # pair-panel.style
)


def _cleared(text: str) -> dict[str, Any]:
    """The outputs of a failed search: the previous hits and query cleared."""
    return {
        "hits": [],
        "rows": [],
        "message": message(f"{text}; the hits shown before were cleared", error=True),
        "heading": "",
        "query": None,
        "query_figure": no_update,
        "map_figure": no_update,
        "query_panel": HIDDEN,
        "pair_panel": HIDDEN,
    }


def on_upload(
    service: SwanService,
    contents: str | None,
    filename: str | None,
    where: str | None = None,
    k: Any = 10,
    pairs: Pairs | None = None,
    token: str | None = None,
    tokens: SearchTokens | None = None,
) -> dict[str, Any]:
    """A map was uploaded: the outputs named in :data:`UPLOAD_OUTPUTS`.

    Args:
        service: the store's service.
        contents, filename: the ``dcc.Upload``'s.
        where, k: the filter and the hits per search.
        pairs: where the upload is kept for superpositions (none: not kept).
        token, tokens: this search's token and the cancelled ones.

    Returns:
        On success the hits, their rows, the query (its isosurface and its place
        on the archive map); on an error the hits cleared and the message saying
        what went wrong; when cancelled (or when ``contents`` is empty) nothing
        changes but the message.
    """
    keep = {key: no_update for key in UPLOAD_OUTPUTS}
    if not contents:  # the upload was cleared after a search: nothing to do
        return keep
    name = filename or "upload"
    try:
        data = decode_upload(contents)
        query, hits = service.search_upload_query(
            data,
            name=name,
            k=hits_k(k),
            where=where,
            cancelled=lambda: tokens is not None and tokens.is_cancelled(token),
        )
        if tokens is not None and tokens.is_cancelled(token):
            raise SearchCancelled(name)
    except SearchCancelled:
        text = f"{name}: search cancelled; the hits shown are those of before"
        return {**keep, "message": message(text)}
    except UploadError as exc:  # its message names the file and the fix
        return _cleared(str(exc))
    except ValueError as exc:  # a bad filter or k
        return _cleared(f"{name}: {filter_error(exc)}")
    except Exception:  # noqa: BLE001 - never show a traceback to the browser
        log.exception("search with upload %r failed", name)
        return _cleared(f"{name}: the search failed on the server (see its log)")
    described = query.describe()
    text = f"{_query_text(described)}. {len(hits)} hits"
    if where:
        text += f" (filter: {where})"
    ids = [h["id"] for h in hits]
    rows = hits_table_rows(hits, hit_details(service, ids))
    key = None if pairs is None else pairs.keep_upload(data, name, described["contour"])
    stored = {**described, "key": key}
    return {
        "hits": ids,
        "rows": rows,
        "message": message(text),
        "heading": f"Hits for {described['name']} (the query drawn below)",
        "query": stored,
        "query_figure": query_figure(query),
        "map_figure": placement_figure(service, query, ids),
        "query_panel": _PANEL,
        "pair_panel": HIDDEN,
    }


def query_figure(query: Any) -> Any:
    """The query's isosurface, drawn as entries' previews are (its canonical
    volume in the primary pose, box-averaged to the preview grid)."""
    volume = None
    if query.volumes is not None:
        vols = query.volumes
        volume = shrink(vols[0] if vols.ndim == 4 else vols, PREVIEW_GRID)
    return isosurface_figure(volume, title=f"query: {query.name}", color=QUERY_COLOR)


def placement_figure(service: SwanService, query: Any, hits: list[int]) -> Any:
    """The archive map with the hits numbered and the query placed among them."""
    try:
        placement = service.placement(query)
    except Exception:  # noqa: BLE001 - the hits stand without it
        log.exception("placing %r on the archive map failed", query.name)
        placement = None
    table = service.table(("id", "x", "y"))
    return query_map_figure(
        table,
        hits,
        None if placement is None else placement.to_dict(),
        query.name or "query",
    )


# -- the superposition ----------------------------------------------------------
def level_slider(slider_id: str) -> dcc.Slider:
    """A contour slider (map units), set when a pair is shown."""
    return dcc.Slider(
        id=slider_id,
        min=0,
        max=1,
        value=0.5,
        marks=None,
        tooltip={"placement": "bottom", "always_visible": False},
        updatemode="mouseup",
    )


def _slider(low: float, high: float, value: float) -> tuple[float, float, float, dict]:
    """``(min, max, step, marks)`` of a contour slider over ``[low, high]``."""
    step = (high - low) / LEVEL_STEPS if high > low else 1.0
    digits = max(0, 2 - int(np.floor(np.log10(max(high - low, 1e-12)))))
    scale = 10.0**digits  # the ends to about 3 figures, the range kept whole
    low, high = np.floor(low * scale) / scale, np.ceil(high * scale) / scale
    marks = {float(low): f"{low:g}", float(high): f"{high:g}"}
    return float(low), float(high), float(step), marks


#: What :func:`on_pick_hit` answers, in the order of the callback's outputs.
PAIR_OUTPUTS = (
    "store",  # pair-store.data
    "message",  # pair-message.children
    "figure",  # pair-graph.figure
    "panel",  # pair-panel.style
    "query_slider",  # (min, max, step, marks, value) of pair-query-level
    "hit_slider",  # (min, max, step, marks, value) of pair-hit-level
)


def on_pick_hit(
    pairs: Pairs,
    active_cell: dict[str, Any] | None,
    query: dict[str, Any] | None,
    rows: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A cell of the hits table was picked: the hit superposed on the query.

    Returns:
        The outputs named in :data:`PAIR_OUTPUTS`; an error (no query kept, a
        hit without a map file) is a message in the panel.
    """
    keep = {key: no_update for key in PAIR_OUTPUTS}
    hit = (active_cell or {}).get("row_id")
    if hit is None or not query or not query.get("key"):
        return keep
    label = next(
        (r.get("emdb_id") or r.get("name") for r in rows or [] if r.get("id") == hit),
        f"entry {hit}",
    )
    try:
        pair = pairs.for_upload_key(query["key"], int(hit))
    except (UploadError, KeyError) as exc:
        text = str(exc.args[0]) if exc.args else str(exc)
        return {
            **keep,
            "store": None,
            "message": message(f"{label} cannot be superposed: {text}", error=True),
            "figure": pair_figure_empty(),
            "panel": _PANEL,
        }
    except Exception:  # noqa: BLE001 - never show a traceback to the browser
        log.exception("superposing entry %s on %r failed", hit, query.get("name"))
        text = f"{label}: the superposition failed on the server (see its log)"
        return {**keep, "message": message(text, error=True), "panel": _PANEL}
    vols = pair.volumes
    info = pair.describe()
    text = (
        f"{info['query']} (blue) under hit {info['hit']} (orange, transparent), "
        f"in Å: rigid fit, correlation {info['correlation']:.3f} (canonical frames "
        f"alone {info['canonical_correlation']:.3f})"
    )
    return {
        "store": {"key": query["key"], "hit": int(hit)},
        "message": message(text),
        "figure": draw_pair(pair, vols.query_level, vols.hit_level),
        "panel": _PANEL,
        "query_slider": (
            *_slider(*vols.query_range, vols.query_level),
            vols.query_level,
        ),
        "hit_slider": (*_slider(*vols.hit_range, vols.hit_level), vols.hit_level),
    }


def pair_figure_empty() -> Any:
    """The superposition view with nothing to draw."""
    import plotly.graph_objects as go

    return go.Figure()


def draw_pair(pair: Any, query_level: float, hit_level: float) -> Any:
    """The superposition figure of a pair at these levels."""
    vols = pair.volumes
    return pair_figure(
        vols.query,
        vols.hit,
        vols.spacing,
        query_level,
        hit_level,
        f"query {pair.query.name}",
        f"hit {pair.hit.name}",
        QUERY_COLOR,
        HIT_COLOR,
    )


def on_levels(
    pairs: Pairs, store: dict[str, Any] | None, query_level: Any, hit_level: Any
) -> Any:
    """A contour slider moved: the pair redrawn (no new pose search)."""
    if not store or query_level is None or hit_level is None:
        return no_update
    try:
        pair = pairs.for_upload_key(store["key"], int(store["hit"]))
    except (UploadError, KeyError):
        return no_update
    return draw_pair(pair, float(query_level), float(hit_level))


def on_download_pair(
    pairs: Pairs, store: dict[str, Any] | None, query_level: Any, hit_level: Any
) -> Any:
    """The pair as a zip (``dcc.Download`` data) at the levels shown."""
    if not store:
        return no_update
    pair = pairs.for_upload_key(store["key"], int(store["hit"]))
    name, blob = pair.archive(query_level, hit_level)
    return dcc.send_bytes(blob, name)


def on_export(
    kind: str | None,
    rows: list[dict[str, Any]] | None,
    query: dict[str, Any] | None,
    columns: list[str],
) -> Any:
    """The hits shown as a CSV or JSON file (``dcc.Download`` data)."""
    if kind not in ("csv", "json") or not rows:
        return no_update
    export = table_export_rows(rows, columns)
    stem = str((query or {}).get("name") or "query").split(".")[0] or "query"
    if kind == "csv":
        return dcc.send_string(rows_csv(export), f"{stem}-hits.csv")
    described = {k: v for k, v in (query or {}).items() if k != "key"}
    return dcc.send_string(rows_json(export, described), f"{stem}-hits.json")


# -- layout and callbacks -------------------------------------------------------
def layout(service: SwanService) -> html.Div:
    """The upload area, the hits table, the query and the superposition."""
    graph_style = {"height": "300px"}
    return html.Div(
        [
            html.H3("Search with a map", style=SECTION_TITLE),
            dcc.Upload(
                id="upload-map",
                children=html.Div(
                    [
                        "Drop a .map / .mrc / .ccp4 file (gz, bz2 ok) or ",
                        html.A("choose one"),
                    ]
                ),
                multiple=False,
                style={
                    "border": "1px dashed #999",
                    "borderRadius": "6px",
                    "padding": "14px",
                    "textAlign": "center",
                    "cursor": "pointer",
                    "fontSize": "13px",
                },
            ),
            html.Div(
                [
                    html.Span(id="upload-progress", style=LABEL),
                    html.Button("Cancel", id="upload-cancel", n_clicks=0, style=HIDDEN),
                ],
                style={"margin": "6px 0"},
            ),
            dcc.Store(id="upload-token", data=None),
            dcc.Store(id="query-store", data=None),
            dcc.Store(id="pair-store", data=None),
            dcc.Loading(html.Div(id="upload-message"), type="dot"),
            html.Div(
                [
                    html.Span(id="hits-heading", style={**LABEL, "fontWeight": "600"}),
                    html.Button("CSV", id="hits-csv", n_clicks=0, style=_BUTTON),
                    html.Button("JSON", id="hits-json", n_clicks=0, style=_BUTTON),
                    dcc.Download(id="hits-download"),
                ],
                style={"display": "flex", "alignItems": "center", "margin": "4px 0"},
            ),
            data_table(
                "hits-table", hits_columns(service.store.encoder.scales), fixed=2
            ),
            html.Div(
                [
                    html.Div(
                        [
                            dcc.Graph(
                                id="query-graph",
                                style=graph_style,
                                config=graph_config(),
                            ),
                            dcc.Graph(
                                id="query-map",
                                style=graph_style,
                                config=graph_config(scrollZoom=True),
                            ),
                        ],
                        style={
                            "display": "grid",
                            "gridTemplateColumns": "minmax(0, 1fr) minmax(0, 1fr)",
                            "gap": "8px",
                        },
                    ),
                    html.Div(
                        "Left: the query's isosurface. Right: the query (star) "
                        "placed on the archive map by its nearest stored "
                        "entries, with the hits numbered. Pick a hit in the table "
                        "to superpose it on the query.",
                        style=LABEL,
                    ),
                ],
                id="query-panel",
                style=HIDDEN,
            ),
            html.Div(
                [
                    html.H4("Hit superposed on the query", style=SECTION_TITLE),
                    dcc.Loading(html.Div(id="pair-message"), type="dot"),
                    dcc.Graph(
                        id="pair-graph",
                        style={"height": "380px"},
                        config=graph_config(),
                    ),
                    html.Div("query contour (map units)", style=_SLIDER_LABEL),
                    level_slider("pair-query-level"),
                    html.Div("hit contour (map units)", style=_SLIDER_LABEL),
                    level_slider("pair-hit-level"),
                    html.Button(
                        "Download the pair for ChimeraX (zip: MRC + .cxc)",
                        id="pair-download",
                        n_clicks=0,
                        style=_BUTTON,
                    ),
                    dcc.Download(id="pair-file"),
                ],
                id="pair-panel",
                style=HIDDEN,
            ),
        ],
        style=CARD,
    )


#: Browser side: a dropped file's name is shown at once, with a fresh token that
#: starts the search and a Cancel button.
_START_SEARCH = """
function(contents, filename) {
    const nu = window.dash_clientside.no_update;
    if (!contents) { return [nu, nu, nu]; }
    const token = Date.now().toString(36) + Math.random().toString(36).slice(2);
    return [{"token": token, "name": filename || "upload"},
            "Searching " + (filename || "the upload") + "\u2026",
            {"fontSize": "12px", "padding": "1px 8px", "marginLeft": "6px"}];
}
"""


def register(app: Dash, service: SwanService) -> None:
    """The search callbacks, on ``app``."""
    pairs = Pairs(service)
    tokens = SearchTokens()
    columns = [c["id"] for c in hits_columns(service.store.encoder.scales)]

    app.clientside_callback(
        _START_SEARCH,
        Output("upload-token", "data"),
        Output("upload-progress", "children"),
        Output("upload-cancel", "style"),
        Input("upload-map", "contents"),
        State("upload-map", "filename"),
        prevent_initial_call=True,
    )

    @app.callback(
        *(
            Output(*target)
            for target in (
                ("hits-store", "data"),
                ("hits-table", "data"),
                ("upload-message", "children"),
                ("hits-heading", "children"),
                ("query-store", "data"),
                ("query-graph", "figure"),
                ("query-map", "figure"),
                ("query-panel", "style"),
                ("pair-panel", "style"),
            )
        ),
        Output("upload-map", "contents"),
        Output("upload-progress", "children", allow_duplicate=True),
        Output("upload-cancel", "style", allow_duplicate=True),
        Input("upload-token", "data"),
        State("upload-map", "contents"),
        State("upload-map", "filename"),
        State("where-store", "data"),
        State("k-input", "value"),
        prevent_initial_call=True,
    )
    def _upload(started, contents, filename, where, k):  # noqa: ANN001, ANN202
        token = (started or {}).get("token")
        out = on_upload(service, contents, filename, where, k, pairs, token, tokens)
        # Clearing ``contents`` frees the browser's copy and lets the same file be
        # dropped again (an unchanged value would not fire the search).
        return (*(out[key] for key in UPLOAD_OUTPUTS), None, "", HIDDEN)

    @app.callback(
        Output("upload-progress", "children", allow_duplicate=True),
        Output("upload-cancel", "style", allow_duplicate=True),
        Input("upload-cancel", "n_clicks"),
        State("upload-token", "data"),
        prevent_initial_call=True,
    )
    def _cancel(n_clicks, started):  # noqa: ANN001, ANN202
        if not n_clicks or not started:
            return no_update, no_update
        tokens.cancel(started["token"])
        return f"Cancelling the search of {started.get('name')}…", HIDDEN

    @app.callback(
        Output("pair-store", "data"),
        Output("pair-message", "children"),
        Output("pair-graph", "figure"),
        Output("pair-panel", "style", allow_duplicate=True),
        *(
            Output(slider, prop)
            for slider in ("pair-query-level", "pair-hit-level")
            for prop in ("min", "max", "step", "marks", "value")
        ),
        Input("hits-table", "active_cell"),
        State("query-store", "data"),
        State("hits-table", "data"),
        prevent_initial_call=True,
    )
    def _pick(active_cell, query, rows):  # noqa: ANN001, ANN202
        out = on_pick_hit(pairs, active_cell, query, rows)
        sliders = []
        for key in ("query_slider", "hit_slider"):
            value = out[key]
            sliders += [no_update] * 5 if value is no_update else list(value)
        return (out["store"], out["message"], out["figure"], out["panel"], *sliders)

    @app.callback(
        Output("pair-graph", "figure", allow_duplicate=True),
        Input("pair-query-level", "value"),
        Input("pair-hit-level", "value"),
        State("pair-store", "data"),
        prevent_initial_call=True,
    )
    def _levels(query_level, hit_level, store):  # noqa: ANN001, ANN202
        return on_levels(pairs, store, query_level, hit_level)

    @app.callback(
        Output("pair-file", "data"),
        Input("pair-download", "n_clicks"),
        State("pair-store", "data"),
        State("pair-query-level", "value"),
        State("pair-hit-level", "value"),
        prevent_initial_call=True,
    )
    def _download(n_clicks, store, query_level, hit_level):  # noqa: ANN001, ANN202
        return on_download_pair(pairs, store, query_level, hit_level)

    @app.callback(
        Output("hits-download", "data"),
        Input("hits-csv", "n_clicks"),
        Input("hits-json", "n_clicks"),
        State("hits-table", "data"),
        State("query-store", "data"),
        prevent_initial_call=True,
    )
    def _export(csv_clicks, json_clicks, rows, query):  # noqa: ANN001, ANN202
        kind = {"hits-csv": "csv", "hits-json": "json"}.get(ctx.triggered_id)
        return on_export(kind, rows, query, columns)
