"""The search benchmark's measurements: searches against ``exact``, the store's
size on disk, a reader's memory and open time (in a fresh process), profiles.

See :mod:`benchmarks.bench_search` for what is measured and how.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT
from encoder.code import MultiScaleCode
from swan_index.ranking import SearchOptions
from swan_index.store import Store

FILTERS = {
    "broad": "resolution < 4 AND method = 'singleParticle'",
    "selective": "resolution < 3 AND release_date >= DATE '2021-01-01'",
}
#: A query: its code, its rg and the index of the base it perturbs.
QueryCase = tuple[MultiScaleCode, float, int]


@contextlib.contextmanager
def thread_limit(threads: str) -> Iterator[dict[str, int]]:
    """Limit BLAS and OpenMP thread pools (``"default"``: leave them); yields the
    pools' sizes. Uses threadpoolctl (scikit-learn's dependency) when installed,
    else limits FAISS's OpenMP only."""
    import faiss

    limits = None if threads == "default" else int(threads)
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        before = faiss.omp_get_max_threads()
        if limits:
            faiss.omp_set_num_threads(limits)
        try:
            yield {"faiss_openmp": faiss.omp_get_max_threads()}
        finally:
            faiss.omp_set_num_threads(before)
        return
    with threadpool_limits(limits=limits):
        yield {
            f"{p['internal_api']}:{p['prefix']}": p["num_threads"]
            for p in threadpool_info()
        }


def top_functions(profile: cProfile.Profile, n: int) -> list[str]:
    """The ``n`` functions with the most cumulative time, one line each."""
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    rows = []
    table = stats.stats  # type: ignore[attr-defined]
    for func, (_cc, nc, tt, ct, _callers) in table.items():
        rows.append((ct, tt, nc, func))
    rows.sort(reverse=True)
    return [
        f"{ct:8.3f} s cum {tt:8.3f} s self {nc:7d} calls "
        f"{Path(f[0]).name}:{f[1]}({f[2]})"
        for ct, tt, nc, f in rows[:n]
    ]


# -- disk, memory, open -------------------------------------------------------------
def rss_mb() -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon (the process's own memory) and RssFile (pages of
    mapped files, the store's vectors among them) of this process, MB."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1024
    return out


def index_files(path: Path) -> list[Path]:
    """The store's vector files: per scale (or, in the previous format, FAISS
    files) and the joint index."""
    folder = path / "faiss"
    return [
        *folder.glob("*.vectors"),
        *folder.glob("*.index"),
        *folder.glob("joint.*"),
    ]


def evict(path: Path) -> None:
    """Drop the store's files from the page cache (``posix_fadvise``
    DONTNEED: pages no process maps go), so that what follows reads them from
    disk."""
    for f in [path / "swan.duckdb", *index_files(path)]:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def disk_bytes(path: Path) -> dict[str, int]:
    """Bytes of each file of the store at ``path`` (its FAISS indexes included)."""
    files = [p for p in path.iterdir() if p.is_file()]
    files += sorted(index_files(path))
    return {p.name: p.stat().st_size for p in files}


def probe_open(
    path: Path, profile: bool = False, cold: bool = False, searches: int = 0
) -> dict[str, Any]:
    """Run in a fresh process: memory and time of a read-only open (and of reading
    the index files' bytes, the floor of any open); with ``profile``, where the
    open's time goes; with ``cold``, the store's files dropped from the page
    cache first; with ``searches``, that many searches by a stored entry (with
    its rg, default options) timed one by one, then one ``exact=True`` search,
    and the memory after each."""
    if cold:
        evict(path)
    before = rss_mb()
    prof = cProfile.Profile()
    if profile:
        prof.enable()
    t0 = time.perf_counter()
    store = Store.open(path, read_only=True)
    t_open = time.perf_counter() - t0
    prof.disable()
    after = rss_mb()
    n = store.count()
    out: dict[str, Any] = {}
    if searches:
        ids = np.random.default_rng(0).choice(store.ids, searches, replace=False)
        lat = []
        for i in ids:
            t0 = time.perf_counter()
            store.search(int(i), 10)
            lat.append(time.perf_counter() - t0)
        out["search_ms"] = [1e3 * t for t in lat]
        out["rss_after_searches_mb"] = rss_mb()
        t0 = time.perf_counter()
        store.search(int(ids[0]), 10, SearchOptions(exact=True))
        out["exact_ms"] = 1e3 * (time.perf_counter() - t0)
        out["rss_after_exact_mb"] = rss_mb()
    store.close()
    del store
    gc.collect()
    t0 = time.perf_counter()
    nbytes = 0
    for f in sorted(index_files(path)):
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 24):
                nbytes += len(chunk)
    t_bytes = time.perf_counter() - t0
    return {
        "entries": n,
        "cold": cold,
        "open_s": t_open,
        "rss_before_mb": before["VmRSS"],
        "rss_after_mb": after["VmRSS"],
        "anon_before_mb": before["RssAnon"],
        "anon_after_mb": after["RssAnon"],
        "file_after_mb": after["RssFile"],
        "hwm_after_mb": after["VmHWM"],
        "read_index_bytes_s": t_bytes,
        "index_bytes": nbytes,
        "profile_top": top_functions(prof, 15) if profile else [],
        **out,
    }


def fresh_probe(
    path: Path, profile: bool = False, cold: bool = False, searches: int = 0
) -> dict[str, Any]:
    """:func:`probe_open` in a fresh process (``bench_search --probe-open``)."""
    extra = ["--probe-profile"] if profile else []
    extra += ["--probe-cold"] if cold else []
    extra += ["--probe-searches", str(searches)]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_search",
            "--probe-open",
            str(path),
            *extra,
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory(
    path: Path, vector_floats: int, probes: int, searches: int = 20
) -> dict[str, Any]:
    """The store's bytes on disk (per entry), and ``probes`` fresh-process opens:
    a reader's memory per entry and the open time (and one open profiled), each
    followed by ``searches`` searches and one exact search, with the memory after
    them (see :func:`probe_open`)."""
    disk = disk_bytes(path)
    runs = [fresh_probe(path, searches=searches) for _ in range(probes)]
    n = runs[0]["entries"]
    rss = statistics.median(p["rss_after_mb"] - p["rss_before_mb"] for p in runs)
    anon = statistics.median(p["anon_after_mb"] - p["anon_before_mb"] for p in runs)
    per = 2**20 / n
    warm = runs[-1]
    out = {
        "disk_bytes": disk,
        "disk_bytes_per_entry": sum(disk.values()) / n,
        "duckdb_bytes_per_entry": disk.get("swan.duckdb", 0) / n,
        "faiss_bytes_per_entry": sum(
            v
            for k, v in disk.items()
            if k.endswith((".index", ".npz", ".ivf", ".vectors"))
        )
        / n,
        "vector_bytes_per_entry_float32": 4 * vector_floats,
        "reader_rss_delta_mb": rss,
        "reader_rss_bytes_per_entry": rss * per,
        "reader_anon_bytes_per_entry": anon * per,
        "reader_anon_bytes_per_entry_after_searches": (
            warm["rss_after_searches_mb"]["RssAnon"] - warm["anon_before_mb"]
        )
        * per,
        "reader_file_bytes_per_entry_after_searches": (
            warm["rss_after_searches_mb"]["RssFile"] * per
        ),
        "reader_anon_bytes_per_entry_after_exact": (
            warm["rss_after_exact_mb"]["RssAnon"] - warm["anon_before_mb"]
        )
        * per,
        "reader_file_bytes_per_entry_after_exact": (
            warm["rss_after_exact_mb"]["RssFile"] * per
        ),
        "searches_after_open_ms_median_warm": statistics.median(warm["search_ms"]),
        "exact_after_open_ms_warm": warm["exact_ms"],
        "open_s": [p["open_s"] for p in runs],
        "open_s_median": statistics.median(p["open_s"] for p in runs),
        "read_index_bytes_s_median": statistics.median(
            p["read_index_bytes_s"] for p in runs
        ),
        "probes": runs,
        "open_profile": fresh_probe(path, profile=True),
    }
    out["open_over_read_index_bytes"] = (
        out["open_s_median"] / out["read_index_bytes_s_median"]
    )
    return out


def cold_start(path: Path, searches: int = 20) -> dict[str, Any]:
    """One fresh-process open after dropping the store's files from the page
    cache: the open, its first ``searches`` searches and one exact search, all
    reading from disk what they need (run last: it leaves the cache cold)."""
    cold = fresh_probe(path, cold=True, searches=searches)
    return {
        "open_s_cold": cold["open_s"],
        "searches_ms_cold": cold["search_ms"],
        "searches_ms_median_cold": statistics.median(cold["search_ms"]),
        "exact_ms_cold": cold["exact_ms"],
        "probe": cold,
    }


# -- searches -----------------------------------------------------------------------
def summarise(
    lat: list[float],
    ids: list[list[int]],
    scores: list[list[float]],
    truth_ids: list[list[int]] | None,
    truth_scores: list[list[float]] | None,
    first: float,
    same_base: list[float],
    kinds: list[str],
) -> dict[str, Any]:
    """Latency, throughput and recall@10 of one mode (``truth``: exact's hits)."""
    arr = np.asarray(lat)
    out: dict[str, Any] = {
        "queries": len(lat),
        "qps": len(lat) / float(arr.sum()),
        "p50_ms": float(np.percentile(arr, 50) * 1e3),
        "p95_ms": float(np.percentile(arr, 95) * 1e3),
        "mean_ms": float(arr.mean() * 1e3),
        "first_query_ms": first * 1e3,
        "hits_per_query_mean": float(np.mean([len(i) for i in ids])),
        "same_base_at_10": float(np.mean(same_base)),
    }
    if truth_ids is not None and truth_scores is not None:
        rec = [
            len(set(a) & set(t)) / max(len(t), 1)
            for a, t in zip(ids, truth_ids, strict=True)
        ]
        gap = [
            (t[-1] - a[-1]) if a and t else 0.0
            for a, t in zip(scores, truth_scores, strict=True)
        ]
        out["recall_at_10"] = float(np.mean(rec))
        out["recall_at_10_min"] = float(np.min(rec))
        out["queries_recall_1"] = float(np.mean(np.asarray(rec) == 1.0))
        out["tenth_score_gap_mean"] = float(np.mean(gap))
        out["recall_at_10_by_query_base_kind"] = {
            k: float(np.mean([r for r, q in zip(rec, kinds, strict=True) if q == k]))
            for k in sorted(set(kinds))
        }
    return out


def query_sets(
    args: argparse.Namespace, nlist: int
) -> list[tuple[str, str | None, bool, list[tuple[str, dict[str, Any]]], int]]:
    """``(name, where, with rg, modes, queries)``; the first mode is ``exact``."""
    exact = ("exact", {"exact": True})
    main = [exact]
    for p in sorted({p for p in args.nprobe if not nlist or p < nlist}):
        main.append((f"c2f nprobe={p}", {"nprobe": p}))
    if nlist:
        main.append((f"c2f nprobe={nlist} (all lists)", {"nprobe": nlist}))
    for c in args.candidates:
        main.append(
            (f"c2f candidates={c}", {"overfetch": c // 10, "min_candidates": c})
        )
    for f in args.prune_factors:
        main.append((f"c2f prune factor={f}", {"prune_factor": f}))
    before = (
        "coarse scale only, 2000 candidates (before the joint index)",
        {"overfetch": 200, "min_candidates": 2000, "joint": False},
    )
    if nlist and args.before:
        main.append(before)
    shape_only = [exact, ("c2f (defaults)", {})] + [
        (f"c2f candidates={c}", {"overfetch": c // 10, "min_candidates": c})
        for c in args.candidates
    ]
    filtered = [exact, ("c2f (defaults)", {})] + [
        (f"c2f nprobe={p}", {"nprobe": p}) for p in args.filter_nprobe
    ]
    if nlist and args.before:
        shape_only.append(before)
    sets = [
        ("all", None, True, main, args.queries),
        ("all, no rg", None, False, shape_only, args.queries),
    ]
    for name, where in FILTERS.items():
        sets.append((name, where, True, filtered, args.filtered_queries))
    return sets


def search_all(
    path: Path,
    queries: list[QueryCase],
    order: np.ndarray,
    kind_of: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Every thread setting, query set and mode, against ``exact`` on the same
    queries (see :func:`run_set`)."""
    store = Store.open(path, read_only=True)
    coarse = store.index_info()[0]
    joint = store.joint_info()
    nlist = (joint or coarse)["nlist"]
    results: dict[str, Any] = {
        "entries": store.count(),
        "coarse_index": coarse,
        "joint_index": joint,
        "query_sets": {},
        "modes": {},
    }
    for threads in args.threads:
        with thread_limit(threads) as pools:
            print(f"  threads {threads}: {pools}", flush=True)
            for sname, where, with_rg, modes, nq in query_sets(args, nlist):
                results["query_sets"][sname] = {
                    "where": where,
                    "query_rg": with_rg,
                    "queries": min(nq, len(queries)),
                    "matching": store.count(where),
                }
                if where:
                    n_match = results["query_sets"][sname]["matching"]
                    print(f"  {sname}: {where} -> {n_match:,} entries", flush=True)
                got = run_set(
                    store, queries[:nq], where, with_rg, modes, order, kind_of
                )
                for mname, r in got.items():
                    key = f"threads={threads} | {sname} | {mname}"
                    r.update(threads=threads, thread_pools=pools, query_set=sname)
                    if args.profile:
                        r["profile_top"] = profile_mode(
                            store, queries[: args.profile], where, with_rg, r["params"]
                        )
                    results["modes"][key] = r
                    print(
                        f"  {key:<56} recall@10 {r['recall_at_10']:.3f}  "
                        f"qps {r['qps']:8.1f}  p50 {r['p50_ms']:8.2f} ms  "
                        f"p95 {r['p95_ms']:8.2f} ms",
                        flush=True,
                    )
    store.close()
    return results


@contextlib.contextmanager
def prune_factor(factor: int | None) -> Iterator[None]:
    """Search with another :data:`swan_index.joint.JOINT_PRUNE_FACTOR` (``None``:
    the store's own) for the modes that compare it."""
    import swan_index.store_search as search_module

    own = search_module.JOINT_PRUNE_FACTOR
    search_module.JOINT_PRUNE_FACTOR = own if factor is None else factor
    try:
        yield
    finally:
        search_module.JOINT_PRUNE_FACTOR = own


def run_set(
    store: Store,
    qs: list[QueryCase],
    where: str | None,
    with_rg: bool,
    modes: list[tuple[str, dict[str, Any]]],
    order: np.ndarray,
    kind_of: np.ndarray,
) -> dict[str, dict[str, Any]]:
    """Time every mode on the queries ``qs``; the first mode is ``exact``.

    The modes are interleaved query by query (the order rotating), so background
    load on a shared machine hits them alike. Each mode's first query is run once
    before (caches, cold paths) and reported apart.
    """

    def call(j: int, kwargs: dict[str, Any]) -> list:
        code, rg, _ = qs[j]
        kwargs = dict(kwargs)
        with prune_factor(kwargs.pop("prune_factor", None)):
            options = SearchOptions(where=where, **kwargs)
            return store.search(code, 10, options, rg=rg if with_rg else None)

    first = []
    for _, kwargs in modes:
        t0 = time.perf_counter()
        call(0, kwargs)
        first.append(time.perf_counter() - t0)
    lat = [[0.0] * len(qs) for _ in modes]
    ids: list[list[list[int]]] = [[[] for _ in qs] for _ in modes]
    scores: list[list[list[float]]] = [[[] for _ in qs] for _ in modes]
    for j in range(len(qs)):
        for r in range(len(modes)):
            m = (j + r) % len(modes)
            t0 = time.perf_counter()
            hits = call(j, modes[m][1])
            lat[m][j] = time.perf_counter() - t0
            ids[m][j] = [h.id for h in hits]
            scores[m][j] = [h.score for h in hits]
    out = {}
    kinds = [str(kind_of[q[2]]) for q in qs]
    for m, (mname, kwargs) in enumerate(modes):
        same = [
            float(np.mean([order[(i - 1) % len(order)] == q[2] for i in hit_ids]))
            if hit_ids
            else 0.0
            for hit_ids, q in zip(ids[m], qs, strict=True)
        ]
        r = {
            "mode": mname,
            "params": kwargs,
            **summarise(
                lat[m], ids[m], scores[m], ids[0], scores[0], first[m], same, kinds
            ),
        }
        r["speedup_over_exact_p50"] = out.get("exact", r)["p50_ms"] / r["p50_ms"]
        r["qps_over_exact"] = r["qps"] / out.get("exact", r)["qps"]
        out[mname] = r
    return out


def profile_mode(
    store: Store,
    qs: list[QueryCase],
    where: str | None,
    with_rg: bool,
    kwargs: dict[str, Any],
) -> list[str]:
    """cProfile of a few searches of one mode: the top functions."""
    profile = cProfile.Profile()
    profile.enable()
    kwargs = dict(kwargs)
    factor = kwargs.pop("prune_factor", None)
    for code, rg, _ in qs:
        options = SearchOptions(where=where, **kwargs)
        with prune_factor(factor):
            store.search(code, 10, options, rg=rg if with_rg else None)
    profile.disable()
    return top_functions(profile, 12)
