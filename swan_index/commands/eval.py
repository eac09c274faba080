"""Evaluate: reconstruction quality per scale, retrieval against your own labels.

`swan eval recon` prints, per checkpoint and per kind of item (real, simulated,
synthetic, shape), the IoU at the contour, the Pearson correlation and the bits per
map, for the first 1, 2, ... all scales of a Cryo-SWAN code (the full code for a
baseline).

`swan eval surface` chooses a checkpoint's surface level on the
training split of a dataset: the decoded value at which its reconstructions'
surface best matches the input's (IoU at the contour), which decoding then
maps to the canonical surface (`swan train` does this at the end of a run); it
prints the IoU and Pearson correlation at each level tried, and `--write`
records the chosen level in the checkpoint (its weights and hash unchanged).

`swan eval retrieval` takes a store and a truth CSV (header `entry,group`; entry is a
store id or an EMDB id; entries of one group are the same molecule or family). Every
labelled entry whose group has another entry searches the store (leave-one-out)
exactly as `swan search ID` does: its map read again in every candidate pose while
its file is unchanged (else, or with --stored-pose, its stored vectors), then the
rotational fit; unlabelled entries are distractors. It prints precision@1, mean
reciprocal rank, mean average precision and recall@10, overall and per group.

examples:
  $ swan eval recon --checkpoint data/cryoswan.pt --dataset runs/ds
  $ swan eval recon --checkpoint runs/a/model.pt runs/b/model.pt --dataset runs/ds \\
        --json > recon.json
  $ swan eval surface --checkpoint runs/a/model.pt --dataset runs/ds --write
  $ swan eval retrieval --store runs/store --truth labels.csv
  $ swan eval retrieval --store runs/store --truth labels.csv --scales 1 --json
"""

from __future__ import annotations

import argparse
import json
import sys

from encoder.checkpoint import load_checkpoint
from encoder.evaluate import evaluate_recon
from swan_index.commands import add_query_args
from swan_index.ranking import SearchOptions


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register ``swan eval``'s arguments."""
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    recon = sub.add_parser("recon", help="reconstruction quality per scale")
    recon.add_argument("--checkpoint", nargs="+", required=True)
    recon.add_argument("--dataset", required=True)
    recon.add_argument("--split", default="test")
    recon.add_argument("--limit", type=int, default=None)
    recon.add_argument("--json", action="store_true")
    surf = sub.add_parser("surface", help="choose the decoded surface level")
    surf.add_argument("--checkpoint", required=True)
    surf.add_argument("--dataset", required=True)
    surf.add_argument("--split", default="train")
    surf.add_argument("--limit", type=int, default=800, help="items (800)")
    surf.add_argument("--seed", type=int, default=0)
    surf.add_argument(
        "--write", action="store_true", help="record the level in the checkpoint"
    )
    surf.add_argument("--json", action="store_true")
    ret = sub.add_parser("retrieval", help="retrieval against a truth table")
    ret.add_argument("--store", required=True)
    ret.add_argument("--truth", required=True, help="CSV with columns entry,group")
    ret.add_argument("-k", type=int, default=100, help="hits per query (100)")
    ret.add_argument(
        "--approximate",
        action="store_true",
        help="coarse candidates as a default search does (default: exact)",
    )
    ret.add_argument("--scales", default=None, help="comma-separated scale sides")
    ret.add_argument(
        "--size-weight", type=float, default=None, help="weight of the size term"
    )
    add_query_args(ret)
    ret.add_argument("--json", action="store_true")


def main(args: argparse.Namespace) -> int:
    """Run ``swan eval``."""
    if args.what == "retrieval":
        return _retrieval(args)
    if args.what == "surface":
        return _surface(args)
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


def _surface(args: argparse.Namespace) -> int:
    from encoder.checkpoint import write_surface_level
    from encoder.evaluate import choose_surface_level

    try:
        model, _ = load_checkpoint(args.checkpoint)
        before = model.surface_level
        choice = choose_surface_level(
            model, args.dataset, split=args.split, limit=args.limit, seed=args.seed
        )
        if args.write:
            write_surface_level(args.checkpoint, choice["level"])
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    result = {"checkpoint": args.checkpoint, "was": before, **choice}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(
        f"{args.checkpoint}: {choice['items']} {args.split} items; "
        f"decoded level, mean IoU at the contour, Pearson"
    )
    for level, m in choice["by_level"].items():
        mark = "  <- chosen" if float(level) == choice["level"] else ""
        print(f"  {float(level):.3f}  {m['iou']:.4f}  {m['pearson']:.4f}{mark}")
    done = "recorded in the checkpoint" if args.write else "not recorded (--write)"
    print(f"surface level {choice['level']:g} (was {before:g}): {done}")
    return 0


def _retrieval(args: argparse.Namespace) -> int:
    from swan_index.commands import load_encoder, open_reader
    from swan_index.retrieval import METRICS, evaluate_store, read_truth

    if args.k < 1:
        print("error: -k must be at least 1", file=sys.stderr)
        return 2
    if args.fit_top < 0:
        print("error: --fit-top must be 0 (off) or more", file=sys.stderr)
        return 2
    search: dict = {}
    try:
        if args.scales:
            search["scales"] = tuple(int(s) for s in args.scales.split(","))
    except ValueError:
        print(f"error: --scales {args.scales!r}: give sides like 1,2", file=sys.stderr)
        return 2
    if args.size_weight is not None:
        search["size_weight"] = args.size_weight
    store = open_reader(args.store)
    if store is None:
        return 2
    try:
        options = SearchOptions(
            exact=not args.approximate, fit_top=args.fit_top, **search
        )
        truth = read_truth(args.truth, store.find)
        encoder = None if args.stored_pose else load_encoder(args.checkpoint)
        result = evaluate_store(store, truth, encoder, k=args.k, options=options)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        store.close()
    for key in truth.unknown:
        print(
            f"warning: {args.truth}: entry {key} is not in the store", file=sys.stderr
        )
    if args.json:
        print(json.dumps({**result, "unknown": list(truth.unknown)}, indent=1))
        return 0
    if not result["queries"]:
        print("no group has two entries in the store: nothing to evaluate")
        return 0
    print(f"{'group':24s} {'n':>4s} " + " ".join(f"{m:>12s}" for m in METRICS))
    rows = [*result["by_group"].items(), ("all", result["summary"])]
    for group, m in rows:
        print(
            f"{group[:24]:24s} {m['n']:4d} "
            + " ".join(f"{m[key]:12.3f}" for key in METRICS)
        )
    if result["skipped"]:
        print(
            f"({len(result['skipped'])} labelled entries have no other entry "
            "of their group and were not queried)"
        )
    return 0
