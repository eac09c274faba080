"""Benchmark: how long a large atomic model takes to become a stored map.

The model is SYNTHETIC in its arrangement, real in its parts: copies of PDB 3C91
(the 20S proteasome, 46,578 atoms, ``../shared/data/real/models/3c91.pdb``) side
by side along x, whole chains, until at least ``--atoms`` (100,000) atoms; written
as mmCIF and read back through the product's path. (No real model of 100,000
atoms is in the shared data.) Timed, median of ``--repeats``:

* ``read``: :func:`ingest.models.read_model_file` (gemmi parse, checks, atoms);
* ``simulate R``: :func:`ingest.models.simulate_model` at R Å (splat the atoms
  with ``np.bincount``, Gaussian filter in float32, mass-based contour);
* ``baseline simulate R``: the same map as ``ingest.simulate`` computed it
  before (``np.add.at`` splat, float64 filter, same contour), on the same atoms
  and grid;
* ``canonicalize``: :func:`swan_index.prepare.prepare_map` of the 6 Å map;
* ``prepare_model``: the whole worker step of ``swan ingest`` at 6 Å (read,
  simulate, canonicalize), what a model costs before encoding.

    $ python -m benchmarks.bench_models [--atoms 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import gemmi
import numpy as np
from scipy import ndimage

from benchmarks.common import (
    SHARED_DATA,
    RunRecord,
    add_out_argument,
    machine_info,
    save_result,
    time_calls,
)
from ingest.contour import ANGSTROM3_PER_DALTON, contour_for_volume
from ingest.discover import ModelEntry
from ingest.models import read_model_file, simulate_model
from ingest.simulate import SIGMA_FACTOR
from swan_index.prepare import prepare_map, prepare_model

SOURCE = SHARED_DATA / "models" / "3c91.pdb"
RESOLUTIONS = (4.0, 6.0, 8.0)


def tiled_model(source: Path, atoms: int, out: Path) -> dict[str, Any]:
    """Write copies of ``source``'s chains side by side (x) until ``atoms``.

    Returns:
        What was built: copies, chains, atoms.
    """
    st = gemmi.read_structure(str(source))
    st.remove_hydrogens()
    st.remove_waters()
    base = st[0]
    xs = [a.pos.x for ch in base for r in ch for a in r]
    step = max(xs) - min(xs) + 10.0
    tiled = gemmi.Model("1")
    total, copy, n_chains = 0, 0, 0
    while total < atoms:
        for chain in base:
            if total >= atoms:
                break
            new = chain.clone()
            new.name = f"{chain.name}{copy}"
            for res in new:
                for a in res:
                    a.pos = gemmi.Position(a.pos.x + copy * step, a.pos.y, a.pos.z)
            total += new.count_atom_sites()
            tiled.add_chain(new)
            n_chains += 1
        copy += 1
    out_st = gemmi.Structure()
    out_st.name = f"3C91 x{copy} (tiled)"
    out_st.add_model(tiled)
    out_st.setup_entities()
    out_st.make_mmcif_document().write_file(str(out))
    return {"source": "PDB 3C91, tiled", "copies": copy, "chains": n_chains}


def baseline_simulate(
    xyz: np.ndarray, z: np.ndarray, mass: np.ndarray, resolution: float, vs: float
) -> np.ndarray:
    """The map as ``ingest.simulate`` computed it before (``np.add.at`` splat,
    float64 Gaussian filter, then the same mass-based contour), for the same
    atoms and voxel size."""
    sigma = SIGMA_FACTOR * resolution
    pad = 3.0 * sigma + 2 * vs
    lo = xyz.min(axis=0) - pad
    shape_xyz = np.ceil((xyz.max(axis=0) + pad - lo) / vs).astype(int) + 1
    grid = np.zeros(shape_xyz[::-1], dtype=np.float64)
    frac = (xyz - lo) / vs
    base = np.floor(frac).astype(int)
    t = frac - base
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                w = (
                    np.where(dx, t[:, 0], 1 - t[:, 0])
                    * np.where(dy, t[:, 1], 1 - t[:, 1])
                    * np.where(dz, t[:, 2], 1 - t[:, 2])
                )
                np.add.at(
                    grid, (base[:, 2] + dz, base[:, 1] + dy, base[:, 0] + dx), w * z
                )
    data = ndimage.gaussian_filter(grid, sigma / vs, mode="constant", truncate=4.0)
    data = data.astype(np.float32)
    contour_for_volume(data, float(mass.sum()) * ANGSTROM3_PER_DALTON, vs**3)
    return data


def _median(seconds: list[float]) -> float:
    return round(float(np.median(seconds)), 4)


def run(args: argparse.Namespace) -> dict[str, Any]:
    record = RunRecord()
    timings: dict[str, float] = {}
    grids: dict[str, list[int]] = {}
    diffs: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiled_3c91.cif"
        built = tiled_model(args.source, args.atoms, path)
        secs, model = time_calls(lambda: read_model_file(path), args.repeats)
        timings["read"] = _median(secs)
        for r in RESOLUTIONS:
            secs, dmap = time_calls(lambda r=r: simulate_model(model, r), args.repeats)
            timings[f"simulate {r:g}"] = _median(secs)
            grids[f"{r:g}"] = list(dmap.data.shape[::-1])
            vs = float(dmap.voxel_size[0])
            secs, old = time_calls(
                lambda r=r, vs=vs: baseline_simulate(
                    model.xyz, model.atomic_number, model.mass, r, vs
                ),
                args.repeats,
            )
            timings[f"baseline simulate {r:g}"] = _median(secs)
            diffs[f"{r:g}"] = float(np.abs(old - dmap.data).max() / old.max())
            if r == 6.0:
                secs, _ = time_calls(lambda d=dmap: prepare_map(d, 64), args.repeats)
                timings["canonicalize"] = _median(secs)
        secs, _ = time_calls(
            lambda: prepare_model(ModelEntry(path, (6.0,)), 64), args.repeats
        )
        timings["prepare_model 6"] = _median(secs)
    return {
        "benchmark": "bench_models",
        "model": {
            **built,
            "atoms": model.info.n_atoms,
            "residues": model.info.n_residues,
            "simulated": "the arrangement is synthetic (tiled copies of a real model)",
        },
        "repeats": args.repeats,
        "seconds": timings,
        "grids_xyz": grids,
        "max_relative_difference_to_baseline": diffs,
        "speedup_simulate": {
            f"{r:g}": round(
                timings[f"baseline simulate {r:g}"] / timings[f"simulate {r:g}"], 2
            )
            for r in RESOLUTIONS
        },
        "machine": machine_info(gemmi=gemmi.__version__, numpy=np.__version__),
        "run": record.finish(),
    }


def _print(result: dict[str, Any]) -> None:
    m = result["model"]
    print(f"{m['atoms']:,} atoms ({m['copies']} copies of 3C91, {m['chains']} chains)")
    for name, s in result["seconds"].items():
        print(f"  {name:26s} {s:8.3f} s")
    print(f"  simulate speed-up vs baseline: {result['speedup_simulate']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--atoms", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    add_out_argument(parser, "bench_models.json")
    args = parser.parse_args()
    save_result(run(args), args.out, _print)


if __name__ == "__main__":
    main()
