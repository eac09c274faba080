"""The demo store: the sample maps in ``data/`` plus a labelled simulated set.

Built once (cached under ``~/.cache/cryo-swan``, keyed by the checkpoint), from
what the package ships, with no download:

* the real EMDB sample maps in ``data/maps``, with their metadata: the EMDB
  header XML where one is shipped, else what the shipped real sources say of the
  entry (``data/maps/sample_metadata.csv``: title, method, resolution, fitted
  models, release date; its ``source`` column names where each value came from;
  nothing is guessed, and an entry the sources say nothing of keeps empty fields);
* **simulated families**, every entry labelled (``label``), flagged ``simulated``
  and with method ``simulated``: maps computed from the atomic models in
  ``data/models`` (described in ``data/models/models.csv``) and from synthetic
  protein-like assemblies (:mod:`encoder.training_data.synthetic`, labelled
  ``SYNTHETIC``). Each family is one molecule seen as depositions differ:
  resolution 3-12 Å, a random rotation, noise, and (for the models) sometimes a
  subset of its chains. The title says what each map was simulated from, at which
  resolution, and which chains it holds. Families are what the UMAP should show
  as clusters.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from encoder.training_data import build_assembly, describe, random_spec
from ingest.discover import find_entries
from ingest.errors import IngestError
from ingest.header import EntryMetadata, emdb_id_from_name, read_header
from ingest.mapio import DensityMap, read_map
from ingest.simulate import read_model, simulate_view
from swan_index.map_encoder import MapEncoder
from swan_index.prepare import PreparedMap, prepare_map
from swan_index.store import Store

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parents[1] / "data"
#: What the shipped real sources say of the sample maps that have no header.
SAMPLE_METADATA = DATA / "maps" / "sample_metadata.csv"
#: Name, PDB id and description of each shipped atomic model.
MODELS_TABLE = DATA / "models" / "models.csv"
#: Bump when the demo content changes, so cached stores are rebuilt.
DEMO_VERSION = 3
#: The ``method`` of every simulated demo entry.
SIMULATED_METHOD = "simulated"
#: ``ingest_log`` run id of the demo's own rows.
_RUN_ID = "demo"


@dataclass(frozen=True)
class DemoConfig:
    """What goes into the demo store.

    Attributes:
        synthetic_families: synthetic assemblies, one family each.
        variants: entries per family.
        seed: everything generated follows from it.
    """

    synthetic_families: int = 14
    variants: int = 16
    seed: int = 0


@dataclass(frozen=True, eq=False)
class SimulatedVariant:
    """One simulated demo entry.

    Attributes:
        label: its family (``"model 5ME2: haemoglobin"``, ``"synthetic 3: ..."``).
        map: the simulated map.
        resolution: the resolution it was simulated at, Å.
        source: what it was simulated from (``"PDB 5ME2"``, ``"6272.pdb"``, ``"a
            synthetic assembly"``).
        description: a sentence on that source.
        pdb_id: the source's PDB id (lower case), when it has one.
        chains: the chains kept when only some were, else ``None``.
        all_chains: how many chains the source has.
    """

    label: str
    map: DensityMap
    resolution: float
    source: str
    description: str
    pdb_id: str | None = None
    chains: tuple[str, ...] | None = None
    all_chains: int = 1

    def metadata(self) -> EntryMetadata:
        """The entry's metadata: method ``simulated``, a title that says from what
        and at which resolution, the source's PDB id as its fitted model."""
        what = self.source
        if self.chains is not None:
            what += f", chains {', '.join(self.chains)} of {self.all_chains}"
        return EntryMetadata(
            title=f"{self.label}, simulated at {self.resolution:.1f} Å from {what}",
            method=SIMULATED_METHOD,
            resolution=round(self.resolution, 2),
            sample_name=self.description,
            fitted_pdbs=(self.pdb_id,) if self.pdb_id else (),
        )


def default_demo_path(encoder: MapEncoder) -> Path:
    """``~/.cache/cryo-swan/demo-v<version>-<checkpoint hash>``."""
    return (
        Path.home()
        / ".cache"
        / "cryo-swan"
        / f"demo-v{DEMO_VERSION}-{encoder.info.hash[:12]}"
    )


# -- the real sample maps -----------------------------------------------------------
def _csv_value(path: Path, line: int, column: str, text: str) -> object:
    """One cell of the sample metadata as an :class:`EntryMetadata` value."""
    text = text.strip()
    if not text:
        return () if column == "fitted_pdbs" else None
    try:
        if column == "resolution":
            return float(text)
        if column == "release_date":
            return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{path}: line {line}: {column} {text!r} is not "
            f"{'a number' if column == 'resolution' else 'a date (YYYY-MM-DD)'}; "
            "correct the cell or leave it empty"
        ) from None
    if column == "fitted_pdbs":
        return tuple(p.strip().lower() for p in text.split(",") if p.strip())
    return text


def read_sample_metadata(
    path: str | Path = SAMPLE_METADATA,
) -> dict[str, EntryMetadata]:
    """The metadata of the sample maps in a CSV table, by EMDB id.

    The columns are :class:`~ingest.header.EntryMetadata` field names
    (``emdb_id`` first; ``fitted_pdbs`` comma-separated, ``release_date``
    ``YYYY-MM-DD``); a ``source`` column (where the values came from) and any
    other column that is not a field are not read. Empty cells are missing values.

    Args:
        path: the CSV file.

    Returns:
        ``{"EMD-N": EntryMetadata}``; ``path`` of each is ``None`` (it is not an
        EMDB header).

    Raises:
        ValueError: a row without a valid EMDB id, or a cell that is not of its
            column's type (the message names the file, the line and the fix).
        OSError: the file cannot be read.
    """
    path = Path(path)
    known = {f.name for f in fields(EntryMetadata)} - {"path", "emdb_id"}
    out: dict[str, EntryMetadata] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            emdb = emdb_id_from_name(row.get("emdb_id") or "")
            if emdb is None:
                raise ValueError(
                    f"{path}: line {line}: emdb_id {row.get('emdb_id')!r} is not "
                    "an EMDB id; write it as EMD-NNNN"
                )
            values = {
                k: _csv_value(path, line, k, v or "")
                for k, v in row.items()
                if k in known
            }
            out[emdb] = EntryMetadata(emdb_id=emdb, **values)  # type: ignore[arg-type]
    return out


def merge_metadata(
    header: EntryMetadata | None, extra: EntryMetadata | None
) -> EntryMetadata | None:
    """The header's metadata, its missing fields filled from ``extra``.

    Args:
        header: what the entry's EMDB header says (wins where it says anything).
        extra: another source on the same entry.

    Returns:
        The merged metadata (``path`` stays the header's), or ``None`` when both
        are ``None``.
    """
    if header is None or extra is None:
        return header or extra
    missing = {
        f.name: getattr(extra, f.name)
        for f in fields(EntryMetadata)
        if f.name != "path" and getattr(header, f.name) in (None, ())
    }
    return replace(header, **missing)


def sample_maps(
    grid: int, metadata_path: str | Path = SAMPLE_METADATA
) -> tuple[list[PreparedMap], list[str]]:
    """The real sample maps of ``data/maps``, prepared with their metadata.

    Args:
        grid: the encoder's grid side.
        metadata_path: the sample metadata table (:func:`read_sample_metadata`).

    Returns:
        ``(prepared, failures)``: the maps that could be read, and one line per
        map (or table) that could not, naming the file and the fix.
    """
    failures: list[str] = []
    try:
        table = read_sample_metadata(metadata_path)
    except (ValueError, OSError) as err:
        failures.append(f"{err}; the sample maps keep their headers only")
        table = {}
    prepared = []
    for entry in find_entries(DATA / "maps"):
        try:
            header = read_header(entry.header_path) if entry.header_path else None
            emdb = (header.emdb_id if header else None) or entry.emdb_id
            meta = merge_metadata(header, table.get(emdb or ""))
            dmap = read_map(entry.map_path)
            prepared.append(prepare_map(dmap, grid, metadata=meta, entry=entry))
        except IngestError as err:
            failures.append(str(err))
    return prepared, failures


# -- the simulated families ---------------------------------------------------------
def _models() -> dict[str, dict[str, str]]:
    """``file -> {name, pdb_id, description}`` from :data:`MODELS_TABLE`."""
    if not MODELS_TABLE.exists():
        return {}
    with MODELS_TABLE.open(newline="", encoding="utf-8") as fh:
        return {row["file"]: row for row in csv.DictReader(fh)}


def _variant(
    atoms: object, rng: np.random.Generator, chains: list[str] | None
) -> tuple[DensityMap, float]:
    dmap, resolution = simulate_view(atoms, rng, chains)
    noise = float(rng.uniform(0.0, 0.08)) * float(dmap.data.max())
    data = dmap.data + rng.normal(0, 1, dmap.data.shape).astype(np.float32) * noise
    return replace(dmap, data=data.astype(np.float32)), resolution


def simulated_families(cfg: DemoConfig) -> Iterator[SimulatedVariant]:
    """Every simulated demo entry, family after family.

    Args:
        cfg: how many families and variants, and the seed they follow from.

    Yields:
        :class:`SimulatedVariant` objects: the shipped models' families first
        (in file order), then the synthetic ones.

    Raises:
        ModelError: a shipped model cannot be read.
    """
    models = _models()
    for path in sorted((DATA / "models").glob("*.pdb")):
        structure = read_model(path)
        names = [c.name for c in structure[0] if len(c) > 0]
        about = models.get(path.name, {})
        pdb_id = (about.get("pdb_id") or "").strip().lower() or None
        label = f"model {path.stem.upper()}"
        if about.get("name"):
            label += f": {about['name']}"
        source = f"PDB {pdb_id.upper()}" if pdb_id else path.name
        rng = np.random.default_rng([cfg.seed, 1, len(path.stem), ord(path.stem[0])])
        for _ in range(cfg.variants):
            chains = None
            if len(names) > 2 and rng.random() < 0.25:
                keep = int(rng.integers(len(names) - 1, len(names)))
                chains = sorted(rng.choice(names, size=keep, replace=False).tolist())
            dmap, res = _variant(structure, rng, chains)
            yield SimulatedVariant(
                label,
                dmap,
                res,
                source,
                about.get("description") or f"atomic model {path.name}",
                pdb_id,
                tuple(chains) if chains is not None else None,
                len(names),
            )
    for family in range(cfg.synthetic_families):
        rng = np.random.default_rng([cfg.seed, 2, family])
        spec = random_spec(rng, max_atoms=12_000)
        atoms = build_assembly(spec)
        what = describe(spec).removeprefix("SYNTHETIC ")
        label = f"synthetic {family}: {what}"
        for _ in range(cfg.variants):
            dmap, res = _variant(atoms, rng, None)
            yield SimulatedVariant(
                label,
                dmap,
                res,
                "a synthetic assembly",
                f"synthetic protein-like assembly ({what}); no real molecule",
            )


def build_demo_store(
    path: str | Path,
    encoder: MapEncoder,
    cfg: DemoConfig = DemoConfig(),
    progress: bool = True,
) -> Path:
    """Build the demo store at ``path`` unless a complete one is there already.

    A demo store left there by another demo version, configuration or checkpoint
    loses its demo entries (the sample maps and the simulated ones) and gets them
    again; entries a user added to it are kept. A sample map that cannot be read
    is logged (one line naming the file) and left out; the rest goes on.

    Args:
        path: the store folder (made when missing).
        encoder: the checkpoint that encodes.
        cfg: what goes in.
        progress: show a progress bar (stderr).

    Returns:
        The store folder.
    """
    path = Path(path)
    marker = path / "demo.json"
    want = {
        "version": DEMO_VERSION,
        "config": asdict(cfg),
        "encoder": encoder.info.hash,
    }
    old = _read_marker(marker)
    if old == want:
        return path
    with Store.open(path, encoder=encoder.info) as store:
        if old is not None:
            marker.unlink()  # incomplete until the end: rebuilt if interrupted
            _drop_demo_entries(store)
        known = store.known_sha256()
        real, failures = sample_maps(encoder.grid)
        for reason in failures:
            log.warning("%s", reason)
        real = [p for p in real if p.record.sha256 not in known]
        if real:
            _add(store, encoder, real)
        total = len(list((DATA / "models").glob("*.pdb"))) + cfg.synthetic_families
        batch: list[PreparedMap] = []
        for item in tqdm(
            simulated_families(cfg),
            total=total * cfg.variants,
            disable=not progress,
            unit="map",
            desc="simulating the demo set",
            leave=False,
        ):
            if item.map.sha256 in known:
                continue
            batch.append(
                prepare_map(
                    item.map, encoder.grid, metadata=item.metadata(), label=item.label
                )
            )
            if len(batch) == 32:
                _add(store, encoder, batch)
                batch = []
        if batch:
            _add(store, encoder, batch)
    marker.write_text(json.dumps(want))
    return path


def _read_marker(marker: Path) -> dict | None:
    """What the demo marker says, ``{}`` for an unreadable one, ``None`` if none."""
    if not marker.exists():
        return None
    try:
        got = json.loads(marker.read_text())
    except (OSError, ValueError):
        return {}
    return got if isinstance(got, dict) else {}


def _drop_demo_entries(store: Store) -> None:
    """Delete the entries an earlier demo build made: the simulated ones and the
    sample maps of ``data/maps``."""
    table = store.entries(("id", "simulated", "source_path"))
    maps = str((DATA / "maps").resolve())
    ids = [
        int(i)
        for i, sim, src in zip(
            np.ma.getdata(table["id"]),
            np.ma.filled(np.ma.asarray(table["simulated"], bool), False),
            table["source_path"],
            strict=True,
        )
        if sim or (isinstance(src, str) and Path(src).is_relative_to(maps))
    ]
    if ids:
        log.info("demo store %s: replacing %d older demo entries", store.path, len(ids))
        store.delete(ids)


def _add(store: Store, encoder: MapEncoder, batch: list[PreparedMap]) -> None:
    code = encoder.encode(np.concatenate([p.volumes for p in batch]))
    rows = [
        {
            "run_id": _RUN_ID,
            "path": p.record.source_path or f"simulated: {p.record.label}",
            "status": "ok",
            "reason": None,
            "sha256": p.record.sha256,
        }
        for p in batch
    ]
    store.add(code, [p.record for p in batch], [p.preview() for p in batch], rows)
