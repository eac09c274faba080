"""Shared fixtures: test files by short label (all inside the repository), the
shipped encoder, the sample maps encoded, and a store holding them; and a guard
that fails any test reading the benchmarks' larger data set beside the
repository (``benchmarks.common.SHARED_DATA``): the tests must pass on a machine
without it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.common import SHARED_DATA
from ingest import find_entries
from swan_index.map_encoder import MapEncoder
from swan_index.prepare import prepare_entry
from swan_index.store import Store

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
TEST_DATA = Path(__file__).resolve().parent / "data"

MAPS = {
    "emd_1832": DATA / "maps" / "emd_1832.map",
    "emd_5625": DATA / "maps" / "emd_5625.map",
    "emd_21457_seg": DATA / "maps" / "emd_21457_seg.mrc",
    "emd_3001": DATA / "maps" / "emd_3001.map.gz",
    "emd_3197": DATA / "maps" / "emd_3197.map.gz",
    "emd_6824": DATA / "maps" / "emd_6824.mrc",
}
HEADERS = TEST_DATA / "headers"
MODELS = {"5me2": DATA / "models" / "5me2.pdb", "6272": DATA / "models" / "6272.pdb"}

# The folder beside the repository that holds the benchmarks' larger real data
# set (SHARED_DATA lies two levels down in it); the benchmarks default to it,
# the tests must never read it. Python's audit events see every open, listing
# and glob made in this process (not in the processes a test starts, nor a bare
# ``exists()``); a test that made one fails.
SHARED = SHARED_DATA.parents[1]
_SHARED_ROOTS = tuple({os.path.normpath(SHARED), os.path.realpath(SHARED)})
_WATCHED = frozenset(
    {"open", "os.listdir", "os.scandir", "glob.glob", "os.walk", "shutil.copyfile"}
)
shared_reads: list[str] = []


def under_shared(path) -> bool:
    """Whether ``path`` (absolute, or relative to the working folder) lies in
    the data folder beside the repository."""
    full = os.path.abspath(os.fsdecode(path))
    return any(full == r or full.startswith(r + os.sep) for r in _SHARED_ROOTS)


def _watch_shared(event: str, args: tuple) -> None:
    if event not in _WATCHED or not args:
        return
    path = args[0]
    if not isinstance(path, (str, bytes, os.PathLike)):
        return  # a file descriptor
    try:
        if under_shared(path):
            shared_reads.append(os.fsdecode(path))
    except (OSError, ValueError):  # e.g. the working folder was removed
        pass


sys.addaudithook(_watch_shared)


@pytest.fixture(autouse=True)
def _no_shared_data():
    start = len(shared_reads)
    yield
    read = shared_reads[start:]
    if read:
        del shared_reads[start:]
        pytest.fail(
            f"the test read {read[0]}, in {SHARED} beside the repository: tests "
            "must pass without that folder; copy the file into tests/data and "
            "give its source in data/PROVENANCE.md"
        )


@pytest.fixture
def map_path():
    """``map_path("emd_1832")`` -> path of a shipped sample map."""
    return MAPS.__getitem__


@pytest.fixture
def header_path():
    """``header_path("emd-0001-v30.xml")`` -> path of a test header."""
    return lambda name: HEADERS / name


@pytest.fixture
def model_path():
    """``model_path("5me2")`` -> path of a shipped atomic model."""
    return MODELS.__getitem__


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def encoder() -> MapEncoder:
    """The shipped checkpoint."""
    return MapEncoder()


@pytest.fixture(scope="module")
def samples(encoder):
    """The six shipped real maps, prepared and encoded (primary pose):
    ``(prepared, code)``."""
    prepared = [prepare_entry(e, encoder.grid) for e in find_entries(DATA / "maps")]
    code = encoder.encode(np.concatenate([p.volumes for p in prepared]))
    return prepared, code


@pytest.fixture
def store(tmp_path, encoder, samples):
    """A store of the six sample maps, with previews (ids 1-6 in file order)."""
    prepared, code = samples
    st = Store.open(tmp_path / "s", encoder=encoder.info)
    st.add(code, [p.record for p in prepared], [p.preview() for p in prepared])
    yield st
    st.close()
