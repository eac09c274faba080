"""The archive's 2D layout and clusters (swan_index.layout).

UMAP compiles with numba for about a minute on its first call, so the unit tests
use the PCA path and the clustering; the UMAP path runs only with
``SWAN_SLOW_TESTS=1``. Vectors here are generated (seeded clusters), not real
codes.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from encoder.code import MultiScaleCode
from swan_index.layout import (
    MIN_UMAP,
    cluster_points,
    compute_layout,
    default_min_cluster_size,
    layout_features,
    layout_store,
    map_features,
    size_feature,
)
from swan_index.schema import EntryRecord
from swan_index.store import EncoderInfo, Store

#: Marks tests that run UMAP (numba compilation: about a minute on first call).
slow = pytest.mark.skipif(
    not os.environ.get("SWAN_SLOW_TESTS"),
    reason="runs UMAP (about a minute of numba compilation); set SWAN_SLOW_TESTS=1",
)

DIMS = (8, 32, 32)


def _generated_vectors(
    groups: int, per_group: int, seed: int = 0, spread: float = 0.15
) -> tuple[list[np.ndarray], np.ndarray]:
    """Generated unit vectors per scale in ``groups`` tight groups; returns
    (vectors per scale, group of each row)."""
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(groups), per_group)
    out = []
    for dim in DIMS:
        centres = rng.normal(size=(groups, dim))
        v = centres[group] + spread * rng.normal(size=(len(group), dim))
        out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
    return out, group


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = {(int(x), int(y)) for x, y in zip(a, b, strict=True)}
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_features_weigh_every_scale_equally():
    vectors, _ = _generated_vectors(3, 5)
    feats = layout_features(vectors)
    assert feats.shape == (15, sum(DIMS))
    assert np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-5)
    # cosine of the features == mean over scales of the centred cosines
    per_scale = []
    for v in vectors:
        c = v - v.mean(axis=0)
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        per_scale.append(c @ c.T)
    assert np.allclose(feats @ feats.T, np.mean(per_scale, axis=0), atol=1e-5)


def test_features_reject_misaligned_scales():
    with pytest.raises(ValueError, match="expected"):
        layout_features([np.ones((3, 4)), np.ones((2, 4))])
    with pytest.raises(ValueError, match="no scales"):
        layout_features([])


def test_pca_layout_of_a_few_entries_is_deterministic_and_clustered():
    vectors, group = _generated_vectors(2, 6)  # 12 < MIN_UMAP: the PCA path
    assert len(group) < MIN_UMAP
    ids = np.arange(1, 13)
    xy, cluster = compute_layout(ids, vectors)
    assert xy.shape == (12, 2) and np.all(np.isfinite(xy))
    assert cluster.dtype == np.int32 and cluster.shape == (12,)
    assert _same_partition(cluster, group)
    xy2, cluster2 = compute_layout(ids, vectors)
    assert np.array_equal(xy, xy2) and np.array_equal(cluster, cluster2)
    # the groups are apart on the map too
    centres = np.array([xy[group == g].mean(axis=0) for g in (0, 1)])
    spread = max(np.abs(xy[group == g] - centres[g]).max() for g in (0, 1))
    assert np.linalg.norm(centres[0] - centres[1]) > spread


def test_pca_layout_can_be_forced_for_more_entries():
    vectors, group = _generated_vectors(4, 10)
    xy, cluster = compute_layout(np.arange(40), vectors, method="pca")
    assert xy.shape == (40, 2)
    assert _same_partition(cluster, group)


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_tiny_archives_still_get_a_layout(n):
    vectors = [np.eye(max(n, 1), d)[:n] for d in DIMS]
    xy, cluster = compute_layout(np.arange(n), vectors)
    assert xy.shape == (n, 2) and np.all(np.isfinite(xy))
    assert cluster.shape == (n,)
    if n < 3:
        assert np.all(cluster == -1)


def test_compute_layout_checks_its_inputs():
    vectors, _ = _generated_vectors(2, 3)
    with pytest.raises(ValueError, match="ids"):
        compute_layout(np.arange(5), vectors)
    with pytest.raises(ValueError, match="method"):
        compute_layout(np.arange(6), vectors, method="tsne")


def test_size_feature_is_standardised_log_rg():
    rg = np.array([10.0, 20.0, 40.0, np.nan, 0.0])
    z = size_feature(rg)
    assert z.shape == (5, 1) and z.dtype == np.float32
    known = np.log([10.0, 20.0, 40.0])
    assert np.allclose(z[:3, 0], (known - known.mean()) / known.std(), atol=1e-6)
    assert z[3, 0] == 0 and z[4, 0] == 0  # unknown sizes sit at the mean
    assert not size_feature(np.full(4, 25.0)).any()
    assert not size_feature(np.array([np.nan, 30.0])).any()


def test_map_features_are_the_finest_scale_and_the_size():
    vectors, _ = _generated_vectors(3, 5)
    assert np.allclose(map_features(vectors), layout_features(vectors[-1:]))
    rg = np.linspace(20, 60, 15)
    feats = map_features(vectors, rg)
    assert feats.shape == (15, DIMS[-1] + 1)
    assert np.allclose(feats[:, -1], 0.5 * size_feature(rg)[:, 0], atol=1e-6)
    with pytest.raises(ValueError, match="sizes"):
        map_features(vectors, rg[:3])
    with pytest.raises(ValueError, match="same N"):
        map_features([np.ones((3, 4)), np.ones((2, 4))])


def _shapes_and_sizes() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Two shapes, each at two sizes (20 and 80 Å), 10 entries each: (vectors,
    sizes, molecule of each row)."""
    vectors, shape = _generated_vectors(2, 20, seed=2)
    big = np.tile(np.repeat([0, 1], 10), 2)
    return vectors, np.where(big == 1, 80.0, 20.0), shape * 2 + big


def test_clusters_tell_molecules_of_one_shape_apart_by_size():
    vectors, sizes, molecule = _shapes_and_sizes()
    _, cluster = compute_layout(np.arange(40), vectors, method="pca", sizes=sizes)
    assert _same_partition(cluster, molecule)
    # by shape alone, only the two shapes
    _, by_shape = compute_layout(np.arange(40), vectors, method="pca")
    assert _same_partition(by_shape, molecule // 2)


def test_layout_store_weighs_the_stored_sizes(tmp_path):
    vectors, sizes, molecule = _shapes_and_sizes()
    info = EncoderInfo("generated-encoder", (1, 2, 4), (1, 1, 1), DIMS, 16)
    rng = np.random.default_rng(0)
    tokens = tuple(
        rng.integers(0, 16, (40, 1, s, s, s)).astype(np.int16) for s in info.scales
    )
    code = MultiScaleCode(
        info.scales, tokens, tuple(v.astype(np.float32) for v in vectors), info.hash
    )
    records = [EntryRecord(sha256=f"m-{i}", rg=float(r)) for i, r in enumerate(sizes)]
    with Store.open(tmp_path / "s", encoder=info) as store:
        store.add(code, records)
        summary = layout_store(store, method="pca")
        assert summary["clusters"] == 4
        cluster = store.entries(("id", "cluster"))["cluster"]
    assert _same_partition(np.asarray(cluster), molecule)


def test_clusters_are_numbered_by_size_with_noise():
    rng = np.random.default_rng(3)
    big = rng.normal(0, 0.1, (30, 2))
    small = rng.normal(5, 0.1, (12, 2))
    outlier = np.array([[40.0, -40.0]])
    labels = cluster_points(np.vstack([small, big, outlier]), min_cluster_size=5)
    assert set(labels[12:42]) == {0}  # the largest cluster is 0
    assert set(labels[:12]) == {1}
    assert labels[-1] == -1
    assert cluster_points(np.zeros((2, 2))).tolist() == [-1, -1]


def test_default_min_cluster_size_grows_with_the_archive():
    sizes = [default_min_cluster_size(n) for n in (1, 6, 100, 10_000, 50_000)]
    assert sizes == [2, 2, 5, 50, 112]


def _generated_store(path, n: int) -> Store:
    """A store under a made-up encoder, holding ``n`` generated entries."""
    info = EncoderInfo("generated-encoder", (1, 2, 4), (1, 1, 1), DIMS, 16)
    store = Store.open(path, encoder=info)
    rng = np.random.default_rng(0)
    vectors, _ = _generated_vectors(2, (n + 1) // 2)
    tokens = tuple(
        rng.integers(0, 16, (n, 1, s, s, s)).astype(np.int16) for s in info.scales
    )
    code = MultiScaleCode(
        info.scales,
        tokens,
        tuple(v[:n].astype(np.float32) for v in vectors),
        info.hash,
    )
    records = [EntryRecord(sha256=f"generated-{i}", rg=30.0 + i) for i in range(n)]
    store.add(code, records)
    return store


def test_layout_store_saves_every_entry(tmp_path):
    with _generated_store(tmp_path / "s", 10) as store:
        summary = layout_store(store)
        assert summary == {"entries": 10, "clusters": 2, "noise": 0, "method": "pca"}
        table = store.entries(("id", "x", "y", "cluster"))
        assert not np.ma.getmaskarray(table["x"]).any()
        assert sorted(set(table["cluster"].tolist())) == [0, 1]
    with Store.open(tmp_path / "s", read_only=True) as reader:
        with pytest.raises(PermissionError, match="read-only"):
            layout_store(reader)
        assert reader.count(where="id IN (SELECT id FROM layout)") == 10


@slow
def test_umap_layout_is_deterministic_and_finds_the_groups():
    vectors, group = _generated_vectors(4, 25, seed=1)
    ids = np.arange(100)
    xy, cluster = compute_layout(ids, vectors, seed=0)
    xy2, cluster2 = compute_layout(ids, vectors, seed=0)
    assert np.allclose(xy, xy2) and np.array_equal(cluster, cluster2)
    assert xy.shape == (100, 2)
    found = cluster >= 0
    assert found.mean() > 0.9
    assert _same_partition(cluster[found], group[found])


@slow
def test_layout_store_with_umap(tmp_path):
    with _generated_store(tmp_path / "s", 30) as store:
        summary = layout_store(store)
        assert summary["method"] == "umap" and summary["entries"] == 30
        assert summary["clusters"] == 2


def test_clusters_of_real_codes_follow_the_demo_families(tmp_path, encoder):
    """Codes of the shipped checkpoint: a reduced demo store (8 families of 8
    simulated variants, plus the sample maps, which carry no family and are not
    scored). The clusters must mostly hold one family each (see
    docs/results/clusters.md for the full measurement)."""
    from benchmarks.bench_clusters import scores
    from dashboard.demo import DemoConfig, build_demo_store

    cfg = DemoConfig(synthetic_families=6, variants=8)
    path = build_demo_store(tmp_path / "demo", encoder, cfg, progress=False)
    with Store.open(path, read_only=True) as store:
        vectors = [store.vectors(s)[1] for s in store.encoder.scales]
        ids = store.vectors(store.encoder.scales[0])[0]
        table = store.entries(("id", "label", "rg"))
    labels = np.array([str(v) if v else "" for v in table["label"]], dtype=object)
    sizes = np.ma.filled(np.ma.asarray(table["rg"], np.float64), np.nan)
    _, cluster = compute_layout(ids, vectors, method="pca", sizes=sizes)
    got = scores(labels, cluster)
    assert got["purity"] >= 0.8 and got["ari"] >= 0.75, got


def test_swan_layout_command_reports_the_layout(tmp_path, capsys):
    from swan_index.cli import main

    _generated_store(tmp_path / "s", 10).close()
    assert main(["layout", "--store", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "layout of 10 entries" in out and "'clusters': 2" in out
    assert main(["layout", "--store", str(tmp_path / "missing")]) == 2
    assert "error:" in capsys.readouterr().err
