"""Train the Cryo-SWAN encoder (or a baseline) on a dataset folder.

Resumable: run the same command again and it continues from OUT/last.pt. Writes
OUT/metrics.jsonl (losses, samples/s, codebook perplexity and dead codes per
scale) and, at the end, OUT/model.pt. Uses the GPU when one is available.

examples:
  $ swan train --dataset runs/ds --out runs/cryoswan --minutes 90
  $ swan train --dataset runs/ds --out runs/vq1 --arch single-scale --steps 4000
  $ swan train --dataset runs/ds --out runs/fast --minutes 90 --precision bf16
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from encoder.model import CryoSwanConfig
from encoder.train import ARCHS, PRECISIONS, TrainConfig, train
from swan_index.commands import add_run_args, run_settings


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register ``swan train``'s arguments."""
    parser.add_argument("--dataset", required=True, help="dataset folder")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, log)")
    parser.add_argument("--arch", choices=ARCHS, default="cryoswan")
    add_run_args(parser, batch_size=16, lr=2e-3)
    parser.add_argument(
        "--kl-weight", type=float, default=0.0, help="weight of the KL term (0 = off)"
    )
    parser.add_argument(
        "--precision",
        choices=list(PRECISIONS),
        default="fp32",
        help="bf16: the convolutions in bfloat16 (about half the time a step on "
        "a CPU with AVX512-BF16 or a GPU); weights, optimizer and losses stay "
        "float32",
    )
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument(
        "--codebook-size",
        type=int,
        default=CryoSwanConfig.codebook_size,
        help="codes per codebook at the finest scale",
    )
    parser.add_argument(
        "--coarse-codebook-size",
        type=int,
        default=CryoSwanConfig.coarse_codebook_size,
        help="codes per codebook at the coarser scales",
    )


def main(args: argparse.Namespace) -> int:
    """Run ``swan train``."""
    model = replace(
        CryoSwanConfig(),
        kl_weight=args.kl_weight,
        latent_dim=args.latent_dim,
        codebook_size=args.codebook_size,
        coarse_codebook_size=args.coarse_codebook_size,
    )
    cfg = TrainConfig(
        dataset=args.dataset,
        out=args.out,
        arch=args.arch,
        model=model,
        precision=args.precision,
        **run_settings(args),
    )
    try:
        final = train(cfg)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(final)
    return 0
