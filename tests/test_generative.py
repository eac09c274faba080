"""The latent prior over HTTP (dashboard/generative.py and its API routes):
denoising an upload, variations of a stored entry, draws from the prior; every
file labelled generated, and refused when uploaded for storing."""

from __future__ import annotations

import base64
import io
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from dashboard.generative import prior_service
from dashboard.server import create_server
from dashboard.service import SwanService, UploadError
from ingest import read_map, write_map
from ingest.mapio import GENERATED_LABEL
from swan_index.generate import DEFAULT_PRIOR, fit_to_data
from swan_index.indexer import ingest_paths
from swan_index.map_encoder import MapEncoder
from swan_index.store import Store
from tests.conftest import MAPS

TOKEN = "test-token-0123456789"


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("generative") / "store"
    encoder = MapEncoder()
    with Store.open(folder, encoder=encoder.info) as store:
        run = ingest_paths(
            [MAPS["emd_1832"], MAPS["emd_6824"]],
            store,
            encoder,
            workers=0,
            progress=False,
        )
    assert run.ok == 2, run.failures
    return folder


@pytest.fixture(scope="module")
def service(store_dir: Path):
    svc = SwanService(store_dir, write_token=TOKEN)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def client(service: SwanService) -> TestClient:
    with TestClient(create_server(service)) as c:
        yield c


def _read(blob: bytes, tmp_path: Path, name: str = "out.mrc"):  # noqa: ANN202
    path = tmp_path / name
    path.write_bytes(blob)
    return read_map(path)


def _zip(blob: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def test_denoise_gives_a_labelled_map_on_the_upload_grid(client, tmp_path):
    source = MAPS["emd_5625"]
    r = client.post(
        "/api/denoise",
        params={"strength": 0.3, "seed": 1},
        files={"file": ("emd_5625.map", source.read_bytes())},
    )
    assert r.status_code == 200, r.text
    assert 'filename="denoised_emd_5625.mrc"' in r.headers["content-disposition"]
    out, original = _read(r.content, tmp_path), read_map(source)
    assert out.shape == original.shape
    assert np.allclose(out.voxel_size, original.voxel_size)
    assert np.allclose(out.origin, original.origin, atol=1e-3)
    assert out.header["labels"][0] == GENERATED_LABEL and out.generated
    assert "strength 0.3" in out.header["labels"][1]
    # the same request draws the same map; another seed another one
    again = client.post(
        "/api/denoise",
        params={"strength": 0.3, "seed": 1},
        files={"file": ("emd_5625.map", source.read_bytes())},
    )
    assert again.content == r.content
    other = client.post(
        "/api/denoise",
        params={"strength": 0.3, "seed": 2},
        files={"file": ("emd_5625.map", source.read_bytes())},
    )
    assert other.content != r.content
    # it correlates with the map it came from
    a, b = out.data.ravel(), original.data.ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.5


def test_denoise_refuses_bad_requests_in_one_line(client):
    bad = [
        ({"strength": 1.5}, b"x" * 100, 422),
        ({}, b"", 400),
        ({}, b"not a map at all" * 100, 400),
    ]
    for params, data, status in bad:
        r = client.post("/api/denoise", params=params, files={"file": ("m.map", data)})
        assert r.status_code == status, r.text
        message = r.json()["error"] if status != 422 else r.text
        assert "\n" not in message and "Traceback" not in message


def test_denoise_without_memory_for_the_consistent_map_is_413(client, monkeypatch):
    """No memory for the copies that make the denoised map consistent with the
    upload: 413 with one line, not a server error."""
    from swan_index import shells

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(shells.fft, "rfftn", no_memory)
    r = client.post(
        "/api/denoise",
        params={"strength": 0.3, "seed": 7},  # a seed no other test caches
        files={"file": ("emd_5625.map", MAPS["emd_5625"].read_bytes())},
    )
    assert r.status_code == 413, r.text
    message = r.json()["error"]
    assert "\n" not in message and "memory" in message


def test_variations_keep_the_entry_and_differ(client, service, tmp_path):
    r = client.get(
        "/api/entries/EMD-1832/variations", params={"n": 3, "keep_scales": 3}
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    files = _zip(r.content)
    assert sorted(files) == [f"variation_{i:02d}.mrc" for i in (1, 2, 3)]
    maps = [_read(blob, tmp_path, name) for name, blob in files.items()]
    grid = service.encoder.grid
    for m in maps:
        assert m.shape == (grid, grid, grid) and m.generated
        assert "variation of EMD-1832 keeping 3 of 4 scales" in m.header["labels"][1]
    # the draws differ from each other, and each resembles the entry's own
    # reconstruction far more than the other entry's
    own = service.coarse_to_fine("EMD-1832", grid=grid)[-1].ravel()
    other = service.coarse_to_fine("EMD-6824", grid=grid)[-1].ravel()
    volumes = [m.data.ravel() for m in maps]
    assert not np.allclose(volumes[0], volumes[1])
    for v in volumes:
        assert np.corrcoef(v, own)[0, 1] > np.corrcoef(v, other)[0, 1]
    described = client.get(
        "/api/entries/1/variations", params={"n": 2, "format": "json"}
    ).json()
    assert described["generated"] is True and len(described["maps"]) == 2
    assert all(m["voxels_above_half"] > 0 for m in described["maps"])
    # the defaults: the coarsest 3 scales kept, strength 0.6
    assert "keeping 3 of 4 scales" in described["description"]
    assert "strength 0.6" in described["description"]


def test_variations_at_a_lower_strength_stay_closer_to_the_entry(
    client, service, tmp_path
):
    grid = service.encoder.grid
    own = service.coarse_to_fine("EMD-1832", grid=grid)[-1].ravel()
    closeness = {}
    for strength in (1.0, 0.3):
        r = client.get(
            "/api/entries/EMD-1832/variations",
            params={"n": 3, "keep_scales": 1, "strength": strength},
        )
        assert r.status_code == 200, r.text
        maps = [_read(b, tmp_path, n) for n, b in _zip(r.content).items()]
        closeness[strength] = np.mean(
            [np.corrcoef(m.data.ravel(), own)[0, 1] for m in maps]
        )
    assert "strength 0.3" in maps[0].header["labels"][1]
    assert closeness[0.3] > closeness[1.0]
    for bad in (0, 1.5):
        r = client.get("/api/entries/1/variations", params={"strength": bad})
        assert r.status_code == 422


def test_variations_and_draws_refuse_bad_requests(client):
    r = client.get("/api/entries/EMD-1832/variations", params={"keep_scales": 4})
    assert r.status_code == 400 and "keep_scales 4: use 1..3" in r.json()["error"]
    assert client.get("/api/entries/EMD-9999/variations").status_code == 404
    assert client.get("/api/generate", params={"n": 9}).status_code == 422
    assert client.get("/api/generate", params={"n": 0}).status_code == 422


def test_draws_from_the_prior_alone(client, tmp_path):
    r = client.get("/api/generate", params={"n": 2, "seed": 3})
    assert r.status_code == 200, r.text
    files = _zip(r.content)
    assert sorted(files) == ["generated_01.mrc", "generated_02.mrc"]
    for name, blob in files.items():
        m = _read(blob, tmp_path, name)
        assert m.generated and "drawn from the prior" in m.header["labels"][1]


def test_a_generated_upload_is_not_stored(client, store_dir):
    denoised = client.post(
        "/api/denoise",
        files={"file": ("emd_3197.map.gz", MAPS["emd_3197"].read_bytes())},
    )
    assert denoised.status_code == 200, denoised.text
    r = client.post(
        "/api/entries",
        files={"file": ("denoised.mrc", denoised.content)},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert r.status_code == 400, r.text
    message = r.json()["error"]
    assert message.startswith("denoised.mrc: its header says the Cryo-SWAN prior")
    assert "stores measured maps only" in message and "\n" not in message
    assert client.get("/api/health").json()["entries"] == 2
    kept = store_dir / "uploads"
    assert not kept.exists() or list(kept.iterdir()) == []  # no copy left


def test_a_server_without_a_usable_prior_says_so(store_dir, tmp_path):
    bad = tmp_path / "prior.pt"
    bad.write_bytes(b"not a prior")
    svc = SwanService(store_dir, prior=bad)
    try:
        with TestClient(create_server(svc)) as c:
            r = c.get("/api/generate")
            assert r.status_code == 503
            message = r.json()["error"]
            assert "prior cannot be used" in message and "--prior" in message
            assert "\n" not in message
        assert prior_service(svc).describe()["available"] is False
    finally:
        svc.close()


def test_one_prior_service_per_server(service):
    assert prior_service(service) is prior_service(service)
    described = prior_service(service).describe()
    assert described["available"] is True
    assert described["encoder"] == service.store.encoder.hash[:12]
    with pytest.raises(UploadError, match="draw 1 to 8"):
        prior_service(service).draws(0)


def test_the_entry_panel_draws_variations(service):
    from dashboard.pages.variations import DRAWS, on_variations

    figure, text, view = on_variations(service, 1, 2, seed=5)
    assert view == {}  # shown
    meshes = [t for t in figure.data if t.type == "mesh3d"]
    assert len(meshes) == DRAWS + 1
    titles = [a.text for a in figure.layout.annotations]
    assert titles[0] == "the entry (decoded)" and titles[1] == "variation 1"
    shown = str(text)
    assert "keeping the coarsest 2 of 4 scales" in shown and "not measured" in shown
    # the default strength: 0.6, started from the entry's own
    assert "/api/entries/1/variations?n=3&keep_scales=2&seed=5&strength=0.6" in shown
    assert "seed 5, strength 0.6" in shown
    _, afresh, _ = on_variations(service, 1, 2, seed=5, strength=1.0)
    assert "keep_scales=2&seed=5&strength=1" in str(afresh)  # not the API's default
    assert "seed 5, strength 1 (afresh)" in str(afresh)
    _, refused, view = on_variations(service, None, 2, seed=1)
    assert "Choose an entry first" in str(refused) and view["display"] == "none"
    _, missing, _ = on_variations(service, 999, 2, seed=1)
    assert "999" in str(missing)


def test_the_query_panel_denoises_the_kept_upload(service):
    from dashboard.pages.denoise import on_denoise, on_download
    from dashboard.pairs import Pairs

    pairs = Pairs(service)
    data = MAPS["emd_5625"].read_bytes()
    key = pairs.keep_upload(data, "emd_5625.map", None)
    query = {"key": key, "name": "emd_5625.map"}
    figure, text, button, view = on_denoise(service, pairs, query, 0.3)
    assert view == {}  # shown
    assert len([t for t in figure.data if t.type == "mesh3d"]) == 2
    titles = [a.text for a in figure.layout.annotations]
    assert titles == ["the query", "denoised (generated)"]
    assert "strength 0.3" in str(text) and button["display"] != "none"
    payload = on_download(service, pairs, query, 0.3)
    assert payload["filename"] == "denoised_emd_5625.mrc" and payload["base64"]
    made = prior_service(service).denoise_upload(data, "emd_5625.map", 0.3)
    assert base64.b64decode(payload["content"]) == made.file.data  # the one shown
    for bad_query, strength, says in (
        (None, 0.5, "search with a map first"),
        (query, "x", "between 0 and 1"),
        (query, 3, "strength 3: use a value in [0, 1]"),
        ({"key": "gone", "name": "m"}, 0.5, "no longer held"),
    ):
        _, text, button, view = on_denoise(service, pairs, bad_query, strength)
        assert says in str(text) and button["display"] == "none"
        assert view["display"] == "none"


def test_search_with_the_completion_over_http(client, tmp_path):
    dmap = read_map(MAPS["emd_1832"])
    data = dmap.data.copy()
    data[: data.shape[0] // 2] = np.median(data)  # half of it missing
    write_map(replace(dmap, data=data), tmp_path / "partial.mrc")
    blob = (tmp_path / "partial.mrc").read_bytes()
    params = {"exact": True, "k": 5}
    plain = client.post(
        "/api/search", params=params, files={"file": ("partial.mrc", blob)}
    )
    both = client.post(
        "/api/search",
        params={**params, "complete": True},
        files={"file": ("partial.mrc", blob)},
    )
    assert plain.status_code == both.status_code == 200, both.text
    before = {h["id"]: h["score"] for h in plain.json()["hits"]}
    after = {h["id"]: h["score"] for h in both.json()["hits"]}
    assert set(after) == set(before)
    assert all(after[i] >= before[i] - 1e-6 for i in before)
    query = both.json()["query"]
    assert query["completion_strength"] == pytest.approx(1.0)  # the default
    assert plain.json()["query"]["completion_strength"] is None
    poses = query["poses"]
    for h in both.json()["hits"]:  # a hit from the completion beat the map's
        assert (h["pose"] >= poses) == (h["score"] > before[h["id"]] + 1e-6)


def test_the_search_page_searches_with_the_completion(service):
    from dashboard.pages.search import on_upload

    contents = "data:application/octet-stream;base64," + base64.b64encode(
        MAPS["emd_5625"].read_bytes()
    ).decode("ascii")
    plain = on_upload(service, contents, "emd_5625.map", None, 5)
    both = on_upload(service, contents, "emd_5625.map", None, 5, complete=True)
    assert sorted(plain["hits"]) == sorted(both["hits"])
    text = str(both["message"])
    assert "better of the map and its completion by the prior (strength 1)" in text
    assert "completion" not in str(plain["message"])


# -- completing an upload over HTTP ------------------------------------------------
def _partial(tmp_path: Path) -> bytes:
    """emd_1832 with half of its box set to its background (a part missing)."""
    dmap = read_map(MAPS["emd_1832"])
    data = dmap.data.copy()
    data[: data.shape[0] // 2] = np.median(data)
    write_map(replace(dmap, data=data), tmp_path / "partial.mrc")
    return (tmp_path / "partial.mrc").read_bytes()


def test_complete_gives_a_labelled_map_on_the_upload_grid(client, tmp_path):
    blob = _partial(tmp_path)
    r = client.post("/api/complete", files={"file": ("partial.mrc", blob)})
    assert r.status_code == 200, r.text
    assert 'filename="completed_partial.mrc"' in r.headers["content-disposition"]
    out, upload = (
        _read(r.content, tmp_path, "completed.mrc"),
        read_map(tmp_path / "partial.mrc"),
    )
    assert out.shape == upload.shape
    assert np.allclose(out.voxel_size, upload.voxel_size)
    assert np.allclose(out.origin, upload.origin, atol=1e-3)
    assert out.header["labels"][0] == GENERATED_LABEL and out.generated
    assert out.header["labels"][1].startswith("completed upload partial.mrc")
    assert "strength 1" in out.header["labels"][1]  # swan complete's default
    # the completion prior's draw: the upload's own density kept where it is
    # above its contour (in canonical values, on the canonical grid)
    # the denoising path at the completion's strength: the same reconstruction,
    # but a denoised map is kept consistent with the upload and a completion not
    denoised = client.post(
        "/api/denoise",
        params={"strength": 0.6},
        files={"file": ("partial.mrc", blob)},
    )
    assert denoised.status_code == 200, denoised.text
    same = _read(denoised.content, tmp_path, "denoised.mrc")
    assert not np.array_equal(same.data, out.data)
    assert same.header["labels"][1].startswith("denoised upload")
    # another strength, another map
    far = client.post(
        "/api/complete",
        params={"strength": 0.5},
        files={"file": ("partial.mrc", blob)},
    )
    assert far.status_code == 200, far.text
    near = _read(far.content, tmp_path, "far.mrc")
    assert "strength 0.5" in near.header["labels"][1]
    assert not np.array_equal(near.data, out.data)


@pytest.mark.parametrize(
    "params, data, status",
    [
        ({"strength": -0.1}, b"x" * 100, 422),
        ({"seed": -1}, b"x" * 100, 422),
        ({}, b"", 400),
        ({}, b"not a map at all" * 100, 400),
    ],
)
def test_complete_refuses_bad_requests_in_one_line(client, params, data, status):
    r = client.post("/api/complete", params=params, files={"file": ("m.map", data)})
    assert r.status_code == status, r.text
    message = r.json()["error"] if status != 422 else r.text
    assert "\n" not in message and "Traceback" not in message


def test_complete_over_the_limit_or_without_a_prior(store_dir, tmp_path):
    prior = tmp_path / "prior.pt"
    prior.write_bytes(b"not a prior")
    blob = MAPS["emd_5625"].read_bytes()
    for options, status, says in (
        ({"max_upload_bytes": len(blob) // 2}, 413, "-byte limit"),
        ({"completion": prior}, 503, "completion prior cannot be used"),
        ({"completion": DEFAULT_PRIOR}, 503, "not a completion prior"),
    ):
        completion = options.pop("completion", None)
        svc = SwanService(store_dir, **options)
        if completion is not None:
            prior_service(svc).completion_path = completion
        try:
            with TestClient(create_server(svc)) as c:
                r = c.post("/api/complete", files={"file": ("emd_5625.map", blob)})
        finally:
            svc.close()
        assert r.status_code == status, r.text
        message = r.json()["error"]
        assert says in message and "\n" not in message


def test_the_priors_map_is_fitted_to_the_noisy_maps_units(rng):
    """A map in the wrong units (scaled and shifted) is put in the noisy
    map's by least squares; a flat map or one the fit would turn over is
    left as it is."""
    truth = rng.normal(0, 1, (16, 16, 16)).astype(np.float32)
    noisy = truth + rng.normal(0, 1, truth.shape).astype(np.float32)
    fitted = fit_to_data(2.5 * truth - 4.0, noisy)
    assert np.abs(fitted - truth).max() < 0.1 * truth.std()
    flat = np.full_like(truth, 3.0)
    assert fit_to_data(flat, noisy) is flat
    upside_down = -truth
    assert fit_to_data(upside_down, noisy) is upside_down
