"""Build a training dataset folder for the encoder (encoder.training_data.dataset).

Sources: real EMDB maps (augmented views), maps simulated from atomic models
(3-12 Å, rotations, sub-assemblies), synthetic protein-like assemblies (labelled
synthetic) and ModelNet10 shapes. Whole molecules are held out for testing.

examples:
  $ swan dataset build runs/ds --real-maps ../shared/data/real/maps \\
        --models ../shared/data/real/models --shapes ../shared/data/real/shapes \\
        --synthetic 1200
  $ swan dataset build runs/tiny --models data/models --synthetic 20 --grid 32
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from encoder.training_data import DatasetConfig, build_dataset


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register ``swan dataset``'s arguments."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="build a dataset folder")
    build.add_argument("out", help="dataset folder to write")
    build.add_argument("--real-maps", help="folder of real EMDB maps")
    build.add_argument("--models", help="folder of PDB/mmCIF models to simulate")
    build.add_argument("--shapes", help="folder of ModelNet .off / .npy.gz files")
    build.add_argument(
        "--synthetic",
        type=int,
        default=1200,
        help="number of synthetic assemblies (default 1200)",
    )
    build.add_argument("--real-views", type=int, default=16)
    build.add_argument("--model-views", type=int, default=12)
    build.add_argument("--shapes-per-file", type=int, default=150)
    build.add_argument(
        "--realism",
        type=float,
        default=0.0,
        help="chance (0-1) that a simulated or synthetic item gets experimental "
        "artefacts: B-factor, anisotropy, solvent noise, a mask (default 0)",
    )
    build.add_argument("--grid", type=int, default=64)
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--workers", type=int, default=None)


def main(args: argparse.Namespace) -> int:
    """Run ``swan dataset build``."""
    kwargs = {} if args.workers is None else {"workers": args.workers}
    cfg = DatasetConfig(
        grid=args.grid,
        real_maps=args.real_maps,
        models=args.models,
        shapes=args.shapes,
        real_views=args.real_views,
        model_views=args.model_views,
        synthetic=args.synthetic,
        shapes_per_file=args.shapes_per_file,
        realism=args.realism,
        seed=args.seed,
        **kwargs,
    )
    try:
        manifest = build_dataset(cfg, args.out, command=shlex.join(sys.argv))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "counts": manifest["counts"],
                "groups": manifest["groups"],
                "failures": len(manifest["failures"]),
                "seconds": manifest["seconds"],
            },
            indent=1,
        )
    )
    for failure in manifest["failures"]:
        print(f"skipped: {failure}", file=sys.stderr)
    return 0
