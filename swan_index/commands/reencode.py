"""Re-encode a store with a new checkpoint, from the files its entries came from.

Reads every stored map again (and its header), simulates every atomic model again
at the resolution and assembly it was stored with, and encodes them with the new
checkpoint. Entries keep their ids, and their labels and any metadata the files no
longer give. An entry whose file is gone (or that never had one) cannot be
encoded again: each is printed on a line of its own and left out.

The old store stays readable and searchable (writers wait) while the new one is
built in a sibling folder, STORE.reencoding-<hash>; when it is complete it takes
the old one's place in one atomic step, and the old store is kept as
STORE.before-reencode-<old hash> (named at the end; --delete-old removes it when
every entry was re-encoded). With --out the new store goes there and STORE is
left as it is. The layout (UMAP) is computed again when the old store had one.
Interrupted, the same command continues the build.

Exit status: 0 when every entry was re-encoded, 1 when some were left out (each
printed with its reason), 2 on a usage error, 130 / 143 when stopped by Ctrl-C /
SIGTERM (the store is unchanged; the same command continues).

examples:
  $ swan reencode --store emdb.swan --checkpoint runs/new.pt
  $ swan reencode --store emdb.swan --checkpoint runs/new.pt --out emdb-new.swan
  $ swan reencode --store emdb.swan --checkpoint runs/new.pt --delete-old --json
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from swan_index.commands.ingest import _stop_signals
from swan_index.db import StoreBusyError


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register ``swan reencode``'s arguments."""
    parser.add_argument("--store", required=True, help="the store to re-encode")
    parser.add_argument("--checkpoint", required=True, help="the new checkpoint")
    parser.add_argument(
        "--out", help="build the new store in this new folder; leave --store as it is"
    )
    parser.add_argument(
        "--delete-old",
        action="store_true",
        help="delete the old store once replaced (kept when some entries were "
        "left out)",
    )
    parser.add_argument(
        "--layout",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compute the new store's layout (default: when the old store had one)",
    )
    parser.add_argument("--engine", choices=("local", "ray"), default="local")
    parser.add_argument("--address", help="the Ray cluster's address (--engine ray)")
    parser.add_argument(
        "--workers", type=int, default=None, help="reader processes (0: in process)"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--max-model-atoms", type=int, default=None, help="refuse larger models"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    """Run ``swan reencode``."""
    from swan_index.map_encoder import MapEncoder
    from swan_index.reencode import build_path, reencode_store

    try:
        encoder = MapEncoder(args.checkpoint)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stops: list[str] = []
    try:
        with _stop_signals() as stops:
            summary = reencode_store(
                args.store,
                encoder,
                out=args.out,
                delete_old=args.delete_old,
                layout=args.layout,
                engine=args.engine,
                address=args.address,
                workers=args.workers,
                batch_size=args.batch_size,
                max_model_atoms=args.max_model_atoms,
                progress=not args.quiet and not args.json,
            )
    except (ValueError, FileNotFoundError, StoreBusyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BaseException:
        if not stops:
            raise
        build = build_path(args.out or args.store, encoder.info.hash)
        print(
            f"stopped by {stops[0]}: {args.store} is unchanged; the new store so far "
            f"is in {build}; run the same command again to continue",
            file=sys.stderr,
        )
        return 128 + signal.Signals[stops[0]]
    for m in summary.missing:
        print(
            f"missing: entry {m['id']} {m['emdb_id'] or '-'} "
            f"{m['path'] or '(no source file)'}: {m['reason']}",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(summary.to_dict(), indent=1, default=str))
        return 1 if summary.missing else 0
    layout = (
        f"layout computed ({summary.layout['method']})"
        if summary.layout
        else "no layout (run `swan layout`)"
    )
    print(
        f"{summary.out}: {summary.reencoded} of {summary.entries} entries re-encoded "
        f"with {summary.new_encoder[:12]} (was {summary.old_encoder[:12]}), "
        f"{len(summary.missing)} missing; {layout}; in {summary.seconds:.1f} s"
    )
    if summary.backup:
        print(f"the old store is kept in {summary.backup}; delete it when satisfied")
    return 1 if summary.missing else 0
