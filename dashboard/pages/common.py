"""Small pieces the sections share: styles, messages, SQL for id lists."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from dash import dash_table, html

from dashboard.figures import table_columns

CARD = {
    "background": "#ffffff",
    "border": "1px solid #e3e3e3",
    "borderRadius": "6px",
    "padding": "10px 14px",
    "marginBottom": "12px",
}
SECTION_TITLE = {"margin": "0 0 8px 0", "fontSize": "16px"}
LABEL = {"fontSize": "13px", "color": "#444", "marginRight": "6px"}
_MESSAGE = {"fontSize": "13px", "margin": "6px 0", "whiteSpace": "pre-wrap"}
_ERROR = {**_MESSAGE, "color": "#b00020"}
_INFO = {**_MESSAGE, "color": "#333"}


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


def hits_k(value: Any, default: int = 10) -> int:
    """The "hits per search" input as an int in [1, 100] (``default`` if unset)."""
    try:
        k = int(value)
    except (TypeError, ValueError):
        return default
    return min(max(k, 1), 100)


def hits_columns(scales: Sequence[int]) -> list[dict[str, Any]]:
    """Columns of a hits table for a store with these scale sides."""
    keys = ["rank", "id", "emdb_id", "score", *(f"scale_{s}" for s in scales)]
    return table_columns([], [*keys, "size", "title", "method", "resolution"])


def data_table(table_id: str, columns: list[dict[str, Any]], page_size: int = 10):  # noqa: ANN201
    """A compact, sortable, paged DataTable (rows keyed by entry ``id``, so an
    ``active_cell`` carries the entry id as ``row_id``)."""
    return dash_table.DataTable(
        id=table_id,
        columns=columns,
        data=[],
        page_size=page_size,
        sort_action="native",
        cell_selectable=True,
        style_table={"overflowX": "auto"},
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
        style_header={"fontWeight": "600", "backgroundColor": "#f4f4f4"},
    )
