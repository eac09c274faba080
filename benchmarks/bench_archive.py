"""Benchmark: the search at 1M and 10M entries, the figures a 200M library is
projected from.

Measures, in one run and on one thread (``faiss.omp_set_num_threads(1)``, BLAS
limited to one thread), what ``docs/results/archive.md`` projects a
200-million-entry library from:

1. **The first stage at each ``--sizes``** (default 1M and 10M): the store's
   own joint index (:class:`swan_index.joint.JointIndex`, trained and sized by
   the same code a store runs: PCA on a 200,000-entry sample, IVF lists
   ``4 sqrt(N)`` capped by the sample, ``nprobe`` 256, 1,000 candidates taken by
   :func:`swan_index.ranking.coarse_candidates`). Per size: build time
   (training, assigning entries to lists, adding), bytes per entry in memory
   (a reader opening the index file in a fresh process) and on disk, latency
   p50 / p95 one query at a time, distances computed per query, and two
   recalls against exact search over the same entries (the **baseline**,
   timed in the same run): recall@10 of the joint index against the exact
   joint score, and the share of the exact top 10 by the full shape score (the
   mean cosine over the 4 scales, every entry, no size term) found among the
   1,000 candidates (what the exact re-scoring then returns).
2. **Alternatives**: at the smallest size, the same lists holding 8-bit codes
   (IVF-SQ8), product-quantized codes (IVF-PQ, 13 bytes), and an HNSW coarse
   quantizer (build-time assignment for large list counts); at every size the
   index memory-mapped from its file (``faiss.IO_FLAG_MMAP``, FAISS's
   on-disk inverted lists) in a fresh process, and IVF-SQ8 at the largest.
3. **Shards** (:mod:`swan_index.shards`) at the largest size: the index split
   into ``--shards`` (4 and 8) by id, each shard with the archive's frame and
   coarse quantizer; every shard's 1,000 candidates merged, against the
   unsharded ones (the same sets, or the same up to entries tied with the
   1,000th score?), latency per shard and in total, the shards searched in
   turn and two at a time (threads), all interleaved query by query with the
   unsharded index.
4. **The second stage** on a real store of ``--second-stage-entries`` (150,000,
   above the joint index's threshold) built by :mod:`benchmarks.search_data`:
   per query, the first stage, fetching the candidates' per-scale vectors and
   scoring them, and the hits' metadata from DuckDB; bytes touched; the
   store's bytes per entry on disk and in a reader's memory.

**Data: SYNTHETIC.** Entries are the search benchmark's ``mixtures`` corpus
(:func:`benchmarks.search_data.perturb`): each entry mixes 3 real-encoder base
codes (checkpoint ``2bc2aef48ac9``; real maps, simulated maps and synthetic
assemblies, cached in ``--cache``) and is perturbed along the directions real
codes vary in. Entry ``j`` of the largest size is entry ``j`` of every smaller
size (each size is a prefix). Queries are fresh draws of the same kind, never
stored. Only the vectors are made (one dummy token per entry): the first stage
never reads tokens.

The measurements themselves are in :mod:`benchmarks.archive_measure`. The
projected joint vectors of the largest size are kept in ``--work`` (a
``.npy`` file, 260 bytes an entry) and removed at the end unless
``--keep-work``. Memory: the largest index is held once (2.6 GB at 10M) plus its
shards (as much again) while they are measured; the reader probes run after.

    $ python -m benchmarks.bench_archive                      # 1M and 10M
    $ python -m benchmarks.bench_archive --sizes 20000 100000 --queries 20 \\
          --second-stage-entries 0 --out /tmp/archive_quick.json   # quick
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from benchmarks.archive_measure import (
    K,
    TopK,
    exact_baseline,
    first_stage,
    fresh_read,
    probe_read,
    second_stage,
    summary,
    tied_at_boundary,
    timed,
)
from benchmarks.common import (
    RunRecord,
    add_out_argument,
    load_result,
    machine_info,
    save_result,
)
from benchmarks.search_data import make_base, perturb, residual_pool
from benchmarks.search_measure import rss_mb, thread_limit
from swan_index.joint import TRAIN_SAMPLE, JointIndex
from swan_index.shards import ShardedJoint, split_ivf


# -- entries ----------------------------------------------------------------------
def vector_base(base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with one dummy token per code (the first stage reads no tokens;
    perturbing full tokens would cost most of the drawing time)."""
    out = dict(base)
    n = len(base["rg"])
    for key in [k for k in base if k.startswith("tokens_")]:
        out[key] = np.zeros((n, 1), np.int16)
    return out


def draw(
    vbase: dict[str, Any],
    pool: list[np.ndarray],
    args: argparse.Namespace,
    start: int,
    stop: int,
    stream: int = 11,
) -> list[np.ndarray]:
    """Per-scale vectors ``[stop - start, dim_s]`` of the batch of entries
    ``start ...`` (SYNTHETIC mixtures; a batch drawn again is the same, so a
    size's entries are the first of the next size's when the batches are cut
    alike, :func:`batches`)."""
    rng = np.random.default_rng([args.seed, stream, start])
    which = rng.integers(0, len(vbase["rg"]), stop - start)
    return perturb(vbase, which, rng, args, pool)[0]


def batches(sizes: list[int], batch: int) -> list[tuple[int, int]]:
    """``[start, stop)`` batches up to the largest size, cut at every size."""
    cuts = sorted(set(range(0, max(sizes), batch)) | set(sizes) | {0})
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def build_all(
    args: argparse.Namespace, base: dict[str, Any], pool: list[np.ndarray], qv: list
) -> dict[str, Any]:
    """Train a joint index per size, draw the entries, fill the indexes, keep the
    projected vectors in a file and the exact top 10s at every size."""
    sizes, n_max = sorted(args.sizes), max(args.sizes)
    vbase = vector_base(base)
    n_train = min(TRAIN_SAMPLE, n_max)
    sample = [
        np.concatenate(part)
        for part in zip(
            *(draw(vbase, pool, args, a, b) for a, b in batches([n_train], args.batch)),
            strict=True,
        )
    ]
    weights = np.full(len(qv), 1 / len(qv))
    out: dict[str, Any] = {"sizes": {}}
    joints, train_s = {}, {}
    for n in sizes:
        t0 = time.perf_counter()
        joints[n] = JointIndex.train(sample, entries=n, seed=args.seed)
        train_s[n] = time.perf_counter() - t0
        joints[n].index.set_direct_map_type(faiss.DirectMap.NoMap)  # measured apart
    frame = joints[sizes[0]]
    for ji in joints.values():
        if not (np.array_equal(ji.mean, frame.mean) and ji.radius == frame.radius):
            raise RuntimeError("the sizes' joint frames differ: one sample trains all")
    del sample
    q = frame.query(qv, weights)
    qw = [np.float32(w) * v for w, v in zip(weights, qv, strict=True)]
    y_file = args.work / "joint.npy"
    y = np.lib.format.open_memmap(y_file, "w+", np.float32, (n_max, q.shape[1]))
    labels_of = {
        n: np.lib.format.open_memmap(
            args.work / f"labels_{n}.npy", "w+", np.int64, (n,)
        )
        for n in sizes
    }
    shape_top, joint_top = TopK(len(q), K), TopK(len(q), K)
    truth, assign_s, add_s = {}, dict.fromkeys(sizes, 0.0), dict.fromkeys(sizes, 0.0)
    draw_s = exact_s = 0.0
    rss0 = rss_mb()["VmRSS"]
    for a, b in batches(sizes, args.batch):
        t0 = time.perf_counter()
        vecs = draw(vbase, pool, args, a, b)
        yb = frame.project(vecs)
        y[a:b] = yb
        t1 = time.perf_counter()
        shape_top.add(sum(qs @ v.T for qs, v in zip(qw, vecs, strict=True)), a)
        joint_top.add(q @ yb.T, a)
        t2 = time.perf_counter()
        draw_s, exact_s = draw_s + t1 - t0, exact_s + t2 - t1
        ids = np.arange(a, b, dtype=np.int64)
        for n in sizes:
            if a < n:
                t0 = time.perf_counter()
                labels = joints[n].index.quantizer.assign(yb, 1).ravel()
                t1 = time.perf_counter()
                joints[n].index.add_core(
                    len(yb),
                    faiss.swig_ptr(yb),
                    faiss.swig_ptr(ids),
                    faiss.swig_ptr(labels),
                )
                labels_of[n][a : min(b, n)] = labels
                assign_s[n] += t1 - t0
                add_s[n] += time.perf_counter() - t1
        if b in sizes:
            truth[b] = {"shape": shape_top.ids.copy(), "joint": joint_top.ids.copy()}
        if b % 1_000_000 == 0 or b == n_max:
            print(f"  {b:>11,} entries drawn and added", flush=True)
    y.flush()
    for labels in labels_of.values():
        labels.flush()
    for n in sizes:
        out["sizes"][n] = {
            "entries": n,
            "nlist": joints[n].nlist,
            "nlist_4_sqrt_n": int(4 * math.sqrt(n)),
            "train_s": train_s[n],
            "assign_s": assign_s[n],
            "add_s": add_s[n],
        }
    out.update(
        draw_s=draw_s,
        exact_streaming_s_all_queries=exact_s,
        writer_rss_growth_mb=rss_mb()["VmRSS"] - rss0,
        train_sample=n_train,
    )
    return {
        "info": out,
        "frame": (frame.dims, frame.mean, frame.matrix, frame.radius),
        "joints": joints,
        "truth": truth,
        "q": q,
        "y": y,
        "candidates": {},
    }


def alternatives(
    args: argparse.Namespace, built: dict[str, Any], n: int, which: list[str]
) -> dict[str, Any]:
    """Other codes in the same lists (IVF-SQ8, IVF-PQ) and an HNSW coarse
    quantizer, on the first ``n`` entries."""
    ji, y, q, truth = built["joints"][n], built["y"], built["q"], built["truth"][n]
    d, nlist = ji.index.d, ji.nlist
    stored = np.load(args.work / f"labels_{n}.npy", mmap_mode="r")
    train = np.asarray(y[: min(n, TRAIN_SAMPLE)])
    quant = ji.index.quantizer
    out: dict[str, Any] = {}
    for name in which:
        t0 = time.perf_counter()
        if name == "ivf_hnsw_quantizer":
            q2 = faiss.IndexHNSWFlat(d, 32)
            q2.hnsw.efSearch = max(64, args.nprobe)
            q2.add(quant.reconstruct_n(0, nlist))
            ivf = faiss.IndexIVFFlat(q2, d, nlist)
        elif name == "ivf_sq8":
            q2 = faiss.clone_index(quant)
            ivf = faiss.IndexIVFScalarQuantizer(
                q2, d, nlist, faiss.ScalarQuantizer.QT_8bit
            )
        else:  # ivf_pq13: 13 sub-quantizers of 5 dims, 8 bits each
            q2 = faiss.clone_index(quant)
            ivf = faiss.IndexIVFPQ(q2, d, nlist, 13, 8)
        ivf.cp.seed = args.seed
        if name != "ivf_hnsw_quantizer":  # the codes' own training (SQ, PQ)
            ivf.train(train)
        ivf.is_trained = True
        train_s = time.perf_counter() - t0
        assign = add = 0.0
        agree = 0
        for a in range(0, n, args.batch):
            b = min(n, a + args.batch)
            yb = np.ascontiguousarray(y[a:b])
            ids = np.arange(a, b, dtype=np.int64)
            t0 = time.perf_counter()
            if name == "ivf_hnsw_quantizer":  # the lists as assigned by HNSW
                labels = ivf.quantizer.assign(yb, 1).ravel()
            else:  # a copy of the joint index's quantizer: its lists as stored
                labels = np.ascontiguousarray(stored[a:b])
            t1 = time.perf_counter()
            ivf.add_core(
                len(yb), faiss.swig_ptr(yb), faiss.swig_ptr(ids), faiss.swig_ptr(labels)
            )
            assign, add = assign + t1 - t0, add + time.perf_counter() - t1
            if name == "ivf_hnsw_quantizer":
                agree += int((labels == stored[a:b]).sum())
        alt = JointIndex(ji.dims, ivf, ji.mean, ji.matrix, ji.radius)
        res, _ = first_stage(alt, q, truth, args)
        res.update(
            train_s=train_s,
            add_s=add,
            code_bytes=int(ivf.code_size),
            index_bytes_per_entry=int(ivf.code_size) + 8,
        )
        if name == "ivf_hnsw_quantizer":  # the others reuse the stored lists
            res.update(assign_s=assign, lists_as_flat_quantizer=agree / n)
        out[name] = res
        print(f"  {name} at {n:,}: {json.dumps(res)}", flush=True)
        del alt, ivf
        gc.collect()
    return out


def shards(
    args: argparse.Namespace, built: dict[str, Any], n: int, ji: JointIndex
) -> dict[str, Any]:
    """The largest index ``ji`` split into shards, timed interleaved with it."""
    q, truth, out = built["q"], built["truth"][n], {}
    for s in args.shards:
        t0 = time.perf_counter()
        parts = [
            JointIndex(ji.dims, shell, ji.mean, ji.matrix, ji.radius)
            for shell in split_ivf(ji.index, s)
        ]
        split_s = time.perf_counter() - t0
        ways = {
            "unsharded": ji,
            "in_turn": ShardedJoint(parts, 1),
            "two_at_a_time": ShardedJoint(parts, 2),
            **{f"shard_{i}": p for i, p in enumerate(parts)},
        }
        runs = timed(ways, q, args)
        res: dict[str, Any] = {
            "shards": s,
            "split_s": split_s,
            "entries_per_shard": [p.ntotal for p in parts],
            "p50_ms_per_shard": [
                float(np.median(runs[f"shard_{i}"]["ms"])) for i in range(s)
            ],
        }
        for name in ("unsharded", "in_turn", "two_at_a_time"):
            res[name] = summary(ways[name], q, runs[name], truth, args)
        same = [
            np.array_equal(a, b)
            for a, b in zip(
                runs["in_turn"]["cands"], runs["unsharded"]["cands"], strict=True
            )
        ]
        ties = [
            tied_at_boundary(
                ji.search(q[j : j + 1], args.candidates, None, args.nprobe),
                ways["in_turn"].search(
                    q[j : j + 1], args.candidates, None, args.nprobe
                ),
            )
            for j in range(len(q))
        ]
        res["candidates_equal_unsharded"] = float(np.mean(same))
        res["candidates_equal_up_to_ties_at_the_last"] = float(np.mean(ties))
        out[str(s)] = res
        print(f"  {s} shards: {json.dumps(res)}", flush=True)
        del parts, ways
        gc.collect()
    return out


def project(result: dict[str, Any], target: int) -> dict[str, Any]:
    """A ``target``-entry library from the measured figures. PROJECTED, not
    measured:

    * first-stage latency: a line through (distances per query, p50 ms) at the
      two largest sizes (and, as a check, the largest size's ms per distance
      alone, ``_proportional``), applied to ``nprobe x entries / nlist`` list distances
      plus ``nlist`` quantizer distances (a flat coarse quantizer, costed like
      list distances: an upper bound) per shard, for shards sharing ``nlist``
      lists;
    * memory per entry: the first stage as a reader holds it at the largest
      size; the per-scale vectors the second stage reads, the store's reader
      memory and its DuckDB bytes as measured on the second stage's store.
    """
    sizes = sorted(result["sizes"].values(), key=lambda r: r["entries"])
    lo, hi = sizes[-2], sizes[-1]
    x0 = lo["first_stage"]["distances_per_query"]
    x1 = hi["first_stage"]["distances_per_query"]
    t0, t1 = lo["first_stage"]["p50_ms"], hi["first_stage"]["p50_ms"]
    slope = (t1 - t0) / (x1 - x0) if x1 != x0 else t1 / x1
    fixed = t1 - slope * x1
    nprobe = result["parameters"]["nprobe"]
    first = hi["reader_in_memory"]["rss_with_direct_map_mb"] * 2**20 / hi["entries"]
    per_entry = {"first_stage_in_memory": first}
    second = result.get("second_stage")
    if second:
        store = second["store"]
        per_entry.update(
            vectors_for_rescoring=float(sum(second["vector_bytes_per_candidate"])),
            store_reader_memory_measured=store["reader_rss_bytes_per_entry"],
            duckdb_on_disk=store["duckdb_bytes_per_entry"],
            faiss_on_disk=store["faiss_bytes_per_entry"],
        )
    configs = []
    for shards_n in (1, 4, 8, 16):
        per = target // shards_n
        for nlist in (5128, int(4 * math.sqrt(target)), 65536):
            dist = nprobe * per / nlist + nlist
            configs.append(
                {
                    "shards": shards_n,
                    "entries_per_shard": per,
                    "nlist_shared": nlist,
                    "distances_per_query_per_shard": dist,
                    "p50_ms_per_shard": fixed + slope * dist,
                    "p50_ms_per_shard_proportional": t1 * dist / x1,
                    "first_stage_gb_per_shard": first * per / 1e9,
                }
            )
    return {
        "entries": target,
        "latency_model": {
            "ms_per_million_distances": slope * 1e6,
            "fixed_ms": fixed,
            "from_sizes": [lo["entries"], hi["entries"]],
        },
        "bytes_per_entry": per_entry,
        "total_gb": {k: v * target / 1e9 for k, v in per_entry.items()},
        "first_stage_disk_bytes_per_entry": hi["disk_bytes_per_entry"],
        "configs": configs,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--exact-queries", type=int, default=5)
    parser.add_argument("--shards", type=int, nargs="*", default=[4, 8])
    parser.add_argument("--nprobe", type=int, default=256)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--second-stage-entries", type=int, default=150_000)
    parser.add_argument("--project-to", type=int, default=200_000_000)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--noise-spread", type=float, default=0.4)
    parser.add_argument("--token-swaps", type=float, default=0.02)
    parser.add_argument("--codebook", type=int, default=512)
    parser.add_argument("--real-views", type=int, default=40)
    parser.add_argument("--model-views", type=int, default=25)
    parser.add_argument("--synthetic", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/bench_search"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_archive"))
    parser.add_argument("--keep-work", action="store_true")
    parser.add_argument(
        "--project-from",
        type=Path,
        default=None,
        help="only recompute the projection of a saved result (written to --out)",
    )
    parser.add_argument("--probe-read", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--probe-queries", type=Path, default=None, help=argparse.SUPPRESS
    )
    parser.add_argument("--probe-mmap", action="store_true", help=argparse.SUPPRESS)
    add_out_argument(parser, "bench_archive.json")
    args = parser.parse_args(argv)
    args.corpus = "mixtures"
    return args


def measure_size(
    args: argparse.Namespace,
    built: dict[str, Any],
    n: int,
    smallest: bool,
    largest: bool,
) -> tuple[dict[str, Any], Path]:
    """A size's first stage, its exact baseline, its file read in memory and
    memory-mapped (fresh processes), and its alternatives."""
    res = dict(built["info"]["sizes"][n])
    ji, q = built["joints"][n], built["q"]
    res["first_stage"], built["candidates"][n] = first_stage(
        ji, q, built["truth"][n], args
    )
    res["exact_baseline"] = exact_baseline(built["y"], n, q, args.exact_queries)
    res["speedup_over_exact_p50"] = (
        res["exact_baseline"]["p50_ms"] / res["first_stage"]["p50_ms"]
    )
    print(f"  first stage at {n:,}: {json.dumps(res)}", flush=True)
    which = ["ivf_sq8", "ivf_pq13", "ivf_hnsw_quantizer"] if smallest else ["ivf_sq8"]
    res["alternatives"] = alternatives(args, built, n, which)
    if largest and args.shards:
        built["shards"] = shards(args, built, n, ji)
    path = args.work / f"joint_{n}.index"
    t0 = time.perf_counter()
    faiss.write_index(ji.index, str(path))
    res["write_s"] = time.perf_counter() - t0
    res["disk_bytes_per_entry"] = path.stat().st_size / n
    res["codes_bytes_per_entry"] = ji.index.code_size + 8  # codes + id
    del built["joints"][n], ji  # the readers below hold it in other processes
    gc.collect()
    queries = args.work / "queries.npy"
    np.save(queries, q)
    for mmap in (False, True):
        key = "reader_mmap" if mmap else "reader_in_memory"
        res[key] = fresh_read(path, queries, mmap, args)
        print(f"  {key} at {n:,}: {json.dumps(res[key])}", flush=True)
    return res, path


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark (or, with ``--probe-read``, one fresh-process read)."""
    args = parse_args(argv)
    faiss.omp_set_num_threads(1)
    if args.probe_read:
        q = args.probe_queries
        r = probe_read(
            args.probe_read, q, args.probe_mmap, args.nprobe, args.candidates
        )
        print(json.dumps(r))
        return {}
    if args.project_from:
        result = load_result(args.project_from)
        result["projection"] = project(result, args.project_to)
        save_result(result, args.out, print_table)
        return result
    record = RunRecord()
    with thread_limit("1") as threads:
        base = make_base(args)
        from swan_index.store import EncoderInfo

        info = EncoderInfo.from_dict(json.loads(str(base["info"])))
        pool = residual_pool(base, len(info.scales))
        args.work.mkdir(parents=True, exist_ok=True)
        qv = draw(vector_base(base), pool, args, 0, args.queries, stream=12)
        print(f"drawing and indexing {max(args.sizes):,} entries", flush=True)
        built = build_all(args, base, pool, qv)
        sizes = sorted(args.sizes)
        result: dict[str, Any] = {
            "benchmark": "the search at 1M and 10M entries, for a 200M projection",
            "data": "SYNTHETIC mixtures of real-encoder codes, checkpoint 2bc2aef48ac9",
            "parameters": {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in vars(args).items()
                if not k.startswith("probe")
            },
            "build": {k: v for k, v in built["info"].items() if k != "sizes"},
            "sizes": {},
        }
        for n in sizes:
            result["sizes"][str(n)], _ = measure_size(
                args, built, n, n == sizes[0], n == sizes[-1]
            )
        if "shards" in built:
            result["shards"] = built["shards"]
        del built
        gc.collect()
        if args.second_stage_entries:
            print("second stage: building the store", flush=True)
            result["second_stage"] = second_stage(args, base, pool, info)
            print(json.dumps(result["second_stage"]), flush=True)
        if len(sizes) >= 2:
            result["projection"] = project(result, args.project_to)
    result.update(record.finish())
    result["machine"] = machine_info(faiss=faiss.__version__, threads=threads)
    save_result(result, args.out, print_table)
    if not args.keep_work:
        shutil.rmtree(args.work, ignore_errors=True)
    return result


def print_table(result: dict[str, Any]) -> None:
    """The first stage per size, the shards, the second stage."""
    print(
        f"\n{'entries':>11} {'lists':>6} {'p50 ms':>8} {'p95 ms':>8} {'exact ms':>9} "
        f"{'dist/q':>9} {'joint r@10':>10} {'top10 in C':>10} {'B/entry':>8}"
    )
    for r in result["sizes"].values():
        f = r["first_stage"]
        mem = r["reader_in_memory"]["rss_with_direct_map_mb"] * 2**20 / r["entries"]
        print(
            f"{r['entries']:>11,} {r['nlist']:>6} "
            f"{f['p50_ms']:>8.2f} {f['p95_ms']:>8.2f} "
            f"{r['exact_baseline']['p50_ms']:>9.1f} {f['distances_per_query']:>9,.0f} "
            f"{f['joint_recall_at_10']:>10.3f} {f['shape_top10_in_candidates']:>10.3f} "
            f"{mem:>8.0f}"
        )
        for name, a in r["alternatives"].items():
            print(
                f"{'':>11} {name:<18} p50 {a['p50_ms']:.2f} ms, joint r@10 "
                f"{a['joint_recall_at_10']:.3f}, top10 in C "
                f"{a['shape_top10_in_candidates']:.3f}, {a['index_bytes_per_entry']} B"
            )
    for s, r in result.get("shards", {}).items():
        print(
            f"{s} shards: per shard p50 {np.median(r['p50_ms_per_shard']):.2f} ms; "
            f"in turn {r['in_turn']['p50_ms']:.2f} ms, two at a time "
            f"{r['two_at_a_time']['p50_ms']:.2f} ms; candidates equal unsharded "
            f"{r['candidates_equal_unsharded']:.3f} (up to ties at the last "
            f"{r['candidates_equal_up_to_ties_at_the_last']:.3f}); unsharded "
            f"{r['unsharded']['p50_ms']:.2f} ms"
        )
    if "second_stage" in result:
        s = result["second_stage"]
        print(
            f"second stage at {s['entries']:,}: first {s['first_p50_ms']:.2f} ms, "
            f"fetch {s['fetch_p50_ms']:.2f} ms, rank {s['rank_p50_ms']:.2f} ms, "
            f"hits {s['hits_p50_ms']:.2f} ms"
        )


if __name__ == "__main__":
    main()
