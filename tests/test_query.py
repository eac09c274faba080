"""The one query type: a map file, an upload, a map in memory, a stored entry.

A stored entry is searched with its stored vectors plus its map read again in every
candidate pose while its file is unchanged; its stored vectors alone (with a note
saying why) otherwise."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ingest.errors import IngestError
from ingest.mapio import read_map
from swan_index.cli import main
from swan_index.indexer import ingest_paths
from swan_index.map_encoder import MapEncoder
from swan_index.query import Query, StoredEntry, search
from swan_index.ranking import SearchOptions
from swan_index.store import Store
from tests.conftest import MAPS, ROOT


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
    query = Query.from_entry(s, encoder, key)
    return query.entry_id, query


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
    entry = StoredEntry.read(s, "EMD-6824")
    other = dataclasses.replace(
        entry, code=dataclasses.replace(entry.code, checkpoint_hash="0" * 64)
    )
    assert "another encoder" in Query.from_stored(other, encoder).note
    simulated = dataclasses.replace(entry, row={**entry.row, "source_path": None})
    assert "no map file" in Query.from_stored(simulated, encoder).note
    big = Query.from_stored(entry, encoder, max_bytes=1)
    assert big.source == "stored" and "MiB" in big.note
    asked = Query.from_entry(s, None, "EMD-6824")  # swan search --stored-pose
    assert (asked.source, asked.poses) == ("stored", 1)


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
        real = Query.from_stored
        monkeypatch.setattr(
            Query, "from_stored", lambda *a, **kw: calls.append(1) or real(*a, **kw)
        )
        first = svc.similar("EMD-6824", k=1)
        again = svc.similar("EMD-6824", k=1)
        assert first == again and first["query"]["source"] == "map"
        assert len(calls) == 1
        svc.similar("EMD-1832", k=1)
        assert len(calls) == 2
    finally:
        svc.close()


def test_a_file_an_upload_and_a_map_in_memory_give_one_query(encoder, map_path):
    path = map_path("emd_6824")
    from_file = Query.from_file(encoder, path)
    from_bytes = Query.from_bytes(encoder, path.read_bytes(), name="my map.mrc")
    in_memory = Query.from_map(encoder, read_map(path))
    assert (from_file.source, from_bytes.source, in_memory.source) == (
        "file",
        "upload",
        "memory",
    )
    for q in (from_bytes, in_memory):
        assert q.poses == from_file.poses > 1
        assert q.rg == pytest.approx(from_file.rg)
        for a, b in zip(q.code.vectors, from_file.code.vectors, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_array_equal(q.volumes, from_file.volumes)
    info = from_bytes.describe()
    assert info["name"] == "my map.mrc" and info["poses"] == from_file.poses
    assert info["grid"] == list(read_map(path).data.shape[::-1])


def test_a_bad_upload_is_named_not_its_temporary_file(encoder):
    with pytest.raises(IngestError) as err:
        Query.from_bytes(encoder, b"not a map at all" * 64, name="../../x.map")
    assert "x.map" in str(err.value) and "swan-upload-" not in str(err.value)


def test_search_by_entry_finds_itself_with_the_fit(store, encoder):
    s, _ = store
    query = Query.from_entry(s, encoder, "EMD-1832")
    hits = search(s, query, k=2)
    assert hits[0].emdb_id == "EMD-1832" and "fit" in hits[0].scores
    plain = search(s, query, k=2, options=SearchOptions(fit_top=0))
    assert plain[0].emdb_id == "EMD-1832" and "fit" not in plain[0].scores


def test_the_storage_layer_does_not_load_torch():
    """The store (and ingest's worker side) import without torch; the names the
    README shows are importable from ``swan_index`` itself."""
    code = (
        "import sys, swan_index.store, swan_index.prepare, swan_index.where; "
        "import swan_index; swan_index.Store; swan_index.SearchOptions; "
        "assert 'torch' not in sys.modules, 'torch loaded'; "
        "from swan_index import MapEncoder, Query, SearchOptions, Store, "
        "ingest_paths, search, evaluate_store, read_truth, Hit, EncoderInfo"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
