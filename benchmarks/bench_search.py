"""Benchmark: search at scale, coarse-to-fine versus ``exact``.

Builds a store of ``--entries`` (default 1,000,000) entries with realistic codes
and metadata, then compares, in the same run and on the same held-out queries,
coarse-to-fine search (several ``nprobe`` / ``--candidates`` settings, and the
first stage before the joint index, ``SearchOptions(joint=False)``) against
``exact=True`` (every entry scored: the ground truth and the baseline):
recall@10, queries per second, p50/p95 latency, with and without a ``where``
filter. It also measures the build rate, the store's size on disk, the reader's
memory per entry and the store open time (both in a fresh process).

**Codes.** Base codes come from the real encoder (``data/cryoswan.pt``) on varied
canonical volumes made the way the training set makes them
(:mod:`encoder.training_data.dataset`): the real maps in ``data/maps`` and
``../shared/data/real/maps`` in augmented views (rotation, low-pass, noise, crops),
maps simulated from the models in ``data/models`` and ``../shared/data/real/models``
(3-12 Å, random rotations, chain subsets), and SYNTHETIC assemblies
(:mod:`encoder.training_data.synthetic`).
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

**Corpora.** ``--corpus replicates`` (the default) is the store above: a
thousand-odd near-duplicate clouds, one per base, so the order at the top of a
result is mostly decided by the perturbations. ``--corpus mixtures`` stores
SYNTHETIC codes with no clouds: entry ``j`` mixes ``MIX_PARTS`` = 3 bases (base
``j mod n_base`` and two at random) with Dirichlet(1, 1, 1) shares, the largest
on the first base, each scale's vector the shares' weighted sum of the bases'
vectors (renormalised) perturbed as above, rg the shares' geometric mean of the
bases' rg; every entry is a distinct code, so the order at the top is decided by
shape. Queries are fresh draws of the same kind. Its JSON is
``bench_search_mixtures.json``.

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

The store is built by :mod:`benchmarks.search_data`, the measurements are in
:mod:`benchmarks.search_measure`.

    $ python -m benchmarks.bench_search [--entries 1000000] [--queries 200] \\
          [--filtered-queries 60] [--threads default 1] [--keep-store]
    $ python -m benchmarks.bench_search --entries 20000 --queries 50   # quick
    $ python -m benchmarks.bench_search --corpus mixtures \\
          --out benchmarks/results/bench_search_mixtures.json
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    ROOT,
    RunRecord,
    add_out_argument,
    machine_info,
    save_result,
)
from benchmarks.search_data import (
    METADATA_CSV,
    METHOD_SHARES,
    base_stats,
    build,
    load_metadata,
    make_base,
    make_queries,
    replicate_stats,
    residual_pool,
)
from benchmarks.search_measure import cold_start, memory, probe_open, search_all


def print_table(result: dict[str, Any]) -> None:
    """Recall, throughput and latency per mode; build, disk, memory and open."""
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docs)."""
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
    parser.add_argument("--nprobe", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--filter-nprobe", type=int, nargs="+", default=[256])
    parser.add_argument(
        "--candidates",
        type=int,
        nargs="*",
        default=[2000],
        help="first-stage candidates to try besides the defaults (overfetch C/10)",
    )
    parser.add_argument(
        "--prune-factors",
        type=int,
        nargs="*",
        default=[],
        help="with the size term: first-stage candidates fetched, as a multiple of "
        "those kept, to try besides the default (JOINT_PRUNE_FACTOR)",
    )
    parser.add_argument(
        "--query-seed",
        type=int,
        default=None,
        help="seed of the held-out queries (default --seed); settings are chosen "
        "on another seed's queries than those reported",
    )
    parser.add_argument(
        "--corpus",
        choices=["replicates", "mixtures"],
        default="replicates",
        help="entries: perturbed replicates of the bases (near-duplicate clouds) "
        "or SYNTHETIC mixtures of bases (distinct codes; see the module docs)",
    )
    parser.add_argument(
        "--no-before",
        dest="before",
        action="store_false",
        help="leave out the mode with the coarsest scale's candidates (before the "
        "joint index)",
    )
    parser.add_argument("--profile", type=int, default=5, help="queries profiled")
    parser.add_argument(
        "--threads",
        nargs="+",
        default=["default", "1"],
        help="thread settings for BLAS and FAISS (OpenMP) to search under, in turn",
    )
    parser.add_argument("--open-probes", type=int, default=3)
    parser.add_argument(
        "--no-cold",
        dest="cold",
        action="store_false",
        help="leave out the cold open (the store's files dropped from the page "
        "cache, then opened and searched)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/bench_search"))
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument(
        "--reuse-store", action="store_true", help="search an existing --store"
    )
    parser.add_argument("--keep-store", action="store_true")
    parser.add_argument("--probe-open", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--probe-profile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe-cold", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe-searches", type=int, default=0, help=argparse.SUPPRESS)
    add_out_argument(parser, "bench_search.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark (or, with ``--probe-open``, one fresh-process open)."""
    args = parse_args(argv)
    if args.probe_open:
        probe = probe_open(
            args.probe_open, args.probe_profile, args.probe_cold, args.probe_searches
        )
        print(json.dumps(probe))
        return {}
    record = RunRecord()
    base = make_base(args)
    from swan_index.store import EncoderInfo

    info = EncoderInfo.from_dict(json.loads(str(base["info"])))
    stats = base_stats(base, len(info.scales), args.seed)
    pool = residual_pool(base, len(info.scales))
    stats.update(replicate_stats(base, args, pool))
    print(json.dumps(stats, indent=1), flush=True)
    meta = load_metadata(METADATA_CSV)
    corpus = "" if args.corpus == "replicates" else f"{args.corpus}_"
    path = args.store or args.cache / f"store_{corpus}{args.entries}"
    order = np.random.default_rng(args.seed).permutation(len(base["rg"]))
    if args.reuse_store and path.exists():
        print(f"store: reusing {path}", flush=True)
        build_info: dict[str, Any] = {"entries": args.entries, "reused": True}
    else:
        print(f"store: building {args.entries:,} entries in {path}", flush=True)
        build_info = build(path, base, meta, args, info, pool)
    record.mark("after_build")
    print("store: fresh-process opens", flush=True)
    mem = memory(path, sum(info.dims), args.open_probes)
    print(json.dumps({k: v for k, v in mem.items() if k != "probes"}), flush=True)
    print("search:", flush=True)
    queries = make_queries(base, args, info, pool)
    search = search_all(path, queries, order, base["kind"], args)
    if args.cold:
        print("store: a cold open (its files dropped from the page cache)", flush=True)
        mem["cold"] = cold_start(path)
    import faiss

    result = {
        "benchmark": "search at scale: coarse-to-fine vs exact",
        "parameters": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if not k.startswith("probe_")
        },
        "method_shares_assumed": METHOD_SHARES,
        "metadata_csv": str(METADATA_CSV.relative_to(ROOT.parent)),
        "base": stats,
        "build": build_info,
        "memory": mem,
        "search": search,
        **record.finish(),
        "machine": machine_info(
            faiss=faiss.__version__, faiss_omp_threads=faiss.omp_get_max_threads()
        ),
    }
    save_result(result, args.out, print_table)
    if not args.keep_store and not args.reuse_store:
        shutil.rmtree(path, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
