"""Benchmark: end-to-end ingest of a folder of ~300^3 .map.gz files versus bare
decompression of the same files, in the same run.

The maps are **simulated** (``ingest.simulate_map`` from the atomic models in
``data/models`` and ``../shared/data/real/models``, 3-5 Å, random rotation),
placed off-centre in a box of about 300^3 voxels (``--size`` +- 16) at a voxel size
that makes the molecule span about half the box, plus Gaussian noise at 5 % of the
peak so that they compress like real unmasked maps (the file names start with
``simulated_`` and the MRC label says SIMULATED). They are written with
``ingest.write_map`` and cached in ``--cache``.

In the same run, over the same files (page cache warm: every file is read once
before timing), ``--repeat`` rounds of:

* ``isal``: read + ``isal.igzip.decompress`` of each file, one process (ingest's
  decompressor);
* ``zlib``: read + ``gzip.decompress`` (standard library), one process;
* ``isal_parallel``: the ``isal`` pass in a process pool with as many workers as
  ingest uses (its default: CPU count, at most 8);
* ``ingest``: ``swan_index.indexer.ingest_paths`` of the folder into a fresh store
  with default workers (read + canonicalize in workers, encode + store in the main
  process; the checkpoint is loaded beforehand, store creation is excluded).

It reports maps/s and MB/s (compressed) per pass (best round), the ratios
``ingest / isal_parallel``, ``ingest / isal`` and ``ingest / zlib`` in maps/s,
the CPU seconds of each pass (this process and its workers) and from them
``ingest_over_isal_cpu_bound``: the ratio on a machine whose cores are all the
run's (the wall-clock ratios drop when other users load the shared machine),
and a one-process breakdown of one ingest (read_map, canonicalize, encode, store
add) over every file. The requirement's "bare isal decompression rate" is the
``isal`` pass (one process): ``ingest_over_isal`` is the ratio it bounds.

**Memory per worker.** Each map is also prepared alone in a fresh spawned
process, as an ingest worker prepares it (:func:`swan_index.prepare.prepare_one`),
after a warm-up map; the process's peak resident memory (``VmHWM``, reset after
the warm-up) less its resident memory before the map, over the map's float32
size, is ``peak_over_float32`` (the idle worker's own memory, the interpreter
and its libraries, is reported apart as ``idle_mb``).

**A 1000^3 map** (``--big-size``, 0 skips it): a **simulated** map of a model
placed in a ``--big-size``^3 box at a larger voxel size, with the same 5 % noise,
written slab by slab (never whole in memory) to ``--cache``/big. It is timed
against a streaming isal decompression of the same file (the whole file in
memory would take its compressed and decompressed sizes), ingested end to end
into a fresh store, and measured as above.

JSON goes to ``benchmarks/results/bench_ingest.json``.

    $ python -m benchmarks.bench_ingest [--maps 10] [--size 300] [--repeat 2]
        [--big-size 1000]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import gzip
import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from isal import igzip

from benchmarks.common import (
    ROOT,
    SHARED_DATA,
    RunRecord,
    add_out_argument,
    machine_info,
    save_result,
)
from ingest import (
    DensityMap,
    random_rotation,
    read_map,
    read_model,
    simulate_map,
    write_map,
)
from ingest.simulate import SIGMA_FACTOR, model_atoms

SHARED_MODELS = SHARED_DATA / "models"
#: Models to simulate, in turn (those present are used).
MODELS = (
    ROOT / "data" / "models" / "5me2.pdb",
    SHARED_MODELS / "6gyn.pdb",
    ROOT / "data" / "models" / "6272.pdb",
    SHARED_MODELS / "pdb5fuu.ent",
    SHARED_MODELS / "emd_2513_af2.pdb",
    SHARED_MODELS / "3j9sA_af2.pdb",
    SHARED_MODELS / "1J6Z.pdb",
    SHARED_MODELS / "Q99J21.pdb",
)
MAPS_VERSION = 1


def make_maps(args: argparse.Namespace) -> list[Path]:
    """The simulated ``.map.gz`` files (cached: rebuilt when the settings change)."""
    folder = args.cache / "maps"
    params = {
        "version": MAPS_VERSION,
        "maps": args.maps,
        "size": args.size,
        "seed": args.seed,
    }
    stamp = folder / "params.json"
    if stamp.exists() and json.loads(stamp.read_text()) == params:
        files = sorted(folder.glob("simulated_*.map.gz"))
        if len(files) == args.maps:
            return files
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    models = [m for m in MODELS if m.exists()]
    rng = np.random.default_rng(args.seed)
    files = []
    for i in range(args.maps):
        t0 = time.perf_counter()
        model = models[i % len(models)]
        structure = read_model(model)
        resolution = float(rng.uniform(3.0, 5.0))
        size = int(args.size + rng.integers(-16, 17))
        transform = np.eye(4)
        transform[:3, :3] = random_rotation(rng)
        xyz = model_atoms(structure)[0] @ transform[:3, :3].T
        span = float(np.ptp(xyz, axis=0).max()) + 6 * SIGMA_FACTOR * resolution
        voxel = float(np.clip(span / (0.5 * size), 0.6, 2.0))
        sim = simulate_map(
            structure, resolution, voxel_size=voxel, coords_transform=transform
        )
        box = np.zeros((size, size, size), dtype=np.float32)
        shape = np.minimum(sim.data.shape, size)
        start = [int(rng.integers(0, size - n + 1)) for n in shape]
        box[
            start[0] : start[0] + shape[0],
            start[1] : start[1] + shape[1],
            start[2] : start[2] + shape[2],
        ] = sim.data[: shape[0], : shape[1], : shape[2]]
        peak = float(sim.data.max())
        box += rng.normal(scale=0.05 * peak, size=box.shape).astype(np.float32)
        origin = tuple(
            float(o - s * voxel) for o, s in zip(sim.origin, start[::-1], strict=True)
        )
        dmap = DensityMap(
            data=box,
            voxel_size=(voxel, voxel, voxel),
            origin=origin,
            path="simulated",
            sha256="",
            header={
                "labels": [
                    f"SIMULATED {model.name} {resolution:.1f} A, noise 5% of peak"
                ]
            },
            simulated=True,
        )
        path = folder / f"simulated_{i:02d}_{model.name.split('.')[0]}.map.gz"
        write_map(dmap, path)
        files.append(path)
        print(
            f"  {path.name}: {size}^3 at {voxel:.2f} Å, {resolution:.1f} Å, "
            f"{path.stat().st_size / 1e6:.0f} MB ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    stamp.write_text(json.dumps(params))
    return files


def _isal_one(path: str) -> int:
    with open(path, "rb") as fh:
        return len(igzip.decompress(fh.read()))


def _zlib_one(path: str) -> int:
    with open(path, "rb") as fh:
        return len(gzip.decompress(fh.read()))


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children, once every child has
    ended (an ingest leaves its workers to exit on their own)."""
    import resource

    while multiprocessing.active_children():  # reaps those that ended
        time.sleep(0.01)

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def decompress_pass(files: list[Path], fn: Any, workers: int = 0) -> float:
    """Seconds to decompress every file (in a pool when ``workers``)."""
    t0 = time.perf_counter()
    if workers:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            list(pool.map(fn, [str(f) for f in files]))
    else:
        for f in files:
            fn(str(f))
    return time.perf_counter() - t0


def ingest_pass(
    files: list[Path], encoder: Any, store_path: Path, engine: str = "local"
) -> dict[str, Any]:
    """End-to-end ingest of the folder into a fresh store with ``engine``."""
    from swan_index.indexer import ingest_paths
    from swan_index.store import Store

    shutil.rmtree(store_path, ignore_errors=True)
    store = Store.open(store_path, encoder=encoder.info)
    t0 = time.perf_counter()
    summary = ingest_paths(
        [files[0].parent], store, encoder, progress=False, engine=engine
    )
    seconds = time.perf_counter() - t0
    store.close()
    shutil.rmtree(store_path, ignore_errors=True)
    if summary.ok != len(files):
        raise RuntimeError(
            f"ingest stored {summary.ok} of {len(files)} maps: {summary}"
        )
    return {"seconds": seconds, "summary": summary.to_dict()}


def breakdown(files: list[Path], encoder: Any, store_path: Path) -> dict[str, float]:
    """One process, stage by stage, over every file (seconds in total)."""
    from ingest import find_entries, read_header
    from swan_index.prepare import prepare_map
    from swan_index.store import Store

    shutil.rmtree(store_path, ignore_errors=True)
    store = Store.open(store_path, encoder=encoder.info)
    t = {"read_map": 0.0, "canonicalize": 0.0, "encode": 0.0, "store_add": 0.0}
    for f in files:
        (entry,) = list(find_entries(f))
        t0 = time.perf_counter()
        meta = read_header(entry.header_path) if entry.header_path else None
        dmap = read_map(f)
        t1 = time.perf_counter()
        prepared = prepare_map(dmap, encoder.grid, metadata=meta, entry=entry)
        t2 = time.perf_counter()
        code = encoder.encode(prepared.volumes)
        t3 = time.perf_counter()
        store.add(code, [prepared.record], [prepared.preview()])
        t4 = time.perf_counter()
        t["read_map"] += t1 - t0
        t["canonicalize"] += t2 - t1
        t["encode"] += t3 - t2
        t["store_add"] += t4 - t3
    store.close()
    shutil.rmtree(store_path, ignore_errors=True)
    t["total"] = sum(t.values())
    return t


#: The map an idle worker prepares first, so that what it imports and caches
#: on first use is not counted against the measured map.
WARM_UP_MAP = ROOT / "data" / "maps" / "emd_1832.map"


def _status_kib(key: str) -> int:
    """A field of ``/proc/self/status`` (KiB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _peak_one(path: str, grid: int) -> dict[str, Any]:
    """In a fresh process: prepare one map as an ingest worker does, and its
    peak memory (resident, MiB) over the idle worker's."""
    import resource

    from ingest import find_entries
    from swan_index.prepare import prepare_one

    (warm,) = list(find_entries(WARM_UP_MAP))
    prepare_one(warm, grid)
    idle = _status_kib("VmRSS")
    try:  # reset the peak to now (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    (entry,) = list(find_entries(path))
    t0 = time.perf_counter()
    result = prepare_one(entry, grid)
    seconds = time.perf_counter() - t0
    peak = (
        _status_kib("VmHWM")
        if reset
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    )
    return {
        "ok": not isinstance(result, str),
        "error": result if isinstance(result, str) else None,
        "seconds": seconds,
        "idle_mb": idle / 1024,
        "peak_mb": peak / 1024,
        "peak_reset": reset,
    }


def worker_memory(files: list[Path], grid: int) -> list[dict[str, Any]]:
    """Each map prepared alone in a fresh spawned process: its peak memory over
    the idle worker's, in MiB and as a multiple of the map's float32 size."""
    from ingest import map_size

    ctx = multiprocessing.get_context("spawn")
    rows = []
    for f in files:
        with cf.ProcessPoolExecutor(1, mp_context=ctx) as pool:
            got = pool.submit(_peak_one, str(f), grid).result()
        float32_mb = map_size(f).float32_bytes / 2**20
        got["map"] = f.name
        got["float32_mb"] = float32_mb
        got["peak_over_float32"] = (got["peak_mb"] - got["idle_mb"]) / float32_mb
        rows.append(got)
        print(
            f"  {f.name}: peak {got['peak_mb'] - got['idle_mb']:.0f} MiB over an "
            f"idle worker's {got['idle_mb']:.0f} MiB = "
            f"{got['peak_over_float32']:.2f}x its float32 size",
            flush=True,
        )
    return rows


BIG_VERSION = 1


def make_big_map(args: argparse.Namespace) -> Path:
    """The **simulated** ``--big-size``^3 ``.map.gz`` (cached), written slab by
    slab: a model simulated at 4 Å placed in the middle of the box at a voxel
    size that makes it span about a third of it (at least 0.6 Å), plus Gaussian
    noise at 5 % of its peak."""
    import mrcfile

    n = args.big_size
    folder = args.cache / "big"
    path = folder / f"simulated_big_{n}.map.gz"
    params = {"version": BIG_VERSION, "size": n, "seed": args.seed}
    stamp = folder / "params.json"
    if path.exists() and stamp.exists() and json.loads(stamp.read_text()) == params:
        return path
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    model = next(m for m in (SHARED_MODELS / "6gyn.pdb", MODELS[0]) if m.exists())
    structure = read_model(model)
    xyz = model_atoms(structure)[0]
    resolution = 4.0
    span = float(np.ptp(xyz, axis=0).max()) + 6 * SIGMA_FACTOR * resolution
    voxel = max(span / (n / 3), 0.6)
    sim = simulate_map(structure, resolution, voxel_size=voxel)
    peak = float(sim.data.max())
    start = [(n - s) // 2 for s in sim.data.shape]  # z, y, x
    small = folder / "header.mrc"  # mrcfile writes the header; the box is patched
    with mrcfile.new(small, overwrite=True) as mrc:
        mrc.set_data(np.zeros((2, 2, 2), dtype=np.float32))
        mrc.voxel_size = voxel
        mrc.add_label(f"SIMULATED {model.name} {resolution:.1f} A in a {n}^3 box")
        header = mrc.header.copy()
    small.unlink()
    for key in ("nx", "ny", "nz", "mx", "my", "mz"):
        header[key] = n
    header.cella = (n * voxel, n * voxel, n * voxel)
    header.dmin, header.dmax, header.dmean, header.rms = -peak, peak, 0.0, 0.0
    rng = np.random.default_rng(args.seed)
    with igzip.open(path, "wb", compresslevel=1) as out:
        out.write(header.tobytes())
        for z in range(n):
            plane = rng.standard_normal((n, n), dtype=np.float32)
            plane *= 0.05 * peak
            k = z - start[0]
            if 0 <= k < sim.data.shape[0]:
                y0, x0 = start[1], start[2]
                ny, nx = sim.data.shape[1:]
                plane[y0 : y0 + ny, x0 : x0 + nx] += sim.data[k]
            out.write(plane.tobytes())
    stamp.write_text(json.dumps(params))
    print(
        f"  {path.name}: {n}^3 at {voxel:.2f} Å, {path.stat().st_size / 1e9:.1f} GB "
        f"({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    return path


def _isal_stream_one(path: str) -> int:
    """Streaming isal decompression (8 MiB at a time into one buffer)."""
    buffer = memoryview(bytearray(8 * 2**20))
    total = 0
    with igzip.open(path, "rb") as fh:
        while n := fh.readinto(buffer):
            total += n
    return total


def big_map(args: argparse.Namespace, encoder: Any) -> dict[str, Any]:
    """The 1000^3 case: isal (streaming) vs end-to-end ingest, and the peak
    memory of a worker preparing it."""
    import resource

    from ingest import map_size

    path = make_big_map(args)
    size = map_size(path)
    t0 = time.perf_counter()
    _isal_stream_one(str(path))
    t_isal = time.perf_counter() - t0
    got = ingest_pass([path], encoder, args.cache / "big_store")
    (memory,) = worker_memory([path], encoder.grid)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "file": path.name,
        "simulated": True,
        "shape": list(size.shape),
        "compressed_gb": path.stat().st_size / 1e9,
        "float32_gb": size.float32_bytes / 1e9,
        "isal_stream_s": t_isal,
        "ingest_s": got["seconds"],
        "ingest_over_isal_stream": t_isal / got["seconds"],
        "worker": memory,
        "machine_memory_gb": ram / 1e9,
        "benchmark_process_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        / 1024,
    }


def add_map_arguments(parser: argparse.ArgumentParser, cache: Path) -> None:
    """The simulated maps' settings (:func:`make_maps`) and ``--repeat``."""
    parser.add_argument("--maps", type=int, default=10)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=cache)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark (see the module docs); save and return the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_map_arguments(parser, Path("/tmp/bench_ingest"))
    parser.add_argument("--big-size", type=int, default=1000)
    add_out_argument(parser, "bench_ingest.json")
    args = parser.parse_args(argv)
    record = RunRecord()
    print("maps:", flush=True)
    files = make_maps(args)
    sizes = [f.stat().st_size for f in files]
    raw = [_isal_one(str(f)) for f in files]  # warms the page cache too
    workers = min(8, os.cpu_count() or 1)  # ingest_paths' default

    from swan_index.map_encoder import MapEncoder

    t0 = time.perf_counter()
    encoder = MapEncoder()
    t_model = time.perf_counter() - t0
    store_path = args.cache / "store"
    rounds: dict[str, list[float]] = {
        "isal": [],
        "zlib": [],
        "isal_parallel": [],
        "ingest": [],
    }
    summaries = []
    cpu: dict[str, list[float]] = {k: [] for k in rounds}
    for r in range(args.repeat):
        for name, fn, pool in (
            ("isal", _isal_one, 0),
            ("zlib", _zlib_one, 0),
            ("isal_parallel", _isal_one, workers),
        ):
            c0 = cpu_seconds()
            rounds[name].append(decompress_pass(files, fn, pool))
            cpu[name].append(cpu_seconds() - c0)
        c0 = cpu_seconds()
        got = ingest_pass(files, encoder, store_path)
        cpu["ingest"].append(cpu_seconds() - c0)
        rounds["ingest"].append(got["seconds"])
        summaries.append(got["summary"])
        print(
            f"  round {r + 1}: "
            + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in rounds.items()),
            flush=True,
        )
    stages = breakdown(files, encoder, store_path)
    print("memory per worker:", flush=True)
    memory = worker_memory(files, encoder.grid)
    big = None
    if args.big_size:
        print(f"{args.big_size}^3 map:", flush=True)
        big = big_map(args, encoder)
    n = len(files)
    best = {k: min(v) for k, v in rounds.items()}
    mps = {k: n / v for k, v in best.items()}
    result = {
        "benchmark": "end-to-end ingest vs bare decompression, same files, same run",
        "maps": {
            "count": n,
            "simulated": True,
            "files": [f.name for f in files],
            "compressed_mb": [round(s / 1e6, 1) for s in sizes],
            "uncompressed_mb": [round(s / 1e6, 1) for s in raw],
            "compressed_mb_total": round(sum(sizes) / 1e6, 1),
        },
        "workers": workers,
        "repeat": args.repeat,
        "seconds_per_round": rounds,
        "seconds_best": best,
        "maps_per_s": mps,
        "compressed_mb_per_s": {k: sum(sizes) / 1e6 / v for k, v in best.items()},
        "ratios": {
            "ingest_over_isal_parallel": mps["ingest"] / mps["isal_parallel"],
            "ingest_over_isal": mps["ingest"] / mps["isal"],
            "ingest_over_zlib": mps["ingest"] / mps["zlib"],
            "isal_speedup_over_zlib": mps["isal"] / mps["zlib"],
            # CPU-bound: the rate ratio on a machine whose ``workers`` cores are
            # all this run's (CPU seconds, which other users' load hardly moves)
            "ingest_over_isal_cpu_bound": min(cpu["isal"])
            / (min(cpu["ingest"]) / workers),
        },
        "cpu_seconds_per_round": cpu,
        "cpu_seconds_min": {k: min(v) for k, v in cpu.items()},
        "load_average_1min_at_end": os.getloadavg()[0],
        "one_process_breakdown_s": stages,
        "one_process_maps_per_s": n / stages["total"],
        "worker_memory": memory,
        "worker_peak_over_float32_max": max(m["peak_over_float32"] for m in memory),
        "big_map": big,
        "model_load_s": t_model,
        "ingest_summary_last": summaries[-1],
        **record.finish(),
        "machine": machine_info(),
    }
    return save_result(result, args.out, print_table)


def print_table(result: dict[str, Any]) -> None:
    """Best time, maps/s and MB/s per pass; the ratios; the one-process stages."""
    print()
    print(f"{'pass':<16} {'best s':>8} {'maps/s':>8} {'MB/s':>8}")
    for k, best in result["seconds_best"].items():
        print(
            f"{k:<16} {best:>8.2f} {result['maps_per_s'][k]:>8.2f} "
            f"{result['compressed_mb_per_s'][k]:>8.1f}"
        )
    print(json.dumps(result["ratios"], indent=1))
    stages = result["one_process_breakdown_s"]
    print("one process:", json.dumps({k: round(v, 2) for k, v in stages.items()}))
    print(
        "worker peak memory over float32 size, largest: "
        f"{result['worker_peak_over_float32_max']:.2f}x"
    )
    big = result.get("big_map")
    if big:
        print(
            f"{big['file']}: {big['float32_gb']:.1f} GB float32, ingest "
            f"{big['ingest_s']:.1f} s vs isal stream {big['isal_stream_s']:.1f} s, "
            f"worker peak {big['worker']['peak_over_float32']:.2f}x its float32 size"
        )


if __name__ == "__main__":
    main()
