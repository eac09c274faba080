"""Find the stored maps most similar to a query map, coarse to fine.

QUERY is a map file (.map/.mrc/.ccp4, optionally .gz/.bz2), an atomic model
(.pdb/.ent/.cif/.mmcif, optionally .gz: simulated at --resolution from its first
biological assembly, as swan ingest stores models) or an entry already in
the store (its store id, or its EMDB id such as EMD-1832). A map file is searched in
every candidate canonical pose; each hit keeps its best pose. So is a stored entry
whose map file is still where it was ingested from, unchanged (otherwise, or with
--stored-pose, its stored vectors: one pose). The score (docs/search.md):

  score = 0.5 x shape + 0.5 x fit - 0.05 x |ln(Rg_query / Rg_entry)|
  shape = mean cosine similarity of the retrieval vectors over the scales
  fit   = best correlation over all rotations of the query (for a stored entry,
          of its stored preview) with the entry's stored preview

(the fit re-scores the best --fit-top hits: what finds maps with missing parts or
moved domains, whose canonical poses differ; with --fit-top 0, score = shape -
0.05 x |ln(Rg_query / Rg_entry)|). Each hit's E-value is the number of unrelated
entries expected to score at least as high for this query in a store of this
size, from a null model of the store (random pairs of its entries, calibrated
once per store content); E < 0.1 is significant, and "no significant match" is
printed when no hit is.

columns: score; E (the E-value); shape and fit (the two terms above, before
their weights); Rg q/e (Rg_query / Rg_entry, the size term's ratio); z1, z2...
(per scale, the cosine against this query's cosines to unrelated entries, in
robust standard deviations: 0 is typical of unrelated maps; a coarse scale where
every map scores 0.99 gives z near 0). --json gives every hit's raw per-scale
cosines (scores), its terms (the weighted parts that sum to the score), excess,
pvalue, evalue and significant.

--complete also searches with the query's completion by the latent prior (swan
complete; every candidate pose restored), and each entry keeps the better of its
hit for the map and for the completion (a hit from the completion has a pose
number past the map's): meant for maps with parts missing.

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
import math
import sys
from pathlib import Path

from ingest.errors import IngestError
from ingest.models import DEFAULT_MODEL_RESOLUTION, is_model_file
from swan_index.commands import add_query_args, load_encoder, open_reader
from swan_index.map_encoder import MapEncoder
from swan_index.query import Query, search_explained
from swan_index.ranking import Hit, SearchOptions
from swan_index.significance import Significance
from swan_index.store import Store


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
    parser.add_argument(
        "--complete",
        action="store_true",
        help="search with the query's completion by the latent prior as well, "
        "keeping each entry's best (for maps with parts missing; swan complete)",
    )
    parser.add_argument(
        "--complete-strength",
        type=float,
        default=None,
        help="the prior's share in the completion, in (0, 1] (default: swan "
        "complete's)",
    )
    parser.add_argument(
        "--prior",
        default=None,
        help="prior for --complete (default: the shipped completion prior)",
    )
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
        if args.complete:
            hits, sig = _search_with_completion(store, query, args, options)
        elif args.complete_strength is not None:
            raise ValueError("--complete-strength: only with --complete")
        else:
            hits, sig = search_explained(store, query, k=args.k, options=options)
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
    print_hits(hits, sig, [str(s) for s in (scales or store.encoder.scales)])
    return 0


def _search_with_completion(
    store: Store, query: Query, args: argparse.Namespace, options: SearchOptions
) -> tuple[list[Hit], Significance]:
    """Search with ``query`` and its completion by the prior, each entry's
    best kept."""
    from swan_index.commands.complete import DEFAULT_STRENGTH
    from swan_index.generate import (
        DEFAULT_COMPLETION_PRIOR,
        Generator,
        completion_of,
        search_with_completion,
    )

    strength = args.complete_strength
    if strength is None:
        strength = DEFAULT_STRENGTH
    if not 0 < strength <= 1:
        raise ValueError(f"--complete-strength {strength:g}: use a value in (0, 1]")
    gen = Generator.load(args.checkpoint, args.prior or DEFAULT_COMPLETION_PRIOR)
    completion = completion_of(query, gen, MapEncoder(args.checkpoint), strength)
    return search_with_completion(store, query, completion, args.k, options)


def print_hits(hits: list[Hit], sig: Significance, sides: list[str]) -> None:
    """The hits table, the score's formula above it and the verdict below."""
    print(sig.formula)
    print(
        f"E = unrelated entries expected to score this high in {sig.entries} "
        f"entries; significant: E < {sig.threshold:g}"
    )
    zs = "".join(f" {'z' + s:>5s}" for s in sides)
    print(
        f"{'rank':>4s} {'id':>7s} {'EMDB':12s} {'score':>6s} {'E':>8s} "
        f"{'shape':>6s} {'fit':>6s} {'Rg q/e':>6s}{zs}  title"
    )
    for h in hits:
        fit = h.scores.get("fit")
        size = h.scores.get("size")
        cells = [
            f"{h.rank:4d} {h.id:7d} {h.emdb_id or '-':12s} {h.score:6.3f}",
            _num(h.evalue, "8.2g"),
            _num(h.shape, "6.3f"),
            _num(fit, "6.3f"),
            _num(None if size is None else math.exp(size), "6.2f"),
        ]
        z = "".join(" " + _num(h.scale_z.get(s), "5.1f") for s in sides)
        title = (h.entry.get("title") or h.entry.get("label") or "")[:40]
        print(" ".join(cells) + z + f"  {title}")
    print(sig.message)


def _num(value: float | None, fmt: str) -> str:
    width = int(fmt.split(".")[0])
    return f"{'-':>{width}s}" if value is None else format(value, fmt)
