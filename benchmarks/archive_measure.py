"""What :mod:`benchmarks.bench_archive` measures: the first stage's latency,
distances and recalls (interleaved across indexes), the exact baseline, an
index file read in a fresh process, and the second stage on a real store."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from benchmarks.common import ROOT
from benchmarks.search_measure import rss_mb
from swan_index.ranking import coarse_candidates
from swan_index.shards import merge_top

#: Hits wanted per query (recall@K).
K = 10


class TopK:
    """Running top ``k`` per query row over batches of scores."""

    def __init__(self, rows: int, k: int) -> None:
        self.k = k
        self.scores = np.full((rows, k), -np.inf)
        self.ids = np.full((rows, k), -1, np.int64)

    def add(self, scores: np.ndarray, first_id: int) -> None:
        """Scores ``[rows, b]`` of entries ``first_id ... first_id + b - 1``."""
        kk = min(self.k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        top = np.take_along_axis(scores, part, axis=1)
        self.scores, self.ids = merge_top(
            [self.scores, top], [self.ids, part + first_id], self.k
        )


# -- measuring a first stage ----------------------------------------------------------
def timed(
    indexes: dict[str, Any], q: np.ndarray, args: argparse.Namespace
) -> dict[str, dict[str, list]]:
    """The first stage (:func:`coarse_candidates`) of each of ``indexes`` on each
    query, one query at a time, the indexes interleaved query by query (so that
    the load of a shared machine falls on them alike): per index, ms, distances
    computed and candidates per query."""
    stats = faiss.cvar.indexIVF_stats
    out = {name: {"ms": [], "ndis": [], "cands": []} for name in indexes}
    for index in indexes.values():  # warm
        coarse_candidates(index, q[:1], args.candidates, K, None, args.nprobe)
    for j in range(len(q)):
        for name, index in indexes.items():
            stats.reset()
            t0 = time.perf_counter()
            cand = coarse_candidates(
                index, q[j : j + 1], args.candidates, K, None, args.nprobe
            )
            out[name]["ms"].append(1000 * (time.perf_counter() - t0))
            out[name]["ndis"].append(stats.ndis)
            out[name]["cands"].append(cand)
    return out


def summary(
    index: Any, q: np.ndarray, run: dict[str, list], truth: dict[str, np.ndarray], args
) -> dict[str, Any]:
    """Latency, distances and recalls of one index's :func:`timed` run."""
    _, top = index.search(q, K, None, args.nprobe)
    joint_recall = [
        len(np.intersect1d(a, b)) / K for a, b in zip(top, truth["joint"], strict=True)
    ]
    shape_found = np.array(
        [
            len(np.intersect1d(c, t)) / K
            for c, t in zip(run["cands"], truth["shape"], strict=True)
        ]
    )
    ms = np.array(run["ms"])
    return {
        "queries": len(q),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "mean_ms": float(ms.mean()),
        "distances_per_query": float(np.mean(run["ndis"])),
        "joint_recall_at_10": float(np.mean(joint_recall)),
        "shape_top10_in_candidates": float(shape_found.mean()),
        "queries_with_all_shape_top10": int(np.sum(shape_found == 1.0)),
    }


def first_stage(
    index: Any,
    q: np.ndarray,
    truth: dict[str, np.ndarray],
    args: argparse.Namespace,
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Latency (one query at a time), distances computed, recalls of ``index``
    (a :class:`JointIndex` or :class:`ShardedJoint`); also the candidates."""
    run = timed({"index": index}, q, args)["index"]
    return summary(index, q, run, truth, args), run["cands"]


def tied_at_boundary(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
) -> bool:
    """Whether two top-``n`` answers ``(scores, ids)`` ``[1, n]`` differ only
    by entries tied with the last score kept (which of tied entries a top
    ``n`` keeps is arbitrary)."""
    (sa, ia), (sb, ib) = (
        (np.ravel(a[0]), np.ravel(a[1])),
        (np.ravel(b[0]), np.ravel(b[1])),
    )
    for s, i, other in ((sa, ia, ib), (sb, ib, ia)):
        extra = ~np.isin(i, other)
        if extra.any() and not np.allclose(s[extra], s[-1], rtol=0, atol=1e-6):
            return False
    return True


def exact_baseline(y: np.ndarray, n: int, q: np.ndarray, repeats: int) -> dict:
    """Exact search over the first ``n`` projected vectors, one query at a time
    (chunks of 1M rows read from the file): ms per query."""
    seconds = []
    for j in range(repeats):
        t0 = time.perf_counter()
        best = TopK(1, K)
        for a in range(0, n, 1_000_000):
            b = min(n, a + 1_000_000)
            best.add(q[j : j + 1] @ np.asarray(y[a:b]).T, a)
        seconds.append(time.perf_counter() - t0)
    ms = 1000 * np.array(seconds)
    return {
        "queries": repeats,
        "p50_ms": float(np.median(ms)),
        "max_ms": float(ms.max()),
    }


def probe_read(path: Path, queries: Path, mmap: bool, nprobe: int, n: int) -> dict:
    """Run in a fresh process: memory of reading an index file (in memory, with
    the hash-table direct map a store keeps; or memory-mapped), and search
    latency with it (first pass over the queries, then a second)."""
    before = rss_mb()["VmRSS"]
    t0 = time.perf_counter()
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    index = faiss.read_index(str(path), flags)
    t_open = time.perf_counter() - t0
    opened = rss_mb()["VmRSS"]
    if not mmap:
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
    ready = rss_mb()["VmRSS"]
    q = np.load(queries)
    params = faiss.SearchParametersIVF(nprobe=nprobe)
    passes = []
    for _ in range(2):
        ms = []
        for j in range(len(q)):
            t0 = time.perf_counter()
            index.search(q[j : j + 1], n, params=params)
            ms.append(1000 * (time.perf_counter() - t0))
        passes.append(
            {"p50_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95))}
        )
    after = rss_mb()
    return {
        "mmap": mmap,
        "open_s": t_open,
        "rss_open_mb": opened - before,
        "rss_with_direct_map_mb": ready - before,
        "rss_after_search_mb": after["VmRSS"] - before,
        "first_pass": passes[0],
        "second_pass": passes[1],
        "inverted_lists": type(faiss.downcast_InvertedLists(index.invlists)).__name__,
    }


def fresh_read(path: Path, queries: Path, mmap: bool, args: argparse.Namespace) -> dict:
    """:func:`probe_read` in a fresh process."""
    cmd = [sys.executable, "-m", "benchmarks.bench_archive", "--probe-read", str(path)]
    cmd += ["--probe-queries", str(queries), "--nprobe", str(args.nprobe)]
    cmd += ["--candidates", str(args.candidates)] + (["--probe-mmap"] if mmap else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run(
        cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the run ------------------------------------------------------------------------
def code_bytes(index: faiss.Index) -> int:
    """Bytes a stored vector of ``index`` takes (its codes; an id map's inner
    index's)."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
        index = faiss.downcast_index(index.index)
    return int(index.code_size)


def second_stage(
    args: argparse.Namespace, base: dict[str, Any], pool: list[np.ndarray], info: Any
) -> dict[str, Any]:
    """A real store of ``--second-stage-entries`` SYNTHETIC mixtures: per query,
    the first stage, the candidates' per-scale vectors fetched and scored, the
    hits' metadata; bytes touched; the store's bytes per entry."""
    from benchmarks.search_data import METADATA_CSV, build, load_metadata, make_queries
    from benchmarks.search_measure import memory
    from swan_index.ranking import SearchOptions
    from swan_index.store import Store

    ns = argparse.Namespace(**{**vars(args), "entries": args.second_stage_entries})
    ns.queries = min(args.queries, len(base["rg"]))
    path = args.work / "store"
    t0 = time.perf_counter()
    build(path, base, load_metadata(METADATA_CSV), ns, info, pool)
    build_s = time.perf_counter() - t0
    mem = memory(path, sum(info.dims), 1)
    store = Store.open(path, read_only=True)
    opts = SearchOptions(fit_top=0)
    sel, weights = opts.scale_weights(store.encoder.scales)
    scale_bytes = [code_bytes(store._indexes.indexes[i].index) for i in sel]
    rows: dict[str, list[float]] = {k: [] for k in ("first", "fetch", "rank", "hits")}
    n_cand = []
    for code, rg, _ in make_queries(base, ns, info, pool):
        qv, _ = store._query_vectors(code)
        t0 = time.perf_counter()
        cand = store._joint_candidates(qv, sel, weights, K, None, opts, rg)
        t1 = time.perf_counter()
        vecs = [store._indexes.lookup(i, cand) for i in sel]
        t2 = time.perf_counter()
        ranking = store.rank(code, K, opts, rg)
        t3 = time.perf_counter()
        store.hits(ranking)
        t4 = time.perf_counter()
        del vecs
        for key, dt in zip(rows, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            rows[key].append(1000 * dt)
        n_cand.append(len(cand))
    store.close()
    ms = {f"{k}_p50_ms": float(np.median(v)) for k, v in rows.items()}
    ms["second_stage_p50_ms"] = float(
        np.median(np.subtract(rows["rank"], rows["first"]))
    )
    cand_mean = float(np.mean(n_cand))
    out = {
        "entries": args.second_stage_entries,
        "build_s": build_s,
        "queries": len(n_cand),
        "candidates_mean": cand_mean,
        "vector_bytes_per_candidate": scale_bytes,
        "bytes_touched_per_query": {
            "vectors": cand_mean * sum(scale_bytes),
            "rg": cand_mean * 8,
            "metadata_rows": K,
        },
        **ms,
        "store": {k: v for k, v in mem.items() if k not in ("probes", "open_profile")},
    }
    if not args.keep_work:
        shutil.rmtree(path, ignore_errors=True)
    return out
