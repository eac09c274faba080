"""Searching with a stored entry: its map is read again in every candidate pose
while its file is unchanged; otherwise its stored vectors (one pose) serve."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from swan_index.bulk import ingest_paths
from swan_index.pipeline import MapEncoder
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


def test_unchanged_file_is_searched_in_every_pose(store, encoder):
    s, files = store
    entry = s.find("EMD-6824")
    query, rg, poses = encoder.entry_query(s, entry)
    assert poses > 1 and len(query) == poses
    assert rg == pytest.approx(s.get([entry])[0]["rg"])
    # the first pose is the stored one
    for scale, stored in enumerate(s._indexes):
        a, b = query.vectors[scale][0], stored.lookup(np.array([entry]))[0]
        assert float(a @ b) > 0.999
    hits = s.search(query, k=2, rg=rg)
    assert hits[0].id == entry and hits[0].score == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("change", ["modified", "touched", "removed"])
def test_changed_or_missing_file_falls_back_to_stored_vectors(store, encoder, change):
    s, files = store
    path = files[0]
    if change == "modified":
        with path.open("ab") as f:
            f.write(b"\0" * 16)
    elif change == "touched":
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    else:
        path.unlink()
    entry = s.find("EMD-6824")
    query, rg, poses = encoder.entry_query(s, entry)
    assert (query, poses) == (entry, 1) and rg is not None
    assert s.search(query, k=1)[0].id == entry
