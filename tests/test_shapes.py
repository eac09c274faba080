"""ModelNet shapes: OFF reading, solid voxelization, voxel-stack streaming."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from encoder.training_data.shapes import (
    iter_modelnet_voxels,
    iter_shapes,
    read_off,
    shape_to_density_map,
    voxelize_mesh,
)
from ingest import IngestError, canonicalize

BATHTUB = Path(__file__).resolve().parent / "data" / "shapes" / "bathtub_0002.off"

CUBE_OFF = """OFF8 6 0
# a unit cube made of quads, keyword glued to the counts
0 0 0
1 0 0
1 1 0
0 1 0
0 0 1
1 0 1
1 1 1
0 1 1
4 0 3 2 1
4 4 5 6 7
4 0 1 5 4
4 1 2 6 5
4 2 3 7 6
4 3 0 4 7
"""


def _uv_sphere(nlon: int = 48, nlat: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Unit sphere: quads split in two, triangle fans at the poles (outward)."""
    theta = np.pi * np.arange(1, nlat) / nlat
    phi = 2 * np.pi * np.arange(nlon) / nlon
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], -1)
    vertices = np.vstack([[0, 0, 1], ring.reshape(-1, 3), [0, 0, -1]])

    def idx(i, j):
        return 1 + (i - 1) * nlon + j % nlon

    faces = [[0, idx(1, j), idx(1, j + 1)] for j in range(nlon)]
    for i in range(1, nlat - 1):
        for j in range(nlon):
            a, b, c, d = idx(i, j), idx(i + 1, j), idx(i + 1, j + 1), idx(i, j + 1)
            faces += [[a, b, c], [a, c, d]]
    last = len(vertices) - 1
    faces += [[last, idx(nlat - 1, j + 1), idx(nlat - 1, j)] for j in range(nlon)]
    return vertices.astype(np.float64), np.array(faces, dtype=np.int64)


def _mesh_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    tri = vertices[faces]
    return abs(np.einsum("ij,ij->", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))) / 6


def _box_fraction(vertices: np.ndarray, faces: np.ndarray, res: int, margin: float):
    """Analytic volume fraction of the mesh once scaled as voxelize_mesh does."""
    scale = (res - 2 * margin) / np.ptp(vertices, axis=0).max()
    return _mesh_volume(vertices, faces) * scale**3 / res**3


def _write_stack(path: Path, array: np.ndarray) -> None:
    with gzip.open(path, "wb") as fh:
        np.save(fh, array)


# --- read_off ---------------------------------------------------------------


def test_read_off_glued_header_and_quads(tmp_path):
    path = tmp_path / "cube.off"
    path.write_text(CUBE_OFF)
    vertices, faces = read_off(path)
    assert vertices.shape == (8, 3) and vertices.dtype == np.float64
    assert faces.shape == (12, 3) and faces.dtype == np.int64
    assert faces[:2].tolist() == [[0, 3, 2], [0, 2, 1]]  # fan of quad 0 3 2 1


def test_read_off_usual_layout_mixed_polygons_and_colours(tmp_path):
    path = tmp_path / "mixed.off"
    path.write_text(
        "OFF\n\n5 3 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n0.5 0.5 1 # apex\n"
        "3 0 1 4 255 0 0\n4 1 2 4 3\n5 0 1 2 3 4\n"
    )
    vertices, faces = read_off(path)
    assert vertices[4].tolist() == [0.5, 0.5, 1.0]
    assert faces.tolist() == [
        [0, 1, 4],
        [1, 2, 4],
        [1, 4, 3],
        [0, 1, 2],
        [0, 2, 3],
        [0, 3, 4],
    ]


def test_read_off_real_bathtub():
    vertices, faces = read_off(BATHTUB)
    assert vertices.shape == (700, 3) and faces.shape == (664, 3)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "not an OFF file"),
        ("PLY\n3 1 0\n", "not an OFF file"),
        ("OFF\nthree 1 0\n", "count line"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n", "truncated"),
        ("OFF\n3 2 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "truncated"),
        ("OFF\n3 1 0\n0 0 0\n1 x 0\n0 1 0\n3 0 1 2\n", "malformed"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "face index"),
        ("OFF\n3 1 0\n0 0 0\n1 0 nan\n0 1 0\n3 0 1 2\n", "non-finite"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2\n", "malformed"),
    ],
)
def test_read_off_corrupt_files_name_the_file(tmp_path, text, problem):
    path = tmp_path / "broken.off"
    path.write_text(text)
    with pytest.raises(IngestError, match=problem) as info:
        read_off(path)
    assert info.value.path == str(path) and str(path) in str(info.value)


def test_read_off_truncated_real_file(tmp_path):
    path = tmp_path / "bathtub_cut.off"
    path.write_bytes(BATHTUB.read_bytes()[:20_000])
    with pytest.raises(IngestError, match="truncated") as info:
        read_off(path)
    assert "bathtub_cut.off" in str(info.value)


# --- voxelize_mesh ----------------------------------------------------------


def test_cube_is_a_filled_solid(tmp_path):
    path = tmp_path / "cube.off"
    path.write_text(CUBE_OFF)
    vertices, faces = read_off(path)
    vol = voxelize_mesh(vertices, faces, resolution=64)
    assert vol.shape == (64, 64, 64) and vol.dtype == np.float32
    assert set(np.unique(vol).tolist()) == {0.0, 1.0}
    assert vol[2:62, 2:62, 2:62].all()  # interior filled, not a shell
    assert vol[:, :, :2].sum() == 0 and vol[0].sum() == 0  # margin kept
    # faces on voxel boundaries: surface voxels count as solid, so at most one
    # extra layer per axis, (61 / 60)^3 - 1 = 5%
    expected = _box_fraction(vertices, faces, 64, 2.0)
    assert vol.mean() == pytest.approx(expected, rel=0.1)


def test_rotated_sphere_is_a_filled_solid():
    vertices, faces = _uv_sphere()
    rotation, _ = np.linalg.qr(np.random.default_rng(7).normal(size=(3, 3)))
    vertices = vertices @ rotation.T
    vol = voxelize_mesh(vertices, faces, resolution=64)
    assert vol[22:42, 22:42, 22:42].all()
    expected = _box_fraction(vertices, faces, 64, 2.0)
    assert vol.mean() == pytest.approx(expected, rel=0.1)


def test_axis_order_is_zyx():
    vertices, faces = _uv_sphere(16, 8)
    vol = voxelize_mesh(vertices * [3.0, 1.0, 0.5], faces, resolution=32)
    extents = [np.flatnonzero(vol.any(axis=other)).size for other in [(1, 2), (0, 2)]]
    extents.append(np.flatnonzero(vol.any(axis=(0, 1))).size)
    assert extents[2] > extents[1] > extents[0]  # x longest, then y, then z


def test_small_hole_is_sealed_large_hole_stays_open():
    """A hole a few voxels wide is sealed; a missing cap leaves a bowl."""
    vertices, faces = _uv_sphere(96, 48)  # quads about 2 x 2 voxels at the equator
    centroid = vertices[faces].mean(axis=1)
    # 8 triangles gone: a hole about 4 voxels across, too wide for the bare surface
    small = faces[np.argsort(np.linalg.norm(centroid - [1, 0, 0], axis=1))[8:]]
    leaky = voxelize_mesh(vertices, small, resolution=64, close_holes=0)
    assert leaky[32, 32, 32] == 0 and leaky.mean() < 0.1  # the outside got in
    vol = voxelize_mesh(vertices, small, resolution=64)  # close_holes=1
    assert vol[22:42, 22:42, 22:42].all()
    assert vol.mean() == pytest.approx(_box_fraction(vertices, faces, 64, 2), rel=0.1)
    bowl = faces[centroid[:, 2] < 0.5]
    shell = voxelize_mesh(vertices, bowl, resolution=64)
    assert shell[32, 32, 32] == 0 and 0 < shell.mean() < 0.1


def test_real_bathtub_is_a_plausible_solid_and_canonicalizes():
    vertices, faces = read_off(BATHTUB)
    vol = voxelize_mesh(vertices, faces, resolution=64)
    assert 0.03 < vol.mean() < 0.5
    assert ndimage.binary_erosion(vol > 0, iterations=3).sum() > 1000  # not a shell
    labels, n = ndimage.label(vol > 0)
    assert np.bincount(labels.ravel())[1:].max() > 0.95 * vol.sum()  # one piece
    cv = canonicalize(shape_to_density_map(vol, "bathtub_0002"), grid=32)
    assert cv.values.shape == (32, 32, 32)
    assert cv.contour == 0.5 and cv.contour_source == "map"
    assert 0.02 < (cv.values >= 0.5).mean() < 0.6


@pytest.mark.parametrize(
    "vertices, faces",
    [
        (np.zeros((0, 3)), np.zeros((0, 3), int)),
        (np.eye(3), np.array([[0, 1, 3]])),
        (np.zeros((3, 3)), np.array([[0, 1, 2]])),
        (np.eye(3), np.array([[0, 1]])),
    ],
)
def test_voxelize_rejects_bad_meshes(vertices, faces):
    with pytest.raises(ValueError):
        voxelize_mesh(vertices, faces)


# --- DensityMap wrapping and voxel stacks ------------------------------------


def test_shape_to_density_map_fields():
    vol = np.zeros((8, 8, 8), dtype=np.float64)
    vol[2:6, 2:6, 3:5] = 1
    dmap = shape_to_density_map(vol, "chair_0001")
    assert dmap.data.dtype == np.float32 and dmap.shape == (8, 8, 8)
    assert dmap.path == "shape:chair_0001" and not dmap.simulated
    assert dmap.sha256 == hashlib.sha256(vol.astype(np.float32).tobytes()).hexdigest()
    assert dmap.header == {
        "labels": ["ModelNet10 shape chair_0001"],
        "recommended_contour": 0.5,
        "domain": "shape",
    }
    assert dmap.warnings == ("not a molecule: ModelNet10 shape",)
    with pytest.raises(ValueError, match="empty"):
        shape_to_density_map(np.zeros((8, 8, 8)), "nothing")


def test_iter_modelnet_voxels_skips_placeholders(tmp_path):
    rng = np.random.default_rng(0)
    stack = (rng.random((5, 1, 8, 8, 8)) > 0.7).astype(np.float64)
    stack[0] = 0
    stack[3] = 0
    path = tmp_path / "chair.npy.gz"
    _write_stack(path, stack)
    items = list(iter_modelnet_voxels(path))
    assert [name for name, _ in items] == ["chair_0001", "chair_0002", "chair_0004"]
    assert items[0][1].dtype == np.float32 and items[0][1].shape == (8, 8, 8)
    np.testing.assert_array_equal(items[2][1], stack[4, 0])
    assert [n for n, _ in iter_modelnet_voxels(path, limit=1)] == ["chair_0001"]


def test_iter_modelnet_voxels_bad_files(tmp_path):
    stack = np.ones((4, 1, 8, 8, 8))
    truncated = tmp_path / "cut.npy.gz"
    with gzip.open(truncated, "wb") as fh:
        np.save(fh, stack)
    raw = gzip.decompress(truncated.read_bytes())
    truncated.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(IngestError, match="truncated") as info:
        list(iter_modelnet_voxels(truncated))
    assert "cut.npy.gz" in str(info.value)
    flat = tmp_path / "flat.npy.gz"
    _write_stack(flat, np.ones((4, 8)))
    with pytest.raises(IngestError, match="not C-ordered"):
        list(iter_modelnet_voxels(flat))
    garbage = tmp_path / "garbage.npy.gz"
    garbage.write_bytes(gzip.compress(b"not numpy at all"))
    with pytest.raises(IngestError, match="garbage.npy.gz"):
        list(iter_modelnet_voxels(garbage))


def test_iter_shapes_over_a_folder(tmp_path):
    shutil.copy(BATHTUB, tmp_path / "bathtub_0002.off")
    stack = np.zeros((4, 1, 8, 8, 8))
    stack[1:, 0, 2:6, 2:6, 2:6] = 1
    _write_stack(tmp_path / "monitor.npy.gz", stack)
    (tmp_path / "notes.txt").write_text("ignored")
    items = list(iter_shapes(tmp_path, resolution=24, limit_per_file=2))
    assert [name for name, _ in items] == [
        "bathtub_0002",
        "monitor_0001",
        "monitor_0002",
    ]
    assert items[0][1].shape == (24, 24, 24) and items[1][1].shape == (8, 8, 8)
    assert all(d.header["domain"] == "shape" for _, d in items)
    with pytest.raises(IngestError, match="not a folder"):
        list(iter_shapes(tmp_path / "missing"))
