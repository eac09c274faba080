"""Superposing a hit on its query: the pose found, the query resampled onto the
hit's grid and written as MRC, the ChimeraX command file, the zip.

The query is a real sample map turned and moved by a known rigid transform
(a transformed copy, made here, labelled as such in its path), so the right
answer is known."""

from __future__ import annotations

import dataclasses
import io
import zipfile

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ingest import read_map, rotate_map
from ingest.canonical import volume_correlation
from swan_index.superpose import (
    Placed,
    Superposition,
    chimerax_script,
    display_volumes,
    mrc_bytes,
    pair_files,
    pair_zip,
    resample_query,
    superpose,
)

from .conftest import MAPS

TURN = Rotation.from_euler("zyx", [40, -25, 70], degrees=True).as_matrix()
MOVE = np.array([13.0, -7.0, 21.0])


@pytest.fixture(scope="module")
def pair():
    """(query, hit, superposition): EMD-5625 and a copy of it turned by TURN
    about its box centre and moved by MOVE Å."""
    hit_map = read_map(MAPS["emd_5625"])
    moved = rotate_map(hit_map, TURN, order=1)
    moved = dataclasses.replace(
        moved,
        origin=tuple(np.asarray(moved.origin) + MOVE),
        path="transformed-copy-of-emd_5625.map",
    )
    hit = Placed.of(hit_map, name="EMD-5625")
    query = Placed.of(moved, hit.contour)
    return query, hit, superpose(query, hit)


def _identity(sup: Superposition) -> Superposition:
    return dataclasses.replace(sup, rotation=np.eye(3), translation=np.zeros(3))


def test_the_pose_undoes_the_known_transform(pair):
    query, hit, sup = pair
    # the copy's point R (r - c) + c + MOVE is the hit's point r
    angle = Rotation.from_matrix(sup.rotation @ TURN).magnitude()
    assert np.degrees(angle) < 3.0
    centre = np.asarray(hit.canon.center)
    where = query.canon.center  # the copy's centre of mass...
    assert np.linalg.norm(sup.apply(where) - centre) < 2.0  # ...lands on the hit's
    assert sup.correlation > 0.95
    assert np.allclose(sup.rotation @ sup.rotation.T, np.eye(3), atol=1e-6)


def test_resampled_query_written_as_mrc_overlays_the_hit(pair, tmp_path):
    query, hit, sup = pair
    data = resample_query(query.dmap, sup, hit.dmap)
    path = tmp_path / "query_on_hit.mrc"
    path.write_bytes(mrc_bytes(data, hit.dmap, ["resampled by a test"]))
    back = read_map(path)
    assert back.shape == hit.dmap.shape
    assert np.allclose(back.voxel_size, hit.dmap.voxel_size, atol=1e-4)
    assert np.allclose(back.origin, hit.dmap.origin, atol=1e-3)
    assert "resampled by a test" in back.header["labels"][0]
    superposed = volume_correlation(back.data, hit.dmap.data)
    unmoved = volume_correlation(
        resample_query(query.dmap, _identity(sup), hit.dmap), hit.dmap.data
    )
    assert superposed > 0.95 and unmoved < 0.6
    # fitted again from the file, the resampled query needs no further move
    again = superpose(Placed.of(back, query.contour), hit, rotations=0)
    assert Rotation.from_matrix(again.rotation).magnitude() < np.radians(3)
    assert np.linalg.norm(again.translation) < 3.0


def test_mrc_needs_data_on_the_grid(pair):
    _, hit, _ = pair
    with pytest.raises(ValueError, match="not on a grid"):
        mrc_bytes(np.zeros((2, 2, 2), np.float32), hit.dmap)


def test_chimerax_script_opens_both_at_their_levels():
    text = chimerax_script("hit map.mrc", "q.mrc", 0.0123, 1.5, "EMD-1", "q.map", 0.9)
    lines = text.splitlines()
    assert 'open "hit map.mrc"' in lines and "open q.mrc" in lines
    assert any(ln.startswith("volume #1") and "level 0.0123" in ln for ln in lines)
    assert any(ln.startswith("volume #2") and "level 1.5" in ln for ln in lines)
    assert "resampled" in text and "0.900" in text


def test_pair_files_zip_round_trip(pair, tmp_path):
    query, hit, sup = pair
    files = pair_files(query, hit, sup, MAPS["emd_5625"], query_level=0.7)
    blob = pair_zip(files)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path)
    mrcs = [n for n in names if n.endswith(".mrc")]
    (script,) = [n for n in names if n.endswith(".cxc")]
    assert len(mrcs) == 2
    text = (tmp_path / script).read_text()
    for name in mrcs:
        assert f"open {name}" in text
    assert f"level {hit.contour:.6g}" in text and "level 0.7 " in text
    hit_copy = read_map(tmp_path / "EMD-5625.mrc")
    assert np.array_equal(hit_copy.data, hit.dmap.data)


def test_display_volumes_share_one_grid(pair):
    query, hit, sup = pair
    vols = display_volumes(query, hit, sup, n=24)
    assert vols.query.shape == vols.hit.shape == (24, 24, 24)
    assert vols.hit_range[0] <= vols.hit_level <= vols.hit_range[1]
    inside_q, inside_h = vols.query > vols.query_level, vols.hit > vols.hit_level
    overlap = (inside_q & inside_h).sum() / max(1, (inside_q | inside_h).sum())
    assert overlap > 0.6  # the same molecule, superposed


def test_a_map_with_anisotropic_voxels_and_swapped_axes_lies_on_itself(tmp_path):
    """EMD-3001 (MAPC/MAPR/MAPS 3,1,2, anisotropic voxels, NSTART off 0): the
    pair of a map with itself is the identity, and its resampled copy, written
    and read back, is the map."""
    dmap = read_map(MAPS["emd_3001"])
    assert len(set(np.round(dmap.voxel_size, 3))) > 1
    placed = Placed.of(dmap, name="EMD-3001")
    sup = superpose(placed, placed)
    assert Rotation.from_matrix(sup.rotation).magnitude() < np.radians(2)
    assert np.linalg.norm(sup.translation) < 1.0
    path = tmp_path / "self.mrc"
    path.write_bytes(mrc_bytes(resample_query(dmap, sup, dmap), dmap))
    back = read_map(path)
    assert np.allclose(back.origin, dmap.origin, atol=1e-3)
    assert np.allclose(back.voxel_size, dmap.voxel_size, atol=1e-4)
    assert volume_correlation(back.data, dmap.data) > 0.98
