"""`swan info`: text and JSON output, multi-file calls with bad files; every
subcommand that takes a store or a checkpoint: a damaged one is one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from swan_index.cli import main
from tests.conftest import DATA, MAPS
from tests.test_store import tiny_store

REQUIRED = {
    "path",
    "emdb_id",
    "shape",
    "voxel_size",
    "contour",
    "resolution",
    "extent_angstrom",
    "warnings",
}


def test_info_json_keys_and_values(capsys):
    assert (
        main(["info", str(MAPS["emd_21457_seg"]), str(MAPS["emd_3001"]), "--json"]) == 0
    )
    records = json.loads(capsys.readouterr().out)
    assert [set(r) >= REQUIRED for r in records] == [True, True]
    seg, e3001 = records
    assert seg["emdb_id"] == "EMD-21457"
    assert seg["contour"] == 0.4 and seg["contour_source"] == "header"
    assert seg["resolution"] == 3.2
    assert seg["shape"] == [47, 40, 48]
    assert e3001["emdb_id"] == "EMD-3001"
    assert e3001["shape"] == [73, 25, 43]
    assert e3001["voxel_size"] == pytest.approx([0.44825, 0.3925, 0.45875], abs=1e-5)
    assert e3001["resolution"] is None and e3001["contour_source"] == "auto"
    assert e3001["extent_angstrom"] == pytest.approx(
        [43 * 0.44825, 25 * 0.3925, 73 * 0.45875], abs=1e-3
    )


def test_info_goes_on_after_bad_files(tmp_path, capsys):
    bad = tmp_path / "bad.map"
    bad.write_bytes(b"\x00" * 10)
    code = main(
        ["info", str(bad), str(MAPS["emd_1832"]), str(tmp_path / "nope.mrc"), "--json"]
    )
    out, err = capsys.readouterr()
    assert code == 1
    records = json.loads(out)
    assert records[1]["emdb_id"] == "EMD-1832"
    assert "error" in records[0] and "error" in records[2]
    lines = err.strip().splitlines()
    assert len(lines) == 2
    assert str(bad) in lines[0] and "truncated" in lines[0]
    assert "nope.mrc" in lines[1]


def test_info_text_on_folder(capsys):
    assert main(["info", str(DATA / "maps")]) == 0
    out = capsys.readouterr().out
    assert "EMD-21457" in out and "contour     0.4 (header)" in out


def test_console_script_exit_code(tmp_path):
    bad = tmp_path / "x.mrc"
    bad.write_bytes(b"garbage" * 200)
    proc = subprocess.run(
        [sys.executable, "-m", "swan_index.cli", "info", str(bad)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"error: {bad}: not an MRC/CCP4 map (no 'MAP ' "
        "signature and no valid mode); check that the file "
        "is a .map/.mrc/.ccp4 density map"
    )


# -- damaged stores and checkpoints: one line, exit 2 -------------------------------
def _damaged_store(tmp_path, kind: str) -> Path:
    """A store folder that cannot be opened: ``truncated`` (half its database) or
    ``file`` (a regular file given as the folder)."""
    if kind == "file":
        plain = tmp_path / "plain"
        plain.write_text("not a store")
        return plain
    path = tiny_store(tmp_path / "s", [2, 2])
    db = path / "swan.duckdb"
    os.truncate(db, db.stat().st_size // 2)
    return path


def _random_checkpoint(tmp_path) -> str:
    bad = tmp_path / "random.pt"
    bad.write_bytes(np.random.default_rng(0).bytes(5000))
    return str(bad)


STORE_COMMANDS = {
    "ingest": lambda s, t: ["ingest", str(MAPS["emd_1832"]), "--store", s, "--quiet"],
    "search": lambda s, t: ["search", "1", "--store", s],
    "layout": lambda s, t: ["layout", "--store", s],
    "eval": lambda s, t: ["eval", "retrieval", "--store", s, "--truth", t],
    "serve": lambda s, t: ["serve", "--store", s, "--port", "1"],
}


def _one_line_exit_2(capsys, argv: list[str]) -> str:
    code = main(argv)  # a traceback would raise here
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    return err


@pytest.mark.parametrize("kind", ["truncated", "file"])
@pytest.mark.parametrize("command", list(STORE_COMMANDS))
def test_damaged_store_is_one_line_exit_2(tmp_path, capsys, kind, command):
    store = _damaged_store(tmp_path, kind)
    truth = tmp_path / "truth.csv"
    truth.write_text("entry,group\n1,a\n2,a\n")
    err = _one_line_exit_2(capsys, STORE_COMMANDS[command](str(store), str(truth)))
    assert str(store) in err
    assert ("backup" if kind == "truncated" else "not a store folder") in err


@pytest.mark.parametrize(
    "argv",
    [
        ["ingest", str(MAPS["emd_1832"]), "--store", "{new}", "--quiet"],
        ["search", "1", "--store", "{store}"],
        ["search", str(MAPS["emd_1832"]), "--store", "{store}"],
        ["eval", "retrieval", "--store", "{store}", "--truth", "{truth}"],
        ["serve", "--store", "{store}", "--port", "1"],
    ],
    ids=["ingest", "search-id", "search-file", "eval", "serve"],
)
def test_random_checkpoint_is_one_line_exit_2(tmp_path, capsys, argv):
    store = tiny_store(tmp_path / "s", [2])
    truth = tmp_path / "truth.csv"
    truth.write_text("entry,group\n1,a\n2,a\n")
    checkpoint = _random_checkpoint(tmp_path)
    names = {"new": tmp_path / "new", "store": store, "truth": truth}
    argv = [a.format(**{k: str(v) for k, v in names.items()}) for a in argv]
    err = _one_line_exit_2(capsys, [*argv, "--checkpoint", checkpoint])
    assert checkpoint in err and "swan train" in err
    assert not (tmp_path / "new").exists()


def test_console_script_damaged_store(tmp_path):
    store = _damaged_store(tmp_path, "truncated")
    proc = subprocess.run(
        [sys.executable, "-m", "swan_index.cli", "search", "1", "--store", str(store)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
