"""The entry detail panel: metadata, 3D isosurface of the stored preview, the most
similar maps with per-scale scores, and the coarse-to-fine reconstructions.

Component ids: ``detail-panel`` (the panel), ``detail-meta``, ``iso-graph``,
``similar-table``, ``similar-message``, ``c2f-graph``.

An entry is chosen by clicking it on the map or clicking a row of the selection,
hits or similar tables (:func:`on_pick` -> ``entry-store``).
"""

from __future__ import annotations

import logging
from typing import Any

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from dashboard.figures import (
    ISO_LEVEL,
    coarse_to_fine_figure,
    hits_table_rows,
    isosurface_figure,
    placeholder_figure,
)
from dashboard.pages.common import (
    CARD,
    SECTION_TITLE,
    data_table,
    hits_columns,
    hits_k,
    message,
)
from dashboard.service import SwanService

log = logging.getLogger(__name__)

_PICK_HINT = "Click an entry on the map, or a row of a table, to see it here."


# -- choosing an entry -----------------------------------------------------------------
def entry_from_click(click_data: dict[str, Any] | None) -> int | None:
    """The entry id of a map click (the point's ``customdata``), or None."""
    points = (click_data or {}).get("points") or []
    if not points:
        return None
    value = points[0].get("customdata")
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def entry_from_cell(active_cell: dict[str, Any] | None) -> int | None:
    """The entry id of a clicked table cell (tables key rows by entry id)."""
    row_id = (active_cell or {}).get("row_id")
    try:
        return None if row_id is None else int(row_id)
    except (TypeError, ValueError):
        return None


def on_pick(
    trigger: str | None,
    click_data: dict[str, Any] | None = None,
    *active_cells: dict[str, Any] | None,
) -> Any:
    """Entry for ``entry-store`` from whichever input fired (``trigger`` is its
    component id: ``umap-graph`` or a table), or ``no_update``."""
    if trigger == "umap-graph":
        entry = entry_from_click(click_data)
    else:
        tables = ("selection-table", "hits-table", "similar-table")
        cells = dict(zip(tables, active_cells, strict=False))
        entry = entry_from_cell(cells.get(trigger))
    return no_update if entry is None else entry


# -- the panel -------------------------------------------------------------------------
def _fmt(value: Any, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}{unit}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v, "", digits) for v in value) + unit if value else "—"
    return f"{value}{unit}"


def metadata_view(row: dict[str, Any]) -> html.Div:
    """The entry's metadata as a definition list."""
    emdb = row.get("emdb_id")
    name: Any = emdb or f"entry {row['id']}"
    if emdb:
        number = str(emdb).split("-")[-1]
        name = html.A(
            emdb,
            href=f"https://www.ebi.ac.uk/emdb/EMD-{number}",
            target="_blank",
            rel="noopener",
        )
    contour = _fmt(row.get("contour"))
    if row.get("contour_source"):
        contour += f" ({row['contour_source']})"
    fields = [
        ("title", _fmt(row.get("title"))),
        ("method", _fmt(row.get("method"))),
        ("resolution", _fmt(row.get("resolution"), " Å")),
        ("organism", _fmt(row.get("organism"))),
        ("sample", _fmt(row.get("sample_name"))),
        ("released", _fmt(row.get("release_date"))),
        ("fitted models", _fmt(row.get("fitted_pdbs"))),
        ("voxel size", _fmt(row.get("voxel_size"), " Å")),
        ("box", _fmt(row.get("box"))),
        ("Rg", _fmt(row.get("rg"), " Å")),
        ("enclosed volume", _fmt(row.get("mol_volume"), " Å³")),
        ("contour", contour),
        ("label", _fmt(row.get("label"))),
    ]
    if row.get("simulated"):
        fields.append(("simulated", "yes: computed from a model, not an EMDB map"))
    items: list[Any] = []
    for key, value in fields:
        items += [
            html.Dt(key, style={"fontWeight": "600", "color": "#555"}),
            html.Dd(value, style={"margin": "0 0 0 0"}),
        ]
    return html.Div(
        [
            html.H4([name, f"  (store id {row['id']})"], style={"margin": "4px 0"}),
            html.Dl(
                items,
                style={
                    "display": "grid",
                    "gridTemplateColumns": "max-content 1fr",
                    "columnGap": "12px",
                    "rowGap": "2px",
                    "fontSize": "13px",
                    "margin": "6px 0",
                },
            ),
        ]
    )


def on_entry(service: SwanService, entry: int | None) -> tuple[Any, Any, Any]:
    """An entry was chosen: ``(detail-meta children, iso figure, c2f figure)``."""
    if entry is None:
        return message(_PICK_HINT), no_update, no_update
    try:
        row = service.entry(entry)
    except KeyError:
        return (
            message(f"entry {entry} is no longer in the store", error=True),
            (isosurface_figure(None)),
            coarse_to_fine_figure([]),
        )
    name = row.get("emdb_id") or f"entry {entry}"
    preview = service.preview(entry)
    iso = isosurface_figure(preview, ISO_LEVEL, title=f"{name}: stored preview")
    try:
        c2f = coarse_to_fine_figure(service.coarse_to_fine(entry), reference=preview)
    except Exception:  # noqa: BLE001 - a decode failure must not hide the rest
        log.exception("coarse-to-fine of entry %s failed", entry)
        c2f = coarse_to_fine_figure([])
    return metadata_view(row), iso, c2f


def on_similar(
    service: SwanService, entry: int | None, where: str | None = None, k: Any = 10
) -> tuple[list[dict[str, Any]], html.Div]:
    """The entry's most similar maps under the filter: ``(rows, message)``."""
    if entry is None:
        return [], message("")
    try:
        result = service.similar(entry, k=hits_k(k), where=where)
    except (KeyError, ValueError) as exc:
        return [], message(str(exc).strip("'\""), error=True)
    rows = hits_table_rows(result["hits"])
    text = f"{len(rows)} most similar maps (per-scale cosine; score also weighs size)"
    if where:
        text += f", filter: {where}"
    return rows, message(text)


def layout(service: SwanService) -> html.Div:
    """The detail panel (filled when an entry is chosen)."""
    graph_config = {"displaylogo": False}
    return html.Div(
        id="detail-panel",
        children=[
            html.H3("Entry", style=SECTION_TITLE),
            dcc.Loading(
                [
                    html.Div(message(_PICK_HINT), id="detail-meta"),
                    dcc.Graph(
                        id="iso-graph",
                        figure=placeholder_figure("3D view of the chosen entry"),
                        style={"height": "340px"},
                        config=graph_config,
                    ),
                ],
                type="dot",
            ),
            html.H4("Most similar maps", style={"margin": "8px 0 4px 0"}),
            html.Div(id="similar-message"),
            data_table("similar-table", hits_columns(service.store.encoder.scales)),
            html.H4(
                "Coarse to fine: decoded from the first 1, 2, … all scales",
                style={"margin": "12px 0 4px 0"},
            ),
            html.Div(
                "Each view is the entry's code decoded from its coarsest scales only, "
                "contoured to enclose the same volume as the stored preview: what "
                "each added scale contributes.",
                style={"fontSize": "12px", "color": "#666"},
            ),
            dcc.Loading(
                dcc.Graph(
                    id="c2f-graph",
                    figure=placeholder_figure("reconstructions of the chosen entry"),
                    style={"height": "300px"},
                    config=graph_config,
                ),
                type="dot",
            ),
        ],
        style=CARD,
    )


def register(app: Dash, service: SwanService) -> None:
    """The detail panel's callbacks, on ``app``."""

    @app.callback(
        Output("entry-store", "data"),
        Input("umap-graph", "clickData"),
        Input("selection-table", "active_cell"),
        Input("hits-table", "active_cell"),
        Input("similar-table", "active_cell"),
        prevent_initial_call=True,
    )
    def _pick(click_data, sel_cell, hits_cell, similar_cell):  # noqa: ANN001, ANN202
        return on_pick(ctx.triggered_id, click_data, sel_cell, hits_cell, similar_cell)

    @app.callback(
        Output("detail-meta", "children"),
        Output("iso-graph", "figure"),
        Output("c2f-graph", "figure"),
        Input("entry-store", "data"),
        prevent_initial_call=True,
    )
    def _entry(entry):  # noqa: ANN001, ANN202
        return on_entry(service, entry)

    @app.callback(
        Output("similar-table", "data"),
        Output("similar-message", "children"),
        Output("similar-table", "active_cell"),
        Input("entry-store", "data"),
        Input("where-store", "data"),
        State("k-input", "value"),
        prevent_initial_call=True,
    )
    def _similar(entry, where, k):  # noqa: ANN001, ANN202
        # A new table clears its clicked cell (so the same row can be clicked
        # again); with no entry there is nothing to clear.
        return (
            *on_similar(service, entry, where, k),
            None if entry is not None else no_update,
        )
