"""Find the stored maps most similar to a query map, coarse to fine.

QUERY is a map file (.map/.mrc/.ccp4, optionally .gz/.bz2), an atomic model
(.pdb/.ent/.cif/.mmcif, optionally .gz: simulated at --resolution from its first
biological assembly, as swan ingest stores models) or an entry already in
the store (its store id, or its EMDB id such as EMD-1832). A map file is searched in
every candidate canonical pose; each hit keeps its best pose. So is a stored entry
whose map file is still where it was ingested from, unchanged (otherwise, or with
--stored-pose, its stored vectors: one pose). Scores: the mean
cosine similarity over the scales, minus a size term (see docs/search.md); then the
best --fit-top hits are re-scored, half by that and half by the best correlation
over all rotations of the query (for a stored entry, of its stored preview) with
their stored previews (column "fit"): what finds maps with missing parts or moved
domains, whose canonical poses differ. --json lists the per-scale cosines of every
hit.

--where takes a SQL predicate over the entries table (columns: emdb_id, title,
method, resolution, organism, sample_name, release_date, voxel_size, rg, label,
simulated, and for entries simulated from models pdb_id, model_method, n_chains,
n_residues, ...); it runs read-only.

examples:
  $ swan search data/maps/emd_5625.map --store runs/store -k 5
  $ swan search EMD-1832 --store runs/store --where "resolution < 4" --json
  $ swan search model.cif --resolution 8 --store runs/store
  $ swan search query.map.gz --store emdb.swan \\
        --where "method = 'singleParticle' AND year(release_date) >= 2020"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ingest.errors import IngestError
from ingest.models import DEFAULT_MODEL_RESOLUTION, is_model_file
from swan_index.commands import add_query_args, load_encoder, open_reader
from swan_index.map_encoder import MapEncoder
from swan_index.query import Query, search
from swan_index.ranking import SearchOptions


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register ``swan search``'s arguments."""
    parser.add_argument("query", metavar="QUERY", help="map file, store id or EMDB id")
    parser.add_argument("--store", required=True)
    parser.add_argument("-k", type=int, default=10, help="hits (default 10)")
    parser.add_argument("--where", default=None, help="SQL predicate over entries")
    parser.add_argument(
        "--exact", action="store_true", help="score every entry (no candidates)"
    )
    parser.add_argument(
        "--scales", default=None, help="comma-separated scale sides, e.g. 1,2"
    )
    parser.add_argument("--contour", type=float, default=None, help="query contour")
    parser.add_argument(
        "--resolution",
        type=float,
        default=None,
        help=f"an atomic model QUERY is simulated at, Å "
        f"(default {DEFAULT_MODEL_RESOLUTION:g})",
    )
    add_query_args(parser)
    parser.add_argument("--json", action="store_true")


def main(args: argparse.Namespace) -> int:
    """Run ``swan search``."""
    store = open_reader(args.store)
    if store is None:
        return 2
    try:
        scales = tuple(int(s) for s in args.scales.split(",")) if args.scales else None
        if args.fit_top < 0:
            raise ValueError(f"--fit-top {args.fit_top}: use 0 (off) or more")
        options = SearchOptions(
            where=args.where, scales=scales, exact=args.exact, fit_top=args.fit_top
        )
        if args.resolution is not None and not is_model_file(args.query):
            raise ValueError(
                f"--resolution {args.resolution:g}: only for an atomic model QUERY "
                "(.pdb .ent .cif .mmcif, optionally .gz); leave it out for a map"
            )
        if is_model_file(args.query) and Path(args.query).exists():
            query = Query.from_model(
                MapEncoder(args.checkpoint),
                args.query,
                args.resolution or DEFAULT_MODEL_RESOLUTION,
            )
        elif Path(args.query).is_file():
            query = Query.from_file(
                MapEncoder(args.checkpoint), args.query, args.contour
            )
        else:
            entry_id = store.find(args.query)
            encoder = None if args.stored_pose else load_encoder(args.checkpoint)
            query = Query.from_entry(store, encoder, entry_id)
            if query.note and not args.stored_pose:
                print(
                    f"note: {query.note}; searching with the stored pose",
                    file=sys.stderr,
                )
        hits = search(store, query, k=args.k, options=options)
    except (IngestError, ValueError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) else str(err)
        if isinstance(err, KeyError) and not Path(args.query).exists():
            msg += "; QUERY is a map file, a store id or an EMDB id"
        print(f"error: {msg}", file=sys.stderr)
        return 1 if isinstance(err, IngestError) else 2
    finally:
        store.close()
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], indent=1))
        return 0
    sides = [str(s) for s in (scales or store.encoder.scales)]
    if any("fit" in h.scores for h in hits):
        sides.append("fit")
    head = "  ".join(f"{s:>5s}" if s == "fit" else f"s{s:>4s}" for s in sides)
    print(f"{'rank':>4s} {'id':>7s} {'EMDB':12s} {'score':>6s}  {head}  title")
    for h in hits:
        per = "  ".join(f"{h.scores.get(s, float('nan')):5.3f}" for s in sides)
        title = (h.entry.get("title") or h.entry.get("label") or "")[:40]
        print(
            f"{h.rank:4d} {h.id:7d} {h.emdb_id or '-':12s} {h.score:6.3f}  {per}  "
            f"{title}"
        )
    return 0
