"""Benchmark: completing SIMULATED cut-outs of a dataset's validation split.

Each validation volume loses 10-35 % of its density (a plane or a ball cut,
:func:`encoder.completion.completion_pair`; a seed of its own, not the
training pairs'), is canonicalized in its own frame, and is completed; the
truth is the whole volume in that frame. Side by side per pair: the partial map
itself, the encoder's reconstruction of it (no prior), the scales prior
restoring it (what ``swan complete`` did before the completion prior) and the
completion prior, each at every ``--strength``. Measures: Pearson correlation
and IoU at the surface (0.5) with the whole, and the share of the missing
density (whole minus partial, above the surface) the output holds.

The validation split's molecules are outside the training split the priors
learnt from; the retrieval benchmark's held-out molecules are not used here, so
this is where the completion's strength is chosen (docs/prior.md).

    $ python -m benchmarks.bench_completion_pairs --dataset runs/ds \\
          [--priors data/prior.pt data/completion.pt] [--strength 0.3 0.6 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import add_out_argument, machine_info, save_result
from encoder.completion import completion_pair
from encoder.training_data.dataset import load_split
from swan_index.generate import DEFAULT_COMPLETION_PRIOR, DEFAULT_PRIOR, Generator
from swan_index.map_encoder import DEFAULT_CHECKPOINT

SURFACE = 0.5


def scores(made: np.ndarray, whole: np.ndarray, partial: np.ndarray) -> dict:
    """Pearson and IoU with ``whole``; the share of the missing part recovered."""
    a, b = made.ravel().astype(np.float64), whole.ravel().astype(np.float64)
    pearson = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 else 0.0
    m, w = made >= SURFACE, whole >= SURFACE
    union = int((m | w).sum())
    missing = w & ~(partial >= SURFACE)
    return {
        "pearson": pearson,
        "iou": float((m & w).sum() / union) if union else 0.0,
        "missing_found": float((m & missing).sum() / missing.sum())
        if missing.any()
        else float("nan"),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    volumes = load_split(args.dataset, args.split)
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(volumes), min(args.items, len(volumes)), replace=False)
    gens = [Generator.load(args.checkpoint, p) for p in args.priors]
    tasks = ["completion prior" if g.completes else "scales prior" for g in gens]
    if len(set(tasks)) < len(tasks):  # two priors of one task: name their files
        tasks = [f"{t} {p}" for t, p in zip(tasks, args.priors, strict=True)]
    rows = []
    for i in sorted(pick.tolist()):
        try:
            partial, whole, cut = completion_pair(volumes[i] / 255.0, rng)
        except ValueError:
            continue
        base = {"item": i, **cut}
        rows.append({**base, "method": "partial", **scores(partial, whole, partial)})
        recon = gens[0].autoencode(partial[None])[0]
        rows.append({**base, "method": "encoder", **scores(recon, whole, partial)})
        for gen, task in zip(gens, tasks, strict=True):
            for s in args.strength:
                made = gen.restore(partial[None], s, seed=args.seed)[0]
                rows.append(
                    {
                        **base,
                        "method": f"{task} s={s:g}",
                        **scores(made, whole, partial),
                    }
                )
    methods = list(dict.fromkeys(r["method"] for r in rows))
    summary = {
        m: {
            key: float(np.nanmean([r[key] for r in rows if r["method"] == m]))
            for key in ("pearson", "iou", "missing_found")
        }
        for m in methods
    }
    return {
        "benchmark": "completion of SIMULATED cut-outs of the validation split",
        "dataset": str(args.dataset),
        "split": args.split,
        "priors": {
            str(p): g.prior_hash[:12] for p, g in zip(args.priors, gens, strict=True)
        },
        "encoder": gens[0].encoder.checkpoint_hash[:12],
        "pairs": len(rows) // max(len(methods), 1),
        "summary": summary,
        "rows": rows,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "machine": machine_info(),
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"{result['pairs']} pairs of {result['split']} ({result['priors']})")
    print(f"{'method':28s} pearson   iou  missing found")
    for m, s in result["summary"].items():
        print(f"{m:28s} {s['pearson']:.4f} {s['iou']:.4f} {s['missing_found']:.4f}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=Path("runs/ds"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--items", type=int, default=120)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument(
        "--priors",
        type=Path,
        nargs="+",
        default=[p for p in (DEFAULT_PRIOR, DEFAULT_COMPLETION_PRIOR) if p.exists()],
    )
    parser.add_argument("--strength", type=float, nargs="+", default=[0.3, 0.6, 1.0])
    parser.add_argument("--seed", type=int, default=7)
    add_out_argument(parser, "bench_completion_pairs.json")
    args = parser.parse_args(argv)
    return save_result(run(args), args.out, print_table, rows_key="rows")


if __name__ == "__main__":
    main()
