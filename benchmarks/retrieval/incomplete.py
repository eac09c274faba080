"""The ``"incomplete"`` condition: parts of a model left out, as in a deposition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gemmi
import numpy as np

from benchmarks.retrieval.residues import polymer_residues, residue_table

#: Fraction of residues removed by the "incomplete" condition.
INCOMPLETE_FRACTION = (0.10, 0.35)


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
    table = residue_table(structure)
    n_chains = len(table.chain_names)
    polymer = table.res_polymer
    n_poly = int(polymer.sum())
    if n_poly == 0:
        raise ValueError("the model has no polymer residues")
    per_chain = np.array([len(polymer_residues(table, c)) for c in range(n_chains)])
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
            idx = polymer_residues(table, c)
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
            idx = polymer_residues(table, c)
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
