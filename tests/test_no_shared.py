"""The guard in conftest.py that keeps the tests off the data folder beside the
repository: it must notice a read there, in any of the ways the code reads."""

from __future__ import annotations

import glob
import os

import pytest

from tests import conftest


def _reads_during(action) -> list[str]:
    start = len(conftest.shared_reads)
    try:
        action()
    except OSError:
        pass  # the folder need not exist: the attempt is what counts
    read = conftest.shared_reads[start:]
    del conftest.shared_reads[start:]  # taken back, so this test passes
    return read


@pytest.mark.parametrize(
    "action",
    [
        lambda p: open(p / "data" / "real" / "SOURCES.md", "rb").close(),
        lambda p: os.listdir(p / "data"),
        lambda p: list(os.scandir(p)),
        lambda p: glob.glob(str(p / "data" / "*")),
        lambda p: list((p / "data").glob("*.map")),
    ],
    ids=["open", "listdir", "scandir", "glob", "pathlib-glob"],
)
def test_a_read_beside_the_repository_is_seen(action):
    read = _reads_during(lambda: action(conftest.SHARED))
    assert read and all(conftest.under_shared(p) for p in read)


def test_a_relative_path_is_resolved(monkeypatch):
    monkeypatch.chdir(conftest.ROOT)
    assert conftest.under_shared(os.path.join("..", "shared", "data"))
    assert not conftest.under_shared(os.path.join("..", "shared-not", "data"))


def test_reads_inside_the_repository_are_not_counted(tmp_path):
    assert _reads_during(lambda: os.listdir(conftest.DATA)) == []
    assert _reads_during(lambda: (tmp_path / "x").write_text("x")) == []
