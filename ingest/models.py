"""Atomic models (PDB, mmCIF) as searchable maps: read, check, describe, simulate.

A model file becomes one **simulated** map per resolution asked for:

1. :func:`read_model_file` reads it with gemmi (``.pdb``, ``.ent``, ``.cif``,
   ``.mmcif``, each optionally ``.gz``), keeps its first model, drops waters and
   hydrogens, and expands its **first biological assembly** when the file defines
   one (``gemmi.make_assembly``; mmCIF ``_pdbx_struct_assembly``, PDB REMARK 350),
   else keeps the asymmetric unit. Its metadata (PDB id, title, organism,
   experimental method, chains, residues) comes from the file.
2. :func:`simulate_model` calls :func:`ingest.simulate.simulate_map` at each
   resolution, with voxels of a third of the resolution, coarsened for a very
   large assembly so that the simulated box stays under :data:`MAX_SIDE` voxels
   a side (the canonical volume is 64^3: finer voxels would be averaged away).

What cannot be simulated is refused before anything large is allocated, with one
line that names the file and the fix (:class:`~ingest.simulate.ModelError`): an
unreadable file, no atoms, only ligands or water, more atoms than the limit (the
file's size is checked before it is read, the assembly's atom count before it is
expanded), or an assembly whose copies would spread over an absurd box.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import gemmi
import numpy as np

from ingest.mapio import DensityMap
from ingest.simulate import SIGMA_FACTOR, ModelError, model_atoms, simulate_atoms

MODEL_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")
#: Default resolution a model is simulated at, Å.
DEFAULT_MODEL_RESOLUTION = 6.0
#: Most atoms (after the assembly is expanded) a model may have. The largest
#: assemblies in the PDB (virus capsids) have a few million.
MAX_MODEL_ATOMS = 5_000_000
#: Largest extent of an assembly, Å: larger than the largest known virus capsids,
#: so a larger box means wrong coordinates or assembly operators.
MAX_MODEL_EXTENT = 5_000.0
#: Bytes of a coordinate file per atom, at least (an 81-byte PDB ATOM line, a
#: shorter mmCIF row): bounds the atoms a file can hold before it is read.
_MIN_BYTES_PER_ATOM = 60
#: Compressed coordinate files shrink about this much at most.
_GZIP_RATIO = 12
#: Largest side of a simulated box, voxels (coarser voxels beyond it).
MAX_SIDE = 320


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says about itself (``None`` when it does not say).

    Attributes:
        pdb_id: the PDB id (``_entry.id`` or the HEADER record), upper case.
        title: ``_struct.title`` / TITLE.
        organism: the source organism(s), ``"; "``-joined when several.
        method: the experimental method (``ELECTRON MICROSCOPY``, ...).
        resolution: the deposited resolution, Å.
        n_chains: polymer chains simulated (assembly copies included).
        n_residues: polymer residues simulated.
        n_atoms: atoms simulated (no water, no hydrogen).
        assembly: the biological assembly simulated (its name), or ``None`` for
            the asymmetric unit.
    """

    pdb_id: str | None = None
    title: str | None = None
    organism: str | None = None
    method: str | None = None
    resolution: float | None = None
    n_chains: int = 0
    n_residues: int = 0
    n_atoms: int = 0
    assembly: str | None = None


@dataclass(frozen=True, eq=False)
class AtomicModel:
    """A model ready to simulate: its atoms (the assembly when expanded) and
    what the file says.

    Attributes:
        path: the file.
        info: its metadata.
        sha256: content hash of the file's bytes.
        xyz: float64 ``[n, 3]`` atom coordinates, Å.
        atomic_number: float64 ``[n]``.
        mass: float64 ``[n]`` atomic masses, Da.
        assembly: the first biological assembly was asked for (else the
            asymmetric unit was).
    """

    path: Path
    info: ModelInfo
    sha256: str
    xyz: np.ndarray
    atomic_number: np.ndarray
    mass: np.ndarray
    assembly: bool = True

    def entry_key(self, resolution: float) -> str:
        """The content key of the map simulated at ``resolution``."""
        return model_key(self.sha256, resolution, self.assembly)


def is_model_file(path: str | Path) -> bool:
    """True when the file name ends in a model suffix (optionally ``.gz``)."""
    name = Path(path).name.lower().removesuffix(".gz")
    return name.endswith(MODEL_SUFFIXES)


def model_key(file_sha256: str, resolution: float, assembly: bool = True) -> str:
    """The stored content key of a model simulated at a resolution: the same
    file at the same resolution (from its assembly, or with ``assembly=False``
    its asymmetric unit) is never stored twice; at another resolution it is."""
    what = f"{file_sha256}|model|{resolution:g}"
    if not assembly:
        what += "|asymmetric-unit"
    return hashlib.sha256(what.encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (as stored, compressed or not)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_resolutions(resolutions: Sequence[float]) -> tuple[float, ...]:
    """Distinct resolutions, in the order given.

    Raises:
        ValueError: none, or one out of 0.5-100 Å.
    """
    out: list[float] = []
    for r in resolutions:
        if not 0.5 <= float(r) <= 100:
            raise ValueError(f"model resolution {r} Å is out of range; use 0.5-100 Å")
        if float(r) not in out:
            out.append(float(r))
    if not out:
        raise ValueError("no model resolution given; give one or more, e.g. 6")
    return tuple(out)


def _text(value: str | None) -> str | None:
    value = (value or "").strip().strip("'\"").strip()
    return value if value and value not in ("?", ".") else None


def _join(values: list[str]) -> str | None:
    seen: list[str] = []
    for v in values:
        v = _text(v)
        if v and v.upper() not in (s.upper() for s in seen):
            seen.append(v)
    return "; ".join(seen) if seen else None


def _organism(path: Path, doc: gemmi.cif.Document | None) -> str | None:
    """Source organisms: mmCIF ``_entity_src_gen`` / ``_entity_src_nat`` /
    ``_pdbx_entity_src_syn``, PDB ``SOURCE ... ORGANISM_SCIENTIFIC``."""
    if doc is not None:
        block = doc.sole_block()
        tags = (
            "_entity_src_gen.pdbx_gene_src_scientific_name",
            "_entity_src_nat.pdbx_organism_scientific",
            "_pdbx_entity_src_syn.organism_scientific",
        )
        return _join([v for t in tags for v in block.find_values(t)])
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    text = []
    with opener(path, "rt", errors="replace") as fh:
        for line in fh:
            if line.startswith(("ATOM", "HETATM", "MODEL")):
                break  # the header is over
            if line.startswith("SOURCE"):
                text.append(line[10:80].rstrip())
    found = re.findall(r"ORGANISM_SCIENTIFIC:\s*([^;]+)", " ".join(text))
    return _join([" ".join(f.split()) for f in found])


def _polymer(residue: gemmi.Residue) -> bool:
    """A residue of a protein or nucleic-acid chain: its entity says so, or it
    is an ATOM record (not HETATM), or a tabulated amino acid or nucleotide
    (entities are guessed when the file has no SEQRES, and not always well)."""
    if residue.entity_type == gemmi.EntityType.Water:
        return False
    if residue.entity_type == gemmi.EntityType.Polymer or residue.het_flag == "A":
        return True
    kind = gemmi.find_tabulated_residue(residue.name)
    return kind is not None and (kind.is_amino_acid() or kind.is_nucleic_acid())


def _check_size(path: Path, max_atoms: int) -> None:
    """Refuse a file too large to hold at most ``max_atoms`` atoms, unread."""
    size = path.stat().st_size
    if path.name.lower().endswith(".gz"):
        size *= _GZIP_RATIO
    if size > max_atoms * _MIN_BYTES_PER_ATOM * 4:
        raise ModelError(
            path,
            f"{size / 2**20:.0f} MB of coordinates is over the {max_atoms:,}-atom "
            "limit",
            "raise --max-model-atoms if this machine has the memory, or split the "
            "model into parts",
        )


def _corners(pts: np.ndarray) -> np.ndarray:
    """The 8 corners ``[8, 3]`` of the bounding box of points ``[n, 3]``."""
    box = np.stack([pts.min(0), pts.max(0)])
    return np.array(
        [[box[i, 0], box[j, 1], box[k, 2]] for i, j, k in np.ndindex(2, 2, 2)]
    )


def _assembly_size(
    structure: gemmi.Structure, assembly: gemmi.Assembly
) -> tuple[int, float]:
    """Atoms and largest extent (Å) of an assembly, computed without expanding
    it: each generator's atoms, and their bounding box under each operator."""
    model = structure[0]
    n_atoms, lo, hi = 0, np.full(3, np.inf), np.full(3, -np.inf)
    for gen in assembly.generators:
        chains, subchains = set(gen.chains), set(gen.subchains)
        xyz = [
            (a.pos.x, a.pos.y, a.pos.z)
            for chain in model
            for res in chain
            if chain.name in chains or res.subchain in subchains
            for a in res
        ]
        if not xyz:
            continue
        corners = _corners(np.asarray(xyz))
        for op in gen.operators:
            mat = np.array(op.transform.mat.tolist())
            moved = corners @ mat.T + np.array(op.transform.vec.tolist())
            lo, hi = np.minimum(lo, moved.min(0)), np.maximum(hi, moved.max(0))
            n_atoms += len(xyz)
    return n_atoms, float(np.max(hi - lo)) if n_atoms else 0.0


#: Elements of standard amino acids and nucleotides.
_POLYMER_ELEMENTS = frozenset({"H", "D", "C", "N", "O", "S", "P", "Se"})


def _fix_elements(model: gemmi.Model) -> None:
    """Elements of standard residues from their atom names when the file's
    are wrong. A PDB file without the element column (molecular dynamics
    output) leaves gemmi to guess from names written from column 13, so that
    arginine's ``NE`` reads as neon and ``HG`` as mercury; in an amino acid or
    nucleotide (CHARMM's ``HSD`` included) every atom is one of
    :data:`_POLYMER_ELEMENTS`, named by its first letter."""
    for chain in model:
        for res in chain:
            if not _polymer(res):
                continue  # a ligand may hold any element (metals, halides)
            for atom in res:
                if atom.element.name not in _POLYMER_ELEMENTS:
                    letters = [c for c in atom.name if c.isalpha()]
                    if letters:
                        atom.element = gemmi.Element(letters[0])


def _keep_present(assembly: gemmi.Assembly, model: gemmi.Model) -> list[str]:
    """Drop from the assembly's generators the chains (and subchains) the model
    lacks (a file cut down to some chains keeps its header's assembly); returns
    the chain names dropped."""
    chains = {chain.name for chain in model}
    subchains = {res.subchain for chain in model for res in chain}
    absent: list[str] = []
    for gen in assembly.generators:
        absent += [c for c in gen.chains if c not in chains and c not in absent]
        gen.chains = [c for c in gen.chains if c in chains]
        gen.subchains = [c for c in gen.subchains if c in subchains]
    return absent


def _read(path: Path) -> tuple[gemmi.Structure, gemmi.cif.Document | None]:
    """The structure, and the mmCIF document when the file is mmCIF."""
    name = path.name.lower().removesuffix(".gz")
    try:
        if name.endswith((".cif", ".mmcif")):
            doc = gemmi.cif.read(str(path))
            return gemmi.make_structure_from_block(doc.sole_block()), doc
        return gemmi.read_pdb(str(path)), None
    except (RuntimeError, ValueError, OSError, IndexError) as err:
        problem = " ".join(str(err).replace(str(path), "").lstrip(":").split())
        raise ModelError(
            path,
            f"cannot be read as {'mmCIF' if name.endswith(('cif', 'mmcif')) else 'PDB'}"
            f" ({problem[:200]})",
            "check that the file is a complete PDB or mmCIF file (re-download it)",
        ) from None


def read_model_file(
    path: str | Path, max_atoms: int = MAX_MODEL_ATOMS, assembly: bool = True
) -> AtomicModel:
    """Read a model file, checked, with its first biological assembly expanded.

    Args:
        path: ``.pdb``, ``.ent``, ``.cif`` or ``.mmcif``, optionally ``.gz``.
        max_atoms: most atoms allowed (after the assembly is expanded).
        assembly: expand the first biological assembly when the file defines
            one (else, or ``False``: the asymmetric unit).

    Returns:
        The model: first model only, no waters, no hydrogens.

    Raises:
        ModelError: no such file, unreadable, no atoms, no polymer (only ligands
            or water), over ``max_atoms`` atoms, or an assembly over
            :data:`MAX_MODEL_EXTENT`. One line naming the file and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(path, "no such file", "check the path")
    _check_size(path, max_atoms)
    structure, doc = _read(path)
    if len(structure) == 0 or structure[0].count_atom_sites() == 0:
        raise ModelError(
            path, "holds no atoms", "give a PDB/mmCIF file with atom coordinates"
        )
    structure.setup_entities()
    del structure[1:]  # the first model only (NMR ensembles)
    model = structure[0]
    _fix_elements(model)
    if not any(_polymer(r) for chain in model for r in chain):
        raise ModelError(
            path,
            "holds only ligands or water, no protein or nucleic-acid chain",
            "give the model of a macromolecule",
        )
    name = None
    if assembly and structure.assemblies:
        first = structure.assemblies[0]
        absent = _keep_present(first, model)
        n_atoms, extent = _assembly_size(structure, first)
        if n_atoms == 0:
            pass  # generators name no chain of this file: keep the asymmetric unit
        elif n_atoms > max_atoms:
            raise ModelError(
                path,
                f"biological assembly {first.name} expands to {n_atoms:,} atoms, "
                f"over the {max_atoms:,}-atom limit",
                "raise --max-model-atoms if this machine has the memory, or ingest "
                "the asymmetric unit (--asymmetric-unit)",
            )
        elif extent > MAX_MODEL_EXTENT:
            raise ModelError(
                path,
                f"biological assembly {first.name} spreads over {extent:,.0f} Å, "
                f"over {MAX_MODEL_EXTENT:,.0f} Å",
                "check the assembly operators (REMARK 350 / _pdbx_struct_oper_list) "
                "or ingest the asymmetric unit (--asymmetric-unit)",
            )
        else:
            expanded = gemmi.make_assembly(
                first, model, gemmi.HowToNameCopiedChain.AddNumber
            )
            structure.add_model(expanded)
            del structure[0]
            name = first.name
            if absent:
                name += f" (partial: chains {', '.join(absent)} not in the file)"
    structure.remove_waters()
    structure.remove_hydrogens()
    structure.remove_empty_chains()
    n_atoms = structure[0].count_atom_sites()
    if n_atoms == 0:
        raise ModelError(
            path,
            "holds only hydrogens and water, no heavy atom to simulate",
            "give a model with its heavy atoms",
        )
    if n_atoms > max_atoms:
        raise ModelError(
            path,
            f"{n_atoms:,} atoms, over the {max_atoms:,}-atom limit",
            "raise --max-model-atoms if this machine has the memory, or split the "
            "model into parts",
        )
    xyz, atomic_number, mass = model_atoms(structure)
    span = float(np.max(xyz.max(0) - xyz.min(0)))
    if span > MAX_MODEL_EXTENT:
        raise ModelError(
            path,
            f"its atoms spread over {span:,.0f} Å, over {MAX_MODEL_EXTENT:,.0f} Å",
            "check the coordinates (a misplaced atom or chain)",
        )
    info = _info(path, structure, doc, name)
    return AtomicModel(
        path, info, file_sha256(path), xyz, atomic_number, mass, assembly
    )


def _info(
    path: Path,
    structure: gemmi.Structure,
    doc: gemmi.cif.Document | None,
    assembly: str | None,
) -> ModelInfo:
    """The metadata of a model read by :func:`read_model_file`."""
    meta = dict(structure.info)
    polymer = [r for chain in structure[0] for r in chain if _polymer(r)]
    chains = {chain.name for chain in structure[0] for r in chain if _polymer(r)}
    pdb_id = _text(meta.get("_entry.id", ""))
    return ModelInfo(
        pdb_id=pdb_id.upper() if pdb_id else None,
        title=_text(meta.get("_struct.title", "")),
        organism=_organism(path, doc),
        method=_text(meta.get("_exptl.method", "")),
        resolution=float(structure.resolution) if structure.resolution > 0 else None,
        n_chains=len(chains),
        n_residues=len(polymer),
        n_atoms=structure[0].count_atom_sites(),
        assembly=assembly,
    )


def simulate_model(model: AtomicModel, resolution: float) -> DensityMap:
    """The map simulated from a model at one resolution, labelled simulated.

    Voxels are a third of the resolution (at least 0.5 Å), coarsened so that
    the box stays under :data:`MAX_SIDE` voxels a side. The map's ``sha256`` is
    :meth:`AtomicModel.entry_key` (file content, resolution, assembly or not) and
    its ``path``
    reads ``simulated:<file name>``.

    Raises:
        ValueError: resolution out of 0.5-100 Å.
    """
    span = float(np.max(model.xyz.max(0) - model.xyz.min(0)))
    pad = 2 * (3.0 * SIGMA_FACTOR * resolution)
    voxel = max(resolution / 3.0, 0.5, (span + pad) / (MAX_SIDE - 8))
    dmap = simulate_atoms(
        model.xyz,
        model.atomic_number,
        model.mass,
        resolution,
        voxel,
        name=str(model.path),
    )
    header = dict(dmap.header, pdb_id=model.info.pdb_id, assembly=model.info.assembly)
    return replace(dmap, sha256=model.entry_key(resolution), header=header)
