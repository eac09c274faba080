"""SYNTHETIC protein-like assemblies: training data for the density-map autoencoder.

Everything this module makes is **synthetic**, not an experimental or predicted
model: the structure name starts with ``"SYNTHETIC"`` and its title
(``structure.info["_struct.title"]``) is the :func:`describe` label. Density maps
simulated from them (``ingest.simulate_map``) are flagged ``simulated`` as usual.

Geometry (an ideal-geometry approximation, not a refined model):

* **CA traces.** Alpha helices are ideal: 3.6 residues per turn, 1.5 Å rise per
  residue, CA radius 2.3 Å (CA(i)-CA(i+1) 3.83 Å, CA(i)-CA(i+3) 5.05 Å). Strands
  are straight with 3.3 Å rise and a 0.94 Å pleat along the sheet normal (so
  CA-CA is exactly 3.8 Å), paired in sheets 4.8 Å apart, residues in register.
  Loops, termini and inter-domain linkers are CA paths with 3.8 Å steps, started
  on an outward arc with random wiggle and relaxed (a few dozen vectorised
  constraint sweeps) until the virtual angle is at least ~82° (CA(i)-CA(i+2) >=
  5.0 Å) and every other CA is at least 4.3 Å away.
* **Backbone atoms.** Each peptide (C, O of residue i and N of residue i+1) is the
  ideal trans peptide (N-CA 1.458, CA-C 1.525, C-N 1.329, C=O 1.231 Å) in the
  orientation about the CA(i)-CA(i+1) line that an ideal alpha helix (phi -57.8,
  psi -47) or beta strand (phi -120, psi 130) built with those bond lengths and
  angles has (helix O(i)-N(i+4) comes out at 2.97 Å); loop peptides take the helix
  or the strand orientation from their CA virtual angle, so loop N-CA-C angles are
  only roughly ideal (~116-120°). CB comes from N, CA, C by the ideal tetrahedral
  rule. Helices are listed in ``structure.helices``.
* **Residues.** GLY (more often in loops) and, with ``side_chains``, ALA, SER, MET
  and LYS whose side chains are ideal zigzags (1.53 Å, ~110°) along CA-CB; the
  residues pointing into their domain (``BURIED_NEIGHBOURS``) are the short ones.
  Without side chains, ALA and GLY only. Only CAs are kept clash-free: side chains
  are not packed and may overlap other atoms (harmless for density at 4-10 Å).
* **Domains** (2-12 elements, all axes along one direction, alternating up and
  down, consecutive elements adjacent so loops are short): ``"alpha"`` helix
  bundles on a hexagonal lattice 10 Å apart; ``"beta"`` one antiparallel sheet
  (up to 3 strands) or a two-sheet sandwich 10 Å apart; ``"alpha/beta"`` a
  parallel sheet between two helix layers 10 Å away (strand, helix, strand, ...);
  ``"alpha+beta"`` an antiparallel sheet with helix layers on one side. Helices
  get a small random tilt and shift (reduced if they would clash); element
  lengths are balanced so the domain is about as tall as it is wide, which keeps
  the radius of gyration near the empirical 2.2 N^0.38 Å.
* **Assemblies.** A chain is its domains joined by linkers: each domain is put
  against the ones before, along a direction and at a rotation that keep the
  linker short and clear, at the smallest shift (bisection) that keeps every CA
  ``CONTACT`` (5 Å) from theirs. Hetero chains are packed the same way. Symmetric
  copies are rigid images of one chain at the smallest radius (then ring
  separation for Dn) that keeps all copies ``CONTACT`` apart; a helical assembly
  without a given rise takes, over rises on a 1 Å grid, the one whose smallest
  clash-free radius gives the least volume per subunit. Frames:
  ``"cyclic"``: axis z; ``"dihedral"``: axis z and a two-fold along x;
  ``"helical"``: axis z, chain k+1 is chain k turned by ``twist`` about z and
  raised by ``rise``; ``"monomer"``/``"hetero"``: centred at the origin.

Everything random derives from ``AssemblySpec.seed``, so a spec always builds the
same coordinates.

The parts: :mod:`~encoder.training_data.spec` (the spec and its planning),
:mod:`~encoder.training_data.traces` (element and loop CA traces),
:mod:`~encoder.training_data.domains` (one domain),
:mod:`~encoder.training_data.assembly` (chains and symmetric copies),
:mod:`~encoder.training_data.atoms` (atoms from CA traces) and
:mod:`~encoder.training_data.geometry` (small vector helpers); this module builds
the gemmi Structure.
"""

from __future__ import annotations

import math
import string
from dataclasses import replace

import gemmi
import numpy as np

from encoder.training_data.assembly import build_chain, place, symmetric_operators
from encoder.training_data.atoms import ATOM_NAMES, RESIDUES, residue_atoms
from encoder.training_data.spec import (
    ATOMS_PER_RESIDUE,
    KINDS,
    ORDER_RANGE,
    SYNTHETIC_PREFIX,
    AssemblySpec,
    count_residues,
    helical_twist,
    per_turn,
    plan_domains,
    spec_rng,
)
from encoder.training_data.traces import SS_HELIX

__all__ = ["build_assembly", "describe", "random_spec"]


def describe(spec: AssemblySpec) -> str:
    """A short label, e.g. ``"SYNTHETIC C4 assembly, 4x2 domains, 812 residues"``.

    Args:
        spec: the assembly.

    Returns:
        ``"SYNTHETIC <kind>, <copies>x<domains> domains, <n> residues"`` (monomers
        and hetero complexes say ``"monomer, 2 domains"``, ``"hetero 3-mer, 6
        domains"``); ``n`` is exact (:func:`count_residues`).

    Raises:
        ValueError: as :func:`count_residues`.
    """
    n = count_residues(spec)
    k, d = spec.order, spec.n_domains
    if spec.kind == "monomer":
        what = f"monomer, {d} domain{'s' * (d > 1)}"
    elif spec.kind == "cyclic":
        what = f"C{k} assembly, {k}x{d} domains"
    elif spec.kind == "dihedral":
        what = f"D{k} assembly, {2 * k}x{d} domains"
    elif spec.kind == "helical":
        what = (
            f"helical assembly (twist {helical_twist(spec):.1f} deg), {k}x{d} domains"
        )
    else:
        what = f"hetero {k}-mer, {k * d} domains"
    return f"{SYNTHETIC_PREFIX} {what}, {n} residues"


def random_spec(rng: np.random.Generator, max_atoms: int = 20_000) -> AssemblySpec:
    """A varied spec: small single domains up to large symmetric complexes.

    Args:
        rng: source of randomness (the spec's own seed is drawn from it).
        max_atoms: cap on the atoms of one structure (estimated with
            ``ATOMS_PER_RESIDUE``, an upper bound).

    Returns:
        A valid :class:`AssemblySpec`.

    Raises:
        ValueError: ``max_atoms`` below what a 40-residue domain needs.
    """
    side_chains = bool(rng.random() < 0.85)
    per_res = ATOMS_PER_RESIDUE[side_chains]
    if max_atoms < 40 * per_res:
        raise ValueError(f"max_atoms {max_atoms} is too small; use at least 300")
    kind = str(rng.choice(KINDS, p=[0.3, 0.22, 0.16, 0.16, 0.16]))
    fold = rng.choice(3, p=[0.35, 0.25, 0.4])
    hf = float(
        [rng.uniform(0.8, 1.0), rng.uniform(0.0, 0.2), rng.uniform(0.3, 0.7)][fold]
    )
    top = 320 if fold == 0 else (160 if fold == 1 else 260)
    n_res = int(round(math.exp(rng.uniform(math.log(50), math.log(top)))))
    n_domains = int(rng.choice([1, 2, 3], p=[0.6, 0.28, 0.12]))
    order = {
        "monomer": 1,
        "cyclic": int(rng.integers(2, 9)),
        "dihedral": int(rng.integers(2, 7)),
        "helical": int(rng.integers(8, 31)),
        "hetero": int(rng.integers(2, 5)),
    }[kind]
    twist = None
    if kind == "helical":
        twist = round(float(rng.choice([-1, 1]) * 360.0 / per_turn(rng, order)), 2)
    spec = AssemblySpec(
        kind=kind,
        order=order,
        n_domains=n_domains,
        n_residues=n_res,
        helix_fraction=round(hf, 3),
        twist=twist,
        side_chains=side_chains,
        seed=int(rng.integers(0, 2**31)),
    )
    # over the cap: fewer domains, then smaller ones, then fewer subunits
    lo_order = 8 if kind == "helical" else ORDER_RANGE[kind][0]
    while count_residues(spec) * per_res > max_atoms:
        if spec.n_domains > 1:
            spec = replace(spec, n_domains=spec.n_domains - 1)
        elif spec.n_residues > 80:
            spec = replace(spec, n_residues=int(spec.n_residues * 0.85))
        elif spec.order > lo_order:
            spec = replace(spec, order=spec.order - 1)
        elif spec.n_residues > 40:
            spec = replace(spec, n_residues=max(40, int(spec.n_residues * 0.85)))
        else:
            spec = replace(spec, kind="monomer", order=1, twist=None)
            break
    return spec


def _chain_name(i: int) -> str:
    """A, B, ..., Z, then AA, AB, ..."""
    letters = string.ascii_uppercase
    return letters[i] if i < 26 else letters[i // 26 - 1] + letters[i % 26]


def build_assembly(spec: AssemblySpec) -> gemmi.Structure:
    """Build the SYNTHETIC assembly ``spec`` describes (deterministic per spec).

    Args:
        spec: what to build; see :class:`AssemblySpec` and :func:`random_spec`.

    Returns:
        A one-model gemmi Structure named ``"SYNTHETIC-..."`` with one chain per
        subunit (A, B, ...; AA, AB, ... after Z), residues GLY/ALA/SER/MET/LYS with
        N, CA, C, O (CB and pseudo side chains) and elements set; its title
        (``info["_struct.title"]``) is :func:`describe`'s label. Symmetry frames
        are in the module docs.

    Raises:
        ValueError: a spec that cannot be built (too few residues for the
            elements, an all-beta domain that is too large, a helical rise too
            small for the subunit).
    """
    chains = [build_chain(spec, plan, k) for k, plan in enumerate(plan_domains(spec))]
    helices = [_runs(ss == SS_HELIX) for _, ss in chains]
    atoms = [
        residue_atoms(ca, ss, spec.side_chains, spec_rng(spec, 4, k))
        for k, (ca, ss) in enumerate(chains)
    ]
    eye = (np.eye(3), np.zeros(3))
    if spec.kind == "monomer":
        placed = [(0, *eye)]
    elif spec.kind == "hetero":
        rng = spec_rng(spec, 5)
        placed = [(0, *eye)]
        cluster = chains[0][0]
        for k in range(1, len(chains)):
            body = chains[k][0]
            pts, _, rot, shift = place(cluster, body, rng)
            placed.append((k, rot, shift))
            cluster = np.vstack([cluster, pts])
        center = cluster.mean(axis=0)
        placed = [(k, rot, shift - center) for k, rot, shift in placed]
    else:
        twist = helical_twist(spec)
        placed = [
            (0, rot, shift)
            for rot, shift in symmetric_operators(chains[0][0], spec, twist)
        ]
    structure = gemmi.Structure()
    structure.name = f"{SYNTHETIC_PREFIX}-{_short_kind(spec)}-seed{spec.seed}"
    structure.info["_struct.title"] = describe(spec)
    model = gemmi.Model("1")
    elements = {e: gemmi.Element(e) for e in "CNOS"}
    for index, (k, rot, shift) in enumerate(placed):
        kind, xyz = atoms[k]
        xyz = xyz @ rot.T + shift
        chain = gemmi.Chain(_chain_name(index))
        start = 0
        for number, code in enumerate(kind, start=1):
            name = RESIDUES[code]
            residue = gemmi.Residue()
            residue.name = name
            residue.seqid = gemmi.SeqId(number, " ")
            residue.entity_type = gemmi.EntityType.Polymer
            residue.het_flag = "A"
            for atom_name in ATOM_NAMES[name]:
                x, y, z = xyz[start]
                start += 1
                atom = gemmi.Atom()
                atom.name = atom_name
                atom.element = elements[atom_name[0]]
                atom.pos = gemmi.Position(x, y, z)
                atom.occ = 1.0
                atom.b_iso = 30.0
                residue.add_atom(atom)
            chain.add_residue(residue)
        for first, last in helices[k]:
            helix = gemmi.Helix()
            helix.start = gemmi.AtomAddress(
                chain.name, gemmi.SeqId(first + 1, " "), RESIDUES[kind[first]], "CA"
            )
            helix.end = gemmi.AtomAddress(
                chain.name, gemmi.SeqId(last + 1, " "), RESIDUES[kind[last]], "CA"
            )
            helix.pdb_helix_class = gemmi.Helix.HelixClass.RAlpha
            helix.length = last - first + 1
            structure.helices.append(helix)
        model.add_chain(chain)
    structure.add_model(model)
    structure.setup_entities()
    return structure


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(first, last)`` index of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(
        zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True)
    )


def _short_kind(spec: AssemblySpec) -> str:
    return {
        "monomer": "monomer",
        "cyclic": f"C{spec.order}",
        "dihedral": f"D{spec.order}",
        "helical": f"helical{spec.order}",
        "hetero": f"hetero{spec.order}",
    }[spec.kind]
