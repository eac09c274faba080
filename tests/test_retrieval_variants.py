"""Ground-truth versions for the retrieval benchmark (benchmarks/retrieval/variants
and the molecules, incomplete and conformational modules it draws on)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from benchmarks.retrieval.conformational import apply_motion, hinge_transform
from benchmarks.retrieval.incomplete import choose_removal, remove_parts
from benchmarks.retrieval.molecules import held_out_molecules
from benchmarks.retrieval.variants import CONDITIONS, NOISE_LEVELS, make_versions
from encoder.training_data import DEFAULT_TEST_GROUPS
from ingest import canonicalize, canonicalize_poses, volume_correlation
from ingest.simulate import model_atoms
from tests.conftest import DATA

CONDITION_PARAMS = {
    "reference": {"resolution"},
    "rotation": {"shift", "shift_norm"},
    "resolution": {"resolution_gap"},
    "box": {"padding", "voxel_ratio", "box_kind"},
    "noise": {"noise_level", "noise_sigma", "signal_std", "snr", "contour_floored"},
    "contour": {"contour_factor", "mass_contour"},
    "incomplete": {"incomplete_mode", "residue_fraction", "atom_fraction", "removed"},
    "conformational": {"hinge_angle", "hinge_mode", "moved_fraction", "hinge"},
}


@pytest.fixture(scope="module")
def molecules():
    mols = held_out_molecules(DATA / "models", n_synthetic=1, seed=0)
    return {m.name: m for m in mols}


@pytest.fixture(scope="module")
def versions(molecules):
    return {
        name: make_versions(mol, np.random.default_rng(7))
        for name, mol in molecules.items()
    }


def test_held_out_molecules(molecules):
    assert set(molecules) == {"5me2", "6272", "synthetic-0-0"}
    assert molecules["5me2"].group == "haemoglobin"
    assert molecules["6272"].group == "rotavirus-VP6"
    for name in ("5me2", "6272"):
        assert molecules[name].kind == "real-model"
        assert molecules[name].group in DEFAULT_TEST_GROUPS
    synth = molecules["synthetic-0-0"]
    assert synth.kind == "synthetic"
    assert synth.group not in DEFAULT_TEST_GROUPS
    assert synth.spec.seed >= 2**31  # outside the training seed range
    assert synth.structure().name.startswith("SYNTHETIC")
    again = held_out_molecules(None, n_synthetic=1, seed=0)
    assert [m.spec for m in again] == [synth.spec]


def test_every_condition_is_finite_with_contour_and_params(versions):
    for name, vs in versions.items():
        conditions = [v.condition for v in vs]
        assert conditions[0] == "reference"
        assert set(conditions) == set(CONDITIONS)
        assert conditions.count("noise") == len(NOISE_LEVELS)
        assert len({v.name for v in vs}) == len(vs)
        assert len({v.map.sha256 for v in vs}) == len(vs)
        for v in vs:
            assert v.molecule == name
            dmap = v.map
            assert dmap.simulated and dmap.path.startswith("simulated:")
            assert any("simulated" in w for w in dmap.warnings)
            assert np.isfinite(dmap.data).all()
            assert v.contour > 0
            assert v.contour == v.params["contour"]
            assert (dmap.data >= v.contour).sum() > 100
            assert json.loads(json.dumps(v.params)) == v.params
            assert CONDITION_PARAMS[v.condition] <= set(v.params)
            assert {"resolution", "voxel_size", "box", "rotation_deg"} <= set(v.params)
            assert list(dmap.shape[::-1]) == v.params["box"]
            if v.condition != "reference":
                assert 0 <= v.params["rotation_deg"] <= 180
                rel = np.asarray(v.params["rotation_matrix"])
                np.testing.assert_allclose(rel @ rel.T, np.eye(3), atol=1e-5)
            # canonicalize picks up the depositor's contour from the header
            cv = canonicalize(dmap, grid=32)
            assert cv.contour_source == "map" and cv.contour == v.contour


def test_condition_ranges(versions):
    for vs in versions.values():
        ref = vs[0].params
        assert 4.0 <= ref["resolution"] <= 6.0
        for v in vs[1:]:
            p = v.params
            if v.condition == "resolution":
                assert 3.0 <= p["resolution"] <= 12.0
                assert p["resolution_gap"] == pytest.approx(
                    p["resolution"] - ref["resolution"], abs=2e-3
                )
            elif v.condition == "contour":
                assert 0.7 <= p["contour_factor"] <= 1.4
                assert abs(p["contour_factor"] - 1) >= 0.1
                assert v.contour == pytest.approx(
                    p["contour_factor"] * p["mass_contour"], rel=1e-3
                )
            elif v.condition == "incomplete":
                assert 0.09 <= p["residue_fraction"] <= 0.36
                assert p["atom_fraction"] == pytest.approx(
                    p["atoms_removed"] / p["atoms_total"], abs=1e-4
                )
            elif v.condition == "conformational":
                assert 15.0 <= p["hinge_angle"] <= 40.0
                assert 0 < p["moved_fraction"] < 1
            elif v.condition == "noise":
                assert p["noise_sigma"] == pytest.approx(
                    NOISE_LEVELS[p["noise_level"]] * p["signal_std"]
                )
            else:
                assert p["resolution"] == ref["resolution"]


def test_deterministic(molecules, versions):
    again = make_versions(molecules["6272"], np.random.default_rng(7))
    for a, b in zip(versions["6272"], again, strict=True):
        assert a.name == b.name and a.params == b.params
        np.testing.assert_array_equal(a.map.data, b.map.data)
    other = make_versions(molecules["6272"], np.random.default_rng(8))
    assert other[0].params != versions["6272"][0].params


@pytest.mark.parametrize("mode", ["termini", "internal", "chains"])
def test_incomplete_removes_recorded_fraction(molecules, mode):
    structure = molecules["5me2"].structure()
    removal = choose_removal(structure, np.random.default_rng(3), mode=mode)
    assert removal.mode == mode
    assert 0.09 <= removal.residue_fraction <= 0.36
    part = remove_parts(structure, removal)
    n_before = len(model_atoms(structure)[0])
    n_after = len(model_atoms(part)[0])
    assert n_after == n_before - int(removal.removed_atoms.sum())
    assert 1 - n_after / n_before == pytest.approx(removal.atom_fraction, abs=1e-9)
    assert 0.05 <= removal.atom_fraction <= 0.4
    if mode == "chains":
        gone = set(removal.detail["chains"])
        assert gone and gone.isdisjoint(c.name for c in part[0])
    with pytest.raises(ValueError):
        choose_removal(
            molecules["6272"].structure(), np.random.default_rng(0), "chains"
        )


@pytest.mark.parametrize(
    ("name", "mode"),
    [("6272", "domain"), ("5me2", "subunits"), ("synthetic-0-0", None)],
)
def test_hinge_moves_only_the_moved_part(molecules, name, mode):
    structure = molecules[name].structure()
    motion = hinge_transform(structure, np.random.default_rng(5), mode=mode)
    assert 15.0 <= motion.angle <= 40.0
    assert 0 < motion.moved.sum() < len(motion.moved)
    rot, shift = motion.transform[:3, :3], motion.transform[:3, 3]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    angle = np.degrees(np.arccos((np.trace(rot) - 1) / 2))
    assert angle == pytest.approx(motion.angle, abs=1e-6)
    # the hinge angle is in degrees, turning right-handed about the axis
    expected = Rotation.from_rotvec(np.radians(motion.angle) * motion.axis)
    np.testing.assert_allclose(rot, expected.as_matrix(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(rot @ motion.pivot + shift, motion.pivot, atol=1e-9)
    before = model_atoms(structure)[0]
    after = model_atoms(apply_motion(structure, motion))[0]
    np.testing.assert_array_equal(after[~motion.moved], before[~motion.moved])
    np.testing.assert_allclose(
        after[motion.moved], before[motion.moved] @ rot.T + shift, atol=1e-3
    )
    np.testing.assert_allclose(motion.apply(before), after, atol=1e-3)
    displacement = np.linalg.norm(after - before, axis=1)[motion.moved]
    assert displacement.max() > 3.0  # a visible motion
    if motion.mode == "domain":  # one contiguous stretch of one chain
        idx = np.flatnonzero(motion.moved)
        assert idx[-1] - idx[0] + 1 == len(idx)


def test_same_molecule_correlates(versions):
    def best(ref, dmap):
        return max(volume_correlation(ref, c.values) for c in canonicalize_poses(dmap))

    ref = canonicalize(versions["5me2"][0].map).values
    same = [v for v in versions["5me2"] if v.condition == "rotation"][0]
    assert same.params["resolution"] == versions["5me2"][0].params["resolution"]
    corr_same = best(ref, same.map)
    assert corr_same > 0.9
    for other in ("6272", "synthetic-0-0"):
        rotated = [v for v in versions[other] if v.condition == "rotation"][0]
        assert best(ref, rotated.map) < corr_same - 0.1


def test_variants_module_keeps_the_benchmark_names():
    from benchmarks.retrieval import conformational, incomplete, molecules, variants

    for module in (conformational, incomplete, molecules):
        for name in set(variants.__all__) & set(vars(module)):
            assert getattr(variants, name) is getattr(module, name)
    assert {"held_out_molecules", "choose_removal", "hinge_transform"} <= set(
        variants.__all__
    )
