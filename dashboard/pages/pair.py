"""The hit picked in the search page's table, superposed on the query: one
3D view in Å (the map enclosing more drawn see-through), a contour slider
per map (map units) and the pair as a zip for ChimeraX.

A part of :mod:`dashboard.pages.search` (which lays it out and registers it):
component ids ``pair-panel``, ``pair-message``, ``pair-graph``,
``pair-query-level``, ``pair-hit-level``, ``pair-download`` (``pair-file``) and
``pair-store`` (the pair shown: ``{"key", "hit"}``). The geometry is
:mod:`swan_index.superpose`'s, the maps are read and kept by
:class:`dashboard.pairs.Pairs`. Moving a slider redraws the pair without
searching its pose again.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import plotly.graph_objects as go
from dash import Dash, Input, Output, State, dcc, html, no_update

from dashboard.figures3d import pair_figure
from dashboard.pages.common import LABEL, SECTION_TITLE, graph_config, message
from dashboard.pairs import Pairs
from dashboard.service import UploadError
from swan_index.superpose import HIT_COLOR, QUERY_COLOR

log = logging.getLogger(__name__)

HIDDEN = {"display": "none"}
#: Style of a shown panel (under the hits table).
PANEL = {"marginTop": "10px", "borderTop": "1px solid #eee", "paddingTop": "8px"}
BUTTON = {"fontSize": "12px", "padding": "2px 10px", "marginRight": "6px"}
_SLIDER_LABEL = {**LABEL, "paddingLeft": "6px"}
#: Slider steps across a contour's range.
LEVEL_STEPS = 200


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
            "panel": PANEL,
        }
    except Exception:  # noqa: BLE001 - never show a traceback to the browser
        log.exception("superposing entry %s on %r failed", hit, query.get("name"))
        text = f"{label}: the superposition failed on the server (see its log)"
        return {**keep, "message": message(text, error=True), "panel": PANEL}
    vols = pair.volumes
    info = pair.describe()
    text = (
        f"{info['query']} (blue) and hit {info['hit']} (orange) in Å: rigid fit, "
        f"correlation {info['correlation']:.3f} (canonical frames alone "
        f"{info['canonical_correlation']:.3f}); the map enclosing more at its "
        "contour is drawn see-through"
    )
    return {
        "store": {"key": query["key"], "hit": int(hit)},
        "message": message(text),
        "figure": draw_pair(pair, vols.query_level, vols.hit_level),
        "panel": PANEL,
        "query_slider": (
            *_slider(*vols.query_range, vols.query_level),
            vols.query_level,
        ),
        "hit_slider": (*_slider(*vols.hit_range, vols.hit_level), vols.hit_level),
    }


def pair_figure_empty() -> go.Figure:
    """The superposition view with nothing to draw."""
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


def layout() -> html.Div:
    """The panel, hidden until a hit is picked."""
    return html.Div(
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
                style=BUTTON,
            ),
            dcc.Download(id="pair-file"),
        ],
        id="pair-panel",
        style=HIDDEN,
    )


def register(app: Dash, pairs: Pairs) -> None:
    """The panel's callbacks, on ``app``; ``pairs`` keeps the search page's
    uploads."""

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
