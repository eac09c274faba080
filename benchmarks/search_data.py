"""The search benchmark's synthetic store: base codes, replicates, metadata.

See :mod:`benchmarks.bench_search` for how the codes and the metadata are made;
this module makes them and builds the store.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import datetime as dt
import gc
import hashlib
import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT, SHARED_DATA
from benchmarks.search_measure import rss_mb, top_functions
from encoder.code import MultiScaleCode
from swan_index.schema import EntryRecord
from swan_index.store import Store

SHARED = SHARED_DATA
METADATA_CSV = SHARED / "headers" / "EMDB_metadata.csv"
#: Real maps and atomic models, in this order; a file name met twice is used once.
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
BASE_VERSION = 1
#: Bases mixed into one entry of the ``mixtures`` corpus.
MIX_PARTS = 3


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


def make_volumes(
    args: argparse.Namespace,
) -> tuple[list[dict[str, Any]], np.ndarray, list[str]]:
    """Canonical volumes of the real maps and models (augmented views) and the
    synthetic assemblies, made as ``swan dataset build`` makes them (its jobs,
    :func:`encoder.training_data.run_job`, in a pool of worker processes).

    Returns the items' rows (``kind``, ``group`` and the size features), their
    uint8 volumes, and the failures.
    """
    from encoder.training_data import group_of, run_job

    jobs, labels = [], []
    for path in _source_files(MAP_DIRS, MAP_SUFFIXES):
        for view in range(args.real_views):
            jobs.append(("real", str(path), view, args.seed, 64))
            labels.append({"kind": "real", "group": group_of(path)})
    for path in _source_files(MODEL_DIRS, MODEL_SUFFIXES):
        for view in range(args.model_views):
            jobs.append(("simulated", str(path), view, args.seed, 64))
            labels.append({"kind": "simulated", "group": group_of(path)})
    for i in range(args.synthetic):
        jobs.append(("synthetic", i, args.seed, 64))
        labels.append({"kind": "synthetic", "group": f"synthetic-{i}"})
    print(f"base codes: {len(jobs)} volumes to make", flush=True)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(os.cpu_count() or 1) as pool:
        results = pool.map(run_job, jobs, chunksize=4)
    keep = [i for i, (vol, _) in enumerate(results) if vol is not None]
    errors = [results[i][1].get("error") for i in range(len(jobs)) if i not in keep]
    rows = [{**results[i][1], **labels[i]} for i in keep]
    return rows, np.stack([results[i][0] for i in keep]), errors


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
    from encoder.training_data import from_uint8
    from swan_index.map_encoder import MapEncoder

    args.cache.mkdir(parents=True, exist_ok=True)
    print("base codes: making the volumes", flush=True)
    t0 = time.perf_counter()
    rows, volumes, errors = make_volumes(args)
    t_make = time.perf_counter() - t0
    encoder = MapEncoder()
    t0 = time.perf_counter()
    code = encoder.encode(from_uint8(volumes))
    t_encode = time.perf_counter() - t0
    print(
        f"base codes: {len(rows)} volumes made in {t_make:.0f} s "
        f"({len(errors)} failed), encoded in {t_encode:.0f} s",
        flush=True,
    )
    base: dict[str, Any] = {
        "params": np.array(json.dumps(params)),
        "info": np.array(json.dumps(encoder.info.to_dict())),
        "group": np.array([r["group"] for r in rows]),
        "kind": np.array([r["kind"] for r in rows]),
        "rg": np.array([float(r["radius_of_gyration"]) for r in rows]),
        "mol_volume": np.array([float(r["volume"]) for r in rows]),
        "contour": np.array([float(r["contour"]) for r in rows]),
        "seconds": np.array([t_make, t_encode]),
        "errors": np.array(errors[:20] or [""]),
    }
    for i, (tok, vec) in enumerate(zip(code.tokens, code.vectors, strict=True)):
        base[f"tokens_{i}"] = tok
        base[f"vectors_{i}"] = vec
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
    """Perturbed vectors, tokens and rg of the bases ``which`` (module docs of
    :mod:`benchmarks.bench_search`)."""
    n, n_terms = len(which), 4
    mixtures = getattr(args, "corpus", "replicates") == "mixtures"
    if mixtures:  # the base ``which`` weighs most; MIX_PARTS - 1 others join it
        parts = rng.integers(0, len(base["rg"]), (n, MIX_PARTS))
        parts[:, 0] = which
        share = -np.sort(-rng.dirichlet(np.ones(MIX_PARTS), n), axis=1)
    scale = args.noise * np.exp(args.noise_spread * rng.standard_normal(n))
    rows = rng.integers(0, len(pool[0]), (n_terms, n))
    weights = (scale / np.sqrt(n_terms)) * rng.standard_normal((n_terms, n))
    vectors, tokens = [], []
    for i, res in enumerate(pool):
        if mixtures:
            b = base[f"vectors_{i}"]
            v = np.einsum("np,npd->nd", share, b[parts]).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
        else:
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
    rg = base["rg"][which]
    if mixtures:  # the geometric mean of the parts' sizes, in their shares
        rg = np.exp(np.einsum("np,np->n", share, np.log(base["rg"][parts])))
    rg = rg * np.exp(0.05 * rng.standard_normal(n))
    return vectors, tokens, rg


def replicate_stats(
    base: dict[str, Any], args: argparse.Namespace, pool: list[np.ndarray]
) -> dict[str, Any]:
    """Mean cosines per scale of replicates as built (a sample of 5,000): to
    their base, and between two replicates of one base."""
    rng = np.random.default_rng([args.seed, 3])
    which = rng.integers(0, len(base["rg"]), 5000)
    vecs, _, _ = perturb(base, which, rng, args, pool)
    vecs2, _, _ = perturb(base, which, rng, args, pool)
    return {
        "residual_pool_rows": len(pool[0]),
        "mean_cosine_replicate_to_base": [
            float(np.einsum("ij,ij->i", v, base[f"vectors_{i}"][which]).mean())
            for i, v in enumerate(vecs)
        ],
        "mean_cosine_two_replicates_of_one_base": [
            float(np.einsum("ij,ij->i", v, w).mean())
            for v, w in zip(vecs, vecs2, strict=True)
        ],
    }


def load_metadata(path: Path) -> dict[str, np.ndarray]:
    """``emdb_id``, ``resolution``, ``fitted_pdbs`` and ``release_date`` of the
    entries of ``EMDB_metadata.csv``, as arrays."""
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
    corpus: str = "replicates",
) -> list[EntryRecord]:
    """Metadata rows of entries ``start ...`` (replicates of bases ``which``, or
    ``corpus="mixtures"``: mixtures led by them)."""
    what = "mixture led by" if corpus == "mixtures" else "replicate of"
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
                    f"Benchmark {what} {base['group'][b]} ({base['kind'][b]} base {b})"
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


# -- the store ----------------------------------------------------------------------
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
        records = make_records(start, which, rg, base, meta, rng, args.corpus)
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
    seed = args.seed if getattr(args, "query_seed", None) is None else args.query_seed
    rng = np.random.default_rng([seed, 2])
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
