"""The dashboard's sections over a stand-in service: layout settings, callback
bodies, and the wiring of the entry panel's callbacks (through the app's own
Flask server).

The service here is generated: a few made-up entries in an in-memory DuckDB table
(real SQL for the filters), made-up volumes, and reconstructions that can be held
back to show that the panel's metadata does not wait for them.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import duckdb
import numpy as np
import pytest
from dash import dcc, no_update

from dashboard.app import create_app
from dashboard.pages import common, entry, explore, filtering, search
from dashboard.pages.common import GRAPH_CONFIG, K_RANGE, checked_k, hits_k
from swan_index.map_encoder import MapEncoder
from swan_index.query import Query

from .conftest import MAPS

#: Made-up entries: (id, emdb_id, title, label, simulated, method, resolution, x, y).
_ROWS = [
    (1, "EMD-1832", None, None, False, "singleParticle", 5.7, 0.0, 0.0),
    (2, "EMD-21457", "Spike ectodomain", None, False, "singleParticle", 3.2, 1, 1),
    (3, None, "model 5ME2 at 7.3 Å (simulated)", "model 5ME2", True, None, 7.3, 2, 0),
    (4, None, None, None, False, None, None, 3.0, 1.0),
]


class FakeService:
    """What the sections call on a :class:`~dashboard.service.SwanService`, over
    an in-memory table; ``hold`` (an Event) holds previews and reconstructions
    back until set."""

    def __init__(self, hold: threading.Event | None = None) -> None:
        self.db = duckdb.connect()
        self.db.execute(
            "CREATE TABLE entries (id BIGINT, emdb_id VARCHAR, title VARCHAR, "
            "label VARCHAR, simulated BOOLEAN, method VARCHAR, resolution DOUBLE, "
            "x DOUBLE, y DOUBLE, organism VARCHAR, release_date DATE, "
            "cluster INTEGER, source_path VARCHAR, rg DOUBLE, "
            "mol_extents DOUBLE[3], extent DOUBLE[3])"
        )
        for r in _ROWS:
            self.db.execute(
                "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, "
                "0, ?, 30.0, [60.0, 50.0, 40.0], [100.0, 100.0, 100.0])",
                [*r, f"/srv/maps/map_{r[0]}.map"],
            )
        self.hold = hold
        self.lock = threading.Lock()
        self.store = SimpleNamespace(
            encoder=SimpleNamespace(scales=(1, 2, 4, 8), hash="f" * 64)
        )

    def _sql(self, sql: str, where: str | None) -> duckdb.DuckDBPyConnection:
        try:
            with self.lock:
                cursor = self.db.cursor()
            return cursor.execute(sql + (f" WHERE {where}" if where else ""))
        except duckdb.Error as exc:
            raise ValueError(f"where {where!r}: {exc}".splitlines()[0]) from None

    def refresh(self) -> None:
        pass

    def count(self, where: str | None = None) -> int:
        return int(self._sql("SELECT count(*) FROM entries", where).fetchone()[0])

    def table(self, columns, where=None):  # noqa: ANN001, ANN201
        got = self._sql(f"SELECT {', '.join(columns)} FROM entries", where)
        out = got.fetchnumpy()
        return {c: np.ma.asarray(out[c]) for c in columns}

    def entry(self, key: int) -> dict:
        cur = self._sql("SELECT * FROM entries", f"id = {int(key)}")
        names = [d[0] for d in cur.description]
        row = cur.fetchone()
        if row is None:
            raise KeyError(f"no entry {key}")
        return dict(zip(names, row, strict=True))

    def _volume(self, key: int, radius: float) -> np.ndarray:
        self.entry(key)
        if self.hold is not None:
            assert self.hold.wait(60), "held back for too long"
        z, y, x = np.mgrid[:32, :32, :32] - 15.5
        inside = np.sqrt(x**2 + y**2 + z**2) < radius
        return np.where(inside, 0.6, 0.0).astype(np.float32)

    def preview(self, key: int) -> np.ndarray:
        return self._volume(key, 9)

    def coarse_to_fine(self, key: int) -> list[np.ndarray]:
        return [self._volume(key, r) for r in (6, 7, 8, 9)]


def _text(component) -> str:  # noqa: ANN001
    if component is None or component is no_update:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(_text(c) for c in component)
    return _text(getattr(component, "children", None))


def _walk(component, inside_loading: bool = False):  # noqa: ANN001, ANN202
    """(component, whether a dcc.Loading holds it) over a layout tree."""
    if isinstance(component, list | tuple):
        for c in component:
            yield from _walk(c, inside_loading)
        return
    if not hasattr(component, "to_plotly_json"):
        return
    yield component, inside_loading
    loading = inside_loading or isinstance(component, dcc.Loading)
    yield from _walk(getattr(component, "children", None), loading)


@pytest.fixture
def service():
    svc = FakeService()
    yield svc
    svc.db.close()


# -- item: nothing leaves the machine --------------------------------------------------
def test_no_graph_offers_to_send_its_data_anywhere(service):
    app = create_app(service)
    graphs = [c for c, _ in _walk(app.layout()) if isinstance(c, dcc.Graph)]
    assert {g.id for g in graphs} == {
        "umap-graph",
        "iso-graph",
        "c2f-graph",
        "query-graph",
        "query-map",
        "pair-graph",
        "denoise-graph",
        "variations-graph",
    }
    for graph in graphs:
        config = graph.config
        assert config["showSendToCloud"] is False
        assert config["showEditInChartStudio"] is False
        assert config["plotlyServerURL"] == ""
        assert config["displaylogo"] is False
        assert "sendChartToCloud" in config["modeBarButtonsToRemove"]
    by_id = {g.id: g for g in graphs}
    assert by_id["umap-graph"].config["scrollZoom"] is True  # its own setting stays
    assert GRAPH_CONFIG["showLink"] is False and GRAPH_CONFIG["sendData"] is False


# -- item: the entry panel shows its metadata at once ----------------------------------
def test_entry_metadata_is_not_held_by_the_meshes():
    """The metadata callback answers while the meshes are still being made."""
    hold = threading.Event()
    svc = FakeService(hold)
    app = create_app(svc)
    client = app.server.test_client()

    def post(output: str, outputs: dict) -> dict:
        body = {
            "output": output,
            "outputs": outputs,
            "inputs": [{"id": "entry-store", "property": "data", "value": 2}],
            "state": [],
            "changedPropIds": ["entry-store.data"],
        }
        resp = client.post("/_dash-update-component", json=body)
        assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
        return resp.get_json()["response"]

    meshes: dict = {}
    worker = threading.Thread(
        target=lambda: meshes.update(
            post("c2f-graph.figure", {"id": "c2f-graph", "property": "figure"})
        )
    )
    worker.start()
    try:
        meta = post(
            "detail-meta.children", {"id": "detail-meta", "property": "children"}
        )
        assert "EMD-21457" in str(meta) and "Spike ectodomain" in str(meta)
        assert worker.is_alive() and not meshes  # the meshes are still on their way
    finally:
        hold.set()
        worker.join(60)
    assert meshes["c2f-graph"]["figure"]["data"][0]["type"] == "mesh3d"
    # ... and the page does not hide the metadata behind the meshes' spinner
    placed = {
        c.id: inside for c, inside in _walk(app.layout()) if getattr(c, "id", None)
    }
    assert placed["detail-meta"] is False
    assert placed["iso-graph"] and placed["c2f-graph"]
    svc.db.close()


def test_the_panel_in_three_steps(service):
    meta = entry.on_entry_meta(service, 2)
    assert "EMD-21457" in _text(meta) and "3.2 Å" in _text(meta)
    iso = entry.on_entry_preview(service, 2)
    assert iso.data[0].type == "mesh3d" and "EMD-21457" in iso.layout.title.text
    c2f = entry.on_entry_c2f(service, 2)
    assert [a.text for a in c2f.layout.annotations][0] == "1 scale"
    assert entry.on_entry_meta(service, None).className == "swan-info"
    assert entry.on_entry_preview(service, None) is no_update
    assert entry.on_entry_c2f(service, None) is no_update
    gone = entry.on_entry(service, 99)
    assert gone[0].className == "swan-error" and "99" in _text(gone[0])
    assert len(gone[1].data) == 0 and len(gone[2].data) == 0


# -- item: the map's hit labels pick their entry ---------------------------------------
def test_a_click_on_a_hit_label_picks_its_entry():
    click = {"index": 0, "annotation": {"name": "hit:3", "text": "<b>1</b>"}}
    assert entry.on_pick("umap-label", click, None, None, None) == 3
    assert entry.on_pick("umap-label", {"annotation": {}}) is no_update


def test_the_map_patch_numbers_the_hits(service):
    patch = explore.on_overlay(service, [3, 1], None, {"traces": 5})
    ops = patch.to_plotly_json()["operations"]
    labels = ops[-1]
    assert labels["location"] == ["layout", "annotations"]
    assert [a["text"] for a in labels["params"]["value"]] == ["<b>1</b>", "<b>2</b>"]
    assert "hit 1: entry 3" in labels["params"]["value"][0]["hovertext"]


# -- item: names and links in tables ---------------------------------------------------
def test_selection_rows_have_names_and_links_but_no_server_paths(service):
    rows, _ = explore.on_select(service, [1, 2, 3, 4])
    by_id = {r["id"]: r for r in rows}
    assert by_id[1]["name"] == "map_1.map"  # no title or label: the file name
    assert by_id[2]["name"] == "Spike ectodomain"
    assert by_id[3]["name"].startswith("model 5ME2") and by_id[3]["emdb"] == "simulated"
    assert by_id[2]["emdb"] == "[EMD-21457](https://www.ebi.ac.uk/emdb/EMD-21457)"
    assert all("source_path" not in r for r in rows)
    shown = [c["id"] for c in explore.table_columns([], explore.SELECTION_COLUMNS)]
    assert shown[:2] == ["name", "emdb"]


# -- item: filters say what they do ----------------------------------------------------
def test_a_rejected_filter_says_which_filter_still_applies(service):
    where, msg, _ = filtering.on_filter(service, "no_such_column > 1", current="rg > 3")
    assert where is no_update and msg.className == "swan-error"
    assert "still use the previous filter: rg > 3" in _text(msg)
    _, msg, _ = filtering.on_filter(service, "no_such_column > 1", current=None)
    assert "every entry (no filter)" in _text(msg)


def test_the_resolution_range_says_whom_it_leaves_out(service):
    bounds = filtering.filter_options(service)["resolution"]
    assert bounds == [3.2, 7.3]
    where, msg, _ = filtering.on_filter(service, None, [3.0, 6.0], None, bounds)
    text = _text(msg)
    assert "2 entries match" in text
    assert "1 entry with no resolution is hidden by the resolution range" in text
    where, msg, _ = filtering.on_filter(service, None, bounds, None, bounds)
    assert where is None and "no resolution" not in _text(msg)


def test_one_entry_matches_the_filter(service):
    _, text, _ = explore.on_map(service, "id = 2", "cluster")
    assert text == "4 entries · 1 entry matches the filter"
    _, text, _ = explore.on_map(service, "id > 1", "cluster")
    assert text == "4 entries · 3 entries match the filter"


def test_the_resolution_slider_shows_its_numbers(service):
    marks = filtering.resolution_marks([3.2, 7.3])
    assert marks[3.2] == "3.2" and marks[7.3] == "7.3 Å"
    assert 2 < len(marks) <= 6
    assert filtering.resolution_marks(None) == {}
    slider = next(
        c
        for c, _ in _walk(explore.layout(service))
        if getattr(c, "id", None) == "resolution-slider"
    )
    assert slider.marks and slider.allow_direct_input is True
    assert slider.tooltip["template"] == "{value} Å"


@pytest.mark.parametrize(
    "value, k, says",
    [
        (0, 1, "0 is below 1; using 1"),
        (1000, 100, "1000 is above the most, 100; using 100"),
        (None, 10, "empty; using 10"),
        (2.5, 2, "whole numbers only"),
        ("abc", 10, "is not a number"),
    ],
)
def test_hits_per_search_out_of_range_is_clamped_visibly(value, k, says):
    shown, msg = filtering.on_k(value)
    assert shown == k and msg.className == "swan-error" and says in _text(msg)
    assert hits_k(value) == k == checked_k(value)[0]


def test_a_good_hits_per_search_is_left_alone():
    assert filtering.on_k(25) == (no_update, None)
    assert hits_k(K_RANGE[1]) == 100
    k_input = next(
        c
        for c, _ in _walk(explore.layout(FakeService()))
        if getattr(c, "id", None) == "k-input"
    )
    # no min/max in the browser: it would drop an out-of-range value unseen
    assert getattr(k_input, "min", None) is None
    assert getattr(k_input, "max", None) is None


# -- item: previews that look like the molecule ----------------------------------------
def test_a_box_that_cuts_the_molecule_is_said(service):
    membrane = {"mol_extents": [265.1, 264.2, 202.7], "extent": [228.0] * 3}
    assert "box most likely cuts the molecule" in entry.box_note(membrane)
    assert entry.box_note({"mol_extents": [137, 134, 134], "extent": [185] * 3}) is None
    assert entry.box_note({"mol_extents": None, "extent": None}) is None
    row = {**service.entry(1), **membrane}
    assert "note" in _text(entry.metadata_view(row))


def test_search_hits_are_named(service, monkeypatch):
    """An upload's hits name every entry (the page reads what hits lack)."""
    hits = [
        {
            "rank": 1,
            "id": 3,
            "emdb_id": None,
            "score": 0.9,
            "scores": {"1": 0.9},
            "title": None,
            "label": "model 5ME2",
        },
        {
            "rank": 2,
            "id": 1,
            "emdb_id": "EMD-1832",
            "score": 0.8,
            "scores": {},
            "title": None,
            "label": None,
        },
    ]
    query = Query.from_file(MapEncoder(), MAPS["emd_1832"])
    monkeypatch.setattr(service, "placement", lambda q: None, raising=False)
    monkeypatch.setattr(
        service,
        "search_upload_query",
        lambda *a, **k: (query, {"hits": hits, "significance": None}),
        raising=False,
    )
    contents = "data:application/octet-stream;base64,AAAA"
    out = search.on_upload(service, contents, "q.map")
    ids, rows = out["hits"], out["rows"]
    assert ids == [3, 1]
    assert [r["name"] for r in rows] == ["model 5ME2", "map_1.map"]
    assert [r["emdb"] for r in rows][0] == "simulated"
    assert common.hit_details(service, []) == {}
