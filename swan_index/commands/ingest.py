"""Ingest maps into a store: files, folders, whole EMDB mirrors.

Reads and canonicalizes maps in worker processes, encodes them with the checkpoint
in batches, and commits each batch in one transaction. Safe to re-run and to
interrupt: unchanged files and maps already stored are skipped, so running it again
after a crash ingests exactly what is missing. Every file tried is logged in the
store's ingest_log with its outcome.

Exit status: 0 when every file was stored or skipped, 1 when some files failed (the
others are stored; each failure is printed with its reason), 2 on a usage error,
130 / 143 when stopped by Ctrl-C / SIGTERM (the batches committed so far stay;
the same command ingests the rest).

examples:
  $ swan ingest data/maps --store runs/store
  $ swan ingest /mirror/emdb/structures --store emdb.swan --workers 8
  $ swan ingest /mirror/emdb/structures --store emdb.swan --prune --json
  $ swan ingest new_maps/ --store emdb.swan --layout   # and refresh the UMAP
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from swan_index.db import StoreBusyError
from swan_index.indexer import ingest_paths
from swan_index.map_encoder import DEFAULT_CHECKPOINT, MapEncoder
from swan_index.store import Store


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register ``swan ingest``'s arguments."""
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="maps, folders, mirrors"
    )
    parser.add_argument("--store", required=True, help="store folder (created if new)")
    parser.add_argument(
        "--checkpoint", default=str(DEFAULT_CHECKPOINT), help="encoder checkpoint"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="reader processes (0: in process)"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--prune",
        action="store_true",
        help="delete entries whose files under the given folders vanished",
    )
    parser.add_argument(
        "--layout",
        action="store_true",
        help="recompute the UMAP layout of the archive afterwards (swan layout)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Turn the first SIGTERM into a ``KeyboardInterrupt("SIGTERM")``, as Ctrl-C
    would be, so that the ingest stops cleanly (workers ended, store closed); any
    further one is ignored until then. Only the main thread can handle signals:
    elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(args: argparse.Namespace) -> int:
    """Run ``swan ingest``."""
    try:
        encoder = MapEncoder(args.checkpoint)
        store = Store.open(args.store, encoder=encoder.info)
    except (ValueError, FileNotFoundError, StoreBusyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        with _sigterm_interrupts(), store:
            summary = ingest_paths(
                args.paths,
                store,
                encoder,
                workers=args.workers,
                batch_size=args.batch_size,
                prune=args.prune,
                progress=not args.quiet and not args.json,
            )
            if args.layout and (summary.ok or summary.removed):
                from swan_index.layout import layout_store

                layout_store(store)
            total = store.count()
    except KeyboardInterrupt as stop:
        name = str(stop) or "SIGINT"
        print(
            f"stopped by {name}: {args.store} keeps the batches committed so far; "
            "run the same command again to ingest the rest",
            file=sys.stderr,
        )
        return 128 + int(getattr(signal, name, signal.SIGINT))
    for failure in summary.failures:
        print(f"failed: {failure['reason']}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=1))
    else:
        print(
            f"{args.store}: {summary.ok} stored, {summary.skipped} skipped, "
            f"{summary.failed} failed, {summary.removed} removed in "
            f"{summary.seconds:.1f} s; {total} entries"
        )
        for r in summary.removed_entries:
            print(f"  removed {r['id']} {r['emdb_id'] or ''} {r['path']}")
    return 1 if summary.failed else 0
