"""The demo store: the sample maps in ``data/`` plus a labelled simulated set.

Built once (cached under ``~/.cache/cryo-swan``, keyed by the checkpoint), from
what the package ships, with no download:

* the real EMDB sample maps in ``data/maps`` (with their header where shipped);
* **simulated families**, every entry labelled (``label``) and flagged
  ``simulated``: maps computed from the atomic models in ``data/models`` and from
  synthetic protein-like assemblies (:mod:`encoder.training_data.synthetic`, labelled
  ``SYNTHETIC``). Each family is one molecule seen as depositions differ: resolution
  3-12 Å, a random rotation, noise, and (for the models) sometimes a subset of its
  chains. Families are what the UMAP should show as clusters.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from encoder.training_data import build_assembly, describe, random_spec
from ingest.header import EntryMetadata
from ingest.mapio import DensityMap
from ingest.simulate import read_model, simulate_view
from swan_index.indexer import ingest_paths
from swan_index.map_encoder import MapEncoder
from swan_index.prepare import PreparedMap, prepare_map
from swan_index.store import Store

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parents[1] / "data"
#: Bump when the demo content changes, so cached stores are rebuilt.
DEMO_VERSION = 2


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


def default_demo_path(encoder: MapEncoder) -> Path:
    """``~/.cache/cryo-swan/demo-v<version>-<checkpoint hash>``."""
    return (
        Path.home()
        / ".cache"
        / "cryo-swan"
        / f"demo-v{DEMO_VERSION}-{encoder.info.hash[:12]}"
    )


def _variant(
    atoms: object, rng: np.random.Generator, chains: list[str] | None
) -> tuple[DensityMap, float]:
    dmap, resolution = simulate_view(atoms, rng, chains)
    noise = float(rng.uniform(0.0, 0.08)) * float(dmap.data.max())
    data = dmap.data + rng.normal(0, 1, dmap.data.shape).astype(np.float32) * noise
    return replace(dmap, data=data.astype(np.float32)), resolution


def simulated_families(cfg: DemoConfig) -> Iterator[tuple[str, DensityMap, float]]:
    """``(label, map, resolution)`` for every simulated demo entry."""
    for path in sorted((DATA / "models").glob("*.pdb")):
        structure = read_model(path)
        names = [c.name for c in structure[0] if len(c) > 0]
        rng = np.random.default_rng([cfg.seed, 1, len(path.stem), ord(path.stem[0])])
        for _ in range(cfg.variants):
            chains = None
            if len(names) > 2 and rng.random() < 0.25:
                keep = int(rng.integers(len(names) - 1, len(names)))
                chains = sorted(rng.choice(names, size=keep, replace=False).tolist())
            dmap, res = _variant(structure, rng, chains)
            yield f"model {path.stem.upper()}", dmap, res
    for family in range(cfg.synthetic_families):
        rng = np.random.default_rng([cfg.seed, 2, family])
        spec = random_spec(rng, max_atoms=12_000)
        atoms = build_assembly(spec)
        label = f"synthetic {family}: {describe(spec).removeprefix('SYNTHETIC ')}"
        for _ in range(cfg.variants):
            dmap, res = _variant(atoms, rng, None)
            yield label, dmap, res


def build_demo_store(
    path: str | Path,
    encoder: MapEncoder,
    cfg: DemoConfig = DemoConfig(),
    progress: bool = True,
) -> Path:
    """Build the demo store at ``path`` unless a complete one is there already.

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
    if marker.exists() and json.loads(marker.read_text()) == want:
        return path
    with Store.open(path, encoder=encoder.info) as store:
        ingest_paths([DATA / "maps"], store, encoder, workers=0, progress=False)
        known = store.known_sha256()
        total = len(list((DATA / "models").glob("*.pdb"))) + cfg.synthetic_families
        batch: list[PreparedMap] = []
        items = simulated_families(cfg)
        for label, dmap, res in tqdm(
            items,
            total=total * cfg.variants,
            disable=not progress,
            unit="map",
            desc="simulating the demo set",
            leave=False,
        ):
            if dmap.sha256 in known:
                continue
            meta = EntryMetadata(
                title=f"{label} at {res:.1f} Å (simulated)", resolution=round(res, 2)
            )
            batch.append(prepare_map(dmap, encoder.grid, metadata=meta, label=label))
            if len(batch) == 32:
                _add(store, encoder, batch)
                batch = []
        if batch:
            _add(store, encoder, batch)
    marker.write_text(json.dumps(want))
    return path


def _add(store: Store, encoder: MapEncoder, batch: list[PreparedMap]) -> None:
    code = encoder.encode(np.concatenate([p.volumes for p in batch]))
    store.add(code, [p.record for p in batch], [p.preview() for p in batch])
