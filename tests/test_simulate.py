"""simulate_map: molmap-style Gaussian density from atomic models (gemmi)."""

from __future__ import annotations

import numpy as np
import pytest

from ingest import ModelError, read_model, simulate_map
from ingest.simulate import SIGMA_FACTOR, model_atoms


def test_labelled_simulated(model_path):
    dmap = simulate_map(model_path("6272"), resolution=5.0)
    assert dmap.simulated
    assert dmap.path == "simulated:6272.pdb"
    assert dmap.header["labels"][0].startswith("SIMULATED from 6272.pdb at 5 A")
    assert "simulated from an atomic model" in dmap.warnings
    assert dmap.voxel_size == pytest.approx((5 / 3,) * 3)


def test_density_peaks_at_atoms_and_mass_contour_encloses_volume(model_path):
    structure = read_model(model_path("6272"))
    xyz, _, mass = model_atoms(structure)
    dmap = simulate_map(structure, resolution=4.0, voxel_size=1.0)
    # every atom lies inside the box, and density there is high
    idx = np.round((xyz - np.array(dmap.origin)) / 1.0).astype(int)
    at_atoms = dmap.data[idx[:, 2], idx[:, 1], idx[:, 0]]
    assert np.median(at_atoms) > np.percentile(dmap.data, 90)
    contour = dmap.header["recommended_contour"]
    enclosed = (dmap.data >= contour).sum() * 1.0
    assert enclosed == pytest.approx(mass.sum() * 1.21, rel=0.02)


def test_integral_is_total_atomic_number(model_path):
    structure = read_model(model_path("6272"))
    _, z, _ = model_atoms(structure)
    dmap = simulate_map(structure, resolution=6.0, voxel_size=1.5)
    assert dmap.data.sum() == pytest.approx(z.sum(), rel=1e-3)


def test_gaussian_width_follows_resolution(tmp_path):
    pdb = tmp_path / "one.pdb"
    pdb.write_text(
        "ATOM      1  C   ALA A   1       0.000   0.000   0.000  1.00 "
        "0.00           C\nEND\n"
    )
    dmap = simulate_map(pdb, resolution=8.0, voxel_size=0.5)
    line = dmap.data[dmap.data.shape[0] // 2, dmap.data.shape[1] // 2]
    x = np.arange(line.size) * 0.5
    w = line / line.sum()
    mean = (w * x).sum()
    sigma = np.sqrt((w * (x - mean) ** 2).sum())
    assert sigma == pytest.approx(SIGMA_FACTOR * 8.0, rel=0.03)


def test_sub_assembly_and_bad_chains(model_path):
    full = simulate_map(model_path("5me2"), 8.0)
    chains = [c.name for c in read_model(model_path("5me2"))[0]]
    part = simulate_map(model_path("5me2"), 8.0, chains=chains[:1])
    assert part.data.sum() < 0.5 * full.data.sum()
    with pytest.raises(ModelError, match="no atoms"):
        simulate_map(model_path("5me2"), 8.0, chains=["nope"])


def test_unreadable_model(tmp_path):
    bad = tmp_path / "x.cif"
    bad.write_text("data_x\n_atom_site.garbage\nloop_\n")
    with pytest.raises(ModelError):
        simulate_map(bad, 5.0)
    with pytest.raises(ModelError, match="no such file"):
        simulate_map(tmp_path / "missing.pdb", 5.0)
    with pytest.raises(ValueError, match="resolution"):
        simulate_map(tmp_path / "missing.pdb", 0.0)
