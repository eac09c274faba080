"""Benchmark: training steps per second, before and after the step speed-up.

The real training step of ``encoder/train.py`` (forward, backward, gradient
clipping, AdamW) at its default batch (16) and the dataset's grid (64), on
batches of the dataset's training split, for:

* ``cryoswan`` at the commit before the speed-up (``--before``, written out of
  git history by :func:`benchmarks.baseline.export`) and as the tree is now,
  in float32 and, with ``--precision fp32 bf16``, also in bfloat16 autocast
  (``swan train --precision bf16``; ``after-bf16``); ``bf16+compile`` adds the
  bfloat16 step with the model's forward compiled by ``torch.compile``
  (``after-bf16-compile``; its compile falls in the ``--warmup`` steps);
* the baselines at about equal bits, ``single-scale`` (a VQ-VAE) and
  ``plain-ae``, at both commits, for context.

Each model runs in a process of its own (``benchmarks/train_step_worker.py``,
with that tree on its ``PYTHONPATH``), all alive at once; the runs are
interleaved: in each round every model takes ``--steps`` steps in turn, the
order rotating from round to round, so that a load change on a shared machine
falls on all of them. Reported per thread count: median wall and CPU seconds
per step, steps/s, and per round the ratio before / after (the speed-up), plus
one profiled step of each Cryo-SWAN tree (the operators that take the time).

    $ python -m benchmarks.bench_train_step --dataset runs/ds

Writes ``benchmarks/results/bench_train_step.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.baseline import export, resolve
from benchmarks.common import (
    ROOT,
    RunRecord,
    add_out_argument,
    machine_info,
    save_result,
    stop_process,
)

#: The commit before the training-step speed-up.
STEP_BASELINE_COMMIT = "d87b08866c9753407afe93975859316986a0de29"
WORKER = ROOT / "benchmarks" / "train_step_worker.py"
ARCHS = ("cryoswan", "single-scale", "plain-ae")


class Worker:
    """A worker process: one model of one tree, taking steps on request."""

    def __init__(
        self,
        tree: Path,
        dataset: Path,
        arch: str,
        threads: int,
        precision: str = "fp32",
    ) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        env.pop("OMP_NUM_THREADS", None)
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(dataset), arch, str(threads), precision],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tree,
        )
        self.ready = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.proc.args} stopped")
        return json.loads(line)

    def ask(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        stop_process(self.proc)


def measure(
    trees: dict[str, tuple[Path, str]],
    dataset: Path,
    threads: int,
    rounds: int,
    steps: int,
    warmup: int,
    archs: tuple[str, ...],
) -> dict[str, Any]:
    """Interleaved step timings of every (tree, arch) at ``threads`` threads;
    ``trees``: name -> (source tree, ``swan train --precision``)."""
    workers = {
        f"{arch}@{name}": Worker(tree, dataset, arch, threads, precision)
        for name, (tree, precision) in trees.items()
        for arch in archs
    }
    try:
        for w in workers.values():
            w.ask({"steps": warmup})  # k-means start of the codebooks, caches
        names = list(workers)
        wall: dict[str, list[list[float]]] = {k: [] for k in names}
        cpu: dict[str, list[float]] = {k: [] for k in names}
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                answer = workers[name].ask({"steps": steps})
                wall[name].append(answer["wall"])
                cpu[name].extend(answer["cpu"])
            print(f"  {threads} thread(s), round {r + 1}/{rounds}", flush=True)
        profiles = {
            name: workers[name].ask({"profile": True})
            for name in names
            if name.startswith("cryoswan@")
        }
    finally:
        for w in workers.values():
            w.close()
    out: dict[str, Any] = {"models": {}, "profiles": profiles}
    for name in names:
        flat = [s for block in wall[name] for s in block]
        med = statistics.median(flat)
        out["models"][name] = {
            "median_s_per_step": round(med, 4),
            "steps_per_s": round(1 / med, 4),
            "median_cpu_s_per_step": round(statistics.median(cpu[name]), 4),
            "round_seconds": [round(sum(b), 3) for b in wall[name]],
        }
    models = out["models"]
    for arch in archs:
        for tree in trees:
            before, after = f"{arch}@before", f"{arch}@{tree}"
            if tree == "before" or before not in models or after not in models:
                continue
            ratios = [
                b / a
                for b, a in zip(
                    models[before]["round_seconds"],
                    models[after]["round_seconds"],
                    strict=True,
                )
            ]
            suffix = tree.removeprefix("after")  # "", "-bf16", "-bf16-compile"
            out[f"speedup_{arch}{suffix}"] = {
                "median_round_ratio": round(statistics.median(ratios), 3),
                "round_ratios": [round(v, 3) for v in ratios],
            }
    for tree in trees:
        cs, vq = models.get(f"cryoswan@{tree}"), models.get(f"single-scale@{tree}")
        if cs and vq:
            out[f"cryoswan_over_single_scale@{tree}"] = round(
                cs["median_s_per_step"] / vq["median_s_per_step"], 3
            )
    return out


def print_table(result: dict) -> None:
    for threads, block in result["threads"].items():
        print(f"\n{threads} thread(s)")
        print(f"{'model':24s} {'s/step':>8s} {'steps/s':>8s} {'cpu s':>7s}")
        for name, m in block["models"].items():
            print(
                f"{name:24s} {m['median_s_per_step']:8.3f} "
                f"{m['steps_per_s']:8.3f} {m['median_cpu_s_per_step']:7.3f}"
            )
        for key, value in block.items():
            if key.startswith("speedup_"):
                print(f"{key}: x{value['median_round_ratio']} {value['round_ratios']}")
            elif key.startswith("cryoswan_over"):
                print(f"{key}: {value}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--before", default=STEP_BASELINE_COMMIT)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2, help="steps per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument(
        "--precision",
        nargs="+",
        default=["fp32"],
        choices=["fp32", "bf16", "fp32+compile", "bf16+compile"],
        help="precisions of today's tree to measure (the tree before: fp32); "
        "+compile: the model's forward compiled by torch.compile",
    )
    add_out_argument(parser, "bench_train_step.json")
    args = parser.parse_args(argv)
    dataset = args.dataset.resolve()
    if not (dataset / "manifest.json").is_file():
        parser.error(
            f"{args.dataset}: not a dataset folder (no manifest.json); "
            "build one with `swan dataset build`"
        )
    record = RunRecord()
    import torch

    result: dict[str, Any] = {
        "benchmark": "training steps per second (forward, backward, AdamW)",
        "command": "python -m benchmarks.bench_train_step "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "before_commit": resolve(args.before),
        "dataset": str(args.dataset),
        "batch_size": 16,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "warmup_steps": args.warmup,
        "machine": machine_info(torch=torch.__version__),
        "threads": {},
    }
    with tempfile.TemporaryDirectory(prefix="swan-before-") as tmp:
        trees = {"before": (export(args.before, Path(tmp)), "fp32")}
        for precision in args.precision:
            name = "after" if precision == "fp32" else f"after-{precision}"
            name = name.replace("+", "-")
            trees[name] = (ROOT, precision)
        for threads in args.threads:
            record.mark(f"threads_{threads}")
            result["threads"][str(threads)] = measure(
                trees,
                dataset,
                threads,
                args.rounds,
                args.steps,
                args.warmup,
                tuple(args.archs),
            )
    result["run"] = record.finish()
    return save_result(result, args.out, print_table)


if __name__ == "__main__":
    main()
