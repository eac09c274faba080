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
    MAX_CATEGORIES,
    OVERLAY_TRACES,
    coarse_to_fine_figure,
    hits_table_rows,
    isosurface_figure,
    matched_levels,
    placeholder_figure,
    table_columns,
    table_rows,
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
        assert data[0].name == "no value"
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
    assert "swan layout" in fig.layout.annotations[0].text
    empty = {k: v[:0] for k, v in table.items()}
    assert umap_figure(empty, "method").layout.annotations[0].text


def test_umap_figure_rejects_unknown_colouring():
    with pytest.raises(ValueError, match="colour by"):
        umap_figure(_generated_table(), "colour of the sky")


def test_fifty_thousand_points_stay_webgl():
    table = _generated_table(50_000, unplaced=0)
    fig = umap_figure(table, "cluster", highlight_ids=[1, 2, 3])
    assert all(t.type == "scattergl" for t in fig.data)
    assert sum(len(t.x) for t in fig.data[:-OVERLAY_TRACES]) == 50_000
    assert fig.data[0].marker.size <= 4


def _sphere(g: int = 32, radius: float = 8.0, peak: float = 1.0) -> np.ndarray:
    z, y, x = np.mgrid[:g, :g, :g] - (g - 1) / 2
    r = np.sqrt(x**2 + y**2 + z**2)
    return (peak / (1 + np.exp(r - radius))).astype(np.float32)


def test_isosurface_is_a_mesh_at_the_level():
    fig = isosurface_figure(_sphere(), title="generated sphere")
    (mesh,) = fig.data
    assert isinstance(mesh, go.Mesh3d)
    centre = 31 / 2
    r = np.sqrt(
        (np.asarray(mesh.x) - centre) ** 2
        + (np.asarray(mesh.y) - centre) ** 2
        + (np.asarray(mesh.z) - centre) ** 2
    )
    assert np.allclose(r, 8.0, atol=0.6)  # the 0.5 level of the sigmoid
    assert len(mesh.i) == len(mesh.j) == len(mesh.k) > 0
    assert fig.layout.title.text == "generated sphere"


@pytest.mark.parametrize(
    "volume, why",
    [
        (np.zeros((32, 32, 32), np.float32), "no surface"),
        (np.full((8, 8, 8), 0.3, np.float32), "no surface"),
        (None, "no preview"),
    ],
)
def test_isosurface_of_nothing_is_an_empty_figure_with_a_message(volume, why):
    fig = isosurface_figure(volume)
    assert len(fig.data) == 0
    assert why in fig.layout.annotations[0].text


def test_coarse_to_fine_one_scene_per_scale():
    volumes = [_sphere(radius=r, peak=p) for r, p in [(4, 0.3), (6, 0.45), (8, 1.0)]]
    fig = coarse_to_fine_figure(volumes)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["1 scale", "2 scales", "3 scales"]
    assert len(fig.data) == 3
    assert all(isinstance(t, go.Mesh3d) for t in fig.data)
    assert {t.scene for t in fig.data} == {"scene", "scene2", "scene3"}
    # faint coarse reconstructions are contoured to the same enclosed volume
    levels = fig.layout.meta["levels"]
    assert levels[-1] == pytest.approx(0.5, abs=0.02)
    assert levels[0] < 0.3
    fixed = coarse_to_fine_figure(volumes, match_volume=False)
    titles = [a.text for a in fixed.layout.annotations]
    assert titles == ["1 scale (empty)", "2 scales (empty)", "3 scales"]
    assert len(fixed.data) == 1
    assert coarse_to_fine_figure([]).layout.annotations[0].text


def test_matched_levels_enclose_the_reference_volume():
    ref = _sphere(radius=8)
    faint = _sphere(radius=8, peak=0.4)
    (level,) = matched_levels([faint], 0.5, reference=ref)
    assert np.mean(faint > level) == pytest.approx(np.mean(ref > 0.5), abs=0.002)
    empty = np.zeros_like(ref)
    assert matched_levels([faint], 0.5, reference=empty) == [0.5]


def test_hits_table_rows_have_one_column_per_scale():
    hits = [
        {
            "rank": 1,
            "id": 9,
            "emdb_id": "EMD-1",
            "score": 0.98765,
            "scores": {
                "8": 0.5,
                "1": 0.91234,
                "16": 0.25,
                "2": 0.8,
                "size": -0.2,
                "fit": 0.87654,
            },
            "title": "a generated hit",
            "method": "helical",
            "resolution": 3.456,
        },
        {"rank": 2, "id": 4, "emdb_id": None, "score": 0.5, "scores": {"1": 0.5}},
    ]
    rows = hits_table_rows(hits)
    assert list(rows[0]) == [
        "rank",
        "id",
        "emdb_id",
        "score",
        "scale_1",
        "scale_2",
        "scale_8",
        "scale_16",
        "fit",
        "size",
        "title",
        "method",
        "resolution",
    ]
    assert rows[0]["score"] == 0.988 and rows[0]["scale_1"] == 0.912
    assert rows[0]["fit"] == 0.877 and "fit" not in rows[1]
    assert rows[0]["resolution"] == 3.46
    assert rows[1]["emdb_id"] is None and rows[1]["title"] is None
    columns = table_columns(rows)
    assert [c["id"] for c in columns] == list(rows[0])
    assert columns[4]["name"] == "scale 1³"
    assert hits_table_rows([]) == []


def test_table_rows_are_json_ready():
    table = _generated_table(4, unplaced=1)
    table["fitted_pdbs"] = np.array([["6vyb", "6vxx"], [], None, ["1abc"]], object)
    rows = table_rows(table, ["id", "x", "release_date", "fitted_pdbs", "organism"])
    assert rows[0]["id"] == 1 and isinstance(rows[0]["id"], int)
    assert rows[3]["x"] is None  # masked
    assert rows[0]["release_date"] == "2015-06-01" or rows[0]["release_date"] is None
    assert rows[0]["fitted_pdbs"] == "6vyb, 6vxx"
    assert rows[0]["organism"] is None


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
