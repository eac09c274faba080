"""Retrieval with the rotational fit, this code's fit against a baseline commit's.

The retrieval benchmark's draw (:mod:`benchmarks.retrieval.run`: the same
gallery, queries and options for the same arguments) searched twice per query,
exactly as its ``cryo-swan+fit`` and ``fit-only`` methods search: once with
:mod:`swan_index.fit` as it is, once with ``swan_index/fit.py`` as it was at
``--baseline`` (from git history; :func:`benchmarks.baseline.module_at`). The
rank and hits stages are this code's in both. Reported per method: P@1 overall
and per condition for both fits, and the queries whose top hit differs (it
should be none: the fits compute the same scores).

    $ python -m benchmarks.retrieval.fit_compare --synthetic 4 --distractors 6 \\
          --shapes-limit 1 [--baseline REV] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.baseline import BASELINE_COMMIT, module_at, resolve
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
from swan_index.ranking import SearchOptions

METHODS = ("cryo-swan+fit", "fit-only")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Search every query with both fits; count P@1 per condition."""
    old = module_at(args.baseline, "swan_index/fit.py", "baseline_fit")
    import swan_index.fit as new

    encoder = MapEncoder(args.checkpoint)
    gallery, queries = _gallery_and_queries(args)
    _prepare(gallery, encoder, as_queries=False)
    _prepare(queries, encoder, as_queries=True)
    hits: dict[str, dict[str, list[int]]] = defaultdict(dict)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = _build_store(Path(tmp) / "bench.swan", gallery, encoder)
        group_of = {it.entry_id: it.group for it in gallery}
        size = defaultdict(int)
        for it in gallery:
            size[it.group] += 1
        for q in queries:
            self_id = q.entry_id if q.kind == "real-map" else -1
            if size[q.group] - (1 if self_id >= 0 else 0) < 1:
                continue
            fits = {"new": new.FitQuery(q.query.volumes)}
            fits["old"] = old.FitQuery(q.query.volumes)
            for method in METHODS:
                opts = SearchOptions(**OURS[method])
                row = {"query": q.name, "condition": q.condition, "method": method}
                for code, mod in (("new", new), ("old", old)):
                    k = len(gallery)
                    ranking = store.rank(q.query.code, k, opts, rg=q.query.rg, fit=True)
                    mod.apply_fit(ranking, fits[code])
                    top = [h.id for h in store.hits(ranking) if h.id != self_id]
                    row[f"top_{code}"] = group_of[top[0]] if top else None
                    row[f"p_at_1_{code}"] = float(row[f"top_{code}"] == q.group)
                    hits[method][f"{q.name}/{code}"] = top[:10]
                rows.append(row)
        store.close()
    summary: dict[str, Any] = {}
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        by_cond: dict[str, dict[str, float]] = {}
        for cond in sorted({r["condition"] for r in mine}):
            sub = [r for r in mine if r["condition"] == cond]
            by_cond[cond] = {
                "n": len(sub),
                "p_at_1_new": sum(r["p_at_1_new"] for r in sub) / len(sub),
                "p_at_1_old": sum(r["p_at_1_old"] for r in sub) / len(sub),
            }
        summary[method] = {
            "n": len(mine),
            "p_at_1_new": sum(r["p_at_1_new"] for r in mine) / max(len(mine), 1),
            "p_at_1_old": sum(r["p_at_1_old"] for r in mine) / max(len(mine), 1),
            "top_hit_differs": [
                r["query"] for r in mine if r["top_new"] != r["top_old"]
            ],
            "top10_differs": sum(
                hits[method][f"{r['query']}/new"] != hits[method][f"{r['query']}/old"]
                for r in mine
            ),
            "by_condition": by_cond,
        }
    return {
        "benchmark": "retrieval with the rotational fit: this fit vs a baseline's",
        "baseline": resolve(args.baseline),
        "settings": {k: str(v) for k, v in vars(args).items()},
        "gallery": len(gallery),
        "summary": summary,
        "rows": rows,
        "machine": machine_info(),
    }


def print_table(result: dict[str, Any]) -> None:
    for method, s in result["summary"].items():
        print(
            f"{method}: {s['n']} queries, P@1 new {s['p_at_1_new']:.4f} old "
            f"{s['p_at_1_old']:.4f}; top hit differs on {len(s['top_hit_differs'])},"
            f" top 10 on {s['top10_differs']}"
        )
        for cond, c in s["by_condition"].items():
            print(
                f"  {cond:16s} n={c['n']:3d} new {c['p_at_1_new']:.3f} "
                f"old {c['p_at_1_old']:.3f}"
            )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_draw_arguments(parser)
    parser.add_argument("--baseline", default=BASELINE_COMMIT, help="git revision")
    add_out_argument(parser, "bench_retrieval_fit_compare.json")
    args = drop_missing_data(parser.parse_args(argv))
    return save_result(run(args), args.out, print_table, rows_key="rows")


if __name__ == "__main__":
    main()
