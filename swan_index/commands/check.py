"""Verify a store: entries, codes, previews, layout, FAISS indexes, manifest, files.

Reads the store as it is on disk and compares every part with the database: each
FAISS index's ids (and, on a sample, its vectors) with the codes table, and the
joint first-stage index's ids (large stores); the
manifest's counts, encoder and high-water mark with the database (a database
behind its mark lost committed writes: a damaged write-ahead log); the previews,
layout and ingest_log with the entries. Source files gone or changed are reported
as notes: the store does not need them. It holds the store's write lock while it
runs; run it when no ingest is running (e.g. after a backup, on the copy).

--repair first opens the store as its writer and rebuilds every FAISS index and
the manifest from the database. --accept-loss records that the writes a
damaged write-ahead log lost are given up (ids keep increasing past them), so
that the store can be written to again; restoring a backup is the other way.

Exit status: 0 when the store is consistent, 1 on any problem (one line each,
with its fix; a database that cannot be read is one), 2 on a usage error (no
store there, a writer running).

examples:
  $ swan check --store runs/store
  $ swan check --store /backups/emdb.swan --json
  $ swan check --store emdb.swan --repair
  $ swan check --store emdb.swan --accept-loss
"""

from __future__ import annotations

import argparse
import json
import sys

from swan_index.check import SAMPLE, check_store
from swan_index.db import StoreBusyError, StoreLossError


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register ``swan check``'s arguments."""
    parser.add_argument("--store", required=True, help="store folder")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--repair",
        action="store_true",
        help="first rebuild the FAISS indexes and the manifest from the database",
    )
    parser.add_argument(
        "--accept-loss",
        action="store_true",
        help="accept that committed writes a damaged write-ahead log lost are gone "
        "(implies --repair); without it such a store refuses writes",
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=SAMPLE,
        help="ids per index whose vectors are compared (default %(default)s)",
    )
    parser.add_argument(
        "--no-files", action="store_true", help="skip looking at the source files"
    )


def _open_as_writer(path: str, accept_loss: bool) -> bool:
    """Open the store as its writer, rebuild its indexes and manifest from the
    database, close it; returns False when a writer is running. Other failures
    are printed; the check then reports them."""
    from swan_index.store import Store

    try:
        try:
            store = Store.open(path)
        except StoreLossError as err:
            if not accept_loss:
                raise
            store = Store.open(path, accept_loss=True)
            print(
                f"{path}: accepted the loss ({err.loss.describe()}); it takes "
                "writes again",
                file=sys.stderr,
            )
    except StoreBusyError as err:
        print(f"error: {err}", file=sys.stderr)
        return False
    except (FileNotFoundError, ValueError) as err:  # damage: the check reports it
        print(f"error: {err}", file=sys.stderr)
        return True
    with store:
        store.rebuild_indexes()
    return True


def main(args: argparse.Namespace) -> int:
    """Run ``swan check``; 0 consistent, 1 problems, 2 usage error."""
    if args.sample < 0:
        print("error: --sample must be 0 or more", file=sys.stderr)
        return 2
    if (args.repair or args.accept_loss) and not _open_as_writer(
        args.store, args.accept_loss
    ):
        return 2
    try:
        report = check_store(args.store, sample=args.sample, files=not args.no_files)
    except (FileNotFoundError, ValueError, StoreBusyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        for line in report.problems:
            print(f"problem: {line}")
        for line in report.notes:
            print(f"note: {line}")
        print(report.summary())
    return 0 if report.consistent else 1
