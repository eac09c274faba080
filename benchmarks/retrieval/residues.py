"""Residue-level view of an atomic model, shared by the structural conditions."""

from __future__ import annotations

from dataclasses import dataclass

import gemmi
import numpy as np

from ingest.simulate import model_atoms


@dataclass(frozen=True, eq=False)
class ResidueTable:
    """Per-atom and per-residue arrays of model 1, in ``model_atoms`` order."""

    xyz: np.ndarray  # (N, 3)
    mass: np.ndarray  # (N,)
    atom_residue: np.ndarray  # (N,) global residue index
    res_chain: np.ndarray  # (R,) chain index
    res_polymer: np.ndarray  # (R,) bool
    res_rep: np.ndarray  # (R, 3): CA, else P, else the first atom
    res_label: list[str]  # "A:153"
    chain_names: list[str]


def residue_table(structure: gemmi.Structure) -> ResidueTable:
    """The :class:`ResidueTable` of model 1 of ``structure`` (empty residues skipped).

    Args:
        structure: the atomic model.

    Returns:
        Atom arrays in ``ingest.simulate.model_atoms`` order, and per residue its
        chain, whether it is polymer, its representative atom and its label.
    """
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
    return ResidueTable(
        xyz=xyz,
        mass=mass,
        atom_residue=np.asarray(atom_residue, dtype=np.int64),
        res_chain=np.asarray(res_chain, dtype=np.int64),
        res_polymer=np.asarray(res_polymer, dtype=bool),
        res_rep=np.asarray(res_rep, dtype=np.float64).reshape(-1, 3),
        res_label=res_label,
        chain_names=names,
    )


def polymer_residues(table: ResidueTable, chain: int) -> np.ndarray:
    """Indices (into the table's residues) of the polymer residues of ``chain``."""
    return np.flatnonzero((table.res_chain == chain) & table.res_polymer)
