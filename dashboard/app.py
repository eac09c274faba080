"""The Dash dashboard: ``create_app(service)`` builds one app over a
:class:`~dashboard.service.SwanService` (nothing runs at import time).

One page in sections, each a module of :mod:`dashboard.pages` that owns its layout
and callbacks:

* header: title, encoder, entry count;
* filters (``pages.explore``): SQL ``where`` plus quick filters; they apply to the
  map and to every search (upload and "similar maps");
* the archive map (``pages.explore``): the stored UMAP layout as a WebGL scatter,
  coloured by cluster or a metadata field, box/lasso selection listed in a table;
* search (``pages.search``): upload a map, hits listed and marked on the map;
* entry detail (``pages.entry``): metadata, 3D isosurface, similar maps with
  per-scale scores, coarse-to-fine reconstructions.

Component ids (stable; browser tests use them):

* ``entry-count``: header text (entries, how many match, how many lack a layout).
* ``where-input``: free SQL predicate over ``entries`` (applied on Enter or blur).
* ``resolution-slider``: resolution range (Å); filters only when narrowed.
* ``method-filter``: methods (multi-select).
* ``k-input``: hits per search (upload and similar maps).
* ``filter-message``: the filter in effect and its count, or why it is invalid
  (a ``.swan-error`` div).
* ``color-by``: ``cluster``, ``resolution``, ``method``, ``organism``,
  ``release_year``, ``label``, ``rg``.
* ``umap-graph``: the map; every point's ``customdata`` is its entry id; the last
  two traces are "search hits" and "selected entry".
* ``selection-table``, ``selection-message``: entries selected with box/lasso
  (``selection-ids``: their ids, taken from ``selectedData`` in the browser).
* ``upload-map``: the ``dcc.Upload`` for a map file.
* ``upload-message``: what was searched, or why the upload failed (``.swan-error``).
* ``hits-table``: hits of the upload search.
* ``detail-panel``: the entry panel, holding ``detail-meta`` (metadata),
  ``iso-graph`` (3D isosurface of the preview), ``similar-table`` and
  ``similar-message`` (most similar maps, per-scale scores), ``c2f-graph`` (one
  3D scene per number of scales: "1 scale", "2 scales", ...).
* ``where-store``, ``hits-store``, ``entry-store``, ``umap-meta``,
  ``resolution-bounds``: shared state.

Table rows carry the entry id as ``id``, so a clicked cell's ``row_id`` is the
entry id. Clicking a map point or a row of any table shows that entry in the
detail panel.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import dash
from dash import dcc, html

from dashboard.pages import entry, explore, search
from dashboard.pages.common import LABEL
from dashboard.service import SwanService

SECTIONS = (explore, search, entry)


def _header(service: SwanService) -> html.Div:
    info = service.store.encoder
    scales = ", ".join(f"{s}³" for s in info.scales)
    return html.Div(
        [
            html.H2("Cryo-SWAN search", style={"margin": "0", "fontSize": "22px"}),
            html.Span(
                f"{service.count():,} entries",
                id="entry-count",
                style={"fontSize": "14px"},
            ),
            html.Span(
                f"encoder {info.hash[:12]} · scales {scales}",
                style={**LABEL, "marginLeft": "auto"},
            ),
        ],
        style={
            "display": "flex",
            "alignItems": "baseline",
            "gap": "18px",
            "padding": "10px 16px",
            "borderBottom": "1px solid #ddd",
            "background": "#fafafa",
        },
    )


def build_layout(service: SwanService) -> html.Div:
    """The page: header, then the map column and the search/detail column."""
    return html.Div(
        [
            _header(service),
            dcc.Store(id="where-store", data=None),
            dcc.Store(id="hits-store", data=[]),
            dcc.Store(id="entry-store", data=None),
            dcc.Store(id="umap-meta", data=None),
            html.Div(
                [
                    html.Div(explore.layout(service), style={"minWidth": "0"}),
                    html.Div(
                        [search.layout(service), entry.layout(service)],
                        style={"minWidth": "0"},
                    ),
                ],
                style={
                    "display": "grid",
                    "gridTemplateColumns": "minmax(0, 3fr) minmax(0, 2fr)",
                    "gap": "12px",
                    "padding": "12px",
                },
            ),
        ],
        style={
            "fontFamily": "system-ui, -apple-system, 'Segoe UI', sans-serif",
            "background": "#f2f3f5",
            "minHeight": "100vh",
        },
    )


def create_app(service: SwanService, **dash_kwargs: Any) -> dash.Dash:
    """A Dash app over ``service``.

    Args:
        service: the store and encoder the app reads (not a global: several apps
            may live in one process).
        **dash_kwargs: passed to :class:`dash.Dash` (e.g. ``server=`` a Flask app,
            ``requests_pathname_prefix=`` when mounted under a path).

    Returns:
        The app; ``app.server`` is its Flask (WSGI) application.
    """
    dash_kwargs.setdefault("title", "Cryo-SWAN search")
    # Gzip the callback responses when flask-compress is installed: a 50,000-point
    # map is a few MB of JSON, mostly hover text, that compresses ~5x.
    dash_kwargs.setdefault(
        "compress", importlib.util.find_spec("flask_compress") is not None
    )
    app = dash.Dash(__name__, **dash_kwargs)
    app.layout = build_layout(service)
    for section in SECTIONS:
        section.register(app, service)
    return app
