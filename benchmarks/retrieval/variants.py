"""Ground-truth *versions* of held-out molecules for the retrieval benchmark.

The benchmark asks: given a query map of molecule M, is another deposition of M at
the top of the search results? Real EMDB depositions of one molecule differ in
pose, resolution, box, noise, the depositor's contour, missing parts and
conformation; :func:`make_versions` makes one simulated map per such difference
from an atomic model (``ingest.simulate_map``, molmap-style Gaussians).

Everything here is **simulated** (``DensityMap.simulated`` is True, the path reads
``simulated:...`` and ``warnings`` say so) and deterministic given the
``numpy.random.Generator`` passed in.

Molecules (:func:`held_out_molecules`):

* ``"real-model"``: the atomic models of the real data whose group is in
  :data:`encoder.dataset.DEFAULT_TEST_GROUPS` (held out of the encoder's training),
  one :class:`Molecule` per model file, labelled with its group (several models of
  one molecule, e.g. the rotavirus VP6 models, share a group).
* ``"synthetic"``: SYNTHETIC protein-like assemblies from
  :mod:`encoder.synthetic`, never seen in training (see
  :func:`held_out_molecules` for the seed rule).

Versions (:func:`make_versions`): one ``"reference"`` (the gallery entry) and query
versions per condition (see :data:`CONDITIONS`). Every version, the reference
included, is the molecule under its own uniformly random rotation; ``params``
records the query's rotation relative to the reference. The contour is set the
way a depositor would set it: ``map.header["recommended_contour"]``, which
``ingest.canonicalize`` picks up (contour source ``"map"``). Note that
``ingest.write_map`` does not store it: a benchmark that writes the maps to files
must pass the contour along (e.g. an EMDB-style header XML, or ``contour=``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gemmi
import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from encoder.training_data import (
    DEFAULT_TEST_GROUPS,
    AssemblySpec,
    build_assembly,
    describe,
    group_of,
    random_spec,
)
from ingest.contour import ANGSTROM3_PER_DALTON, background_level, contour_for_volume
from ingest.mapio import DensityMap
from ingest.simulate import SIGMA_FACTOR, model_atoms, read_model, simulate_map
from ingest.transform import axis_rotation, random_rotation

log = logging.getLogger(__name__)

#: Every condition; the first is the gallery entry, the others are queries.
CONDITIONS = (
    "reference",
    "rotation",
    "resolution",
    "box",
    "noise",
    "contour",
    "incomplete",
    "conformational",
)
QUERY_CONDITIONS = CONDITIONS[1:]
KINDS = ("real-model", "synthetic")

#: Offset of the seed family of the held-out synthetic molecules. Training
#: (``encoder.dataset._synthetic_job``) draws spec ``i`` from
#: ``default_rng([seed, 7, i])``; held-out spec ``i`` is drawn from
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

#: Resolution of the reference (gallery) version, Å.
REFERENCE_RESOLUTION = (4.0, 6.0)
#: Resolution range of the "resolution" condition, Å.
QUERY_RESOLUTION = (3.0, 12.0)
#: Noise sigma relative to the clean map's signal std (std of the density inside
#: the molecule, i.e. at or above the clean mass-based contour). The noise is
#: Gaussian, low-pass filtered to the map's resolution like real cryo-EM noise.
NOISE_LEVELS = {"low": 0.1, "medium": 0.25, "high": 0.5}
#: Depositor's contour factor range of the "contour" condition (x mass-based).
CONTOUR_FACTORS = ((0.7, 0.9), (1.1, 1.4))
#: Fraction of residues removed by the "incomplete" condition.
INCOMPLETE_FRACTION = (0.10, 0.35)
#: Hinge angle of the "conformational" condition, degrees.
HINGE_ANGLE = (15.0, 40.0)
#: Finest voxel used, Å, and the largest box, voxels (speed).
MIN_VOXEL = 0.8
MAX_BOX_VOXELS = 160**3

_CONTACT = 8.0  # residue contact distance for the domain split, Å
_CLASH = 3.6  # representative atoms closer than this clash, Å


# -- molecules ---------------------------------------------------------------------


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
            ``"synthetic"`` (an :mod:`encoder.synthetic` assembly).
        path: model file (real models).
        spec: assembly spec (synthetic).
        description: what it is (synthetic: :func:`encoder.synthetic.describe`).
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
            every model whose group (:func:`encoder.dataset.group_of`) is in
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


# -- atoms, residues ---------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Table:
    """Per-atom and per-residue arrays of model 1, in ``model_atoms`` order."""

    xyz: np.ndarray  # (N, 3)
    mass: np.ndarray  # (N,)
    atom_residue: np.ndarray  # (N,) global residue index
    res_chain: np.ndarray  # (R,) chain index
    res_polymer: np.ndarray  # (R,) bool
    res_rep: np.ndarray  # (R, 3): CA, else P, else the first atom
    res_label: list[str]  # "A:153"
    chain_names: list[str]


def _table(structure: gemmi.Structure) -> _Table:
    xyz, _, mass = model_atoms(structure)
    atom_residue, res_chain, res_polymer, res_rep, res_label = [], [], [], [], []
    names = []
    r = 0
    for c, chain in enumerate(structure[0]):
        names.append(chain.name)
        for residue in chain:
            if len(residue) == 0:
                continue
            rep = residue.find_atom("CA", "*") or residue.find_atom("P", "*")
            rep = rep or residue[0]
            atom_residue.extend([r] * len(residue))
            res_chain.append(c)
            res_polymer.append(residue.entity_type == gemmi.EntityType.Polymer)
            res_rep.append((rep.pos.x, rep.pos.y, rep.pos.z))
            res_label.append(f"{chain.name}:{residue.seqid.num}")
            r += 1
    return _Table(
        xyz=xyz,
        mass=mass,
        atom_residue=np.asarray(atom_residue, dtype=np.int64),
        res_chain=np.asarray(res_chain, dtype=np.int64),
        res_polymer=np.asarray(res_polymer, dtype=bool),
        res_rep=np.asarray(res_rep, dtype=np.float64).reshape(-1, 3),
        res_label=res_label,
        chain_names=names,
    )


def _polymer_residues(table: _Table, chain: int) -> np.ndarray:
    return np.flatnonzero((table.res_chain == chain) & table.res_polymer)


# -- incomplete models -------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Removal:
    """Parts of a model left out (an incomplete deposition).

    Attributes:
        removed_atoms: bool per atom (``model_atoms`` order), True where removed.
        removed_residues: bool per residue (non-empty residues, file order).
        mode: ``"termini"``, ``"internal"`` or ``"chains"``.
        residue_fraction: removed share of the polymer residues.
        atom_fraction: removed share of the atoms.
        detail: what was removed (JSON-serialisable).
    """

    removed_atoms: np.ndarray
    removed_residues: np.ndarray
    mode: str
    residue_fraction: float
    atom_fraction: float
    detail: dict[str, Any]


def choose_removal(
    structure: gemmi.Structure,
    rng: np.random.Generator,
    mode: str | None = None,
    fraction: float | None = None,
) -> Removal:
    """Choose residues to leave out: 10-35 % of the polymer residues.

    Modes: ``"termini"`` trims the N- and C-termini of every chain (the same share
    of each chain, split between the ends at random); ``"internal"`` removes one
    internal segment at the same relative place of every chain (a disordered loop
    or domain); ``"chains"`` drops whole chains (subunits), only for multi-chain
    models where a subset of chains holds 10-35 % of the residues. Non-polymer
    residues (ligands) are kept unless their chain is dropped.

    Args:
        structure: the model.
        rng: randomness.
        mode: one of the modes; default a random available one.
        fraction: target share of residues (termini/internal); default drawn from
            :data:`INCOMPLETE_FRACTION`.

    Returns:
        The :class:`Removal` (apply it with :func:`remove_parts`).

    Raises:
        ValueError: unknown mode, or ``"chains"`` impossible for this model.
    """
    table = _table(structure)
    n_chains = len(table.chain_names)
    polymer = table.res_polymer
    n_poly = int(polymer.sum())
    if n_poly == 0:
        raise ValueError("the model has no polymer residues")
    per_chain = np.array([len(_polymer_residues(table, c)) for c in range(n_chains)])
    chain_subset = _chain_subset(per_chain, rng) if n_chains > 1 else None
    available = ["termini", "internal"] + (["chains"] if chain_subset else [])
    if mode is None:
        mode = str(rng.choice(available))
    if mode not in ("termini", "internal", "chains"):
        raise ValueError(f"mode {mode!r} is unknown; use termini, internal or chains")
    if mode == "chains" and not chain_subset:
        raise ValueError("no subset of chains holds 10-35 % of the residues")
    f = float(fraction if fraction is not None else rng.uniform(*INCOMPLETE_FRACTION))
    removed = np.zeros(len(table.res_chain), dtype=bool)
    detail: dict[str, Any] = {}
    if mode == "chains":
        for c in chain_subset:
            removed[table.res_chain == c] = True
        detail["chains"] = [table.chain_names[c] for c in chain_subset]
    elif mode == "termini":
        share_n = float(rng.uniform(0.2, 0.8))
        detail["n_terminal_share"] = round(share_n, 3)
        detail["trimmed"] = {}
        for c in range(n_chains):
            idx = _polymer_residues(table, c)
            k = min(int(np.ceil(f * len(idx))), len(idx) - 1)
            k_n = int(round(k * share_n))
            k_c = k - k_n
            removed[idx[:k_n]] = True
            removed[idx[len(idx) - k_c :]] = True
            if k:
                detail["trimmed"][table.chain_names[c]] = [k_n, k_c]
    else:
        start = float(rng.uniform(0.15, max(0.15, 0.9 - f)))
        detail["relative_start"] = round(start, 3)
        detail["segments"] = {}
        for c in range(n_chains):
            idx = _polymer_residues(table, c)
            k = min(int(np.ceil(f * len(idx))), len(idx) - 1)
            if k <= 0:
                continue
            s = min(int(round(start * len(idx))), len(idx) - k)
            removed[idx[s : s + k]] = True
            detail["segments"][table.chain_names[c]] = [
                table.res_label[idx[s]],
                table.res_label[idx[s + k - 1]],
            ]
    removed_atoms = removed[table.atom_residue]
    return Removal(
        removed_atoms=removed_atoms,
        removed_residues=removed,
        mode=mode,
        residue_fraction=float((removed & polymer).sum() / n_poly),
        atom_fraction=float(removed_atoms.mean()),
        detail=detail,
    )


def _chain_subset(per_chain: np.ndarray, rng: np.random.Generator) -> list[int]:
    """A random set of chains holding 10-35 % of the residues, or []."""
    total = per_chain.sum()
    lo, hi = INCOMPLETE_FRACTION
    for _ in range(20):
        chosen, share = [], 0.0
        for c in rng.permutation(len(per_chain)):
            if per_chain[c] == 0:
                continue
            if share + per_chain[c] / total <= hi:
                chosen.append(int(c))
                share += per_chain[c] / total
            if share >= lo and rng.random() < 0.5:
                break
        if lo <= share <= hi and len(chosen) < int((per_chain > 0).sum()):
            return sorted(chosen)
    return []


def remove_parts(structure: gemmi.Structure, removal: Removal) -> gemmi.Structure:
    """A copy of ``structure`` without the residues ``removal`` leaves out."""
    out = structure.clone()
    r = 0
    keep: list[list[bool]] = []
    for chain in structure[0]:
        flags = []
        for residue in chain:
            if len(residue) == 0:
                flags.append(True)
                continue
            flags.append(not removal.removed_residues[r])
            r += 1
        keep.append(flags)
    for chain, flags in zip(out[0], keep, strict=True):
        for i in range(len(flags) - 1, -1, -1):
            if not flags[i]:
                del chain[i]
    out.remove_empty_chains()
    return out


# -- conformational change ---------------------------------------------------------


@dataclass(frozen=True, eq=False)
class HingeMotion:
    """A rigid motion of one part of a model about a hinge.

    Attributes:
        moved: bool per atom (``model_atoms`` order), True for the moved part.
        transform: 4x4 rigid transform applied to the moved atoms (Å).
        angle: rotation angle, degrees.
        pivot: hinge point on the rotation axis, Å.
        axis: unit rotation axis.
        mode: ``"domain"`` (part of one chain, split at a hinge residue) or
            ``"subunits"`` (a group of chains against the rest).
        moved_fraction: share of the atoms moved.
        clashes: representative atoms (CA/P) of the moved part within 3.6 Å of the
            static part after the move that were not before.
        detail: which part moved (JSON-serialisable).
    """

    moved: np.ndarray
    transform: np.ndarray
    angle: float
    pivot: np.ndarray
    axis: np.ndarray
    mode: str
    moved_fraction: float
    clashes: int
    detail: dict[str, Any]

    def apply(self, xyz: np.ndarray) -> np.ndarray:
        """Coordinates (N, 3) after the motion: moved rows transformed, others kept."""
        out = np.array(xyz, dtype=np.float64, copy=True)
        t = self.transform
        out[self.moved] = out[self.moved] @ t[:3, :3].T + t[:3, 3]
        return out


def _perpendicular_axes(d: np.ndarray, n: int) -> list[np.ndarray]:
    helper = np.eye(3)[int(np.argmin(np.abs(d)))]
    e1 = np.cross(d, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(d, e1)
    return [
        np.cos(a) * e1 + np.sin(a) * e2 for a in np.linspace(0, 2 * np.pi, n, False)
    ]


def _domain_split(rep: np.ndarray) -> int:
    """Index k splitting a chain's residues into [0, k) and [k, n) with the fewest
    contacts between the parts relative to those within (k in 30-70 % of n)."""
    n = len(rep)
    contacts = (cKDTree(rep).sparse_distance_matrix(cKDTree(rep), _CONTACT)).toarray()
    m = (contacts > 0).astype(np.float64)
    prefix = np.zeros((n + 1, n + 1))
    prefix[1:, 1:] = m.cumsum(0).cumsum(1)

    def block(a: int, b: int, c: int, d: int) -> float:  # sum m[a:b, c:d]
        return prefix[b, d] - prefix[a, d] - prefix[b, c] + prefix[a, c]

    best, best_k = np.inf, n // 2
    for k in range(max(2, int(0.3 * n)), min(n - 1, int(0.7 * n)) + 1):
        inter = block(0, k, k, n)
        intra = np.sqrt(max(block(0, k, 0, k), 1.0) * max(block(k, n, k, n), 1.0))
        score = inter / intra
        if score < best:
            best, best_k = score, k
    return best_k


def hinge_transform(
    structure: gemmi.Structure,
    rng: np.random.Generator,
    angle: float | None = None,
    mode: str | None = None,
) -> HingeMotion:
    """Choose a domain motion: a part of the model rotated about a hinge.

    ``"domain"``: in the chain with the most polymer residues, the split residue is
    where the two sides have the fewest contacts relative to their internal ones
    (a simple domain parser, searched in 30-70 % of the chain); the smaller side
    turns about an axis through that residue's CA (so the chain stays connected).
    ``"subunits"`` (multi-chain): the chains on one side of the plane through the
    assembly's centre across its longest axis turn as one body about an axis
    through their interface (at its centre or one of its edges). In both, the axis
    is perpendicular to the line from the hinge to the moved part's centre (an
    opening/closing or twisting swing, not a scramble); of 12 axis directions (and
    3 pivots for subunits), the one with the fewest new CA clashes is taken.

    Args:
        structure: the model.
        rng: randomness.
        angle: degrees; default drawn from :data:`HINGE_ANGLE`.
        mode: ``"domain"`` or ``"subunits"``; default ``"domain"`` for one chain,
            either (at random) for several.

    Returns:
        The :class:`HingeMotion` (apply it with :func:`apply_motion`).

    Raises:
        ValueError: unknown mode, or ``"subunits"`` on a one-chain model.
    """
    table = _table(structure)
    theta = float(angle if angle is not None else rng.uniform(*HINGE_ANGLE))
    chains_with_atoms = sorted(set(table.res_chain.tolist()))
    multi = len(chains_with_atoms) > 1
    if mode is None:
        mode = str(rng.choice(["domain", "subunits"])) if multi else "domain"
    if mode not in ("domain", "subunits"):
        raise ValueError(f"mode {mode!r} is unknown; use domain or subunits")
    if mode == "subunits" and not multi:
        raise ValueError("subunits mode needs a model with several chains")
    rep = table.res_rep
    detail: dict[str, Any] = {}
    if mode == "domain":
        sizes = [
            len(_polymer_residues(table, c)) for c in range(len(table.chain_names))
        ]
        c = int(np.argmax(sizes))
        idx = _polymer_residues(table, c)
        if len(idx) < 8:
            raise ValueError("no chain is long enough for a domain motion")
        k = _domain_split(rep[idx])
        first, second = idx[:k], idx[k:]
        moved_res = second if len(second) <= len(first) else first
        hinge_res = idx[k] if moved_res is second else idx[k - 1]
        pivots = [rep[hinge_res]]
        detail = {
            "chain": table.chain_names[c],
            "hinge_residue": table.res_label[hinge_res],
            "moved_residues": [
                table.res_label[moved_res[0]],
                table.res_label[moved_res[-1]],
            ],
            "moved_side": "C-terminal" if moved_res is second else "N-terminal",
        }
        moved_r = np.zeros(len(rep), dtype=bool)
        moved_r[moved_res] = True
    else:
        centers = np.array(
            [
                table.xyz[table.res_chain[table.atom_residue] == c].mean(0)
                for c in chains_with_atoms
            ]
        )
        center = centers.mean(0)
        _, _, vt = np.linalg.svd(centers - center, full_matrices=False)
        proj = (centers - center) @ vt[0]
        order = np.argsort(proj)
        n_move = max(1, len(order) // 2)
        moving = sorted(chains_with_atoms[i] for i in order[len(order) - n_move :])
        moved_r = np.isin(table.res_chain, moving)
        static_tree = cKDTree(rep[~moved_r])
        near = static_tree.query(rep[moved_r], distance_upper_bound=_CONTACT)[0]
        interface = rep[moved_r][np.isfinite(near)]
        if len(interface) == 0:  # parts not in contact: the nearest moved atoms
            interface = rep[moved_r][np.argsort(near)[:5]]
        pivots = [interface.mean(0)]
        detail = {"chains": [table.chain_names[c] for c in moving]}
    moved_atoms = moved_r[table.atom_residue]
    static_rep = rep[~moved_r]
    static_tree = cKDTree(static_rep) if len(static_rep) else None
    moving_rep = rep[moved_r]
    before = _clash_pairs(static_tree, moving_rep)
    target = moving_rep.mean(0)
    candidates = []
    for p0 in pivots:
        d = target - p0
        d = d / max(np.linalg.norm(d), 1e-9)
        for axis in _perpendicular_axes(d, 12):
            pivs = [p0]
            if mode == "subunits":  # also the interface edges across the swing
                e = np.cross(axis, d)
                s = (interface - p0) @ e
                pivs += [interface[np.argmin(s)], interface[np.argmax(s)]]
            for p in pivs:
                rot = axis_rotation(axis, np.radians(theta))
                moved = (moving_rep - p) @ rot.T + p
                clashes = len(_clash_pairs(static_tree, moved) - before)
                candidates.append((clashes, axis, np.asarray(p, dtype=np.float64)))
    fewest = min(c[0] for c in candidates)
    best = [c for c in candidates if c[0] == fewest]
    clashes, axis, pivot = best[int(rng.integers(len(best)))]
    rot = axis_rotation(axis, np.radians(theta))
    transform = np.eye(4)
    transform[:3, :3] = rot
    transform[:3, 3] = pivot - rot @ pivot
    return HingeMotion(
        moved=moved_atoms,
        transform=transform,
        angle=theta,
        pivot=pivot,
        axis=np.asarray(axis, dtype=np.float64),
        mode=mode,
        moved_fraction=float(moved_atoms.mean()),
        clashes=int(clashes),
        detail=detail,
    )


def _clash_pairs(tree: cKDTree | None, points: np.ndarray) -> set[tuple[int, int]]:
    if tree is None or len(points) == 0:
        return set()
    hits = cKDTree(points).query_ball_tree(tree, _CLASH)
    return {(i, j) for i, js in enumerate(hits) for j in js}


def apply_motion(structure: gemmi.Structure, motion: HingeMotion) -> gemmi.Structure:
    """A copy of ``structure`` with the moved part transformed (others unchanged)."""
    out = structure.clone()
    xyz = motion.apply(model_atoms(structure)[0])
    i = 0
    for chain in out[0]:
        for residue in chain:
            for atom in residue:
                if motion.moved[i]:
                    atom.pos = gemmi.Position(*xyz[i])
                i += 1
    return out


# -- versions ----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Version:
    """One simulated deposition of a molecule.

    Attributes:
        molecule: the :class:`Molecule` name.
        group: its ground-truth group.
        condition: one of :data:`CONDITIONS`.
        params: how it was made (JSON-serialisable): always ``resolution`` (Å),
            ``voxel_size`` (Å), ``box`` (nx, ny, nz voxels), ``contour``, and for
            queries ``rotation_deg`` (angle to the reference's pose) and
            ``rotation_matrix`` (the query pose times the reference pose's
            inverse); plus what the condition changed (see :func:`make_versions`).
        map: the simulated map, contour in ``map.header["recommended_contour"]``.
        name: unique label ``<molecule>/<condition>/<n>``.
    """

    molecule: str
    group: str
    condition: str
    params: dict[str, Any]
    map: DensityMap
    name: str = ""

    @property
    def contour(self) -> float:
        """The depositor's contour level (``map.header["recommended_contour"]``)."""
        return float(self.map.header["recommended_contour"])

    def row(self) -> dict[str, Any]:
        """A JSON-serialisable description (everything but the density)."""
        return {
            "name": self.name,
            "molecule": self.molecule,
            "group": self.group,
            "condition": self.condition,
            "params": self.params,
        }


def _rotation_angle(r: np.ndarray) -> float:
    cos = (np.trace(r) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _default_voxel(resolution: float) -> float:
    return max(resolution / 3.0, 1.0)


def _default_padding(resolution: float, voxel: float) -> float:
    return 3.0 * SIGMA_FACTOR * resolution + 2.0 * voxel


def _fit_voxel(extent: float, padding: float, voxel: float) -> tuple[float, float]:
    """Shrink the padding, then coarsen the voxel, so a cube of side
    ``extent + 2 padding`` has at most ``MAX_BOX_VOXELS`` voxels."""
    side = round(MAX_BOX_VOXELS ** (1 / 3)) - 2
    if (extent + 2 * padding) / voxel > side:
        padding = max(0.0, (side * voxel - extent) / 2)
    if (extent + 2 * padding) / voxel > side:
        voxel = (extent + 2 * padding) / side
    return padding, voxel


def _simulate(
    structure: gemmi.Structure,
    rotation: np.ndarray,
    resolution: float,
    voxel: float,
    padding: float | None = None,
) -> DensityMap:
    transform = np.eye(4)
    transform[:3, :3] = rotation
    return simulate_map(
        structure,
        resolution,
        voxel_size=voxel,
        padding=padding,
        coords_transform=transform,
    )


def _into_box(
    dmap: DensityMap, shape_xyz: np.ndarray, offset_xyz: np.ndarray
) -> DensityMap:
    """Place the map in a larger box of ``shape_xyz`` voxels, its voxel [0,0,0] at
    ``offset_xyz`` (zero background), keeping physical positions."""
    shape_xyz = np.maximum(np.asarray(shape_xyz, int), np.array(dmap.shape[::-1]))
    offset_xyz = np.clip(np.asarray(offset_xyz, int), 0, shape_xyz - dmap.shape[::-1])
    after = shape_xyz - np.array(dmap.shape[::-1]) - offset_xyz
    pads = [(int(offset_xyz[a]), int(after[a])) for a in (2, 1, 0)]
    data = np.pad(dmap.data, pads, mode="constant")
    origin = np.asarray(dmap.origin) - offset_xyz * np.asarray(dmap.voxel_size)
    return replace(dmap, data=data, origin=tuple(float(o) for o in origin))


def _mass_volume(structure: gemmi.Structure) -> float:
    return float(model_atoms(structure)[2].sum()) * ANGSTROM3_PER_DALTON


def _finish(
    dmap: DensityMap,
    molecule: Molecule,
    condition: str,
    name: str,
    params: dict[str, Any],
    contour: float,
    note: str,
) -> Version:
    vs = dmap.voxel_size[0]
    params = {
        **params,
        "voxel_size": round(float(vs), 4),
        "box": [int(n) for n in dmap.shape[::-1]],
        "contour": float(contour),
    }
    params = json.loads(json.dumps(params))  # plain JSON types, fails loudly if not
    data = np.ascontiguousarray(dmap.data, dtype=np.float32)
    digest = hashlib.sha256(data.tobytes())
    digest.update(json.dumps(params, sort_keys=True).encode())
    header = dict(dmap.header)
    header["recommended_contour"] = float(contour)
    header["benchmark_version"] = name
    header["labels"] = list(header.get("labels", [])) + [
        f"SIMULATED benchmark version {name}"[:80]
    ]
    warnings = tuple(dmap.warnings) + (f"benchmark version ({condition}): {note}",)
    out = replace(
        dmap,
        data=data,
        path=f"simulated:{name}",
        sha256=digest.hexdigest(),
        header=header,
        warnings=warnings,
        simulated=True,
    )
    return Version(molecule.name, molecule.group, condition, params, out, name)


def make_versions(
    molecule: Molecule, rng: np.random.Generator, per_condition: int = 1
) -> list[Version]:
    """The reference and the query versions of a molecule (all simulated).

    The reference (gallery entry): 4-6 Å, voxel max(res/3, 1) Å, a random
    rotation, the default tight box, the mass-based contour. Queries, each under
    its own random rotation (``rotation_deg`` relative to the reference) and, unless
    the condition changes them, at the reference's resolution and voxel:

    * ``rotation``: a cubic box 10-30 Å larger than the molecule's extent with the
      molecule off-centre (``shift`` Å per axis, ``shift_norm``);
    * ``resolution``: 3-12 Å (stratified over ``per_condition``), voxel
      max(res/3, 1) Å; ``resolution_gap`` = query - reference, Å;
    * ``box``: a cubic box, tight (0-4 Å margin, density tails cut) or loose
      (20-50 Å), and a voxel of 0.8x-1.6x the reference's (within 0.8 Å .. res/2);
      ``padding``, ``voxel_ratio``;
    * ``noise``: one version per level of :data:`NOISE_LEVELS` per draw, in a
      cubic box with 15-25 Å of solvent: Gaussian noise low-pass filtered to the
      map's resolution, ``noise_sigma`` = level x ``signal_std`` (std inside the
      clean molecule); ``snr`` = signal variance / noise variance;
      ``contour_over_noise`` = clean contour / noise sigma; contour as a
      depositor would choose it on the noisy map: the level enclosing the mass
      volume, but at least 3 noise sigmas (box-edge estimate) above background;
    * ``contour``: the mass-based contour times ``contour_factor`` in 0.7-0.9 or
      1.1-1.4;
    * ``incomplete``: :func:`choose_removal` (``incomplete_mode``,
      ``residue_fraction``, ``atom_fraction``, ``removed``); contour from the
      remaining mass;
    * ``conformational``: :func:`hinge_transform` (``hinge_angle`` 15-40 deg,
      ``hinge_mode``, ``moved_fraction``, ``clashes``, ``hinge``).

    Args:
        molecule: the molecule.
        rng: all randomness: the versions are a function of its state and the
            molecule's name (so one seed gives different draws per molecule).
        per_condition: query versions per condition (noise: per level).

    Returns:
        ``[reference, *queries]`` in :data:`CONDITIONS` order.
    """
    if per_condition < 1:
        raise ValueError("per_condition must be >= 1")
    base = int(rng.integers(0, 2**62))
    key = int.from_bytes(hashlib.sha256(molecule.name.encode()).digest()[:8], "little")

    def child(condition: str, i: int) -> np.random.Generator:
        return np.random.default_rng([base, key, CONDITIONS.index(condition), i])

    structure = molecule.structure()
    xyz = model_atoms(structure)[0]
    volume = _mass_volume(structure)
    versions: list[Version] = []

    r = child("reference", 0)
    ref_res = float(r.uniform(*REFERENCE_RESOLUTION))
    ref_vs = _default_voxel(ref_res)
    ref_rot = random_rotation(r)

    def add(
        condition: str,
        tag: str,
        dmap: DensityMap,
        params: dict[str, Any],
        note: str,
        contour: float | None = None,
    ) -> None:
        """One more version, named ``<molecule>/<condition>/<tag>``; its contour
        is the simulation's mass-based one unless given."""
        level = dmap.header["recommended_contour"] if contour is None else contour
        name = f"{molecule.name}/{condition}/{tag}"
        versions.append(_finish(dmap, molecule, condition, name, params, level, note))

    ref = _simulate(structure, ref_rot, ref_res, ref_vs)
    add(
        "reference",
        "0",
        ref,
        {"resolution": round(ref_res, 3), "rotation_deg": 0.0},
        "gallery entry",
    )

    def pose(g: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        rot = random_rotation(g)
        rel = rot @ ref_rot.T
        return rot, {
            "rotation_deg": round(_rotation_angle(rel), 3),
            "rotation_matrix": np.round(rel, 6).tolist(),
        }

    def extent(rot: np.ndarray, coords: np.ndarray = xyz) -> float:
        return float(np.ptp(coords @ rot.T, axis=0).max())

    for i in range(per_condition):
        # rotation + shift in a larger cubic box
        g = child("rotation", i)
        rot, params = pose(g)
        pad0 = _default_padding(ref_res, ref_vs)
        half, vs = _fit_voxel(
            extent(rot) + 2 * pad0, float(g.uniform(10.0, 30.0)) / 2, ref_vs
        )
        dmap = _simulate(structure, rot, ref_res, vs, pad0)
        side = int(np.ceil(max(dmap.shape) + 2 * half / vs))
        room = side - np.array(dmap.shape[::-1])
        offset = np.floor(g.uniform(0, 1, 3) * (room + 1)).astype(int)
        dmap = _into_box(dmap, np.full(3, side), offset)
        shift = (offset - room / 2.0) * vs
        params.update(
            resolution=round(ref_res, 3),
            shift=np.round(shift, 3).tolist(),
            shift_norm=round(float(np.linalg.norm(shift)), 3),
        )
        add(
            "rotation",
            f"{i}",
            dmap,
            params,
            "rotated, shifted",
        )

    for i in range(per_condition):
        g = child("resolution", i)
        rot, params = pose(g)
        lo, hi = QUERY_RESOLUTION
        width = (hi - lo) / per_condition
        res = float(g.uniform(lo + i * width, lo + (i + 1) * width))
        dmap = _simulate(structure, rot, res, _default_voxel(res))
        params.update(resolution=round(res, 3), resolution_gap=round(res - ref_res, 3))
        add(
            "resolution",
            f"{i}",
            dmap,
            params,
            f"{res:.2f} A",
        )

    box_kind_offset = base % 2
    for i in range(per_condition):
        g = child("box", i)
        rot, params = pose(g)
        tight = (i + box_kind_offset) % 2 == 0
        padding = float(g.uniform(0.0, 4.0) if tight else g.uniform(20.0, 50.0))
        vs = float(np.clip(ref_vs * g.uniform(0.8, 1.6), MIN_VOXEL, ref_res / 2))
        padding, vs = _fit_voxel(extent(rot), padding, vs)
        dmap = _simulate(structure, rot, ref_res, vs, padding)
        side = max(dmap.shape)
        room = side - np.array(dmap.shape[::-1])
        dmap = _into_box(dmap, np.full(3, side), room // 2)
        params.update(
            resolution=round(ref_res, 3),
            box_kind="tight" if tight else "loose",
            padding=round(padding, 3),
            voxel_ratio=round(vs / ref_vs, 4),
        )
        add(
            "box",
            f"{i}",
            dmap,
            params,
            "box and voxel size changed",
        )

    for i in range(per_condition):
        for j, (level_name, level) in enumerate(NOISE_LEVELS.items()):
            g = child("noise", i * len(NOISE_LEVELS) + j)
            rot, params = pose(g)
            padding = float(g.uniform(15.0, 25.0))
            padding, vs = _fit_voxel(extent(rot), padding, ref_vs)
            clean = _simulate(structure, rot, ref_res, vs, padding)
            side = max(clean.shape)
            room = side - np.array(clean.shape[::-1])
            clean = _into_box(clean, np.full(3, side), room // 2)
            c0 = clean.header["recommended_contour"]
            signal_std = float(clean.data[clean.data >= c0].std())
            noise = g.standard_normal(clean.shape)
            noise = ndimage.gaussian_filter(
                noise, SIGMA_FACTOR * ref_res / vs, mode="wrap"
            )
            noise *= level * signal_std / max(float(noise.std()), 1e-12)
            data = (clean.data + noise).astype(np.float32)
            background, noise_est = background_level(data)
            by_mass = contour_for_volume(data, volume, vs**3)
            contour = max(by_mass, background + 3.0 * noise_est)
            params.update(
                resolution=round(ref_res, 3),
                noise_level=level_name,
                noise_relative=level,
                noise_sigma=float(level * signal_std),
                signal_std=signal_std,
                snr=round(1.0 / level**2, 3),
                contour_over_noise=round(float(c0) / (level * signal_std), 3),
                noise_filter="gaussian low-pass at the map resolution",
                padding=round(padding, 3),
                clean_contour=float(c0),
                contour_rule=(
                    "mass volume on the noisy map, floored at background + 3 "
                    "noise sigma"
                ),
                contour_floored=bool(contour > by_mass),
            )
            dmap = replace(clean, data=data)
            add(
                "noise",
                f"{i}-{level_name}",
                dmap,
                params,
                f"{level_name} noise ({level:g} x signal std)",
                contour=contour,
            )

    for i in range(per_condition):
        g = child("contour", i)
        rot, params = pose(g)
        lo, hi = CONTOUR_FACTORS[(i + base) % 2]
        factor = float(g.uniform(lo, hi))
        dmap = _simulate(structure, rot, ref_res, ref_vs)
        mass_contour = float(dmap.header["recommended_contour"])
        params.update(
            resolution=round(ref_res, 3),
            contour_factor=round(factor, 4),
            mass_contour=mass_contour,
        )
        add(
            "contour",
            f"{i}",
            dmap,
            params,
            f"contour x {factor:.2f}",
            contour=factor * mass_contour,
        )

    def structural(
        condition: str,
        change: Callable[
            [np.random.Generator], tuple[gemmi.Structure, dict[str, Any], str]
        ],
    ) -> None:
        """Versions of a changed structure: ``change(g)`` gives the structure, its
        params and a note; simulated at the reference's resolution."""
        for i in range(per_condition):
            g = child(condition, i)
            rot, params = pose(g)
            changed, extra, note = change(g)
            dmap = _simulate(changed, rot, ref_res, ref_vs)
            params.update(resolution=round(ref_res, 3), **extra)
            add(condition, f"{i}", dmap, params, note)

    def incomplete(g: np.random.Generator) -> tuple[gemmi.Structure, dict, str]:
        removal = choose_removal(structure, g)
        extra = {
            "incomplete_mode": removal.mode,
            "residue_fraction": round(removal.residue_fraction, 4),
            "atom_fraction": round(removal.atom_fraction, 4),
            "atoms_removed": int(removal.removed_atoms.sum()),
            "atoms_total": len(removal.removed_atoms),
            "removed": removal.detail,
        }
        note = f"{removal.mode}: {removal.residue_fraction:.0%} of residues removed"
        return remove_parts(structure, removal), extra, note

    def conformational(g: np.random.Generator) -> tuple[gemmi.Structure, dict, str]:
        motion = hinge_transform(structure, g)
        extra = {
            "hinge_angle": round(motion.angle, 3),
            "hinge_mode": motion.mode,
            "moved_fraction": round(motion.moved_fraction, 4),
            "clashes": motion.clashes,
            "hinge_pivot": np.round(motion.pivot, 3).tolist(),
            "hinge_axis": np.round(motion.axis, 5).tolist(),
            "hinge": motion.detail,
        }
        note = f"{motion.mode} hinge {motion.angle:.1f} deg"
        return apply_motion(structure, motion), extra, note

    structural("incomplete", incomplete)
    structural("conformational", conformational)
    return versions


__all__ = [
    "CONDITIONS",
    "QUERY_CONDITIONS",
    "HingeMotion",
    "Molecule",
    "Removal",
    "Version",
    "apply_motion",
    "choose_removal",
    "held_out_molecules",
    "hinge_transform",
    "make_versions",
    "remove_parts",
]
