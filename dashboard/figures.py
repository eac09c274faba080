"""Figure builders of the dashboard's archive map (the UMAP scatter, its
colourings and legends, the search hits' numbered labels) and placeholders: pure
functions of arrays. The 3D views are in :mod:`dashboard.figures3d`.

Nothing here touches a store or Dash; the callbacks in :mod:`dashboard.pages` feed
these functions what they read, and the tests call them directly.

They read *tables* as :mod:`dashboard.tables` defines them (what
:meth:`swan_index.store.Store.entries` returns); the rows of the DataTables are
built there.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative

from dashboard.tables import column, missing

#: Categorical colourings draw one trace per category; beyond this many, the
#: rarest categories share one "other" trace (hundreds of WebGL traces are slow).
MAX_CATEGORIES = 20
#: The UMAP figure ends with this many overlay traces: search hits, then the
#: selected entry (always present, maybe empty, so a callback can patch them).
OVERLAY_TRACES = 2

_PALETTE = qualitative.Dark24
_MISSING_COLOR = "#c8c8c8"
_OTHER_COLOR = "#8c8c8c"
TEMPLATE = "plotly_white"


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
#: Whether plotly.py checks every value of the map's figure (its ``_validate``
#: switch). It does not: the checks walked every one of the 50,000 names, hover
#: texts and ids (three quarters of the map callback's time) to accept what this
#: module builds anyway. What is sent is the same (``tests/test_figures.py``
#: checks it against a validated copy).
VALIDATE = False
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
def _years(values: Any) -> np.ndarray:
    """Release year (float, NaN when missing) from dates, datetimes or strings."""
    absent = missing(values)
    data = np.ma.getdata(values)
    out = np.full(len(data), np.nan)
    if data.dtype.kind == "M":
        years = data.astype("datetime64[Y]").astype(np.int64) + 1970
        out[~absent] = years[~absent]
        return out
    for i, v in enumerate(data):
        if absent[i]:
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


def _numbers(values: Any, name: str) -> np.ndarray:
    """A numeric colour column as float with NaN for missing."""
    if name == "release_date":
        return _years(values)
    absent = missing(values)
    out = np.full(len(absent), np.nan)
    data = np.ma.getdata(values)
    for i in np.flatnonzero(~absent):
        try:
            out[i] = float(data[i])
        except (TypeError, ValueError):
            pass
    return out


def _categories(values: Any, name: str) -> np.ndarray:
    """Category names (str, object array); missing -> "unknown", cluster -1 ->
    "noise"."""
    absent = missing(values)
    data = np.ma.getdata(values)
    out = np.empty(len(data), object)
    for i, v in enumerate(data):
        if absent[i]:
            out[i] = "unknown"
        elif name == "cluster":
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
        values = column(table, c, n)[rows]
        cols[c] = np.where(missing(values), None, np.ma.getdata(values))
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


def message_annotation(text: str) -> dict[str, Any]:
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
        template=TEMPLATE,
        xaxis=dict(visible=False),
        yaxis=dict(visible=False),
        margin=dict(l=0, r=0, t=10, b=0),
        height=height,
    )
    fig.add_annotation(**message_annotation(text))
    return fig


def _marker_size(n: int) -> int:
    return 9 if n < 1_000 else 6 if n < 10_000 else 4


# -- the UMAP map ----------------------------------------------------------------------
def _placed_rows(
    table: Mapping[str, Any], wanted: Sequence[int] | None
) -> tuple[np.ndarray, list[int]]:
    """Rows of ``table`` holding the ``wanted`` ids that have a layout, in the
    order wanted, and each one's 1-based position in ``wanted`` (its rank)."""
    n = len(table["id"])
    ids = np.asarray(np.ma.getdata(table["id"]), np.int64)
    placed = ~(missing(column(table, "x", n)) | missing(column(table, "y", n)))
    row_of = {int(i): r for r, i in enumerate(ids) if placed[r]}
    pairs = [
        (row_of[int(i)], rank)
        for rank, i in enumerate(wanted or [], start=1)
        if int(i) in row_of
    ]
    return np.array([r for r, _ in pairs], np.int64), [k for _, k in pairs]


#: Hit labels, in fractions of the map's width and height at its first view: the
#: least distance between two labels, and between a label and a hit's point; the
#: rings a label may stand on around its point (first radius, step, how many).
LABEL_GAP = 0.055
LABEL_CLEAR = 0.03
LABEL_RINGS = (0.06, 0.035, 12)


def map_extent(table: Mapping[str, Any]) -> tuple[float, float, float, float]:
    """The span of the placed entries of ``table`` (what the map's axes show at
    first).

    Args:
        table: entries with ``id``, ``x``, ``y``.

    Returns:
        ``(x0, x1, y0, y1)``; a square around 0 when nothing is placed.
    """
    n = len(table["id"])
    xs, ys = column(table, "x", n), column(table, "y", n)
    ok = ~(missing(xs) | missing(ys))
    if not np.any(ok):
        return (-1.0, 1.0, -1.0, 1.0)
    x = np.asarray(np.ma.getdata(xs)[ok], np.float64)
    y = np.asarray(np.ma.getdata(ys)[ok], np.float64)
    return (float(x.min()), float(x.max()), float(y.min()), float(y.max()))


def _label_spots(points: np.ndarray) -> np.ndarray:
    """Where the labels of ``points`` (``[n, 2]``, in fractions of the map, rank
    order) stand: for each in turn, the first place on the rings around its
    point, clockwise from the top, that is :data:`LABEL_GAP` from every label
    placed before, :data:`LABEL_CLEAR` from every point and inside the map.

    Laid out greedily rather than by a label-placement library: the ones for
    plots (e.g. adjustText) need matplotlib, and a hundred labels need no more.
    """
    first, step, rings = LABEL_RINGS
    angles = -np.pi / 2 + np.arange(16) * (2 * np.pi / 16)
    spots: list[np.ndarray] = []
    for p in points:
        best, best_room = None, -1.0
        for ring in range(rings):
            radius = first + ring * step
            cand = p + radius * np.stack([np.cos(angles), -np.sin(angles)], 1)
            inside = np.all((cand > -0.02) & (cand < 1.02), axis=1)
            d_pts = np.linalg.norm(cand[:, None] - points[None], axis=-1).min(1)
            d_lab = (
                np.linalg.norm(cand[:, None] - np.array(spots)[None], axis=-1).min(1)
                if spots
                else np.full(len(cand), np.inf)
            )
            room = np.minimum(d_lab / LABEL_GAP, d_pts / LABEL_CLEAR)
            room[~inside] = -1.0
            free = np.flatnonzero(room >= 1.0)
            if len(free):
                best = cand[free[0]]
                break
            if room.max() > best_room:  # the roomiest place, if none is free
                best, best_room = cand[int(room.argmax())], float(room.max())
        spots.append(best)
    return np.array(spots).reshape(-1, 2)


def hit_annotations(
    table: Mapping[str, Any],
    highlight_ids: Sequence[int] | None,
    extent: tuple[float, float, float, float] | None = None,
) -> list[dict[str, Any]]:
    """Numbered labels of the search hits: one annotation per placed hit, its rank
    in a yellow box joined by a line to the hit's point, with its own hover (rank,
    name, title, method, resolution). Labels stand in data coordinates, apart from
    each other and from the points (:func:`_label_spots`), so ten hits at one
    spot show ten numbers, and zooming in only spreads them further.

    A click on a label is a ``clickAnnotationData`` event whose annotation's
    ``name`` is ``"hit:<entry id>"`` (:func:`annotation_entry`).

    Args:
        table: entries with at least ``id``, ``x``, ``y`` (hover columns used
            when present).
        highlight_ids: search hits, best first.
        extent: the map's span (:func:`map_extent` of everything it shows);
            default: the span of ``table``.

    Returns:
        Layout annotations (dicts), in rank order.
    """
    rows, ranks = _placed_rows(table, highlight_ids)
    n = len(table["id"])
    ids = np.asarray(np.ma.getdata(table["id"]), np.int64)
    x = np.asarray(np.ma.getdata(column(table, "x", n)), np.float64)[rows]
    y = np.asarray(np.ma.getdata(column(table, "y", n)), np.float64)[rows]
    x0, x1, y0, y1 = extent or map_extent(table)
    sx, sy = max(x1 - x0, 1e-9), max(y1 - y0, 1e-9)
    spots = _label_spots(np.stack([(x - x0) / sx, (y - y0) / sy], axis=1))
    names, details = _hover_texts(table, rows)
    out = []
    for j, (r, rank) in enumerate(zip(rows, ranks, strict=True)):
        out.append(
            dict(
                x=float(x[j]),
                y=float(y[j]),
                xref="x",
                yref="y",
                ax=float(x0 + spots[j, 0] * sx),
                ay=float(y0 + spots[j, 1] * sy),
                axref="x",
                ayref="y",
                text=f"<b>{rank}</b>",
                name=f"hit:{int(ids[r])}",
                showarrow=True,
                arrowhead=0,
                arrowwidth=1.2,
                arrowcolor="#333333",
                standoff=3,
                bgcolor="#ffd60a",
                bordercolor="#000000",
                borderwidth=1,
                borderpad=2,
                font=dict(size=11, color="#000000"),
                hovertext=f"<b>hit {rank}: {names[j]}</b><br>{details[j]}",
                captureevents=True,
            )
        )
    return out


def annotation_entry(click: Mapping[str, Any] | None) -> int | None:
    """The entry id of a click on a hit's label.

    Args:
        click: the map's ``clickAnnotationData`` (its ``annotation`` is the
            clicked label, named ``"hit:<entry id>"`` by :func:`hit_annotations`).

    Returns:
        The entry id, or None for any other annotation or no click.
    """
    name = str(((click or {}).get("annotation") or {}).get("name") or "")
    head, _, tail = name.partition(":")
    return int(tail) if head == "hit" and tail.isdigit() else None


def overlay_traces(
    table: Mapping[str, Any],
    highlight_ids: Sequence[int] | None = None,
    selected_ids: Sequence[int] | None = None,
) -> list[go.Scattergl]:
    """The two overlay traces of the map: search hits (small stars at their
    points, in rank order; their numbers and hovers are the labels of
    :func:`hit_annotations`) and the selected entry (a ring). Ids without a
    layout in ``table`` are left out.

    Args:
        table: entries with at least ``id``, ``x``, ``y`` (hover columns used
            when present).
        highlight_ids: search hits, best first.
        selected_ids: the entry (or entries) shown in the detail panel.
    """
    n = len(table["id"])
    ids = np.asarray(np.ma.getdata(table["id"]), np.int64)
    x = np.ma.getdata(column(table, "x", n))
    y = np.ma.getdata(column(table, "y", n))
    hits = dict(
        symbol="star", size=12, color="#ffd60a", line=dict(color="#000000", width=1)
    )
    ring = dict(symbol="circle-open", size=22, color="#000000", line=dict(width=3))
    traces = []
    for name, wanted, marker in (
        ("search hits", highlight_ids, hits),
        ("selected entry", selected_ids, ring),
    ):
        rows, ranks = _placed_rows(table, wanted)
        names, details = _hover_texts(table, rows)
        if name == "search hits":  # hovers on the numbered labels instead: a hit
            # under another point would show that point's hover (WebGL picks it)
            names = [f"hit {k}: {t}" for k, t in zip(ranks, names, strict=True)]
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
                hoverinfo="skip" if name == "search hits" else None,
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
    xs, ys = column(table, "x", n), column(table, "y", n)
    placed = np.flatnonzero(~(missing(xs) | missing(ys)))
    x = np.asarray(np.ma.getdata(xs), np.float64)
    y = np.asarray(np.ma.getdata(ys), np.float64)
    size = _marker_size(len(placed))
    # numpy strings, not lists: plotly.py deep-copies every trace's values, a
    # list item by item, an array at once (the JSON is the same)
    hover_names, hover_details = (
        np.array(h, dtype=str) for h in _hover_texts(table, placed)
    )
    values = column(table, field.column, n)

    def scatter(rows: np.ndarray, name: str, marker: dict, **kw: Any) -> go.Scattergl:
        where = np.searchsorted(placed, rows)
        return go.Scattergl(  # not validated: see VALIDATE
            x=np.asarray(x[rows], np.float32),
            y=np.asarray(y[rows], np.float32),
            mode="markers",
            name=name,
            marker=dict(size=size, **marker),
            customdata=_ids_list(ids[rows]),
            text=hover_names[where],
            hovertext=hover_details[where],
            hovertemplate=HOVER_TEMPLATE,
            _validate=VALIDATE,
            **kw,
        )

    traces = []
    if field.kind == "number":
        nums = _numbers(values, field.column)[placed]
        known = ~np.isnan(nums)
        if np.any(~known):
            what = field.label.split(" (")[0].split(": ")[-1]  # "size: Rg (Å)"
            name = f"no {what} ({int(np.sum(~known))})"
            traces.append(scatter(placed[~known], name, {"color": _MISSING_COLOR}))
        if np.any(known):
            colorbar = _colorbar(field, nums[known])
            # the scale itself, not its name: the traces are not validated
            viridis = go.scattergl.Marker(colorscale="Viridis").colorscale
            marker = {"color": nums[known], "colorscale": [list(c) for c in viridis]}
            traces.append(
                scatter(
                    placed[known],
                    field.label,
                    {**marker, "colorbar": colorbar, "showscale": True},
                    showlegend=False,
                )
            )
        # the colour bar carries the field's name (top right); the legend below
        # it lists only what has no colour: entries without a value, overlays
        legend = dict(x=1.02, xanchor="left", y=0, yanchor="bottom")
    else:
        traces += _category_traces(
            _categories(values, field.column)[placed], placed, field, scatter
        )
        legend = dict(title={"text": field.label})
    traces.extend(overlay_traces(table, highlight_ids, selected_ids))
    fig = go.Figure(traces, _validate=VALIDATE)
    annotations = hit_annotations(table, highlight_ids, map_extent(table))
    fig.update_layout(
        # unvalidated, a template's name would be sent as is: send the template
        template=TEMPLATE if VALIDATE else pio.templates[TEMPLATE],
        uirevision="umap",  # keeps zoom and pan when recoloured or filtered
        dragmode="select",
        hovermode="closest",
        margin=dict(l=10, r=10, t=30, b=10),
        legend=dict(itemsizing="constant", **legend),
        xaxis=dict(title="UMAP 1", showticklabels=False, zeroline=False),
        yaxis=dict(title="UMAP 2", showticklabels=False, zeroline=False),
        **({"annotations": annotations} if annotations else {}),
    )
    if not len(placed):
        # a centred title, not an annotation: the hit labels replace the
        # annotations when hits are marked (:func:`hit_annotations`)
        text = (
            "No entries to show"
            if n == 0
            else f"{n} entries have no layout yet: run `swan layout --store STORE`"
        )
        fig.update_layout(
            title=dict(
                text=text,
                x=0.5,
                y=0.5,
                xref="paper",
                yref="paper",
                xanchor="center",
                yanchor="middle",
                font=dict(size=14, color="#666666"),
            )
        )
    return fig


def _colorbar(field: ColorField, values: np.ndarray) -> dict[str, Any]:
    """The colour bar of a numeric colouring: its title once, and years on whole
    numbers ("2019", never "2,019.6")."""
    bar: dict[str, Any] = {
        "title": {"text": field.label},
        "thickness": 14,
        "len": 0.6,
        "y": 1.0,
        "yanchor": "top",
        "x": 1.02,
        "xanchor": "left",
    }
    if field.column == "release_date":
        lo, hi = int(np.min(values)), int(np.max(values))
        bar.update(
            tickformat="d",
            tickmode="linear",
            tick0=lo,
            dtick=max(1, -(-(hi - lo) // 6)),
        )
    return bar


def _category_traces(
    cats: np.ndarray, placed: np.ndarray, field: ColorField, scatter: Any
) -> list[go.Scattergl]:
    """One trace per category of the placed entries: grey "unknown" and "noise"
    first, then the :data:`MAX_CATEGORIES` - 1 commonest in natural order ("2"
    before "10"), then "other" for the rest."""
    grey = {"unknown": _MISSING_COLOR, "noise": _MISSING_COLOR}
    names, counts = np.unique(cats, return_counts=True)
    named = [(c, k) for c, k in zip(names, counts, strict=True) if c not in grey]
    named.sort(key=lambda ck: (-ck[1], natural_key(ck[0])))
    keep = [c for c, _ in named[: MAX_CATEGORIES - 1]]
    if len(named) == MAX_CATEGORIES:  # room for the last one: no "other"
        keep.append(named[-1][0])
    keep.sort(key=natural_key)
    traces = []
    for name in (g for g in grey if g in names):
        rows = placed[cats == name]
        label = f"{name} ({len(rows)})"
        traces.append(scatter(rows, label, {"color": grey[name], "opacity": 0.6}))
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
    return traces


def natural_key(name: str) -> tuple:
    """Sort key that orders the numbers inside names by value: "cluster 2" before
    "cluster 10", "synthetic 1: ..." before "synthetic 10: ...".

    (``natsort`` does this and more; one regular expression avoids a dependency
    for one sort.)

    Args:
        name: a category name.

    Returns:
        A tuple that compares the digit runs by value, the rest case-blind.
    """
    parts = re.split(r"(\d+)", name)
    return tuple(
        (0, int(p), "") if p.isdigit() else (1, 0, p.casefold()) for p in parts
    )
