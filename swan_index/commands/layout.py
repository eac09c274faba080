"""Compute the archive's 2D map (UMAP) and clusters, and store them.

An entry is placed and clustered by its finest-scale vector and its size; a
cluster is a group of maps of like shape and size, and cluster -1 holds the maps
like no others (docs/results/clusters.md measures them against known families).
The dashboard draws the layout stored here and never computes it on page load.
Run it after an ingest (or use `swan ingest --layout`). UMAP's first call in a
process spends about a minute compiling.

examples:
  $ swan layout --store runs/sample.swan
  $ swan layout --store emdb.swan --neighbors 30 --seed 1
"""

from __future__ import annotations

import argparse
import sys
import time

from swan_index.db import StoreBusyError


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register ``swan layout``'s arguments."""
    parser.add_argument("--store", required=True)
    parser.add_argument("--neighbors", type=int, default=15, help="UMAP n_neighbors")
    parser.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    """Run ``swan layout``."""
    from swan_index.layout import layout_store
    from swan_index.store import Store

    t0 = time.perf_counter()
    try:
        store = Store.open(args.store)
    except (FileNotFoundError, ValueError, StoreBusyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with store:
        info = layout_store(store, seed=args.seed, n_neighbors=args.neighbors)
    print(
        f"{args.store}: layout of {info['entries']} entries in "
        f"{time.perf_counter() - t0:.1f} s; {info}"
    )
    return 0
