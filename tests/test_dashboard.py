"""The Dash dashboard over a store of the six shipped real maps.

Callback bodies are called as plain functions; a few requests go through the
app's own Flask server to check the wiring (layout, callback routes, patches).
"""

from __future__ import annotations

import base64
import json

import numpy as np
import plotly
import pytest
from dash import no_update

from dashboard.app import create_app
from dashboard.figures import COLOR_FIELDS, OVERLAY_TRACES
from dashboard.pages import entry, explore, filtering, pair, search
from dashboard.service import SwanService
from swan_index.indexer import ingest_paths
from swan_index.layout import layout_store
from swan_index.map_encoder import MapEncoder
from swan_index.store import Store

from .conftest import DATA, MAPS

IDS = (
    "entry-count",
    "where-input",
    "resolution-slider",
    "method-filter",
    "k-input",
    "filter-message",
    "color-by",
    "umap-graph",
    "selection-table",
    "selection-message",
    "selection-ids",
    "resolution-bounds",
    "upload-map",
    "upload-message",
    "hits-table",
    "detail-panel",
    "entry-id-input",
    "entry-id-go",
    "entry-id-message",
    "detail-meta",
    "iso-graph",
    "similar-table",
    "similar-message",
    "c2f-graph",
    "where-store",
    "hits-store",
    "entry-store",
    "umap-meta",
    "keep-unresolved",
    "filter-state",
    "url",
    "url-out",
    "permalink-message",
    "address-written",
)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A service over the six real sample maps, laid out by the PCA path."""
    path = tmp_path_factory.mktemp("dash") / "store"
    encoder = MapEncoder()
    with Store.open(path, encoder=encoder.info) as store:
        summary = ingest_paths(
            [DATA / "maps"], store, encoder, workers=0, progress=False
        )
        assert summary.ok == 6
        assert layout_store(store)["method"] == "pca"
    svc = SwanService(path)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def app(service):
    return create_app(service)


def _id_of(service, emdb_id: str) -> int:
    return service.store.find(emdb_id)


def _upload_contents(path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f"data:application/octet-stream;base64,{data}"


def _text(component) -> str:
    """All text inside a Dash component tree."""
    if component is None or component is no_update:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(_text(c) for c in component)
    return _text(getattr(component, "children", None))


def _component_ids(component) -> set[str]:
    found = set()
    stack = [component]
    while stack:
        c = stack.pop()
        if isinstance(c, list | tuple):
            stack.extend(c)
            continue
        if not hasattr(c, "to_plotly_json"):
            continue
        cid = getattr(c, "id", None)
        if isinstance(cid, str):
            found.add(cid)
        stack.append(getattr(c, "children", None))
    return found


# -- the app --------------------------------------------------------------------------
def test_layout_serialises_with_every_documented_id(app):
    layout = app.layout()  # built per page load
    text = json.dumps(layout, cls=plotly.utils.PlotlyJSONEncoder)
    assert "umap-graph" in text
    assert set(IDS) <= _component_ids(layout)


def _component(layout, cid: str):
    stack = [layout]
    while stack:
        c = stack.pop()
        if isinstance(c, list | tuple):
            stack.extend(c)
        elif hasattr(c, "to_plotly_json"):
            if getattr(c, "id", None) == cid:
                return c
            stack.append(getattr(c, "children", None))
    raise KeyError(cid)


def test_each_page_load_offers_what_the_store_holds_now(app, service, monkeypatch):
    """The method filter lists every method present, read when the page is
    loaded (not when the server started)."""
    methods = sorted(
        {str(m) for m in np.ma.compressed(service.table(("id", "method"))["method"])}
    )
    assert _component(app.layout(), "method-filter").options == methods
    real = explore.filter_options
    monkeypatch.setattr(
        explore,
        "filter_options",
        lambda svc: {**real(svc), "methods": [*methods, "tomography"]},
    )
    assert _component(app.layout(), "method-filter").options[-1] == "tomography"


def test_two_apps_in_one_process(service, app):
    other = create_app(service)
    assert other is not app
    assert set(other.callback_map) == set(app.callback_map)
    assert len(app.callback_map) == 25
    assert "selection-ids.data" in app.callback_map  # clientside: ids only


def test_the_server_serves_the_page_and_layout(app):
    client = app.server.test_client()
    page = client.get("/")
    assert page.status_code == 200 and b"Cryo-SWAN search" in page.data
    layout = client.get("/_dash-layout")
    assert layout.status_code == 200
    assert "upload-map" in layout.get_data(as_text=True)


def _call(app, output_key: str, inputs: list, state: list = (), changed=None):
    """POST a callback as the browser does; returns the response JSON."""
    key = output_key
    parts = key[2:-2].split("...") if key.startswith("..") else [key]
    outputs = [
        dict(zip(("id", "property"), p.split(".", 1), strict=True)) for p in parts
    ]
    body = {
        "output": key,
        "outputs": outputs if key.startswith("..") else outputs[0],
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
        "changedPropIds": changed or [f"{inputs[0][0]}.{inputs[0][1]}"],
    }
    resp = app.server.test_client().post("/_dash-update-component", json=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    return resp.get_json()["response"]


def test_filter_and_map_callbacks_over_http(app, service):
    got = _call(
        app,
        "..where-store.data...filter-message.children...filter-state.data..",
        [
            ("where-input", "value", "rg > 40"),
            ("resolution-slider", "value", None),
            ("method-filter", "value", None),
            ("keep-unresolved", "value", []),
        ],
        [("resolution-bounds", "data", None), ("where-store", "data", None)],
    )
    where = got["where-store"]["data"]
    assert where == "(rg > 40)"
    got = _call(
        app,
        "..umap-graph.figure...entry-count.children...umap-meta.data..",
        [("where-store", "data", where), ("color-by", "value", "method")],
        [("hits-store", "data", []), ("entry-store", "data", None)],
    )
    figure = got["umap-graph"]["figure"]
    assert {t["type"] for t in figure["data"]} == {"scattergl"}
    assert got["umap-meta"]["data"]["traces"] == len(figure["data"])
    assert "match the filter" in got["entry-count"]["children"]


def test_overlay_patch_over_http(app, service):
    overlay_key = next(
        k for k in app.callback_map if k.startswith("umap-graph.figure@")
    )
    hit = _id_of(service, "EMD-1832")
    got = _call(
        app,
        overlay_key,
        [("hits-store", "data", [hit]), ("entry-store", "data", None)],
        [("umap-meta", "data", {"traces": 5}), ("where-store", "data", None)],
    )
    ops = got["umap-graph"]["figure"]["operations"]
    assert [op["location"] for op in ops] == [
        ["data", 3],
        ["data", 4],
        ["layout", "annotations"],
    ]
    assert ops[0]["params"]["value"]["name"] == "search hits"


# -- filters and the map --------------------------------------------------------------
def test_build_where_joins_the_filters():
    assert filtering.build_where(None, None, None, None) is None
    assert filtering.build_where("  ", [2.0, 9.0], [], [2.0, 9.0]) is None  # untouched
    where = filtering.build_where(
        "rg > 1;", [2.5, 9.0], ["single'Particle"], [2.0, 9.0]
    )
    assert where == (
        "(rg > 1) AND resolution BETWEEN 2.5 AND 9 AND method IN ('single''Particle')"
    )


def test_filters_give_fewer_points(service):
    fig, text, meta = explore.on_map(service, None, "cluster")
    all_ids = {int(i) for t in fig.data[:-OVERLAY_TRACES] for i in t.customdata}
    assert all_ids == set(range(1, 7))
    assert text == "6 entries"
    where, msg, _ = filtering.on_filter(service, "rg > 40", None, None, None)
    assert "4 entries match" in _text(msg)
    fig, text, meta = explore.on_map(service, where, "cluster")
    shown = {int(i) for t in fig.data[:-OVERLAY_TRACES] for i in t.customdata}
    assert len(shown) == 4 and shown < all_ids
    assert meta == {"traces": len(fig.data)}
    rg = service.store.entries(("id", "rg"))
    assert shown == {int(i) for i, r in zip(rg["id"], rg["rg"], strict=True) if r > 40}


def test_quick_filters_use_the_metadata(service):
    options = filtering.filter_options(service)
    assert options["methods"] == ["singleParticle"]
    assert options["resolution"] == [3.2, 3.3]
    where, msg, _ = filtering.on_filter(
        service, None, [3.0, 3.2], ["singleParticle"], options["resolution"]
    )
    assert service.store.count(where) == 1 and "1 entry matches" in _text(msg)
    fig, _, _ = explore.on_map(service, where, "resolution")
    assert sum(len(t.x) for t in fig.data) == 1


def test_invalid_where_is_a_readable_error(service):
    where, msg, _ = filtering.on_filter(service, "no_such_column > 4", None, None, None)
    assert where is no_update
    assert msg.className == "swan-error"
    text = _text(msg)
    assert "no_such_column" in text and "Traceback" not in text
    where, msg, _ = filtering.on_filter(
        service, "1; DROP TABLE entries", None, None, None
    )
    assert where is no_update and msg.className == "swan-error"
    assert service.store.count() == 6


@pytest.mark.parametrize("color_by", list(COLOR_FIELDS))
def test_every_colouring_draws_every_entry(service, color_by):
    fig, _, _ = explore.on_map(service, None, color_by)
    assert all(t.type == "scattergl" for t in fig.data)
    assert sum(len(t.x) for t in fig.data[:-OVERLAY_TRACES]) == 6


def test_selection_lists_the_selected_entries(service):
    spike, other = _id_of(service, "EMD-21457"), _id_of(service, "EMD-1832")
    points = [{"customdata": other}, {"customdata": [spike]}, {"customdata": other}]
    rows, msg = explore.on_select(service, {"points": points})
    assert sorted(r["id"] for r in rows) == sorted([spike, other])
    row = next(r for r in rows if r["id"] == spike)
    assert row["emdb_id"] == "EMD-21457" and row["title"].startswith("SARS-CoV-2")
    assert row["method"] == "singleParticle" and row["resolution"] == 3.2
    assert row["release_date"] == "2020-03-11" and row["cluster"] is not None
    assert "2 selected" in _text(msg)
    json.dumps(rows)
    # what the browser sends: the ids taken from selectedData
    rows, msg = explore.on_select(service, [other, spike, other])
    assert sorted(r["id"] for r in rows) == sorted([spike, other])
    assert "2 selected" in _text(msg)
    rows, msg = explore.on_select(service, None)
    assert rows == [] and "box or lasso" in _text(msg)


# -- entry detail ---------------------------------------------------------------------
def test_click_shows_the_entry_with_similar_maps(service):
    chosen = _id_of(service, "EMD-21457")
    click = {"points": [{"curveNumber": 0, "pointNumber": 0, "customdata": chosen}]}
    assert entry.on_pick("umap-graph", click, None, None, None) == chosen
    meta, iso, c2f = entry.on_entry(service, chosen)
    text = _text(meta)
    assert "EMD-21457" in text and "SARS-CoV-2" in text and "3.2 Å" in text
    assert iso.data[0].type == "mesh3d"
    assert [a.text.split(" (")[0] for a in c2f.layout.annotations] == [
        "1 scale",
        "2 scales",
        "3 scales",
        "4 scales",
    ]
    rows, msg = entry.on_similar(service, chosen, None, 5)
    assert len(rows) == 5 and chosen not in {r["id"] for r in rows}  # not itself
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["score"] < 1.0 - 1e-3
    scales = service.store.encoder.scales
    assert all(f"scale_{s}" in rows[0] for s in scales)
    assert "5 most similar" in _text(msg)
    # the score's terms, and why there is no E-value: six entries are too few
    assert rows[0]["shape"] > 0 and "fit" in rows[0] and "rg_ratio" in rows[0]
    assert "score = 0.5 x shape + 0.5 x fit - 0.05 x" in _text(msg)
    assert "fewer than the 20 a null model needs" in _text(msg)


def test_an_entry_is_opened_by_its_id(service):
    chosen = _id_of(service, "EMD-1832")
    for typed in ("EMD-1832", " emd_1832 ", str(chosen)):
        found, msg = entry.on_lookup(service, typed)
        assert found == chosen and _text(msg) == ""
    for typed in ("EMD-99999999", "", None, "999"):
        found, msg = entry.on_lookup(service, typed)
        assert found is no_update and msg.className == "swan-error"
    assert "EMD-99999999" in _text(entry.on_lookup(service, "EMD-99999999")[1])


def test_similar_maps_follow_the_filter(service):
    chosen = _id_of(service, "EMD-1832")
    rows, msg = entry.on_similar(service, chosen, "rg < 40", 10)
    ids = {r["id"] for r in rows}
    allowed = set(service.store.entries(("id",), where="rg < 40")["id"].tolist())
    assert ids and ids <= allowed and chosen not in ids
    assert "rg < 40" in _text(msg)


def test_picking_from_tables_and_nothing(service):
    assert entry.on_pick("hits-table", None, None, {"row": 2, "row_id": 4}) == 4
    assert entry.on_pick("similar-table", None, None, None, {"row_id": 6}) == 6
    assert entry.on_pick("similar-table", None, None, None, None) is no_update
    assert entry.on_pick("umap-graph", {"points": []}) is no_update
    # the entry already shown, chosen again: nothing changes downstream (its
    # views and variations stay; no callback re-runs); another one goes through
    assert entry.unless_shown(4, 4) is no_update
    assert entry.unless_shown(6, 4) == 6 and entry.unless_shown(6, None) == 6
    assert entry.unless_shown(no_update, 4) is no_update
    meta, iso, c2f = entry.on_entry(service, 999)
    assert meta.className == "swan-error" and "999" in _text(meta)
    assert entry.on_similar(service, None)[0] == []


# -- search by upload -----------------------------------------------------------------
def test_upload_of_a_real_map_lists_and_marks_the_hits(service):
    target = _id_of(service, "EMD-1832")
    contents = _upload_contents(MAPS["emd_1832"])
    out = search.on_upload(service, contents, "emd_1832.map", None, 4)
    hit_ids, rows, msg = out["hits"], out["rows"], out["message"]
    assert hit_ids[0] == target and len(hit_ids) == 4
    assert [r["id"] for r in rows] == hit_ids
    assert rows[0]["rank"] == 1 and "scale_1" in rows[0]
    assert msg.className == "swan-info" and "emd_1832.map" in _text(msg)
    # the hits are drawn on top of the map, best first
    fig, _, meta = explore.on_map(service, None, "cluster", hit_ids, target)
    assert list(fig.data[-2].customdata) == hit_ids
    assert list(fig.data[-1].customdata) == [target]
    patch = explore.on_overlay(service, hit_ids, None, meta).to_plotly_json()
    hits_op, selected_op, labels_op = patch["operations"]
    assert hits_op["location"] == ["data", meta["traces"] - 2]
    assert list(hits_op["params"]["value"]["customdata"]) == hit_ids
    assert len(selected_op["params"]["value"]["customdata"]) == 0
    assert len(labels_op["params"]["value"]) == len(hit_ids)  # numbered labels


def test_upload_search_uses_the_filter(service):
    contents = _upload_contents(MAPS["emd_1832"])
    out = search.on_upload(service, contents, "q.map", "rg < 40", 10)
    hit_ids, msg = out["hits"], out["message"]
    allowed = set(service.store.entries(("id",), where="rg < 40")["id"].tolist())
    assert set(hit_ids) <= allowed and "rg < 40" in _text(msg)


@pytest.mark.parametrize(
    "contents, expect",
    [
        (
            "data:application/octet-stream;base64,"
            + base64.b64encode(b"not a map at all" * 4).decode(),
            "bad.map",
        ),
        ("data:application/octet-stream;base64,", "empty upload"),
        ("data:application/octet-stream;base64,@@@", "damaged"),
        ("just text", "did not arrive as a file"),
    ],
)
def test_bad_upload_is_a_readable_message(service, contents, expect):
    out = search.on_upload(service, contents, "bad.map", None, 5)
    msg = out["message"]
    # the hits of a previous search are cleared, and the message says so
    assert out["hits"] == [] and out["rows"] == [] and out["query"] is None
    assert "cleared" in _text(msg) and out["heading"] == ""
    assert msg.className == "swan-error"
    text = _text(msg)
    assert expect in text and "Traceback" not in text and "/tmp" not in text


def test_bad_filter_on_upload_is_a_readable_message(service):
    contents = _upload_contents(MAPS["emd_1832"])
    msg = search.on_upload(service, contents, "q.map", "bad sql (", 5)["message"]
    assert msg.className == "swan-error" and "filter" in _text(msg)


def test_cleared_upload_changes_nothing(service):
    out = search.on_upload(service, None, None)
    assert set(out) == set(search.UPLOAD_OUTPUTS)
    assert all(v is no_update for v in out.values())


def test_upload_shows_the_query_and_places_it_on_the_map(service):
    target = _id_of(service, "EMD-1832")
    out = search.on_upload(
        service, _upload_contents(MAPS["emd_1832"]), "emd_1832.map", None, 3
    )
    assert "emd_1832.map" in out["heading"]
    assert any(t.type == "mesh3d" for t in out["query_figure"].data)
    traces = {t.name: t for t in out["map_figure"].data}
    star = traces["query: emd_1832.map"]
    # the query is the stored map itself: it lands on its entry
    xy = service.table(("id", "x", "y"), where=f"id = {target}")
    assert np.isclose(star.x[0], xy["x"][0]) and np.isclose(star.y[0], xy["y"][0])
    assert list(traces["hits"].text) == ["1", "2", "3"]


def test_a_cancelled_search_changes_no_hits(service):
    tokens = search.SearchTokens()
    tokens.cancel("t1")
    contents = _upload_contents(MAPS["emd_1832"])
    out = search.on_upload(service, contents, "q.map", None, 3, None, "t1", tokens)
    assert out["hits"] is no_update and out["rows"] is no_update
    assert "cancelled" in _text(out["message"])
    fresh = search.on_upload(service, contents, "q.map", None, 3, None, "t2", tokens)
    assert len(fresh["hits"]) == 3


def test_picking_a_hit_superposes_it_and_offers_the_pair(service):
    from dashboard.pairs import Pairs

    pairs = Pairs(service)
    target = _id_of(service, "EMD-5625")
    contents = _upload_contents(MAPS["emd_5625"])
    out = search.on_upload(service, contents, "emd_5625.map", None, 3, pairs)
    query, rows = out["query"], out["rows"]
    assert query["key"]
    assert pair.on_pick_hit(pairs, None, query)["figure"] is no_update
    pick = pair.on_pick_hit(pairs, {"row_id": target}, query, rows)
    assert pick["store"] == {"key": query["key"], "hit": target}
    assert [t.type for t in pick["figure"].data] == ["mesh3d", "mesh3d"]
    assert "correlation 0.99" in _text(pick["message"]) or "correlation 1.0" in _text(
        pick["message"]
    )
    low, high, step, marks, value = pick["query_slider"]
    assert low <= value <= high and step > 0
    # a contour moved: drawn again at it
    fig = pair.on_levels(pairs, pick["store"], value * 1.5, pick["hit_slider"][-1])
    assert fig.layout.meta["levels"][0] == round(value * 1.5, 6)
    sent = pair.on_download_pair(pairs, pick["store"], value, None)
    assert sent["filename"].endswith(".zip") and sent["base64"]
    # a hit that is not in the store: said in the panel
    missing = pair.on_pick_hit(pairs, {"row_id": 999}, query, rows)
    assert missing["message"].className == "swan-error"


def test_hits_export_as_csv_and_json(service):
    out = search.on_upload(
        service, _upload_contents(MAPS["emd_1832"]), "emd_1832.map", None, 3
    )
    columns = [c["id"] for c in common_hits_columns(service)]
    sent = search.on_export("csv", out["rows"], out["query"], columns)
    assert sent["filename"] == "emd_1832-hits.csv"
    header, first = sent["content"].splitlines()[:2]
    assert header.startswith("rank,name,") and header.endswith("id,emdb_id,emdb_url")
    assert "https://www.ebi.ac.uk/emdb/EMD-1832" in first
    sent = search.on_export("json", out["rows"], out["query"], columns)
    body = json.loads(sent["content"])
    assert body["query"]["name"] == "emd_1832.map" and len(body["hits"]) == 3
    assert search.on_export("csv", [], None, columns) is no_update


def common_hits_columns(service):
    from dashboard.pages.common import hits_columns

    return hits_columns(service.store.encoder.scales)


def test_overlay_before_the_map_exists(service):
    assert explore.on_overlay(service, [1], None, None) is no_update
    assert np.asarray(explore.on_map(service, None, "bogus")[0].data[0].customdata).size


# -- callback requests the dashboard did not send ------------------------------------
DISPATCH = "/_dash-update-component"
FILTER_KEY = "..where-store.data...filter-message.children...filter-state.data.."


def _post(app, data: bytes | str, content_type: str = "application/json"):
    return app.server.test_client().post(DISPATCH, data=data, content_type=content_type)


def _json_error(response, status: int) -> str:
    """A JSON ``{"error": one line}`` answer with this status; returns the line."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, text[:300]
    assert response.content_type.startswith("application/json"), text[:300]
    message = response.get_json()["error"]
    assert message and "\n" not in message and "Traceback" not in message
    return message


def _filter_body(**change) -> dict:
    body = {
        "output": FILTER_KEY,
        "outputs": [
            {"id": "where-store", "property": "data"},
            {"id": "filter-message", "property": "children"},
            {"id": "filter-state", "property": "data"},
        ],
        "inputs": [
            {"id": "where-input", "property": "value", "value": "rg > 40"},
            {"id": "resolution-slider", "property": "value", "value": None},
            {"id": "method-filter", "property": "value", "value": None},
            {"id": "keep-unresolved", "property": "value", "value": []},
        ],
        "state": [
            {"id": "resolution-bounds", "property": "data", "value": None},
            {"id": "where-store", "property": "data", "value": None},
        ],
        "changedPropIds": ["where-input.value"],
    }
    return {**body, **change}


@pytest.mark.parametrize("depth", [50, 100_000])
def test_deeply_nested_callback_body_is_400(app, depth):
    """Past the depth limit, and past what ``json.loads`` can recurse into."""
    nested = "[" * depth + "]" * depth
    body = json.dumps(_filter_body()).replace('"value": null', f'"value": {nested}', 1)
    assert "nested deeper" in _json_error(_post(app, body), 400)
    assert "nested deeper" in _json_error(_post(app, nested), 400)
    # the dashboard keeps answering
    assert _post(app, json.dumps(_filter_body())).status_code == 200


@pytest.mark.parametrize(
    "output", ["no-such.figure", "selection-ids.data", "..a.b...c.d.."]
)
def test_unknown_callback_output_is_400(app, output):
    """Unknown, and clientside (no server function): reload the page."""
    message = _json_error(_post(app, json.dumps(_filter_body(output=output))), 400)
    assert "reload the page" in message


@pytest.mark.parametrize(
    "body",
    [
        "[1, 2]",
        '"text"',
        "{not json",
        b"\xff\xfe{}",
        json.dumps({"inputs": []}),
        json.dumps(_filter_body(inputs=[{"id": "where-input"}])),
        json.dumps(_filter_body(inputs="where-input.value")),
        json.dumps(_filter_body(state=[])),
        json.dumps(_filter_body(outputs={"id": "where-store", "property": "data"})),
        json.dumps(_filter_body(outputs=[{"id": "x", "property": "y"}] * 2)),
        json.dumps(_filter_body(changedPropIds="where-input.value")),
    ],
)
def test_malformed_callback_body_is_400(app, body):
    _json_error(_post(app, body), 400)


def test_callback_body_that_is_not_json_is_415(app):
    message = _json_error(_post(app, "output=x", "text/plain"), 415)
    assert "application/json" in message


def test_too_many_values_in_a_callback_body_is_413(app, monkeypatch):
    from dashboard import app as app_module

    monkeypatch.setattr(app_module, "MAX_JSON_ITEMS", 1000)
    many = json.dumps(_filter_body(changedPropIds=["x"] * 2000))
    assert "limit" in _json_error(_post(app, many), 413)


def test_a_failing_callback_is_a_json_500(app, monkeypatch):
    def broken(*args):
        raise RuntimeError("/srv/secret: broken")

    monkeypatch.setattr(explore, "on_filter", broken)
    message = _json_error(_post(app, json.dumps(_filter_body())), 500)
    assert "secret" not in message


def test_callback_errors_are_json_through_the_server(service, app):
    """The same answers through ``swan serve``'s stack (ASGI -> WSGI -> Flask)."""
    from fastapi.testclient import TestClient

    from dashboard.server import create_server

    with TestClient(create_server(service, app)) as client:
        deep = "[" * 100_000 + "]" * 100_000
        for body in (deep, json.dumps(_filter_body(output="no-such.figure"))):
            response = client.post(
                DISPATCH, content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 400, response.text[:300]
            assert set(response.json()) == {"error"}
        ok = client.post(DISPATCH, json=_filter_body())
        assert ok.status_code == 200 and "where-store" in ok.json()["response"]
