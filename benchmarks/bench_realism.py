"""Benchmark: do experimental artefacts in the training data help real maps?

Two runs fine-tuned from the same checkpoint with the same budget, one on a
dataset built as usual and one on the same dataset built with ``--realism``
(simulated and synthetic items given B-factors, anisotropic blur, solvent noise
and masks: :mod:`encoder.training_data.realism`), and the checkpoint they
started from, reconstruct the held-out test split of the usual dataset. Per
checkpoint and item, the IoU at the contour (0.5 in canonical values) and the
Pearson correlation of the full code's reconstruction; reported per kind of
item, and for the REAL items (EMDB maps of molecules held out of training) by
how their view was made: native resolution or low-passed, added noise, crop.
The test split of the ``--realism`` dataset (the same molecules, their
simulated and synthetic items with artefacts) is scored too. Nothing is tuned
here: the augmentation's settings were fixed before any run.

    $ python -m benchmarks.bench_realism --dataset runs/ds --realistic runs/ds_aug \\
          --checkpoint data/cryoswan.pt runs/ft_ctrl/model.pt runs/ft_aug/model.pt

Writes ``benchmarks/results/bench_realism.json`` and per-item rows beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import RunRecord, add_out_argument, save_result
from encoder.baselines import reconstruct
from encoder.checkpoint import load_checkpoint
from encoder.evaluate import iou, pearson
from encoder.training_data.dataset import from_uint8, load_split, read_items


def _view(aug: dict[str, Any]) -> str:
    """A real item's view in words: how it was made from the EMDB map."""
    if not aug.get("view"):
        return "as deposited"
    parts = ["low-passed" if "resolution" in aug else "native resolution"]
    parts.append(f"noise {aug.get('noise', 0):g}")
    if aug.get("crop"):
        parts.append("cropped")
    return ", ".join(parts)


@torch.no_grad()
def score(model: torch.nn.Module, dataset: Path, split: str) -> list[dict]:
    """Per item of ``split``: kind, group, view, IoU and Pearson (full code)."""
    volumes = load_split(dataset, split)
    items = read_items(dataset)
    with np.load(dataset / f"{split}.npz") as data:
        index = data["index"]
    rows = []
    for start in range(0, len(volumes), 16):
        target = from_uint8(volumes[start : start + 16])
        recon = reconstruct(model, torch.from_numpy(target).unsqueeze(1))
        recon = recon.squeeze(1).numpy()
        for j, (i, p) in enumerate(
            zip(iou(recon, target), pearson(recon, target), strict=True)
        ):
            item = items[int(index[start + j])]
            aug = json.loads(item.get("augmentation") or "{}")
            rows.append(
                {
                    "item": int(index[start + j]),
                    "kind": item["kind"],
                    "group": item["group"],
                    "view": _view(aug) if item["kind"] == "real" else "",
                    "realistic": bool(aug.get("realistic")),
                    "iou": float(i),
                    "pearson": float(p),
                }
            )
    return rows


def _mean(rows: list[dict], key: str) -> float:
    return round(float(np.mean([r[key] for r in rows])), 4) if rows else float("nan")


def summarize(rows: list[dict]) -> dict[str, Any]:
    """Means per kind, per real view, and for the realistic items."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[f"kind {r['kind']}"].append(r)
        groups["all"].append(r)
        if r["kind"] == "real":
            groups[f"real, {r['view']}"].append(r)
        if r["realistic"]:
            groups[f"{r['kind']} with artefacts"].append(r)
    return {
        name: {"n": len(g), "iou": _mean(g, "iou"), "pearson": _mean(g, "pearson")}
        for name, g in sorted(groups.items())
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    record = RunRecord()
    result: dict[str, Any] = {
        "benchmark": "reconstruction of held-out maps after training with "
        "experimental artefacts (REAL EMDB maps, SIMULATED and SYNTHETIC items)",
        "dataset": str(args.dataset),
        "realistic_dataset": str(args.realistic) if args.realistic else None,
        "checkpoints": {},
        "rows": [],
    }
    for path in args.checkpoint:
        model, blob = load_checkpoint(path)
        model.eval()
        name = str(path)
        print(f"scoring {name} ...", flush=True)
        rows = score(model, Path(args.dataset), args.split)
        entry: dict[str, Any] = {
            "hash": blob.get("hash", "")[:12],
            "step": blob.get("step"),
            "test": summarize(rows),
        }
        if args.realistic:
            more = score(model, Path(args.realistic), args.split)
            entry["realistic_test"] = summarize(more)
            rows += [{**r, "dataset": "realistic"} for r in more]
        result["checkpoints"][name] = entry
        result["rows"] += [{**r, "checkpoint": name} for r in rows]
    result.update(record.finish())
    result["command"] = " ".join(sys.argv)
    return save_result(result, args.out, _print, rows_key="rows")


def _print(result: dict[str, Any]) -> None:
    names = list(result["checkpoints"])
    for part in ("test", "realistic_test"):
        first = result["checkpoints"][names[0]].get(part)
        if not first:
            continue
        print(f"\n{part}: IoU / Pearson")
        print(
            f"{'items':<52}" + "".join(f"{Path(n).parent.name or n:>18}" for n in names)
        )
        for group, stats in first.items():
            line = f"{group + ' (' + str(stats['n']) + ')':<52}"
            for n in names:
                s = result["checkpoints"][n][part][group]
                line += f"{s['iou']:>9.3f} / {s['pearson']:.3f}"
            print(line)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--realistic", type=Path, default=None)
    parser.add_argument("--checkpoint", type=Path, nargs="+", required=True)
    parser.add_argument("--split", default="test")
    add_out_argument(parser, "bench_realism.json")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
