"""Train the latent prior (denoising, generation) on a dataset folder.

The encoder (--encoder) stays frozen: the dataset is encoded once (cached in OUT),
then a flow-matching model over the continuous latent, conditioned on the kept
coarse scales (--kind flow), or a next-scale token model (--kind tokens,
VAR-style: scale k's tokens given the coarser scales) learns it (docs/prior.md).
Resumable: run the same command again and it continues from OUT/last.pt. Writes
OUT/metrics.jsonl (training loss, held-out loss) and, at the end, OUT/prior.pt,
tied to the encoder's hash.

examples:
  $ swan train-prior --dataset runs/ds --encoder data/cryoswan.pt --out runs/prior \\
        --minutes 60
  $ swan train-prior --dataset runs/ds --encoder data/cryoswan.pt --out runs/var \\
        --kind tokens --steps 2000
  $ swan train-prior --dataset runs/ds --encoder data/cryoswan.pt --out runs/compl \
        --task completion --init data/prior.pt --minutes 40
"""

from __future__ import annotations

import argparse
import sys

from encoder.prior import KINDS, TASKS, PriorConfig
from encoder.train_prior import PriorTrainConfig, train_prior
from swan_index.commands import add_run_args, run_settings
from swan_index.map_encoder import DEFAULT_CHECKPOINT


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register ``swan train-prior``'s arguments."""
    parser.add_argument("--dataset", required=True, help="dataset folder")
    parser.add_argument(
        "--encoder", default=str(DEFAULT_CHECKPOINT), help="encoder checkpoint"
    )
    parser.add_argument("--out", required=True, help="run folder (checkpoints, log)")
    parser.add_argument("--kind", choices=KINDS, default="flow")
    parser.add_argument("--channels", type=int, default=32, help="network width")
    parser.add_argument("--blocks", type=int, default=1, help="blocks per level")
    parser.add_argument(
        "--task",
        choices=TASKS,
        default="scales",
        help="scales: the prior of swan denoise/generate; completion: the "
        "completion prior of swan complete (learns whole molecules from SIMULATED "
        "partial/whole pairs cut from the training volumes)",
    )
    parser.add_argument(
        "--init", default=None, help="a prior file of this encoder to start from"
    )
    parser.add_argument(
        "--pairs-per-item",
        type=int,
        default=4,
        help="completion: partial/whole pairs cut from each training volume",
    )
    add_run_args(parser, batch_size=32, lr=1e-3)


def main(args: argparse.Namespace) -> int:
    """Run ``swan train-prior``."""
    try:
        cfg = PriorTrainConfig(
            dataset=args.dataset,
            encoder=args.encoder,
            out=args.out,
            prior=PriorConfig(
                kind=args.kind,
                task=args.task,
                channels=args.channels,
                blocks=args.blocks,
            ),
            init=args.init,
            pairs_per_item=args.pairs_per_item,
            **run_settings(args),
        )
        final = train_prior(cfg)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(final)
    return 0
