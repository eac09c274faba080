"""The archive map: metadata filters, colour-by, the UMAP scatter, and the table of
entries selected with the box or lasso tool.

Component ids: ``where-input``, ``resolution-slider``, ``keep-unresolved``,
``method-filter``, ``k-input``, ``k-message``, ``filter-message``, ``color-by``,
``umap-graph``, ``selection-table``, ``selection-message``, and four stores:
``resolution-bounds`` (the slider's full range), ``filter-state`` (the inputs of
the filter in effect, for the page's address), ``selection-ids`` (entry ids of
the box/lasso selection, taken from ``selectedData`` in the browser) and
``map-legend`` (the output of :data:`NARROW_LEGEND_JS`, which moves the legend
under a narrow map).

The map is the stored layout (``swan layout``), read with the filter; nothing is
computed on page load. Changing the filter or the colouring rebuilds the figure
(``uirevision`` keeps zoom and pan); search hits and the selected entry are two
overlay traces and the hits' numbered labels, patched in place
(:func:`on_overlay`), so marking them never re-sends the 50,000 points.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from dash import Dash, Input, Output, Patch, State, dcc, html, no_update

from dashboard.figures import (
    COLOR_FIELDS,
    OVERLAY_TRACES,
    hit_annotations,
    map_extent,
    overlay_traces,
    placeholder_figure,
    umap_columns,
    umap_figure,
)
from dashboard.pages.common import (
    CARD,
    K_DEFAULT,
    LABEL,
    SECTION_TITLE,
    data_table,
    graph_config,
    ids_where,
    message,
)
from dashboard.pages.filtering import (
    EXAMPLE_WHERE,
    KEEP_UNRESOLVED,
    entries_text,
    filter_options,
    on_filter,
    on_k,
    resolution_marks,
)
from dashboard.service import SwanService
from dashboard.tables import table_columns, table_rows, with_names

log = logging.getLogger(__name__)

#: Columns of the selection table (name and EMDB link first).
SELECTION_COLUMNS = (
    "name",
    "emdb",
    "method",
    "resolution",
    "organism",
    "release_date",
    "cluster",
    "id",
)
#: Columns read for the selection table (the name needs title, label, file).
_SELECTION_READ = (
    "id",
    "emdb_id",
    "title",
    "label",
    "source_path",
    "simulated",
    "method",
    "resolution",
    "organism",
    "release_date",
    "cluster",
)
#: The selection table lists at most this many entries.
MAX_SELECTION_ROWS = 5_000
#: In the browser: ``selectedData`` -> entry ids (the points' ``customdata``).
#: A selection's points carry every per-point array of the figure (coordinates,
#: hover text...), 10 MB for 50,000 points; only the ids go to the server.
SELECTION_IDS_JS = """
function (selected) {
    if (!selected || !selected.points) { return []; }
    var seen = new Set(), ids = [];
    selected.points.forEach(function (p) {
        var v = Array.isArray(p.customdata) ? p.customdata[0] : p.customdata;
        if (v !== undefined && v !== null && !seen.has(v)) { seen.add(v); ids.push(v); }
    });
    return ids;
}
"""
#: In the browser: on a narrow screen (the map under 560 px wide) the legend goes
#: under the map, in place of the "UMAP 1" axis title, so that it does not take
#: half of the map's width. Set once, it
#: applies after every redraw (a new figure comes with its legend at the right).
NARROW_LEGEND_JS = """
function (figure) {
    var gd = document.querySelector('#umap-graph .js-plotly-plot');
    if (!gd || !gd.on || gd._swanLegend) { return window.dash_clientside.no_update; }
    gd._swanLegend = true;
    var fit = function () {
        var narrow = gd.clientWidth < 560, legend = gd.layout.legend || {};
        if (narrow && legend.orientation !== 'h') {
            window.Plotly.relayout(gd, {'legend.orientation': 'h', 'legend.x': 0,
                'legend.xanchor': 'left', 'legend.y': -0.02, 'legend.yanchor': 'top',
                'xaxis.title.text': ''});
        }
    };
    gd.on('plotly_afterplot', fit);
    fit();
    return window.dash_clientside.no_update;
}
"""


# -- the map ---------------------------------------------------------------------------
def on_map(
    service: SwanService,
    where: str | None,
    color_by: str | None,
    hits: list[int] | None = None,
    entry: int | None = None,
) -> tuple[Any, str, dict[str, int]]:
    """Filter or colouring changed: ``(figure, entry-count text, umap-meta)``."""
    service.refresh()
    color_by = color_by if color_by in COLOR_FIELDS else "cluster"
    table = service.table(umap_columns(color_by), where=where)
    fig = umap_figure(table, color_by, hits, [entry] if entry is not None else None)
    total = service.count()
    shown = len(table["id"])
    placed = int(np.sum(~np.ma.getmaskarray(table["x"])))
    text = entries_text(total)
    if where is not None:
        verb = "matches" if shown == 1 else "match"
        text += f" · {entries_text(shown)} {verb} the filter"
    if placed < shown:
        text += f" · {shown - placed:,} without a layout (run `swan layout`)"
    return fig, text, {"traces": len(fig.data)}


def on_overlay(
    service: SwanService,
    hits: list[int] | None,
    entry: int | None,
    meta: dict[str, int] | None,
    where: str | None = None,
) -> Any:
    """Hits or selected entry changed: a ``Patch`` replacing only the map's two
    overlay traces and its annotations (the hits' numbered labels:
    :func:`~dashboard.figures.hit_annotations`); ``no_update`` before the map
    exists."""
    if not meta or meta.get("traces", 0) < OVERLAY_TRACES:
        return no_update
    hits = [int(h) for h in hits or []]
    selected = [int(entry)] if entry is not None else []
    wanted = [*hits, *selected]
    columns = ("id", "x", "y", "emdb_id", "title", "method", "resolution")
    if wanted:
        table = service.table(columns, where=ids_where(wanted, where))
    else:
        table = {c: np.zeros(0) for c in columns}
    patch = Patch()
    first = meta["traces"] - OVERLAY_TRACES
    for j, trace in enumerate(overlay_traces(table, hits, selected)):
        patch["data"][first + j] = trace.to_plotly_json()
    extent = None
    if hits:  # labels are laid out in fractions of the map the user sees
        extent = map_extent(service.table(("id", "x", "y"), where=where))
    patch["layout"]["annotations"] = hit_annotations(table, hits, extent)
    return patch


# -- selection -------------------------------------------------------------------------
def _point_ids(points: list[dict[str, Any]]) -> list[int]:
    """Entry ids from plotly event points (their ``customdata``), in order, once."""
    seen: dict[int, None] = {}
    for p in points:
        value = p.get("customdata")
        if isinstance(value, list | tuple):
            value = value[0] if value else None
        if value is None:
            continue
        try:
            seen.setdefault(int(value), None)
        except (TypeError, ValueError):
            continue
    return list(seen)


def on_select(
    service: SwanService, selection: dict[str, Any] | list[int] | None
) -> tuple[list[dict[str, Any]], html.Div]:
    """Box/lasso selection on the map: ``(selection table rows, message)``.

    Args:
        selection: the graph's ``selectedData`` (points with ``customdata``), or
            the entry ids already taken from it (what the app sends: see
            :data:`SELECTION_IDS_JS`).
    """
    if isinstance(selection, dict):
        ids = _point_ids(selection.get("points") or [])
    else:
        ids = list(dict.fromkeys(int(i) for i in selection or []))
    if not ids:
        return [], message("Select entries on the map with the box or lasso tool.")
    shown = ids[:MAX_SELECTION_ROWS]
    table = service.table(_SELECTION_READ, where=ids_where(shown))
    rows = with_names(table_rows(table, _SELECTION_READ))
    for row in rows:  # named; the server's paths stay on the server
        row.pop("source_path")
    text = f"{len(ids):,} selected"
    if len(ids) > len(shown):
        text += f" (listing the first {len(shown):,})"
    return rows, message(text)


# -- layout and callbacks --------------------------------------------------------------
def layout(service: SwanService) -> html.Div:
    """Filters, colour-by, the map and the selection table."""
    options = filter_options(service)
    bounds = options["resolution"]
    slider = dcc.RangeSlider(
        id="resolution-slider",
        min=bounds[0] if bounds else 0,
        max=bounds[1] if bounds else 10,
        step=0.1,
        value=list(bounds) if bounds else [0, 10],
        disabled=bounds is None,
        allow_direct_input=bounds is not None,  # number boxes, where there is room
        tooltip={"placement": "bottom", "template": "{value} Å"},
        marks=resolution_marks(bounds),
    )
    filters = html.Div(
        [
            html.H3("Filters (map and searches)", style=SECTION_TITLE),
            html.Div(
                [
                    html.Span("SQL where", style=LABEL),
                    dcc.Input(
                        id="where-input",
                        type="text",
                        debounce=True,
                        placeholder=EXAMPLE_WHERE,
                        style={
                            "flex": "1 1 240px",
                            "minWidth": "0",
                            "fontFamily": "monospace",
                        },
                    ),
                ],
                style={"display": "flex", "alignItems": "center", "gap": "4px"},
                title="a SQL predicate over the entries' columns, cluster included",
            ),
            html.Div(
                [
                    html.Div(
                        [
                            html.Span(
                                "resolution (Å)"
                                + ("" if bounds else ": no entry has one"),
                                style=LABEL,
                            ),
                            slider,
                            dcc.Checklist(
                                id="keep-unresolved",
                                options=[
                                    {
                                        "label": " keep entries with no resolution",
                                        "value": KEEP_UNRESOLVED,
                                    }
                                ],
                                value=[],
                                style={"fontSize": "13px", "marginTop": "4px"},
                            ),
                        ],
                        style={"flex": "1 1 260px", "minWidth": "0"},
                    ),
                    html.Div(
                        [
                            html.Span("method", style=LABEL),
                            dcc.Dropdown(
                                id="method-filter",
                                options=options["methods"],
                                multi=True,
                                placeholder="any method",
                            ),
                        ],
                        style={"flex": "1 1 200px", "minWidth": "0"},
                    ),
                    html.Div(
                        [
                            html.Span("hits per search", style=LABEL),
                            # no min/max: the browser would drop an out-of-range
                            # number unseen; on_k clamps it and says so
                            dcc.Input(
                                id="k-input",
                                type="number",
                                debounce=True,
                                value=K_DEFAULT,
                                style={"width": "70px"},
                            ),
                            html.Div(id="k-message"),
                        ],
                        style={"flex": "0 0 150px"},
                    ),
                ],
                className="swan-filter-row",
                style={
                    "display": "flex",
                    "flexWrap": "wrap",
                    "gap": "16px",
                    "marginTop": "8px",
                },
            ),
            html.Div(id="filter-message"),
            dcc.Store(id="resolution-bounds", data=bounds),
            dcc.Store(id="filter-state", data=None),
            dcc.Store(id="selection-ids", data=[]),
            dcc.Store(id="map-legend", data=None),  # NARROW_LEGEND_JS's output
        ],
        style=CARD,
    )
    color_options = [{"label": f.label, "value": k} for k, f in COLOR_FIELDS.items()]
    archive = html.Div(
        [
            html.Div(
                [
                    html.H3("Archive map (UMAP of the codes)", style=SECTION_TITLE),
                    html.Span("colour by", style={**LABEL, "marginLeft": "auto"}),
                    dcc.Dropdown(
                        id="color-by",
                        options=color_options,
                        value="cluster",
                        clearable=False,
                        style={"width": "200px"},
                    ),
                ],
                style={
                    "display": "flex",
                    "flexWrap": "wrap",
                    "alignItems": "center",
                    "gap": "8px",
                },
            ),
            dcc.Graph(
                id="umap-graph",
                figure=placeholder_figure("loading the map…"),
                className="swan-map",  # 620 px high, less on a phone (swan.css)
                config=graph_config(scrollZoom=True),
            ),
        ],
        style=CARD,
    )
    selection = html.Div(
        [
            html.H3("Selected entries", style=SECTION_TITLE),
            html.Div(
                message("Select entries on the map with the box or lasso tool."),
                id="selection-message",
            ),
            data_table(
                "selection-table",
                table_columns([], SELECTION_COLUMNS),
                page_size=12,
                fixed=1,
            ),
        ],
        style=CARD,
    )
    return html.Div([filters, archive, selection])


def register(app: Dash, service: SwanService) -> None:
    """The map's callbacks, on ``app``."""

    @app.callback(
        Output("where-store", "data"),
        Output("filter-message", "children"),
        Output("filter-state", "data"),
        Input("where-input", "value"),
        Input("resolution-slider", "value"),
        Input("method-filter", "value"),
        Input("keep-unresolved", "value"),
        State("resolution-bounds", "data"),
        State("where-store", "data"),
    )
    def _filter(where_text, res_range, methods, keep, bounds, current):  # noqa: ANN001, ANN202
        return on_filter(service, where_text, res_range, methods, bounds, current, keep)

    @app.callback(
        Output("k-input", "value"),
        Output("k-message", "children"),
        Input("k-input", "value"),
        prevent_initial_call=True,
    )
    def _k(value):  # noqa: ANN001, ANN202
        return on_k(value)

    @app.callback(
        Output("umap-graph", "figure"),
        Output("entry-count", "children"),
        Output("umap-meta", "data"),
        Input("where-store", "data"),
        Input("color-by", "value"),
        State("hits-store", "data"),
        State("entry-store", "data"),
    )
    def _map(where, color_by, hits, entry):  # noqa: ANN001, ANN202
        return on_map(service, where, color_by, hits, entry)

    @app.callback(
        Output("umap-graph", "figure", allow_duplicate=True),
        Input("hits-store", "data"),
        Input("entry-store", "data"),
        State("umap-meta", "data"),
        State("where-store", "data"),
        prevent_initial_call=True,
    )
    def _overlay(hits, entry, meta, where):  # noqa: ANN001, ANN202
        return on_overlay(service, hits, entry, meta, where)

    app.clientside_callback(
        NARROW_LEGEND_JS,
        Output("map-legend", "data"),
        Input("umap-graph", "figure"),
    )

    app.clientside_callback(
        SELECTION_IDS_JS,
        Output("selection-ids", "data"),
        Input("umap-graph", "selectedData"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output("selection-table", "data"),
        Output("selection-message", "children"),
        Input("selection-ids", "data"),
        prevent_initial_call=True,
    )
    def _select(ids):  # noqa: ANN001, ANN202
        return on_select(service, ids)
