"""Benchmark: read + canonicalize one ~300^3 .map.gz versus bare decompression.

The map is **simulated** (haemoglobin 5ME2 at 4 Å, placed in a 300^3 box at 1 Å per
voxel, plus Gaussian noise at 5 % of the peak so that it compresses like a real
unmasked map). In the same run, on the same file, it times:

* ``zlib``: ``gzip.decompress`` of the file's bytes (standard library);
* ``isal``: ``isal.igzip.decompress`` of the same bytes;
* ``read_map``: our reader (decompress + parse + axis order + NaN check + sha256);
* ``canonicalize``: the canonical 64^3 volume from the DensityMap;
* ``total``: read_map + canonicalize.

It reports medians over ``--repeat`` runs and the ratios ``total / isal`` and
``total / zlib``, and writes JSON to ``benchmarks/results/bench_read.json``.

    $ python -m benchmarks.bench_read [--size 300] [--repeat 5]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from isal import igzip

from benchmarks.common import (
    ROOT,
    add_out_argument,
    machine_info,
    save_result,
    time_calls,
)
from ingest import DensityMap, canonicalize, read_map, simulate_map, write_map


def make_map(size: int, path: Path) -> Path:
    """Write the simulated, noisy ``size``^3 map to ``path`` (gzip)."""
    sim = simulate_map(ROOT / "data" / "models" / "5me2.pdb", 4.0, voxel_size=1.0)
    box = np.zeros((size, size, size), dtype=np.float32)
    nz, ny, nx = sim.data.shape
    start = [(size - n) // 2 for n in (nz, ny, nx)]
    box[
        start[0] : start[0] + nz, start[1] : start[1] + ny, start[2] : start[2] + nx
    ] = sim.data
    rng = np.random.default_rng(0)
    box += rng.normal(scale=0.05 * float(sim.data.max()), size=box.shape).astype(
        np.float32
    )
    dmap = DensityMap(
        data=box,
        voxel_size=(1.0, 1.0, 1.0),
        origin=(0.0, 0.0, 0.0),
        path="simulated",
        sha256="",
        header={"labels": ["SIMULATED benchmark map (5me2, 4 A, noise)"]},
    )
    return write_map(dmap, path)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds of ``repeat`` calls of ``fn``, and the last call's value."""
    seconds, value = time_calls(fn, repeat)
    return statistics.median(seconds), value


def print_table(result: dict[str, Any]) -> None:
    """The whole result, as JSON."""
    print(json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark (see the module docs); save and return the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    add_out_argument(parser, "bench_read.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = make_map(args.size, Path(tmp) / "bench.map.gz")
        blob = path.read_bytes()
        t_zlib, _ = timed(lambda: gzip.decompress(blob), args.repeat)
        t_isal, _ = timed(lambda: igzip.decompress(blob), args.repeat)
        t_read, dmap = timed(lambda: read_map(path), args.repeat)
        t_canon, _ = timed(lambda: canonicalize(dmap, grid=64), args.repeat)
        t_total, _ = timed(lambda: canonicalize(read_map(path), grid=64), args.repeat)
    result = {
        "benchmark": "read_map + canonicalize vs bare gzip decompression",
        "map": {
            "shape": [args.size] * 3,
            "dtype": "float32",
            "uncompressed_mb": round(args.size**3 * 4 / 1e6, 1),
            "compressed_mb": round(len(blob) / 1e6, 1),
            "simulated": True,
        },
        "repeat": args.repeat,
        "seconds_median": {
            "zlib_decompress": t_zlib,
            "isal_decompress": t_isal,
            "read_map": t_read,
            "canonicalize_64": t_canon,
            "read_plus_canonicalize": t_total,
        },
        "ratios": {
            "total_over_isal": t_total / t_isal,
            "total_over_zlib": t_total / t_zlib,
            "read_over_isal": t_read / t_isal,
            "isal_speedup_over_zlib": t_zlib / t_isal,
        },
        "machine": machine_info(),
    }
    return save_result(result, args.out, print_table)


if __name__ == "__main__":
    main()
