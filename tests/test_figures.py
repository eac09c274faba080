"""Figure and table builders of the dashboard, as plain functions.

The tables here are generated (seeded random layouts and metadata), not real
entries; the real maps are exercised in test_dashboard.py.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from dashboard.figures import (
    COLOR_FIELDS,
    LABEL_CLEAR,
    LABEL_GAP,
    MAX_CATEGORIES,
    OVERLAY_TRACES,
    annotation_entry,
    hit_annotations,
    map_extent,
    natural_key,
    placeholder_figure,
    umap_columns,
    umap_figure,
)


def _generated_table(n: int = 40, seed: int = 0, unplaced: int = 3) -> dict:
    """A generated entries table (as Store.entries returns it): masked columns,
    the last ``unplaced`` entries without a layout."""
    rng = np.random.default_rng(seed)
    no_layout = np.zeros(n, bool)
    no_layout[n - unplaced :] = True
    missing_res = rng.random(n) < 0.25
    return {
        "id": np.arange(1, n + 1, dtype=np.int64),
        "x": np.ma.array(rng.normal(size=n), mask=no_layout),
        "y": np.ma.array(rng.normal(size=n), mask=no_layout),
        "emdb_id": np.array([f"EMD-{1000 + i}" for i in range(n)], object),
        "title": np.ma.array(
            np.array([f"generated structure {i}" for i in range(n)], object),
            mask=rng.random(n) < 0.2,
        ),
        "method": np.ma.array(
            rng.choice(["singleParticle", "helical", "tomography"], n).astype(object),
            mask=rng.random(n) < 0.1,
        ),
        "resolution": np.ma.array(rng.uniform(2, 12, n), mask=missing_res),
        "organism": np.ma.masked_all(n, object),
        "label": np.ma.masked_all(n, object),
        "rg": rng.uniform(20, 90, n),
        "release_date": np.ma.array(
            np.array(
                [("2015-06-01", "2021-01-15")[i % 2] for i in range(n)],
                "datetime64[us]",
            ),
            mask=rng.random(n) < 0.1,
        ),
        "cluster": np.ma.array(rng.integers(-1, 4, n).astype(np.int32), mask=no_layout),
    }


def _points(fig: go.Figure) -> dict[int, str]:
    """entry id -> trace name, over the data traces (overlays left out)."""
    out = {}
    for trace in fig.data[:-OVERLAY_TRACES]:
        for i in np.asarray(trace.customdata):
            assert int(i) not in out, "an entry is drawn twice"
            out[int(i)] = trace.name
    return out


@pytest.mark.parametrize("color_by", list(COLOR_FIELDS))
def test_umap_figure_is_webgl_with_one_point_per_placed_entry(color_by):
    table = _generated_table()
    fig = umap_figure(table, color_by)
    assert all(isinstance(t, go.Scattergl) for t in fig.data)
    assert [t.name for t in fig.data[-OVERLAY_TRACES:]] == [
        "search hits",
        "selected entry",
    ]
    points = _points(fig)
    placed = table["id"][~np.ma.getmaskarray(table["x"])]
    assert sorted(points) == placed.tolist()  # entries without a layout: not drawn
    assert fig.layout.uirevision  # zoom survives recolouring
    assert set(umap_columns(color_by)) <= set(table)


def test_categorical_colours_one_trace_per_category():
    table = _generated_table()
    fig = umap_figure(table, "method")
    names = [t.name.split(" (")[0] for t in fig.data[:-OVERLAY_TRACES]]
    assert names[0] == "unknown"  # missing values first, in grey
    assert set(names) == {"unknown", "singleParticle", "helical", "tomography"}
    colours = {t.marker.color for t in fig.data[:-OVERLAY_TRACES]}
    assert len(colours) == len(names)
    points = _points(fig)
    method = table["method"]
    for i, name in points.items():
        row = i - 1
        expect = "unknown" if np.ma.is_masked(method[row]) else method[row]
        assert name.startswith(expect)


def test_cluster_colours_name_noise_and_order_clusters():
    fig = umap_figure(_generated_table(), "cluster")
    names = [t.name.split(" (")[0] for t in fig.data[:-OVERLAY_TRACES]]
    assert names == ["noise", "cluster 0", "cluster 1", "cluster 2", "cluster 3"]


def test_many_categories_share_an_other_trace():
    n = 200
    table = _generated_table(n)
    table["organism"] = np.array([f"species {i % 60}" for i in range(n)], object)
    fig = umap_figure(table, "organism")
    data = fig.data[:-OVERLAY_TRACES]
    assert len(data) == MAX_CATEGORIES
    assert data[-1].name.startswith("other (")
    assert sum(len(t.x) for t in data) == n - 3


@pytest.mark.parametrize("color_by", ["resolution", "rg", "release_year"])
def test_numeric_colours_use_a_colour_scale(color_by):
    table = _generated_table()
    fig = umap_figure(table, color_by)
    data = fig.data[:-OVERLAY_TRACES]
    scaled = [t for t in data if t.marker.colorscale is not None]
    assert len(scaled) == 1
    values = np.asarray(scaled[0].marker.color, float)
    assert np.all(np.isfinite(values))
    if color_by == "release_year":
        assert set(values.tolist()) <= {2015.0, 2021.0}
    if color_by == "resolution":
        assert data[0].name == f"no resolution ({len(data[0].x)})"
        assert values.min() >= 2 and values.max() <= 12


def test_release_year_from_dates_and_text():
    table = _generated_table(4, unplaced=0)
    table["release_date"] = np.array(
        [dt.date(2019, 5, 1), "2020-02-03", None, dt.datetime(2022, 1, 1)], object
    )
    fig = umap_figure(table, "release_year")
    scaled = [t for t in fig.data if t.marker.colorscale is not None][0]
    assert sorted(np.asarray(scaled.marker.color).tolist()) == [2019, 2020, 2022]


def test_hover_shows_emdb_id_title_method_resolution():
    table = _generated_table(6, unplaced=0)
    table["title"] = np.array([f"generated structure {i}" for i in range(6)], object)
    table["method"] = np.array(["helical"] * 6, object)
    table["resolution"] = np.full(6, 3.5)
    fig = umap_figure(table, "cluster")
    trace = fig.data[0]
    text = trace.text[0] + " " + trace.hovertext[0]
    i = int(np.asarray(trace.customdata)[0])
    assert f"EMD-{999 + i}" in text
    assert f"generated structure {i - 1}" in text
    assert "helical, 3.50 Å" in text
    assert "%{text}" in trace.hovertemplate and "%{hovertext}" in trace.hovertemplate


def test_highlight_and_selected_overlays():
    table = _generated_table()
    unplaced = int(table["id"][-1])
    fig = umap_figure(
        table, "resolution", highlight_ids=[7, unplaced, 2], selected_ids=[5]
    )
    hits, selected = fig.data[-2], fig.data[-1]
    assert np.asarray(hits.customdata).tolist() == [7, 2]  # rank order, placed only
    assert hits.marker.symbol == "star"
    assert hits.text[0] == "hit 1: EMD-1006"
    assert np.asarray(selected.customdata).tolist() == [5]
    row = 4
    assert selected.x[0] == pytest.approx(table["x"][row], rel=1e-6)


def test_umap_figure_without_layout_or_entries_says_so():
    table = _generated_table(5, unplaced=5)
    fig = umap_figure(table, "cluster")
    assert sum(len(t.x) for t in fig.data) == 0
    assert "swan layout" in fig.layout.title.text
    empty = {k: v[:0] for k, v in table.items()}
    assert umap_figure(empty, "method").layout.title.text == "No entries to show"


def test_umap_figure_rejects_unknown_colouring():
    with pytest.raises(ValueError, match="colour by"):
        umap_figure(_generated_table(), "colour of the sky")


def test_fifty_thousand_points_stay_webgl():
    table = _generated_table(50_000, unplaced=0)
    fig = umap_figure(table, "cluster", highlight_ids=[1, 2, 3])
    assert all(t.type == "scattergl" for t in fig.data)
    assert sum(len(t.x) for t in fig.data[:-OVERLAY_TRACES]) == 50_000
    assert fig.data[0].marker.size <= 4


@pytest.mark.parametrize("color_by", list(COLOR_FIELDS))
def test_the_map_sends_what_a_validated_figure_sends(color_by):
    """The map's traces skip plotly.py's per-value checks (for speed); a copy
    built with every check gives the same JSON, so nothing invalid is sent."""
    fig = umap_figure(_generated_table(), color_by, highlight_ids=[3], selected_ids=[4])
    sent = json.loads(pio.to_json(fig))
    checked = go.Figure(sent)  # validated: raises on an invalid property
    assert json.loads(pio.to_json(checked)) == sent
    assert isinstance(sent["layout"]["template"], dict)  # expanded, as plotly.js needs
    assert all(isinstance(t["text"], list) for t in sent["data"])
    empty = umap_figure(_generated_table(5, unplaced=5), color_by)
    sent = json.loads(pio.to_json(empty))
    assert json.loads(pio.to_json(go.Figure(sent))) == sent


def test_placeholder_figure_says_its_text():
    assert placeholder_figure("hello").layout.annotations[0].text == "hello"


def test_customdata_travels_as_a_plain_list():
    """plotly.js leaves typed-array customdata out of click/selection events."""
    table = _generated_table(10, unplaced=0)
    fig = umap_figure(table, "resolution", highlight_ids=[3])
    sent = json.loads(pio.to_json(fig))
    for trace in sent["data"]:
        assert isinstance(trace["customdata"], list)
    assert sent["data"][-2]["customdata"] == [3]


# -- legends ---------------------------------------------------------------------------
@pytest.mark.parametrize("color_by", ["resolution", "rg", "release_year"])
def test_numeric_colouring_names_its_field_once(color_by):
    """The colour bar carries the field's name; the legend (entries without a
    value, overlays) has no title of its own and stands below the bar."""
    fig = umap_figure(_generated_table(), color_by, highlight_ids=[1])
    label = COLOR_FIELDS[color_by].label
    bar = next(t for t in fig.data if t.marker.colorscale is not None).marker.colorbar
    assert bar.title.text == label
    assert not (fig.layout.legend.title and fig.layout.legend.title.text)
    # the bar hangs from the top, the legend stands on the bottom: no overlap
    assert bar.yanchor == "top" and bar.y == 1 and bar.len <= 0.6
    assert fig.layout.legend.yanchor == "bottom" and fig.layout.legend.y == 0


def test_release_year_ticks_are_whole_years():
    table = _generated_table(30, unplaced=0)
    years = np.array([f"{2010 + i % 12}-03-01" for i in range(30)], "datetime64[us]")
    table["release_date"] = np.ma.array(years, mask=np.zeros(30, bool))
    fig = umap_figure(table, "release_year")
    bar = next(t for t in fig.data if t.marker.colorscale is not None).marker.colorbar
    assert bar.tickformat == "d"  # "2019", never "2,019.6"
    assert bar.tickmode == "linear" and bar.tick0 == 2010
    assert bar.dtick >= 1 and float(bar.dtick).is_integer()


def test_categories_in_natural_order():
    n = 60
    table = _generated_table(n, unplaced=0)
    families = [0, 1, 2, 10, 11]
    labels = [f"synthetic {families[i % 5]}: assembly" for i in range(n)]
    table["label"] = np.array(labels, object)
    fig = umap_figure(table, "label")
    names = [t.name.split(":")[0] for t in fig.data[:-OVERLAY_TRACES]]
    assert names == [f"synthetic {f}" for f in families]  # not 0, 10, 11, 1, 2
    assert natural_key("model 5ME2") < natural_key("model 10ME2")


# -- the search hits on the map --------------------------------------------------------
def _label_layout(labels, extent) -> tuple[np.ndarray, np.ndarray]:
    """Label spots and their points, in fractions of the map's span."""
    x0, x1, y0, y1 = extent
    scale = np.array([x1 - x0, y1 - y0])
    spots = np.array([(a["ax"], a["ay"]) for a in labels]) - [x0, y0]
    points = np.array([(a["x"], a["y"]) for a in labels]) - [x0, y0]
    return spots / scale, points / scale


def _least_gap(a: np.ndarray, b: np.ndarray | None = None) -> float:
    d = np.linalg.norm(a[:, None] - (a if b is None else b)[None], axis=-1)
    return float(d[~np.eye(len(a), dtype=bool)].min() if b is None else d.min())


def test_hits_at_one_spot_get_numbered_labels_with_their_own_hover():
    """Ten hits at one point: ten labels 1..10, apart from each other and from
    the points, each with the hover of its own hit (not of the point under it)."""
    table = _generated_table(20, unplaced=0)
    hits = list(range(1, 11))
    table["x"][: len(hits)] = 0.25
    table["y"][: len(hits)] = -0.5
    fig = umap_figure(table, "cluster", highlight_ids=hits)
    labels = [a.to_plotly_json() for a in fig.layout.annotations]
    assert [a["text"] for a in labels] == [f"<b>{k}</b>" for k in range(1, 11)]
    for k, (a, i) in enumerate(zip(labels, hits, strict=True), start=1):
        assert a["hovertext"].startswith(f"<b>hit {k}: EMD-{999 + i}</b>")
        assert (a["x"], a["y"]) == (0.25, -0.5) and a["showarrow"]  # a line to it
        assert (a["axref"], a["ayref"]) == ("x", "y")  # zooming in spreads them
        assert annotation_entry({"annotation": a}) == i
    spots, points = _label_layout(labels, map_extent(table))
    assert _least_gap(spots) >= LABEL_GAP - 1e-9  # no label covers another
    assert _least_gap(spots, points) >= LABEL_CLEAR - 1e-9  # nor a hit's point
    assert np.all((spots > -0.03) & (spots < 1.03))  # inside the map
    # the stars mark the points; their hover is the labels'
    assert fig.data[-2].hoverinfo == "skip"


def test_labels_of_nearby_hits_do_not_collide():
    """Hits a little apart (what covered label 1 with label 4 in the browser)."""
    rng = np.random.default_rng(5)
    table = _generated_table(200, unplaced=0)
    hits = list(range(1, 21))
    table["x"][:20] = 0.3 + rng.normal(0, 0.05, 20)
    table["y"][:20] = 0.1 + rng.normal(0, 0.05, 20)
    labels = hit_annotations(table, hits)
    spots, _ = _label_layout(labels, map_extent(table))
    assert _least_gap(spots) >= LABEL_GAP - 1e-9


def test_hit_labels_keep_their_rank_when_a_hit_has_no_layout():
    table = _generated_table()
    unplaced = int(table["id"][-1])
    fig = umap_figure(table, "method", highlight_ids=[7, unplaced, 2])
    assert [a.text for a in fig.layout.annotations] == ["<b>1</b>", "<b>3</b>"]
    assert fig.data[-2].text[1].startswith("hit 3:")
    assert annotation_entry({"annotation": {"name": "selected"}}) is None
    assert annotation_entry(None) is None


def test_a_hundred_hits_at_one_spot_stay_readable():
    table = _generated_table(150, unplaced=0)
    table["x"][:100] = 0.1
    table["y"][:100] = 0.2
    labels = hit_annotations(table, list(range(1, 101)))
    spots, _ = _label_layout(labels, map_extent(table))
    assert len(labels) == 100
    assert _least_gap(spots) >= 0.5 * LABEL_GAP
