"""Benchmark: how the joint first-stage index was chosen, on a tuning draw.

The design of :mod:`swan_index.joint` (PCA dims, how the IVF lists are probed,
lists scanned, candidates) was chosen on draws of entries and queries that the
search benchmark (:mod:`benchmarks.bench_search`, which reports the result) never
uses: the same base codes (``--cache``, real-encoder codes; see that module), but
entries drawn with the random streams ``[seed, 98, start]`` (chunks of
100,000) and queries with ``[seed, 99]`` (the search benchmark uses ``[seed, 1,
start]`` and ``[seed, 2]``). Both corpora: ``replicates`` (near-duplicate
clouds) and ``mixtures`` (SYNTHETIC distinct codes).

For each corpus, against the exact score (mean cosine over the scales minus
0.05 x the size term, every entry), the fraction of the exact top 10 that a
first stage keeps among its candidates (what the exact re-ranking then finds):

* ``coarse``: the coarsest scale's cosine minus the size term over every entry
  (the best the coarse stage could do, with its IVF scanning everything);
* ``pca d``: the whitened joint vector with ``d`` principal axes minus the size
  term, over every entry;
* ``ivf 64`` / ``ivf 32``: an IVF over the 64-axis (32-axis) vectors (``4
  sqrt(N)`` lists) whose lists are chosen by inner product with their
  centroids, or by distance after the inner-product-to-distance reduction
  (``swan_index.joint``; the only one tried with 32 axes), fetching ``2 C``,
  keeping the best ``C`` by joint score minus the size term.

    $ python -m benchmarks.bench_joint_choice [--entries 1000000] [--queries 100]
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import faiss
import numpy as np

from benchmarks.bench_search import parse_args as search_args
from benchmarks.common import RunRecord, add_out_argument, machine_info, save_result
from benchmarks.search_data import make_base, perturb, residual_pool
from swan_index.joint import joint_vectors

SIZE_WEIGHT = 0.05


def recall(truth: np.ndarray, cands: list[np.ndarray]) -> float:
    """Mean fraction of each query's exact top 10 among its candidates."""
    return float(
        np.mean(
            [
                len(set(t) & set(c.tolist())) / 10
                for t, c in zip(truth, cands, strict=True)
            ]
        )
    )


def top(approx: np.ndarray, c: int) -> list[np.ndarray]:
    return list(np.argpartition(-approx, c - 1, axis=1)[:, :c])


def run_corpus(args: argparse.Namespace, corpus: str) -> dict[str, Any]:
    """Every first stage on one corpus (see the module docs)."""
    sargs = search_args(["--cache", str(args.cache), "--seed", str(args.seed)])
    sargs.corpus = corpus
    base = make_base(sargs)
    n_scales = sum(1 for k in base if k.startswith("vectors_"))
    pool = residual_pool(base, n_scales)
    nb = len(base["rg"])
    order = np.random.default_rng(args.seed).permutation(nb)
    parts = []  # in chunks of 100,000 (each its own stream): bounded memory
    for start in range(0, args.entries, 100_000):
        rng = np.random.default_rng([args.seed, 98, start])
        which = order[np.arange(start, min(start + 100_000, args.entries)) % nb]
        parts.append(perturb(base, which, rng, sargs, pool))
    vec = [np.concatenate([p[0][i] for p in parts]) for i in range(n_scales)]
    rg = np.concatenate([p[2] for p in parts])
    del parts
    rng = np.random.default_rng([args.seed, 99])
    qw = rng.choice(nb, args.queries, replace=False)
    qv, _, qrg = perturb(base, qw, rng, sargs, pool)
    gap = np.abs(np.log(qrg)[:, None] - np.log(rg)[None, :]).astype(np.float32)
    x = joint_vectors(vec)
    qx = joint_vectors(qv)
    score = np.vstack([qx[i : i + 20] @ x.T for i in range(0, len(qx), 20)])
    score -= SIZE_WEIGHT * gap
    truth = np.argsort(-score, axis=1)[:, :10]
    del score
    c0 = min(args.candidates)
    out: dict[str, Any] = {
        "coarse": recall(truth, top(qv[0] @ vec[0].T - SIZE_WEIGHT * gap, c0))
    }
    del vec
    sample = x[np.random.default_rng(1).choice(len(x), min(len(x), 200_000), False)]
    for d in args.dims:
        pca = faiss.PCAMatrix(x.shape[1], d)
        pca.train(sample)
        a = faiss.vector_to_array(pca.A).reshape(-1, x.shape[1])[:d]
        mean = faiss.vector_to_array(pca.mean)
        y = ((x - mean) @ a.T).astype(np.float32)
        qy = (qx @ a.T).astype(np.float32)
        out[f"pca {d}"] = recall(truth, top(qy @ y.T - SIZE_WEIGHT * gap, c0))
        if d in (32, 64):  # 32 axes: lists by distance only
            by = ("inner product", "distance") if d == 64 else ("distance",)
            out[f"ivf {d}"] = ivf_sweep(args, y, qy, gap, truth, by)
    print(corpus, out, flush=True)
    return out


def ivf_sweep(
    args: argparse.Namespace,
    y: np.ndarray,
    qy: np.ndarray,
    gap: np.ndarray,
    truth: np.ndarray,
    chosen_by: tuple[str, ...],
) -> list[dict[str, Any]]:
    """Lists chosen by inner product or by distance, lists scanned, candidates."""
    nlist = int(4 * math.sqrt(len(y)))
    train = np.random.default_rng(2).choice(len(y), min(len(y), 64 * nlist), False)
    radius = 1.2 * float(np.linalg.norm(y[train], axis=1).max())
    rows = []
    for probe_by in chosen_by:
        if probe_by == "inner product":
            data, q = y, qy
            index = faiss.IndexIVFFlat(
                faiss.IndexFlatIP(y.shape[1]),
                y.shape[1],
                nlist,
                faiss.METRIC_INNER_PRODUCT,
            )
        else:
            extra = np.sqrt(np.maximum(radius**2 - np.einsum("ij,ij->i", y, y), 0))
            data = np.hstack([y, extra[:, None]]).astype(np.float32)
            q = np.hstack([qy, np.zeros((len(qy), 1))]).astype(np.float32)
            index = faiss.IndexIVFFlat(
                faiss.IndexFlatL2(data.shape[1]), data.shape[1], nlist
            )
        index.train(np.ascontiguousarray(data[train]))
        index.add(np.ascontiguousarray(data))
        for nprobe in args.nprobe:
            index.nprobe = nprobe
            for c in args.candidates:
                t0 = time.perf_counter()
                _, found = index.search(q, 2 * c)
                ms = (time.perf_counter() - t0) / len(q) * 1000
                cands = []
                for j in range(len(q)):
                    ids = found[j][found[j] >= 0]
                    s = qy[j] @ y[ids].T - SIZE_WEIGHT * gap[j, ids]
                    cands.append(ids[np.argsort(-s)[:c]])
                rows.append(
                    {
                        "lists_chosen_by": probe_by,
                        "nlist": nlist,
                        "nprobe": nprobe,
                        "candidates": c,
                        "fetched": 2 * c,
                        "recall_at_10": recall(truth, cands),
                        "ivf_ms_per_query": ms,
                    }
                )
                print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--corpus", nargs="+", default=["replicates", "mixtures"])
    parser.add_argument("--dims", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--candidates", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default="/tmp/bench_search")
    add_out_argument(parser, "bench_joint_choice.json")
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(1)
    record = RunRecord()
    result = {
        "benchmark": "joint first stage: the choice, on a tuning draw",
        "parameters": {k: v for k, v in vars(args).items()},
        "size_weight": SIZE_WEIGHT,
        "corpora": {c: run_corpus(args, c) for c in args.corpus},
        **record.finish(),
        "machine": machine_info(faiss=faiss.__version__),
    }
    save_result(result, args.out)
    return result


if __name__ == "__main__":
    main()
