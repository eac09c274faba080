"""Search with an uploaded map: the hits are listed and marked on the map.

Component ids: ``upload-map``, ``upload-message``, ``hits-table``.

The search uses the filter in effect when the map is uploaded (and the
"hits per search" setting); a bad upload gives the service's one-line message
(:class:`~dashboard.service.UploadError`), never a traceback.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from dash import Dash, Input, Output, State, dcc, html, no_update

from dashboard.pages.common import (
    CARD,
    SECTION_TITLE,
    filter_error,
    hit_details,
    hits_data_table,
    hits_k,
    message,
)
from dashboard.service import SwanService, UploadError
from dashboard.tables import hits_caption, hits_table_rows

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


def on_upload(
    service: SwanService,
    contents: str | None,
    filename: str | None,
    where: str | None = None,
    k: Any = 10,
) -> tuple[Any, Any, html.Div]:
    """A map was uploaded: ``(hit ids for hits-store, hits-table rows, message)``.

    On an error the hits already shown stay (``no_update``) and the message says
    what went wrong.
    """
    if not contents:  # the upload was cleared after a search: nothing to do
        return no_update, no_update, no_update
    name = filename or "upload"
    try:
        data = decode_upload(contents)
        result = service.search_upload(data, name=name, k=hits_k(k), where=where)
    except UploadError as exc:  # its message names the file and the fix
        return no_update, no_update, message(str(exc), error=True)
    except ValueError as exc:  # a bad filter or k
        text = f"{name}: {filter_error(exc)}"
        return no_update, no_update, message(text, error=True)
    except Exception:  # noqa: BLE001 - never show a traceback to the browser
        log.exception("search with upload %r failed", name)
        text = f"{name}: the search failed on the server (see its log)"
        return no_update, no_update, message(text, error=True)
    hits = result["hits"]
    text = f"{_query_text(result['query'])}. {len(hits)} hits"
    if where:
        text += f" (filter: {where})"
    text += f". {hits_caption(result.get('significance'))}"
    ids = [h["id"] for h in hits]
    rows = hits_table_rows(hits, hit_details(service, ids))
    return ids, rows, message(text)


def layout(service: SwanService) -> html.Div:
    """The upload area and the hits table."""
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
            dcc.Loading(html.Div(id="upload-message"), type="dot"),
            hits_data_table("hits-table", service.store.encoder.scales),
        ],
        style=CARD,
    )


def register(app: Dash, service: SwanService) -> None:
    """The search callback, on ``app``."""

    @app.callback(
        Output("hits-store", "data"),
        Output("hits-table", "data"),
        Output("upload-message", "children"),
        Output("upload-map", "contents"),
        Input("upload-map", "contents"),
        State("upload-map", "filename"),
        State("where-store", "data"),
        State("k-input", "value"),
        prevent_initial_call=True,
    )
    def _upload(contents, filename, where, k):  # noqa: ANN001, ANN202
        # Clearing ``contents`` frees the browser's copy and lets the same file be
        # dropped again (an unchanged value would not fire this callback).
        return (*on_upload(service, contents, filename, where, k), None)
