"""The 2D map of the archive: a UMAP layout of the codes, and clusters.

The layout is computed once (at ingest or by ``swan layout``) and stored in the
store's ``layout`` table (:meth:`~swan_index.store.Store.set_layout`); the dashboard
only reads it, never computes it on page load.

**Features** (:func:`map_features`). An entry is described by its retrieval vector
at the finest scale and by its physical size. The vectors are centred on their
mean over the archive (the vectors of one scale share a large common component,
which would make every cosine close to 1) and re-normalised to unit length
(:func:`layout_features`, which also concatenates several scales with equal
weights); the size is ``log(rg)`` standardised over the archive
(:func:`size_feature`), weighted :data:`SIZE_WEIGHT`, as the search also weighs
size: a ribosome is not a small protein whose shape rhymes with it.

Why these: ``python -m benchmarks.bench_clusters`` scores clusters against the
labelled families of the demo store (figures in docs/results/clusters.md). The
coarse scales tell families apart poorly on their own, so giving them half the
weight, as the map did before, blurred families together; the finest scale with
the size did best of the candidates that stay bounded at 50,000 entries on the
selection seed, and held up on a held-out seed.

**Embedding.** UMAP (umap-learn, euclidean metric on the features: on their
unit-length part it orders pairs as the cosine does) with a fixed seed, which makes
it deterministic (and single-threaded: umap-learn's choice). With fewer than
:data:`MIN_UMAP` entries UMAP's neighbour graph is meaningless (and its spectral
initialisation can fail), so the layout falls back to PCA of the same features.

**Clusters** (:func:`cluster_features`). HDBSCAN (scikit-learn), ``-1`` for noise
(entries like no others: a scientist should not be told they belong to a group),
numbered by size (0 is the largest), on the features' first
:data:`CLUSTER_DIMS` principal components, not on the 2D picture: UMAP's 2D
layout tears and merges neighbourhoods, and clusters drawn from it mixed and split
families (measured). The principal components keep HDBSCAN's cost bounded:
scikit-learn's HDBSCAN on euclidean data builds its tree without an N x N matrix
(memory O(N)), and in 32 dimensions its time stays in minutes at 50,000 entries,
where in the 217 dimensions of the features its tree degenerates to a brute
search.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from swan_index.store import Store

log = logging.getLogger(__name__)

#: Below this many entries the layout is PCA, not UMAP.
MIN_UMAP = 15
#: How many of the finest scales describe an entry on the map.
MAP_SCALES = 1
#: Weight of the standardised log radius of gyration among the map's features.
SIZE_WEIGHT = 0.5
#: HDBSCAN clusters the features' first this many principal components.
CLUSTER_DIMS = 32


def layout_features(vectors_per_scale: list[np.ndarray]) -> np.ndarray:
    """Per-scale centred, re-normalised vectors, concatenated (see module docs).

    Args:
        vectors_per_scale: per scale, ``[N, dim_s]`` retrieval vectors, rows aligned.

    Returns:
        ``[N, sum(dim_s)]`` float32, each row of unit length (or zero for an entry
        equal to the mean at every scale).

    Raises:
        ValueError: no scales, or scales with different numbers of rows.
    """
    if not len(vectors_per_scale):
        raise ValueError("no scales given; pass one [N, dim] array per scale")
    n = len(vectors_per_scale[0])
    parts = []
    for v in vectors_per_scale:
        v = np.asarray(v, np.float64)
        if v.ndim != 2 or len(v) != n:
            raise ValueError(f"vectors {v.shape}: expected [{n}, dim] for every scale")
        v = v - v.mean(axis=0, keepdims=True)
        norm = np.linalg.norm(v, axis=1, keepdims=True)
        parts.append(np.divide(v, norm, out=np.zeros_like(v), where=norm > 1e-12))
    feats = np.concatenate(parts, axis=1) / math.sqrt(len(parts))
    return feats.astype(np.float32)


def size_feature(rg: np.ndarray) -> np.ndarray:
    """The entries' physical size as one standardised column ``[N, 1]``.

    Args:
        rg: radius of gyration per entry ``[N]``, Å (NaN or <= 0 where unknown).

    Returns:
        float32 ``[N, 1]``: ``log(rg)`` minus its mean over the archive, divided by
        its standard deviation; 0 where unknown (or when every size is the same).
    """
    rg = np.asarray(rg, np.float64).reshape(-1)
    known = np.isfinite(rg) & (rg > 0)
    out = np.zeros((len(rg), 1), np.float32)
    if known.sum() < 2:
        return out
    logs = np.log(rg[known])
    std = logs.std()
    if std > 1e-12:
        out[known, 0] = (logs - logs.mean()) / std
    return out


def map_features(
    vectors_per_scale: list[np.ndarray], sizes: np.ndarray | None = None
) -> np.ndarray:
    """What describes an entry on the map and in its clusters (see module docs).

    Args:
        vectors_per_scale: per scale, coarse to fine, ``[N, dim_s]`` retrieval
            vectors, rows aligned; the finest :data:`MAP_SCALES` are used.
        sizes: radius of gyration per entry ``[N]`` (Å), or ``None`` to leave the
            size out.

    Returns:
        float32 ``[N, d]``: :func:`layout_features` of the finest scales, then
        (with ``sizes``) :data:`SIZE_WEIGHT` times :func:`size_feature`.

    Raises:
        ValueError: no scales, misaligned scales, or ``sizes`` of another length.
    """
    if not len(vectors_per_scale):
        raise ValueError("no scales given; pass one [N, dim] array per scale")
    rows = {np.shape(v)[0] if np.ndim(v) else -1 for v in vectors_per_scale}
    if len(rows) != 1:
        raise ValueError(f"vectors with {sorted(rows)} rows: expected the same N")
    feats = layout_features(list(vectors_per_scale)[-MAP_SCALES:])
    if sizes is None:
        return feats
    sizes = np.asarray(sizes, np.float64).reshape(-1)
    if len(sizes) != len(feats):
        raise ValueError(f"{len(sizes)} sizes for {len(feats)} entries")
    return np.hstack([feats, SIZE_WEIGHT * size_feature(sizes)]).astype(np.float32)


def default_min_cluster_size(n: int) -> int:
    """HDBSCAN's smallest cluster for ``n`` entries: ``max(2, round(sqrt(n) / 2))``
    (2 for a handful of maps, 5 for 100, 50 for 10,000, 112 for 50,000)."""
    return max(2, round(math.sqrt(max(n, 0)) / 2))


def cluster_points(
    points: np.ndarray, min_cluster_size: int | None = None
) -> np.ndarray:
    """HDBSCAN clusters of ``points`` ``[N, d]``, numbered by size (0 the largest),
    ``-1`` for noise. Fewer than 3 points are all noise.

    Returns:
        int32 ``[N]``.
    """
    from sklearn.cluster import HDBSCAN

    points = np.asarray(points, np.float64)
    n = len(points)
    mcs = default_min_cluster_size(n) if min_cluster_size is None else min_cluster_size
    if n < 3 or n < mcs:
        return np.full(n, -1, np.int32)
    labels = HDBSCAN(min_cluster_size=max(2, mcs), copy=True).fit_predict(points)
    out = np.full(n, -1, np.int32)
    found, counts = np.unique(labels[labels >= 0], return_counts=True)
    # Largest first; ties by first appearance, so the numbering is stable.
    first = [int(np.argmax(labels == c)) for c in found]
    order = sorted(range(len(found)), key=lambda j: (-counts[j], first[j]))
    for new, j in enumerate(order):
        out[labels == found[j]] = new
    return out


def cluster_features(
    feats: np.ndarray, min_cluster_size: int | None = None
) -> np.ndarray:
    """HDBSCAN clusters (:func:`cluster_points`) of features ``[N, d]`` on their
    first :data:`CLUSTER_DIMS` principal components (all of them when ``d`` is
    no larger).

    Args:
        feats: ``[N, d]`` features (:func:`map_features`).
        min_cluster_size: HDBSCAN's smallest cluster (default
            :func:`default_min_cluster_size`).

    Returns:
        int32 ``[N]``, numbered by size, -1 for noise.
    """
    feats = np.asarray(feats, np.float64)
    n, d = feats.shape
    if n >= 3 and d > CLUSTER_DIMS:
        from sklearn.decomposition import PCA

        k = min(CLUSTER_DIMS, n)
        feats = PCA(n_components=k, random_state=0).fit_transform(feats)
    return cluster_points(feats, min_cluster_size)


def _pca_2d(feats: np.ndarray) -> np.ndarray:
    """First two principal components ``[N, 2]`` (zeros where there are fewer)."""
    n = len(feats)
    xy = np.zeros((n, 2), np.float64)
    if n < 2:
        return xy
    centred = feats - feats.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    k = min(2, len(s))
    xy[:, :k] = u[:, :k] * s[:k]
    # Deterministic sign: the largest coordinate of each axis is positive.
    for j in range(k):
        if xy[np.argmax(np.abs(xy[:, j])), j] < 0:
            xy[:, j] *= -1
    return xy


def _umap_2d(feats: np.ndarray, seed: int | None, n_neighbors: int) -> np.ndarray:
    import umap  # slow import (numba); only when a layout is computed

    with warnings.catch_warnings():
        # "n_jobs overridden to 1 by setting random_state": wanted (determinism).
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=min(n_neighbors, len(feats) - 1),
            metric="euclidean",
            min_dist=0.1,
            random_state=seed,
        )
        return np.asarray(reducer.fit_transform(feats), np.float64)


def _uses_umap(n: int, method: str) -> bool:
    """UMAP when asked (it cannot lay out fewer than 3 points at all) or, for
    ``auto``, from :data:`MIN_UMAP` entries."""
    return n >= 3 and (method == "umap" or (method == "auto" and n >= MIN_UMAP))


def compute_layout(
    ids: np.ndarray,
    vectors_per_scale: list[np.ndarray],
    seed: int | None = 0,
    n_neighbors: int = 15,
    method: str = "auto",
    min_cluster_size: int | None = None,
    sizes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The 2D layout and clusters of entries from their codes (see module docs).

    Args:
        ids: entry ids ``[N]`` (only their number is used; rows are aligned).
        vectors_per_scale: per scale, coarse to fine, ``[N, dim_s]`` retrieval
            vectors.
        seed: UMAP's random state (deterministic); ``None`` for a faster,
            parallel, non-reproducible run.
        n_neighbors: UMAP's neighbourhood size (capped at ``N - 1``).
        method: ``"auto"`` (UMAP, or PCA below :data:`MIN_UMAP` entries),
            ``"umap"`` or ``"pca"``.
        min_cluster_size: HDBSCAN's smallest cluster (default
            :func:`default_min_cluster_size`).
        sizes: radius of gyration per entry ``[N]`` (Å; NaN where unknown), or
            ``None`` to place and cluster by shape alone.

    Returns:
        ``(xy, cluster)``: float64 ``[N, 2]`` and int32 ``[N]`` (-1: noise).

    Raises:
        ValueError: misaligned inputs (vectors, sizes) or an unknown ``method``.
    """
    ids = np.asarray(ids)
    if method not in ("auto", "umap", "pca"):
        raise ValueError(f"method {method!r}: choose auto, umap or pca")
    n = len(ids)
    if n == 0:
        return np.zeros((0, 2)), np.zeros(0, np.int32)
    if len(vectors_per_scale) and len(vectors_per_scale[0]) != n:
        raise ValueError(f"{len(vectors_per_scale[0])} vectors per scale for {n} ids")
    feats = map_features(vectors_per_scale, sizes)
    if _uses_umap(n, method):
        log.info("UMAP layout of %d entries", n)
        xy = _umap_2d(feats, seed, n_neighbors)
    else:
        xy = _pca_2d(feats)
    return xy, cluster_features(feats, min_cluster_size)


def layout_store(
    store: Store,
    seed: int | None = 0,
    n_neighbors: int = 15,
    method: str = "auto",
) -> dict[str, int | str]:
    """Compute the layout of every entry of a store and save it (one transaction).

    Args:
        store: opened for writing.
        seed, n_neighbors, method: as in :func:`compute_layout`.

    Returns:
        A summary: ``entries``, ``clusters``, ``noise`` (entries in no cluster),
        ``method`` (``umap`` or ``pca``).

    Raises:
        PermissionError: the store is read-only.
    """
    if store.read_only:
        raise PermissionError(f"{store.path}: opened read-only; open it to write")
    vectors, ids = [], None
    for scale in store.encoder.scales:
        scale_ids, vecs = store.vectors(scale)
        if ids is not None and not np.array_equal(ids, scale_ids):
            raise RuntimeError(f"{store.path}: scale indexes out of step; reopen")
        ids = scale_ids
        vectors.append(vecs)
    table = store.entries(("id", "rg"))
    if not np.array_equal(np.ma.getdata(table["id"]), ids):
        raise RuntimeError(f"{store.path}: entries and vectors out of step; reopen")
    sizes = np.ma.filled(np.ma.asarray(table["rg"], np.float64), np.nan)
    xy, cluster = compute_layout(ids, vectors, seed, n_neighbors, method, sizes=sizes)
    store.set_layout(ids, xy, cluster)
    summary = {
        "entries": len(ids),
        "clusters": int(cluster.max(initial=-1)) + 1,
        "noise": int(np.sum(cluster < 0)),
        "method": "umap" if _uses_umap(len(ids), method) else "pca",
    }
    log.info("layout: %s", summary)
    return summary
