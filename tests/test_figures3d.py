"""The dashboard's 3D views, as plain functions of volumes.

The volumes here are generated (sigmoid spheres, a random thin chain); the real
maps' previews are drawn in test_dashboard.py and test_browser.py.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from dashboard.figures3d import (
    coarse_to_fine_figure,
    isosurface_figure,
    matched_levels,
)


def _sphere(g: int = 32, radius: float = 8.0, peak: float = 1.0) -> np.ndarray:
    z, y, x = np.mgrid[:g, :g, :g] - (g - 1) / 2
    r = np.sqrt(x**2 + y**2 + z**2)
    return (peak / (1 + np.exp(r - radius))).astype(np.float32)


def test_isosurface_is_a_mesh_at_the_level():
    fig = isosurface_figure(_sphere(), title="generated sphere")
    (mesh,) = fig.data
    assert isinstance(mesh, go.Mesh3d)
    centre = 31 / 2
    r = np.sqrt(
        (np.asarray(mesh.x) - centre) ** 2
        + (np.asarray(mesh.y) - centre) ** 2
        + (np.asarray(mesh.z) - centre) ** 2
    )
    assert np.allclose(r, 8.0, atol=0.6)  # the 0.5 level of the sigmoid
    assert len(mesh.i) == len(mesh.j) == len(mesh.k) > 0
    assert fig.layout.title.text == "generated sphere"


@pytest.mark.parametrize(
    "volume, why",
    [
        (np.zeros((32, 32, 32), np.float32), "no surface"),
        (np.full((8, 8, 8), 0.3, np.float32), "no surface"),
        (None, "no preview"),
    ],
)
def test_isosurface_of_nothing_is_an_empty_figure_with_a_message(volume, why):
    fig = isosurface_figure(volume)
    assert len(fig.data) == 0
    assert why in fig.layout.annotations[0].text


def test_coarse_to_fine_one_scene_per_scale():
    volumes = [_sphere(radius=r, peak=p) for r, p in [(4, 0.3), (6, 0.45), (8, 1.0)]]
    fig = coarse_to_fine_figure(volumes)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["1 scale", "2 scales", "3 scales"]
    assert len(fig.data) == 3
    assert all(isinstance(t, go.Mesh3d) for t in fig.data)
    assert {t.scene for t in fig.data} == {"scene", "scene2", "scene3"}
    # faint coarse reconstructions are contoured to the same enclosed volume
    levels = fig.layout.meta["levels"]
    assert levels[-1] == pytest.approx(0.5, abs=0.02)
    assert levels[0] < 0.3
    fixed = coarse_to_fine_figure(volumes, match_volume=False)
    titles = [a.text for a in fixed.layout.annotations]
    assert titles == ["1 scale (empty)", "2 scales (empty)", "3 scales"]
    assert len(fixed.data) == 1
    assert coarse_to_fine_figure([]).layout.annotations[0].text


def test_matched_levels_enclose_the_reference_volume():
    ref = _sphere(radius=8)
    faint = _sphere(radius=8, peak=0.4)
    (level,) = matched_levels([faint], 0.5, reference=ref)
    assert np.mean(faint > level) == pytest.approx(np.mean(ref > 0.5), abs=0.002)
    empty = np.zeros_like(ref)
    assert matched_levels([faint], 0.5, reference=empty) == [0.5]


# -- 3D views --------------------------------------------------------------------------
def _mesh_parts(mesh: go.Mesh3d) -> int:
    """Connected pieces of a mesh (faces sharing a vertex)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    i, j, k = (np.asarray(v) for v in (mesh.i, mesh.j, mesh.k))
    n = len(np.asarray(mesh.x))
    rows = np.concatenate([i, j, k])
    cols = np.concatenate([j, k, i])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    used = np.unique(rows)
    _, labels = connected_components(graph, directed=False)
    return len(np.unique(labels[used]))


def _thin_preview(g: int = 64, seed: int = 3) -> np.ndarray:
    """A generated stand-in for a high-resolution map's stored preview (as
    EMD-21457's zoned domain makes): a canonical volume of a thin chain, one
    to two voxels wide (0 outside the contour, 0.5-0.7 inside), box-averaged to
    half its side as the store does."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(400, 3))
    path = np.cumsum(steps / np.linalg.norm(steps, axis=1, keepdims=True), axis=0)
    path = (path - path.mean(0)) / np.abs(path - path.mean(0)).max() * (g * 0.4)
    z, y, x = np.mgrid[:g, :g, :g] - (g - 1) / 2
    grid = np.stack([x, y, z], -1).reshape(-1, 3)
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(path).query(grid)
    inside = (dist < 1.1).reshape(g, g, g)
    values = np.where(inside, rng.uniform(0.5, 0.7, inside.shape), 0.0)
    h = g // 2
    return values.reshape(h, 2, h, 2, h, 2).mean(axis=(1, 3, 5)).astype(np.float32)


def test_preview_of_thin_density_is_one_surface_not_fragments():
    preview = _thin_preview()
    fig = isosurface_figure(preview)
    (mesh,) = fig.data
    assert _mesh_parts(mesh) <= 2
    # contoured to enclose what the map's contour enclosed (previews are 0
    # outside it), not at a fixed 0.5, which breaks it apart
    raw = isosurface_figure(preview, level=0.5, smooth=0)
    assert _mesh_parts(raw.data[0]) > 10
    assert 0 < fig.layout.meta["level"] < 0.5


def test_coarse_to_fine_scenes_share_one_scale_and_camera():
    g = 32
    volumes = [_sphere(g, r, p) for r, p in [(5, 0.3), (7, 0.45), (9, 0.8), (10, 1)]]
    fig = coarse_to_fine_figure(volumes)
    scenes = [fig.layout[f"scene{'' if j == 0 else j + 1}"] for j in range(4)]
    for scene in scenes:
        assert scene.aspectmode == "cube"
        for axis in (scene.xaxis, scene.yaxis, scene.zaxis):
            assert list(axis.range) == [-0.5, g - 0.5]  # the whole box: no clipping
        assert scene.camera.eye == scenes[0].camera.eye
    # two to a row, wide enough to read, not touching
    widths = [s.domain.x[1] - s.domain.x[0] for s in scenes]
    assert min(widths) > 0.45
    assert scenes[1].domain.x[0] - scenes[0].domain.x[1] >= 0.03
    # titles under their scenes (the toolbar is at the top)
    for scene, title in zip(scenes, fig.layout.annotations, strict=True):
        assert title.y == pytest.approx(scene.domain.y[0])
        assert title.yanchor == "top"
    assert fig.layout.height >= 480


def test_pair_figure_draws_both_in_angstrom():
    from dashboard.figures3d import pair_figure

    z, y, x = np.mgrid[:20, :20, :20]
    ball = np.exp(-((x - 9.5) ** 2 + (y - 9.5) ** 2 + (z - 9.5) ** 2) / 20.0)
    fig = pair_figure(ball, ball * 2, 3.0, 0.5, 1.0, "q", "h")
    assert [t.name for t in fig.data] == ["q", "h"]
    assert fig.layout.meta["levels"] == [0.5, 1.0]
    assert fig.layout.scene.xaxis.title.text == "x (Å)"
    assert fig.layout.scene.xaxis.range == (-28.5, 28.5)  # 19 voxels of 3 Å
    xs = np.asarray(fig.data[0].x)
    assert -28.5 <= xs.min() < 0 < xs.max() <= 28.5
    # a level above a map's maximum: that surface is missing, and said
    empty = pair_figure(ball, ball, 3.0, 5.0, 0.5, "q", "h")
    assert [t.name for t in empty.data] == ["h"]
    assert "q: no surface" in empty.layout.annotations[0].text
