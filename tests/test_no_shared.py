"""The guard in conftest.py that keeps the tests off the data folder beside the
repository: it must notice a read there, in any of the ways the code reads,
whether or not that folder exists on this machine (here a stand-in folder
takes its place, so that every way of reading finds something)."""

from __future__ import annotations

import glob
import os

import pytest

from tests import conftest


def _reads_during(action) -> list[str]:
    start = len(conftest.shared_reads)
    action()
    read = conftest.shared_reads[start:]
    del conftest.shared_reads[start:]  # taken back, so this test passes
    return read


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """A folder with the shared data's layout, watched in its place."""
    root = tmp_path / "shared"
    (root / "data" / "real").mkdir(parents=True)
    (root / "data" / "real" / "SOURCES.md").write_text("sources\n")
    (root / "data" / "emd_1.map").write_bytes(b"\0")
    monkeypatch.setattr(conftest, "_SHARED_ROOTS", (str(root),))
    return root


@pytest.mark.parametrize(
    "action",
    [
        lambda p: open(p / "data" / "real" / "SOURCES.md", "rb").close(),
        lambda p: os.listdir(p / "data"),
        lambda p: list(os.scandir(p)),
        lambda p: glob.glob(str(p / "data" / "*")),
        lambda p: list((p / "data").glob("*.map")),
        lambda p: list(os.walk(p)),
    ],
    ids=["open", "listdir", "scandir", "glob", "pathlib-glob", "walk"],
)
def test_a_read_beside_the_repository_is_seen(stand_in, action):
    read = _reads_during(lambda: action(stand_in))
    assert read and all(conftest.under_shared(p) for p in read)


def test_the_folder_beside_the_repository_is_the_one_watched(monkeypatch):
    folder = conftest.SHARED
    assert folder.parent == conftest.ROOT.parent  # beside the repository
    assert conftest.under_shared(folder / "data" / "x")
    monkeypatch.chdir(conftest.ROOT)  # a relative path is resolved
    assert conftest.under_shared(os.path.join("..", folder.name, "data"))
    assert not conftest.under_shared(os.path.join("..", folder.name + "-not", "x"))
    assert not conftest.under_shared(conftest.DATA)


def test_reads_inside_the_repository_are_not_counted(tmp_path):
    assert _reads_during(lambda: os.listdir(conftest.DATA)) == []
    assert _reads_during(lambda: (tmp_path / "x").write_text("x")) == []
