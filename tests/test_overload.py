"""The server under more searches than it can run (dashboard/server.py's
SearchLimit, the API's upload slots, ``swan serve --max-searches``).

The service is a stand-in whose searches wait for the test's signal, so that a
request is "slow" for exactly as long as the test wants, whatever the machine.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dashboard.commands.serve import add_server_args
from dashboard.server import MAX_SEARCHES, create_server

#: Seconds a test waits for an event that should come at once (never reached).
PATIENCE = 60


class SlowService:
    """What the API needs of a :class:`~dashboard.service.SwanService`; each
    search or encode signals ``entered`` and waits for ``release``."""

    max_upload_bytes = 2**20
    write_token = None

    def __init__(self, folder: Path) -> None:
        self.store_path = folder
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self.calls = 0

    def _wait(self) -> None:
        self.calls += 1
        self.entered.release()
        assert self.release.wait(PATIENCE)

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "entries": 1,
            "encoder": "x",
            "scales": [1],
            "writes_enabled": False,
        }

    def similar(self, entry: str | int, **options: Any) -> dict[str, Any]:
        self._wait()
        return {"query": {"id": 1, "poses": 1, "source": "stored"}, "hits": []}

    def search_upload(self, data: bytes, **options: Any) -> dict[str, Any]:
        self._wait()
        query = {
            "name": "m.map",
            "grid": [1, 1, 1],
            "voxel_size": 1.0,
            "contour": 0.0,
            "contour_source": "user",
            "rg": 1.0,
            "poses": 1,
        }
        return {"query": query, "hits": []}

    def encode_upload(self, data: bytes, **options: Any) -> dict[str, Any]:
        found = self.search_upload(data)
        return {
            "query": found["query"],
            "checkpoint_hash": "x",
            "bits": 0,
            "scales": [],
        }


@pytest.fixture
def service(tmp_path: Path) -> SlowService:
    return SlowService(tmp_path)


def _entered(service: SlowService, n: int = 1) -> None:
    for _ in range(n):
        assert service.entered.acquire(timeout=PATIENCE)


def _is_busy(response) -> int:
    """A JSON 503 with a whole-second Retry-After; returns the seconds."""
    assert response.status_code == 503, response.text
    assert set(response.json()) == {"error"}
    assert "retry" in response.json()["error"]
    seconds = int(response.headers["retry-after"])
    assert seconds >= 1
    return seconds


UPLOAD = {"file": ("m.map", b"a map" * 100)}


def test_a_search_beyond_the_limit_is_503_with_retry_after(service: SlowService):
    with (
        TestClient(create_server(service, max_searches=1)) as client,
        cf.ThreadPoolExecutor(1) as pool,
    ):
        first = pool.submit(client.get, "/api/entries/1/similar")
        _entered(service)
        _is_busy(client.get("/api/entries/2/similar"))
        _is_busy(client.post("/api/search", files=UPLOAD))
        _is_busy(client.post("/api/encode", files=UPLOAD))
        assert service.calls == 1  # refused before reaching the service
        assert client.get("/api/health").status_code == 200  # never refused
        service.release.set()
        assert first.result(PATIENCE).status_code == 200
        # its place is free again
        assert client.get("/api/entries/2/similar").status_code == 200


def test_searches_up_to_the_limit_wait_their_turn(service: SlowService):
    with (
        TestClient(create_server(service, max_searches=2)) as client,
        cf.ThreadPoolExecutor(2) as pool,
    ):
        held = [
            pool.submit(client.get, "/api/entries/1/similar"),
            pool.submit(client.post, "/api/search", files=UPLOAD),
        ]
        _entered(service, 2)
        _is_busy(client.get("/api/entries/3/similar"))
        service.release.set()
        assert [f.result(PATIENCE).status_code for f in held] == [200, 200]


def test_no_limit_when_set_to_zero(service: SlowService):
    with (
        TestClient(create_server(service, max_searches=0)) as client,
        cf.ThreadPoolExecutor(4) as pool,
    ):
        held = [pool.submit(client.get, f"/api/entries/{i}/similar") for i in range(4)]
        _entered(service, 4)  # all four in the service at once
        service.release.set()
        assert [f.result(PATIENCE).status_code for f in held] == [200] * 4


def test_an_upload_waits_for_a_slot_a_bounded_time(service: SlowService):
    """Past the upload slots, an upload waits ``upload_wait`` s, then 503 with
    Retry-After (0 s here: no waiting at all)."""
    server = create_server(service, max_searches=0, upload_slots=1, upload_wait=0)
    with TestClient(server) as client, cf.ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.post, "/api/search", files=UPLOAD)
        _entered(service)
        assert "uploads" in client.post("/api/encode", files=UPLOAD).json()["error"]
        _is_busy(client.post("/api/search", files=UPLOAD))
        service.release.set()
        assert first.result(PATIENCE).status_code == 200


def test_a_negative_limit_is_refused(service: SlowService):
    with pytest.raises(ValueError, match="max_searches"):
        create_server(service, max_searches=-1)


def test_swan_serve_option():
    parser = argparse.ArgumentParser()
    add_server_args(parser)
    assert parser.parse_args([]).max_searches is None  # the server's default
    assert parser.parse_args(["--max-searches", "3"]).max_searches == 3
    assert parser.parse_args(["--max-searches", "0"]).max_searches == 0
    for bad in ("-1", "many"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--max-searches", bad])
    option = next(a for a in parser._actions if a.dest == "max_searches")
    assert f"default {MAX_SEARCHES})" in option.help
