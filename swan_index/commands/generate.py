"""Generate maps with the latent prior; every file is labelled generated.

With --like MAP: variations of MAP that keep its first --keep-scales K scales'
codes exactly (K = 1 keeps the global shape, 3 all but the finest detail) and draw
the finer scales from the prior given them; written on MAP's own grid, voxel size
and origin. Without --like: maps drawn from the prior alone, written as canonical
volumes (values 0-1, the molecule at 0.5 and above, 1 Å voxels: the canonical
frame has no physical scale).

examples:
  $ swan generate --like data/maps/emd_1832.map --keep-scales 2 -n 4 -o runs/var
  $ swan generate -n 8 -o runs/samples
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from swan_index.commands import add_prior_args
from swan_index.generate import (
    Generator,
    canonical_map,
    on_input_grid,
    write_generated,
)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register ``swan generate``'s arguments."""
    parser.add_argument("--like", metavar="MAP", help="map file to vary")
    parser.add_argument(
        "--keep-scales", type=int, default=1, help="scales of MAP kept (default 1)"
    )
    parser.add_argument("-n", type=int, default=4, help="maps to draw (default 4)")
    parser.add_argument("-o", "--out", required=True, help="output folder")
    add_prior_args(parser)


def main(args: argparse.Namespace) -> int:
    """Run ``swan generate``."""
    try:
        if args.n < 1:
            raise ValueError(f"-n {args.n}: draw at least one map")
        gen = Generator.load(args.checkpoint, args.prior)
        n_scales = len(gen.encoder.config.scales)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        if args.like is None:
            volumes = gen.sample(args.n, seed=args.seed)
            maps = [(v, canonical_map(v, None)) for v in volumes]
            what = "swan generate, unconditional"
        else:
            if not 0 <= args.keep_scales < n_scales:
                raise ValueError(
                    f"--keep-scales {args.keep_scales}: use 0..{n_scales - 1}"
                )
            dmap, cv = gen.read(args.like, args.contour)
            volumes = gen.reconstruct(cv, 1.0, args.keep_scales, args.n, args.seed)
            maps = [(on_input_grid(v, cv, dmap), dmap) for v in volumes]
            what = f"swan generate like {Path(args.like).name} keep {args.keep_scales}"
        for i, (data, like) in enumerate(maps):
            path = write_generated(
                out / f"generated_{i:03d}.mrc", data, like, [what, gen.tag]
            )
            print(path)
    except (ValueError, OSError) as err:  # IngestError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
