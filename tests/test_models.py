"""Atomic models (ingest.models): reading, checks, metadata, assemblies, the
element fix, and the splat the simulation rests on."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from ingest.discover import ModelEntry, find_entries
from ingest.models import (
    check_resolutions,
    is_model_file,
    model_key,
    read_model_file,
    simulate_model,
)
from ingest.simulate import ModelError, splat

#: REMARK 350 of a two-copy assembly: the identity and a copy turned 180° about z
#: and moved by SHIFT Å along x.
BIOMT = """REMARK 350 BIOMOLECULE: 1
REMARK 350 APPLY THE FOLLOWING TO CHAINS: A
REMARK 350   BIOMT1   1  1.000000  0.000000  0.000000        0.00000
REMARK 350   BIOMT2   1  0.000000  1.000000  0.000000        0.00000
REMARK 350   BIOMT3   1  0.000000  0.000000  1.000000        0.00000
REMARK 350   BIOMT1   2 -1.000000  0.000000  0.000000 {shift:>14.5f}
REMARK 350   BIOMT2   2  0.000000 -1.000000  0.000000        0.00000
REMARK 350   BIOMT3   2  0.000000  0.000000  1.000000        0.00000
"""


def with_assembly(model_path, tmp_path, shift: float):
    """6272.pdb (one chain, no REMARK 350) given a two-copy assembly."""
    path = tmp_path / f"dimer_{int(shift)}.pdb"
    path.write_text(BIOMT.format(shift=shift) + model_path("6272").read_text())
    return path


def one_line(err: pytest.ExceptionInfo, path) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and "; " in msg
    return msg


def test_model_file_names():
    for name in ("a.pdb", "a.ent", "a.cif", "a.mmcif", "A.PDB.GZ", "a.cif.gz"):
        assert is_model_file(name), name
    for name in ("a.map", "a.mrc.gz", "a.pdb.bz2", "a.xml", "pdb"):
        assert not is_model_file(name), name


def test_metadata_from_the_file(model_path):
    model = read_model_file(model_path("5me2"))
    info = model.info
    assert info.pdb_id == "5ME2"
    assert "HAEMOGLOBIN" in info.title
    assert info.organism == "HOMO SAPIENS"
    assert info.method == "ELECTRON MICROSCOPY"
    assert info.resolution == 3.2
    assert (info.n_chains, info.n_residues) == (4, 566)
    assert info.assembly == "1"  # REMARK 350: the four chains
    assert len(model.xyz) == info.n_atoms == 4468  # no water, no hydrogen
    bare = read_model_file(model_path("6272")).info
    assert bare.pdb_id is None and bare.title is None and bare.assembly is None
    assert (bare.n_chains, bare.n_residues) == (1, 177)


def test_first_assembly_is_expanded(model_path, tmp_path):
    path = with_assembly(model_path, tmp_path, 80.0)
    au = read_model_file(path, assembly=False)
    both = read_model_file(path)
    assert both.info.assembly == "1" and au.info.assembly is None
    assert len(both.xyz) == 2 * len(au.xyz)
    assert both.entry_key(6.0) != au.entry_key(6.0)  # stored as different maps
    assert (both.info.n_chains, both.info.n_residues) == (2, 354)
    # the copy is the first turned about z and moved 80 Å along x
    copy = both.xyz[len(au.xyz) :]
    assert np.allclose(copy[:, 0], 80.0 - au.xyz[:, 0], atol=1e-3)
    assert np.allclose(copy[:, 2], au.xyz[:, 2], atol=1e-3)


def test_absurd_assembly_fails_before_expanding(model_path, tmp_path):
    path = with_assembly(model_path, tmp_path, 9000.0)
    with pytest.raises(ModelError) as err:
        read_model_file(path)
    msg = one_line(err, path)
    assert "spreads over" in msg and "--asymmetric-unit" in msg
    assert len(read_model_file(path, assembly=False).xyz) == 1401


def test_too_many_atoms(model_path, tmp_path):
    path = with_assembly(model_path, tmp_path, 80.0)
    read_model_file(path, max_atoms=2 * 1401)
    with pytest.raises(ModelError) as err:
        read_model_file(path, max_atoms=2000)  # the assembly has 2802
    assert "expands to 2,802 atoms" in one_line(err, path)
    with pytest.raises(ModelError) as err:
        read_model_file(model_path("5me2"), max_atoms=100)  # 400 kB of text
    assert "--max-model-atoms" in one_line(err, model_path("5me2"))


@pytest.mark.parametrize(
    "name, text, problem",
    [
        (
            "water.pdb",
            "HETATM    1  O   HOH A   1       1.000   2.000   3.000  1.00  0.00"
            "           O\nEND\n",
            "only ligands or water",
        ),
        (
            "ligand.pdb",
            "HETATM    1 ZN    ZN A 301       1.000   2.000   3.000  1.00  0.00"
            "          ZN\nEND\n",
            "only ligands or water",
        ),
        ("empty.pdb", "HEADER    NOTHING\nEND\n", "no atoms"),
        (
            "hydrogen.pdb",
            "ATOM      1  H   GLY A   1       1.000   2.000   3.000  1.00  0.00"
            "           H\nEND\n",
            "no heavy atom",
        ),
        ("garbage.cif", "this is not a CIF file\n", "cannot be read as mmCIF"),
        ("empty.cif", "", "cannot be read as mmCIF"),
    ],
)
def test_bad_models_one_line(tmp_path, name, text, problem):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ModelError) as err:
        read_model_file(path)
    assert problem in one_line(err, path)


def test_elements_from_names_when_the_column_is_missing(model_path, tmp_path):
    """Molecular-dynamics style: names from column 13, no element column (so
    arginine's NE would read as neon): the masses come out as with elements."""
    lines = []
    for line in model_path("6272").read_text().splitlines():
        if line.startswith(("ATOM", "HETATM")):
            line = line[:12] + line[12:16].strip().ljust(4) + line[16:76]
        lines.append(line)
    path = tmp_path / "md.pdb"
    path.write_text("\n".join(lines) + "\n")
    good = read_model_file(model_path("6272"))
    md = read_model_file(path)
    assert set(np.unique(md.atomic_number)) <= {6, 7, 8, 16}
    assert md.mass.sum() == pytest.approx(good.mass.sum(), rel=1e-9)


def test_gzipped_reads_the_same(model_path, tmp_path):
    gz = tmp_path / "5me2.pdb.gz"
    with open(model_path("5me2"), "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    plain, packed = read_model_file(model_path("5me2")), read_model_file(gz)
    assert packed.info == plain.info
    assert np.array_equal(packed.xyz, plain.xyz)


def test_simulated_map_is_labelled_and_keyed_by_resolution(model_path):
    model = read_model_file(model_path("6272"))
    at6, at8 = simulate_model(model, 6.0), simulate_model(model, 8.0)
    assert at6.simulated and "SIMULATED" in at6.header["labels"][0]
    assert at6.sha256 == model_key(model.sha256, 6.0) != at8.sha256
    assert at6.voxel_size == (2.0, 2.0, 2.0)
    assert simulate_model(model, 6.0).sha256 == at6.sha256  # same file, same key


def test_splat_equals_trilinear_weights(rng):
    xyz = rng.uniform(2, 9, size=(50, 3))
    weights = rng.uniform(1, 8, size=50)
    grid = splat(xyz, weights, np.zeros(3), 1.0, (12, 11, 10))
    expected = np.zeros((12, 11, 10))
    for p, w in zip(xyz, weights, strict=True):
        b = np.floor(p).astype(int)
        t = p - b
        for dz, dy, dx in np.ndindex(2, 2, 2):
            f = (t[0] if dx else 1 - t[0]) * (t[1] if dy else 1 - t[1])
            f *= t[2] if dz else 1 - t[2]
            expected[b[2] + dz, b[1] + dy, b[0] + dx] += w * f
    assert np.allclose(grid, expected)
    assert grid.sum() == pytest.approx(weights.sum())


def test_resolutions_checked():
    assert check_resolutions([6, 4, 6.0, 8]) == (6.0, 4.0, 8.0)
    for bad in ([], [0.1], [200]):
        with pytest.raises(ValueError, match="resolution"):
            check_resolutions(bad)


def test_discovery_finds_models_only_when_asked(model_path, map_path, tmp_path):
    shutil.copy(model_path("6272"), tmp_path / "6272.pdb")
    shutil.copy(map_path("emd_1832"), tmp_path / "emd_1832.map")
    (tmp_path / "notes.txt").write_text("x")
    maps_only = list(find_entries(tmp_path))
    both = list(find_entries(tmp_path, models=True))
    assert [e.path.name for e in maps_only] == ["emd_1832.map"]
    assert [type(e).__name__ for e in both] == ["ModelEntry", "MapEntry"]
    assert list(find_entries(tmp_path / "6272.pdb", models=True)) == [
        ModelEntry(tmp_path / "6272.pdb")
    ]
