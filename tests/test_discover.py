"""find_entries: loose files and the EMDB mirror layout."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ingest import IngestError, find_entries, is_map_file
from tests.conftest import DATA, HEADERS, ROOT


def test_loose_files_pair_header_in_same_folder():
    entries = {e.map_path.name: e for e in find_entries(DATA / "maps")}
    assert set(entries) >= {"emd_1832.map", "emd_21457_seg.mrc", "emd_3001.map.gz"}
    assert entries["emd_21457_seg.mrc"].header_path.name == "emd-21457.xml"
    assert entries["emd_21457_seg.mrc"].emdb_id == "EMD-21457"
    assert entries["emd_1832.map"].header_path is None
    names = [e.map_path.name for e in find_entries(DATA / "maps")]
    assert names == sorted(names)


def test_single_file_pairs_header(tmp_path):
    shutil.copy(DATA / "maps" / "emd_21457_seg.mrc", tmp_path / "emd_21457.map")
    shutil.copy(HEADERS / "emd-21457.xml", tmp_path)
    (entry,) = find_entries(tmp_path / "emd_21457.map")
    assert entry.header_path == tmp_path / "emd-21457.xml"


def test_emdb_mirror_layout(tmp_path):
    root = tmp_path / "structures" / "EMD-0001"
    for sub in ("map", "header", "other", "masks"):
        (root / sub).mkdir(parents=True)
    src = DATA / "maps" / "emd_3197.map.gz"
    shutil.copy(src, root / "map" / "emd_0001.map.gz")
    shutil.copy(src, root / "other" / "emd_0001_half_map_1.map.gz")
    shutil.copy(src, root / "masks" / "emd_0001_msk_1.map")
    for name in ("emd-0001-v30.xml", "emd-0001-v19.xml", "emd-0001.xml"):
        shutil.copy(HEADERS / name, root / "header" / name)
    other = tmp_path / "structures" / "EMD-1003"
    (other / "map").mkdir(parents=True)
    (other / "header").mkdir()
    shutil.copy(src, other / "map" / "emd_1003.map.gz")
    shutil.copy(HEADERS / "emd-1003-v30.xml", other / "header")

    entries = list(find_entries(tmp_path))
    assert [e.map_path.name for e in entries] == ["emd_0001.map.gz", "emd_1003.map.gz"]
    assert entries[0].header_path.name == "emd-0001-v30.xml"  # v3 preferred
    assert entries[1].header_path.name == "emd-1003-v30.xml"
    assert [e.emdb_id for e in entries] == ["EMD-0001", "EMD-1003"]
    # an entry folder on its own works too
    assert [e.map_path.name for e in find_entries(root)] == ["emd_0001.map.gz"]


def test_mirror_falls_back_to_plain_then_v19_header(tmp_path):
    root = tmp_path / "EMD-0001"
    (root / "map").mkdir(parents=True)
    (root / "header").mkdir()
    shutil.copy(DATA / "maps" / "emd_3197.map.gz", root / "map" / "emd_0001.map.gz")
    shutil.copy(HEADERS / "emd-0001-v19.xml", root / "header")
    (entry,) = find_entries(tmp_path)
    assert entry.header_path.name == "emd-0001-v19.xml"


def test_is_map_file():
    for good in ("a.map", "B.MRC", "c.ccp4", "d.map.gz", "e.mrc.bz2"):
        assert is_map_file(good)
    for bad in ("a.xml", "a.pdb", "a.map.zip", "map"):
        assert not is_map_file(bad)


def _broken_folder(d):  # noqa: ANN001, ANN202
    """A folder with one good map among a link loop, a dangling link and a FIFO."""
    d.mkdir()
    shutil.copy(DATA / "maps" / "emd_3197.map.gz", d / "emd_3197.map.gz")
    (d / "loop_a.map").symlink_to("loop_b.map")
    (d / "loop_b.map").symlink_to("loop_a.map")
    (d / "dangling.mrc").symlink_to("nowhere.mrc")
    os.mkfifo(d / "pipe.map")  # would block whoever opens it to read
    (d / "linked.mrc").symlink_to("emd_3197.map.gz")  # a good link is a map
    return d


def test_broken_links_and_fifos_are_reported_and_the_rest_found(tmp_path):
    d = _broken_folder(tmp_path / "maps")
    problems: list[IngestError] = []
    found = [e.map_path.name for e in find_entries(tmp_path, onerror=problems.append)]
    assert found == ["emd_3197.map.gz", "linked.mrc"]
    why = {Path(p.path).name: str(p) for p in problems}
    assert set(why) == {"loop_a.map", "loop_b.map", "dangling.mrc", "pipe.map"}
    assert "symbolic link loop" in why["loop_a.map"]
    assert "dangling symbolic link" in why["dangling.mrc"]
    assert "nowhere.mrc" in why["dangling.mrc"]  # names the missing target
    assert "named pipe" in why["pipe.map"]
    for p in problems:  # one line: the file, the problem, the fix
        assert "\n" not in str(p) and str(p).startswith(str(d)) and p.fix


def test_without_onerror_problems_are_warnings(tmp_path, caplog):
    _broken_folder(tmp_path / "maps")
    with caplog.at_level(logging.WARNING, logger="ingest.discover"):
        assert len(list(find_entries(tmp_path))) == 2
    assert sum("symbolic link" in r.getMessage() for r in caplog.records) == 3
    # a path that does not exist yields nothing, and tells onerror
    problems: list[IngestError] = []
    assert list(find_entries(tmp_path / "none", onerror=problems.append)) == []
    assert "no such file or folder" in str(problems[0])
    # a map file named directly is yielded as given: reading it says what is wrong
    (entry,) = find_entries(tmp_path / "maps" / "dangling.mrc")
    assert entry.map_path.name == "dangling.mrc"


def as_unprivileged() -> list[str]:
    """A command prefix under which file permissions apply (root bypasses them:
    there, setpriv drops the capabilities that do)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot apply")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def test_unreadable_folders_are_reported_not_skipped(tmp_path):
    loose = tmp_path / "loose"
    (loose / "locked").mkdir(parents=True)
    shutil.copy(DATA / "maps" / "emd_3197.map.gz", loose / "emd_3197.map.gz")
    shutil.copy(DATA / "maps" / "emd_3197.map.gz", loose / "locked" / "emd_1.map.gz")
    mirror = tmp_path / "mirror" / "EMD-0001"
    for sub in ("map", "header"):
        (mirror / sub).mkdir(parents=True)
    shutil.copy(DATA / "maps" / "emd_3197.map.gz", mirror / "map" / "emd_0001.map.gz")
    shutil.copy(HEADERS / "emd-0001-v30.xml", mirror / "header")
    for folder in (loose / "locked", mirror / "header"):
        folder.chmod(0)
    script = (
        "import json, sys\n"
        "from ingest import find_entries\n"
        "for root in sys.argv[1:]:\n"
        "    problems = []\n"
        "    found = [str(e.map_path) for e in find_entries(root, problems.append)]\n"
        "    print(json.dumps([found, [str(p) for p in problems]]))\n"
    )
    try:
        out = subprocess.run(
            [*as_unprivileged(), sys.executable, "-c", script, loose, mirror.parent],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        for folder in (loose / "locked", mirror / "header"):
            folder.chmod(0o755)
    (found, problems), (mfound, mproblems) = map(json.loads, out.splitlines())
    assert found == [str(loose / "emd_3197.map.gz")]
    (problem,) = problems
    assert problem.startswith(f"{loose / 'locked'}: cannot list this folder")
    assert "permission denied" in problem and "chmod" in problem
    # the mirror entry is left out rather than stored without its header
    assert mfound == []
    (problem,) = mproblems
    assert problem.startswith(f"{mirror / 'header'}: cannot list this folder")
