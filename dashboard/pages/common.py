"""Small pieces the sections share: styles, messages, graph settings, tables,
SQL for id lists."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from dash import dash_table, html

from dashboard.tables import hit_tooltips, table_columns

CARD = {
    "background": "#ffffff",
    "border": "1px solid #e3e3e3",
    "borderRadius": "6px",
    "padding": "10px 14px",
    "marginBottom": "12px",
}
SECTION_TITLE = {"margin": "0 0 8px 0", "fontSize": "16px"}
LABEL = {"fontSize": "13px", "color": "#444", "marginRight": "6px"}
#: A small grey note under a section's title.
NOTE = {"fontSize": "12px", "color": "#666", "margin": "2px 0 6px 0"}
_MESSAGE = {"fontSize": "13px", "margin": "6px 0", "whiteSpace": "pre-wrap"}
_ERROR = {**_MESSAGE, "color": "#b00020"}
_INFO = {**_MESSAGE, "color": "#333"}

#: The ``config`` of every graph: nothing in the toolbar can send a figure off
#: the machine. The plotly.js that Dash serves (4.x) shows a "Share chart..."
#: button (``sendChartToCloud``, to ``cloud.plotly.com``) unless told not to, and
#: older ones an "Edit in Chart Studio" link; the server URL is emptied too, so
#: no call can reach it. The logo (a link to plotly.com) goes as well.
GRAPH_CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "showSendToCloud": False,
    "showEditInChartStudio": False,
    "showLink": False,
    "sendData": False,
    "plotlyServerURL": "",
    "modeBarButtonsToRemove": ["sendChartToCloud", "sendDataToCloud"],
}

#: Hits per search: the allowed range and the default.
K_RANGE = (1, 100)
K_DEFAULT = 10


def graph_config(**extra: Any) -> dict[str, Any]:
    """A graph's ``config``: :data:`GRAPH_CONFIG` and more.

    Args:
        **extra: settings of this graph (e.g. ``scrollZoom=True``).

    Returns:
        A new dict.
    """
    return {**GRAPH_CONFIG, **extra}


def message(text: str, error: bool = False) -> html.Div:
    """A one-line status or error message (``className`` ``swan-error`` or
    ``swan-info``, for browser tests)."""
    return html.Div(
        text,
        className="swan-error" if error else "swan-info",
        style=_ERROR if error else _INFO,
    )


def filter_error(exc: Exception) -> str:
    """A store's message about a bad ``where``, worded for the filter box."""
    text = str(exc)
    for prefix in ("--where ", "where "):
        if text.startswith(prefix):
            return "filter " + text[len(prefix) :]
    return text


def ids_where(ids: Iterable[int], where: str | None = None) -> str:
    """A SQL predicate: entries among ``ids`` (and matching ``where``)."""
    listed = ", ".join(str(int(i)) for i in ids) or "NULL"
    clause = f"id IN ({listed})"
    return clause if not where else f"({where}) AND {clause}"


def hits_k(value: Any, default: int = K_DEFAULT) -> int:
    """The "hits per search" input as an int in :data:`K_RANGE` (``default`` if
    unset or not a number)."""
    return checked_k(value, default)[0]


def checked_k(value: Any, default: int = K_DEFAULT) -> tuple[int, str | None]:
    """The "hits per search" value a search will use, and what was changed to get
    it (``None`` when ``value`` was used as given).

    Args:
        value: what the input holds (a number, text, or ``None`` when empty).
        default: used when ``value`` is empty or not a whole number.

    Returns:
        ``(k, note)``: ``k`` in :data:`K_RANGE`; ``note`` one line saying why
        ``k`` differs from ``value``.
    """
    lo, hi = K_RANGE
    try:
        number = float(value)
    except (TypeError, ValueError):
        shown = "empty" if value in (None, "") else f"{value!r} is not a number"
        return default, f"hits per search: {shown}; using {default}"
    if not np.isfinite(number):
        return default, f"hits per search: {value} is not a number; using {default}"
    k = int(round(number))
    if k < lo:
        return lo, f"hits per search: {number:g} is below {lo}; using {lo}"
    if k > hi:
        return hi, f"hits per search: {number:g} is above the most, {hi}; using {hi}"
    if k != number:
        return k, f"hits per search: whole numbers only; using {k}"
    return k, None


#: Columns of a hits table, around the per-scale scores: the key ones first
#: (kept in view while the others scroll), the store id last.
HIT_KEY_COLUMNS = ("rank", "name", "emdb", "score", "evalue")
HIT_TERM_COLUMNS = ("shape", "fit", "rg_ratio")
HIT_MORE_COLUMNS = ("method", "resolution", "id")


def hits_columns(scales: Sequence[int]) -> list[dict[str, Any]]:
    """Columns of a hits table for a store with these scale sides: the key ones,
    the score's terms, per scale the cosine against the query's background
    (``z_<side>``), then the rest."""
    keys = [
        *HIT_KEY_COLUMNS,
        *HIT_TERM_COLUMNS,
        *(f"z_{s}" for s in scales),
        *HIT_MORE_COLUMNS,
    ]
    return table_columns([], keys)


def hits_data_table(table_id: str, scales: Sequence[int]):  # noqa: ANN201
    """A hits table (:func:`data_table` of :func:`hits_columns`, rank and name
    kept in view) whose headers say what each column means."""
    columns = hits_columns(scales)
    return data_table(table_id, columns, fixed=2, tooltips=hit_tooltips(columns))


def hit_details(service: Any, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """What search hits do not carry but their names need.

    Args:
        service: the store's service.
        ids: entry ids.

    Returns:
        ``{id: {"source_path": ..., "simulated": ...}}`` for
        :func:`dashboard.tables.with_names` (the paths stay on the server).
    """
    if not ids:
        return {}
    table = service.table(("id", "source_path", "simulated"), where=ids_where(ids))
    out = {}
    for i, path, sim in zip(
        table["id"], table["source_path"], table["simulated"], strict=True
    ):
        out[int(i)] = {
            "source_path": None if np.ma.is_masked(path) else path,
            "simulated": False if np.ma.is_masked(sim) else bool(sim),
        }
    return out


#: Width of a table's name column (it wraps within it).
NAME_WIDTH = "210px"


def data_table(  # noqa: ANN201
    table_id: str,
    columns: list[dict[str, Any]],
    page_size: int = 10,
    fixed: int = 0,
    tooltips: dict[str, str] | None = None,
):
    """A compact, sortable, paged DataTable (rows keyed by entry ``id``, so an
    ``active_cell`` carries the entry id as ``row_id``).

    Args:
        table_id: the component id.
        columns: from :func:`dashboard.tables.table_columns`.
        page_size: rows per page.
        fixed: how many leading columns stay in view while the rest scroll
            sideways (the key columns: rank, name...).
        tooltips: per column id, what its header's tooltip says.

    Returns:
        The ``dash_table.DataTable``. Names wrap within :data:`NAME_WIDTH`; EMDB
        links open the entry's page in a new tab.
    """
    extra: dict[str, Any] = {}
    if fixed:
        extra["fixed_columns"] = {"headers": True, "data": fixed}
    if tooltips:
        extra["tooltip_header"] = tooltips
        extra["tooltip_delay"] = 300
        extra["tooltip_duration"] = None
    return dash_table.DataTable(
        id=table_id,
        columns=columns,
        data=[],
        page_size=page_size,
        sort_action="native",
        cell_selectable=True,
        markdown_options={"link_target": "_blank"},
        style_table={"overflowX": "auto", "minWidth": "100%"},
        style_cell={
            "fontSize": "12px",
            "fontFamily": "inherit",
            "padding": "3px 6px",
            "maxWidth": "260px",
            "overflow": "hidden",
            "textOverflow": "ellipsis",
            "whiteSpace": "nowrap",
            "textAlign": "left",
        },
        style_cell_conditional=[
            {
                "if": {"column_id": "name"},
                "whiteSpace": "normal",
                "minWidth": NAME_WIDTH,
                "width": NAME_WIDTH,
                "maxWidth": NAME_WIDTH,
            },
            {"if": {"column_id": "rank"}, "width": "28px", "textAlign": "right"},
        ],
        style_header={"fontWeight": "600", "backgroundColor": "#f4f4f4"},
        css=[{"selector": ".dash-cell-value p", "rule": "margin: 0;"}],
        **extra,
    )
