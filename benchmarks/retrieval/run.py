"""Retrieval benchmark: do searches put the same molecule at the top?

Ground truth (see :mod:`benchmarks.retrieval.variants`): molecules held out of the
encoder's training (the real atomic models of the test groups, plus synthetic
assemblies from an unused seed family), each simulated as one *reference*
deposition (the gallery) and as query versions that differ in pose, resolution, box
and voxel size, noise, contour, missing parts and conformation. The gallery also
holds distractors: synthetic assemblies with no query, the real EMDB maps of
``--maps`` and ModelNet10 shapes. The real maps of the held-out molecules are
gallery entries *and* queries (cross-domain: a real map against the maps simulated
from its fitted model; the three rotavirus VP6 maps are one family).

Methods, all on the same gallery and queries:

* ``cryo-swan+fit``: the product's search, exactly what ``swan search FILE`` runs
  (:func:`swan_index.search` on a :meth:`Query.from_map <swan_index.Query.from_map>`:
  the query in all its candidate poses, all scales, size term, then the rotational
  fit of the best hits); ``fit-only`` (the fit's weight 1);
* ``cryo-swan``: the same without the rotational fit (the vectors alone);
  ablations of it: ``coarse-only`` (scale 1 alone), ``primary-pose`` (the query's
  first canonical pose only), ``no-size`` (no size term);
* ``zernike``: 3D Zernike descriptors (order 20, 121 invariants, Euclidean
  distance) of each map at its contour, as EM-SURFER does;
* ``canonical-correlation``: Pearson correlation of the canonical volumes (query
  in all candidate poses, best pose kept), no learned model.

Metrics (:mod:`swan_index.retrieval`): P@1, MRR, mAP, R@10 per condition, per
resolution gap, rotation angle and noise level; time per query and per comparison.

    $ python -m benchmarks.retrieval.run --models ../shared/data/real/models \\
          --maps ../shared/data/real/maps --shapes ../shared/data/real/shapes
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from benchmarks.common import (
    SHARED_DATA,
    add_out_argument,
    machine_info,
    save_result,
)
from benchmarks.retrieval.variants import (
    QUERY_CONDITIONS,
    held_out_molecules,
    make_versions,
)
from benchmarks.retrieval.zernike import zernike_descriptor
from encoder.training_data import DEFAULT_TEST_GROUPS, group_of
from ingest.discover import is_map_file
from ingest.mapio import DensityMap, read_map
from ingest.simulate import simulate_view
from swan_index import (
    DEFAULT_CHECKPOINT,
    FitQuery,
    MapEncoder,
    Query,
    SearchOptions,
    Store,
    search,
)
from swan_index.generate import hub_centers, merge_completion
from swan_index.prepare import prepare_map, shrink
from swan_index.query import search_explained
from swan_index.retrieval import METRICS, rank_metrics, summarize

log = logging.getLogger(__name__)

#: Ours and its ablations: name -> SearchOptions fields (``poses``: all or first).
OURS = {
    "cryo-swan": {"fit_top": 0},
    "coarse-only": {"scales": (1,), "fit_top": 0},
    "primary-pose": {"poses": "first", "fit_top": 0},
    "no-size": {"size_weight": 0.0, "fit_top": 0},
    "cryo-swan+fit": {},
    "fit-only": {"fit_weight": 1.0},
}
BASELINES = ("zernike", "canonical-correlation")
#: Bins of the breakdowns: (label, low, high) on the absolute value.
RESOLUTION_GAP_BINS = (("<2 Å", 0, 2), ("2-5 Å", 2, 5), (">5 Å", 5, np.inf))
ROTATION_BINS = (("0-60°", 0, 60), ("60-120°", 60, 120), ("120-180°", 120, 181))


@dataclass
class Item:
    """A map of the benchmark: gallery entry, query, or both."""

    name: str
    group: str
    kind: str  # real-model, synthetic, distractor-synthetic, real-map, shape
    condition: str
    dmap: DensityMap
    params: dict[str, Any] = field(default_factory=dict)
    contour: float = 0.0
    volumes: np.ndarray | None = None  # canonical volumes [P, G, G, G]
    rg: float = 0.0
    zernike: np.ndarray | None = None
    record: Any = None  # its entries row
    entry_id: int = -1
    query: Query | None = None  # as a query: all its candidate poses, encoded
    query_s: float = 0.0  # seconds to build the query (canonicalize + encode)


def _gallery_and_queries(args: argparse.Namespace) -> tuple[list[Item], list[Item]]:
    rng = np.random.default_rng(args.seed)
    gallery, queries = [], []
    molecules = held_out_molecules(args.models, args.synthetic, args.seed)
    for mol in tqdm(molecules, desc="versions", unit="molecule", disable=None):
        for v in make_versions(mol, rng, per_condition=args.per_condition):
            item = Item(v.name, v.group, mol.kind, v.condition, v.map, v.params)
            (gallery if v.condition == "reference" else queries).append(item)
    extra = held_out_molecules(None, args.distractors, args.seed + 1)
    for mol in tqdm(extra, desc="distractors", unit="molecule", disable=None):
        dmap, res = simulate_view(mol.structure(), rng)
        name = f"{mol.name}/distractor"
        gallery.append(
            Item(
                name,
                name,
                "distractor-synthetic",
                "reference",
                dmap,
                {"resolution": res},
            )
        )
    if args.maps:
        for path in sorted(Path(args.maps).iterdir()):
            if not is_map_file(path):
                continue
            group = group_of(path)
            item = Item(path.name, group, "real-map", "real-vs-model", read_map(path))
            gallery.append(item)
            if group in DEFAULT_TEST_GROUPS:
                queries.append(item)  # left out of its own list
    if args.shapes:
        from encoder.training_data import iter_shapes

        for name, dmap in iter_shapes(args.shapes, limit_per_file=args.shapes_limit):
            gallery.append(
                Item(f"shape/{name}", f"shape/{name}", "shape", "reference", dmap)
            )
    return gallery, queries


def _prepare(items: list[Item], encoder: MapEncoder, as_queries: bool) -> None:
    """Gallery items: canonicalized in their primary pose (as ingest stores a
    map); queries: built as ``swan search FILE`` builds them (every pose,
    encoded)."""
    for it in tqdm(items, desc="canonicalize", unit="map", disable=None):
        if as_queries:
            t0 = time.perf_counter()
            it.query = Query.from_map(encoder, it.dmap, label=it.group)
            it.query_s = time.perf_counter() - t0
            prepared = it.query.prepared
        elif it.volumes is not None:
            continue
        else:
            prepared = prepare_map(it.dmap, encoder.grid, False, label=it.group)
        it.volumes, it.contour = prepared.volumes, prepared.record.contour
        it.rg = prepared.record.rg
        it.zernike = zernike_descriptor(
            it.dmap.data, it.contour, voxel_size=it.dmap.voxel_size
        )
        it.record = prepared.record


def _build_store(path: Path, gallery: list[Item], encoder: MapEncoder) -> Store:
    store = Store.open(path, encoder=encoder.info)
    for start in range(0, len(gallery), 32):
        batch = gallery[start : start + 32]
        code = encoder.encode(np.stack([it.volumes[0] for it in batch]))
        ids = store.add(
            code,
            [it.record for it in batch],
            np.stack([shrink(it.volumes[0], 32) for it in batch]),
        )
        for it, i in zip(batch, ids, strict=True):
            it.entry_id = int(i)
    store.flush()
    return store


def _rank_ours(
    store: Store, query: Query, k: int, opts: dict, fit: FitQuery | None
) -> list[int]:
    opts = dict(opts)
    if opts.pop("poses", "all") == "first":
        query = replace(query, code=query.code[0:1])
    hits = search(store, query, k, SearchOptions(**opts), fit=fit, significance=False)
    return [h.id for h in hits]


def _background_method(weight: float) -> str:
    return f"cryo-swan+fit less entry background x{weight:g}"


def _less_entry_background(
    store: Store, query: Query, k: int, fit: FitQuery | None, args: argparse.Namespace
) -> dict[str, list[int]]:
    """``cryo-swan+fit``'s hits re-ranked by their excess over the query's
    background less ``w`` times each entry's own background, for every ``w``
    of ``--entry-background`` (:func:`swan_index.generate.merge_completion`
    with the map's hits alone; not what ``swan search`` does)."""
    if not getattr(args, "entry_background", None):
        return {}
    opts = SearchOptions(**OURS["cryo-swan+fit"])
    hits, sig = search_explained(store, query, k, opts, fit=fit)
    centers = hub_centers(store, hits, opts, fit is not None)
    return {
        _background_method(w): [
            h.id
            for h in merge_completion(
                hits, sig, [], query, k, centers=centers, center_weight=w
            )[0]
        ]
        for w in args.entry_background
    }


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit norm: their dot products are Pearson
    correlations."""
    x = x - x.mean(1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _bin(value: float | None, bins: tuple) -> str | None:
    if value is None:
        return None
    for label, low, high in bins:
        if low <= abs(value) < high:
            return label
    return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    encoder = MapEncoder(args.checkpoint)
    t0 = time.perf_counter()
    gallery, queries = _gallery_and_queries(args)
    _prepare(gallery, encoder, as_queries=False)
    _prepare(queries, encoder, as_queries=True)  # real maps are in both lists
    setup_s = time.perf_counter() - t0
    by_id: dict[int, Item] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = _build_store(Path(tmp) / "bench.swan", gallery, encoder)
        by_id = {it.entry_id: it for it in gallery}
        # the gallery's side of the correlation is computed once, as an index of
        # canonical volumes would store it
        flat = _unit_rows(np.stack([it.volumes[0].ravel() for it in gallery]))
        zern = np.stack([it.zernike for it in gallery])
        gallery_ids = np.array([it.entry_id for it in gallery])
        group_size = defaultdict(int)
        for it in gallery:
            group_size[it.group] += 1
        rows, timing = [], defaultdict(list)
        k = len(gallery)
        for q in tqdm(queries, desc="queries", unit="query", disable=None):
            self_id = q.entry_id if q.kind == "real-map" else -1
            n_rel = group_size[q.group] - (1 if self_id >= 0 else 0)
            if n_rel < 1:
                continue
            timing["cryo-swan query"].append(q.query_s)
            tq = time.perf_counter()
            fit = q.query.fit()
            timing["fit rotations"].append(time.perf_counter() - tq)
            ranked: dict[str, list[int]] = {}
            for name, opts in OURS.items():
                tq = time.perf_counter()
                ranked[name] = _rank_ours(store, q.query, k, opts, fit)
                timing[name].append(time.perf_counter() - tq)
            ranked.update(_less_entry_background(store, q.query, k, fit, args))
            tq = time.perf_counter()
            dist = np.linalg.norm(zern - q.zernike, axis=1)
            ranked["zernike"] = list(gallery_ids[np.argsort(dist, kind="stable")])
            timing["zernike"].append(time.perf_counter() - tq)
            tq = time.perf_counter()
            corr = _unit_rows(q.volumes.reshape(len(q.volumes), -1)) @ flat.T
            best = corr.max(axis=0)
            ranked["canonical-correlation"] = list(
                gallery_ids[np.argsort(-best, kind="stable")]
            )
            timing["canonical-correlation"].append(time.perf_counter() - tq)
            p = q.params
            base = {
                "query": q.name,
                "group": q.group,
                "kind": q.kind,
                "condition": q.condition,
                "resolution_gap": _bin(p.get("resolution_gap"), RESOLUTION_GAP_BINS),
                "rotation": _bin(p.get("rotation_deg"), ROTATION_BINS),
                "noise": p.get("noise_level"),
                "n_relevant": n_rel,
            }
            for method, ids in ranked.items():
                labels = [by_id[i].group for i in ids if i != self_id]
                rows.append(
                    {
                        **base,
                        "method": method,
                        "top": labels[0] if labels else None,
                        **rank_metrics(labels, q.group, n_rel),
                    }
                )
        store.close()
    extra = [_background_method(w) for w in getattr(args, "entry_background", [])]
    methods = [*OURS, *extra, *BASELINES]
    result = {
        "benchmark": "retrieval of held-out molecules across deposition differences",
        "checkpoint": str(args.checkpoint),
        "encoder": encoder.info.hash[:16],
        "settings": {k: str(v) for k, v in vars(args).items()},
        "gallery": {
            "size": len(gallery),
            "by_kind": _count(it.kind for it in gallery),
        },
        "queries": {
            "size": len({r["query"] for r in rows}),
            "by_condition": _count(
                r["condition"] for r in rows if r["method"] == "cryo-swan"
            ),
        },
        "setup_seconds": round(setup_s, 1),
        "summary": {m: summarize(r for r in rows if r["method"] == m) for m in methods},
        "by_condition": _breakdown(rows, methods, "condition"),
        "by_kind": _breakdown(rows, methods, "kind"),
        "by_resolution_gap": _breakdown(rows, methods, "resolution_gap"),
        "by_rotation": _breakdown(rows, methods, "rotation"),
        "by_noise": _breakdown(rows, methods, "noise"),
        "paired": {key: _paired(rows, key) for key in ("condition", "noise", "kind")},
        "paired_fit": {
            key: _paired(rows, key, ours="cryo-swan+fit")
            for key in ("condition", "noise", "kind")
        },
        "ms_per_query": {
            m: round(1000 * float(np.median(t)), 3) for m, t in timing.items()
        },
        "per_comparison": {
            "cryo-swan floats": int(sum(encoder.info.dims)),
            "canonical-correlation floats": int(flat.shape[1]),
            "zernike floats": int(zern.shape[1]),
        },
        "rows": rows,
        "machine": machine_info(),
    }
    return result


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for v in values:
        out[str(v)] += 1
    return dict(out)


def _breakdown(rows: list[dict], methods: list[str], key: str) -> dict:
    values = sorted({r[key] for r in rows if r[key] is not None}, key=str)
    return {
        str(v): {
            m: summarize(r for r in rows if r[key] == v and r["method"] == m)
            for m in methods
        }
        for v in values
    }


def _paired(
    rows: list[dict], key: str, ours: str = "cryo-swan", n_boot: int = 2000
) -> dict:
    """Ours against each baseline on the *same* queries, per value of ``key``.

    ``better``/``worse``: queries that ours gets right at rank 1 and the baseline
    does not, and the reverse; ``diff``: the difference in P@1; ``ci95``: its 95 %
    bootstrap interval (the queries resampled with replacement, paired).
    """
    hit: dict[tuple[str, str], float] = {}
    value: dict[str, Any] = {}
    for r in rows:
        hit[r["query"], r["method"]] = r["p_at_1"]
        value[r["query"]] = r[key]
    rng = np.random.default_rng(0)
    out: dict[str, dict] = {}
    values = sorted({x for x in value.values() if x is not None}, key=str)
    for v in ["all", *values]:
        queries = [q for q, x in value.items() if v == "all" or x == v]
        a = np.array([hit[q, ours] for q in queries])
        per: dict[str, dict] = {}
        for base in BASELINES:
            d = a - np.array([hit[q, base] for q in queries])
            boots = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(axis=1)
            lo, hi = np.percentile(boots, [2.5, 97.5])
            per[base] = {
                "n": len(d),
                "better": int((d > 0).sum()),
                "worse": int((d < 0).sum()),
                "diff": round(float(d.mean()), 4),
                "ci95": [round(float(lo), 4), round(float(hi), 4)],
            }
        out[str(v)] = per
    return out


def print_table(result: dict[str, Any]) -> None:
    methods = list(result["summary"])
    print(f"gallery {result['gallery']['size']}, queries {result['queries']['size']}")
    print(f"{'condition':16s} {'n':>4s} " + " ".join(f"{m[:12]:>12s}" for m in methods))
    blocks = [
        ("all", {"all": result["summary"]}),
        ("", result["by_condition"]),
        ("", result["by_resolution_gap"]),
        ("", result["by_rotation"]),
        ("", result["by_noise"]),
        ("", result["by_kind"]),
    ]
    for _, block in blocks:
        for name, per in block.items():
            n = next(iter(per.values()))["n"]
            print(
                f"{name[:16]:16s} {n:4d} "
                + " ".join(f"{per[m]['p_at_1']:12.3f}" for m in methods)
            )
    print("(precision@1; the JSON has MRR, mAP and recall@10 too)")
    for title, name in (("cryo-swan", "paired"), ("cryo-swan+fit", "paired_fit")):
        if name in result:
            _print_paired(title, result[name])
    print("median ms per query:", result["ms_per_query"])


def _print_paired(title: str, paired: dict) -> None:
    print(f"paired, {title} against each baseline: better / worse, P@1 diff [95% CI]")
    for key, block in paired.items():
        for v, per in block.items():
            if v == "all" and key != "condition":
                continue
            print(
                f"{key[:9]:>9s}: {v[:16]:16s} "
                + "  ".join(
                    f"{b[:12]}: +{x['better']}/-{x['worse']} {x['diff']:+.3f} "
                    f"[{x['ci95'][0]:+.3f}, {x['ci95'][1]:+.3f}]"
                    for b, x in per.items()
                )
            )


def add_draw_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments that choose the benchmark's draw (gallery and queries)."""
    add_data_arguments(parser)
    parser.add_argument(
        "--synthetic",
        type=int,
        default=40,
        help="held-out synthetic molecules with queries",
    )
    parser.add_argument(
        "--distractors",
        type=int,
        default=60,
        help="synthetic molecules in the gallery only",
    )
    parser.add_argument(
        "--shapes-limit", type=int, default=10, help="shapes per ModelNet file"
    )
    parser.add_argument("--per-condition", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_draw_arguments(parser)
    parser.add_argument(
        "--entry-background",
        type=float,
        nargs="*",
        default=[],
        help="also rank cryo-swan+fit's hits by their excess less this times "
        "each entry's own background (a hubness correction; not what swan search does)",
    )
    add_out_argument(parser, "bench_retrieval.json")
    args = drop_missing_data(parser.parse_args(argv))
    return save_result(run(args), args.out, print_table, rows_key="rows")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--models``, ``--maps``, ``--shapes``: the real data of the draws."""
    shared = SHARED_DATA
    parser.add_argument("--models", type=Path, default=shared / "models")
    parser.add_argument("--maps", type=Path, default=shared / "maps")
    parser.add_argument("--shapes", type=Path, default=shared / "shapes")


def drop_missing_data(args: argparse.Namespace) -> argparse.Namespace:
    """Run without the data folders that are not there (each one warned)."""
    for name in ("models", "maps", "shapes"):
        path = getattr(args, name)
        if path is not None and not path.exists():
            log.warning("%s: not found; running without it", path)
            setattr(args, name, None)
    return args


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()

__all__ = [
    "BASELINES",
    "OURS",
    "QUERY_CONDITIONS",
    "METRICS",
    "add_data_arguments",
    "add_draw_arguments",
    "drop_missing_data",
    "main",
    "run",
]
