"""`swan info`: text and JSON output, multi-file calls with bad files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from swan_index.cli import main
from tests.conftest import DATA, MAPS

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
