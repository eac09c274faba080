"""The entry detail panel: metadata, 3D isosurface of the stored preview, the most
similar maps with per-scale scores, and the coarse-to-fine reconstructions.

Component ids: ``detail-panel`` (the panel), ``detail-meta``, ``iso-graph``,
``similar-table``, ``similar-message``, ``c2f-graph``, and ``c2f-camera`` (the
store of the clientside callback that links the coarse-to-fine cameras).

An entry is chosen by clicking it on the map (a point, or a hit's numbered label),
or a row of the selection, hits or similar tables (:func:`on_pick` ->
``entry-store``). The panel then fills in three steps, each its own callback:
the metadata at once (:func:`on_entry_meta`), the preview's isosurface a moment
later (:func:`on_entry_preview`), the coarse-to-fine reconstructions when decoded
(:func:`on_entry_c2f`, seconds). Under them, :mod:`dashboard.pages.variations`
draws variations of the entry with the latent prior, on request.
"""

from __future__ import annotations

import logging
from typing import Any

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from dashboard.figures import annotation_entry, placeholder_figure
from dashboard.figures3d import (
    coarse_to_fine_figure,
    coarse_to_fine_height,
    isosurface_figure,
)
from dashboard.pages import variations
from dashboard.pages.common import (
    CARD,
    SECTION_TITLE,
    graph_config,
    hit_details,
    hits_data_table,
    hits_k,
    message,
)
from dashboard.preview import preview_view
from dashboard.service import SwanService
from dashboard.tables import emdb_url, hits_caption, hits_table_rows

log = logging.getLogger(__name__)

_PICK_HINT = (
    "Click an entry on the map, or a row of a table, or open one by its id above, "
    "to see it here."
)
_NOTE = {"fontSize": "12px", "color": "#666", "margin": "2px 0 6px 0"}

#: In the browser: a turn, zoom or pan of one coarse-to-fine scene is applied to
#: the others (Plotly has no linked 3D cameras). Listeners are put on the graph
#: once. While a scene is dragged, the others are turned directly (a relayout
#: then would end the drag); when the drag ends, one relayout records the camera
#: in every scene. Scenes already showing the camera are left alone, and the
#: changes the relayout causes are not passed on again.
LINK_CAMERAS_JS = """
function (relayout) {
    var nu = window.dash_clientside.no_update;
    var gd = document.querySelector('#c2f-graph .js-plotly-plot');
    if (!gd || !window.Plotly) { return nu; }
    var same = function (a, b) {
        return !!a && !!b && ['eye', 'center', 'up'].every(function (p) {
            return ['x', 'y', 'z'].every(function (c) {
                return Math.abs(((a[p] || {})[c] || 0) - ((b[p] || {})[c] || 0)) < 1e-6;
            });
        });
    };
    var moved = function (ev) {
        var key = Object.keys(ev || {}).find(function (k) {
            return /^scene\\d*\\.camera$/.test(k);
        });
        return key ? [key.split('.')[0], ev[key]] : null;
    };
    var others = function (from) {
        return Object.keys(gd._fullLayout || {}).filter(function (k) {
            return /^scene\\d*$/.test(k) && k !== from;
        });
    };
    var live = function (ev) {
        var m = moved(ev);
        if (!m || gd._swanSyncing) { return; }
        others(m[0]).forEach(function (k) {
            var scene = gd._fullLayout[k]._scene;
            if (scene && scene.setCamera) { scene.setCamera(m[1]); }
        });
    };
    var done = function (ev) {
        var m = moved(ev);
        if (!m || gd._swanSyncing) { return; }
        var update = {};
        others(m[0]).forEach(function (k) {
            if (!same((gd.layout[k] || {}).camera, m[1])) {
                update[k + '.camera'] = m[1];
            }
        });
        if (!Object.keys(update).length) { return; }
        gd.layout[m[0]] = gd.layout[m[0]] || {};
        gd.layout[m[0]].camera = m[1];  // or the relayout would turn it back
        gd._swanSyncing = true;
        window.Plotly.relayout(gd, update).finally(function () {
            gd._swanSyncing = false;
        });
    };
    if (!gd._swanLinked) {
        gd._swanLinked = true;
        gd.on('plotly_relayouting', live);
        gd.on('plotly_relayout', done);
        done(relayout);
    }
    return nu;
}
"""


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
    """Entry for ``entry-store`` from whichever input fired, or ``no_update``.

    Args:
        trigger: ``umap-graph`` (a point: ``click_data`` is its ``clickData``),
            ``umap-label`` (a hit's numbered label: ``click_data`` is the graph's
            ``clickAnnotationData``) or a table's id.
        click_data: the map's click.
        *active_cells: the selection, hits and similar tables' active cells.
    """
    if trigger == "umap-graph":
        entry = entry_from_click(click_data)
    elif trigger == "umap-label":
        entry = annotation_entry(click_data)
    else:
        tables = ("selection-table", "hits-table", "similar-table")
        cells = dict(zip(tables, active_cells, strict=False))
        entry = entry_from_cell(cells.get(trigger))
    return no_update if entry is None else entry


def unless_shown(entry: Any, shown: int | None) -> Any:
    """``entry`` for ``entry-store``, or ``no_update`` when it is the entry the
    panel already shows: choosing it again (its id typed again, its point
    clicked again) changes nothing, so the panel's views, similar entries and
    variations already drawn stay, and nothing is computed twice."""
    if entry is not no_update and shown is not None and entry == shown:
        return no_update
    return entry


def on_lookup(service: SwanService, text: str | None) -> tuple[Any, html.Div]:
    """The entry an id typed in the box names: ``(entry id or no_update,
    message)``.

    Args:
        service: the store's service.
        text: an EMDB id (``EMD-1832``, ``emd_1832``) or a store id (``12``).
    """
    text = (text or "").strip()
    if not text:
        return no_update, message("type an EMDB id (EMD-1832) or a store id", True)
    try:
        row = service.entry(text)
    except (KeyError, ValueError) as exc:
        return no_update, message(str(exc).strip("'\"") + "; check the id", True)
    return int(row["id"]), message("")


# -- the panel -------------------------------------------------------------------------
def _fmt(value: Any, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}{unit}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v, "", digits) for v in value) + unit if value else "—"
    return f"{value}{unit}"


def box_note(row: dict[str, Any]) -> str | None:
    """Why a preview may look cut flat: the density is longer along its long axis
    than the map's box is on its longest side, so the box most likely cuts the
    molecule (a membrane patch, a zoned segment).

    Args:
        row: the entry, with ``mol_extents`` and ``extent`` (Å).

    Returns:
        One line for the metadata, or None when the molecule fits its box or
        the sizes are unknown.
    """
    extents, box = row.get("mol_extents"), row.get("extent")
    try:
        longest, side = max(float(e) for e in extents), max(float(b) for b in box)
    except (TypeError, ValueError):
        return None
    if longest < side:
        return None
    return (
        f"its density spans the map's box ({longest:.0f} Å along its long axis, "
        f"box side {side:.0f} Å): the box most likely cuts the molecule, so the "
        "views show the part inside the box"
    )


def metadata_view(row: dict[str, Any]) -> html.Div:
    """The entry's metadata as a definition list."""
    emdb = row.get("emdb_id")
    url = emdb_url(emdb)
    name: Any = emdb or f"entry {row['id']}"
    if url:
        name = html.A(emdb, href=url, target="_blank", rel="noopener")
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
    note = box_note(row)
    if note:
        fields.append(("note", note))
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


def on_entry_meta(service: SwanService, entry: int | None) -> html.Div:
    """An entry was chosen: its metadata (a database read, shown at once).

    Args:
        service: the store's service.
        entry: the chosen entry id, or None.

    Returns:
        ``detail-meta``'s children: the metadata, a hint, or why it is gone.
    """
    if entry is None:
        return message(_PICK_HINT)
    try:
        return metadata_view(service.entry(entry))
    except KeyError:
        return message(f"entry {entry} is no longer in the store", error=True)


def on_entry_preview(service: SwanService, entry: int | None) -> Any:
    """An entry was chosen: the isosurface of its stored preview.

    Args:
        service: the store's service.
        entry: the chosen entry id, or None.

    Returns:
        ``iso-graph``'s figure (``no_update`` for no entry).
    """
    if entry is None:
        return no_update
    try:
        row = service.entry(entry)
        preview = service.preview(entry)
    except KeyError:
        return isosurface_figure(None)
    name = row.get("emdb_id") or f"entry {entry}"
    return preview_figure(preview, name, box_note(row) is not None)


def preview_figure(preview: Any, name: str, cut: bool = False) -> Any:
    """The isosurface of a stored preview as the panel shows it
    (:func:`dashboard.preview.preview_view`: in one piece where it can be, no
    specks), its title saying what was done and whether the box cuts it.

    Args:
        preview: the stored preview ``[g, g, g]``, or None.
        name: the entry's name for the title.
        cut: the map's box most likely cuts the molecule (:func:`box_note`).

    Returns:
        ``iso-graph``'s figure.
    """
    if preview is None:
        return isosurface_figure(None)
    view = preview_view(preview)
    notes = []
    if view.enclosed > 1.0:
        title = f"{name}: preview, contour lowered to join it"
        notes.append(f"enclosing {view.enclosed:.1f}× the map's contour volume")
    else:
        title = f"{name}: preview at the map's contour"
    if cut:
        notes.append("the map's box cuts the molecule: flat faces are the box's")
    if view.parts > 1:
        notes.append(f"{view.parts} separate parts at this level")
    if notes:
        title += "".join(f"<br><sub>{n}</sub>" for n in notes)
    return isosurface_figure(view.volume, level=view.level, title=title, smooth=0)


def on_entry_c2f(service: SwanService, entry: int | None) -> Any:
    """An entry was chosen: its coarse-to-fine reconstructions (decoded: seconds),
    contoured to enclose what its preview encloses.

    Args:
        service: the store's service.
        entry: the chosen entry id, or None.

    Returns:
        ``c2f-graph``'s figure (``no_update`` for no entry; an empty one that
        says so when the entry is gone or its decoding failed).
    """
    if entry is None:
        return no_update
    try:
        preview = service.preview(entry)
        volumes = service.coarse_to_fine(entry)
    except KeyError:
        return coarse_to_fine_figure([])
    except Exception:  # noqa: BLE001 - a decode failure must not break the panel
        log.exception("coarse-to-fine of entry %s failed", entry)
        return coarse_to_fine_figure([])
    return coarse_to_fine_figure(volumes, level=0.0, reference=preview)


def on_entry(service: SwanService, entry: int | None) -> tuple[Any, Any, Any]:
    """The whole panel at once, ``(metadata, preview figure, c2f figure)``: what
    the three callbacks give between them."""
    return (
        on_entry_meta(service, entry),
        on_entry_preview(service, entry),
        on_entry_c2f(service, entry),
    )


def on_similar(
    service: SwanService, entry: int | None, where: str | None = None, k: Any = 10
) -> tuple[list[dict[str, Any]], html.Div]:
    """The entry's most similar maps under the filter, the entry itself left
    out: ``(rows, message)``."""
    if entry is None:
        return [], message("")
    n = hits_k(k)
    try:  # one more than asked: the entry itself, which is left out
        result = service.similar(entry, k=n + 1, where=where)
    except (KeyError, ValueError) as exc:
        return [], message(str(exc).strip("'\""), error=True)
    others = [h for h in result["hits"] if h["id"] != int(entry)][:n]
    hits = [{**h, "rank": i} for i, h in enumerate(others, 1)]  # numbered anew
    rows = hits_table_rows(hits, hit_details(service, [h["id"] for h in hits]))
    maps = (
        "the most similar map" if len(rows) == 1 else f"{len(rows)} most similar maps"
    )
    text = maps
    if where:
        text += f", filter: {where}"
    text += f". {hits_caption(result.get('significance'))}"
    return rows, message(text)


def layout(service: SwanService) -> html.Div:
    """The detail panel (filled when an entry is chosen)."""
    scales = service.store.encoder.scales
    c2f_height = coarse_to_fine_height(len(scales))
    return html.Div(
        id="detail-panel",
        children=[
            html.H3("Entry", style=SECTION_TITLE),
            html.Div(
                [
                    dcc.Input(
                        id="entry-id-input",
                        type="text",
                        placeholder="EMDB id or store id, e.g. EMD-1832",
                        debounce=True,
                        maxLength=64,
                        style={"width": "260px", "marginRight": "6px"},
                    ),
                    html.Button("Open", id="entry-id-go", n_clicks=0),
                    html.Div(id="entry-id-message"),
                ],
                style={"marginBottom": "6px"},
            ),
            html.Div(message(_PICK_HINT), id="detail-meta"),
            dcc.Loading(
                dcc.Graph(
                    id="iso-graph",
                    figure=placeholder_figure("3D view of the chosen entry"),
                    style={"height": "340px"},
                    config=graph_config(),
                ),
                type="dot",
            ),
            html.Div(
                "The stored 32³ preview in the entry's canonical pose, lightly "
                "smoothed, contoured to enclose the volume the map's own contour "
                "encloses.",
                style=_NOTE,
            ),
            html.H4("Most similar maps", style={"margin": "8px 0 4px 0"}),
            html.Div(id="similar-message"),
            hits_data_table("similar-table", scales),
            html.H4(
                "Coarse to fine: decoded from the first 1, 2, … all scales",
                style={"margin": "12px 0 4px 0"},
            ),
            html.Div(
                "Each view is the entry's code decoded from its coarsest scales only, "
                "contoured to enclose the same volume as the preview: what each "
                "added scale contributes. All views share one scale and one camera: "
                "turn one and the others follow.",
                style=_NOTE,
            ),
            dcc.Loading(
                dcc.Graph(
                    id="c2f-graph",
                    figure=placeholder_figure("reconstructions of the chosen entry"),
                    style={"height": f"{c2f_height}px"},
                    config=graph_config(),
                ),
                type="dot",
            ),
            dcc.Store(id="c2f-camera"),
            *variations.layout(service),
        ],
        style=CARD,
    )


def register(app: Dash, service: SwanService) -> None:
    """The detail panel's callbacks (with its variations section's), on ``app``."""
    variations.register(app, service)

    @app.callback(
        Output("entry-store", "data"),
        Output("entry-id-message", "children"),
        Input("umap-graph", "clickData"),
        Input("umap-graph", "clickAnnotationData"),
        Input("selection-table", "active_cell"),
        Input("hits-table", "active_cell"),
        Input("similar-table", "active_cell"),
        Input("entry-id-go", "n_clicks"),
        Input("entry-id-input", "n_submit"),
        State("entry-id-input", "value"),
        State("entry-store", "data"),
        prevent_initial_call=True,
    )
    def _pick(
        click, label, sel_cell, hits_cell, similar_cell, go, submit, typed, shown
    ):  # noqa: ANN001, ANN202, PLR0913
        if ctx.triggered_id in ("entry-id-go", "entry-id-input"):
            entry, text = on_lookup(service, typed)
            return unless_shown(entry, shown), text
        on_label = "umap-graph.clickAnnotationData" in ctx.triggered_prop_ids
        trigger = "umap-label" if on_label else ctx.triggered_id
        cells = (sel_cell, hits_cell, similar_cell)
        entry = on_pick(trigger, label if on_label else click, *cells)
        return unless_shown(entry, shown), message("")

    @app.callback(
        Output("detail-meta", "children"),
        Input("entry-store", "data"),
        prevent_initial_call=True,
    )
    def _meta(entry):  # noqa: ANN001, ANN202
        return on_entry_meta(service, entry)

    @app.callback(
        Output("iso-graph", "figure"),
        Input("entry-store", "data"),
        prevent_initial_call=True,
    )
    def _preview(entry):  # noqa: ANN001, ANN202
        return on_entry_preview(service, entry)

    @app.callback(
        Output("c2f-graph", "figure"),
        Input("entry-store", "data"),
        prevent_initial_call=True,
    )
    def _c2f(entry):  # noqa: ANN001, ANN202
        return on_entry_c2f(service, entry)

    app.clientside_callback(
        LINK_CAMERAS_JS,
        Output("c2f-camera", "data"),
        Input("c2f-graph", "relayoutData"),
        prevent_initial_call=True,
    )

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
