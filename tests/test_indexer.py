"""Bulk ingest and the `swan ingest` / `swan search` commands, crash included."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from ingest import random_rotation, read_map, rotate_map, write_map
from swan_index.cli import main
from swan_index.indexer import ingest_paths
from swan_index.store import Store

from .conftest import DATA, MAPS, ROOT
from .test_discover import as_unprivileged

GOOD = ["emd_1832", "emd_21457_seg", "emd_6824"]


@pytest.fixture
def folder(tmp_path) -> Path:
    """Three good maps (one with its header) among four bad files."""
    d = tmp_path / "maps"
    d.mkdir()
    for name in GOOD:
        shutil.copy(MAPS[name], d / MAPS[name].name)
    shutil.copy(DATA / "maps" / "emd-21457.xml", d / "emd-21457.xml")
    rng = np.random.default_rng(0)
    (d / "random.map").write_bytes(rng.bytes(5000))
    (d / "truncated.mrc").write_bytes(MAPS["emd_6824"].read_bytes()[:3000])
    dmap = read_map(MAPS["emd_5625"])
    nan = dmap.data.copy()
    nan[0, 0, :5] = np.nan
    write_map(_replace_data(dmap, nan), d / "nan_values.mrc")
    # a good map whose header is malformed XML
    shutil.copy(MAPS["emd_3197"], d / "emd_3197.map.gz")
    (d / "emd-3197.xml").write_text("<emdEntry><admin>unclosed")
    return d


def _replace_data(dmap, data):  # noqa: ANN001, ANN202
    from dataclasses import replace

    return replace(dmap, data=data.astype(np.float32))


def _log(store_dir: Path) -> list[tuple]:
    con = duckdb.connect(str(store_dir / "swan.duckdb"), read_only=True)
    try:
        return con.execute(
            "SELECT path, status, reason, entry_id FROM ingest_log ORDER BY logged_at"
        ).fetchall()
    finally:
        con.close()


def test_bad_files_are_logged_and_good_ones_stored(tmp_path, folder, encoder):
    with Store.open(tmp_path / "s", encoder=encoder.info) as store:
        run = ingest_paths([folder], store, encoder, workers=0, progress=False)
        assert (run.ok, run.skipped, run.failed) == (3, 0, 4)
        assert store.count() == 3
        failed = {Path(f["path"]).name: f["reason"] for f in run.failures}
        assert set(failed) == {
            "random.map",
            "truncated.mrc",
            "nan_values.mrc",
            "emd_3197.map.gz",
        }
        for name, reason in failed.items():
            # one line naming the file (or its header) and what to do
            assert "\n" not in reason
            assert name in reason or "emd-3197.xml" in reason
        emdb = {r["emdb_id"]: r for r in store.get([1, 2, 3])}
        assert set(emdb) == {"EMD-1832", "EMD-21457", "EMD-6824"}
        assert emdb["EMD-21457"]["resolution"] == pytest.approx(3.2)
    log = _log(tmp_path / "s")
    assert sorted(s for _, s, _, _ in log) == ["error"] * 4 + ["ok"] * 3
    assert all(e is not None for _, s, _, e in log if s == "ok")
    assert all(r for _, s, r, _ in log if s == "error")


def test_reingest_is_idempotent_and_tracks_changes(tmp_path, folder, encoder):
    path = tmp_path / "s"
    with Store.open(path, encoder=encoder.info) as store:
        ingest_paths([folder], store, encoder, workers=0, progress=False)
        ids = {r["emdb_id"]: r["id"] for r in store.get([1, 2, 3])}
        again = ingest_paths([folder], store, encoder, workers=0, progress=False)
        assert (again.ok, again.skipped, again.failed) == (0, 3, 4)
        # touched (same bytes, new mtime): read again, same content: skipped
        os.utime(folder / "emd_6824.mrc", ns=(1, 10**18))
        touched = ingest_paths([folder], store, encoder, workers=0, progress=False)
        assert (touched.ok, touched.skipped) == (0, 3)
        # ... and its new time is recorded: the next run skips it unread
        assert (
            store.known_files()[str((folder / "emd_6824.mrc").resolve())][
                "file_mtime_ns"
            ]
            == 10**18
        )
        # changed content: the new version replaces the old entry
        dmap = read_map(folder / "emd_6824.mrc")
        rotated = rotate_map(dmap, random_rotation(np.random.default_rng(3)))
        write_map(rotated, folder / "emd_6824.mrc")
        changed = ingest_paths([folder], store, encoder, workers=0, progress=False)
        assert (changed.ok, changed.skipped) == (1, 2)
        assert store.count() == 3
        assert store.get([ids["EMD-6824"]]) == []
        assert store.find("EMD-6824") > 3
        # a vanished file is removed only when asked, and reported
        (folder / "emd_1832.map").unlink()
        kept = ingest_paths([folder], store, encoder, workers=0, progress=False)
        assert kept.removed == 0 and store.count() == 3
        pruned = ingest_paths(
            [folder], store, encoder, workers=0, progress=False, prune=True
        )
        assert pruned.removed == 1 and store.count() == 2
        assert pruned.removed_entries[0]["emdb_id"] == "EMD-1832"
    assert ("removed",) in {(s,) for _, s, _, _ in _log(path)}


def test_cli_ingest_and_search(tmp_path, folder, capsys):
    store = str(tmp_path / "s")
    code = main(
        [
            "ingest",
            str(folder),
            "--store",
            store,
            "--workers",
            "0",
            "--json",
            "--layout",
        ]
    )
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert code == 1  # some files failed; the good ones are stored
    assert (summary["ok"], summary["skipped"], summary["failed"]) == (3, 0, 4)
    assert out.err.count("failed: ") == 4
    with Store.open(store, read_only=True) as reader:  # --layout stored the map
        xy = reader.entries(("id", "x", "y"))
        assert len(xy["id"]) == 3 and np.all(np.isfinite(np.asarray(xy["x"])))
    query = str(folder / "emd_21457_seg.mrc")
    assert main(["search", query, "--store", store, "--json", "-k", "3"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["rank"] == 1 and hits[0]["emdb_id"] == "EMD-21457"
    assert hits[0]["score"] == pytest.approx(1, abs=1e-4)
    for key in ("rank", "id", "emdb_id", "score", "scores"):
        assert key in hits[0]
    assert set(hits[0]["scores"]) >= {"1", "2", "4", "8", "fit"}
    assert main(["search", "EMD-1832", "--store", store, "--where", "rg > 0"]) == 0
    table = capsys.readouterr().out
    lines = table.splitlines()  # formula, E-value line, header, hits, verdict
    assert lines[2].split()[:3] == ["rank", "id", "EMDB"]
    assert "EMD-1832" in lines[3]
    assert "fit" in table.splitlines()[0].split()
    args = ["search", "EMD-1832", "--store", store, "--fit-top", "0"]
    assert main(args) == 0
    assert "fit" not in capsys.readouterr().out.splitlines()[0].split()
    assert main([*args[:-1], "-1"]) == 2
    assert "--fit-top" in capsys.readouterr().err
    assert main(["search", "EMD-42", "--store", store]) == 2
    assert "EMD-42" in capsys.readouterr().err
    assert main(["search", str(folder / "random.map"), "--store", store]) == 1
    err = capsys.readouterr().err
    assert "random.map" in err and len(err.strip().splitlines()) == 1
    assert main(["search", query, "--store", store, "--where", "nope > 1"]) == 2
    assert "where " in capsys.readouterr().err
    assert main(["search", query, "--store", str(tmp_path / "none")]) == 2


@pytest.fixture
def many_maps(tmp_path) -> Path:
    """16 distinct maps: the sample maps under random rotations."""
    d = tmp_path / "many"
    d.mkdir()
    rng = np.random.default_rng(7)
    sources = ["emd_1832", "emd_6824", "emd_21457_seg", "emd_5625"]
    for i in range(16):
        dmap = read_map(MAPS[sources[i % 4]])
        write_map(rotate_map(dmap, random_rotation(rng), order=1), d / f"r{i:02d}.mrc")
    return d


def _count(db: Path) -> int:
    try:
        con = duckdb.connect(str(db), read_only=True)
    except (duckdb.IOException, duckdb.Error):
        return -1  # not there yet, or held by the writer
    try:
        return con.execute("SELECT count(*) FROM entries").fetchone()[0]
    finally:
        con.close()


def test_sigkill_mid_ingest_loses_nothing(tmp_path, many_maps, encoder):
    store_dir = tmp_path / "s"
    cmd = [sys.executable, "-m", "swan_index.cli", "ingest", str(many_maps)]
    cmd += ["--store", str(store_dir), "--batch-size", "2", "--workers", "1"]
    proc = subprocess.Popen(
        cmd + ["--quiet"],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while _count(store_dir / "swan.duckdb") < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "ingest never committed a batch"
            time.sleep(0.02)
        # a reader works while the ingest runs
        with Store.open(store_dir, read_only=True) as reader:
            seen = reader.count()
            assert seen >= 2 and reader.search(1, k=1)[0].score > 0.9999
        assert proc.poll() is None or seen == 16
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its reader processes too
        except ProcessLookupError:
            pass
    assert proc.returncode == -signal.SIGKILL
    with Store.open(store_dir, encoder=encoder.info) as store:
        n = store.count()
        assert 2 <= n < 16, "the kill came too late to test anything"
        # no half entry: every entry has its code and preview, and vice versa
        con = duckdb.connect(str(store_dir / "swan.duckdb"), read_only=True)
        counts = [
            con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("entries", "codes", "previews")
        ]
        ids = [r[0] for r in con.execute("SELECT id FROM entries").fetchall()]
        con.close()
        assert counts == [n, n, n]
        assert all(i["ntotal"] == n for i in store.index_info())
        for entry_id in ids:  # every entry DuckDB holds is searchable
            hits = store.search(entry_id, k=n)
            own = [h for h in hits if h.id == entry_id]
            assert own and own[0].score == pytest.approx(hits[0].score, abs=1e-5)
        rest = ingest_paths([many_maps], store, encoder, workers=0, progress=False)
        assert rest.failed == 0 and rest.ok + rest.skipped == 16
        assert rest.ok == 16 - n
        assert store.count() == 16


def test_broken_links_fail_one_line_each_and_the_rest_is_stored(tmp_path, encoder):
    d = tmp_path / "maps"
    d.mkdir()
    for name in GOOD[:2]:
        shutil.copy(MAPS[name], d / MAPS[name].name)
    (d / "loop_a.map").symlink_to("loop_b.map")
    (d / "loop_b.map").symlink_to("loop_a.map")
    (d / "dangling.mrc").symlink_to("nowhere.mrc")
    os.mkfifo(d / "pipe.map")
    (tmp_path / "top_loop.map").symlink_to("top_loop.map")  # named on its own
    paths = [d, tmp_path / "top_loop.map", tmp_path / "missing.mrc"]
    with Store.open(tmp_path / "s", encoder=encoder.info) as store:
        run = ingest_paths(paths, store, encoder, workers=0, progress=False)
        assert (run.ok, run.failed) == (2, 6) and store.count() == 2
    failed = {Path(f["path"]).name: f["reason"] for f in run.failures}
    assert set(failed) == {
        "loop_a.map",
        "loop_b.map",
        "dangling.mrc",
        "pipe.map",
        "top_loop.map",
        "missing.mrc",
    }
    for name, reason in failed.items():
        assert "\n" not in reason and name in reason and "; " in reason
    log = _log(tmp_path / "s")
    assert sorted(s for _, s, _, _ in log) == ["error"] * 6 + ["ok"] * 2


def _json_run(cmd: list[str]) -> tuple[int, dict, str]:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_unreadable_folder_and_file_fail_and_the_rest_is_stored(tmp_path, encoder):
    d = tmp_path / "maps"
    (d / "locked").mkdir(parents=True)
    shutil.copy(MAPS["emd_21457_seg"], d / "emd_21457_seg.mrc")
    shutil.copy(MAPS["emd_3197"], d / "unreadable.map.gz")
    shutil.copy(MAPS["emd_3001"], d / "locked" / "emd_3001.map.gz")
    store_dir = tmp_path / "s"
    cmd = [*as_unprivileged(), sys.executable, "-m", "swan_index.cli", "ingest"]
    cmd += [str(d), "--store", str(store_dir), "--workers", "1", "--json"]
    (d / "unreadable.map.gz").chmod(0)
    (d / "locked").chmod(0)
    try:
        code, summary, err = _json_run(cmd)
    finally:
        (d / "unreadable.map.gz").chmod(0o644)
        (d / "locked").chmod(0o755)
    assert code == 1 and "Traceback" not in err
    assert (summary["ok"], summary["failed"]) == (1, 2)
    failed = {f["path"]: f["reason"] for f in summary["failures"]}
    assert set(failed) == {str(d / "locked"), str(d / "unreadable.map.gz")}
    for path, reason in failed.items():
        assert reason.startswith(path) and "\n" not in reason
        assert "permission denied" in reason.lower()
    assert "cannot list this folder" in failed[str(d / "locked")]
    assert err.count("failed: ") == 2
    errors = {p for p, s, _, _ in _log(store_dir) if s == "error"}
    assert errors == set(failed)  # the folder has its ingest_log row too

    # once readable, the same command stores the rest
    with Store.open(store_dir, encoder=encoder.info) as store:
        rest = ingest_paths([d], store, encoder, workers=0, progress=False)
        assert (rest.ok, rest.skipped, rest.failed) == (2, 1, 0)
    # --prune never deletes what it cannot check: a folder made unreadable
    (d / "locked").chmod(0)
    try:
        code, summary, err = _json_run([*cmd, "--prune"])
    finally:
        (d / "locked").chmod(0o755)
    assert summary["removed"] == 0 and "Traceback" not in err
    with Store.open(store_dir, read_only=True) as store:
        assert store.count() == 3


def test_generated_maps_are_refused_unless_allowed(tmp_path, encoder, capsys):
    from swan_index.generate import write_generated

    d = tmp_path / "maps"
    d.mkdir()
    shutil.copy(MAPS["emd_1832"], d / "emd_1832.map")
    like = read_map(MAPS["emd_5625"])
    # named like the map it came from: it must not pass for EMD-5625
    made = write_generated(d / "emd_5625.mrc", like.data, like, ["a test"])
    assert read_map(made).generated and not read_map(d / "emd_1832.map").generated
    with Store.open(tmp_path / "s", encoder=encoder.info) as store:
        run = ingest_paths([d], store, encoder, workers=0, progress=False)
        assert (run.ok, run.failed) == (1, 1)
        (failure,) = run.failures
        assert Path(failure["path"]).name == "emd_5625.mrc"
        assert "\n" not in failure["reason"]
        assert "generated" in failure["reason"]
        assert "--allow-generated" in failure["reason"]
        with pytest.raises(KeyError, match="no entry 'EMD-5625'"):
            store.find("EMD-5625")
    code = main(
        [
            "ingest",
            str(d),
            "--store",
            str(tmp_path / "s"),
            "--workers",
            "0",
            "--json",
            "--allow-generated",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["ok"] == 1
    with Store.open(tmp_path / "s", read_only=True) as store:
        rows = store.get(list(range(1, store.count() + 2)))
        generated = [r for r in rows if r["method"] == "generated"]
        assert len(rows) == 2 and len(generated) == 1
        (row,) = generated
        assert row["simulated"] and row["emdb_id"] is None
        assert "generated by the Cryo-SWAN prior" in row["title"]
        with pytest.raises(KeyError, match="no entry 'EMD-5625'"):
            store.find("EMD-5625")
