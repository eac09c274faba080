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
import math
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
    checked_k,
    data_table,
    filter_error,
    graph_config,
    ids_where,
    message,
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
#: The ``keep-unresolved`` checklist's one value.
KEEP_UNRESOLVED = "keep"
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
_EXAMPLE_WHERE = "resolution < 4 AND method = 'singleParticle'"


# -- filters ---------------------------------------------------------------------------
def _sql_text(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def filter_options(service: SwanService) -> dict[str, Any]:
    """Choices for the quick filters, from the store: ``methods`` (sorted) and
    ``resolution`` bounds ``[lo, hi]`` (Å, to 0.1; ``None`` when no entry has
    one)."""
    table = service.table(("id", "method", "resolution"))
    methods = np.ma.compressed(np.ma.asarray(table["method"]))
    res = np.ma.compressed(np.ma.asarray(table["resolution"], np.float64))
    res = res[np.isfinite(res)]
    bounds = None
    if len(res):
        lo, hi = math.floor(res.min() * 10) / 10, math.ceil(res.max() * 10) / 10
        bounds = [round(lo, 1), round(hi if hi > lo else lo + 0.1, 1)]
    return {
        "methods": sorted({str(m) for m in methods if m is not None}),
        "resolution": bounds,
    }


def build_where(
    where_text: str | None,
    res_range: list[float] | None = None,
    methods: list[str] | None = None,
    res_bounds: list[float] | None = None,
    keep_unresolved: bool = False,
) -> str | None:
    """One SQL predicate from the free ``where`` and the quick filters (joined
    with AND), or ``None`` for no filter.

    The resolution range filters only when narrower than ``res_bounds`` (the
    store's full range), so entries with no resolution are not dropped by an
    untouched slider; with ``keep_unresolved`` a narrowed range keeps them too.
    """
    parts = []
    text = (where_text or "").strip().rstrip(";").strip()
    if text:
        parts.append(f"({text})")
    if res_range and len(res_range) == 2 and res_bounds:
        lo, hi = float(res_range[0]), float(res_range[1])
        if lo > res_bounds[0] + 1e-9 or hi < res_bounds[1] - 1e-9:
            between = f"resolution BETWEEN {lo:g} AND {hi:g}"
            parts.append(
                f"({between} OR resolution IS NULL)" if keep_unresolved else between
            )
    if methods:
        parts.append(f"method IN ({', '.join(_sql_text(m) for m in methods)})")
    return " AND ".join(parts) or None


def on_filter(
    service: SwanService,
    where_text: str | None,
    res_range: list[float] | None = None,
    methods: list[str] | None = None,
    res_bounds: list[float] | None = None,
    current: str | None = None,
    keep: list[str] | None = None,
) -> tuple[Any, html.Div, Any]:
    """Filters changed: ``(where for where-store, message, filter-state)``.

    Args:
        service: the store.
        where_text: the SQL box.
        res_range: the resolution slider.
        methods: the methods chosen.
        res_bounds: the slider's full range (:func:`filter_options`).
        current: the filter in effect (``where-store``).
        keep: the ``keep-unresolved`` checklist (``["keep"]``: a narrowed
            resolution range keeps the entries with no resolution).

    Returns:
        The new filter, a message with its count (saying how many entries with
        no resolution a narrowed resolution range hides, or keeps), and the
        inputs that made it (``filter-state``, for the page's address). An
        invalid ``where`` leaves the filter in effect unchanged (``no_update``
        for both); the message says what is wrong and which filter still
        applies.
    """
    keep_unresolved = bool(keep) and KEEP_UNRESOLVED in keep
    where = build_where(where_text, res_range, methods, res_bounds, keep_unresolved)
    state = {
        "where": (where_text or "").strip() or None,
        "res": list(res_range) if res_range else None,
        "bounds": res_bounds,
        "keep": keep_unresolved,
        "methods": list(methods or []),
    }
    if where is None:
        return None, message(f"no filter: all {_entries(service.count())}"), state
    try:
        n = service.count(where)
    except ValueError as exc:
        still = (
            f"The map and searches still use the previous filter: {current}"
            if current
            else "The map and searches still show every entry (no filter)."
        )
        text = f"{filter_error(exc)}. Example: {_EXAMPLE_WHERE}. {still}"
        return no_update, message(text, error=True), no_update
    text = f"{_entries(n)} {'matches' if n == 1 else 'match'}: {where}"
    base = build_where(where_text, None, methods, None)
    if base != build_where(where_text, res_range, methods, res_bounds):
        # the resolution range filters: say what it does with unknown resolutions
        unknown = service.count(
            "resolution IS NULL" if base is None else f"{base} AND resolution IS NULL"
        )
        if unknown:
            verb = "is" if unknown == 1 else "are"
            if keep_unresolved:
                text += f". {_entries(unknown)} with no resolution {verb} kept"
            else:
                text += (
                    f". {_entries(unknown)} with no resolution {verb} hidden by "
                    "the resolution range: tick “keep entries with no "
                    "resolution” to include them"
                )
    return where, message(text), state


def _entries(n: int) -> str:
    """``"1 entry"``, ``"2 entries"``."""
    return "1 entry" if n == 1 else f"{n:,} entries"


def resolution_marks(bounds: list[float] | None, most: int = 6) -> dict[float, str]:
    """Labelled marks for the resolution slider.

    Args:
        bounds: the slider's range ``[lo, hi]`` (Å), or None.
        most: the most marks.

    Returns:
        ``{value: label}``: both ends (the top one with its unit) and round
        values between them; empty without bounds.
    """
    if not bounds:
        return {}
    lo, hi = float(bounds[0]), float(bounds[1])
    steps = [s for s in (0.5, 1, 2, 5, 10, 20, 50) if (hi - lo) / s <= most - 1]
    step = steps[0] if steps else (hi - lo) / (most - 1)
    marks = {lo: f"{lo:g}", hi: f"{hi:g} Å"}
    value = math.ceil(lo / step) * step
    while value < hi - 0.4 * step:
        if value > lo + 0.4 * step:
            marks[round(value, 1)] = f"{value:g}"
        value += step
    return dict(sorted(marks.items()))


def on_k(value: Any) -> tuple[Any, html.Div | None]:
    """The hits-per-search box changed.

    Args:
        value: what the box holds (a number, or None when empty).

    Returns:
        ``(value to show, message)``: a value out of range, empty or fractional
        is replaced by the one searches will use, and the message says so; a
        good value is left alone (``no_update``) with no message.
    """
    k, note = checked_k(value)
    if note is None:
        return no_update, None
    return k, message(note, error=True)


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
    text = _entries(total)
    if where is not None:
        text += (
            f" · {_entries(shown)} {'matches' if shown == 1 else 'match'} the filter"
        )
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
                        placeholder=_EXAMPLE_WHERE,
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
