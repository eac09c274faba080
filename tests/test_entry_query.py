"""Searching with a stored entry: its stored vectors plus its map read again in
every candidate pose while its file is unchanged; its stored vectors alone (with a
note saying why) otherwise."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from swan_index.indexer import ingest_paths
from swan_index.cli import main
from swan_index.map_encoder import MapEncoder
from swan_index.store import Store
from tests.conftest import MAPS


@pytest.fixture(scope="module")
def encoder() -> MapEncoder:
    return MapEncoder()


@pytest.fixture
def store(tmp_path: Path, encoder: MapEncoder):
    # EMD-6824 (C4 channel: two equal principal spreads) has several candidate poses
    files = []
    for label in ("emd_6824", "emd_1832"):
        dst = tmp_path / MAPS[label].name
        shutil.copy(MAPS[label], dst)
        files.append(dst)
    with Store.open(tmp_path / "store", encoder=encoder.info) as s:
        summary = ingest_paths(files, s, encoder, workers=0, progress=False)
        assert summary.ok == 2, summary.failures
        yield s, files


def _query(s: Store, encoder: MapEncoder, key: str = "EMD-6824"):
    entry = s.find(key)
    return entry, encoder.entry_query(s.get([entry])[0], s.get_code(entry))


def test_unchanged_file_is_searched_in_every_pose(store, encoder):
    s, _ = store
    entry, q = _query(s, encoder)
    assert (q.source, q.note) == ("map", None)
    assert q.poses == len(q.code) > 2
    assert q.rg == pytest.approx(s.get([entry])[0]["rg"])
    stored = s.get_code(entry)
    for scale in range(len(stored.vectors)):
        v = q.code.vectors[scale]
        assert np.array_equal(v[0], stored.vectors[scale][0])  # stored row first
        assert float(v[1] @ v[0]) > 0.999  # then the map's primary pose: the same
    hits = s.search(q.code, k=2, rg=q.rg)
    assert hits[0].id == entry and hits[0].score == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("change", ["modified", "touched", "removed", "same-size"])
def test_changed_or_missing_file_falls_back_to_stored_vectors(store, encoder, change):
    s, files = store
    path = files[0]
    st = path.stat()
    if change == "modified":
        with path.open("ab") as f:
            f.write(b"\0" * 16)
    elif change == "touched":
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    elif change == "removed":
        path.unlink()
    else:  # same size and time, other bytes: caught by the sha256
        data = bytearray(path.read_bytes())
        data[-8:] = bytes(8) if data[-8:] != bytes(8) else b"\1" * 8
        path.write_bytes(bytes(data))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    entry, q = _query(s, encoder)
    assert (q.source, q.poses, len(q.code)) == ("stored", 1, 1)
    assert q.note and str(path) in q.note
    assert s.search(q.code, k=1, rg=q.rg)[0].id == entry


def test_other_encoder_or_no_file_uses_stored_vectors(store, encoder):
    s, _ = store
    entry = s.find("EMD-6824")
    row, code = s.get([entry])[0], s.get_code(entry)
    other = dataclasses.replace(code, checkpoint_hash="0" * 64)
    assert "another encoder" in encoder.entry_query(row, other).note
    simulated = {**row, "source_path": None}
    assert "no map file" in encoder.entry_query(simulated, code).note
    big = encoder.entry_query(row, code, max_bytes=1)
    assert big.source == "stored" and "MiB" in big.note


def test_cli_entry_search_notes_a_fallback(store, capsys):
    s, files = store
    folder = str(s.path)
    assert main(["search", "EMD-6824", "--store", folder, "-k", "1", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)[0]["emdb_id"] == "EMD-6824" and not out.err
    files[0].unlink()
    assert main(["search", "EMD-6824", "--store", folder, "-k", "1", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)[0]["emdb_id"] == "EMD-6824"
    assert "not found; searching with the stored pose" in out.err
    args = ["search", "EMD-6824", "--store", folder, "--stored-pose", "--json"]
    assert main(args) == 0
    assert not capsys.readouterr().err


def test_service_remembers_an_entry_query(store, monkeypatch):
    from dashboard.service import SwanService

    s, _ = store
    s.flush()
    svc = SwanService(s.path)
    try:
        calls = []
        real = svc.encoder.entry_query
        monkeypatch.setattr(
            svc.encoder, "entry_query", lambda *a, **kw: calls.append(1) or real(*a)
        )
        first = svc.similar("EMD-6824", k=1)
        again = svc.similar("EMD-6824", k=1)
        assert first == again and first["query"]["source"] == "map"
        assert len(calls) == 1
        svc.similar("EMD-1832", k=1)
        assert len(calls) == 2
    finally:
        svc.close()
