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
(:mod:`dashboard.pages.pair`): both maps in Å, in two colours (the one
enclosing more see-through), each with its own contour slider; the download
button gives the query resampled into the hit's frame (MRC), the hit's map and
a ChimeraX command file at the levels chosen.

**Denoising** the query with the latent prior (:mod:`dashboard.pages.denoise`,
in the query panel) shows it before and after and downloads the denoised map,
labelled generated.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from collections import OrderedDict
from typing import Any

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from dashboard.export import rows_csv, rows_json, table_export_rows
from dashboard.figures3d import isosurface_figure
from dashboard.figures_query import query_map_figure
from dashboard.generative import PriorUnavailable, prior_service
from dashboard.pages import denoise, pair
from dashboard.pages.common import (
    CARD,
    LABEL,
    SECTION_TITLE,
    filter_error,
    graph_config,
    hit_details,
    hits_columns,
    hits_data_table,
    hits_k,
    message,
)
from dashboard.pages.pair import BUTTON, HIDDEN, PANEL
from dashboard.pairs import Pairs
from dashboard.service import SearchCancelled, SwanService, UploadError
from dashboard.tables import hits_caption, hits_table_rows
from swan_index.prepare import PREVIEW_GRID, shrink
from swan_index.superpose import QUERY_COLOR

log = logging.getLogger(__name__)


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
    complete: bool = False,
) -> dict[str, Any]:
    """A map was uploaded: the outputs named in :data:`UPLOAD_OUTPUTS`.

    Args:
        service: the store's service.
        contents, filename: the ``dcc.Upload``'s.
        where, k: the filter and the hits per search.
        pairs: where the upload is kept for superpositions (none: not kept).
        token, tokens: this search's token and the cancelled ones.
        complete: also search with the map's completion by the latent prior
            (:meth:`dashboard.generative.PriorService.search_upload_query`).

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
        searcher = service
        if complete:
            searcher = prior_service(service)
        query, result = searcher.search_upload_query(
            data,
            name=name,
            k=hits_k(k),
            where=where,
            cancelled=lambda: tokens is not None and tokens.is_cancelled(token),
        )
        if tokens is not None and tokens.is_cancelled(token):
            raise SearchCancelled(name)
        hits = result["hits"]
    except SearchCancelled:
        text = f"{name}: search cancelled; the hits shown are those of before"
        return {**keep, "message": message(text)}
    except (UploadError, PriorUnavailable) as exc:  # it names the file and the fix
        return _cleared(str(exc))
    except ValueError as exc:  # a bad filter or k
        return _cleared(f"{name}: {filter_error(exc)}")
    except Exception:  # noqa: BLE001 - never show a traceback to the browser
        log.exception("search with upload %r failed", name)
        return _cleared(f"{name}: the search failed on the server (see its log)")
    described = query.describe()
    text = f"{_query_text(described)}. {len(hits)} hits"
    if complete:
        strength = result["query"]["completion_strength"]
        text += (
            f", each entry's better of the map and its completion by the prior "
            f"(strength {strength:g})"
        )
    if where:
        text += f" (filter: {where})"
    text += f". {hits_caption(result.get('significance'))}"
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
        "query_panel": PANEL,
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
            dcc.Checklist(
                id="upload-complete",
                options=[
                    {
                        "label": " also search with its completion by the latent "
                        "prior (for maps with parts missing; seconds more)",
                        "value": "complete",
                    }
                ],
                value=[],
                style={"fontSize": "12px", "marginTop": "4px"},
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
                    html.Button("CSV", id="hits-csv", n_clicks=0, style=BUTTON),
                    html.Button("JSON", id="hits-json", n_clicks=0, style=BUTTON),
                    dcc.Download(id="hits-download"),
                ],
                style={"display": "flex", "alignItems": "center", "margin": "4px 0"},
            ),
            hits_data_table("hits-table", service.store.encoder.scales),
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
                    denoise.layout(),
                ],
                id="query-panel",
                style=HIDDEN,
            ),
            pair.layout(),
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
        State("upload-complete", "value"),
        prevent_initial_call=True,
    )
    def _upload(started, contents, filename, where, k, complete):  # noqa: ANN001, ANN202
        token = (started or {}).get("token")
        out = on_upload(
            service,
            contents,
            filename,
            where,
            k,
            pairs,
            token,
            tokens,
            complete="complete" in (complete or []),
        )
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

    pair.register(app, pairs)
    denoise.register(app, service, pairs)

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
