"""Re-encoding a store with a new checkpoint: `swan reencode`."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch

from encoder.checkpoint import load_checkpoint, save_checkpoint
from ingest.models import read_model_file, simulate_model
from swan_index import local_engine
from swan_index import reencode as reencode_module
from swan_index.cli import main
from swan_index.indexer import ingest_paths
from swan_index.map_encoder import DEFAULT_CHECKPOINT, MapEncoder
from swan_index.prepare import prepare_map
from swan_index.reencode import build_path, plan_sources, reencode_store, swap_in
from swan_index.store import Store

from .conftest import DATA, MAPS, MODELS


@pytest.fixture(scope="module")
def new_encoder(tmp_path_factory) -> MapEncoder:
    """A second checkpoint: the shipped one with its weights perturbed (seeded)."""
    model, _ = load_checkpoint(DEFAULT_CHECKPOINT)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point() and p.numel() > 1:
                p.add_(torch.randn(p.shape, generator=gen) * 0.01 * p.std())
    path = tmp_path_factory.mktemp("ckpt") / "new.pt"
    save_checkpoint(model, path)
    return MapEncoder(path)


@pytest.fixture
def sources(tmp_path) -> Path:
    """Two maps (one with its header) and a model, in a folder of their own."""
    d = tmp_path / "src"
    d.mkdir()
    for name in ("emd_3197", "emd_21457_seg"):
        shutil.copy(MAPS[name], d / MAPS[name].name)
    shutil.copy(DATA / "maps" / "emd-21457.xml", d / "emd-21457.xml")
    shutil.copy(MODELS["6272"], d / "6272.pdb")
    return d


def _ingest(store, encoder, sources, **kw):
    """The sources into ``store``: the model first (at 6 Å from its assembly, at
    8 Å from its asymmetric unit), then the maps, so that the ids differ from
    those of a re-encoding (maps first)."""
    kw = {"workers": 0, "progress": False, **kw}
    model = [sources / "6272.pdb"]
    ingest_paths(model, store, encoder, model_resolutions=(6.0,), **kw)
    ingest_paths(
        model, store, encoder, model_resolutions=(8.0,), model_assembly=False, **kw
    )
    ingest_paths(sorted(sources.glob("*.m*")), store, encoder, **kw)


@pytest.fixture
def old_store(tmp_path, encoder, sources) -> Path:
    """A store of the shipped checkpoint: the sources, a simulated entry with no
    file (labelled), a label set on a map, and a layout."""
    path = tmp_path / "old.swan"
    with Store.open(path, encoder=encoder.info) as store:
        _ingest(store, encoder, sources)
        dmap = simulate_model(read_model_file(MODELS["5me2"]), 8.0)
        prepared = prepare_map(dmap, encoder.grid, label="family-a")
        code = encoder.encode(prepared.volumes)
        store.add(code, [prepared.record], [prepared.preview()])
        from swan_index.layout import layout_store

        layout_store(store)
    con = duckdb.connect(str(path / "swan.duckdb"))
    con.execute("UPDATE entries SET label = 'spike' WHERE emdb_id = 'EMD-21457'")
    con.close()
    return path


def _reencode(store: Path, encoder: MapEncoder, **kw):
    """:func:`reencode_store` in process, quietly."""
    return reencode_store(store, encoder, **{"workers": 0, "progress": False, **kw})


def _rows(path: Path) -> dict[str, dict]:
    """``sha256 -> entries row`` (with the layout's x) of a store."""
    con = duckdb.connect(str(path / "swan.duckdb"), read_only=True)
    try:
        cur = con.execute(
            "SELECT e.*, l.x FROM entries e LEFT JOIN layout l ON e.id = l.id"
        )
        names = [d[0] for d in cur.description]
        return {r[1]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}
    finally:
        con.close()


def _files(path: Path) -> dict[str, str]:
    """sha256 of every file of a store but its lock file."""
    return {
        str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(path.rglob("*"))
        if f.is_file() and f.name != "write.lock"
    }


def test_reencode_in_place(tmp_path, old_store, sources, encoder, new_encoder):
    before = _rows(old_store)
    old_files = _files(old_store)
    (sources / "emd-21457.xml").unlink()  # the title comes from it: carried over
    (sources / "emd_3197.map.gz").unlink()  # gone: listed

    summary = _reencode(old_store, new_encoder)

    after = _rows(old_store)
    assert summary.entries == 5 and summary.reencoded == 3
    missing = {m["emdb_id"] or m["id"]: m for m in summary.missing}
    assert set(missing) == {"EMD-3197", max(r["id"] for r in before.values())}
    assert "gone" in missing["EMD-3197"]["reason"]
    assert missing["EMD-3197"]["path"] == str(sources.resolve() / "emd_3197.map.gz")
    # the same entries, same ids, re-derived; what only the store knew carried over
    kept = {s: r for s, r in before.items() if r["emdb_id"] != "EMD-3197"}
    kept = {s: r for s, r in kept.items() if r["source_path"]}
    assert set(after) == set(kept)
    for sha, row in after.items():
        assert row["id"] == kept[sha]["id"]
        assert row["encoder_hash"] == new_encoder.info.hash
        for col in ("emdb_id", "title", "label", "sample_name", "resolution"):
            assert row[col] == kept[sha][col], col
        assert row["x"] is not None  # a layout of the new codes
    spike = next(r for r in after.values() if r["emdb_id"] == "EMD-21457")
    assert spike["label"] == "spike" and spike["header_path"] is None
    assert summary.carried["title"] == 1 and summary.carried["label"] == 1
    assert summary.layout is not None
    # the old store, untouched, is the backup the summary names
    backup = Path(summary.backup)
    assert backup.name == f"old.swan.before-reencode-{encoder.info.hash[:12]}"
    assert _files(backup) == old_files
    with Store.open(backup, read_only=True) as old:
        assert old.encoder.hash == encoder.info.hash and old.count() == 5
    assert not build_path(old_store, new_encoder.info.hash).exists()


def test_codes_match_a_fresh_ingest(tmp_path, old_store, sources, new_encoder):
    _reencode(old_store, new_encoder)
    fresh = tmp_path / "fresh.swan"
    with Store.open(fresh, encoder=new_encoder.info) as store:
        _ingest(store, new_encoder, sources)
    got, want = _rows(old_store), _rows(fresh)
    assert set(got) == set(want)
    with Store.open(old_store, read_only=True) as a, Store.open(fresh) as b:
        assert a.encoder == b.encoder
        for sha in want:
            ca, cb = a.get_code(got[sha]["id"]), b.get_code(want[sha]["id"])
            for va, vb in zip(ca.vectors, cb.vectors, strict=True):
                np.testing.assert_allclose(va, vb, atol=1e-5)
            for ta, tb in zip(ca.tokens, cb.tokens, strict=True):
                assert np.mean(ta == tb) > 0.99


def test_out_leaves_the_store_untouched(tmp_path, old_store, new_encoder):
    files = _files(old_store)
    out = tmp_path / "new.swan"
    summary = _reencode(old_store, new_encoder, out=out)
    assert summary.backup is None and summary.out == str(out)
    assert _files(old_store) == files
    with Store.open(out, read_only=True) as new:
        assert new.encoder.hash == new_encoder.info.hash and new.count() == 4
    with pytest.raises(ValueError, match="exists; give --out a new folder"):
        _reencode(old_store, new_encoder, out=out)


def test_failure_midway_keeps_the_old_store_and_a_rerun_resumes(
    tmp_path, old_store, new_encoder, monkeypatch
):
    files = _files(old_store)
    encode, calls = new_encoder.encode, []

    def failing(volumes, *args, **kw):
        calls.append(len(volumes))
        if len(calls) > 1:
            raise RuntimeError("simulated failure in the second batch")
        return encode(volumes, *args, **kw)

    monkeypatch.setattr(new_encoder, "encode", failing)
    # the local engine encodes the maps that came meanwhile together: two
    # at a time here, so the first call encodes the first two (batches of one)
    monkeypatch.setattr(local_engine, "ENCODE_BATCH", 2)
    with pytest.raises(RuntimeError, match="simulated failure"):
        _reencode(old_store, new_encoder, batch_size=1)
    monkeypatch.undo()
    assert calls[0] == 2 and len(calls) == 2
    # the old store is as it was, readable and searchable
    assert _files(old_store) == files
    with Store.open(old_store, read_only=True) as old:
        assert old.count() == 5 and old.encoder.hash != new_encoder.info.hash
        assert old.search(int(old.ids[0]), k=3)[0].id == int(old.ids[0])
    build = build_path(old_store, new_encoder.info.hash)
    with Store.open(build, read_only=True) as partial:
        assert partial.count() == 2  # the batches encoded before the failure
    assert not list(tmp_path.glob("old.swan.before-*"))

    summary = _reencode(old_store, new_encoder, batch_size=1)
    assert summary.ingest["skipped"] == 2 and summary.ingest["ok"] == 2
    assert summary.reencoded == 4 and not build.exists()
    ids = sorted(r["id"] for r in _rows(old_store).values())
    with Store.open(old_store, read_only=True) as new:
        assert new.encoder.hash == new_encoder.info.hash
        assert list(new.ids) == ids


def test_swap_is_one_exchange_or_undone(tmp_path, monkeypatch):
    def folder(name: str, text: str) -> Path:
        (tmp_path / name).mkdir()
        (tmp_path / name / "what").write_text(text)
        return tmp_path / name

    build, target = folder("b", "new"), folder("t", "old")
    swap_in(build, target, tmp_path / "backup")
    assert (target / "what").read_text() == "new"
    assert (tmp_path / "backup" / "what").read_text() == "old"
    assert not build.exists()
    # without an atomic exchange: two renames, the first undone if the second fails
    monkeypatch.setattr(reencode_module, "_exchange", lambda a, b: False)
    with pytest.raises(FileNotFoundError):
        swap_in(tmp_path / "nothing", target, tmp_path / "backup-2")
    assert (target / "what").read_text() == "new"
    assert not (tmp_path / "backup-2").exists()


def test_plan_sources_keeps_each_models_assembly(tmp_path, sources, encoder):
    with Store.open(tmp_path / "s", encoder=encoder.info) as store:
        _ingest(store, encoder, sources)
    rows = list(_rows(tmp_path / "s").values())
    rows.append({**rows[0], "id": 99, "source_path": None, "sha256": "x"})
    plan = plan_sources(rows)
    model = str((sources / "6272.pdb").resolve())
    assert plan.models == {(True, (6.0,)): [model], (False, (8.0,)): [model]}
    assert sorted(plan.maps) == sorted(str(p.resolve()) for p in sources.glob("*.m*"))
    assert [m["id"] for m in plan.missing] == [99]


def test_store_of_another_checkpoint_names_the_command(
    old_store, sources, new_encoder, capsys
):
    with pytest.raises(ValueError) as err:
        Store.open(old_store, encoder=new_encoder.info)
    message = str(err.value)
    assert "\n" not in message
    assert f"`swan reencode --store {old_store} --checkpoint " in message
    ckpt = str(new_encoder.checkpoint)
    argv = ["ingest", str(sources), "--store", str(old_store), "--checkpoint", ckpt]
    assert main(argv) == 2
    err_lines = capsys.readouterr().err.splitlines()
    assert len(err_lines) == 1 and "swan reencode --store" in err_lines[0]


def test_cli(tmp_path, old_store, new_encoder, capsys):
    ckpt = str(new_encoder.checkpoint)
    argv = ["reencode", "--store", str(old_store), "--checkpoint", ckpt]
    assert main([*argv, "--workers", "0", "--json", "--delete-old"]) == 1
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["reencoded"] == 4 and len(summary["missing"]) == 1
    lines = [line for line in err.splitlines() if line.startswith("missing: ")]
    assert len(lines) == 1 and "(no source file)" in lines[0]
    # an entry was left out: the old store is kept despite --delete-old
    assert Path(summary["backup"]).is_dir()
    assert main([*argv, "--workers", "0"]) == 2
    assert "already holds codes of encoder" in capsys.readouterr().err


def test_engine_goes_to_the_ingest_only_when_not_local(
    tmp_path, old_store, new_encoder, monkeypatch
):
    real, seen = reencode_module.ingest_paths, []

    def ingest_with_engines(paths, store, encoder, engine="local", address=None, **kw):
        seen.append((engine, address))
        return real(paths, store, encoder, **kw)

    monkeypatch.setattr(reencode_module, "ingest_paths", ingest_with_engines)
    _reencode(old_store, new_encoder, out=tmp_path / "a")
    assert seen == [("local", None)] * 3  # the maps, and two groups of models
    seen.clear()
    address = "ray://head:10001"
    _reencode(old_store, new_encoder, out=tmp_path / "b", engine="ray", address=address)
    assert seen == [("ray", address)] * 3
    # an unknown engine is refused in one line before anything is built
    seen.clear()
    with pytest.raises(ValueError, match="engine 'spark': use one of"):
        _reencode(old_store, new_encoder, out=tmp_path / "c", engine="spark")
    assert seen == [] and not (tmp_path / "c").exists()


def test_a_reader_of_the_replaced_store_is_told_to_open_it_again(
    old_store, new_encoder
):
    reader = Store.open(old_store, read_only=True)
    try:
        reader.release_connections()  # as a server's reader does when idle
        _reencode(old_store, new_encoder)
        reader.release_connections()
        with pytest.raises(ValueError, match="re-encoded.*open the store again"):
            reader.refresh()
    finally:
        reader.close()


def test_a_changed_model_keeps_the_assembly_its_entry_names(sources):
    model = str((sources / "6272.pdb").resolve())
    row = {"id": 1, "emdb_id": None, "source_path": model, "simulated": True}
    rows = [
        {**row, "sha256": "changed", "resolution": 5.0, "sample_name": name}
        for name in ("biological assembly 1", "asymmetric unit")
    ]
    plan = plan_sources(rows)
    assert plan.models == {(True, (5.0,)): [model], (False, (5.0,)): [model]}
