"""Benchmark: `swan ingest --engine ray` against the local engine, same maps, same
run; and what ingesting EMDB would take on a cluster.

The maps are the **simulated** ``.map.gz`` files of :mod:`benchmarks.bench_ingest`
(atomic models simulated at 3-5 Å in a box of about ``--size``^3 voxels with 5 %
noise; file names start with ``simulated_``), cached in ``--cache``.

In one process, over the same files (page cache warm), ``--repeat`` rounds of:

* ``local``: :func:`~swan_index.indexer.ingest_paths` with the local engine and its
  default workers (the CPU count, at most 8);
* ``ray``: the same with ``engine="ray"``, on a Ray instance started on this
  machine before the rounds (the CPU count as Ray CPUs; its start-up time is
  reported apart, as the checkpoint's loading is excluded from both).

It reports the best round's maps/s per engine and the ratio ray / local, and a
one-process breakdown (read, canonicalize, encode, store add) of every map.

The projection: hours to ingest the EMDB entries of
``../shared/data/real/headers/EMDB_metadata.csv`` (8,071 entries; it gives no box
sizes) on N CPU nodes of ``--node-cpus`` CPUs, at box sides of 256, 320 and 400
voxels (the shared real headers show 256^3 for EMD-0001 and 400^3 for EMD-21457).
Reading and canonicalizing scale with the voxels: the measured ray maps/s per CPU
is scaled by (measured mean voxels / box voxels). The one writer caps the rate at
1 / (its commit's seconds per map, batches of 16 sample maps stored under
generated hashes) and the encoding actors (one per 8 CPUs) at actors / (seconds per
map of a batch of 16 encoded on one thread, as an actor does)
(:func:`project`). These are
projections from this machine's per-map costs, not a run on a cluster. JSON goes
to ``benchmarks/results/bench_ingest_ray.json``.

    $ python -m benchmarks.bench_ingest_ray [--maps 10] [--size 300] [--repeat 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_ingest import (
    add_map_arguments,
    breakdown,
    ingest_pass,
    make_maps,
)
from benchmarks.common import (
    ROOT,
    SHARED_DATA,
    RunRecord,
    add_out_argument,
    machine_info,
    save_result,
    time_calls,
)
from ingest import map_size

EMDB_METADATA = SHARED_DATA / "headers"
EMDB_METADATA = EMDB_METADATA / "EMDB_metadata.csv"
#: Box sides (voxels) the projection is made at.
BOX_SIDES = (256, 320, 400)
#: Node counts the projection is made for.
NODES = (1, 4, 16, 64)


def emdb_entries(path: Path = EMDB_METADATA) -> int:
    """The number of entries listed in the EMDB metadata table."""
    with open(path, newline="") as f:
        return sum(1 for _ in csv.DictReader(f))


def project(
    entries: int,
    maps_per_cpu_s: float,
    mean_voxels: float,
    writer_s_per_map: float,
    encode_s_per_map: float,
    node_cpus: int,
) -> list[dict[str, Any]]:
    """Hours to ingest ``entries`` maps per box side and node count (CPU nodes).

    The rate is the least of: the readers (``maps_per_cpu_s`` scaled by
    voxels, times every CPU), the one writer (1 / ``writer_s_per_map``), and
    the encoding actors (one per :data:`~swan_index.ray_engine.CPUS_PER_ENCODER`
    CPUs, 1 / ``encode_s_per_map`` each).

    Args:
        entries: maps to ingest.
        maps_per_cpu_s: measured maps/s per CPU at ``mean_voxels`` voxels a map.
        mean_voxels: mean voxels of the measured maps.
        writer_s_per_map: the writer's seconds per map (store add).
        encode_s_per_map: one CPU encoder's seconds per map.
        node_cpus: CPUs per node.
    """
    from swan_index.ray_engine import CPUS_PER_ENCODER

    rows = []
    for side in BOX_SIDES:
        per_cpu = maps_per_cpu_s * mean_voxels / side**3
        for nodes in NODES:
            caps = {
                "readers": per_cpu * node_cpus * nodes,
                "writer": 1.0 / writer_s_per_map,
                "encoders": max(1, node_cpus * nodes // CPUS_PER_ENCODER)
                / encode_s_per_map,
            }
            bound = min(caps, key=caps.__getitem__)
            rows.append(
                {
                    "box_side": side,
                    "nodes": nodes,
                    "node_cpus": node_cpus,
                    "maps_per_s": caps[bound],
                    "bound": bound,
                    "hours": entries / caps[bound] / 3600,
                }
            )
    return rows


def encode_one_thread(encoder: Any, batch: int = 16, repeat: int = 3) -> float:
    """Seconds per map to encode a batch on one CPU thread, as a CPU encoding
    actor does (Ray gives it one thread). The volumes are random (generated): the
    cost does not depend on what they hold."""
    import torch

    g = encoder.grid
    volumes = np.random.default_rng(0).random((batch, g, g, g), dtype=np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best = min(time_calls(lambda: encoder.encode(volumes), repeat)[0])
    finally:
        torch.set_num_threads(threads)
    return best / batch


def writer_seconds_per_map(
    encoder: Any, store_path: Path, batch: int = 16, batches: int = 6
) -> float:
    """Seconds per map of the writer's commit (previews, ``Store.add`` of a
    batch of ``batch`` with its log rows, one transaction), on the sample maps of
    ``data/maps`` stored again and again under generated content hashes (the
    cost does not depend on what the maps hold). The best of ``batches``."""
    import shutil
    from dataclasses import replace

    from ingest import find_entries
    from swan_index.prepare import prepare_entry
    from swan_index.store import Store

    samples = [
        prepare_entry(e, encoder.grid) for e in find_entries(ROOT / "data" / "maps")
    ]
    shutil.rmtree(store_path, ignore_errors=True)
    seconds = []
    with Store.open(store_path, encoder=encoder.info) as store:
        for b in range(batches):
            maps = [samples[i % len(samples)] for i in range(batch)]
            records = [
                replace(p.record, sha256=f"generated-{b}-{i}", source_path=None)
                for i, p in enumerate(maps)
            ]
            code = encoder.encode(np.concatenate([p.volumes for p in maps]))
            t0 = time.perf_counter()
            previews = [p.preview() for p in maps]
            rows = [
                {"run_id": "bench", "path": None, "status": "ok", "reason": None}
                | {"sha256": r.sha256}
                for r in records
            ]
            store.add(code, records, previews, rows)
            seconds.append((time.perf_counter() - t0) / batch)
    shutil.rmtree(store_path, ignore_errors=True)
    return min(seconds)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark (see the module docs); save and return the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_map_arguments(parser, Path("/tmp/bench_ingest_ray"))
    parser.add_argument("--node-cpus", type=int, default=32)
    add_out_argument(parser, "bench_ingest_ray.json")
    args = parser.parse_args(argv)
    import ray

    from swan_index.map_encoder import MapEncoder

    record = RunRecord()
    print("maps:", flush=True)
    files = make_maps(args)
    for f in files:  # warms the page cache
        f.read_bytes()
    voxels = [float(np.prod(map_size(f).shape)) for f in files]
    encoder = MapEncoder()
    cpus = os.cpu_count() or 1
    t0 = time.perf_counter()
    ray.init(
        num_cpus=cpus,
        include_dashboard=False,
        object_store_memory=500 * 2**20,
        logging_level="ERROR",
        log_to_driver=False,
    )
    ray_start = time.perf_counter() - t0
    store_path = args.cache / "store_ray"
    rounds: dict[str, list[float]] = {"local": [], "ray": []}
    try:
        for r in range(args.repeat):
            for engine in rounds:
                got = ingest_pass(files, encoder, store_path, engine=engine)
                rounds[engine].append(got["seconds"])
            print(
                f"  round {r + 1}: "
                + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in rounds.items()),
                flush=True,
            )
    finally:
        ray.shutdown()
    record.mark("engines_done")
    stages = breakdown(files, encoder, store_path)
    n = len(files)
    best = {k: min(v) for k, v in rounds.items()}
    mps = {k: n / v for k, v in best.items()}
    writer_s = writer_seconds_per_map(encoder, store_path)
    encode_s = encode_one_thread(encoder)
    entries = emdb_entries()
    projection = project(
        entries,
        mps["ray"] / cpus,
        float(np.mean(voxels)),
        writer_s,
        encode_s,
        args.node_cpus,
    )
    result = {
        "benchmark": "ingest engines: ray vs local, same simulated maps, same run",
        "maps": {
            "count": n,
            "simulated": True,
            "files": [f.name for f in files],
            "mean_voxels": float(np.mean(voxels)),
            "compressed_mb_total": round(sum(f.stat().st_size for f in files) / 1e6, 1),
        },
        "cpus": cpus,
        "repeat": args.repeat,
        "seconds_per_round": rounds,
        "seconds_best": best,
        "maps_per_s": mps,
        "ratio_ray_over_local": mps["ray"] / mps["local"],
        "ray_start_s": ray_start,
        "one_process_breakdown_s": stages,
        "projection": {
            "source": str(EMDB_METADATA.relative_to(ROOT.parent)),
            "entries": entries,
            "maps_per_cpu_s_measured": mps["ray"] / cpus,
            "writer_s_per_map": writer_s,
            "encode_s_per_map": encode_s,
            "rows": projection,
            "note": "projected from this machine's per-map costs, scaled by voxels; "
            "not measured on a cluster",
        },
        **record.finish(),
        "machine": machine_info(ray=ray.__version__),
    }
    return save_result(result, args.out, print_table)


def print_table(result: dict[str, Any]) -> None:
    """Best time and maps/s per engine, the ratio, and the projection."""
    print()
    print(f"{'engine':<8} {'best s':>8} {'maps/s':>8}")
    for k, best in result["seconds_best"].items():
        print(f"{k:<8} {best:>8.2f} {result['maps_per_s'][k]:>8.3f}")
    print(f"ray / local: {result['ratio_ray_over_local']:.2f}")
    stages = result["one_process_breakdown_s"]
    print("one process:", json.dumps({k: round(v, 2) for k, v in stages.items()}))
    proj = result["projection"]
    print(f"EMDB projection ({proj['entries']} entries), hours:")
    for row in proj["rows"]:
        print(
            f"  box {row['box_side']}^3, {row['nodes']:>3} nodes x "
            f"{row['node_cpus']} CPUs: {row['hours']:8.2f} h"
            + f" ({row['maps_per_s']:.2f} maps/s, {row['bound']}-bound)"
        )


if __name__ == "__main__":
    main()
