"""Molecules held out of the encoder's training, for the retrieval benchmark.

* ``"real-model"``: the atomic models of the real data whose group is in
  :data:`encoder.training_data.DEFAULT_TEST_GROUPS` (held out of the encoder's
  training), one :class:`Molecule` per model file, labelled with its group (several
  models of one molecule, e.g. the rotavirus VP6 models, share a group).
* ``"synthetic"``: SYNTHETIC protein-like assemblies from
  :mod:`encoder.training_data.synthetic`, never seen in training (see
  :func:`held_out_molecules` for the seed rule).

Their simulated versions come from :func:`benchmarks.retrieval.variants.make_versions`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import gemmi
import numpy as np

from encoder.training_data import (
    DEFAULT_TEST_GROUPS,
    AssemblySpec,
    build_assembly,
    describe,
    group_of,
    random_spec,
)
from ingest.simulate import model_atoms, read_model

log = logging.getLogger(__name__)

KINDS = ("real-model", "synthetic")

#: Offset of the seed family of the held-out synthetic molecules. Training (the
#: ``"synthetic"`` jobs of :func:`encoder.training_data.run_job`) draws spec ``i``
#: from ``default_rng([seed, 7, i])``; held-out spec ``i`` is drawn from
#: ``default_rng([SYNTHETIC_SEED_OFFSET + seed, 11, i])`` (a different seed
#: sequence for every ``seed``), and its geometry seed is set to
#: ``SYNTHETIC_GEOMETRY_BASE + SYNTHETIC_SEED_OFFSET * seed + i``: at or above
#: 2**31, where ``random_spec`` (which draws seeds in [0, 2**31)) never goes. So no
#: held-out assembly has the coordinates of a training one.
SYNTHETIC_SEED_OFFSET = 10**6
SYNTHETIC_GEOMETRY_BASE = 2**31
#: Atom caps of the synthetic molecules, cycled: small proteins to large complexes.
SYNTHETIC_ATOM_CAPS = (1_500, 5_000, 15_000)
#: Real models above this many atoms are skipped (simulation time).
MAX_MODEL_ATOMS = 30_000


@functools.lru_cache(maxsize=32)
def _load(path: str) -> gemmi.Structure:
    return read_model(path)


@functools.lru_cache(maxsize=32)
def _build(spec: AssemblySpec) -> gemmi.Structure:
    return build_assembly(spec)


@dataclass(frozen=True)
class Molecule:
    """A held-out molecule.

    Attributes:
        name: unique name (model file stem, or ``synthetic-<seed>-<i>``).
        group: ground-truth label: versions of one group are the same molecule.
        kind: ``"real-model"`` (an atomic model of the real data) or
            ``"synthetic"`` (an :mod:`encoder.training_data.synthetic` assembly).
        path: model file (real models).
        spec: assembly spec (synthetic).
        description: what it is (synthetic: :func:`encoder.training_data.describe`).
    """

    name: str
    group: str
    kind: str
    path: str | None = None
    spec: AssemblySpec | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is unknown; use one of {KINDS}")
        if (self.path is None) == (self.spec is None):
            raise ValueError("give exactly one of path (real model) or spec")

    def structure(self) -> gemmi.Structure:
        """A fresh copy of the molecule's gemmi Structure (cached underneath)."""
        if self.path is not None:
            return _load(self.path).clone()
        return _build(self.spec).clone()


def held_out_molecules(
    models_dir: Path | None,
    n_synthetic: int,
    seed: int,
    max_atoms: int = MAX_MODEL_ATOMS,
) -> list[Molecule]:
    """The molecules the encoder never saw in training.

    Args:
        models_dir: folder of real atomic models (e.g. ``../shared/data/real/models``);
            every model whose group (:func:`encoder.training_data.group_of`) is in
            ``DEFAULT_TEST_GROUPS`` becomes one ``"real-model"`` molecule. ``None``:
            no real models.
        n_synthetic: number of SYNTHETIC assemblies to add. Assembly ``i`` comes from
            ``random_spec(default_rng([SYNTHETIC_SEED_OFFSET + seed, 11, i]),
            max_atoms=SYNTHETIC_ATOM_CAPS[i % 3])`` with its geometry seed set to
            ``2**31 + SYNTHETIC_SEED_OFFSET * seed + i``: a seed family disjoint
            from the training one (``default_rng([seed, 7, i])`` with geometry
            seeds below 2**31), so none of them was in the encoder's training set.
            Each is its own group ``synthetic-heldout-<seed>-<i>``.
        seed: seed of the synthetic family (>= 0).
        max_atoms: skip real models with more atoms (simulation time).

    Returns:
        Real models (sorted by file name), then the synthetic ones.

    Raises:
        ValueError: ``models_dir`` is not a folder, or negative counts/seed.
    """
    if n_synthetic < 0 or seed < 0:
        raise ValueError("n_synthetic and seed must be >= 0")
    molecules: list[Molecule] = []
    if models_dir is not None:
        root = Path(models_dir)
        if not root.is_dir():
            raise ValueError(f"{root}: not a folder of atomic models")
        suffixes = (".pdb", ".cif", ".ent", ".pdb.gz", ".cif.gz", ".ent.gz")
        for path in sorted(root.iterdir()):
            if not (path.is_file() and path.name.endswith(suffixes)):
                continue
            group = group_of(path)
            if group not in DEFAULT_TEST_GROUPS:
                continue
            n_atoms = len(model_atoms(_load(str(path)))[0])
            if n_atoms > max_atoms:
                log.info("skipped %s: %d atoms > %d", path.name, n_atoms, max_atoms)
                continue
            stem = path.name.split(".")[0]
            molecules.append(
                Molecule(
                    name=stem,
                    group=group,
                    kind="real-model",
                    path=str(path),
                    description=f"atomic model {path.name} ({n_atoms} atoms)",
                )
            )
    for i in range(n_synthetic):
        rng = np.random.default_rng([SYNTHETIC_SEED_OFFSET + seed, 11, i])
        spec = random_spec(rng, max_atoms=SYNTHETIC_ATOM_CAPS[i % 3])
        spec = replace(
            spec, seed=SYNTHETIC_GEOMETRY_BASE + SYNTHETIC_SEED_OFFSET * seed + i
        )
        molecules.append(
            Molecule(
                name=f"synthetic-{seed}-{i}",
                group=f"synthetic-heldout-{seed}-{i}",
                kind="synthetic",
                spec=spec,
                description=describe(spec),
            )
        )
    return molecules
