"""Benchmark: do the archive map's clusters group the same molecule, and only it?

On the demo store (:func:`dashboard.demo.build_demo_store`: the real sample maps
and 16 labelled simulated families of 16 variants each), every candidate method
clusters all the entries and is scored against the families' labels (the real
maps carry no label: they are clustered but not scored). The candidates cross

* **vectors** (what describes an entry): the per-scale retrieval vectors of all
  scales as :func:`swan_index.layout.layout_features` makes them (``all``, the
  method before this benchmark), of the two coarsest scales (``coarse``), of the
  two finest (``fine``) or the finest alone (``finest``); optionally PCA-whitened
  (``+white``); optionally with the entry's physical size (``+size``: log radius
  of gyration, standardised, weight 0.5, the term the search also weighs);
* **clustering**: HDBSCAN on the 2D UMAP layout (the method before), HDBSCAN on a
  10-dimensional UMAP (``min_dist`` 0, the recipe umap-learn documents for
  clustering), HDBSCAN on the vectors' first 32 principal components
  (``pca32+hdbscan``) or on the vectors themselves, k-means and average-linkage
  agglomerative clustering with the number of clusters chosen by the silhouette
  score (never from the labels). HDBSCAN's smallest cluster is
  :func:`swan_index.layout.default_min_cluster_size` throughout.

Scores, over the labelled entries: **purity** (share of entries in a cluster whose
majority family is theirs; noise counts as impure), **adjusted Rand index** and
**normalised mutual information** (scikit-learn; each noise point its own
cluster), the share left as noise, the clusters found, the clusters that mix
families (two or more families with at least two entries each) and the families
split (two or more clusters with at least two of its entries each). For the 2D
map itself, ``map_neighbours_same_family``: the mean share of an entry's 10
nearest labelled neighbours on the map that are of its family.

Held out means held out: the method is chosen on one demo seed (``--select-seed``,
by the adjusted Rand index, among the methods that stay bounded at 50,000
entries: see ``SCALES_TO_50K``) and reported on another (``--report-seed``), in
the same run. ``in_layout`` compares, on both seeds, the method before with what
:func:`swan_index.layout.compute_layout` does now (its clusters, its map, the
composition of every cluster, and the entries it leaves out of their family's
cluster with their resolution and candidate poses: ``outliers``). Every candidate
is also scored on the held-out seed (``held_out_all_candidates``), for reference
only: the choice is made on the selection seed.

``scale``: the time and peak memory of
:func:`swan_index.layout.cluster_features` on ``--scale-entries`` (50,000)
generated rows as wide as the features (clustered unit vectors plus a size
column), in a child process whose address space is capped at 8 GiB.

The stores are built under ``--cache`` (kept: a second run reuses them).

    $ python -m benchmarks.bench_clusters [--select-seed 0] [--report-seed 1] \\
          [--cache /tmp/bench_clusters]
"""

from __future__ import annotations

import argparse
import logging
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import RunRecord, add_out_argument, machine_info, save_result
from swan_index import layout

log = logging.getLogger(__name__)

#: Clustering methods that stay bounded at 50,000 entries: no N x N distance
#: matrix in memory, and HDBSCAN only on a few dimensions, where its tree works
#: (on the 217 dimensions of the vectors it degenerates to a brute search: about
#: 260 s at 16,000 entries on 2 cores, and growing faster than N^2). HDBSCAN on
#: the whole vectors and agglomerative clustering (an N x N matrix) are measured
#: for reference only.
SCALES_TO_50K = (
    "umap2d+hdbscan",
    "umap10d+hdbscan",
    "pca32+hdbscan",
    "kmeans(silhouette)",
)


# -- the store's vectors and labels -------------------------------------------------
def load_demo(path: Path) -> dict[str, Any]:
    """Vectors per scale, log rg and labels of every entry of a demo store."""
    from swan_index.store import Store

    with Store.open(path, read_only=True) as store:
        scales = store.encoder.scales
        vectors = {}
        for side in scales:
            ids, vecs = store.vectors(side)
            vectors[side] = vecs
        table = store.entries(("id", "label", "rg", "title", "resolution", "n_poses"))
    if not np.array_equal(np.ma.getdata(table["id"]), ids):
        raise RuntimeError(f"{path}: entries and vectors out of step; rebuild it")
    labels = np.array(
        ["" if v is np.ma.masked or v is None else str(v) for v in table["label"]],
        dtype=object,
    )
    rg = np.ma.filled(np.ma.asarray(table["rg"], np.float64), np.nan)
    entries = [
        {
            "title": None if t is np.ma.masked else t,
            "resolution": None if r is np.ma.masked else round(float(r), 2),
            "n_poses": int(p),
        }
        for t, r, p in zip(
            table["title"], table["resolution"], table["n_poses"], strict=True
        )
    ]
    return {
        "scales": scales,
        "vectors": vectors,
        "rg": rg,
        "labels": labels,
        "entries": entries,
    }


# -- the candidates -----------------------------------------------------------------
def vectors_of(data: dict[str, Any], which: str) -> np.ndarray:
    """The candidate's vectors (see the module docs for the names).

    Args:
        data: from :func:`load_demo`.
        which: ``all``, ``coarse``, ``fine`` or ``finest``, then optionally
            ``+white`` and ``+size``.

    Returns:
        float32 ``[N, d]``.
    """
    scales = data["scales"]
    base = which.split("+")[0]
    chosen = {
        "all": scales,
        "coarse": scales[:2],
        "fine": scales[-2:],
        "finest": scales[-1:],
    }[base]
    feats = layout.layout_features([data["vectors"][s] for s in chosen])
    if "+white" in which:
        from sklearn.decomposition import PCA

        k = min(32, feats.shape[1], len(feats) - 1)
        feats = PCA(k, whiten=True, random_state=0).fit_transform(feats)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    if "+size" in which:
        feats = np.hstack([feats, layout.SIZE_WEIGHT * layout.size_feature(data["rg"])])
    return np.asarray(feats, np.float32)


def _umap(x: np.ndarray, dims: int, min_dist: float, seed: int) -> np.ndarray:
    import umap

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        reducer = umap.UMAP(
            n_components=dims,
            n_neighbors=15,
            min_dist=min_dist,
            metric="euclidean",
            random_state=seed,
        )
        return np.asarray(reducer.fit_transform(x), np.float64)


def _by_silhouette(x: np.ndarray, make: Callable[[int], Any]) -> np.ndarray:
    """Labels of the ``k`` (2 .. min(60, N/3)) with the best silhouette score."""
    from sklearn.metrics import silhouette_score

    best: tuple[float, np.ndarray] | None = None
    for k in range(2, max(3, min(60, len(x) // 3) + 1)):
        labels = make(k).fit_predict(x)
        score = float(silhouette_score(x, labels))
        if best is None or score > best[0]:
            best = (score, labels)
    assert best is not None
    return best[1]


def cluster_with(x: np.ndarray, how: str, seed: int = 0) -> np.ndarray:
    """Cluster the vectors ``x`` ``[N, d]`` by method ``how``.

    Args:
        x: the candidate's vectors.
        how: one of :data:`CLUSTERINGS`.
        seed: UMAP's and k-means' random state.

    Returns:
        int ``[N]`` cluster labels, -1 for noise.

    Raises:
        ValueError: an unknown ``how``.
    """
    from sklearn.cluster import AgglomerativeClustering, KMeans

    if how == "umap2d+hdbscan":
        return layout.cluster_points(_umap(x, 2, 0.1, seed))
    if how == "umap10d+hdbscan":
        return layout.cluster_points(_umap(x, 10, 0.0, seed))
    if how == "pca32+hdbscan":
        return layout.cluster_features(x)
    if how == "hdbscan":
        return layout.cluster_points(x)
    if how == "kmeans(silhouette)":
        return _by_silhouette(x, lambda k: KMeans(k, n_init=4, random_state=seed))
    if how == "average-linkage(silhouette)":
        return _by_silhouette(
            x, lambda k: AgglomerativeClustering(k, linkage="average")
        )
    raise ValueError(f"unknown clustering {how!r}")


VECTORS = (
    "all",
    "coarse",
    "fine",
    "finest",
    "all+white",
    "fine+white",
    "all+size",
    "fine+size",
    "finest+size",
)
CLUSTERINGS = (
    "umap2d+hdbscan",
    "umap10d+hdbscan",
    "pca32+hdbscan",
    "hdbscan",
    "kmeans(silhouette)",
    "average-linkage(silhouette)",
)


# -- scores -------------------------------------------------------------------------
def scores(labels: np.ndarray, cluster: np.ndarray) -> dict[str, Any]:
    """Purity, ARI, NMI and the mixing/splitting counts over labelled entries.

    Args:
        labels: family per entry ``[N]`` (``""``: unlabelled, not scored).
        cluster: cluster per entry ``[N]`` (-1: noise).

    Returns:
        ``purity``, ``ari``, ``nmi``, ``noise`` (share), ``clusters``,
        ``clusters_mixing_families``, ``families_split`` (see the module docs).
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    keep = labels != ""
    y, c = labels[keep], np.asarray(cluster)[keep]
    singletons = c.copy()
    noise = np.flatnonzero(c < 0)
    singletons[noise] = c.max(initial=0) + 1 + np.arange(len(noise))
    pure = sum(Counter(y[c == k]).most_common(1)[0][1] for k in set(c[c >= 0]))
    mixing = [
        k
        for k in sorted(set(c[c >= 0]))
        if sum(n >= 2 for n in Counter(y[c == k]).values()) >= 2
    ]
    split = [
        f
        for f in sorted(set(y))
        if sum(n >= 2 for n in Counter(c[(y == f) & (c >= 0)]).values()) >= 2
    ]
    return {
        "purity": round(pure / len(y), 4),
        "ari": round(float(adjusted_rand_score(y, singletons)), 4),
        "nmi": round(float(normalized_mutual_info_score(y, singletons)), 4),
        "noise": round(float(np.mean(c < 0)), 4),
        "clusters": int(len(set(cluster[cluster >= 0]))),
        "clusters_mixing_families": len(mixing),
        "families_split": len(split),
    }


def composition(labels: np.ndarray, cluster: np.ndarray) -> dict[str, Any]:
    """Per cluster, its families and counts; per family, its clusters."""
    by_cluster = {
        str(k): dict(Counter(str(v) or "(real map)" for v in labels[cluster == k]))
        for k in sorted(set(cluster.tolist()))
    }
    by_family = {
        f: dict(Counter(str(k) for k in cluster[labels == f]))
        for f in sorted(set(labels.tolist()) - {""})
    }
    return {"clusters": by_cluster, "families": by_family}


# -- the run ------------------------------------------------------------------------
def demo_store(cache: Path, seed: int) -> Path:
    """The demo store of ``seed`` under ``cache`` (built when missing)."""
    from dashboard.demo import DemoConfig, build_demo_store
    from swan_index.map_encoder import MapEncoder

    return build_demo_store(
        cache / f"demo-seed{seed}", MapEncoder(), DemoConfig(seed=seed), False
    )


def before_layout(data: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The map and clusters as :func:`swan_index.layout.compute_layout` made them
    before this benchmark: all scales, UMAP (cosine, ``min_dist`` 0.1) to 2D,
    HDBSCAN on the 2D points."""
    import umap

    feats = layout.layout_features([data["vectors"][s] for s in data["scales"]])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=15,
            metric="cosine",
            min_dist=0.1,
            random_state=0,
        )
        xy = np.asarray(reducer.fit_transform(feats), np.float64)
    return xy, layout.cluster_points(xy)


def outliers(data: dict[str, Any], cluster: np.ndarray) -> list[dict[str, Any]]:
    """Labelled entries left as noise or outside their family's main cluster."""
    labels = data["labels"]
    out = []
    for family in sorted(set(labels.tolist()) - {""}):
        rows = np.flatnonzero(labels == family)
        found = cluster[rows][cluster[rows] >= 0]
        main = Counter(found.tolist()).most_common(1)[0][0] if len(found) else None
        for i in rows:
            if cluster[i] < 0 or cluster[i] != main:
                out.append(
                    {"family": family, "cluster": int(cluster[i]), **data["entries"][i]}
                )
    return out


def map_neighbours(xy: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Over labelled entries, the mean share of their ``k`` nearest labelled
    neighbours on the 2D map that are of their family."""
    from sklearn.neighbors import NearestNeighbors

    keep = labels != ""
    pts, y = xy[keep], labels[keep]
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(pts).kneighbors(pts)
    return round(float(np.mean(y[idx[:, 1:]] == y[:, None])), 4)


def evaluate(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every candidate's scores on one store, the method before first."""
    xy, cluster = before_layout(data)
    rows = [
        {
            "vectors": "all",
            "clustering": "before: umap2d(cosine)+hdbscan",
            **scores(data["labels"], cluster),
            "scales_to_50k": True,
        }
    ]
    for which in VECTORS:
        x = vectors_of(data, which)
        for how in CLUSTERINGS:
            cluster = cluster_with(x, how, 0)
            row = {"vectors": which, "clustering": how}
            row.update(scores(data["labels"], cluster))
            row["scales_to_50k"] = how in SCALES_TO_50K
            rows.append(row)
            log.info("%s", row)
    return rows


def in_layout(data: dict[str, Any]) -> dict[str, Any]:
    """The method before and :func:`~swan_index.layout.compute_layout` now: their
    clusters' scores and composition, and how well the 2D map keeps families."""
    out = {}
    ids = np.arange(len(data["labels"]))
    vectors = [data["vectors"][s] for s in data["scales"]]
    for name, (xy, cluster) in {
        "before": before_layout(data),
        "now": layout.compute_layout(ids, vectors, sizes=data["rg"]),
    }.items():
        out[name] = {
            **scores(data["labels"], cluster),
            "map_neighbours_same_family": map_neighbours(xy, data["labels"]),
            "composition": composition(data["labels"], cluster),
            "outliers": outliers(data, cluster),
        }
    return out


def _scale_child(n: int, dims: int, queue: Any) -> None:
    """In a child process: cluster ``n`` generated rows; put (seconds, peak MiB,
    clusters) on ``queue``."""
    import resource
    import time

    cap = 8 * 2**30
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(max(2, n // 300), dims - 1))
    x = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.normal(size=(n, dims - 1))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    feats = np.hstack([x, 0.5 * rng.normal(size=(n, 1))]).astype(np.float32)
    t0 = time.perf_counter()
    cluster = layout.cluster_features(feats)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((seconds, peak, int(cluster.max(initial=-1)) + 1))


def scale_check(n: int, dims: int) -> dict[str, Any]:
    """Time and peak memory of the chosen clustering on ``n`` generated rows."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_scale_child, args=(n, dims, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        return {"entries": n, "dims": dims, "error": f"exit code {proc.exitcode}"}
    seconds, peak, clusters = queue.get()
    return {
        "entries": n,
        "dims": dims,
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(peak),
        "address_space_cap_gib": 8,
        "clusters": clusters,
        "note": "generated vectors (clustered), not codes; timing of a shared machine",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Score the candidates on the selection seed, pick one, report on another."""
    record = RunRecord()
    cache = Path(args.cache)
    seeds = (args.select_seed, args.report_seed)
    data = {s: load_demo(demo_store(cache, s)) for s in seeds}
    selection = evaluate(data[args.select_seed])
    record.mark("selected")
    eligible = [r for r in selection if r["scales_to_50k"]]
    best = max(eligible, key=lambda r: (r["ari"], r["nmi"]))
    result: dict[str, Any] = {
        "benchmark": "clusters of the archive map against the demo's families",
        "note": "labels are the demo's simulated families; real maps are unscored",
        "select_seed": args.select_seed,
        "report_seed": args.report_seed,
        "entries": {str(s): int(len(d["labels"])) for s, d in data.items()},
        "labelled": {str(s): int(np.sum(d["labels"] != "")) for s, d in data.items()},
        "rule": "highest ARI (then NMI) on the selection seed among scales_to_50k",
        "chosen_on_select_seed": {
            "vectors": best["vectors"],
            "clustering": best["clustering"],
        },
        "layout_now": {
            "map_scales": layout.MAP_SCALES,
            "size_weight": layout.SIZE_WEIGHT,
            "cluster_dims": layout.CLUSTER_DIMS,
        },
        "selection": selection,
        "in_layout": {str(s): in_layout(d) for s, d in data.items()},
    }
    if args.report_all:
        result["held_out_all_candidates"] = evaluate(data[args.report_seed])
    if args.scale_entries:
        width = layout.map_features(
            [
                data[args.select_seed]["vectors"][s]
                for s in data[args.select_seed]["scales"]
            ],
            data[args.select_seed]["rg"],
        ).shape[1]
        result["scale"] = scale_check(args.scale_entries, width)
    result["machine"] = machine_info(**_versions())
    result["run"] = record.finish()
    return result


def _versions() -> dict[str, str]:
    import sklearn
    import umap

    return {"scikit-learn": sklearn.__version__, "umap-learn": umap.__version__}


def _table(rows: list[dict[str, Any]]) -> None:
    print("vectors      clustering                      purity  ARI    NMI    noise  k")
    for r in rows:
        mark = "" if r["scales_to_50k"] else "  (reference)"
        print(
            f"{r['vectors']:12s} {r['clustering']:31s} {r['purity']:.3f}  "
            f"{r['ari']:.3f}  {r['nmi']:.3f}  {r['noise']:.2f}  {r['clusters']:2d}"
            f"{mark}"
        )


def print_table(result: dict[str, Any]) -> None:
    """The selection table, the choice, then before and now on both seeds."""
    print(f"selection on demo seed {result['select_seed']} (labelled entries)")
    _table(result["selection"])
    chosen = result["chosen_on_select_seed"]
    print(f"\nchosen: {chosen['vectors']}, {chosen['clustering']}")
    for seed, both in result["in_layout"].items():
        role = "held out" if int(seed) == result["report_seed"] else "selection"
        for name, r in both.items():
            print(
                f"  seed {seed} ({role:9s}) {name:6s} purity {r['purity']:.3f}  "
                f"ARI {r['ari']:.3f}  NMI {r['nmi']:.3f}  noise {r['noise']:.2f}  "
                f"clusters {r['clusters']:2d}  mixing {r['clusters_mixing_families']}"
                f"  split {r['families_split']}  "
                f"map kNN {r['map_neighbours_same_family']:.3f}"
            )
    if "scale" in result:
        sc = result["scale"]
        print(
            f"\ncluster_features on {sc['entries']} generated rows x {sc['dims']}: "
            + (
                sc["error"]
                if "error" in sc
                else f"{sc['seconds']} s, peak {sc['peak_rss_mib']} MiB"
            )
        )
    if "held_out_all_candidates" in result:
        print(f"\nevery candidate on the held-out seed {result['report_seed']}")
        _table(result["held_out_all_candidates"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; save and return the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--select-seed", type=int, default=0)
    parser.add_argument("--report-seed", type=int, default=1)
    parser.add_argument("--cache", default="/tmp/bench_clusters")
    parser.add_argument(
        "--no-report-all",
        dest="report_all",
        action="store_false",
        help="skip scoring every candidate on the held-out seed",
    )
    parser.add_argument(
        "--scale-entries",
        type=int,
        default=50_000,
        help="rows of the clustering scale check (0: skip it)",
    )
    add_out_argument(parser, "bench_clusters.json")
    args = parser.parse_args(argv)
    if args.select_seed == args.report_seed:
        parser.error("--select-seed and --report-seed must differ (held out)")
    return save_result(run(args), args.out, print_table)


if __name__ == "__main__":
    main()
