"""Benchmark: which known structure is in my map? Real maps against a gallery of
atomic models ingested by ``swan ingest``.

The gallery is every atomic model of ``--models`` (29 real PDB/mmCIF files),
ingested exactly as ``swan ingest MODELS --model-resolution ...`` stores them
(:func:`swan_index.indexer.ingest_paths`): SIMULATED maps, one per model and
resolution. Twice: from each model's first biological assembly (the default) and
from its asymmetric unit (``--asymmetric-unit``). The queries are the seven real
maps of ``--maps`` whose molecule has models in the gallery (the groups of
:data:`encoder.training_data.DEFAULT_TEST_GROUPS`, held out of the encoder's
training); the other 21 models are distractors. A query is searched as
``swan search MAP`` searches (:meth:`Query.from_file`, every candidate pose, the
rotational fit of the best hits), and the hits are collapsed to models (each
model keeps its best entry). Right at rank 1: the best model is of the query's
molecule (:func:`encoder.training_data.group_of`).

Ways of choosing the entries searched, all on the same stores and queries:

* ``6A``: the entries simulated at 6 Å (``--model-resolution``'s default);
* ``matched``: the entries at the ladder resolution nearest the map's own
  (``MAP_RESOLUTIONS``, from ``../shared/data/real/SOURCES.md``), i.e.
  ``--where "resolution = R"``;
* ``all``: every resolution of the ladder, each model keeping its best entry.

The seven maps are the only real map/model pairs there are, so none of this is
held out: every figure is measured on them, and docs/results/models.md says
which choices were made before and after looking at them.

    $ python -m benchmarks.bench_model_retrieval
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    SHARED_DATA,
    RunRecord,
    add_out_argument,
    save_result,
)
from encoder.training_data import DEFAULT_TEST_GROUPS, group_of
from ingest.discover import is_map_file
from swan_index import DEFAULT_CHECKPOINT, MapEncoder, Query, SearchOptions, Store
from swan_index import search as run_search
from swan_index.indexer import ingest_paths

log = logging.getLogger(__name__)

SHARED = SHARED_DATA
#: The real maps' own resolutions, Å, as ``SOURCES.md`` gives them (EMDB
#: metadata of the entry each map comes from).
MAP_RESOLUTIONS = {
    "emd_3488.mrc": 3.2,
    "MAP_m4A.mrc.gz": 3.4,
    "emd_21457_seg.mrc": 3.2,
    "emd_1461.mrc": 3.8,
    "3j9sA.mrc": 2.6,
    "6272.mrc": 2.6,
    "2566_3J6B_9.mrc": 3.2,
}
#: Resolutions every model is simulated at (``--model-resolution``), Å.
LADDER = (3.0, 4.0, 6.0, 8.0)
SELECTIONS = ("6A", "matched", "all")


def _queries(maps: Path) -> list[Path]:
    return [
        p
        for p in sorted(maps.iterdir())
        if is_map_file(p) and group_of(p) in DEFAULT_TEST_GROUPS
    ]


def _build(store_dir: Path, models: Path, encoder: MapEncoder, assembly: bool):
    store = Store.open(store_dir, encoder=encoder.info)
    t0 = time.perf_counter()
    summary = ingest_paths(
        [models],
        store,
        encoder,
        workers=0,
        progress=False,
        model_resolutions=LADDER,
        model_assembly=assembly,
    )
    seconds = time.perf_counter() - t0
    table = store.entries(("id", "source_path", "resolution", "rg", "n_chains"))
    info = {
        int(i): {
            "model": Path(str(src)).name,
            "group": group_of(str(src)),
            "resolution": float(res),
            "rg": float(rg),
            "chains": int(nc),
        }
        for i, src, res, rg, nc in zip(*table.values(), strict=True)
    }
    return store, summary, seconds, info


def _where(selection: str, query_resolution: float) -> str | None:
    if selection == "6A":
        return "resolution = 6"
    if selection == "matched":
        nearest = min(LADDER, key=lambda r: (abs(r - query_resolution), r))
        return f"resolution = {nearest:g}"
    return None


def _rank_models(hits: list, info: dict[int, dict]) -> list[dict[str, Any]]:
    """Hits collapsed to models, best first (each model's best entry)."""
    seen: dict[str, dict[str, Any]] = {}
    for h in hits:
        meta = info[h.id]
        if meta["model"] not in seen:
            seen[meta["model"]] = {**meta, "score": round(h.score, 4), "id": h.id}
    return list(seen.values())


def run(args: argparse.Namespace) -> dict[str, Any]:
    record = RunRecord()
    encoder = MapEncoder(args.checkpoint)
    queries = _queries(args.maps)
    rows, builds = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for gallery, assembly in (("assembly", True), ("asymmetric-unit", False)):
            store, summary, seconds, info = _build(
                Path(tmp) / gallery, args.models, encoder, assembly
            )
            builds[gallery] = {
                "entries": store.count(),
                "stored": summary.ok,
                "failed": summary.failures,
                "ingest_seconds": round(seconds, 2),
            }
            for path in queries:
                t0 = time.perf_counter()
                query = Query.from_file(encoder, path)
                fit = query.fit()
                build_s = time.perf_counter() - t0
                res = MAP_RESOLUTIONS.get(path.name, 6.0)
                for selection in SELECTIONS:
                    opts = SearchOptions(where=_where(selection, res))
                    hits = run_search(
                        store, query, k=store.count(), options=opts, fit=fit
                    )
                    ranked = _rank_models(hits, info)
                    group = group_of(path)
                    right = [i for i, m in enumerate(ranked) if m["group"] == group]
                    rows.append(
                        {
                            "gallery": gallery,
                            "selection": selection,
                            "query": path.name,
                            "group": group,
                            "map_resolution": res,
                            "query_rg": round(float(query.rg or 0), 2),
                            "right_at_1": bool(right and right[0] == 0),
                            "rank_of_first_right": right[0] + 1 if right else None,
                            "top": ranked[:3],
                            "best_right": ranked[right[0]] if right else None,
                            "query_seconds": round(build_s, 3),
                        }
                    )
            store.close()
    summary = {
        f"{g}/{s}": sum(
            r["right_at_1"] for r in rows if r["gallery"] == g and r["selection"] == s
        )
        for g in builds
        for s in SELECTIONS
    }
    return {
        "benchmark": "bench_model_retrieval",
        "checkpoint": encoder.info.hash[:12],
        "ladder": list(LADDER),
        "queries": [p.name for p in queries],
        "n_queries": len(queries),
        "galleries": builds,
        "right_at_1": summary,
        "rows": rows,
        "run": record.finish(),
    }


def _print(result: dict[str, Any]) -> None:
    n = result["n_queries"]
    print(f"right at rank 1 (of {n} real maps), checkpoint {result['checkpoint']}:")
    for key, value in result["right_at_1"].items():
        print(f"  {key:28s} {value}/{n}")
    for r in result["rows"]:
        if r["gallery"] == "assembly":
            top = r["top"][0]
            print(
                f"  {r['selection']:8s} {r['query']:18s} "
                f"rank {r['rank_of_first_right']}"
                f"  top {top['model']} @ {top['resolution']:g} Å ({top['group']})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, default=SHARED / "models")
    parser.add_argument("--maps", type=Path, default=SHARED / "maps")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    add_out_argument(parser, "bench_model_retrieval.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    save_result(run(args), args.out, _print, rows_key="rows")


if __name__ == "__main__":
    main()
