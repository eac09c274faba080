"""Ingest maps into a store: files, folders, whole EMDB mirrors, atomic models.

Reads and canonicalizes maps in worker processes, encodes them with the checkpoint
in batches, and commits each batch in one transaction. With --engine ray, Ray tasks
read and Ray actors encode across a cluster (docs/cluster.md; pip install -e
'.[cluster]'), and this process still writes the store. Safe to re-run and to
interrupt: unchanged files and maps already stored are skipped, so running it again
after a crash ingests exactly what is missing. Every file tried is logged in the
store's ingest_log with its outcome.

Atomic models (.pdb .ent .cif .mmcif, optionally .gz; alone or in folders) are
stored as maps simulated from their first biological assembly (the asymmetric unit
when the file defines none, or with --asymmetric-unit), one entry per
--model-resolution, labelled simulated (method "simulated"), with the PDB id,
title, organism, method, chains and residues the file gives.

Maps made by `swan denoise` or `swan generate` (their header label says GENERATED
by the Cryo-SWAN prior) were not measured: each is refused in one line unless
--allow-generated is given, and then stored labelled generated (method
"generated", simulated, no EMDB id).

Exit status: 0 when every file was stored or skipped, 1 when some files failed (the
others are stored; each failure is printed with its reason), 2 on a usage error,
130 / 143 when stopped by Ctrl-C / SIGTERM (the batches committed so far stay;
the same command ingests the rest).

examples:
  $ swan ingest data/maps --store runs/store
  $ swan ingest /mirror/emdb/structures --store emdb.swan --workers 8
  $ swan ingest /mirror/emdb/structures --store emdb.swan --prune --json
  $ swan ingest new_maps/ --store emdb.swan --layout   # and refresh the UMAP
  $ swan ingest models/ 1abc.cif.gz --store emdb.swan --model-resolution 4 6 8
  $ swan ingest /mirror/emdb/structures --store emdb.swan --engine ray --address auto
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ingest.models import DEFAULT_MODEL_RESOLUTION, MAX_MODEL_ATOMS, check_resolutions
from swan_index.db import StoreBusyError
from swan_index.indexer import ENGINES, EngineError, check_engine, ingest_paths
from swan_index.map_encoder import DEFAULT_CHECKPOINT, MapEncoder
from swan_index.store import Store


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register ``swan ingest``'s arguments."""
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="maps, models, folders, mirrors"
    )
    parser.add_argument("--store", required=True, help="store folder (created if new)")
    parser.add_argument(
        "--checkpoint", default=str(DEFAULT_CHECKPOINT), help="encoder checkpoint"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="reader processes (0: in process); with --engine ray, most maps in "
        "flight (default: twice the cluster's CPUs)",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: worker processes on this machine (default); ray: a Ray "
        "cluster (pip install -e '.[cluster]')",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="with --engine ray: the cluster to join (auto: the one started here "
        "with `ray start`); default: a Ray instance for this run only",
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
    parser.add_argument(
        "--model-resolution",
        type=float,
        nargs="+",
        default=[DEFAULT_MODEL_RESOLUTION],
        metavar="A",
        help="resolutions (Å) atomic models are simulated at, one entry each "
        f"(default {DEFAULT_MODEL_RESOLUTION:g})",
    )
    parser.add_argument(
        "--max-model-atoms",
        type=int,
        default=MAX_MODEL_ATOMS,
        help=f"refuse larger models (default {MAX_MODEL_ATOMS:,})",
    )
    parser.add_argument(
        "--asymmetric-unit",
        action="store_true",
        help="simulate models' asymmetric units, not their biological assemblies",
    )
    parser.add_argument(
        "--allow-generated",
        action="store_true",
        help="store maps the latent prior generated (refused by default), "
        "labelled generated",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


#: Signals that stop an ingest cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _stop_signals() -> Iterator[list[str]]:
    """While active, the :data:`STOP_SIGNALS` raise ``KeyboardInterrupt`` and are
    recorded in the yielded list, so that the ingest stops cleanly (workers
    stopped, store closed). Whatever exception then ends the run is the stop: a
    library may turn the interrupt into its own error (DuckDB raises "Query
    interrupted"). Only the main thread can handle signals: elsewhere this records
    nothing."""
    stops: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield stops
        return

    def stop(signum: int, frame: object) -> None:
        stops.append(signal.Signals(signum).name)
        raise KeyboardInterrupt(stops[0])

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        yield stops
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(args: argparse.Namespace) -> int:
    """Run ``swan ingest``."""
    try:
        check_resolutions(args.model_resolution)
        if args.max_model_atoms < 1:
            raise ValueError(f"--max-model-atoms {args.max_model_atoms}: use 1 or more")
        check_engine(args.engine)
        if args.address is not None and args.engine != "ray":
            raise ValueError("--address needs --engine ray")
        encoder = MapEncoder(args.checkpoint)
        store = Store.open(args.store, encoder=encoder.info)
    except (ValueError, FileNotFoundError, StoreBusyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stops: list[str] = []
    try:
        with _stop_signals() as stops, store:
            summary = ingest_paths(
                args.paths,
                store,
                encoder,
                workers=args.workers,
                batch_size=args.batch_size,
                prune=args.prune,
                progress=not args.quiet and not args.json,
                model_resolutions=tuple(args.model_resolution),
                max_model_atoms=args.max_model_atoms,
                model_assembly=not args.asymmetric_unit,
                engine=args.engine,
                address=args.address,
                allow_generated=args.allow_generated,
            )
            if args.layout and (summary.ok or summary.removed):
                from swan_index.layout import layout_store

                layout_store(store)
            total = store.count()
    except EngineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BaseException:
        if not stops:
            raise
        print(
            f"stopped by {stops[0]}: {args.store} keeps the batches committed so far; "
            "run the same command again to ingest the rest",
            file=sys.stderr,
        )
        return 128 + signal.Signals[stops[0]]
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
