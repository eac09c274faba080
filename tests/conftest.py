"""Shared fixtures: test files by short label (all inside the repository), the
shipped encoder, the sample maps encoded, and a store holding them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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
