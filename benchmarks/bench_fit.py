"""Benchmark: what the rotational fit costs a search, against the alternatives.

The fit (:mod:`swan_index.fit`) re-scores the best ``FIT_TOP`` (200) hits of a
search. This measures, in one run and on the same queries and entries, the time
per query of:

* ``fit build``: turning the query through every rotation of the grid (once per
  search, whatever the store's size);
* ``fit score``: scoring the 200 entries' previews (rotations, local refinement,
  shifts), as a query's first search does;
* ``fit score, again``: the same with the local turns the query kept from its
  previous search (a server's stored-entry query searched again,
  :class:`swan_index.fit.FitCache`; no build either);
* ``fit score, no refine/shift``: the rotation grid alone;
* ``vectors``: the learned retrieval vectors of the same 200 entries (408 floats
  each), the step the fit follows;
* ``canonical correlation``: the query's candidate poses against the 200 entries'
  64^3 canonical volumes (the retrieval benchmark's baseline).

The fit's cost does not grow with the store; the canonical correlation's does:
``break_even_entries`` is the archive size at which they cost the same.

``old fit build`` and ``old fit score`` are the same steps by the fit as it was
at ``--baseline`` (default :data:`benchmarks.baseline.BASELINE_COMMIT`, loaded
from git history), in the same run; ``old_vs_new_max_abs_diff`` is the largest
difference between the two fits' scores over every query and entry.

Queries are the real maps of ``data/maps`` in their candidate poses; the entries
are SIMULATED: those maps under random rotations, so the timings do not depend
on what the entries show. Ratios to ``canonical correlation`` are what to
compare across machines (they are noisy: run it alone).

    $ python -m benchmarks.bench_fit [--entries 200] [--repeats 3] [--baseline REV]
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from benchmarks.baseline import BASELINE_COMMIT, module_at, resolve
from benchmarks.common import (
    ROOT,
    add_out_argument,
    machine_info,
    save_result,
    time_calls,
)
from ingest import find_entries
from swan_index.fit import FitQuery
from swan_index.map_encoder import MapEncoder
from swan_index.prepare import PREVIEW_GRID, prepare_entry, shrink
from swan_index.ranking import FIT_TOP


def _turned(volume: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rot = Rotation.random(random_state=rng).as_matrix()
    c = (np.array(volume.shape) - 1) / 2.0
    return ndimage.affine_transform(volume, rot, offset=c - rot @ c, order=1)


def _median_ms(fn: Any, repeats: int) -> float:
    return 1000 * float(np.median(time_calls(fn, repeats)[0]))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Time every step on every query (see the module docs)."""
    encoder = MapEncoder()
    prepared = [
        prepare_entry(e, encoder.grid, all_poses=True)
        for e in find_entries(ROOT / "data" / "maps")
    ]
    rng = np.random.default_rng(0)
    volumes = np.stack(
        [
            _turned(prepared[i % len(prepared)].volumes[0], rng)
            for i in range(args.entries)
        ]
    )
    previews = np.stack([shrink(v, PREVIEW_GRID) for v in volumes])
    flat = volumes.reshape(len(volumes), -1)
    flat = flat - flat.mean(1, keepdims=True)
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)
    vectors = list(encoder.encode(volumes).vectors)
    old = module_at(args.baseline, "swan_index/fit.py", "baseline_fit")
    rows, diff = [], 0.0
    for p in prepared:
        q = p.volumes
        code = encoder.encode(q)
        fit = FitQuery(q)
        old_fit = old.FitQuery(q)
        diff = max(
            diff, float(np.abs(fit.score(previews) - old_fit.score(previews)).max())
        )
        qf = q.reshape(len(q), -1)
        qf = qf - qf.mean(1, keepdims=True)
        qf /= np.linalg.norm(qf, axis=1, keepdims=True)
        timings = {
            "fit build": _median_ms(lambda q=q: FitQuery(q), args.repeats),
            # a first search: without the local turns a query keeps
            "fit score": _median_ms(
                lambda f=fit: (f.forget(), f.score(previews)), args.repeats
            ),
            # the same query searched again (a server's stored-entry query)
            "fit score, again": _median_ms(
                lambda f=fit: f.score(previews), args.repeats
            ),
            "fit score, no refine/shift": _median_ms(
                lambda f=fit: f.score(previews, shift=0, refine=0), args.repeats
            ),
            "old fit build": _median_ms(lambda q=q: old.FitQuery(q), args.repeats),
            "old fit score": _median_ms(
                lambda f=old_fit: f.score(previews), args.repeats
            ),
            "vectors": _median_ms(
                lambda c=code: [c.vectors[i] @ v.T for i, v in enumerate(vectors)],
                args.repeats,
            ),
            "canonical correlation": _median_ms(
                lambda x=qf: (x @ flat.T).max(axis=0), args.repeats
            ),
        }
        rows.append({"query": p.record.source_path, "poses": len(q), **timings})
    keys = [k for k in rows[0] if k not in ("query", "poses")]
    median = {k: round(float(np.median([r[k] for r in rows])), 2) for k in keys}
    base = median["canonical correlation"]
    per_entry = base / args.entries
    fit_total = median["fit build"] + median["fit score"]
    old_total = median["old fit build"] + median["old fit score"]
    return {
        "benchmark": "rotational fit cost per query",
        "entries": args.entries,
        "fit_top": FIT_TOP,
        "note": "entries are SIMULATED (real sample maps under random rotations)",
        "median_ms": median,
        "ratio_to_canonical_correlation": {
            k: round(v / base, 2) for k, v in median.items()
        },
        # the fit is a fixed cost per query (it re-scores FIT_TOP hits whatever
        # the store's size); the canonical correlation grows with the archive
        "canonical_ms_per_entry": round(per_entry, 4),
        "fit_ms_per_query": round(fit_total, 2),
        "old_fit_ms_per_query": round(old_total, 2),
        # a stored entry's query searched again by a server (FitCache): no build
        "fit_ms_per_query_again": median["fit score, again"],
        "speedup": round(old_total / fit_total, 2),
        "baseline": resolve(args.baseline),
        "old_vs_new_max_abs_diff": diff,
        "break_even_entries": int(round(fit_total / per_entry)),
        "rows": rows,
        "machine": machine_info(),
    }


def print_table(result: dict[str, Any]) -> None:
    """Median ms per step, its ratio to the canonical correlation, the break-even."""
    print(f"{result['entries']} entries; median ms per query (ratio to canonical)")
    for k, v in result["median_ms"].items():
        ratio = result["ratio_to_canonical_correlation"][k]
        print(f"  {k:28s} {v:9.2f} ms  x{ratio:.2f}")
    print(
        f"fit build + score {result['fit_ms_per_query']:.0f} ms per query = the "
        f"canonical correlation of {result['break_even_entries']} entries"
    )
    print(
        f"old fit {result['old_fit_ms_per_query']:.0f} ms per query "
        f"({result['baseline'][:12]}): x{result['speedup']:.1f}; scores differ by "
        f"at most {result['old_vs_new_max_abs_diff']:.2g}"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; save and return the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=FIT_TOP)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE_COMMIT, help="git revision")
    add_out_argument(parser, "bench_fit.json")
    args = parser.parse_args(argv)
    return save_result(run(args), args.out, print_table)


if __name__ == "__main__":
    main()
