"""The page's address holds the view: filters, hits per search, colouring and the
chosen entry, so that a view can be shared and reloaded.

Component ids: ``url`` (read: the address the page was opened at, and the ones
the browser's back and forward buttons go to), ``url-out`` (written, without
reloading the page), ``address-written`` (the last address written: ``url``
hearing of it changes nothing), ``permalink-message`` (what of an address could
not be restored, e.g. an entry not in this store).

The query string's keys (:data:`KEYS`); only what differs from the default view
is written::

    ?where=rg > 40&res=3-4.5&keep=1&method=helical&method=singleParticle
     &k=25&color=resolution&entry=EMD-1832

``entry`` is the entry's EMDB id, or its store id when it has none. An uploaded
map is not part of the address (a file cannot travel in a URL): the page says so
next to the upload box's section, and its hits are not restored.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from dashboard.figures import COLOR_FIELDS
from dashboard.pages.common import K_DEFAULT, NOTE, checked_k, message
from dashboard.pages.filtering import KEEP_UNRESOLVED
from dashboard.service import SwanService

#: Query keys, in the order they are written.
KEYS = ("where", "res", "keep", "method", "k", "color", "entry")
#: The colouring of a fresh page (left out of the address).
COLOR_DEFAULT = "cluster"
#: Shown in the filters' card: what a shared address restores, and what not.
ADDRESS_NOTE = (
    "The page's address keeps this view (filters, hits per search, colouring, the "
    "chosen entry): copy it to share or reload the view. An uploaded map cannot be "
    "part of an address: upload it again."
)


def _narrowed(res: list[float] | None, bounds: list[float] | None) -> bool:
    """Whether the slider's range is narrower than the store's full range."""
    if not res or len(res) != 2 or not bounds:
        return False
    return res[0] > bounds[0] + 1e-9 or res[1] < bounds[1] - 1e-9


def view_query(
    filters: dict[str, Any] | None,
    k: Any = K_DEFAULT,
    color: str | None = COLOR_DEFAULT,
    entry: str | None = None,
) -> str:
    """The query string of a view (``""`` for the default view).

    Args:
        filters: the filter in effect, as ``filter-state`` holds it (``where``,
            ``res``, ``bounds``, ``keep``, ``methods``), or None.
        k: hits per search (written when valid and not the default).
        color: the colouring.
        entry: the chosen entry's EMDB id or store id, or None.

    Returns:
        ``"?key=value&..."`` or ``""``.
    """
    pairs: list[tuple[str, str]] = []
    filters = filters or {}
    if filters.get("where"):
        pairs.append(("where", str(filters["where"])))
    res = filters.get("res")
    if _narrowed(res, filters.get("bounds")):
        pairs.append(("res", f"{float(res[0]):g}-{float(res[1]):g}"))
        if filters.get("keep"):
            pairs.append(("keep", "1"))
    pairs += [("method", str(m)) for m in filters.get("methods") or []]
    value, note = checked_k(k)
    if note is None and value != K_DEFAULT:
        pairs.append(("k", str(value)))
    if color and color != COLOR_DEFAULT:
        pairs.append(("color", str(color)))
    if entry is not None:
        pairs.append(("entry", str(entry)))
    return "?" + urlencode(pairs) if pairs else ""


def parse_view(search: str | None) -> tuple[dict[str, Any], list[str]]:
    """The view an address's query string names.

    Args:
        search: ``location.search`` (``"?where=...&k=25"``), or None.

    Returns:
        ``(view, problems)``: ``view`` holds what was given and understood, under
        the keys ``where`` (str), ``res`` (``[lo, hi]``), ``keep`` (bool),
        ``methods`` (list), ``k`` (str, checked by the hits box itself),
        ``color`` and ``entry`` (str); ``problems`` one line per value that
        could not be used.
    """
    query = parse_qs((search or "").lstrip("?"), keep_blank_values=False)
    view: dict[str, Any] = {}
    problems: list[str] = []
    if "where" in query:
        view["where"] = query["where"][-1]
    if "res" in query:
        lo, sep, hi = query["res"][-1].partition("-")
        try:
            bounds = sorted([float(lo), float(hi)])
        except ValueError:
            problems.append(f"res={query['res'][-1]!r} is not a range like 3-4.5")
        else:
            if sep:
                view["res"] = bounds
    if "keep" in query:
        view["keep"] = query["keep"][-1] not in ("0", "false", "no")
    if "method" in query:
        view["methods"] = list(dict.fromkeys(query["method"]))
    if "k" in query:
        view["k"] = query["k"][-1]
    if "color" in query:
        color = query["color"][-1]
        if color in COLOR_FIELDS:
            view["color"] = color
        else:
            problems.append(f"color={color!r} is not one of {', '.join(COLOR_FIELDS)}")
    if "entry" in query:
        view["entry"] = query["entry"][-1]
    unknown = sorted(set(query) - set(KEYS))
    if unknown:
        problems.append(f"{', '.join(unknown)}: not part of a view, left out")
    return view, problems


def on_address(
    service: SwanService,
    search: str | None,
    current: dict[str, Any],
    bounds: list[float] | None,
    methods_present: list[str],
) -> tuple[Any, ...]:
    """The address changed (the page was opened, or back/forward): set the view
    it names.

    Args:
        service: the store's service.
        search: the address's query string.
        current: what the page shows now: ``where``, ``res``, ``keep``,
            ``methods``, ``k``, ``color``, ``entry`` (store id or None).
        bounds: the resolution slider's full range.
        methods_present: the methods the method filter offers.

    Returns:
        Values for ``where-input``, ``resolution-slider``, ``keep-unresolved``,
        ``method-filter``, ``k-input``, ``color-by``, ``entry-store`` (each
        ``no_update`` where it already holds the address's value) and
        ``permalink-message`` (what of the address could not be used, or
        nothing).
    """
    view, problems = parse_view(search)
    res = list(bounds) if bounds else current.get("res")
    if "res" in view:
        if bounds:  # within the slider's range
            lo = min(max(view["res"][0], bounds[0]), bounds[1])
            hi = min(max(view["res"][1], bounds[0]), bounds[1])
            res = [lo, hi]
        else:
            problems.append("res: no entry has a resolution, range left out")
    methods = view.get("methods", [])
    absent = [m for m in methods if m not in methods_present]
    if absent:
        problems.append(f"method {', '.join(absent)}: no entry has it here")
    entry = None
    if view.get("entry"):
        try:
            entry = int(service.entry(view["entry"])["id"])
        except (KeyError, ValueError):
            problems.append(f"entry {view['entry']}: not in this store")
    wanted = {
        "where": view.get("where") or None,
        "res": res,
        "keep": [KEEP_UNRESOLVED] if view.get("keep") else [],
        "methods": [m for m in methods if m in methods_present],
        "k": view.get("k", K_DEFAULT),
        "color": view.get("color", COLOR_DEFAULT),
        "entry": entry,
    }

    def same(key: str) -> bool:
        now, want = current.get(key), wanted[key]
        if key == "where":
            return (now or None) == want
        if key in ("methods", "keep"):
            return list(now or []) == want
        if key == "k":
            return str(now) == str(want)
        return now == want

    values = [
        no_update if same(key) else wanted[key]
        for key in ("where", "res", "keep", "methods", "k", "color", "entry")
    ]
    note = (
        message("This page's address: " + "; ".join(problems), error=True)
        if problems
        else None
    )
    return (*values, note)


def on_view(
    service: SwanService,
    filters: dict[str, Any] | None,
    k: Any,
    color: str | None,
    entry: int | None,
) -> str:
    """The view changed: the query string for the address bar.

    Args:
        service: the store's service.
        filters: ``filter-state`` (the filter in effect).
        k: hits per search.
        color: the colouring.
        entry: the chosen entry's store id, or None.
    """
    name = None
    if entry is not None:
        try:
            row = service.entry(int(entry))
            name = row.get("emdb_id") or str(row["id"])
        except KeyError:
            name = None
    return view_query(filters, k, color, name)


def layout(service: SwanService) -> html.Div:  # noqa: ARG001 - the sections' signature
    """The two address components, what an address keeps, and the message."""
    return html.Div(
        [
            dcc.Location(id="url", refresh=False),
            dcc.Store(id="address-written", data=None),
            # "callback-nav": a new address is pushed to the history without a
            # reload, and ``url`` learns of it (so that going back to an
            # address ``url`` last held still restores it)
            dcc.Location(id="url-out", refresh="callback-nav"),
            html.Div(ADDRESS_NOTE, className="swan-note", style=NOTE),
            html.Div(id="permalink-message"),
        ]
    )


def register(app: Dash, service: SwanService) -> None:
    """The address's callbacks, on ``app``."""

    @app.callback(
        Output("where-input", "value"),
        Output("resolution-slider", "value"),
        Output("keep-unresolved", "value"),
        Output("method-filter", "value"),
        Output("k-input", "value", allow_duplicate=True),
        Output("color-by", "value"),
        Output("entry-store", "data", allow_duplicate=True),
        Output("permalink-message", "children"),
        Input("url", "search"),
        State("where-input", "value"),
        State("resolution-slider", "value"),
        State("keep-unresolved", "value"),
        State("method-filter", "value"),
        State("k-input", "value"),
        State("color-by", "value"),
        State("entry-store", "data"),
        State("resolution-bounds", "data"),
        State("method-filter", "options"),
        State("address-written", "data"),
        prevent_initial_call="initial_duplicate",
    )
    def _address(
        search, where, res, keep, methods, k, color, entry, bounds, options, written
    ):  # noqa: ANN001, ANN202, PLR0913, E501
        if ctx.triggered_id is not None and search == written:
            # the address this page just wrote: the view is already shown (and
            # the user may have changed it since)
            return (no_update,) * 8
        current = {
            "where": where,
            "res": res,
            "keep": keep,
            "methods": methods,
            "k": k,
            "color": color,
            "entry": entry,
        }
        present = [o["value"] if isinstance(o, dict) else o for o in options or []]
        return on_address(service, search, current, bounds, present)

    @app.callback(
        Output("url-out", "search"),
        Output("address-written", "data"),
        Input("filter-state", "data"),
        Input("k-input", "value"),
        Input("color-by", "value"),
        Input("entry-store", "data"),
        prevent_initial_call=True,
    )
    def _view(filters, k, color, entry):  # noqa: ANN001, ANN202
        search = on_view(service, filters, k, color, entry)
        return search, search
