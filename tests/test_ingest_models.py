"""`swan ingest` of atomic models (real PDB files from data/models): one simulated
entry per resolution with the file's metadata, idempotent re-runs, bad model files
one line each while the rest is stored, gzipped input, an older store gaining the
new columns, and `swan search MODEL --resolution`."""

from __future__ import annotations

import gzip
import json
import shutil

import duckdb
import gemmi
import numpy as np
import pytest

from swan_index.cli import main
from swan_index.indexer import ingest_paths
from swan_index.query import Query
from swan_index.schema import ADDED_COLUMNS
from swan_index.store import Store

COLUMNS = (
    "id",
    "pdb_id",
    "title",
    "organism",
    "method",
    "model_method",
    "n_chains",
    "n_residues",
    "resolution",
    "simulated",
    "source_path",
    "sample_name",
)


def rows(store: Store) -> list[dict]:
    table = store.entries(COLUMNS)
    out = []
    for i in range(len(table["id"])):
        row = {}
        for c in COLUMNS:
            v = table[c][i]
            row[c] = (
                None if np.ma.is_masked(v) else (v.item() if hasattr(v, "item") else v)
            )
        out.append(row)
    return out


@pytest.fixture
def models(tmp_path, model_path):
    """A folder: 5me2.pdb plain, 6272.pdb gzipped, and bad model files."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(model_path("5me2"), folder / "5me2.pdb")
    with open(model_path("6272"), "rb") as src:
        with gzip.open(folder / "6272.pdb.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    (folder / "water.pdb").write_text(
        "HETATM    1  O   HOH A   1       1.000   2.000   3.000  1.00  0.00"
        "           O\nEND\n"
    )
    (folder / "broken.cif").write_text("not a cif\n")
    (folder / "nothing.ent").write_text("HEADER    EMPTY\nEND\n")
    return folder


BAD = {"water.pdb", "broken.cif", "nothing.ent"}


def ingest(store, encoder, paths, resolutions=(6.0,)):
    """``swan ingest PATHS --model-resolution ...`` in process."""
    return ingest_paths(
        paths, store, encoder, workers=0, progress=False, model_resolutions=resolutions
    )


def test_models_ingest_one_entry_per_resolution(tmp_path, encoder, models):
    with Store.open(tmp_path / "s", encoder=encoder.info) as store:
        run = ingest(store, encoder, [models], (6.0, 8.0))
        assert (run.ok, run.failed) == (4, 3)
        # each bad file: one line naming it and saying what to do
        failed = {f["path"].rsplit("/", 1)[-1]: f["reason"] for f in run.failures}
        assert set(failed) == BAD
        for name, reason in failed.items():
            assert "\n" not in reason and reason.startswith(str(models / name))
            assert "; " in reason
        got = rows(store)
        assert {(r["pdb_id"], r["resolution"]) for r in got} == {
            ("5ME2", 6.0),
            ("5ME2", 8.0),
            (None, 6.0),
            (None, 8.0),
        }
        hb = next(r for r in got if r["pdb_id"] == "5ME2")
        assert hb["simulated"] is True and hb["method"] == "simulated"
        assert hb["model_method"] == "ELECTRON MICROSCOPY"
        assert hb["organism"] == "HOMO SAPIENS"
        assert (hb["n_chains"], hb["n_residues"]) == (4, 566)
        assert "HAEMOGLOBIN" in hb["title"] and "simulated at" in hb["title"]
        assert hb["sample_name"] == "biological assembly 1"
        assert hb["source_path"] == str((models / "5me2.pdb").resolve())
        vp6 = next(r for r in got if r["pdb_id"] is None)
        assert vp6["source_path"].endswith("6272.pdb.gz")  # gzipped input
        assert (vp6["n_chains"], vp6["n_residues"]) == (1, 177)
        # the ingest log has a line per file tried
        with duckdb.connect(str(tmp_path / "s" / "swan.duckdb"), read_only=True) as con:
            log = con.sql("SELECT path, status FROM ingest_log").fetchall()
        assert sum(s == "error" for _, s in log) == 3
        assert sum(s == "ok" for _, s in log) == 4

        # the same run again stores nothing; a new resolution stores only it
        again = ingest(store, encoder, [models], (6.0, 8.0))
        assert (again.ok, again.skipped, again.failed) == (0, 4, 3)
        more = ingest(store, encoder, [models], (4.0, 6.0, 8.0))
        assert (more.ok, more.skipped) == (2, 4)
        assert store.count() == 6
        # a changed file replaces its entries at the resolutions ingested again
        (models / "5me2.pdb").write_text(
            (models / "5me2.pdb").read_text().replace("HOMO SAPIENS", "HUMAN")
        )
        changed = ingest(store, encoder, [models / "5me2.pdb"], (6.0,))
        assert changed.ok == 1 and store.count() == 6
        organisms = {
            (r["organism"], r["resolution"]) for r in rows(store) if r["pdb_id"]
        }
        assert organisms == {
            ("HUMAN", 6.0),
            ("HOMO SAPIENS", 4.0),
            ("HOMO SAPIENS", 8.0),
        }


def test_cli_ingest_and_search_with_a_model(tmp_path, encoder, models, capsys):
    store = tmp_path / "s"
    code = main(
        [
            "ingest",
            str(models),
            "--store",
            str(store),
            "--workers",
            "0",
            "--model-resolution",
            "8",
            "--quiet",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1  # some files failed, the rest is stored
    assert "2 stored, 0 skipped, 3 failed" in out
    assert sorted(
        line.split(": ")[1].rsplit("/", 1)[-1] for line in err.splitlines()
    ) == sorted(BAD)
    # an mmCIF file of haemoglobin (5me2 written as mmCIF) finds 5ME2 first
    cif = tmp_path / "model.cif"
    st = gemmi.read_structure(str(models / "5me2.pdb"))
    st.setup_entities()
    st.make_mmcif_document().write_file(str(cif))
    code = main(
        ["search", str(cif), "--resolution", "8", "--store", str(store), "--json"]
    )
    hits = json.loads(capsys.readouterr().out)
    assert code == 0
    assert hits[0]["title"].startswith("CRYOEM STRUCTURE OF HAEMOGLOBIN")
    assert hits[0]["resolution"] == 8.0
    # --resolution is for models only; a bad model is one line, exit 1
    code = main(["search", str(models / "water.pdb"), "--store", str(store)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "only ligands or water" in err


def test_model_query_matches_its_stored_entry(tmp_path, encoder, model_path):
    with Store.open(tmp_path / "s", encoder=encoder.info) as store:
        ingest(store, encoder, [model_path("6272")], (6.0,))
        query = Query.from_model(encoder, model_path("6272"), 6.0)
        assert query.prepared.record.sha256 == store.get([1])[0]["sha256"]
        assert query.prepared.record.simulated


def test_older_store_gains_the_model_columns(tmp_path, encoder, model_path, map_path):
    path = tmp_path / "s"
    with Store.open(path, encoder=encoder.info) as store:
        ingest_paths([map_path("emd_1832")], store, encoder, workers=0, progress=False)
    with duckdb.connect(
        str(path / "swan.duckdb")
    ) as con:  # as an older version made it
        con.execute("DROP INDEX entries_sha256")
        for column in ADDED_COLUMNS:
            con.execute(f"ALTER TABLE entries DROP COLUMN {column}")
        con.execute("CREATE INDEX entries_sha256 ON entries (sha256)")
    with Store.open(path, read_only=True) as store:  # a reader changes nothing
        assert store.count() == 1
    with Store.open(path, encoder=encoder.info) as store:
        run = ingest_paths(
            [model_path("5me2")], store, encoder, workers=0, progress=False
        )
        assert run.ok == 1
        got = {r["id"]: r for r in rows(store)}
        assert got[1]["pdb_id"] is None and got[1]["simulated"] is False
        assert got[2]["pdb_id"] == "5ME2" and got[2]["n_chains"] == 4
