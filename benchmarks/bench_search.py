"""Benchmark: search at scale, coarse-to-fine versus ``exact``.

Builds a store of ``--entries`` (default 1,000,000) entries with realistic codes
and metadata, then compares, in the same run and on the same held-out queries,
coarse-to-fine search (several ``nprobe`` / ``overfetch`` settings) against
``exact=True`` (every entry scored: the ground truth and the baseline):
recall@10, queries per second, p50/p95 latency, with and without a ``where``
filter. It also measures the build rate, the store's size on disk, the reader's
memory per entry and the store open time (both in a fresh process).

**Codes.** Base codes come from the real encoder (``data/cryoswan.pt``) on varied
canonical volumes made the way the training set makes them
(:mod:`encoder.dataset`): the real maps in ``data/maps`` and ``../shared/data/real/
maps`` in augmented views (rotation, low-pass, noise, crops), maps simulated from
the models in ``data/models`` and ``../shared/data/real/models`` (3-12 Å, random
rotations, chain subsets), and SYNTHETIC assemblies (:mod:`encoder.synthetic`).
They are cached in ``--cache`` (``base.npz``). Entry ``j`` is a replicate of base
``j mod n_base`` (bases shuffled), perturbed the way real codes vary: the residuals
of augmented views from their molecule's mean code (molecules with several views)
form a pool, and replicate ``j`` adds ``s_j * sum_k w_k R[r_k] / sqrt(K)`` (K = 4
random pool rows ``r_k``, ``w_k ~ N(0, 1)``) to each scale's vector, then
renormalises; the same rows and weights serve every scale, so a replicate differs
coherently across scales and only along directions real codes move in (isotropic
noise would not: the finer scales' vectors crowd in a narrow cone, so noise that
is small at the coarse scale swamps them). ``s_j = --noise * exp(--noise-spread *
z_j)``, ``z_j ~ N(0, 1)``: with the default 0.5 a replicate sits about half as far
from its base as a view sits from its molecule's mean. The JSON reports the
measured cosines (replicate to base, views of one molecule, unrelated bases) per
scale. Tokens are the base's with ``--token-swaps`` of them replaced at random; rg
is the base's times ``exp(N(0, 0.05))``. Queries are fresh perturbations of random
bases (never stored), with one pose.

**Metadata.** Each entry takes a random row of ``EMDB_metadata.csv`` (the 8,071
real entries): ``emdb_id``, ``resolution``, ``fitted_pdbs``, ``release_date``
(``map_release_date``). That file has no method and no title: ``method`` is drawn
from assumed archive shares (``METHOD_SHARES``) and the title names the base
molecule; voxel size, box and extents are plausible values derived from rg. Every
entry is flagged ``simulated`` (labels ``bench:<kind>``); ``sha256`` is a hash of
the entry index.

**Queries.** Four sets, each against ``exact`` on the same queries: ``all``
(searched with the query's rg, as ``swan search MAP`` does, so the size term
counts), ``all, no rg`` (shape only), and the filters in ``FILTERS`` (with rg,
``--filtered-queries`` of them). recall@10 is the overlap of a mode's top 10 with
exact's. The modes of a set are interleaved query by query, so load from other
processes on a shared machine falls on them alike; each mode's first query runs
once beforehand and is reported apart (``first_query_ms``), as are cProfile
summaries of ``--profile`` queries. Everything runs under each ``--threads``
setting in turn (``default``: the libraries' own thread pools; ``1``: BLAS and
FAISS's OpenMP limited to one thread with threadpoolctl, FAISS's only without
it). Searches are sequential, one query at a time; the page cache is warm
(nothing is dropped).
The JSON records the load average and a hash of every ``swan_index`` source
file, since timings on a shared machine and a store under development move.

    $ python benchmarks/bench_search.py [--entries 1000000] [--queries 200] \\
          [--filtered-queries 60] [--threads default 1] [--keep-store]
    $ python benchmarks/bench_search.py --entries 20000 --queries 50   # quick
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import csv
import datetime as dt
import gc
import hashlib
import io
import json
import multiprocessing
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import code_version, machine_info  # noqa: E402
from encoder.code import MultiScaleCode  # noqa: E402
from swan_index.schema import EntryRecord  # noqa: E402
from swan_index.store import Store  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "real"
METADATA_CSV = SHARED / "headers" / "EMDB_metadata.csv"
MAP_DIRS = (ROOT / "data" / "maps", SHARED / "maps")
MODEL_DIRS = (ROOT / "data" / "models", SHARED / "models")
MAP_SUFFIXES = (".map", ".mrc", ".ccp4", ".map.gz", ".mrc.gz")
MODEL_SUFFIXES = (".pdb", ".cif", ".ent", ".pdb.gz", ".cif.gz")
#: EMDB methods, as EMDB spells them, with assumed shares (the CSV has no method).
METHOD_SHARES = {
    "singleParticle": 0.88,
    "helical": 0.05,
    "subtomogramAveraging": 0.04,
    "electronCrystallography": 0.02,
    "tomography": 0.01,
}
FILTERS = {
    "broad": "resolution < 4 AND method = 'singleParticle'",
    "selective": "resolution < 3 AND release_date >= DATE '2021-01-01'",
}
BASE_VERSION = 1


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


# -- base codes -------------------------------------------------------------------
def _source_files(dirs: tuple[Path, ...], suffixes: tuple[str, ...]) -> list[Path]:
    """Files in ``dirs`` with a suffix in ``suffixes``, one per file name."""
    seen: dict[str, Path] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.is_file() and p.name.endswith(suffixes) and p.name not in seen:
                seen[p.name] = p
    return list(seen.values())


def _job(job: tuple) -> tuple[np.ndarray | None, dict]:
    from encoder.training_data import run_job as _run

    return _run(job)


def make_base(args: argparse.Namespace) -> dict[str, Any]:
    """Real-encoder codes of varied volumes (cached in ``args.cache``)."""
    params = {
        "version": BASE_VERSION,
        "real_views": args.real_views,
        "model_views": args.model_views,
        "synthetic": args.synthetic,
        "seed": args.seed,
    }
    cache = args.cache / "base.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            if json.loads(str(z["params"])) == params:
                print(f"base codes: cached in {cache}", flush=True)
                return {k: z[k] for k in z.files}
    from encoder.training_data import from_uint8, group_of
    from swan_index.map_encoder import MapEncoder

    jobs, groups, kinds = [], [], []
    for path in _source_files(MAP_DIRS, MAP_SUFFIXES):
        for view in range(args.real_views):
            jobs.append(("real", str(path), view, args.seed, 64))
            groups.append(group_of(path))
            kinds.append("real")
    for path in _source_files(MODEL_DIRS, MODEL_SUFFIXES):
        for view in range(args.model_views):
            jobs.append(("simulated", str(path), view, args.seed, 64))
            groups.append(group_of(path))
            kinds.append("simulated")
    for i in range(args.synthetic):
        jobs.append(("synthetic", i, args.seed, 64))
        groups.append(f"synthetic-{i}")
        kinds.append("synthetic")
    print(f"base codes: {len(jobs)} volumes to make", flush=True)
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(os.cpu_count() or 1) as pool:
        results = pool.map(_job, jobs, chunksize=4)
    t_make = time.perf_counter() - t0
    keep = [i for i, (vol, _) in enumerate(results) if vol is not None]
    errors = [results[i][1].get("error") for i in range(len(jobs)) if i not in keep]
    volumes = np.stack([from_uint8(results[i][0]) for i in keep])
    rows = [results[i][1] for i in keep]
    encoder = MapEncoder()
    t0 = time.perf_counter()
    code = encoder.encode(volumes)
    t_encode = time.perf_counter() - t0
    print(
        f"base codes: {len(keep)} volumes made in {t_make:.0f} s "
        f"({len(errors)} failed), encoded in {t_encode:.0f} s",
        flush=True,
    )
    base: dict[str, Any] = {
        "params": np.array(json.dumps(params)),
        "info": np.array(json.dumps(encoder.info.to_dict())),
        "group": np.array([groups[i] for i in keep]),
        "kind": np.array([kinds[i] for i in keep]),
        "rg": np.array([r["radius_of_gyration"] for r in rows], np.float64),
        "mol_volume": np.array([r["volume"] for r in rows], np.float64),
        "contour": np.array([r["contour"] for r in rows], np.float64),
        "seconds": np.array([t_make, t_encode]),
        "errors": np.array(errors[:20] or [""]),
    }
    for i, (tok, vec) in enumerate(zip(code.tokens, code.vectors, strict=True)):
        base[f"tokens_{i}"] = tok
        base[f"vectors_{i}"] = vec
    args.cache.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **base)
    return base


def base_stats(base: dict[str, Any], n_scales: int, seed: int) -> dict[str, Any]:
    """Mean cosines per scale: views of one molecule, unrelated bases."""
    rng = np.random.default_rng(seed)
    group = base["group"]
    same: list[list[float]] = [[] for _ in range(n_scales)]
    for g in np.unique(group):
        idx = np.flatnonzero(group == g)
        if len(idx) < 2:
            continue
        for i in range(n_scales):
            v = base[f"vectors_{i}"][idx]
            c = v @ v.T
            same[i].append(float(c[np.triu_indices(len(idx), 1)].mean()))
    n = len(group)
    a, b = rng.integers(0, n, 20_000), rng.integers(0, n, 20_000)
    ok = group[a] != group[b]
    other = [
        float(
            np.einsum(
                "ij,ij->i", base[f"vectors_{i}"][a[ok]], base[f"vectors_{i}"][b[ok]]
            ).mean()
        )
        for i in range(n_scales)
    ]
    kinds, counts = np.unique(base["kind"], return_counts=True)
    return {
        "n_base": int(n),
        "by_kind": dict(zip(kinds.tolist(), counts.tolist(), strict=True)),
        "molecule_groups": int(len(np.unique(group))),
        "seconds_make_volumes": float(base["seconds"][0]),
        "seconds_encode": float(base["seconds"][1]),
        "mean_cosine_views_of_one_molecule": [
            float(np.mean(s)) if s else None for s in same
        ],
        "mean_cosine_unrelated_bases": other,
        "rg_percentiles_5_50_95": np.percentile(base["rg"], [5, 50, 95]).tolist(),
    }


# -- replicates ---------------------------------------------------------------------
def residual_pool(base: dict[str, Any], n_scales: int) -> list[np.ndarray]:
    """Per scale, rows aligned: each view's code minus its molecule's mean code
    (molecules with at least two views)."""
    group = base["group"]
    rows = [g for g in np.unique(group) if (group == g).sum() >= 2]
    pool = []
    for i in range(n_scales):
        v = base[f"vectors_{i}"]
        parts = [v[group == g] - v[group == g].mean(axis=0) for g in rows]
        pool.append(np.ascontiguousarray(np.concatenate(parts), np.float32))
    return pool


def perturb(
    base: dict[str, Any],
    which: np.ndarray,
    rng: np.random.Generator,
    args: argparse.Namespace,
    pool: list[np.ndarray],
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Perturbed vectors, tokens and rg of the bases ``which`` (module docs)."""
    n, n_terms = len(which), 4
    scale = args.noise * np.exp(args.noise_spread * rng.standard_normal(n))
    rows = rng.integers(0, len(pool[0]), (n_terms, n))
    weights = (scale / np.sqrt(n_terms)) * rng.standard_normal((n_terms, n))
    vectors, tokens = [], []
    for i, res in enumerate(pool):
        v = base[f"vectors_{i}"][which].astype(np.float32)
        for k in range(n_terms):
            v += weights[k][:, None].astype(np.float32) * res[rows[k]]
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        vectors.append(np.ascontiguousarray(v, np.float32))
        t = base[f"tokens_{i}"][which].copy()
        flat = t.reshape(n, -1)
        swap = rng.random(flat.shape) < args.token_swaps
        flat[swap] = rng.integers(0, args.codebook, int(swap.sum()), dtype=np.int16)
        tokens.append(t)
    rg = base["rg"][which] * np.exp(0.05 * rng.standard_normal(n))
    return vectors, tokens, rg


def load_metadata(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))

    def date(text: str) -> dt.date | None:
        return dt.date.fromisoformat(text[:10]) if text else None

    return {
        "emdb_id": np.array([r["emdb_id"] for r in rows], dtype=object),
        "resolution": np.array(
            [float(r["resolution"]) if r["resolution"] else np.nan for r in rows]
        ),
        "fitted_pdbs": np.array(
            [tuple(p for p in r["fitted_pdbs"].split(",") if p) for r in rows],
            dtype=object,
        ),
        "release_date": np.array(
            [date(r["map_release_date"]) for r in rows], dtype=object
        ),
    }


def make_records(
    start: int,
    which: np.ndarray,
    rg: np.ndarray,
    base: dict[str, Any],
    meta: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> list[EntryRecord]:
    """Metadata rows of entries ``start ...`` (replicates of bases ``which``)."""
    n = len(which)
    rows = rng.integers(0, len(meta["emdb_id"]), n)
    methods = rng.choice(
        list(METHOD_SHARES), size=n, p=list(METHOD_SHARES.values())
    ).tolist()
    voxel = np.round(rng.uniform(0.6, 1.6, n), 3)
    box = np.clip(2 * np.ceil(2.2 * rg / voxel), 48, 640).astype(int)
    shape_ratio = np.exp(0.15 * rng.standard_normal((n, 3))) * [2.6, 2.0, 1.6]
    out = []
    for j in range(n):
        b, r = int(which[j]), int(rows[j])
        res = meta["resolution"][r]
        side = float(box[j] * voxel[j])
        ext = np.sort(rg[j] * shape_ratio[j])[::-1]
        out.append(
            EntryRecord(
                sha256=hashlib.sha256(f"bench-search-{start + j}".encode()).hexdigest(),
                emdb_id=meta["emdb_id"][r],
                title=(
                    f"Benchmark replicate of {base['group'][b]} "
                    f"({base['kind'][b]} base {b})"
                ),
                method=methods[j],
                resolution=None if np.isnan(res) else float(res),
                contour=float(base["contour"][b]),
                contour_source="map",
                release_date=meta["release_date"][r],
                fitted_pdbs=meta["fitted_pdbs"][r],
                voxel_size=float(voxel[j]),
                box=(int(box[j]),) * 3,
                extent=(side, side, side),
                rg=float(rg[j]),
                mol_extents=(float(ext[0]), float(ext[1]), float(ext[2])),
                mol_volume=float(base["mol_volume"][b]),
                label=f"bench:{base['kind'][b]}",
                simulated=True,
            )
        )
    return out


# -- measurements -------------------------------------------------------------------
def rss_mb() -> dict[str, float]:
    """VmRSS and VmHWM of this process, MB."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


def disk_bytes(path: Path) -> dict[str, int]:
    files = [p for p in path.iterdir() if p.is_file()]
    files += sorted((path / "faiss").glob("*.index"))
    return {p.name: p.stat().st_size for p in files}


def probe_open(path: Path, profile: bool = False) -> dict[str, Any]:
    """Run in a fresh process: memory and time of a read-only open (and of reading
    the index files' bytes, the floor of any open); with ``profile``, where the
    open's time goes."""
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
    store.close()
    del store
    gc.collect()
    t0 = time.perf_counter()
    nbytes = 0
    for f in sorted((path / "faiss").glob("*.index")):
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 24):
                nbytes += len(chunk)
    t_bytes = time.perf_counter() - t0
    return {
        "entries": n,
        "open_s": t_open,
        "rss_before_mb": before["VmRSS"],
        "rss_after_mb": after["VmRSS"],
        "hwm_after_mb": after["VmHWM"],
        "read_index_bytes_s": t_bytes,
        "index_bytes": nbytes,
        "profile_top": top_functions(prof, 15) if profile else [],
    }


def fresh_probe(path: Path, profile: bool = False) -> dict[str, Any]:
    extra = ["--probe-profile"] if profile else []
    out = subprocess.run(
        [sys.executable, __file__, "--probe-open", str(path), *extra],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def build(
    path: Path,
    base: dict[str, Any],
    meta: dict[str, np.ndarray],
    args: argparse.Namespace,
    info: Any,
    pool: list[np.ndarray],
) -> dict[str, Any]:
    """Create the store with ``args.entries`` replicates; returns the timings."""
    if path.exists():
        shutil.rmtree(path)
    n_base = len(base["rg"])
    order = np.random.default_rng(args.seed).permutation(n_base)
    store = Store.open(path, encoder=info)
    t_gen = t_add = 0.0
    add_times = []
    for start in range(0, args.entries, args.batch):
        stop = min(start + args.batch, args.entries)
        rng = np.random.default_rng([args.seed, 1, start])
        t0 = time.perf_counter()
        which = order[np.arange(start, stop) % n_base]
        vectors, tokens, rg = perturb(base, which, rng, args, pool)
        records = make_records(start, which, rg, base, meta, rng)
        code = MultiScaleCode(info.scales, tuple(tokens), tuple(vectors), info.hash)
        t1 = time.perf_counter()
        store.add(code, records)
        t2 = time.perf_counter()
        t_gen += t1 - t0
        t_add += t2 - t1
        add_times.append(t2 - t1)
        print(
            f"  added {stop:>9,} entries: batch {t2 - t1:6.2f} s "
            f"(made in {t1 - t0:5.2f} s)",
            flush=True,
        )
    t0 = time.perf_counter()
    profile = cProfile.Profile()
    profile.enable()
    store.flush()
    profile.disable()
    t_flush = time.perf_counter() - t0
    writer_mem = rss_mb()
    index_info = store.index_info()
    t0 = time.perf_counter()
    store.close()
    t_close = time.perf_counter() - t0
    del store
    gc.collect()
    return {
        "entries": args.entries,
        "batch": args.batch,
        "seconds_make_codes_and_records": t_gen,
        "seconds_add": t_add,
        "entries_per_s_add": args.entries / t_add,
        "add_seconds_first_last_batch": [add_times[0], add_times[-1]],
        "add_seconds_max_batch": max(add_times),
        "add_seconds_per_batch": [round(t, 3) for t in add_times],
        "seconds_flush": t_flush,
        "flush_profile_top": top_functions(profile, 8),
        "seconds_close": t_close,
        "entries_per_s_add_plus_flush": args.entries / (t_add + t_flush),
        "writer_rss_mb_after_flush": writer_mem,
        "indexes": index_info,
    }


def make_queries(
    base: dict[str, Any], args: argparse.Namespace, info: Any, pool: list[np.ndarray]
) -> list[tuple[MultiScaleCode, float, int]]:
    """Held-out perturbed codes: ``(code, rg, base index)``."""
    rng = np.random.default_rng([args.seed, 2])
    which = rng.choice(len(base["rg"]), args.queries, replace=False)
    vectors, tokens, rg = perturb(base, which, rng, args, pool)
    return [
        (
            MultiScaleCode(
                info.scales,
                tuple(t[j : j + 1] for t in tokens),
                tuple(v[j : j + 1] for v in vectors),
                info.hash,
            ),
            float(rg[j]),
            int(which[j]),
        )
        for j in range(len(which))
    ]


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
    for of in args.overfetch:
        main.append((f"c2f nprobe=32 overfetch={of}", {"nprobe": 32, "overfetch": of}))
    shape_only = [exact, ("c2f nprobe=32", {"nprobe": 32})] + [
        (f"c2f nprobe=32 overfetch={of}", {"nprobe": 32, "overfetch": of})
        for of in args.overfetch
    ]
    filtered = [exact] + [
        (f"c2f nprobe={p}", {"nprobe": p}) for p in args.filter_nprobe
    ]
    sets = [
        ("all", None, True, main, args.queries),
        ("all, no rg", None, False, shape_only, args.queries),
    ]
    for name, where in FILTERS.items():
        sets.append((name, where, True, filtered, args.filtered_queries))
    return sets


def search_all(
    path: Path,
    queries: list[tuple[MultiScaleCode, float, int]],
    order: np.ndarray,
    kind_of: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Every thread setting, query set and mode, against ``exact`` on the same
    queries (see :func:`run_set`)."""
    store = Store.open(path, read_only=True)
    coarse = store.index_info()[0]
    nlist = store.index_info()[0]["nlist"]
    results: dict[str, Any] = {
        "entries": store.count(),
        "coarse_index": {**coarse, "nlist": nlist},
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


def run_set(
    store: Store,
    qs: list[tuple[MultiScaleCode, float, int]],
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
        return store.search(
            code, k=10, where=where, rg=rg if with_rg else None, **kwargs
        )

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
    qs: list[tuple[MultiScaleCode, float, int]],
    where: str | None,
    with_rg: bool,
    kwargs: dict[str, Any],
) -> list[str]:
    """cProfile of a few searches of one mode: the top functions."""
    profile = cProfile.Profile()
    profile.enable()
    for code, rg, _ in qs:
        store.search(code, k=10, where=where, rg=rg if with_rg else None, **kwargs)
    profile.disable()
    return top_functions(profile, 12)


def print_table(result: dict[str, Any]) -> None:
    s = result["search"]
    print()
    print(
        f"{'threads':<8} {'queries':<12} {'mode':<34} {'recall@10':>9} {'qps':>9} "
        f"{'p50 ms':>9} {'p95 ms':>9} {'x exact':>8}"
    )
    for r in s["modes"].values():
        print(
            f"{r['threads']:<8} {r['query_set']:<12} {r['mode']:<34} "
            f"{r['recall_at_10']:>9.3f} {r['qps']:>9.1f} "
            f"{r['p50_ms']:>9.2f} {r['p95_ms']:>9.2f} "
            f"{r['speedup_over_exact_p50']:>8.1f}"
        )
    b, m = result["build"], result["memory"]
    print()
    if "entries_per_s_add" in b:
        print(
            f"build: {b['entries_per_s_add']:,.0f} entries/s (add), flush "
            f"{b['seconds_flush']:.1f} s"
        )
    print(
        f"disk {m['disk_bytes_per_entry']:,.0f} B/entry; reader RSS "
        f"{m['reader_rss_bytes_per_entry']:,.0f} B/entry; open "
        f"{m['open_s_median']:.2f} s (index bytes read alone "
        f"{m['read_index_bytes_s_median']:.2f} s)"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--filtered-queries", type=int, default=100)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--noise-spread", type=float, default=0.4)
    parser.add_argument("--token-swaps", type=float, default=0.02)
    parser.add_argument("--codebook", type=int, default=512)
    parser.add_argument("--real-views", type=int, default=40)
    parser.add_argument("--model-views", type=int, default=25)
    parser.add_argument("--synthetic", type=int, default=1500)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--filter-nprobe", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--overfetch", type=int, nargs="*", default=[50, 200])
    parser.add_argument("--profile", type=int, default=5, help="queries profiled")
    parser.add_argument(
        "--threads",
        nargs="+",
        default=["default", "1"],
        help="thread settings for BLAS and FAISS (OpenMP) to search under, in turn",
    )
    parser.add_argument("--open-probes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/bench_search"))
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument(
        "--reuse-store", action="store_true", help="search an existing --store"
    )
    parser.add_argument("--keep-store", action="store_true")
    parser.add_argument("--probe-open", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--probe-profile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "bench_search.json",
    )
    args = parser.parse_args(argv)
    if args.probe_open:
        print(json.dumps(probe_open(args.probe_open, args.probe_profile)))
        return {}
    t_start = time.perf_counter()
    load = {"start": os.getloadavg()}
    version_start = code_version()
    base = make_base(args)
    from swan_index.store import EncoderInfo

    info = EncoderInfo.from_dict(json.loads(str(base["info"])))
    stats = base_stats(base, len(info.scales), args.seed)
    pool = residual_pool(base, len(info.scales))
    # replicate/base cosines as built (a sample)
    rng = np.random.default_rng([args.seed, 3])
    which = rng.integers(0, len(base["rg"]), 5000)
    vecs, _, _ = perturb(base, which, rng, args, pool)
    vecs2, _, _ = perturb(base, which, rng, args, pool)
    stats["residual_pool_rows"] = len(pool[0])
    stats["mean_cosine_replicate_to_base"] = [
        float(np.einsum("ij,ij->i", v, base[f"vectors_{i}"][which]).mean())
        for i, v in enumerate(vecs)
    ]
    stats["mean_cosine_two_replicates_of_one_base"] = [
        float(np.einsum("ij,ij->i", v, w).mean())
        for v, w in zip(vecs, vecs2, strict=True)
    ]
    print(json.dumps(stats, indent=1), flush=True)
    meta = load_metadata(METADATA_CSV)
    path = args.store or args.cache / f"store_{args.entries}"
    order = np.random.default_rng(args.seed).permutation(len(base["rg"]))
    if args.reuse_store and path.exists():
        print(f"store: reusing {path}", flush=True)
        build_info: dict[str, Any] = {"entries": args.entries, "reused": True}
    else:
        print(f"store: building {args.entries:,} entries in {path}", flush=True)
        build_info = build(path, base, meta, args, info, pool)
    load["after_build"] = os.getloadavg()
    disk = disk_bytes(path)
    print("store: fresh-process opens", flush=True)
    probes = [fresh_probe(path) for _ in range(args.open_probes)]
    n = probes[0]["entries"]
    rss = statistics.median(p["rss_after_mb"] - p["rss_before_mb"] for p in probes)
    memory = {
        "disk_bytes": disk,
        "disk_bytes_per_entry": sum(disk.values()) / n,
        "duckdb_bytes_per_entry": disk.get("swan.duckdb", 0) / n,
        "faiss_bytes_per_entry": sum(v for k, v in disk.items() if k.endswith(".index"))
        / n,
        "vector_bytes_per_entry_float32": 4 * sum(info.dims),
        "reader_rss_delta_mb": rss,
        "reader_rss_bytes_per_entry": rss * 2**20 / n,
        "open_s": [p["open_s"] for p in probes],
        "open_s_median": statistics.median(p["open_s"] for p in probes),
        "read_index_bytes_s_median": statistics.median(
            p["read_index_bytes_s"] for p in probes
        ),
        "probes": probes,
        "open_profile": fresh_probe(path, profile=True),
    }
    memory["open_over_read_index_bytes"] = (
        memory["open_s_median"] / memory["read_index_bytes_s_median"]
    )
    print(json.dumps({k: v for k, v in memory.items() if k != "probes"}), flush=True)
    print("search:", flush=True)
    queries = make_queries(base, args, info, pool)
    search = search_all(path, queries, order, base["kind"], args)
    load["end"] = os.getloadavg()
    import faiss

    result = {
        "benchmark": "search at scale: coarse-to-fine vs exact",
        "parameters": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k not in ("probe_open", "probe_profile")
        },
        "method_shares_assumed": METHOD_SHARES,
        "metadata_csv": str(METADATA_CSV.relative_to(ROOT.parent)),
        "base": stats,
        "build": build_info,
        "memory": memory,
        "search": search,
        "seconds_total": time.perf_counter() - t_start,
        "load_average_1_5_15_min": load,
        "swan_index_sha256": version_start,
        "swan_index_changed_during_run": code_version() != version_start,
        "machine": machine_info(
            faiss=faiss.__version__, faiss_omp_threads=faiss.omp_get_max_threads()
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_table(result)
    print(f"\nwrote {args.out}")
    if not args.keep_store and not args.reuse_store:
        shutil.rmtree(path, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
