"""The HTTP API (dashboard/api.py) and the combined server (dashboard/server.py),
over a small store of the real sample maps, plus a bounded schemathesis fuzz of
the OpenAPI schema."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from dashboard.server import create_server
from dashboard.service import SwanService
from swan_index.indexer import ingest_paths
from swan_index.map_encoder import MapEncoder
from swan_index.query import Query, search
from swan_index.store import Store
from tests.conftest import MAPS

TOKEN = "test-token-0123456789"
#: Stored in the module's store; EMD-3197 is left out to be ingested by upload.
STORED = ["emd_1832", "emd_5625", "emd_21457_seg", "emd_3001", "emd_6824"]
UPLOADED = "emd_3197"
#: The upload limit of the module's service (the sample maps are under 1.4 MB).
LIMIT = 4 * 2**20


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("api") / "store"
    encoder = MapEncoder()
    with Store.open(folder, encoder=encoder.info) as store:
        summary = ingest_paths(
            [MAPS[m] for m in STORED], store, encoder, workers=0, progress=False
        )
    assert summary.ok == len(STORED), summary.failures
    return folder


@pytest.fixture(scope="module")
def service(store_dir: Path):
    svc = SwanService(store_dir, write_token=TOKEN, max_upload_bytes=LIMIT)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def dash_app():
    dash = pytest.importorskip("dash")
    app = dash.Dash(__name__)
    app.layout = dash.html.Div("dashboard here", id="hello")
    return app


@pytest.fixture(scope="module")
def client(service: SwanService, dash_app) -> TestClient:
    with TestClient(create_server(service, dash_app)) as c:
        yield c


@pytest.fixture(scope="module")
def map_bytes():
    return lambda label: MAPS[label].read_bytes()


def assert_error(response, status: int) -> str:
    """The response is a JSON error with this status; returns its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    message = body["error"]
    assert message and "\n" not in message and "Traceback" not in message
    return message


# -- reading -----------------------------------------------------------------------
def test_health(client: TestClient):
    body = client.get("/api/health").json()
    assert body["status"] == "ok"
    assert body["entries"] == len(STORED)
    assert body["scales"] == [1, 2, 4, 8]
    assert body["writes_enabled"] is True


def test_search_upload_finds_itself_first(client: TestClient, map_bytes):
    response = client.post(
        "/api/search",
        params={"k": 3},
        files={"file": ("emd_6824.mrc", map_bytes("emd_6824"))},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"]["name"] == "emd_6824.mrc"
    assert body["query"]["grid"] == [70, 70, 70]
    hits = body["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["emdb_id"] == "EMD-6824"
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert set(hits[0]["scores"]) >= {"1", "2", "4", "8", "fit"}
    assert hits[0]["scores"]["fit"] == pytest.approx(1.0, abs=0.02)
    assert all(isinstance(h["id"], int) for h in hits)
    plain = client.post(
        "/api/search",
        data={"k": "3", "fit": "false"},
        files={"file": ("emd_6824.mrc", map_bytes("emd_6824"))},
    ).json()["hits"]
    assert not any("fit" in h["scores"] for h in plain)
    assert plain[0]["emdb_id"] == "EMD-6824"


def test_search_options_as_form_fields(client: TestClient, map_bytes):
    """k/where as form fields (curl -F) win over the query parameters."""
    response = client.post(
        "/api/search",
        params={"k": 4},
        data={"k": "2", "where": "emdb_id <> 'EMD-6824'", "exact": "true"},
        files={"file": ("q.mrc", map_bytes("emd_6824"))},
    )
    assert response.status_code == 200, response.text
    hits = response.json()["hits"]
    assert len(hits) == 2
    assert "EMD-6824" not in {h["emdb_id"] for h in hits}


def test_entry_by_store_id_and_by_emdb_id(client: TestClient):
    by_emdb = client.get("/api/entries/EMD-1832")
    assert by_emdb.status_code == 200, by_emdb.text
    row = by_emdb.json()
    assert row["emdb_id"] == "EMD-1832"
    assert client.get(f"/api/entries/{row['id']}").json() == row
    assert client.get("/api/entries/emd_1832").json()["id"] == row["id"]
    # no server folders in the answer
    assert row["source_path"] == "emd_1832.map"


@pytest.mark.parametrize(
    "entry", ["EMD-999999", "424242", "99999999999999999999999", "%C2%B2", "%00"]
)
def test_unknown_entry_is_404(client: TestClient, entry: str):
    message = assert_error(client.get(f"/api/entries/{entry}"), 404)
    assert "no entry" in message
    assert_error(client.get(f"/api/entries/{entry}/similar"), 404)


def test_similar(client: TestClient):
    response = client.get("/api/entries/EMD-5625/similar", params={"k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    hits = body["hits"]
    assert len(hits) == 3
    assert hits[0]["emdb_id"] == "EMD-5625"
    assert hits[0]["id"] == body["query"]["id"]
    # its stored vectors, then its map read again in every candidate pose
    assert body["query"]["source"] == "map" and body["query"]["poses"] >= 2
    c4 = client.get("/api/entries/EMD-6824/similar", params={"k": 1}).json()
    assert c4["query"]["poses"] > 2 and c4["hits"][0]["emdb_id"] == "EMD-6824"
    assert [h["score"] for h in hits] == sorted(
        (h["score"] for h in hits), reverse=True
    )
    # re-scored by the rotational fit of its stored preview (itself: 1)
    assert all("fit" in h["scores"] for h in hits)
    assert hits[0]["scores"]["fit"] == pytest.approx(1.0, abs=1e-4)
    plain = client.get(
        "/api/entries/EMD-5625/similar", params={"k": 3, "fit": False}
    ).json()["hits"]
    assert plain[0]["emdb_id"] == "EMD-5625"
    assert not any("fit" in h["scores"] for h in plain)
    exact = client.get(
        "/api/entries/EMD-5625/similar", params={"k": 3, "exact": True}
    ).json()
    assert [h["id"] for h in exact["hits"]] == [h["id"] for h in hits]
    filtered = client.get(
        "/api/entries/EMD-5625/similar",
        params={"k": 10, "where": "emdb_id IN ('EMD-1832', 'EMD-3001')"},
    ).json()
    assert {h["emdb_id"] for h in filtered["hits"]} == {"EMD-1832", "EMD-3001"}


def test_the_fit_runs_without_the_store_lock(
    service: SwanService, monkeypatch: pytest.MonkeyPatch
):
    """Other requests need not wait for the costly step: while the fit scores,
    another thread can take the service's lock; the hits are those of one
    search call."""
    import threading

    from swan_index import fit as fit_module

    held = []
    score = fit_module.FitQuery.score

    def try_lock(got: list) -> None:
        got.append(service._lock.acquire(blocking=False))
        if got[-1]:
            service._lock.release()

    def spy(self, previews, *a, **kw):
        got: list = []
        t = threading.Thread(target=try_lock, args=(got,))
        t.start()
        t.join()
        held.append(not got[0])
        return score(self, previews, *a, **kw)

    monkeypatch.setattr(fit_module.FitQuery, "score", spy)
    body = service.similar("EMD-5625", k=3)
    assert held == [False]
    with service._lock:
        query = Query.from_entry(service.store, service.encoder, "EMD-5625")
    direct = search(service.store, query, k=3)
    assert [h["id"] for h in body["hits"]] == [h.id for h in direct]
    assert [h["scores"] for h in body["hits"]] == [h.scores for h in direct]


def test_encode_matches_the_stored_code(
    client: TestClient, service: SwanService, map_bytes
):
    response = client.post(
        "/api/encode", files={"file": ("emd_6824.mrc", map_bytes("emd_6824"))}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["checkpoint_hash"] == service.store.encoder.hash
    assert [s["scale"] for s in body["scales"]] == [1, 2, 4, 8]
    stored = service.store.get_code(service.store.find("EMD-6824"))
    for i, scale in enumerate(body["scales"]):
        tokens = np.asarray(scale["tokens"])
        assert tokens.shape == stored.tokens[i].shape[1:]
        np.testing.assert_array_equal(tokens, stored.tokens[i][0])
        np.testing.assert_allclose(scale["vector"], stored.vectors[i][0], atol=1e-4)


# -- bad input ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind, content",
    [
        ("random", np.random.default_rng(7).bytes(5000)),
        ("truncated", MAPS["emd_6824"].read_bytes()[:20_000]),
        ("empty", b""),
        ("bad gzip", gzip.compress(b"not a map at all" * 100)[:200]),
    ],
)
def test_bad_uploads_are_400_and_the_server_keeps_serving(
    client: TestClient, kind: str, content: bytes
):
    for route in ("/api/search", "/api/encode"):
        response = client.post(route, files={"file": ("query.mrc", content)})
        message = assert_error(response, 400)
        assert "tmp" not in message and "swan-upload" not in message
    assert (
        client.get("/api/entries/EMD-1832/similar", params={"k": 1}).status_code == 200
    )


def test_client_file_name_is_never_a_path(client: TestClient, store_dir: Path):
    junk = b"this is not a map" * 200
    uploads = store_dir / "uploads"
    kept = set(uploads.glob("*")) if uploads.exists() else set()
    response = client.post("/api/search", files={"file": ("../../etc/passwd", junk)})
    message = assert_error(response, 400)
    assert message.startswith("passwd:")
    assert "../" not in message and "/etc" not in message
    response = client.post(
        "/api/entries",
        files={"file": ("../../../passwd", junk)},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    message = assert_error(response, 400)
    assert "../" not in message and str(store_dir) not in message
    # nothing kept, nothing written next to the store
    assert set(uploads.glob("*")) == kept
    assert not (store_dir.parent / "passwd").exists()


def test_missing_file_and_bad_parameters_are_422(client: TestClient, map_bytes):
    assert "file" in assert_error(client.post("/api/search"), 422)
    assert "k" in assert_error(client.get("/api/entries/1/similar?k=0"), 422)
    assert "k" in assert_error(client.get("/api/entries/1/similar?k=1001"), 422)
    assert_error(client.get("/api/entries/1/similar?exact=maybe"), 422)
    assert_error(
        client.get("/api/entries/1/similar", params={"where": "x" * 3000}), 422
    )


@pytest.mark.parametrize(
    "where", ["resolution <", "no_such_column > 1", "1; DROP TABLE entries", "'a' + 1"]
)
def test_bad_where_is_400(client: TestClient, where: str):
    message = assert_error(
        client.get("/api/entries/EMD-1832/similar", params={"where": where}), 400
    )
    assert message.startswith("where ")
    assert client.get("/api/health").json()["entries"] == len(STORED)


def test_where_errors_do_not_show_server_paths(client: TestClient, store_dir: Path):
    response = client.get(
        "/api/entries/EMD-1832/similar",
        params={"where": "CAST(source_path AS INTEGER) = 1"},
    )
    message = assert_error(response, 400)
    assert str(MAPS["emd_1832"].parent) not in message
    assert str(store_dir) not in message


def test_unexpected_errors_are_json_500_without_details(
    service: SwanService, monkeypatch: pytest.MonkeyPatch
):
    def broken() -> dict:
        raise RuntimeError("/srv/secret/swan.duckdb: something broke")

    monkeypatch.setattr(service, "health", broken)
    with TestClient(create_server(service), raise_server_exceptions=False) as c:
        message = assert_error(c.get("/api/health"), 500)
    assert "secret" not in message and "RuntimeError" not in message


def test_unknown_route_and_method_are_json(client: TestClient):
    assert "/api/nothing" in assert_error(client.get("/api/nothing"), 404)
    assert_error(client.put("/api/health"), 405)


# -- size limit --------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_client(store_dir: Path) -> TestClient:
    svc = SwanService(store_dir, max_upload_bytes=10_000)
    with TestClient(create_server(svc)) as c:
        yield c
    svc.close()


def test_oversized_body_is_413_before_reading(small_client: TestClient, map_bytes):
    response = small_client.post(
        "/api/search", files={"file": ("big.mrc", map_bytes("emd_6824"))}
    )
    message = assert_error(response, 413)
    assert "10,000" in message
    assert small_client.get("/api/health").status_code == 200


@pytest.mark.parametrize(
    "params", [{"where": "no_such_column > 1"}, {"where": "1=1) OR (1=1"}, {"k": 0}]
)
def test_a_bad_search_is_refused_before_the_upload_is_encoded(
    client: TestClient, map_bytes, monkeypatch: pytest.MonkeyPatch, params: dict
):
    import dashboard.service as service_module

    def encoded(*args, **kwargs):
        raise AssertionError("the upload was encoded")

    monkeypatch.setattr(service_module.Query, "from_bytes", encoded)
    response = client.post(
        "/api/search", params=params, files={"file": ("q.map", map_bytes("emd_1832"))}
    )
    message = assert_error(response, 400 if "where" in params else 422)
    assert "encoded" not in message


def _announcing_map(tmp_path: Path, n: int) -> bytes:
    """A gzipped n^3 float32 map, a small blob in zeros: a few KB announcing
    n^3 * 4 bytes."""
    import mrcfile

    data = np.zeros((n, n, n), np.float32)
    c = n // 2
    data[c - 4 : c + 4, c - 6 : c + 6, c - 3 : c + 3] = 1.0
    path = tmp_path / "big.mrc"
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 2.0
    return gzip.compress(path.read_bytes())


def test_a_small_upload_announcing_a_big_map_is_413(store_dir: Path, tmp_path: Path):
    """The server's own map limit applies to what the header announces, before
    anything is allocated, for searches and for ingests."""
    body = _announcing_map(tmp_path, 160)  # 15.6 MiB of float32
    assert len(body) < 200_000
    svc = SwanService(store_dir, write_token=TOKEN, max_map_bytes=8 * 2**20)
    uploads = store_dir / "uploads"
    kept = sorted(uploads.glob("*")) if uploads.exists() else []
    try:
        with TestClient(create_server(svc)) as c:
            for route in ("/api/search", "/api/entries"):
                response = c.post(
                    route,
                    files={"file": ("big.mrc.gz", body)},
                    headers={"Authorization": f"Bearer {TOKEN}"},
                )
                message = assert_error(response, 413)
                assert message.startswith("big.mrc.gz: ") and "MiB" in message
            assert c.get("/api/health").json()["entries"] == len(STORED)
        assert (sorted(uploads.glob("*")) if uploads.exists() else []) == kept
    finally:
        svc.close()


def test_oversized_chunked_body_is_413(small_client: TestClient):
    """No Content-Length: the bytes are counted as they arrive."""

    def chunks():
        yield (
            b"--bnd\r\nContent-Disposition: form-data; name=file; filename=a.mrc"
            b"\r\n\r\n"
        )
        for _ in range(20):
            yield b"x" * 8192
        yield b"\r\n--bnd--\r\n"

    response = small_client.post(
        "/api/search",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=bnd"},
    )
    assert "content-length" not in response.request.headers
    # the middleware's answer (the service would say "upload of N bytes ...")
    assert assert_error(response, 413).startswith("request body is over")
    assert small_client.get("/api/health").status_code == 200


def test_upload_just_over_the_map_limit_is_413(small_client: TestClient):
    """Within the multipart allowance, but over the map limit: the service's 413."""
    response = small_client.post(
        "/api/search", files={"file": ("m.mrc", b"0" * 10_001)}
    )
    assert "10,000" in assert_error(response, 413)


# -- writes ------------------------------------------------------------------------
def test_writes_need_the_token(client: TestClient, map_bytes):
    upload = {"file": ("emd_3197.map.gz", map_bytes(UPLOADED))}
    assert "token" in assert_error(client.post("/api/entries", files=upload), 403)
    wrong = {"Authorization": "Bearer not-the-token"}
    assert_error(client.post("/api/entries", files=upload, headers=wrong), 403)
    assert_error(client.delete("/api/entries/EMD-1832", headers=wrong), 403)
    assert_error(client.delete("/api/entries/EMD-1832"), 403)
    assert client.get("/api/health").json()["entries"] == len(STORED)


def test_ingest_then_delete(client: TestClient, map_bytes):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    upload = {"file": ("emd_3197.map.gz", map_bytes(UPLOADED))}
    response = client.post("/api/entries", files=upload, headers=auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] == 1 and body["failed"] == 0
    [stored] = body["entries"]
    assert client.get("/api/health").json()["entries"] == len(STORED) + 1
    hits = client.get(f"/api/entries/{stored['id']}/similar", params={"k": 1}).json()
    assert hits["hits"][0]["id"] == stored["id"]
    # the same map again is skipped, and names the same entry
    again = client.post("/api/entries", files=upload, headers=auth).json()
    assert again["ok"] == 0 and again["skipped"] == 1
    assert again["entries"] == [stored]

    response = client.delete(f"/api/entries/{stored['id']}", headers=auth)
    assert response.status_code == 200, response.text
    assert response.json() == {"deleted": 1, "id": stored["id"]}
    assert client.get("/api/health").json()["entries"] == len(STORED)
    assert_error(client.get(f"/api/entries/{stored['id']}"), 404)
    assert_error(client.delete(f"/api/entries/{stored['id']}", headers=auth), 404)


def test_write_while_another_writer_holds_the_store_is_409(
    client: TestClient, store_dir: Path
):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with Store.open(store_dir):
        message = assert_error(
            client.delete("/api/entries/EMD-1832", headers=auth), 409
        )
    assert str(store_dir) not in message
    assert client.get("/api/entries/EMD-1832").status_code == 200


def test_writes_disabled_without_a_token(store_dir: Path, map_bytes):
    svc = SwanService(store_dir)
    try:
        with TestClient(create_server(svc)) as c:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            upload = {"file": ("m.map.gz", map_bytes(UPLOADED))}
            message = assert_error(
                c.post("/api/entries", files=upload, headers=auth), 403
            )
            assert "disabled" in message
            assert_error(c.delete("/api/entries/1", headers=auth), 403)
            assert c.get("/api/health").json()["writes_enabled"] is False
    finally:
        svc.close()


# -- the combined server -----------------------------------------------------------
def test_dashboard_is_mounted_beside_the_api(client: TestClient):
    page = client.get("/")
    assert page.status_code == 200
    assert "<html" in page.text.lower()
    layout = client.get("/_dash-layout")
    assert layout.status_code == 200
    assert layout.json()["props"]["children"] == "dashboard here"
    assert client.get("/api/health").json()["status"] == "ok"


def test_openapi_schema(client: TestClient):
    schema = client.get("/api/openapi.json").json()
    paths = schema["paths"]
    assert set(paths) == {
        "/api/health",
        "/api/search",
        "/api/encode",
        "/api/entries",
        "/api/entries/{entry}",
        "/api/entries/{entry}/similar",
        "/api/superpose",
        "/api/entries/{entry}/superpose/{hit}",
        "/api/denoise",
        "/api/complete",
        "/api/entries/{entry}/variations",
        "/api/generate",
    }
    assert "text/csv" in paths["/api/search"]["post"]["responses"]["200"]["content"]
    assert "413" in paths["/api/search"]["post"]["responses"]
    assert "403" in paths["/api/entries"]["post"]["responses"]
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text.lower()
    asset = client.get("/api/docs-assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 100_000


# -- fuzzing from the schema -------------------------------------------------------
@pytest.fixture(scope="module")
def api_schema(service: SwanService):
    schemathesis = pytest.importorskip("schemathesis")
    return schemathesis.openapi.from_asgi("/api/openapi.json", create_server(service))


@pytest.mark.parametrize(
    "path, method, examples",
    [
        ("/api/health", "GET", 3),
        ("/api/entries/{entry}", "GET", 10),
        ("/api/entries/{entry}/similar", "GET", 10),
        ("/api/search", "POST", 5),
        ("/api/encode", "POST", 5),
        ("/api/entries", "POST", 3),
        ("/api/entries/{entry}", "DELETE", 3),
        ("/api/superpose", "POST", 3),
        ("/api/entries/{entry}/superpose/{hit}", "GET", 5),
        ("/api/denoise", "POST", 3),
        ("/api/complete", "POST", 3),
        ("/api/entries/{entry}/variations", "GET", 3),
        ("/api/generate", "GET", 2),
    ],
)
def test_fuzz_from_the_schema(api_schema, path: str, method: str, examples: int):
    """Generated requests (valid and invalid) never give a 5xx or an answer the
    schema does not describe. Writes are fuzzed without the token (403)."""
    from hypothesis import HealthCheck, Phase, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_schema_conformance,
        status_code_conformance,
    )

    operation = api_schema[path][method]
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    fuzz = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    modes = [(GenerationMode.POSITIVE, [])]
    if path != "/api/health":  # no parameters: nothing to make invalid
        modes.append((GenerationMode.NEGATIVE, [negative_data_rejection]))
    for mode, extra in modes:
        _fuzz(operation.as_strategy(generation_mode=mode), fuzz, checks + extra)


def _fuzz(strategy, fuzz_settings, checks: list) -> None:
    """Run ``checks`` on the cases ``strategy`` generates (hypothesis settings
    ``fuzz_settings``)."""
    from hypothesis import given

    @fuzz_settings
    @given(case=strategy)
    def run(case) -> None:
        response = case.call_and_validate(checks=checks)
        assert response.status_code < 500

    run()


@pytest.mark.parametrize(
    "where", ["1=1) UNION SELECT 1 --", ") OR (1=1", "1=1 /* c */", "1=1 LIMIT 1"]
)
def test_where_escapes_are_400(client: TestClient, where: str):
    message = assert_error(
        client.get("/api/entries/EMD-1832/similar", params={"where": where}), 400
    )
    assert message.startswith("where ")


def test_where_conversion_errors_do_not_echo_stored_paths(client: TestClient):
    where = r"CAST(replace(source_path, '/', '\|') AS INTEGER) = 1"
    response = client.get(
        "/api/entries/EMD-1832/similar", params={"where": where, "fit": "false"}
    )
    message = assert_error(response, 400)
    assert message.startswith("where ") and "Conversion Error" in message
    for label in STORED:
        assert MAPS[label].name not in message
        assert str(MAPS[label]).replace("/", "\\|") not in message


def test_a_running_where_does_not_hold_up_other_requests(
    service: SwanService, monkeypatch: pytest.MonkeyPatch
):
    """A predicate made slow on purpose: while it runs, another client's search
    (with a refresh due) completes; the predicate's own search completes after."""
    import threading

    from swan_index import store_search as store_module

    started, release = threading.Event(), threading.Event()
    matching_ids = store_module.matching_ids

    def slow(*args, **kwargs):
        started.set()
        release.wait(120)
        return matching_ids(*args, **kwargs)

    monkeypatch.setattr(store_module, "matching_ids", slow)
    got: dict = {}

    def filtered() -> None:
        got["filtered"] = service.similar("EMD-1832", k=2, where="rg > 0", fit=False)

    def other() -> None:
        service._checked = float("-inf")  # a refresh is due: it must not wait
        got["other"] = service.similar("EMD-5625", k=2, fit=False)

    first = threading.Thread(target=filtered)
    second = threading.Thread(target=other)
    first.start()
    try:
        assert started.wait(60)
        second.start()
        second.join(60)
        assert "other" in got and "filtered" not in got
    finally:
        release.set()
        first.join(120)
        if second.ident is not None:
            second.join(120)
    assert got["filtered"]["hits"] and got["other"]["hits"]


def test_the_where_time_limit_is_set_on_the_service(store_dir: Path):
    from swan_index.where import WhereLimits

    svc = SwanService(store_dir, where_limits=WhereLimits(seconds=0.5))
    endless = (
        "(SELECT count(*) FROM entries a, entries b, entries c, entries d, "
        "entries e, entries f, entries g, entries h, entries i, entries j, "
        "entries k, entries l, entries m WHERE a.id + b.id + c.id + d.id + e.id "
        "+ f.id + g.id + h.id + i.id + j.id + k.id + l.id + m.id > 0) > 0"
    )
    try:
        with TestClient(create_server(svc)) as c:
            message = assert_error(
                c.get("/api/entries/1/similar", params={"where": endless}), 400
            )
            assert message.endswith("took over 0.5 s; simplify it")
            assert c.get("/api/entries/1/similar", params={"fit": "false"}).json()[
                "hits"
            ]
    finally:
        svc.close()


def test_the_read_write_lock_shares_reads_and_orders_writes():
    import threading
    import time

    from dashboard.service import ReadWriteLock

    lock = ReadWriteLock()
    events: list[str] = []
    inside, waiting, go = threading.Event(), threading.Event(), threading.Event()

    def reader(name: str, hold: threading.Event | None) -> None:
        with lock.reading():
            events.append(f"{name} in")
            if hold is not None:
                inside.set()
                assert hold.wait(30)
        events.append(f"{name} out")

    def writer() -> None:
        waiting.set()
        with lock.writing():
            events.append("writer")

    first = threading.Thread(target=reader, args=("r1", go))
    first.start()
    assert inside.wait(30)
    second = threading.Thread(target=reader, args=("r2", None))
    second.start()
    second.join(30)  # reads share: r2 is not held back by r1
    assert events == ["r1 in", "r2 in", "r2 out"]
    assert not lock.acquire(blocking=False)  # a read is running
    w = threading.Thread(target=writer)
    w.start()
    assert waiting.wait(30)
    deadline = time.monotonic() + 30
    while not lock._writers_waiting and time.monotonic() < deadline:
        time.sleep(0.01)  # until the writer waits
    third = threading.Thread(target=reader, args=("r3", None))
    third.start()
    go.set()
    for t in (first, w, third):
        t.join(30)
    # the waiting writer went before the reader that came after it
    assert events.index("writer") < events.index("r3 in")
    assert lock.acquire(blocking=False)
    lock.release()


# -- deleting by an EMDB id that several entries hold ------------------------------
def test_delete_of_an_ambiguous_emdb_id_is_refused(
    client: TestClient, service: SwanService, store_dir: Path, tmp_path: Path
):
    """Two entries hold EMD-5625 (the map and a gzipped copy): a delete by the
    EMDB id is 409 naming both, deletes nothing; one goes by its store id."""
    copy = tmp_path / "emd_5625.map.gz"
    copy.write_bytes(gzip.compress(MAPS["emd_5625"].read_bytes()))
    with Store.open(store_dir) as store:
        summary = ingest_paths([copy], store, MapEncoder(), workers=0, progress=False)
        assert summary.ok == 1, summary.failures
    service.refresh(force=True)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    rows = service.table(("id", "emdb_id"))
    ids = sorted(int(i) for i in rows["id"][rows["emdb_id"] == "EMD-5625"])
    assert len(ids) == 2
    response = client.delete("/api/entries/EMD-5625", headers=auth)
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["ids"] == ids[::-1]
    assert body["error"] == (
        f"EMD-5625 names 2 entries (store ids {ids[1]}, {ids[0]}); delete one by "
        f"its store id (e.g. {ids[1]})"
    )
    assert client.get("/api/health").json()["entries"] == len(STORED) + 1
    # by store id: the copy goes, the original stays and is now unambiguous
    response = client.delete(f"/api/entries/{ids[1]}", headers=auth)
    assert response.json() == {"deleted": 1, "id": ids[1]}
    assert client.get("/api/entries/EMD-5625").json()["id"] == ids[0]
    assert client.get("/api/health").json()["entries"] == len(STORED)


# -- files left by a process killed mid-upload -------------------------------------
_HANGING_UPLOAD = """
import sys, time
from pathlib import Path

def hang(path, **kwargs):
    print("reading", flush=True)
    time.sleep(600)

if sys.argv[1] == "search":
    import swan_index.query as q
    q.read_map = hang
    q.Query.from_bytes(None, b"not read" * 100, "m.map")
else:
    import dashboard.service as s
    s.read_map = hang
    service = s.SwanService(Path(sys.argv[2]), write_token="t" * 16)
    service.ingest_upload(b"not read" * 100, "m.map")
"""


def _kill_mid_upload(kind: str, store: Path, tmp: Path) -> None:
    """Run an upload (``search`` or ``ingest``) in a child process and kill -9
    it while its upload file exists."""
    import os
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-c", _HANGING_UPLOAD, kind, str(store)],
        stdout=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(tmp)},
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert child.stdout.readline() == b"reading\n"
    finally:
        child.kill()
        child.wait()


def test_files_of_uploads_killed_midway_are_removed_on_start(
    store_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import tempfile

    uploads = store_dir / "uploads"
    before = set(uploads.glob("*")) if uploads.exists() else set()
    _kill_mid_upload("ingest", store_dir, tmp_path)  # its service sweeps on start
    _kill_mid_upload("search", store_dir, tmp_path)
    [search_left] = tmp_path.glob("swan-upload-*.bin")
    [ingest_left] = set(uploads.glob("upload-*.map")) - before
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    SwanService(store_dir).close()
    assert not search_left.exists()
    assert not ingest_left.exists()


def test_upload_files_in_use_or_stored_are_kept_on_start(
    client: TestClient,
    service: SwanService,
    store_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    """Files of live processes, of other hosts, stored uploads and recent files
    named the older way stay; old ones named the older way go."""
    import os
    import tempfile

    from swan_index.query import upload_owner

    dead = 2**22 + 12345  # over Linux's largest process id: no such process
    host = upload_owner().split("-", 1)[1]
    live = tmp_path / f"swan-upload-{upload_owner()}-abcd1234.bin"
    elsewhere = tmp_path / f"swan-upload-{dead}-otherhost-abcd1234.bin"
    unrelated = tmp_path / "swan-upload-notes.txt"
    old = tmp_path / "swan-upload-old12345.bin"
    new = tmp_path / "swan-upload-new12345.bin"
    for path in (live, elsewhere, unrelated, old, new):
        path.write_bytes(b"x")
    os.utime(old, (0, 0))  # named the older way, long ago
    uploads = store_dir / "uploads"
    uploads.mkdir(exist_ok=True)
    stored = uploads / f"upload-{dead}-{host}-efgh5678.map"
    stored.write_bytes(MAPS[UPLOADED].read_bytes())
    with Store.open(store_dir) as store:
        summary = ingest_paths([stored], store, MapEncoder(), workers=0, progress=False)
        assert summary.ok == 1, summary.failures

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    SwanService(store_dir).close()
    assert not old.exists()
    assert all(p.exists() for p in (live, elsewhere, unrelated, new, stored))

    # the module's store as it was: the stored upload deleted (and its file)
    service.refresh(force=True)
    entry_id = service.store.find_sha256(
        hashlib.sha256(stored.read_bytes()).hexdigest()
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.delete(f"/api/entries/{entry_id}", headers=auth).status_code == 200
    assert not stored.exists()


# -- listing ---------------------------------------------------------------------------
def test_entries_are_listed_a_page_at_a_time(client: TestClient):
    total = client.get("/api/health").json()["entries"]
    seen, offset = [], 0
    while offset is not None:
        response = client.get("/api/entries", params={"offset": offset, "limit": 2})
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["total"] == total and len(page["entries"]) <= 2
        seen += [e["id"] for e in page["entries"]]
        offset = page["next_offset"]
    assert seen == sorted(seen) and len(set(seen)) == total
    for entry in page["entries"]:  # base names only, as for one entry
        assert "/" not in (entry["source_path"] or "")


def test_entry_listing_filters_and_refuses_bad_pages(client: TestClient):
    page = client.get("/api/entries", params={"where": "rg < 40", "limit": 1000}).json()
    assert page["next_offset"] is None
    assert page["total"] == len(page["entries"]) > 0
    assert all(e["rg"] < 40 for e in page["entries"])
    beyond = client.get("/api/entries", params={"offset": 10_000}).json()
    assert beyond["entries"] == [] and beyond["next_offset"] is None
    assert_error(client.get("/api/entries", params={"limit": 0}), 422)
    assert_error(client.get("/api/entries", params={"where": "nope > 1"}), 400)


# -- hits as CSV, superposed pairs --------------------------------------------------
def _csv_rows(text: str) -> list[dict[str, str]]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(text)))


def test_search_hits_as_csv(client: TestClient, map_bytes):
    response = client.post(
        "/api/search",
        params={"k": 3, "format": "csv"},
        files={"file": ("emd_1832.map", map_bytes("emd_1832"))},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "emd_1832-hits.csv" in response.headers["content-disposition"]
    rows = _csv_rows(response.text)
    assert len(rows) == 3 and rows[0]["rank"] == "1"
    assert rows[0]["emdb_id"] == "EMD-1832"
    assert rows[0]["emdb_url"] == "https://www.ebi.ac.uk/emdb/EMD-1832"
    assert {"score", "scale_1", "fit", "name", "id"} <= set(rows[0])
    # the same hits as the JSON answer
    json_hits = client.post(
        "/api/search",
        params={"k": 3},
        files={"file": ("emd_1832.map", map_bytes("emd_1832"))},
    ).json()["hits"]
    assert [int(r["id"]) for r in rows] == [h["id"] for h in json_hits]


def test_similar_hits_as_csv(client: TestClient):
    response = client.get(
        "/api/entries/EMD-5625/similar", params={"k": 2, "format": "csv"}
    )
    assert response.status_code == 200 and response.text.startswith("rank,")
    assert _csv_rows(response.text)[0]["emdb_id"] == "EMD-5625"


def _moved_copy(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """EMD-5625 turned and moved (a transformed copy, written gzipped): its path
    and the turn."""
    import dataclasses

    from scipy.spatial.transform import Rotation

    from ingest import read_map, rotate_map, write_map

    turn = Rotation.from_euler("zyx", [-50, 30, 15], degrees=True).as_matrix()
    moved = rotate_map(read_map(MAPS["emd_5625"]), turn, order=1)
    moved = dataclasses.replace(
        moved, origin=tuple(np.asarray(moved.origin) + [9.0, 4.0, -12.0])
    )
    return write_map(moved, tmp_path / "moved_copy_of_5625.map.gz"), turn


def test_superpose_an_upload_on_a_hit_gives_a_zip_for_chimerax(
    client: TestClient, tmp_path: Path
):
    import io
    import zipfile

    from ingest import read_map
    from ingest.canonical import volume_correlation

    path, _ = _moved_copy(tmp_path)
    response = client.post(
        "/api/superpose",
        params={"hit": "EMD-5625", "hit_level": 0.05},
        files={"file": ("moved copy.map.gz", path.read_bytes())},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "out")
    out = tmp_path / "out"
    (script,) = [n for n in names if n.endswith(".cxc")]
    mrcs = [n for n in names if n.endswith(".mrc")]
    text = (out / script).read_text()
    assert all(f"open {n}" in text for n in mrcs) and "level 0.05 " in text
    (query_file,) = [n for n in mrcs if "_on_" in n]
    query = read_map(out / query_file)
    hit = read_map(MAPS["emd_5625"])
    assert query.shape == hit.shape
    assert np.allclose(query.origin, hit.origin, atol=1e-3)
    assert "resampled" in query.header["labels"][0]
    assert volume_correlation(query.data, hit.data) > 0.95
    # the transform alone, as JSON
    info = client.post(
        "/api/superpose",
        params={"hit": "EMD-5625", "format": "json"},
        files={"file": ("moved.map.gz", path.read_bytes())},
    ).json()
    assert info["correlation"] > 0.95 and info["hit"] == "EMD-5625"


def test_superpose_entries_and_its_errors(client: TestClient):
    info = client.get(
        "/api/entries/EMD-1832/superpose/EMD-1832", params={"format": "json"}
    ).json()
    assert info["correlation"] > 0.99
    assert np.allclose(info["rotation"], np.eye(3), atol=0.02)
    response = client.get("/api/entries/EMD-1832/superpose/EMD-5625")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    # without the hit's map: the command file opens the hit's own file
    import io
    import zipfile

    lean = client.get(
        "/api/entries/EMD-1832/superpose/EMD-5625", params={"include_hit": False}
    )
    with zipfile.ZipFile(io.BytesIO(lean.content)) as zf:
        names = zf.namelist()
        (script,) = [n for n in names if n.endswith(".cxc")]
        text = zf.read(script).decode()
    assert sum(n.endswith(".mrc") for n in names) == 1
    assert "open emd_5625.map" in text.splitlines()
    assert_error(client.get("/api/entries/EMD-1832/superpose/EMD-999999"), 404)
    message = assert_error(
        client.post(
            "/api/superpose",
            params={"hit": "EMD-1832"},
            files={"file": ("bad.map", b"not a map" * 10)},
        ),
        400,
    )
    assert "bad.map" in message
    empty = client.post(
        "/api/superpose",
        params={"hit": "EMD-1832"},
        files={"file": ("empty.map", b"")},
    )
    assert "empty.map" in assert_error(empty, 400)
