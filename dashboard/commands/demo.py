"""Build the demo store once (cached) and serve it on 127.0.0.1.

The demo store holds the real EMDB sample maps shipped in data/ and a labelled
simulated set: maps simulated from the shipped atomic models and from synthetic
protein-like assemblies, each molecule in 16 variants (resolution 3-12 Å, rotation,
noise, missing chains), so that the UMAP shows clusters. It is encoded with the
shipped checkpoint and needs no download. The first run takes about two minutes
(simulation, encoding, and UMAP's one-off compilation); later runs reuse the cache
(~/.cache/cryo-swan, or --store).

examples:
  $ swan demo
  $ swan demo --port 8060 --store runs/demo.swan
  $ swan demo --build-only
"""

from __future__ import annotations

import argparse

from dashboard.commands.serve import add_server_args, run_server


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register ``swan demo``'s arguments."""
    parser.add_argument("--store", default=None, help="where to build the demo store")
    parser.add_argument(
        "--build-only", action="store_true", help="build the store, do not serve"
    )
    add_server_args(parser)


def main(args: argparse.Namespace) -> int:
    """Run ``swan demo``."""
    from dashboard.demo import build_demo_store, default_demo_path
    from swan_index.layout import layout_store
    from swan_index.map_encoder import MapEncoder
    from swan_index.store import Store

    encoder = MapEncoder(args.checkpoint)
    path = args.store or default_demo_path(encoder)
    print(f"demo store: {path}")
    build_demo_store(path, encoder)
    with Store.open(path, encoder=encoder.info) as store:
        if store.count(where="id IN (SELECT id FROM layout)") < store.count():
            print("computing the UMAP layout (the first time compiles UMAP: ~1 min)")
            layout_store(store)
    if args.build_only:
        return 0
    return run_server(path, args)
