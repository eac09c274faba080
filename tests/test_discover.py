"""find_entries: loose files and the EMDB mirror layout."""

from __future__ import annotations

import shutil

from ingest import find_entries, is_map_file
from tests.conftest import DATA, HEADERS


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
