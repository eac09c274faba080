"""Evaluate models: reconstruction quality per scale on a dataset split.

`swan eval recon` prints, per checkpoint and per kind of item (real, simulated,
synthetic, shape), the IoU at the contour, the Pearson correlation and the bits per
map, for the first 1, 2, ... all scales of a Cryo-SWAN code (the full code for a
baseline).

examples:
  $ swan eval recon --checkpoint data/cryoswan.pt --dataset runs/ds
  $ swan eval recon --checkpoint runs/a/model.pt runs/b/model.pt --dataset runs/ds \\
        --json > recon.json
"""

from __future__ import annotations

import argparse
import json
import sys

from encoder.checkpoint import load_checkpoint
from encoder.evaluate import evaluate_recon


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register ``swan eval``'s arguments."""
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    recon = sub.add_parser("recon", help="reconstruction quality per scale")
    recon.add_argument("--checkpoint", nargs="+", required=True)
    recon.add_argument("--dataset", required=True)
    recon.add_argument("--split", default="test")
    recon.add_argument("--limit", type=int, default=None)
    recon.add_argument("--json", action="store_true")


def main(args: argparse.Namespace) -> int:
    """Run ``swan eval``."""
    results = {}
    for path in args.checkpoint:
        try:
            model, blob = load_checkpoint(path)
            results[path] = {
                "arch": blob.get("arch", "cryoswan"),
                **evaluate_recon(model, args.dataset, args.split, limit=args.limit),
            }
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for path, res in results.items():
        print(f"{path} ({res['arch']}), {res['split']} split, {res['items']} items")
        print(f"  {'kind':10s} {'up_to':>5s} {'bits':>7s} {'IoU':>6s} {'Pearson':>8s}")
        for kind, levels in sorted(res["by_kind"].items()):
            for key, m in levels.items():
                print(
                    f"  {kind:10s} {key:>5s} {m['bits']:7d} {m['iou']:6.3f} "
                    f"{m['pearson']:8.3f}"
                )
    return 0
