"""Preparing one map for the store: read, canonicalize, make its entry record.
An atomic model gives one map per resolution, simulated (:func:`prepare_model`).

No model and no torch: ``swan ingest``'s engines (:mod:`swan_index.local_engine`,
:mod:`swan_index.ray_engine`) run :func:`prepare_one` in worker processes, so this
module keeps its imports light.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ingest.canonical import CanonicalVolume, canonicalize, canonicalize_poses
from ingest.discover import MapEntry, ModelEntry
from ingest.errors import IngestError
from ingest.header import EntryMetadata, emdb_id_from_name, read_header
from ingest.mapio import DensityMap, read_map
from ingest.models import (
    DEFAULT_MODEL_RESOLUTION,
    MAX_MODEL_ATOMS,
    AtomicModel,
    read_model_file,
    simulate_model,
)
from ingest.simulate import ModelError
from swan_index.schema import EntryRecord

#: Side of the stored preview volumes.
PREVIEW_GRID = 32


@dataclass(frozen=True, eq=False)
class PreparedMap:
    """A map ready for encoding.

    Attributes:
        record: its metadata row.
        volumes: float32 ``[P, G, G, G]`` canonical volumes, one per candidate pose
            (primary first; P = 1 unless all poses were asked for).
    """

    record: EntryRecord
    volumes: np.ndarray

    def preview(self, grid: int = PREVIEW_GRID) -> np.ndarray:
        """The primary canonical volume box-averaged to ``grid^3``."""
        return shrink(self.volumes[0], grid)


def shrink(volume: np.ndarray, grid: int) -> np.ndarray:
    """Box-average a cube ``[G, G, G]`` down to ``[grid]^3`` (G a multiple of grid;
    a cube already at most ``grid`` is returned as is)."""
    g = volume.shape[0]
    if g <= grid:
        return np.asarray(volume, np.float32)
    if g % grid:
        raise ValueError(f"grid {g} is not a multiple of the preview grid {grid}")
    f = g // grid
    return volume.reshape(grid, f, grid, f, grid, f).mean(
        axis=(1, 3, 5), dtype=np.float32
    )


def record_for(
    dmap: DensityMap,
    canon: CanonicalVolume,
    metadata: EntryMetadata | None = None,
    entry: MapEntry | None = None,
    label: str | None = None,
) -> EntryRecord:
    """The ``entries`` row of a map and its canonical volume."""
    meta = metadata or EntryMetadata()
    box = tuple(int(n) for n in dmap.data.shape[::-1])
    extent = tuple(float(e) for e in dmap.extent_angstrom)
    size, stat = canon.size, None
    source = None
    if entry is not None:
        source = str(Path(entry.map_path).resolve())
        stat = os.stat(source)
    elif not dmap.simulated and os.path.exists(dmap.path):
        source = str(Path(dmap.path).resolve())
        stat = os.stat(source)
    emdb = meta.emdb_id or (entry.emdb_id if entry else None)
    if emdb is None and not dmap.simulated:
        emdb = emdb_id_from_name(Path(dmap.path).name)
    return EntryRecord(
        sha256=dmap.sha256,
        emdb_id=emdb,
        title=meta.title,
        method=meta.method,
        resolution=meta.resolution,
        contour=float(canon.contour),
        contour_source=canon.contour_source,
        organism=meta.organism,
        sample_name=meta.sample_name,
        release_date=meta.release_date,
        fitted_pdbs=tuple(meta.fitted_pdbs),
        voxel_size=float(np.mean(dmap.voxel_size)),
        box=box,  # type: ignore[arg-type]
        extent=extent,  # type: ignore[arg-type]
        rg=float(size.radius_of_gyration),
        mol_extents=tuple(float(e) for e in size.extents),  # type: ignore[arg-type]
        mol_volume=float(size.volume),
        n_poses=len(canon.candidates),
        label=label,
        simulated=bool(dmap.simulated),
        source_path=source,
        header_path=str(Path(entry.header_path).resolve())
        if entry is not None and entry.header_path is not None
        else meta.path,
        file_size=None if stat is None else int(stat.st_size),
        file_mtime_ns=None if stat is None else int(stat.st_mtime_ns),
    )


def prepare_map(
    dmap: DensityMap,
    grid: int,
    all_poses: bool = False,
    metadata: EntryMetadata | None = None,
    entry: MapEntry | None = None,
    contour: float | None = None,
    label: str | None = None,
) -> PreparedMap:
    """Canonical volume(s) and record of a map already read.

    Raises:
        MapFormatError: the map holds no shape at the contour (blank, nearly
            constant, noise) or the contour is outside the map's range; a
            :class:`~ingest.errors.MapTooLargeError` when memory cannot hold it.
    """
    if all_poses:
        canon = canonicalize_poses(dmap, contour, grid, metadata)
    else:
        canon = [canonicalize(dmap, contour, grid, metadata)]
    volumes = np.stack([c.values for c in canon]).astype(np.float32)
    return PreparedMap(record_for(dmap, canon[0], metadata, entry, label), volumes)


def prepare_entry(entry: MapEntry, grid: int, all_poses: bool = False) -> PreparedMap:
    """Read a map and its header and canonicalize it.

    Raises:
        IngestError: the map or its header cannot be read (the message names the
            file and the fix).
    """
    metadata = read_header(entry.header_path) if entry.header_path else None
    dmap = read_map(entry.map_path)
    return prepare_map(dmap, grid, all_poses, metadata, entry)


#: The ``method`` of every entry simulated from an atomic model.
SIMULATED_METHOD = "simulated"


def model_record(
    model: AtomicModel, dmap: DensityMap, base: EntryRecord
) -> EntryRecord:
    """The ``entries`` row of a map simulated from a model (``base``: its row as
    a map, :func:`record_for`): method ``simulated``, the simulation's
    resolution, and what the model file says (PDB id, title, organism, its
    experimental method, chains, residues)."""
    info = model.info
    stat = os.stat(model.path)
    title = info.title or model.path.name
    return replace(
        base,
        title=f"{title} (simulated at {dmap.header['resolution']:g} Å)",
        method=SIMULATED_METHOD,
        resolution=float(dmap.header["resolution"]),
        organism=info.organism,
        sample_name=f"biological assembly {info.assembly}"
        if info.assembly
        else "asymmetric unit",
        fitted_pdbs=(info.pdb_id,) if info.pdb_id else (),
        source_path=str(Path(model.path).resolve()),
        file_size=int(stat.st_size),
        file_mtime_ns=int(stat.st_mtime_ns),
        pdb_id=info.pdb_id,
        model_method=info.method,
        n_chains=info.n_chains,
        n_residues=info.n_residues,
    )


def prepare_model(
    entry: ModelEntry, grid: int, all_poses: bool = False
) -> list[PreparedMap]:
    """Read a model, simulate it at each of ``entry.resolutions`` (default
    :data:`~ingest.models.DEFAULT_MODEL_RESOLUTION`) and canonicalize each map.

    Raises:
        ModelError: the model cannot be read or simulated (one line naming the
            file and the fix).
    """
    model = read_model_file(
        entry.model_path, entry.max_atoms or MAX_MODEL_ATOMS, entry.assembly
    )
    out = []
    for resolution in entry.resolutions or (DEFAULT_MODEL_RESOLUTION,):
        dmap = simulate_model(model, resolution)
        try:
            prepared = prepare_map(dmap, grid, all_poses)
        except IngestError as err:  # named after the model file, not the map
            raise ModelError(
                entry.model_path,
                f"its map simulated at {resolution:g} Å has no shape ({err.problem})",
                "check the model's atoms (elements, coordinates)",
            ) from None
        out.append(replace(prepared, record=model_record(model, dmap, prepared.record)))
    return out


#: What an ingest reads from one file: a map (and its header) or an atomic model.
Entry = MapEntry | ModelEntry


def prepare_one(entry: Entry, grid: int) -> list[PreparedMap] | str:
    """The prepared maps of one file (a model gives one per resolution), or the
    one-line reason it cannot be ingested: what an ingest worker runs.

    Never raises for a bad file (nor for running out of memory on it): one bad
    file must not stop an ingest.
    """
    try:
        if isinstance(entry, ModelEntry):
            return prepare_model(entry, grid)
        return [prepare_entry(entry, grid)]
    except IngestError as exc:
        return str(exc)
    except MemoryError:
        return (
            f"{entry.path}: out of memory; ingest it alone, on a machine with more "
            "memory (or a model with --max-model-atoms lower to refuse such files)"
        )
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the run
        return (
            f"{entry.path}: unexpected {type(exc).__name__}: "
            f"{' '.join(str(exc).split())}; "
            "check the file, and report it if it opens in other tools"
        )
