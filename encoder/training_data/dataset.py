"""Training data for the encoder: ``swan dataset build`` and the dataset folder.

There is no public ProteinNet3D copy here, so the dataset is built from four sources,
each item labelled with its kind:

* ``real``: real EMDB maps, each seen in several augmented views: a random rotation
  (resampled), low-pass filtering to a lower resolution, additive noise, and crops
  of sub-regions. The contour follows the depositor's choice: the header's level,
  else the automatic one, and after filtering the level that encloses the same
  volume as the original did.
* ``simulated``: maps computed from the atomic models (``ingest.simulate_map``) at
  3-12 Å, randomly rotated, sometimes from a random subset of chains
  (sub-assemblies).
* ``synthetic``: protein-like assemblies from
  :mod:`encoder.training_data.synthetic` (helices, strands and loops packed into
  domains, with cyclic, dihedral and helical symmetry), simulated at 4-12 Å.
* ``shape``: ModelNet10 voxel shapes and meshes
  (:mod:`encoder.training_data.shapes`), a second domain.

Splits hold out whole molecules, not views: every item carries a ``group`` (the
molecule; real maps and the models fitted to them share one), and a group lies in
one split only. The real and model groups below come from the provenance notes of
the real data (``SOURCES.md``); ``test_groups`` are held out for testing.

Folder layout::

    DATASET/manifest.json     config, counts per split and kind, command line
    DATASET/items.csv         one row per item: index, split, kind, group, source,
                              augmentation (JSON), contour, size features
    DATASET/<split>.npz       ``volumes``: uint8 [N, G, G, G] (canonical values
                              x 255) and ``index``: the items.csv index of each row
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from ingest.mapio import DensityMap

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")

#: Molecule groups of the real maps and models (see the real data's SOURCES.md):
#: file stem -> group. Files not listed form a group of their own.
GROUPS: dict[str, str] = {
    "emd_1461": "rotavirus-VP6",
    "3j9sA": "rotavirus-VP6",
    "6272": "rotavirus-VP6",
    "3j9sA_af2": "rotavirus-VP6",
    "emd_1461_af2": "rotavirus-VP6",
    "emd_5168": "actin",
    "emd_5168_monomer": "actin",
    "3MFP": "actin",
    "1J6Z": "actin",
    "emd_3488": "haemoglobin",
    "5me2": "haemoglobin",
    "5ni1_updated": "haemoglobin",
    "MAP_m4A": "HCN4",
    "6gyn": "HCN4",
    "emd_21457_seg": "spike",
    "6vyb_Ndom": "spike",
    "2566_3J6B_9": "ribosome-3J6B-9",
    "3J6B_9": "ribosome-3J6B-9",
    "emd_2513": "EMD-2513",
    "emd_2513_af2": "EMD-2513",
    "6824": "mucolipin",
    "emd_6824": "mucolipin",
    "Q99J21": "mucolipin",
    "adk_open": "adenylate-kinase",
    "adk_closed": "adenylate-kinase",
    "1hvr": "HIV-protease",
    "4E43": "HIV-protease",
    "1BD2": "TCR-MHC",
    "3KPR": "TCR-MHC",
    "3PWP": "TCR-MHC",
}
#: Held out of training: the real map / fitted model pairs used by the retrieval
#: benchmark, so that it measures molecules the encoder has never seen.
DEFAULT_TEST_GROUPS = (
    "haemoglobin",
    "HCN4",
    "spike",
    "rotavirus-VP6",
    "ribosome-3J6B-9",
)
DEFAULT_VAL_GROUPS = ("adenylate-kinase", "TCR-MHC")


@dataclass(frozen=True)
class DatasetConfig:
    """What ``swan dataset build`` makes (saved in the manifest)."""

    grid: int = 64
    real_maps: str | None = None
    models: str | None = None
    shapes: str | None = None
    real_views: int = 16
    model_views: int = 12
    synthetic: int = 1200
    shapes_per_file: int = 150
    shape_mesh_resolution: int = 64
    #: Chance that a simulated or synthetic item is made to look experimental
    #: (:mod:`encoder.training_data.realism`; named in items.csv).
    realism: float = 0.0
    synthetic_val_fraction: float = 0.05
    synthetic_test_fraction: float = 0.1
    test_groups: tuple[str, ...] = DEFAULT_TEST_GROUPS
    val_groups: tuple[str, ...] = DEFAULT_VAL_GROUPS
    seed: int = 0
    workers: int = field(default_factory=lambda: max(1, (os.cpu_count() or 1)))


def group_of(path: str | Path) -> str:
    """The molecule group of a real map or model file (its stem when unlisted)."""
    name = Path(path).name
    for suffix in (".gz", ".bz2", ".map", ".mrc", ".ccp4", ".pdb", ".cif", ".ent"):
        name = name.removesuffix(suffix)  # in this order: compression first
    return GROUPS.get(name, name)


def _fraction(key: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


def split_of(group: str, kind: str, cfg: DatasetConfig) -> str:
    """Split of a group: listed test/val groups, else a seeded hash of the group."""
    if group in cfg.test_groups:
        return "test"
    if group in cfg.val_groups:
        return "val"
    if kind in ("real", "simulated"):
        return "train"
    u = _fraction(group, cfg.seed)
    if u < cfg.synthetic_test_fraction:
        return "test"
    if u < cfg.synthetic_test_fraction + cfg.synthetic_val_fraction:
        return "val"
    return "train"


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Canonical values in [0, 1] -> uint8 (x 255, rounded)."""
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def from_uint8(volumes: np.ndarray) -> np.ndarray:
    """uint8 volumes -> float32 canonical values in [0, 1]."""
    return volumes.astype(np.float32) / 255.0


# -- augmentation -------------------------------------------------------------------


def lowpass(dmap: DensityMap, resolution: float, native: float | None) -> DensityMap:
    """Blur a map to ``resolution`` Å (Gaussian, molmap's sigma = 0.225 x res)."""
    from ingest.simulate import SIGMA_FACTOR

    native = native or 2.0 * min(dmap.voxel_size)
    extra = np.sqrt(max(resolution**2 - native**2, 0.0)) * SIGMA_FACTOR
    if extra <= 0:
        return dmap
    sigma = [extra / v for v in dmap.voxel_size[::-1]]  # z, y, x
    data = ndimage.gaussian_filter(dmap.data, sigma, mode="nearest")
    return replace(dmap, data=data.astype(np.float32))


def crop_region(
    dmap: DensityMap,
    contour: float,
    rng: np.random.Generator,
    keep: float = 0.6,
) -> DensityMap:
    """A sub-box around a random voxel of the molecule, ``keep`` of the box side."""
    inside = np.argwhere(dmap.data >= contour)
    if len(inside) < 8:
        return dmap
    lo_all, hi_all = inside.min(axis=0), inside.max(axis=0) + 1
    size = np.maximum(((hi_all - lo_all) * keep).astype(int), 4)
    centre = inside[rng.integers(len(inside))]
    lo = np.clip(centre - size // 2, 0, np.array(dmap.shape) - size)
    box = tuple(slice(int(a), int(a + s)) for a, s in zip(lo, size, strict=True))
    origin = np.asarray(dmap.origin) + lo[::-1] * np.asarray(dmap.voxel_size)
    return replace(
        dmap, data=np.ascontiguousarray(dmap.data[box]), origin=tuple(origin.tolist())
    )


# -- jobs (run in worker processes) -----------------------------------------------


def _real_job(path: str, view: int, seed: int, grid: int) -> tuple[np.ndarray, dict]:
    from ingest import (
        canonicalize,
        choose_contour,
        find_entries,
        random_rotation,
        read_header,
        read_map,
        rotate_map,
    )
    from ingest.contour import contour_for_volume

    rng = np.random.default_rng([seed, view, int(_fraction(path, 0) * 2**31)])
    (entry,) = list(find_entries(path)) or [None]
    meta = read_header(entry.header_path) if entry and entry.header_path else None
    dmap = read_map(path)
    level, source = choose_contour(dmap, None, meta)
    volume = float((dmap.data >= level).sum())
    aug: dict[str, Any] = {"view": view, "contour_source": source}
    native = meta.resolution if meta and meta.resolution else None
    if view > 0:
        resolution = float(rng.uniform(max(native or 3.0, 3.0), 12.0))
        if rng.random() < 0.7:
            dmap = lowpass(dmap, resolution, native)
            level = contour_for_volume(dmap.data, volume, 1.0)
            aug["resolution"] = round(resolution, 2)
        noise = float(rng.choice([0.0, 0.05, 0.15]))
        if noise:
            scale = float(dmap.data[dmap.data >= level].std() or 1.0)
            data = dmap.data + rng.normal(0, noise * scale, dmap.shape).astype(
                np.float32
            )
            dmap = replace(dmap, data=data)
            aug["noise"] = noise
        if rng.random() < 0.2:
            dmap = crop_region(dmap, level, rng)
            aug["crop"] = True
        rotation = random_rotation(rng)
        dmap = rotate_map(dmap, rotation, order=1)
        aug["rotation"] = np.round(rotation, 4).tolist()
    cv = canonicalize(dmap, contour=level, grid=grid)
    return to_uint8(cv.values), _row(cv, aug, level)


def _realistic(dmap, rng: np.random.Generator, realism: float):  # noqa: ANN001, ANN202
    """``(map, contour or None, what was applied)``: with chance ``realism``,
    :func:`~encoder.training_data.realism.make_realistic` of ``dmap`` (its own
    random stream, so that the item is otherwise the same)."""
    if realism <= 0 or rng.random() >= realism:
        return dmap, None, {}
    from encoder.training_data.realism import make_realistic

    level = float(dmap.header["recommended_contour"])
    seed = int(rng.integers(2**31))
    return make_realistic(dmap, level, np.random.default_rng(seed))


def _model_job(
    path: str, view: int, seed: int, grid: int, realism: float = 0.0
) -> tuple[np.ndarray, dict]:
    from ingest import canonicalize, read_model
    from ingest.simulate import simulate_view

    rng = np.random.default_rng([seed, view, int(_fraction(path, 1) * 2**31)])
    structure = read_model(path)
    chains = [c.name for c in structure[0] if len(c) > 0]
    chosen = None
    if len(chains) > 1 and rng.random() < 0.3:
        k = int(rng.integers(1, len(chains)))
        chosen = sorted(rng.choice(chains, size=k, replace=False).tolist())
    dmap, resolution = simulate_view(structure, rng, chosen)
    dmap, level, realistic = _realistic(dmap, rng, realism)
    cv = canonicalize(dmap, contour=level, grid=grid)
    aug = {"view": view, "resolution": round(resolution, 2), "chains": chosen}
    if realistic:
        aug["realistic"] = realistic
    return to_uint8(cv.values), _row(cv, aug, cv.contour)


def _synthetic_job(
    index: int, seed: int, grid: int, realism: float = 0.0
) -> tuple[np.ndarray, dict]:
    from encoder.training_data.synthetic import build_assembly, describe, random_spec
    from ingest import canonicalize, simulate_map

    rng = np.random.default_rng([seed, 7, index])
    spec = random_spec(rng)
    resolution = float(rng.uniform(4.0, 12.0))
    dmap = simulate_map(
        build_assembly(spec), resolution, voxel_size=max(resolution / 3, 1.5)
    )
    dmap, level, realistic = _realistic(dmap, rng, realism)
    cv = canonicalize(dmap, contour=level, grid=grid)
    aug = {"resolution": round(resolution, 2), "spec": describe(spec)}
    if realistic:
        aug["realistic"] = realistic
    return to_uint8(cv.values), _row(cv, aug, cv.contour)


def _row(cv, aug: dict, contour: float) -> dict:  # noqa: ANN001
    return {
        "augmentation": json.dumps(aug, separators=(",", ":")),
        "contour": round(float(contour), 6),
        "radius_of_gyration": round(cv.size.radius_of_gyration, 3),
        "volume": round(cv.size.volume, 1),
        "pose_candidates": len(cv.candidates),
    }


def run_job(job: tuple) -> tuple[np.ndarray | None, dict]:
    """Build one dataset item (safe to run in a worker process).

    Args:
        job: ``(kind, *args)`` as :func:`plan_jobs` makes them: ``("real", path,
            view, seed, grid)``, ``("simulated", path, view, seed, grid)`` or
            ``("synthetic", index, seed, grid)``. Synthetic item ``index`` draws its
            spec from ``default_rng([seed, 7, index])``.

    Returns:
        ``(volume, row)``: the uint8 canonical volume ``[grid, grid, grid]`` and its
        items.csv fields; ``(None, {"error": "..."})`` when the item failed (one bad
        item must not stop a build).
    """
    kind, args = job[0], job[1:]
    fn = {"real": _real_job, "simulated": _model_job, "synthetic": _synthetic_job}[kind]
    try:
        return fn(*args)
    except Exception as err:  # one bad item must not stop the build
        return None, {"error": f"{type(err).__name__}: {err}"}


# -- the builder ----------------------------------------------------------------------


def _files(folder: str | None, suffixes: tuple[str, ...]) -> list[Path]:
    if not folder:
        return []
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder; pass the folder that holds the files")
    return sorted(
        p
        for p in root.iterdir()
        if p.is_file() and any(p.name.endswith(s) for s in suffixes)
    )


def plan_jobs(cfg: DatasetConfig) -> list[tuple[tuple, str, str, str]]:
    """Every job with its ``(job, kind, group, source)``, in a fixed order."""
    jobs: list[tuple[tuple, str, str, str]] = []
    sources = (
        (
            "real",
            cfg.real_maps,
            (".map", ".mrc", ".ccp4", ".map.gz", ".mrc.gz"),
            cfg.real_views,
        ),
        (
            "simulated",
            cfg.models,
            (".pdb", ".cif", ".ent", ".pdb.gz", ".cif.gz"),
            cfg.model_views,
        ),
    )
    for kind, folder, suffixes, views in sources:
        for path in _files(folder, suffixes):
            for view in range(views):
                job = (kind, str(path), view, cfg.seed, cfg.grid)
                if kind == "simulated" and cfg.realism > 0:
                    job += (cfg.realism,)
                jobs.append((job, kind, group_of(path), path.name))
    for i in range(cfg.synthetic):
        jobs.append(
            (
                ("synthetic", i, cfg.seed, cfg.grid)
                + ((cfg.realism,) if cfg.realism > 0 else ()),
                "synthetic",
                f"synthetic-{cfg.seed}-{i}",
                f"synthetic:{i}",
            )
        )
    return jobs


def _shape_items(cfg: DatasetConfig) -> Iterator[tuple[np.ndarray, dict, str, str]]:
    if not cfg.shapes:
        return
    from encoder.training_data.shapes import iter_shapes
    from ingest import canonicalize

    for name, dmap in iter_shapes(
        cfg.shapes,
        resolution=cfg.shape_mesh_resolution,
        limit_per_file=cfg.shapes_per_file,
    ):
        cv = canonicalize(dmap, grid=cfg.grid)
        yield to_uint8(cv.values), _row(cv, {}, cv.contour), f"shape-{name}", name


def build_dataset(
    cfg: DatasetConfig,
    out: str | Path,
    command: str | None = None,
    progress: bool = True,
) -> dict:
    """Build the dataset folder ``out`` (see the module docstring).

    Returns:
        The manifest (also written to ``out/manifest.json``).

    Raises:
        ValueError: a source folder does not exist, or nothing could be built.
    """
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(cfg)
    volumes: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    indices: dict[str, list[int]] = {s: [] for s in SPLITS}
    rows: list[dict] = []
    failures: list[str] = []
    started = time.time()

    def keep(vol: np.ndarray, row: dict, kind: str, group: str, source: str) -> None:
        split = split_of(group, kind, cfg)
        row = {
            "index": len(rows),
            "split": split,
            "kind": kind,
            "group": group,
            "source": source,
            **row,
        }
        rows.append(row)
        volumes[split].append(vol)
        indices[split].append(row["index"])

    bar = tqdm(
        total=len(jobs),
        desc="dataset",
        unit="item",
        disable=not progress,
        file=sys.stderr,
    )
    with ProcessPoolExecutor(max_workers=cfg.workers) as pool:
        for (_job, kind, group, source), (vol, row) in zip(
            jobs, pool.map(run_job, [j[0] for j in jobs], chunksize=4), strict=True
        ):
            bar.update()
            if vol is None:
                failures.append(f"{source} ({kind}): {row['error']}")
                log.warning("skipped %s: %s", source, row["error"])
                continue
            keep(vol, row, kind, group, source)
    bar.close()
    for vol, row, group, source in _shape_items(cfg):
        keep(vol, row, "shape", group, source)
    if not rows:
        raise ValueError(
            "no item could be built; pass --real-maps, --models, "
            "--synthetic N or --shapes"
        )
    for split in SPLITS:
        if volumes[split]:
            stack = np.stack(volumes[split])
        else:
            stack = np.zeros((0,) + (cfg.grid,) * 3, np.uint8)
        np.savez_compressed(
            out / f"{split}.npz",
            volumes=stack,
            index=np.asarray(indices[split], dtype=np.int64),
        )
    with open(out / "items.csv", "w", newline="") as fh:
        fields = [
            "index",
            "split",
            "kind",
            "group",
            "source",
            "augmentation",
            "contour",
            "radius_of_gyration",
            "volume",
            "pose_candidates",
        ]
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    counts = {s: {} for s in SPLITS}
    for row in rows:
        counts[row["split"]][row["kind"]] = counts[row["split"]].get(row["kind"], 0) + 1
    manifest = {
        "format_version": FORMAT_VERSION,
        "config": {
            **asdict(cfg),
            "test_groups": list(cfg.test_groups),
            "val_groups": list(cfg.val_groups),
        },
        "counts": counts,
        "groups": {
            s: sorted(
                {
                    r["group"]
                    for r in rows
                    if r["split"] == s and r["kind"] in ("real", "simulated")
                }
            )
            for s in SPLITS
        },
        "failures": failures,
        "seconds": round(time.time() - started, 1),
        "command": command,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_split(folder: str | Path, split: str) -> np.ndarray:
    """The uint8 volumes ``[N, G, G, G]`` of one split of a dataset folder.

    Raises:
        ValueError: the folder is not a dataset, or the split is unknown.
    """
    folder = Path(folder)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    path = folder / f"{split}.npz"
    if not (folder / "manifest.json").is_file() or not path.is_file():
        raise ValueError(
            f"{folder}: not a dataset folder (no manifest.json or "
            f"{split}.npz); build one with `swan dataset build`"
        )
    with np.load(path) as data:
        return data["volumes"]


def read_items(folder: str | Path) -> list[dict[str, str]]:
    """The rows of ``items.csv``."""
    with open(Path(folder) / "items.csv", newline="") as fh:
        return list(csv.DictReader(fh))
