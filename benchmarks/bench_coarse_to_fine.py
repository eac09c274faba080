"""Benchmark: coarse to fine on every map, with the shipped checkpoint.

For every item of a dataset split (by default the held-out test split) and for
the real EMDB sample maps of ``data/maps``, the reconstruction error of
``decode(code, up_to=s)`` for s = 1..S. Two errors are recorded per map and
scale: the mean squared error on the canonical values (in [0, 1]), the one the
growth count is judged on, and 1 - Pearson correlation. Reported:

* how many maps see their error grow by more than ``--tolerance`` (5 %) when a
  scale is added (any step s -> s+1), and how many see it grow at all, per
  kind of item, for both errors;
* the worst steps by kind (largest ratio error(s+1) / error(s));
* the median Pearson correlation of the full reconstruction, per kind and over
  the split, and for the sample maps by the split their molecule is in.

This measures a trained model; nothing is trained or tuned here.

    $ python -m benchmarks.bench_coarse_to_fine --dataset runs/ds

(``runs/ds`` built by the first ``swan dataset build`` command of
docs/encoder.md.) Writes ``benchmarks/results/bench_coarse_to_fine.json`` and the
per-map rows next to it.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import ROOT, RunRecord, add_out_argument, save_result
from encoder.checkpoint import load_checkpoint
from encoder.evaluate import pearson
from encoder.model import CryoSwan
from encoder.training_data.dataset import (
    from_uint8,
    group_of,
    load_split,
    read_items,
)
from ingest import canonicalize, read_map

MAP_SUFFIXES = (".map", ".mrc", ".ccp4", ".map.gz", ".mrc.gz")


@torch.no_grad()
def scale_errors(model: CryoSwan, volumes: np.ndarray) -> dict[str, np.ndarray]:
    """Per map and number of scales, the errors of the partial reconstructions.

    Args:
        model: a Cryo-SWAN model.
        volumes: canonical volumes ``[B, G, G, G]`` (float32).

    Returns:
        ``{"mse": [B, S], "one_minus_pearson": [B, S]}``, column s-1 for
        ``up_to = s``.
    """
    x = torch.from_numpy(volumes).unsqueeze(1)
    indices = model.encode_indices(x)
    mse, corr = [], []
    for up_to in range(1, len(model.config.scales) + 1):
        recon = model.decode_indices(indices, up_to).squeeze(1).numpy()
        mse.append(((recon - volumes) ** 2).reshape(len(x), -1).mean(1))
        corr.append(pearson(recon, volumes))
    return {
        "mse": np.stack(mse, axis=1),
        "one_minus_pearson": 1.0 - np.stack(corr, axis=1),
    }


def growth(errors: np.ndarray) -> np.ndarray:
    """Ratios error(s+1) / error(s) per map ``[B, S-1]`` (``errors`` ``[B, S]``)."""
    return errors[:, 1:] / np.maximum(errors[:, :-1], 1e-12)


def _rows(
    model: CryoSwan, volumes: np.ndarray, labels: list[dict], batch_size: int
) -> list[dict[str, Any]]:
    rows = []
    for start in range(0, len(volumes), batch_size):
        batch = volumes[start : start + batch_size]
        errs = scale_errors(model, batch)
        for i, label in enumerate(labels[start : start + batch_size]):
            rows.append(
                {
                    **label,
                    "mse": [round(float(v), 7) for v in errs["mse"][i]],
                    "one_minus_pearson": [
                        round(float(v), 6) for v in errs["one_minus_pearson"][i]
                    ],
                }
            )
        print(f"  {min(start + batch_size, len(volumes))}/{len(volumes)}", flush=True)
    return rows


def summarize(rows: list[dict], tolerance: float, worst: int = 3) -> dict[str, Any]:
    """Growth counts, worst steps and median full correlation, per kind and all."""
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_kind[row["kind"]].append(row)
        by_kind["all"].append(row)
    out = {}
    for kind, members in sorted(by_kind.items()):
        entry: dict[str, Any] = {"maps": len(members)}
        for metric in ("mse", "one_minus_pearson"):
            errors = np.array([r[metric] for r in members])
            ratios = growth(errors)
            grows = ratios > 1 + tolerance
            order = np.argsort(-ratios.max(axis=1))[:worst]
            entry[metric] = {
                "maps_growing": int(grows.any(axis=1).sum()),
                "maps_growing_at_all": int((ratios > 1).any(axis=1).sum()),
                "growing_steps": {
                    f"{s + 1}->{s + 2}": int(grows[:, s].sum())
                    for s in range(ratios.shape[1])
                },
                "median_by_up_to": [round(float(v), 6) for v in np.median(errors, 0)],
                "worst": [
                    {
                        "name": members[i]["name"],
                        "step": f"{int(ratios[i].argmax()) + 1}->"
                        f"{int(ratios[i].argmax()) + 2}",
                        "ratio": round(float(ratios[i].max()), 4),
                        "errors": members[i][metric],
                    }
                    for i in order
                ],
            }
        full = 1.0 - np.array([r["one_minus_pearson"][-1] for r in members])
        entry["full_pearson_median"] = round(float(np.median(full)), 4)
        entry["full_pearson_min"] = round(float(full.min()), 4)
        out[kind] = entry
    return out


def dataset_rows(model: CryoSwan, dataset: Path, split: str, batch_size: int):
    """Rows of every item of one split (name: index, group and view)."""
    volumes = from_uint8(load_split(dataset, split))
    items = read_items(dataset)
    with np.load(dataset / f"{split}.npz") as data:
        index = data["index"]
    labels = []
    for i in index:
        item = items[int(i)]
        labels.append(
            {
                "name": f"{item['index']}:{item['group']}:{item['source']}",
                "kind": item["kind"],
                "group": item["group"],
            }
        )
    return _rows(model, volumes, labels, batch_size)


def sample_rows(model: CryoSwan, maps: Path, splits: dict[str, str], batch_size: int):
    """Rows of the real sample maps in ``maps`` (canonicalized at the model's grid);
    their kind names the dataset split their molecule is in (``splits``: group ->
    split), ``sample-unseen`` if none."""
    paths = sorted(p for p in maps.iterdir() if p.name.endswith(MAP_SUFFIXES))
    grid = model.config.grid
    volumes = np.stack([canonicalize(read_map(p), grid=grid).values for p in paths])
    labels = [
        {
            "name": p.name,
            "kind": f"sample-{splits.get(group_of(p), 'unseen')}",
            "group": group_of(p),
        }
        for p in paths
    ]
    return _rows(model, volumes.astype(np.float32), labels, batch_size)


def print_table(result: dict) -> None:
    tol = result["tolerance"]
    print(f"\nmaps whose error grows by more than {tol:.0%} when a scale is added")
    head = ("set", "kind", "maps", "MSE", "1-r", "med r")
    print("{:10s} {:16s} {:>5s} {:>5s} {:>5s} {:>6s}".format(*head))
    for name in ("held_out", "samples"):
        for kind, e in result[name]["summary"].items():
            print(
                f"{name:10s} {kind:16s} {e['maps']:5d} "
                f"{e['mse']['maps_growing']:5d} "
                f"{e['one_minus_pearson']['maps_growing']:5d} "
                f"{e['full_pearson_median']:6.3f}"
            )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--maps", type=Path, default=ROOT / "data" / "maps")
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "data" / "cryoswan.pt"
    )
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    add_out_argument(parser, "bench_coarse_to_fine.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    record = RunRecord()
    try:
        model, blob = load_checkpoint(args.checkpoint)
        load_split(args.dataset, args.split)  # a clear message for a bad folder
    except ValueError as err:
        parser.error(str(err))
    model.eval()
    if not isinstance(model, CryoSwan):
        parser.error(f"{args.checkpoint}: not a Cryo-SWAN checkpoint")
    items = read_items(args.dataset)
    splits = {r["group"]: r["split"] for r in items}
    print(f"{args.split} split of {args.dataset}")
    split_rows = dataset_rows(model, args.dataset, args.split, args.batch_size)
    print(f"sample maps of {args.maps}")
    samples = sample_rows(model, args.maps, splits, args.batch_size)
    result = {
        "benchmark": "coarse to fine on every map (shipped checkpoint)",
        "command": "python -m benchmarks.bench_coarse_to_fine "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "checkpoint": str(args.checkpoint.relative_to(ROOT))
        if args.checkpoint.is_relative_to(ROOT)
        else str(args.checkpoint),
        "checkpoint_hash": blob["hash"][:12],
        "dataset": str(args.dataset),
        "split": args.split,
        "tolerance": args.tolerance,
        "errors": {
            "mse": "mean squared error on canonical values in [0, 1] "
            "(the growth count is judged on it)",
            "one_minus_pearson": "1 - Pearson correlation of reconstruction and target",
        },
        "held_out": {
            "summary": summarize(split_rows, args.tolerance),
            "rows": split_rows,
        },
        "samples": {"summary": summarize(samples, args.tolerance), "rows": samples},
        "run": record.finish(),
    }
    return save_result(
        result, args.out, print_table, rows_key=["held_out.rows", "samples.rows"]
    )


if __name__ == "__main__":
    main()
