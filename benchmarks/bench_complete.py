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
  the better hit (:func:`swan_index.generate.merge_completion`: by each
  hit's excess over its own query's background; ``complete by raw score``:
  by raw score, the earlier rule, from the same two searches);
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
from functools import partial
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
    CENTER_WEIGHT,
    COMPLETION_DRAWS,
    COMPLETION_KEEPS_DATA,
    DEFAULT_COMPLETION_PRIOR,
    DEFAULT_PRIOR,
    Generator,
    completion_of,
    hub_centers,
    merge_completion,
)
from swan_index.query import search, search_explained
from swan_index.ranking import SearchOptions
from swan_index.retrieval import rank_metrics, summarize


def completer_label(gen: Generator, strength: float) -> str:
    """How a completer is named in the rows: its prior's task and strength."""
    task = "completion prior" if gen.completes else "scales prior"
    return f"{task} {gen.prior_hash[:12]}, s={strength:g}"


def run_draw(
    args: argparse.Namespace, seed: int, completers: list[tuple[Generator, float]]
) -> list[dict]:
    """Rows (one per query and method) of one draw: ``plain``, then for every
    completer (a prior and a strength) ``complete`` and ``completion-only``."""
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
            preview = store.get_preview(truth[q.group])
            whole_input = float(FitQuery(q.query.volumes).score(preview[None])[0])
            plain = search(store, q.query, k, opts, significance=False)
            base = {
                "seed": seed,
                "query": q.name,
                "group": q.group,
                "whole_corr_input": whole_input,
            }

            def row(method: str, hits: list, base: dict = base, **more: Any) -> dict:
                labels = [group_of[h.id] for h in hits]
                return {
                    **base,
                    "method": method,
                    "top": labels[0] if labels else None,
                    **more,
                    **rank_metrics(labels, base["group"], size[base["group"]]),
                }

            rows.append(row("plain", plain))
            if args.center_weight:  # the map alone, less each entry's background
                got, sig0 = search_explained(store, q.query, k, opts)
                centers = hub_centers(store, got, opts, q.query.fit() is not None)
                for w in args.center_weight:
                    alone_w = merge_completion(
                        got, sig0, [], q.query, k, centers=centers, center_weight=w
                    )[0]
                    rows.append(row(f"plain less entry background x{w:g}", alone_w))
            for gen, strength in completers:
                label = completer_label(gen, strength)
                t0 = time.perf_counter()
                try:
                    completion = completion_of(
                        q.query,
                        gen,
                        encoder,
                        strength,
                        seed,
                        draws=args.draws,
                        keep_data=args.keep_data,
                    )
                except ValueError as err:  # an empty completion: the map alone
                    print(f"{q.name}: {err}")
                    completion = None
                complete_s = time.perf_counter() - t0
                if completion is None:
                    both, by_excess, by_score, by_sum = plain, plain, plain, plain
                    alone, whole_done = [], float("nan")
                    weighted = {w: plain for w in args.center_weight}
                else:  # every merge from the same two searches
                    hits, sig = search_explained(store, q.query, k, opts)
                    alone, _ = search_explained(store, completion, k, opts)
                    centers = None
                    if args.center_weight or CENTER_WEIGHT:
                        centers = hub_centers(
                            store, [*hits, *alone], opts, q.query.fit() is not None
                        )

                    merge = partial(merge_completion, hits, sig, alone, q.query, k)
                    both = merge("excess", centers, CENTER_WEIGHT)[0]
                    by_excess = merge("excess")[0]
                    by_score, by_sum = merge("score")[0], merge("sum")[0]
                    weighted = {
                        w: merge("excess", centers, w)[0] for w in args.center_weight
                    }
                    whole_done = float(
                        FitQuery(completion.volumes).score(preview[None])[0]
                    )
                more = {"whole_corr_completion": whole_done, "completion_s": complete_s}
                rows.append(row(f"complete ({label})", both, **more))
                rows.append(
                    row(f"complete by excess alone ({label})", by_excess, **more)
                )
                for w, got_w in weighted.items():
                    rows.append(
                        row(
                            f"complete less entry background x{w:g} ({label})",
                            got_w,
                            **more,
                        )
                    )
                rows.append(row(f"complete by raw score ({label})", by_score, **more))
                rows.append(row(f"complete by summed excess ({label})", by_sum, **more))
                rows.append(row(f"completion-only ({label})", alone, **more))
        store.close()
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    completers = [
        (Generator.load(args.checkpoint, prior), strength)
        for prior in args.prior
        for strength in args.strength
    ]
    rows: list[dict] = []
    for seed in args.seeds:
        rows += run_draw(args, seed, completers)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    whole = {}
    for gen, strength in completers:
        label = completer_label(gen, strength)
        done = [r for r in rows if r["method"] == f"complete ({label})"]
        ok = [r for r in done if np.isfinite(r["whole_corr_completion"])]
        whole[label] = {
            "input_median": float(np.median([r["whole_corr_input"] for r in done])),
            "completion_median": float(
                np.median([r["whole_corr_completion"] for r in ok])
            )
            if ok
            else None,
            "completion_better": int(
                sum(r["whole_corr_completion"] > r["whole_corr_input"] for r in ok)
            ),
            "empty_completions": len(done) - len(ok),
            "queries": len(done),
            "completion_seconds_median": float(
                np.median([r["completion_s"] for r in done])
            ),
        }
    return {
        "benchmark": "completion by the latent priors and search --complete, on "
        "the retrieval benchmark's incomplete queries (simulated)",
        "checkpoint": str(args.checkpoint),
        "encoder": completers[0][0].encoder.checkpoint_hash[:12],
        "priors": {
            str(p): gen.prior_hash[:12]
            for p, (gen, _) in zip(
                args.prior, completers[:: len(args.strength)], strict=True
            )
        },
        "strengths": list(args.strength),
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
            for m in methods
        },
        "whole_molecule_correlation": whole,
        "rows": rows,
        "machine": machine_info(),
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"priors {result['priors']}, encoder {result['encoder']}")
    for method, by in result["summary"].items():
        cells = "  ".join(
            f"{name}: P@1 {s['p_at_1']:.3f} (n={s['n']})" for name, s in by.items()
        )
        print(f"{method:58s} {cells}")
    for label, w in result["whole_molecule_correlation"].items():
        done = w["completion_median"]
        print(
            f"{label}: correlation with the whole molecule, median: input "
            f"{w['input_median']:.3f}, completion "
            f"{'-' if done is None else f'{done:.3f}'}; completion better on "
            f"{w['completion_better']} of {w['queries']} "
            f"({w['empty_completions']} empty); "
            f"{w['completion_seconds_median']:.1f} s per query"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_draw_arguments(parser)
    parser.set_defaults(synthetic=12, distractors=20, shapes_limit=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--draws",
        type=int,
        default=COMPLETION_DRAWS,
        help="completion prior: draws per query (default %(default)s)",
    )
    parser.add_argument(
        "--keep-data",
        action=argparse.BooleanOptionalAction,
        default=COMPLETION_KEEPS_DATA,
        help="completion prior: keep the map's own density where it has some",
    )
    parser.add_argument("--strength", type=float, nargs="+", default=[DEFAULT_STRENGTH])
    parser.add_argument(
        "--prior",
        type=Path,
        nargs="+",
        default=[p for p in (DEFAULT_PRIOR, DEFAULT_COMPLETION_PRIOR) if p.exists()],
        help="priors to complete with (a scales prior restores every pose where "
        "it is; a completion prior draws the whole molecule, canonicalized again)",
    )
    parser.add_argument(
        "--center-weight",
        type=float,
        nargs="*",
        default=[],
        help="also rank by the excess less this times each entry's own "
        f"background (the shipped merge uses {CENTER_WEIGHT:g}; 0: the query's "
        "background alone), for the map alone and merged",
    )
    add_out_argument(parser, "bench_complete.json")
    args = drop_missing_data(parser.parse_args(argv))
    return save_result(run(args), args.out, print_table, rows_key="rows")


if __name__ == "__main__":
    main()
