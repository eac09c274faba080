"""The demo store's content (dashboard.demo): real metadata for the sample maps,
simulated entries that say so, and rebuilding a store of another demo version.

The stores here are reduced demos (one synthetic family, two variants per family)
built with the shipped checkpoint into a temporary folder; the sample metadata is
the shipped ``data/maps/sample_metadata.csv``."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from dashboard import demo
from dashboard.demo import (
    DEMO_VERSION,
    SAMPLE_METADATA,
    SIMULATED_METHOD,
    DemoConfig,
    build_demo_store,
    merge_metadata,
    read_sample_metadata,
)
from ingest import find_entries
from ingest.header import EntryMetadata
from swan_index.schema import EntryRecord
from swan_index.store import Store

from .conftest import DATA

SMALL = DemoConfig(synthetic_families=1, variants=2)


def _rows(path) -> list[dict]:
    with Store.open(path, read_only=True) as store:
        ids = np.ma.getdata(store.entries(("id",))["id"])
        return store.get(ids)


@pytest.fixture(scope="module")
def demo_rows(tmp_path_factory, encoder):
    """Rows of a reduced demo store."""
    path = tmp_path_factory.mktemp("demo") / "store"
    build_demo_store(path, encoder, SMALL, progress=False)
    return _rows(path)


def _by_emdb(rows: list[dict]) -> dict[str, dict]:
    return {r["emdb_id"]: r for r in rows if not r["simulated"]}


def test_sample_maps_show_their_real_metadata(demo_rows):
    real = _by_emdb(demo_rows)
    assert set(real) == {
        "EMD-1832",
        "EMD-3001",
        "EMD-3197",
        "EMD-5625",
        "EMD-6824",
        "EMD-21457",
    }
    e3001 = real["EMD-3001"]
    assert e3001["title"] == "MicroED structure of a peptide from alpha-synuclein"
    assert e3001["method"] == "electronCrystallography"
    assert e3001["resolution"] == pytest.approx(1.4)
    assert list(e3001["fitted_pdbs"]) == ["4znn"]
    assert str(e3001["release_date"]) == "2015-09-09"
    e6824 = real["EMD-6824"]
    assert (e6824["method"], e6824["resolution"]) == ("singleParticle", 5.8)
    assert list(e6824["fitted_pdbs"]) == ["5ye1"]
    assert "Mucolipin-1" in e6824["title"]
    assert real["EMD-3197"]["method"] == "subtomogramAveraging"
    assert real["EMD-3197"]["resolution"] is None  # no source gives one
    # the shipped header still wins for the entry that has one
    assert real["EMD-21457"]["resolution"] == pytest.approx(3.2)
    assert real["EMD-21457"]["header_path"].endswith("emd-21457.xml")
    assert sum(r["title"] is not None for r in real.values()) == 4
    # nothing guessed for the entries no shipped source describes
    for emdb in ("EMD-1832", "EMD-5625"):
        assert real[emdb]["title"] is None and real[emdb]["method"] is None


def test_simulated_entries_say_what_they_were_simulated_from(demo_rows):
    sims = [r for r in demo_rows if r["simulated"]]
    assert len(sims) == 3 * SMALL.variants  # two models, one synthetic family
    for r in sims:
        assert r["method"] == SIMULATED_METHOD
        assert "simulated at" in r["title"] and r["label"] in r["title"]
        assert r["sample_name"]
        assert r["emdb_id"] is None
    haemoglobin = [r for r in sims if r["label"].startswith("model 5ME2")]
    assert haemoglobin and all(list(r["fitted_pdbs"]) == ["5me2"] for r in haemoglobin)
    assert all("from PDB 5ME2" in r["title"] for r in haemoglobin)
    synthetic = [r for r in sims if r["label"].startswith("synthetic")]
    assert all("synthetic assembly" in r["title"] for r in synthetic)
    assert all("no real molecule" in r["sample_name"] for r in synthetic)


def test_shipped_sample_metadata_names_shipped_maps():
    table = read_sample_metadata()
    maps = {e.emdb_id for e in find_entries(DATA / "maps")}
    assert set(table) <= maps
    assert all(m.path is None for m in table.values())
    assert table["EMD-3001"].release_date == dt.date(2015, 9, 9)
    text = SAMPLE_METADATA.read_text()
    assert text.splitlines()[0].endswith(",source")


def test_bad_sample_metadata_is_one_line_naming_file_and_line(tmp_path):
    bad = tmp_path / "meta.csv"
    bad.write_text("emdb_id,resolution\nEMD-1001,2.5\nEMD-1002,high\n")
    with pytest.raises(ValueError, match=r"meta\.csv: line 3: resolution 'high'"):
        read_sample_metadata(bad)
    bad.write_text("emdb_id,title\nnot-an-id,x\n")
    with pytest.raises(ValueError, match="line 2: emdb_id 'not-an-id'.*EMD-NNNN"):
        read_sample_metadata(bad)


def test_bad_sample_metadata_leaves_the_maps_in(tmp_path, encoder):
    bad = tmp_path / "meta.csv"
    bad.write_text("emdb_id,release_date\nEMD-3001,last year\n")
    prepared, failures = demo.sample_maps(encoder.grid, bad)
    assert len(prepared) == 6
    assert len(failures) == 1 and "meta.csv: line 2" in failures[0]
    assert "\n" not in failures[0]


def test_header_wins_over_the_table():
    header = EntryMetadata(emdb_id="EMD-1", title="from the header", path="h.xml")
    table = EntryMetadata(emdb_id="EMD-1", title="t", method="helical", resolution=4.0)
    merged = merge_metadata(header, table)
    assert merged.title == "from the header" and merged.path == "h.xml"
    assert (merged.method, merged.resolution) == ("helical", 4.0)
    assert merge_metadata(None, table) is table
    assert merge_metadata(header, None) is header


def test_a_store_of_another_demo_version_is_rebuilt(tmp_path, encoder):
    path = tmp_path / "store"
    build_demo_store(path, encoder, SMALL, progress=False)
    before = _rows(path)
    # a user's own entry in the demo store survives the rebuild
    with Store.open(path) as store:
        volume = np.zeros((1, *(encoder.grid,) * 3), np.float32)
        volume[0, 8:-8, 8:-8, 8:-8] = 1.0
        store.add(encoder.encode(volume), [EntryRecord(sha256="a-user-map")])
    # as an older version left it: no metadata for the sample maps
    marker = path / "demo.json"
    old = json.loads(marker.read_text())
    marker.write_text(json.dumps({**old, "version": DEMO_VERSION - 1}))
    with Store.open(path) as store:
        store.delete([r["id"] for r in before if r["emdb_id"] == "EMD-3001"])
    build_demo_store(path, encoder, SMALL, progress=False)
    after = _rows(path)
    assert json.loads(marker.read_text())["version"] == DEMO_VERSION
    assert len(after) == len(before) + 1
    assert {r["sha256"] for r in after} == {r["sha256"] for r in before} | {
        "a-user-map"
    }
    assert _by_emdb(after)["EMD-3001"]["method"] == "electronCrystallography"
    # and a current store is left alone
    build_demo_store(path, encoder, SMALL, progress=False)
    assert [r["id"] for r in _rows(path)] == [r["id"] for r in after]
