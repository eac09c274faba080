"""`swan check`: a consistent store passes; each kind of damage is one problem line
with its fix and exit 1; --repair and --accept-loss; notes; usage errors."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pytest

from swan_index.check import check_store
from swan_index.cli import main
from swan_index.store import Store
from swan_index.vectors import ScaleIndex, scale_file
from tests.test_store import TINY, crash_copy, tiny_batch, truncate_wal


def _entries(folder: Path, start: int, n: int):
    """A tiny batch whose entries have source files, previews and log rows."""
    code, records = tiny_batch(start, n)
    with_files = []
    for r in records:
        src = folder / f"{r.sha256}.map"
        src.write_bytes(r.sha256.encode())
        st = src.stat()
        with_files.append(
            replace(
                r,
                source_path=str(src),
                file_size=st.st_size,
                file_mtime_ns=st.st_mtime_ns,
            )
        )
    previews = [np.full((4, 4, 4), 0.5, np.float32)] * n
    log_rows = [
        {"path": r.source_path, "sha256": r.sha256, "status": "ok", "run_id": "t"}
        for r in with_files
    ]
    return code, with_files, previews, log_rows


@pytest.fixture
def store_path(tmp_path) -> Path:
    """A closed, consistent store of 9 tiny entries in 3 commits, with previews,
    a layout, log rows and source files."""
    src = tmp_path / "maps"
    src.mkdir()
    path = tmp_path / "s"
    with Store.open(path, encoder=TINY) as st:
        for b in range(3):
            st.add(*_entries(src, 3 * b, 3))
        st.set_layout(np.arange(1, 10), np.zeros((9, 2)))
        st.log([{"path": "x.map", "status": "error", "reason": "bad"}])
    return path


def _check(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _sql(path: Path, sql: str) -> None:
    con = duckdb.connect(str(path / "swan.duckdb"))
    con.execute(sql)
    con.close()


def _index(path: Path, side: int = 2) -> Path:
    return scale_file(path / "faiss", side)


def test_a_consistent_store_passes(store_path, capsys):
    code, out, err = _check(capsys, "--store", str(store_path))
    assert code == 0, out
    assert (
        out.strip().splitlines()[-1]
        == f"{store_path}: consistent (9 entries; 0 note(s))"
    )
    assert err == ""
    code, out, _ = _check(capsys, "--store", str(store_path), "--json")
    report = json.loads(out)
    assert code == 0 and report["consistent"] and report["problems"] == []
    assert report["counts"]["entries"] == report["counts"]["codes"] == 9
    assert report["counts"]["indexes"] == 2 and report["counts"]["layout"] == 9


def _drop_code(p: Path) -> None:
    _sql(p, "DELETE FROM codes WHERE id = 4")


def _orphan_preview(p: Path) -> None:
    _sql(p, "INSERT INTO previews SELECT 99, grid, volume FROM previews WHERE id = 1")


def _orphan_layout(p: Path) -> None:
    _sql(p, "INSERT INTO layout VALUES (77, 0, 0, -1)")


def _bad_preview(p: Path) -> None:
    _sql(p, "UPDATE previews SET volume = 'xx'::BLOB WHERE id = 2")


def _unnormalised(p: Path) -> None:
    _sql(p, "UPDATE codes SET vector_1 = [3, 0, 0, 0]::FLOAT[4] WHERE id = 5")


def _id_above_next(p: Path) -> None:
    _sql(p, "UPDATE store_meta SET value = '5' WHERE key = 'next_id'")


def _bad_log(p: Path) -> None:
    _sql(
        p, "INSERT INTO ingest_log VALUES ('r', now(), 'y', NULL, 'weird', NULL, NULL)"
    )


def _index_lacks(p: Path) -> None:
    index = ScaleIndex.read(_index(p), 4)
    index.remove(np.array([3]))
    index.write(_index(p))


def _index_vector(p: Path) -> None:
    index = ScaleIndex.read(_index(p), 4)
    vec = index.lookup(np.array([6]))
    index.remove(np.array([6]))
    index.add(np.array([6]), -vec)
    index.write(_index(p))


def _index_garbage(p: Path) -> None:
    _index(p).write_bytes(b"garbage" * 100)


def _index_missing(p: Path) -> None:
    _index(p, 1).unlink()


def _manifest_count(p: Path) -> None:
    m = json.loads((p / "manifest.json").read_text())
    m["count"], m["indexes"]["2"]["ntotal"] = 5, 4
    (p / "manifest.json").write_text(json.dumps(m))


def _manifest_missing(p: Path) -> None:
    (p / "manifest.json").unlink()


def _truncated(p: Path) -> None:
    db = p / "swan.duckdb"
    os.truncate(db, db.stat().st_size // 2)


DAMAGE = {
    "code missing": (_drop_code, "1 entries have no code (ids 4)", False),
    "orphan preview": (_orphan_preview, "previews belong to no entry (ids 99)", False),
    "orphan layout": (_orphan_layout, "layout rows belong to no entry (ids 77)", False),
    "bad preview": (_bad_preview, "sampled previews do not decode (ids 2)", False),
    "unnormalised": (_unnormalised, "1 with vectors not finite and L2", False),
    "id above next": (_id_above_next, "ids outside 1..4", False),
    "bad log": (_bad_log, "ingest_log rows have an unknown status", False),
    "index lacks": (
        _index_lacks,
        "scale_2.vectors: 1 ids of the database it lacks",
        True,
    ),
    "index vector": (
        _index_vector,
        "scale_2.vectors: 1 of 9 sampled vectors differ",
        True,
    ),
    "index garbage": (_index_garbage, "scale_2.vectors: unreadable", True),
    "index missing": (_index_missing, "scale_1.vectors: missing", True),
    "manifest count": (_manifest_count, "holds 4 vectors, it holds 9", True),
    "manifest missing": (_manifest_missing, "manifest.json: missing", True),
    "truncated": (_truncated, "not a readable store database", False),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damage_is_one_problem_line_and_exit_1(store_path, capsys, name):
    damage, expected, repairable = DAMAGE[name]
    damage(store_path)
    code, out, err = _check(capsys, "--store", str(store_path))
    lines = out.strip().splitlines()
    problems = [line for line in lines if line.startswith("problem: ")]
    assert code == 1, out
    assert any(expected in line for line in problems), out
    assert "problem(s)" in lines[-1] and "Traceback" not in out + err
    if repairable:
        assert any("--repair" in line for line in problems)
        code, out, _ = _check(capsys, "--store", str(store_path), "--repair")
        assert code == 0, out


def test_lost_wal_is_reported_and_accepted(store_path, tmp_path, capsys):
    crashed = tmp_path / "crashed"
    crash_copy(store_path, crashed, [2, 2])
    truncate_wal(crashed, keep=0.1)
    code, out, _ = _check(capsys, "--store", str(crashed))
    assert code == 1
    assert "the database lost committed writes (4 entries, ids 10-13" in out
    assert "--accept-loss" in out
    code, out, err = _check(capsys, "--store", str(crashed), "--repair")
    assert code == 1 and "--accept-loss" in err  # repair does not decide for you
    code, out, err = _check(capsys, "--store", str(crashed), "--accept-loss")
    assert code == 0, out
    assert "accepted the loss (4 entries, ids 10-13" in err
    assert "a loss was accepted" in out  # kept as a note
    with Store.open(crashed) as st:
        assert st.add(*tiny_batch(900, 1)).tolist() == [14]


def test_source_files_are_notes_only(store_path, capsys):
    first = sorted((store_path.parent / "maps").glob("*.map"))
    first[0].unlink()
    first[1].write_bytes(b"changed contents")
    code, out, _ = _check(capsys, "--store", str(store_path))
    assert code == 0, out
    assert "note: 1 source files are gone" in out
    assert "note: 1 source files changed since ingest" in out
    code, out, _ = _check(capsys, "--store", str(store_path), "--no-files")
    assert code == 0 and "source files" not in out


def test_usage_errors_exit_2(store_path, tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.write_text("x")
    for where in (tmp_path / "none", plain):
        code, out, err = _check(capsys, "--store", str(where))
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    with Store.open(store_path):  # a writer is running
        code, _, err = _check(capsys, "--store", str(store_path))
    assert code == 2 and "another process" in err and "writing" in err


def test_check_store_reads_a_copy_without_changing_it(store_path, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(store_path, copy)
    _index_lacks(copy)
    before = {f: f.read_bytes() for f in copy.rglob("*") if f.is_file()}
    report = check_store(copy)
    assert not report.consistent and len(report.problems) == 2  # index, manifest
    after = {f: f.read_bytes() for f in copy.rglob("*") if f.is_file()}
    assert {f: b for f, b in after.items() if f.name != "write.lock"} == {
        f: b for f, b in before.items() if f.name != "write.lock"
    }
