"""Generate maps with the latent prior; every file is labelled generated.

With --like MAP (a map file, or with --store an entry of the store: its store id
or EMDB id, whose map file is read again at its stored contour): variations of
MAP that keep its first --keep-scales K scales' codes exactly (K = 1 keeps the
global shape, 3, the default, all but the finest detail) and draw the finer
scales from the prior given them (--strength, default 0.6: below 1 starts them
from MAP's own finer scales and keeps the variations closer to it; 1 draws them
afresh, the most varied); written on MAP's own grid, voxel size and origin.
Without --like: maps drawn from the prior alone, written as canonical volumes
(values 0-1, the molecule at 0.5 and above, 1 Å voxels: the canonical frame has
no physical scale).

examples:
  $ swan generate --like data/maps/emd_1832.map --keep-scales 2 -n 4 -o runs/var
  $ swan generate --like EMD-1832 --store runs/store -n 4 -o runs/var
  $ swan generate --like data/maps/emd_1832.map --keep-scales 1 --strength 1 -o runs/v
  $ swan generate -n 8 -o runs/samples
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from swan_index.commands import add_prior_args
from swan_index.generate import (
    VARIATION_KEEP,
    VARIATION_STRENGTH,
    Generator,
    canonical_map,
    on_input_grid,
    write_generated,
)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register ``swan generate``'s arguments."""
    parser.add_argument(
        "--like", metavar="MAP", help="map file (or, with --store, entry) to vary"
    )
    parser.add_argument("--store", help="store that holds the --like entry")
    parser.add_argument(
        "--keep-scales",
        type=int,
        default=None,
        help=f"scales of MAP kept (default {VARIATION_KEEP}, or all but the finest "
        "for an encoder with fewer scales)",
    )
    parser.add_argument(
        "--strength",
        type=float,
        default=None,
        help="with --like: the prior's share in (0, 1]; 1 draws the finer scales "
        "afresh, less starts from MAP's own and keeps more of it (default "
        f"{VARIATION_STRENGTH:g})",
    )
    parser.add_argument("-n", type=int, default=4, help="maps to draw (default 4)")
    parser.add_argument("-o", "--out", required=True, help="output folder")
    add_prior_args(parser)


def main(args: argparse.Namespace) -> int:
    """Run ``swan generate``."""
    try:
        if args.n < 1:
            raise ValueError(f"-n {args.n}: draw at least one map")
        if args.like is None and args.strength is not None:
            raise ValueError("--strength varies a map: give it with --like")
        if args.like is None and args.keep_scales is not None:
            raise ValueError("--keep-scales varies a map: give it with --like")
        strength = VARIATION_STRENGTH if args.strength is None else args.strength
        if not 0 < strength <= 1:
            raise ValueError(f"--strength {strength:g}: use a value in (0, 1]")
        gen = Generator.load(args.checkpoint, args.prior)
        n_scales = len(gen.encoder.config.scales)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        if args.like is None:
            volumes = gen.sample(args.n, seed=args.seed)
            maps = [(v, canonical_map(v, None)) for v in volumes]
            what = "swan generate, unconditional"
        else:
            keep = args.keep_scales
            if keep is None:
                keep = min(VARIATION_KEEP, n_scales - 1)
            if not 0 <= keep < n_scales:
                raise ValueError(f"--keep-scales {keep}: use 0..{n_scales - 1}")
            like, contour = stored_map(args) if args.store else (args.like, None)
            if args.contour is not None:
                contour = args.contour
            dmap, cv = gen.read(like, contour)
            volumes = gen.reconstruct(cv, strength, keep, args.n, args.seed)
            maps = [(on_input_grid(v, cv, dmap), dmap) for v in volumes]
            what = f"swan generate like {Path(args.like).name} keep {keep}"
            if strength != 1:
                what += f" strength {strength:g}"
        for i, (data, grid) in enumerate(maps):
            path = write_generated(
                out / f"generated_{i:03d}.mrc", data, grid, [what, gen.tag]
            )
            print(path)
    except (ValueError, OSError, KeyError) as err:  # IngestError is a ValueError
        msg = err.args[0] if isinstance(err, KeyError) else err
        print(f"error: {msg}", file=sys.stderr)
        return 1
    return 0


def stored_map(args: argparse.Namespace) -> tuple[str, float | None]:
    """The map file and contour of the store entry ``args.like``.

    Raises:
        KeyError: no such entry.
        ValueError: the store cannot be opened, or the entry has no map file
            (simulated from a model).
    """
    from swan_index.db import StoreBusyError
    from swan_index.store import Store

    try:
        store = Store.open(args.store, read_only=True)
    except (FileNotFoundError, StoreBusyError) as err:
        raise ValueError(str(err)) from err
    try:
        row = store.get(store.find(args.like))[0]
    finally:
        store.close()
    if not row.get("source_path"):
        raise ValueError(
            f"{args.like}: the store records no map file for it (simulated from a "
            "model); pass a map file to --like"
        )
    return row["source_path"], row.get("contour")
