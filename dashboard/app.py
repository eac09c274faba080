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
  per-scale scores, coarse-to-fine reconstructions;
* the page's address (``pages.permalink``): the view, to share and reload it.

The layout is built on each page load (the filters offer what the store holds
then); ``assets/swan.css`` stacks the columns on a narrow screen.

Component ids (stable; browser tests use them):

* ``entry-count``: header text (entries, how many match, how many lack a layout).
* ``where-input``: free SQL predicate over ``entries`` (applied on Enter or blur).
* ``resolution-slider``: resolution range (Å); filters only when narrowed.
* ``keep-unresolved``: a narrowed range keeps the entries with no resolution.
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
* ``detail-panel``: the entry panel, holding ``entry-id-input`` and
  ``entry-id-go`` (open an entry by its EMDB id or store id; ``entry-id-message``
  says why one was not found), ``detail-meta`` (metadata),
  ``iso-graph`` (3D isosurface of the preview), ``similar-table`` and
  ``similar-message`` (most similar maps, per-scale scores), ``c2f-graph`` (one
  3D scene per number of scales: "1 scale", "2 scales", ...).
* ``url`` and ``url-out`` (``pages.permalink``): the page's address, read and
  written: it keeps the filters, hits per search, colouring and chosen entry;
  ``permalink-message`` says what of an opened address this store lacks.
* ``where-store``, ``hits-store``, ``entry-store``, ``umap-meta``,
  ``resolution-bounds``, ``filter-state``: shared state.

Table rows carry the entry id as ``id``, so a clicked cell's ``row_id`` is the
entry id. Clicking a map point or a row of any table shows that entry in the
detail panel.

Callback requests (``POST /_dash-update-component``) are checked before Dash
reads them (:func:`guard_callbacks`): a body that is not JSON, nested deeper than
:data:`MAX_JSON_DEPTH`, holding more than :data:`MAX_JSON_ITEMS` values, or not
naming one of this app's server callbacks with its inputs is answered
``{"error": "<one line>"}`` with a 4xx status; a callback that fails is a JSON 500
(the server log has the traceback), never an HTML page.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path
from typing import Any

import dash
import flask
from dash import dcc, html
from dash.exceptions import CallbackException
from werkzeug.exceptions import BadRequest, HTTPException

from dashboard.pages import entry, explore, permalink, search
from dashboard.pages.common import LABEL
from dashboard.service import SwanService

#: The page's style sheet (widths at which the columns stack, the header wraps).
ASSETS = Path(__file__).resolve().parent / "assets"
SECTIONS = (explore, search, entry, permalink)

log = logging.getLogger(__name__)

#: Deepest nesting accepted in a callback request (a lasso selection is ~8 deep).
MAX_JSON_DEPTH = 32
#: Most values (counted by separators) accepted in a callback request: a
#: selection of a million points fits, a body that would unpack into a billion
#: Python objects does not.
MAX_JSON_ITEMS = 2_000_000
TOO_DEEP = (
    f"callback request nested deeper than {MAX_JSON_DEPTH} levels; send the body "
    "the dashboard sends"
)


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
                className="swan-encoder",
                style=LABEL,
            ),
        ],
        className="swan-header",
    )


def build_layout(service: SwanService) -> html.Div:
    """The page: header, then the map column and the search/detail column (one
    column under another on a narrow screen: ``assets/swan.css``)."""
    return html.Div(
        [
            _header(service),
            dcc.Store(id="where-store", data=None),
            dcc.Store(id="hits-store", data=[]),
            dcc.Store(id="entry-store", data=None),
            dcc.Store(id="umap-meta", data=None),
            html.Div(permalink.layout(service), className="swan-address"),
            html.Div(
                [
                    html.Div(explore.layout(service), style={"minWidth": "0"}),
                    html.Div(
                        [search.layout(service), entry.layout(service)],
                        style={"minWidth": "0"},
                    ),
                ],
                className="swan-columns",
            ),
        ],
        className="swan-page",
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
    dash_kwargs.setdefault("assets_folder", str(ASSETS))
    app = dash.Dash(__name__, **dash_kwargs)
    # built on each page load: the method filter and the resolution range offer
    # what the store holds now, not what it held when the server started
    app.layout = functools.partial(build_layout, service)
    for section in SECTIONS:
        section.register(app, service)
    guard_callbacks(app)
    return app


# -- callback requests --------------------------------------------------------------
class _BadCallback(ValueError):
    """A callback request this app cannot run: answered with ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> flask.Response:
    response = flask.jsonify(error=message)
    response.status_code = status
    return response


def guard_callbacks(app: dash.Dash) -> None:
    """Check callback requests before Dash runs them, and answer every failure of
    a Dash route as JSON ``{"error": ...}`` instead of Flask's HTML pages.

    Dash itself parses the body with ``json.loads`` (a ``RecursionError`` for deep
    nesting), looks the output up in its callback map (a ``KeyError`` for an
    unknown one) and checks the rest as it runs the callback; all of these were
    HTML 500s. Here they are 4xx with a line saying what to fix.

    Args:
        app: the Dash app; its Flask server gets a ``before_request`` hook and
            error handlers.
    """
    server = app.server
    prefix = app.config.routes_pathname_prefix or "/"
    dispatch_path = f"{prefix}_dash-update-component"

    @server.before_request
    def _check() -> flask.Response | None:
        if flask.request.path != dispatch_path or flask.request.method != "POST":
            return None
        try:
            check_callback_body(app, _read_json())
        except _BadCallback as exc:
            log.info("refused a callback request: %s", exc)
            return _error(exc.status, str(exc))
        return None

    @server.errorhandler(Exception)
    def _failed(exc: Exception) -> Any:
        if isinstance(exc, HTTPException):
            if not flask.request.path.startswith(f"{prefix}_dash-"):
                return exc  # Flask's own page for the page routes
            message = f"{flask.request.path}: {exc.description}"
            return _error(exc.code or 500, " ".join(message.split()))
        if type(exc) is CallbackException:  # Dash's check of the request's spec
            return _error(400, f"{exc}; reload the page")
        log.error("dashboard request %s failed", flask.request.path, exc_info=exc)
        return _error(500, "internal error; the server log has the details")


def _read_json() -> Any:
    """The request's JSON body, parsed once (Flask caches it for Dash).

    Raises:
        _BadCallback: not JSON, too many values, or nested too deep.
    """
    request = flask.request
    if not request.is_json:
        raise _BadCallback(
            "a callback request must be JSON; send Content-Type: application/json",
            415,
        )
    data = request.get_data(cache=True)
    items = sum(data.count(c) for c in (b",", b":", b"[", b"{"))
    if items > MAX_JSON_ITEMS:
        raise _BadCallback(
            f"callback request of about {items:,} values is over the "
            f"{MAX_JSON_ITEMS:,}-value limit; select fewer points",
            413,
        )
    try:
        body = request.get_json()  # cached: Dash's own get_json() returns it
    except RecursionError:
        raise _BadCallback(TOO_DEEP) from None
    except BadRequest as exc:  # not JSON, or not UTF-8
        raise _BadCallback(f"callback request: {exc.description}") from None
    if _depth(body) > MAX_JSON_DEPTH:
        raise _BadCallback(TOO_DEEP)
    return body


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in node)
    return deepest


def check_callback_body(app: dash.Dash, body: Any) -> None:
    """Check a callback request against ``app``'s callbacks.

    Args:
        app: the Dash app.
        body: the parsed request: ``{"output": key, "outputs": ..., "inputs": [...],
            "state": [...], "changedPropIds": [...]}``.

    Raises:
        ValueError: (a ``_BadCallback``) with the status to answer: the body is not
            an object, names no server callback of this app, or its inputs,
            state or outputs do not have the callback's shape.
    """
    if not isinstance(body, dict):
        raise _BadCallback("a callback request must be a JSON object")
    output = body.get("output")
    if not isinstance(output, str):
        raise _BadCallback("a callback request needs 'output', a string")
    spec = app.callback_map.get(output)
    if spec is None or "callback" not in spec:
        shown = output if len(output) <= 80 else output[:77] + "..."
        raise _BadCallback(
            f"no callback for output {shown!r} on this dashboard; reload the page "
            "(the dashboard may have changed since it was loaded)"
        )
    for key in ("inputs", "state"):
        got = body.get(key, [])
        declared = spec.get(key, [])
        if not isinstance(got, list) or len(got) != len(declared):
            raise _BadCallback(
                f"{key} of the callback for {output!r}: expected a list of "
                f"{len(declared)}; reload the page"
            )
        if not all(_is_prop(item) for item in got):
            raise _BadCallback(
                f"{key} of the callback for {output!r}: each needs 'id' and "
                "'property'; reload the page"
            )
    outputs = body.get("outputs")
    wanted = len(output[2:-2].split("...")) if output.startswith("..") else None
    shape_ok = (
        _is_prop(outputs)
        if wanted is None
        else isinstance(outputs, list) and len(outputs) == wanted
    )
    if not shape_ok or (wanted is not None and not all(map(_is_prop, outputs))):
        raise _BadCallback(
            f"outputs of the callback for {output!r} do not match it; reload the page"
        )
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or not all(isinstance(c, str) for c in changed):
        raise _BadCallback("changedPropIds must be a list of strings")


def _is_prop(item: Any) -> bool:
    """A ``{"id", "property"}`` object (or a list of them: a wildcard's matches)."""
    items = item if isinstance(item, list) else [item]
    return all(
        isinstance(i, dict)
        and isinstance(i.get("id"), str | dict)
        and isinstance(i.get("property"), str)
        for i in items
    )
