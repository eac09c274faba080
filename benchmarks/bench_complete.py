"""Benchmark: completion of partial maps by the latent prior, and ``swan search
--complete``, on the retrieval benchmark's incomplete queries.

The draw is the retrieval benchmark's (:mod:`benchmarks.retrieval.run`: the same
gallery and queries for the same arguments; molecules held out of the encoder's
and the prior's training). Its ``incomplete`` queries are **simulated** maps of a
held-out model with 10-35 % of its residues left out (termini, internal
stretches or whole chains; :mod:`benchmarks.retrieval.incomplete`). Per query,
side by side:

* ``plain``: the product's search (``cryo-swan+fit``, what ``swan search FILE``
  runs);
* ``complete``: ``swan search --complete``: the same search with the query and
  with its completion (:func:`swan_index.generate.completion_of`, every
  candidate pose restored by the prior at ``--strength``), each entry keeping
  the better hit (:func:`swan_index.generate.search_with_completion`);
* ``completion-only``: the completion alone as the query.

Metrics: P@1, MRR and R@10 per method (:mod:`swan_index.retrieval`); and the
whole-molecule correlation: the rotational fit's best correlation
(:class:`swan_index.fit.FitQuery`) of the input, and of its completion, with the
stored preview of the molecule's reference map (the complete truth). The default
strength was chosen on draw seed 0 (:mod:`swan_index.commands.complete`); report
seeds 1 and 2.

    $ python -m benchmarks.bench_complete --seeds 1 2 [--synthetic 12] \\
          [--distractors 20] [--shapes-limit 2] [--strength 0.6]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import add_out_argument, machine_info, save_result
from benchmarks.retrieval.run import (
    OURS,
    _build_store,
    _gallery_and_queries,
    _prepare,
    add_draw_arguments,
    drop_missing_data,
)
from swan_index import MapEncoder
from swan_index.commands.complete import DEFAULT_STRENGTH
from swan_index.fit import FitQuery
from swan_index.generate import (
    DEFAULT_PRIOR,
    Generator,
    completion_of,
    search_with_completion,
)
from swan_index.query import search
from swan_index.ranking import SearchOptions
from swan_index.retrieval import rank_metrics, summarize

METHODS = ("plain", "complete", "completion-only")


def run_draw(args: argparse.Namespace, seed: int, gen: Generator) -> list[dict]:
    """Rows (one per query and method) of one draw."""
    draw = argparse.Namespace(**{**vars(args), "seed": seed})
    encoder = MapEncoder(args.checkpoint)
    gallery, queries = _gallery_and_queries(draw)
    queries = [q for q in queries if q.condition == "incomplete"]
    _prepare(gallery, encoder, as_queries=False)
    _prepare(queries, encoder, as_queries=True)
    opts = SearchOptions(
        **{k: v for k, v in OURS["cryo-swan+fit"].items() if k != "poses"}
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = _build_store(Path(tmp) / "bench.swan", gallery, encoder)
        group_of = {it.entry_id: it.group for it in gallery}
        size: dict[str, int] = defaultdict(int)
        for it in gallery:
            size[it.group] += 1
        truth = {it.group: it.entry_id for it in gallery if it.condition == "reference"}
        k = len(gallery)
        for q in queries:
            if size[q.group] < 1 or q.group not in truth:
                continue
            t0 = time.perf_counter()
            completion = completion_of(q.query, gen, encoder, args.strength, seed)
            complete_s = time.perf_counter() - t0
            ranked = {
                "plain": search(store, q.query, k, opts, significance=False),
                "complete": search_with_completion(store, q.query, completion, k, opts)[
                    0
                ],
                "completion-only": search(
                    store, completion, k, opts, significance=False
                ),
            }
            preview = store.get_preview(truth[q.group])
            whole_input = float(FitQuery(q.query.volumes).score(preview[None])[0])
            whole_done = float(FitQuery(completion.volumes).score(preview[None])[0])
            for method, hits in ranked.items():
                labels = [group_of[h.id] for h in hits]
                rows.append(
                    {
                        "seed": seed,
                        "query": q.name,
                        "group": q.group,
                        "method": method,
                        "top": labels[0] if labels else None,
                        "whole_corr_input": whole_input,
                        "whole_corr_completion": whole_done,
                        "completion_s": complete_s,
                        **rank_metrics(labels, q.group, size[q.group]),
                    }
                )
        store.close()
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    gen = Generator.load(args.checkpoint, args.prior)
    rows: list[dict] = []
    for seed in args.seeds:
        rows += run_draw(args, seed, gen)
    plain = [r for r in rows if r["method"] == "plain"]
    return {
        "benchmark": "completion by the latent prior and search --complete, on "
        "the retrieval benchmark's incomplete queries (simulated)",
        "checkpoint": str(args.checkpoint),
        "encoder": gen.encoder.checkpoint_hash[:12],
        "prior": gen.prior_hash[:12],
        "strength": args.strength,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "summary": {
            m: {
                "all": summarize(r for r in rows if r["method"] == m),
                **{
                    f"seed {s}": summarize(
                        r for r in rows if r["method"] == m and r["seed"] == s
                    )
                    for s in args.seeds
                },
            }
            for m in METHODS
        },
        "whole_molecule_correlation": {
            "input_median": float(np.median([r["whole_corr_input"] for r in plain])),
            "completion_median": float(
                np.median([r["whole_corr_completion"] for r in plain])
            ),
            "completion_better": int(
                sum(r["whole_corr_completion"] > r["whole_corr_input"] for r in plain)
            ),
            "queries": len(plain),
        },
        "completion_seconds_median": float(
            np.median([r["completion_s"] for r in plain])
        ),
        "rows": rows,
        "machine": machine_info(),
    }


def print_table(result: dict[str, Any]) -> None:
    print(
        f"strength {result['strength']}, prior {result['prior']}, "
        f"encoder {result['encoder']}"
    )
    for method, by in result["summary"].items():
        cells = "  ".join(
            f"{name}: P@1 {s['p_at_1']:.3f} (n={s['n']})" for name, s in by.items()
        )
        print(f"{method:16s} {cells}")
    w = result["whole_molecule_correlation"]
    print(
        f"correlation with the whole molecule, median: input {w['input_median']:.3f}"
        f", completion {w['completion_median']:.3f}; completion better on "
        f"{w['completion_better']} of {w['queries']}"
    )
    print(f"completion: {result['completion_seconds_median']:.1f} s per query")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_draw_arguments(parser)
    parser.set_defaults(synthetic=12, distractors=20, shapes_limit=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--strength", type=float, default=DEFAULT_STRENGTH)
    parser.add_argument("--prior", type=Path, default=DEFAULT_PRIOR)
    add_out_argument(parser, "bench_complete.json")
    args = drop_missing_data(parser.parse_args(argv))
    return save_result(run(args), args.out, print_table, rows_key="rows")


if __name__ == "__main__":
    main()
