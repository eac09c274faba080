"""Benchmark: Cryo-SWAN reconstruction against baselines at equal bits and budget.

Trains, in one run and with the same data, batch size, learning rate, seed and
number of steps:

* ``cryoswan``: the default Cryo-SWAN model (KL term off);
* ``cryoswan-kl``: the same with the KL term on (``--kl-weight``), the ablation
  that decides the default;
* ``single-scale``: a single-scale VQ-VAE at ~equal bits;
* ``plain-ae``: a plain convolutional autoencoder with a quantized latent at
  ~equal bits;

then evaluates each on the dataset's held-out test split (IoU at the contour,
Pearson correlation, bits per map, per kind of item and, for Cryo-SWAN, per number
of scales used), reports codebook usage (perplexity and dead codes per scale), and
writes JSON.

    $ python -m benchmarks.bench_recon --dataset runs/ds --steps 6000 \\
          --out benchmarks/results/bench_recon.json --checkpoints runs/bench

(from the repository root; ``benchmarks/recon_parallel.sh`` runs several at once).

Variants of the model config: ``--set key=value`` (JSON values; lists become
tuples) changes the base config of every run, and ``--label`` names the run. Runs
can go in separate processes (on one GPU, say) and be merged afterwards:

    $ python -m benchmarks.bench_recon --dataset runs/ds --runs cryoswan \\
          --set prefix_trains_encoder=false --label cryoswan-pd --out a.json
    $ python -m benchmarks.bench_recon --merge a.json b.json --out all.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.common import ROOT
from encoder.checkpoint import load_checkpoint
from encoder.evaluate import codebook_usage, evaluate_recon
from encoder.model import CryoSwanConfig
from encoder.train import TrainConfig, train
from encoder.training_data import load_split

RUNS = {
    "cryoswan": ("cryoswan", {}),
    "cryoswan-kl": ("cryoswan", {"kl_weight": None}),
    "single-scale": ("single-scale", {}),
    "plain-ae": ("plain-ae", {}),
}


def _overrides(items: list[str]) -> dict:
    """``key=value`` strings -> config overrides (JSON values, lists as tuples)."""
    out = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def merge(paths: list[Path], out: Path, reference: str = "cryoswan") -> dict:
    """One result file from several runs' files (the first one's header). Each
    run keeps its own file's budget, seed and precision (files written before
    runs recorded them carry them in their header only)."""
    results: dict | None = None
    for path in paths:
        part = json.loads(path.read_text())
        header = part.get("budget", {})
        for run in part["runs"].values():
            if "steps" in header:
                run.setdefault(
                    "budget",
                    {"steps": header["steps"], "minutes": header.get("minutes")},
                )
            for key in ("seed", "precision"):
                if key in header:
                    run.setdefault(key, header[key])
        if results is None:
            results = part
        else:
            results["runs"].update(part["runs"])
    summary = summarize(results, reference)
    if summary:
        results["summary"] = summary
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    return results


def _full_code(recon: dict, kind: str) -> dict:
    """The row of one kind with the whole code (the most scales)."""
    rows = recon["by_kind"][kind]
    return rows[max(rows, key=lambda k: int(k) if k.isdigit() else 0)]


def summarize(results: dict, reference: str = "cryoswan") -> dict:
    """Runs named ``MODEL@sSEED`` grouped by model: per kind of item, the full
    code's IoU and Pearson per seed, their mean, and, against the ``reference``
    model (a Cryo-SWAN run, ``cryoswan`` by default), the difference seed by
    seed (``cryoswan_minus_*``: the reference minus the model; same seed, same
    batches).
    """
    groups: dict[str, dict[int, dict]] = {}
    for name, run in results["runs"].items():
        model, sep, seed = name.rpartition("@s")
        if not sep or not seed.isdigit():
            continue
        groups.setdefault(model, {})[int(seed)] = run
    # the kinds of item every run was evaluated on ("all" first)
    present = [
        set(run["recon"]["by_kind"])
        for by_seed in groups.values()
        for run in by_seed.values()
    ]
    common = set.intersection(*present) if present else set()
    kinds = sorted(common, key=lambda k: (k != "all", k))
    out: dict = {}
    for model, by_seed in sorted(groups.items()):
        seeds = sorted(by_seed)
        row: dict = {
            "seeds": seeds,
            "steps": [by_seed[s]["steps"] for s in seeds],
            "loop_seconds": [by_seed[s].get("loop_seconds") for s in seeds],
        }
        for kind in kinds:
            cells = [_full_code(by_seed[s]["recon"], kind) for s in seeds]
            entry = {"n": cells[0]["n"], "bits": cells[0]["bits"]}
            for metric in ("iou", "pearson"):
                values = [c[metric] for c in cells]
                entry[metric] = values
                entry[metric + "_mean"] = round(sum(values) / len(values), 4)
            ref = groups.get(reference, {})
            if model != reference and all(s in ref for s in seeds):
                for metric in ("iou", "pearson"):
                    entry["cryoswan_minus_" + metric] = [
                        round(_full_code(ref[s]["recon"], kind)[metric] - c[metric], 4)
                        for s, c in zip(seeds, cells, strict=True)
                    ]
            row[kind] = entry
        out[model] = row
    return out


def main(argv: list[str] | None = None) -> dict:
    """Train and evaluate the runs (or ``--merge`` result files); return the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the base model config",
    )
    parser.add_argument("--label", help="name of the run in the results (one run)")
    parser.add_argument(
        "--tag", default="", help="appended to every run's name (e.g. @s1)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: torch's)"
    )
    parser.add_argument(
        "--reference",
        default="cryoswan",
        help="with --merge: the model (run name before @sSEED) the others are "
        "compared with in the summary",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        help="merge these result files into --out and stop",
    )
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="wall-time budget per model (equal for all runs)",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--kl-weight", type=float, default=1e-3)
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "runs" / "bench")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_recon.json"
    )
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out, args.reference)
    if not args.dataset:
        parser.error("--dataset is required")
    if args.label and len(args.runs) != 1:
        parser.error("--label names one run: give one --runs")
    base = replace(CryoSwanConfig(), **_overrides(args.set))
    results: dict = {
        "benchmark": "reconstruction at equal code bits and equal training budget",
        "dataset": str(args.dataset),
        "budget": {
            "steps": args.steps,
            "minutes": args.minutes,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "precision": args.precision,
            "threads": args.threads,
        },
        "config_overrides": args.set,
        "runs": {},
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
    }
    test = load_split(args.dataset, "test")
    for name in args.runs:
        arch, overrides = RUNS[name]
        model_cfg = base
        if "kl_weight" in overrides:
            model_cfg = replace(model_cfg, kl_weight=args.kl_weight)
        name = (args.label or name) + args.tag
        run_dir = args.checkpoints / name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        cfg = TrainConfig(
            dataset=str(args.dataset),
            out=str(run_dir),
            arch=arch,
            model=model_cfg,
            batch_size=args.batch_size,
            lr=args.lr,
            steps=args.steps,
            minutes=args.minutes,
            device=args.device,
            seed=args.seed,
            precision=args.precision,
            threads=args.threads,
        )
        t0 = time.time()
        final = train(cfg, progress=False)
        seconds = time.time() - t0
        model, blob = load_checkpoint(final)
        if torch.cuda.is_available() and args.device != "cpu":
            model = model.cuda()
        entry = {
            "arch": arch,
            "seed": args.seed,
            "precision": args.precision,
            "budget": {"steps": args.steps, "minutes": args.minutes},
            "config": model.config.to_dict(),
            "train_seconds": round(seconds, 1),
            "loop_seconds": blob["extra"].get("loop_seconds"),
            "steps": blob["step"],
            "checkpoint": str(final),
            "checkpoint_hash": blob["hash"],
            "recon": evaluate_recon(model, args.dataset, "test"),
        }
        if arch != "plain-ae":
            entry["codebooks"] = codebook_usage(model, test)
        results["runs"][name] = entry
        print(
            json.dumps({name: {k: v for k, v in entry.items() if k != "recon"}}),
            flush=True,
        )
        print(json.dumps(entry["recon"]["by_kind"].get("all")), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
