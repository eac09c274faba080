"""Figure and table builders for the dashboard: pure functions of arrays.

Nothing here touches a store or Dash; the callbacks in :mod:`dashboard.pages` feed
these functions what they read, and the tests call them directly.

A *table* is what :meth:`swan_index.store.Store.entries` returns: a mapping of
column name to array, rows aligned, missing values masked (``np.ma``) or ``None``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

#: Categorical colourings draw one trace per category; beyond this many, the
#: rarest categories share one "other" trace (hundreds of WebGL traces are slow).
MAX_CATEGORIES = 20
#: The UMAP figure ends with this many overlay traces: search hits, then the
#: selected entry (always present, maybe empty, so a callback can patch them).
OVERLAY_TRACES = 2
#: Isosurface level of the stored previews and decoded volumes (both in [0, 1]).
ISO_LEVEL = 0.5

_PALETTE = qualitative.Dark24
_MISSING_COLOR = "#c8c8c8"
_OTHER_COLOR = "#8c8c8c"
_TEMPLATE = "plotly_white"


@dataclass(frozen=True)
class ColorField:
    """A way to colour the map: ``column`` of the entries table, shown as
    ``label``, ``kind`` ``"category"`` or ``"number"``."""

    column: str
    label: str
    kind: str


#: Colour-by choices (dropdown value -> field).
COLOR_FIELDS: dict[str, ColorField] = {
    "cluster": ColorField("cluster", "cluster", "category"),
    "resolution": ColorField("resolution", "resolution (Å)", "number"),
    "method": ColorField("method", "method", "category"),
    "organism": ColorField("organism", "organism", "category"),
    "release_year": ColorField("release_date", "release year", "number"),
    "label": ColorField("label", "label", "category"),
    "rg": ColorField("rg", "size: Rg (Å)", "number"),
}
#: Columns shown on hover.
HOVER_COLUMNS = ("emdb_id", "title", "method", "resolution")
#: Titles on hover are cut to this many characters (hover text is most of what a
#: 50,000-point map sends to the browser).
HOVER_TITLE_CHARS = 48
#: Points carry their name in ``text`` and details in ``hovertext``.
HOVER_TEMPLATE = "<b>%{text}</b><br>%{hovertext}<extra></extra>"


def umap_columns(color_by: str) -> tuple[str, ...]:
    """The entries columns :func:`umap_figure` needs to colour by ``color_by``."""
    field = _color_field(color_by)
    cols = ("id", "x", "y", *HOVER_COLUMNS)
    return cols if field.column in cols else (*cols, field.column)


def _color_field(color_by: str) -> ColorField:
    if color_by not in COLOR_FIELDS:
        raise ValueError(f"colour by {color_by!r}: choose from {list(COLOR_FIELDS)}")
    return COLOR_FIELDS[color_by]


# -- column helpers --------------------------------------------------------------------
def _missing(values: Any) -> np.ndarray:
    """Boolean mask of missing values (masked, None, NaN, NaT)."""
    mask = np.ma.getmaskarray(values).copy()
    data = np.ma.getdata(values)
    if data.dtype.kind == "f":
        mask |= np.isnan(data)
    elif data.dtype.kind == "M":
        mask |= np.isnat(data)
    elif data.dtype.kind == "O":
        mask |= np.array(
            [v is None or (isinstance(v, float) and math.isnan(v)) for v in data], bool
        )
    return mask


def _column(table: Mapping[str, Any], name: str, n: int) -> np.ndarray:
    """A column as a (possibly masked) array; all-missing when absent."""
    if name not in table:
        return np.ma.masked_all(n, object)
    values = table[name]
    return values if isinstance(values, np.ndarray) else np.asarray(values, object)


def _years(values: Any) -> np.ndarray:
    """Release year (float, NaN when missing) from dates, datetimes or strings."""
    missing = _missing(values)
    data = np.ma.getdata(values)
    out = np.full(len(data), np.nan)
    if data.dtype.kind == "M":
        years = data.astype("datetime64[Y]").astype(np.int64) + 1970
        out[~missing] = years[~missing]
        return out
    for i, v in enumerate(data):
        if missing[i]:
            continue
        if isinstance(v, np.datetime64):
            v = v.astype("datetime64[D]").item()
        if isinstance(v, dt.date):
            out[i] = v.year
        else:
            try:
                out[i] = int(str(v)[:4])
            except ValueError:
                pass
    return out


def _numbers(values: Any, column: str) -> np.ndarray:
    """A numeric colour column as float with NaN for missing."""
    if column == "release_date":
        return _years(values)
    missing = _missing(values)
    out = np.full(len(missing), np.nan)
    data = np.ma.getdata(values)
    for i in np.flatnonzero(~missing):
        try:
            out[i] = float(data[i])
        except (TypeError, ValueError):
            pass
    return out


def _categories(values: Any, column: str) -> np.ndarray:
    """Category names (str, object array); missing -> "unknown", cluster -1 ->
    "noise"."""
    missing = _missing(values)
    data = np.ma.getdata(values)
    out = np.empty(len(data), object)
    for i, v in enumerate(data):
        if missing[i]:
            out[i] = "unknown"
        elif column == "cluster":
            out[i] = "noise" if int(v) < 0 else f"cluster {int(v)}"
        else:
            out[i] = str(v)
    return out


def _hover_texts(
    table: Mapping[str, Any], rows: np.ndarray
) -> tuple[list[str], list[str]]:
    """Hover text of each of ``rows``: the name (EMDB id, or entry id) for the
    points' ``text`` and the details (title cut at :data:`HOVER_TITLE_CHARS`,
    method, resolution) for their ``hovertext``; :data:`HOVER_TEMPLATE` joins
    them. Kept apart so the bold markup is in the template once, not per point
    (hover text is most of what a 50,000-point map sends)."""
    n = len(table["id"])
    ids = np.ma.getdata(table["id"])[rows]
    cols = {}
    for c in HOVER_COLUMNS:
        values = _column(table, c, n)[rows]
        cols[c] = np.where(_missing(values), None, np.ma.getdata(values))
    names, details = [], []
    for i, name, title, method, res in zip(
        ids, *(cols[c] for c in HOVER_COLUMNS), strict=True
    ):
        names.append(name or f"entry {i}")
        res = "resolution ?" if res is None else f"{float(res):.2f} Å"
        line = f"{method or 'method ?'}, {res}"
        if title:
            cut = len(title) > HOVER_TITLE_CHARS
            title = title[: HOVER_TITLE_CHARS - 1] + "…" if cut else title
            line = f"{title}<br>{line}"
        details.append(line)
    return names, details


def _ids_list(ids: np.ndarray) -> list[int]:
    """Entry ids for ``customdata``, as a plain list: plotly.js leaves typed-array
    ``customdata`` (what plotly.py makes of a numpy array) out of click and
    selection events, and those events are how the app maps points to entries."""
    return np.asarray(ids, np.int64).tolist()


def _message(text: str) -> dict[str, Any]:
    """A centred annotation (for figures with nothing to draw)."""
    return dict(
        text=text,
        showarrow=False,
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        font=dict(size=14, color="#666666"),
    )


def placeholder_figure(text: str, height: int | None = None) -> go.Figure:
    """An empty figure that only says ``text`` (before anything is chosen)."""
    fig = go.Figure()
    fig.update_layout(
        template=_TEMPLATE,
        xaxis=dict(visible=False),
        yaxis=dict(visible=False),
        margin=dict(l=0, r=0, t=10, b=0),
        height=height,
    )
    fig.add_annotation(**_message(text))
    return fig


def _marker_size(n: int) -> int:
    return 9 if n < 1_000 else 6 if n < 10_000 else 4


# -- the UMAP map ----------------------------------------------------------------------
def overlay_traces(
    table: Mapping[str, Any],
    highlight_ids: Sequence[int] | None = None,
    selected_ids: Sequence[int] | None = None,
) -> list[go.Scattergl]:
    """The two overlay traces of the map: search hits (stars, in rank order) and
    the selected entry (a ring). Ids without a layout in ``table`` are left out.

    Args:
        table: entries with at least ``id``, ``x``, ``y`` (hover columns used
            when present).
        highlight_ids: search hits, best first.
        selected_ids: the entry (or entries) shown in the detail panel.
    """
    n = len(table["id"])
    ids = np.asarray(np.ma.getdata(table["id"]), np.int64)
    placed = ~(_missing(_column(table, "x", n)) | _missing(_column(table, "y", n)))
    row_of = {int(i): r for r, i in enumerate(ids) if placed[r]}
    x = np.ma.getdata(_column(table, "x", n))
    y = np.ma.getdata(_column(table, "y", n))
    traces = []
    for name, wanted, marker in (
        (
            "search hits",
            highlight_ids,
            dict(
                symbol="star",
                size=16,
                color="#ffd60a",
                line=dict(color="#000000", width=1.5),
            ),
        ),
        (
            "selected entry",
            selected_ids,
            dict(
                symbol="circle-open",
                size=22,
                color="#000000",
                line=dict(color="#000000", width=3),
            ),
        ),
    ):
        rows = np.array(
            [row_of[int(i)] for i in (wanted or []) if int(i) in row_of], np.int64
        )
        names, details = _hover_texts(table, rows)
        if name == "search hits":
            names = [f"hit {k + 1}: {t}" for k, t in enumerate(names)]
        traces.append(
            go.Scattergl(
                x=np.asarray(x[rows], np.float32),
                y=np.asarray(y[rows], np.float32),
                mode="markers",
                name=name,
                marker=marker,
                customdata=_ids_list(ids[rows]),
                text=names,
                hovertext=details,
                hovertemplate=HOVER_TEMPLATE,
                showlegend=bool(len(rows)),
            )
        )
    return traces


def umap_figure(
    table: Mapping[str, Any],
    color_by: str = "cluster",
    highlight_ids: Sequence[int] | None = None,
    selected_ids: Sequence[int] | None = None,
) -> go.Figure:
    """The archive as a WebGL scatter of its stored UMAP layout.

    Entries without a layout (``x``/``y`` missing) are not plotted. Categorical
    fields give one trace per category (the :data:`MAX_CATEGORIES` - 1 commonest;
    the rest share "other"; missing values are "unknown", cluster -1 "noise", drawn
    first, in grey); numeric fields one trace on a continuous colour scale (plus a
    grey "no value" trace). The last :data:`OVERLAY_TRACES` traces are the overlays
    of :func:`overlay_traces`. Every point's ``customdata`` is its entry id.

    Args:
        table: entries columns from :func:`umap_columns`.
        color_by: a key of :data:`COLOR_FIELDS`.
        highlight_ids: search hits to mark, best first.
        selected_ids: entries to ring (the one in the detail panel).

    Raises:
        ValueError: unknown ``color_by``.
    """
    field = _color_field(color_by)
    n = len(table["id"])
    ids = np.asarray(np.ma.getdata(table["id"]), np.int64)
    xs, ys = _column(table, "x", n), _column(table, "y", n)
    placed = np.flatnonzero(~(_missing(xs) | _missing(ys)))
    x = np.asarray(np.ma.getdata(xs), np.float64)
    y = np.asarray(np.ma.getdata(ys), np.float64)
    size = _marker_size(len(placed))
    hover_names, hover_details = (
        np.array(h, object) for h in _hover_texts(table, placed)
    )
    values = _column(table, field.column, n)

    def scatter(rows: np.ndarray, name: str, marker: dict, **kw: Any) -> go.Scattergl:
        where = np.searchsorted(placed, rows)
        return go.Scattergl(
            x=np.asarray(x[rows], np.float32),
            y=np.asarray(y[rows], np.float32),
            mode="markers",
            name=name,
            marker=dict(size=size, **marker),
            customdata=_ids_list(ids[rows]),
            text=hover_names[where].tolist(),
            hovertext=hover_details[where].tolist(),
            hovertemplate=HOVER_TEMPLATE,
            **kw,
        )

    traces = []
    if field.kind == "number":
        nums = _numbers(values, field.column)[placed]
        known = ~np.isnan(nums)
        if np.any(~known):
            traces.append(
                scatter(placed[~known], "no value", {"color": _MISSING_COLOR})
            )
        if np.any(known):
            traces.append(
                scatter(
                    placed[known],
                    field.label,
                    {
                        "color": nums[known],
                        "colorscale": "Viridis",
                        "colorbar": {"title": {"text": field.label}, "thickness": 14},
                        "showscale": True,
                    },
                    showlegend=False,
                )
            )
    else:
        cats = _categories(values, field.column)[placed]
        grey = {"unknown": _MISSING_COLOR, "noise": _MISSING_COLOR}
        names, counts = np.unique(cats, return_counts=True)
        named = [(c, k) for c, k in zip(names, counts, strict=True) if c not in grey]
        named.sort(key=lambda ck: (-ck[1], _category_key(ck[0])))
        keep = [c for c, _ in named[: MAX_CATEGORIES - 1]]
        if len(named) == MAX_CATEGORIES:  # room for the last one: no "other"
            keep.append(named[-1][0])
        if field.column == "cluster":
            keep.sort(key=_category_key)
        for name in (g for g in grey if g in names):
            rows = placed[cats == name]
            traces.append(scatter(rows, name, {"color": grey[name], "opacity": 0.6}))
        for j, name in enumerate(keep):
            rows = placed[cats == name]
            label = name if len(name) <= 40 else name[:37] + "..."
            color = _PALETTE[j % len(_PALETTE)]
            traces.append(scatter(rows, f"{label} ({len(rows)})", {"color": color}))
        other = ~np.isin(cats, [*keep, *grey])
        if np.any(other):
            n_other = len(named) - len(keep)
            traces.append(
                scatter(
                    placed[other],
                    f"other ({n_other} {field.label} values)",
                    {"color": _OTHER_COLOR},
                )
            )
    traces.extend(overlay_traces(table, highlight_ids, selected_ids))
    fig = go.Figure(traces)
    fig.update_layout(
        template=_TEMPLATE,
        uirevision="umap",  # keeps zoom and pan when recoloured or filtered
        dragmode="select",
        hovermode="closest",
        margin=dict(l=10, r=10, t=30, b=10),
        legend=dict(title={"text": field.label}, itemsizing="constant"),
        xaxis=dict(title="UMAP 1", showticklabels=False, zeroline=False),
        yaxis=dict(title="UMAP 2", showticklabels=False, zeroline=False),
    )
    if not len(placed):
        text = (
            "No entries to show"
            if n == 0
            else f"{n} entries have no layout yet: run `swan layout --store STORE`"
        )
        fig.add_annotation(**_message(text))
    return fig


def _category_key(name: str) -> tuple:
    """Sort "cluster 10" after "cluster 9"."""
    head, _, tail = name.rpartition(" ")
    return (head, int(tail), "") if tail.isdigit() else (name, -1, name)


# -- 3D views --------------------------------------------------------------------------
def _mesh(volume: np.ndarray | None, level: float, color: str) -> go.Mesh3d | None:
    """Marching-cubes isosurface of ``volume`` ``[z, y, x]`` at ``level`` as a
    Mesh3d (x, y, z in voxels), or None when there is no surface."""
    from skimage.measure import marching_cubes

    if volume is None:
        return None
    vol = np.asarray(volume, np.float32)
    if vol.ndim != 3 or min(vol.shape) < 2 or not np.all(np.isfinite(vol)):
        return None
    if not (vol.min() < level < vol.max()):
        return None
    verts, faces, _, _ = marching_cubes(vol, level)
    return go.Mesh3d(
        x=verts[:, 2].astype(np.float32),
        y=verts[:, 1].astype(np.float32),
        z=verts[:, 0].astype(np.float32),
        i=faces[:, 0].astype(np.int32),
        j=faces[:, 1].astype(np.int32),
        k=faces[:, 2].astype(np.int32),
        color=color,
        flatshading=False,
        lighting=dict(ambient=0.35, diffuse=0.8, specular=0.25, roughness=0.6),
        lightposition=dict(x=100, y=200, z=150),
        hoverinfo="skip",
        showscale=False,
    )


_SCENE = dict(
    aspectmode="data",
    xaxis=dict(visible=False),
    yaxis=dict(visible=False),
    zaxis=dict(visible=False),
    camera=dict(eye=dict(x=1.5, y=1.5, z=1.0)),
)
#: The coarse-to-fine scenes are narrow: the camera stands further back.
_NARROW_SCENE = {**_SCENE, "camera": dict(eye=dict(x=2.1, y=2.1, z=1.4))}


def isosurface_figure(
    volume: np.ndarray | None,
    level: float = ISO_LEVEL,
    title: str | None = None,
    color: str = "#4c78a8",
) -> go.Figure:
    """The 3D isosurface of a volume (a stored preview, ``[g, g, g]`` in [0, 1]).

    A missing volume, or one with no surface at ``level``, gives an empty figure
    that says so (never an exception).
    """
    mesh = _mesh(volume, level, color)
    fig = go.Figure([] if mesh is None else [mesh])
    fig.update_layout(
        template=_TEMPLATE,
        title={"text": title or "", "x": 0.5},
        scene=_SCENE,
        margin=dict(l=0, r=0, t=40 if title else 10, b=0),
        uirevision="iso",
    )
    if mesh is None:
        why = "no preview stored" if volume is None else f"no surface at level {level}"
        fig.add_annotation(**_message(why))
    return fig


def matched_levels(
    volumes: Sequence[np.ndarray],
    level: float = ISO_LEVEL,
    reference: np.ndarray | None = None,
) -> list[float]:
    """Per volume, the level that encloses as many voxels as ``reference`` (default:
    the last volume) does at ``level``.

    Reconstructions from the coarse scales alone are blurred and fainter, so one
    fixed level shows them empty; matching the enclosed volume (as cryo-EM maps are
    compared) shows the shape each keeps instead. A reference with nothing above
    ``level`` leaves every level at ``level``.
    """
    if not len(volumes):
        return []
    ref = np.asarray(volumes[-1] if reference is None else reference, np.float32)
    inside = float(np.mean(ref > level))
    if inside <= 0.0 or inside >= 1.0:
        return [float(level)] * len(volumes)
    return [
        float(np.quantile(np.asarray(v, np.float32), 1.0 - inside)) for v in volumes
    ]


def coarse_to_fine_figure(
    volumes: Sequence[np.ndarray],
    level: float = ISO_LEVEL,
    match_volume: bool = True,
    reference: np.ndarray | None = None,
) -> go.Figure:
    """An entry reconstructed from its first 1, 2, ... all scales, side by side:
    one 3D scene per reconstruction, titled "1 scale", "2 scales", ...

    Args:
        volumes: ``[g, g, g]`` volumes in [0, 1], coarsest reconstruction first.
        level: isosurface level (of ``reference``, when volumes are matched).
        match_volume: contour each volume at the level enclosing the same volume
            as ``reference`` at ``level`` (:func:`matched_levels`); else at
            ``level``.
        reference: the volume whose enclosed volume is matched (default: the
            last, all-scale reconstruction; the app passes the stored preview).
    """
    n = len(volumes)
    if n == 0:
        fig = go.Figure()
        fig.update_layout(template=_TEMPLATE)
        fig.add_annotation(**_message("no reconstruction"))
        return fig
    levels = (
        matched_levels(volumes, level, reference)
        if match_volume
        else [float(level)] * n
    )
    meshes = [_mesh(v, lv, "#e45756") for v, lv in zip(volumes, levels, strict=True)]
    titles = [
        f"{s} scale{'s' if s > 1 else ''}" + ("" if m is not None else " (empty)")
        for s, m in enumerate(meshes, start=1)
    ]
    fig = make_subplots(
        rows=1,
        cols=n,
        specs=[[{"type": "scene"}] * n],
        subplot_titles=titles,
        horizontal_spacing=0.01,
    )
    for col, mesh in enumerate(meshes, start=1):
        if mesh is not None:
            fig.add_trace(mesh, row=1, col=col)
    fig.update_layout(
        template=_TEMPLATE,
        margin=dict(l=0, r=0, t=30, b=0),
        height=300,
        uirevision="c2f",
        meta={"levels": [round(lv, 4) for lv in levels]},
        **{f"scene{'' if c == 1 else c}": _NARROW_SCENE for c in range(1, n + 1)},
    )
    return fig


# -- tables ----------------------------------------------------------------------------
def _num(value: Any, digits: int = 3) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else round(f, digits)


def hits_table_rows(hits: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows for a hits table from search hits (``Hit.to_dict()`` dicts).

    Each row: ``rank``, ``id``, ``emdb_id``, ``score``, ``scale_<side>`` (the
    cosine at each scale, coarse to fine), ``fit`` (the best correlation over
    rotations, when the hit was re-scored), ``size`` (``ln(rg_query / rg_entry)``,
    when known), ``title``, ``method``, ``resolution``. Numbers are rounded to 3
    digits.
    """
    rows = []
    for h in hits:
        scores = dict(h.get("scores") or {})
        row: dict[str, Any] = {
            "rank": int(h["rank"]),
            "id": int(h["id"]),
            "emdb_id": h.get("emdb_id"),
            "score": _num(h.get("score")),
        }
        for key in sorted((k for k in scores if k.isdigit()), key=int):
            row[f"scale_{key}"] = _num(scores[key])
        if "fit" in scores:
            row["fit"] = _num(scores["fit"])
        if "size" in scores:
            row["size"] = _num(scores["size"])
        row["title"] = h.get("title")
        row["method"] = h.get("method")
        row["resolution"] = _num(h.get("resolution"), 2)
        rows.append(row)
    return rows


_COLUMN_NAMES = {
    "rank": "#",
    "id": "id",
    "emdb_id": "EMDB",
    "score": "score",
    "fit": "fit (all rotations)",
    "size": "size ln(Rg ratio)",
    "title": "title",
    "method": "method",
    "resolution": "resolution (Å)",
    "organism": "organism",
    "release_date": "released",
    "cluster": "cluster",
    "label": "label",
    "rg": "Rg (Å)",
}


def table_columns(
    rows: Sequence[Mapping[str, Any]], default: Sequence[str] = ()
) -> list[dict[str, str]]:
    """DataTable ``columns`` for ``rows`` (the keys of the first row, in order;
    ``default`` when there are no rows)."""
    columns = []
    for key in list(rows[0]) if rows else list(default):
        if key.startswith("scale_"):
            columns.append({"name": f"scale {key[6:]}³", "id": key, "type": "numeric"})
            continue
        column = {"name": _COLUMN_NAMES.get(key, key), "id": key}
        if key in ("score", "fit", "size", "resolution", "rg"):
            column["type"] = "numeric"
        columns.append(column)
    return columns


def table_rows(
    table: Mapping[str, Any], columns: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Row dicts (JSON-ready: missing -> None, dates -> ISO text, floats rounded)
    from a columnar entries table."""
    columns = list(table) if columns is None else list(columns)
    n = len(table["id"]) if "id" in table else len(next(iter(table.values()), []))
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for c in columns:
        values = _column(table, c, n)
        missing = _missing(values)
        data = np.ma.getdata(values)
        if data.dtype.kind == "M":
            data = data.astype("datetime64[D]").astype(str)
        for r in range(n):
            v = None if missing[r] else data[r]
            if isinstance(v, np.generic):
                v = v.item()
            if isinstance(v, float):
                v = round(v, 3)
            elif isinstance(v, dt.date):
                v = v.isoformat()[:10]
            elif isinstance(v, (list, tuple, np.ndarray)):
                v = ", ".join(str(x) for x in v)
            out[r][c] = v
    return out
