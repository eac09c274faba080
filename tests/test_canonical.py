"""canonicalize: shape, contour choice, pose stability under rotation, inverse map."""

from __future__ import annotations

import numpy as np
import pytest

from ingest import (
    SURFACE_LEVEL,
    DensityMap,
    EntryMetadata,
    MapFormatError,
    canonicalize,
    canonicalize_poses,
    random_rotation,
    read_map,
    rotate_map,
    simulate_map,
    to_original_frame,
    volume_correlation,
)

#: Stated bound: a rotated (and resampled) copy of a map canonicalizes to a volume
#: whose Pearson correlation with the original's canonical volume is at least this,
#: taking the best over the copy's candidate poses when the pose is ambiguous.
POSE_BOUND = 0.95


def test_shape_dtype_and_value_range(map_path):
    cv = canonicalize(read_map(map_path("emd_1832")), grid=32)
    assert cv.values.shape == (32, 32, 32) and cv.values.dtype == np.float32
    inside = cv.values[cv.values > 0]
    assert inside.min() >= SURFACE_LEVEL and inside.max() <= 1.0
    assert cv.values[0].max() == 0  # the molecule does not touch the box
    assert np.isclose(np.linalg.det(cv.rotation), 1.0)  # never mirrored


def test_contour_precedence(map_path):
    dmap = read_map(map_path("emd_21457_seg"))
    assert canonicalize(dmap, grid=16).contour_source == "auto"
    meta = EntryMetadata(emdb_id="EMD-21457", contour_level=0.4)
    cv = canonicalize(dmap, grid=16, metadata=meta)
    assert (cv.contour, cv.contour_source) == (0.4, "header")
    cv = canonicalize(dmap, contour=0.6, grid=16, metadata=meta)
    assert (cv.contour, cv.contour_source) == (0.6, "user")


def test_higher_contour_gives_smaller_volume(map_path):
    dmap = read_map(map_path("emd_21457_seg"))
    assert (
        canonicalize(dmap, 0.6, grid=16).size.volume
        < canonicalize(dmap, 0.3, grid=16).size.volume
    )


def test_nothing_above_contour_is_a_clear_error(map_path):
    with pytest.raises(MapFormatError, match="no density at or above the contour"):
        canonicalize(read_map(map_path("emd_1832")), contour=1e6, grid=16)


def _best_correlation(ref, moved, contour):
    poses = canonicalize_poses(moved, contour=contour, grid=ref.grid)
    return max(volume_correlation(ref.values, p.values) for p in poses)


@pytest.mark.parametrize("label", ["emd_1832", "emd_5625"])
def test_real_map_pose_is_stable_under_rotation(map_path, rng, label):
    dmap = read_map(map_path(label))
    ref = canonicalize(dmap, grid=32)
    for _ in range(2):
        moved = rotate_map(dmap, random_rotation(rng))
        assert _best_correlation(ref, moved, ref.contour) >= POSE_BOUND


def test_symmetric_real_map_candidates_cover_rotation(map_path, rng):
    # EMD-6824 (mucolipin, C4): two equal principal spreads, so the pose is
    # ambiguous and the in-plane angle comes from the 4-fold harmonic.
    dmap = read_map(map_path("emd_6824"))
    ref = canonicalize(dmap, grid=32)
    assert ref.pose_ambiguous and "4-fold" in ref.ambiguity
    moved = rotate_map(dmap, random_rotation(rng))
    assert _best_correlation(ref, moved, ref.contour) >= POSE_BOUND


def test_poses_that_swap_axes_are_rearranged_not_resampled(map_path):
    # EMD-6824's 16 candidate poses are two renderings and their signed axis
    # permutations: each volume equals the pose rendered on its own
    from ingest.canonical import QUERY_MARGIN, _prepare, _render

    dmap = read_map(map_path("emd_6824"))
    poses = canonicalize_poses(dmap, grid=32)
    assert len(poses) > 2
    prep = _prepare(dmap, None, 32, None, QUERY_MARGIN)
    for pose in poses:
        assert np.array_equal(pose.values, _render(prep, pose.rotation, 32))


def test_simulated_map_pose_is_stable_under_rotation(model_path, rng):
    ref = canonicalize(simulate_map(model_path("5me2"), resolution=6.0), grid=32)
    for _ in range(2):
        transform = np.eye(4)
        transform[:3, :3] = random_rotation(rng)
        transform[:3, 3] = rng.normal(scale=30.0, size=3)
        moved = simulate_map(model_path("5me2"), 6.0, coords_transform=transform)
        assert _best_correlation(ref, moved, None) >= POSE_BOUND


def test_size_features_are_rotation_invariant(model_path, rng):
    a = canonicalize(simulate_map(model_path("6272"), 5.0), grid=16).size
    transform = np.eye(4)
    transform[:3, :3] = random_rotation(rng)
    b = canonicalize(
        simulate_map(model_path("6272"), 5.0, coords_transform=transform), grid=16
    ).size
    assert b.radius_of_gyration == pytest.approx(a.radius_of_gyration, rel=0.02)
    assert b.volume == pytest.approx(a.volume, rel=0.05)
    assert np.allclose(b.extents, a.extents, rtol=0.05)


def test_physical_size_separates_small_from_large(model_path):
    small = simulate_map(model_path("6272"), 6.0)
    large = simulate_map(model_path("5me2"), 6.0)
    assert (
        canonicalize(large, grid=16).size.volume
        > 2 * canonicalize(small, grid=16).size.volume
    )


def test_inverse_transform_puts_volume_back(map_path):
    dmap = read_map(map_path("emd_1832"))
    cv = canonicalize(dmap, grid=64)
    back = to_original_frame(cv.values, cv, dmap)
    assert back.shape == dmap.shape
    original = dmap.data >= cv.contour
    restored = back >= SURFACE_LEVEL / 2  # the 0 -> 0.5 step, after interpolation
    iou = (original & restored).sum() / (original | restored).sum()
    assert iou >= 0.8


def test_world_index_round_trip(map_path):
    cv = canonicalize(read_map(map_path("emd_5625")), grid=32)
    idx = np.array([[0.0, 0.0, 0.0], [31.0, 5.5, 12.0], [15.5, 15.5, 15.5]])
    assert np.allclose(cv.world_to_index(cv.index_to_world(idx)), idx)
    assert np.allclose(cv.index_to_world(np.full(3, 15.5)), cv.center)


def test_anisotropic_voxels_give_the_same_volume(model_path):
    # Resample a simulated map onto anisotropic voxels: physical coordinates are
    # used throughout, so the canonical volume must not change much.
    from scipy import ndimage

    from ingest import DensityMap

    iso = simulate_map(model_path("5me2"), 6.0, voxel_size=1.0)
    factors = (1.0, 1.0 / 1.5, 1.0 / 2.0)  # z, y, x zoom -> voxel (2, 1.5, 1) Å
    data = ndimage.zoom(iso.data, factors, order=1)
    aniso = DensityMap(
        data=data.astype(np.float32),
        voxel_size=(2.0, 1.5, 1.0),
        origin=iso.origin,
        path="aniso",
        sha256="",
        header=dict(iso.header),
        simulated=True,
    )
    a = canonicalize(iso, grid=32)
    assert _best_correlation(a, aniso, a.contour) >= 0.9


def _simulated(data: np.ndarray, name: str) -> DensityMap:
    """A SIMULATED map of ``data`` in 1 Å voxels."""
    return DensityMap(
        data.astype(np.float32),
        (1.0, 1.0, 1.0),
        (0.0, 0.0, 0.0),
        f"simulated:{name}",
        name,
        simulated=True,
    )


def _skewed_blob(spreads: tuple[float, float, float]) -> DensityMap:
    """A lopsided Gaussian blob (Å spreads along x, y, z) with a bump that fixes
    every axis' sign, in a 48^3 box of 1 Å voxels."""
    z, y, x = np.mgrid[-24:24, -24:24, -24:24].astype(np.float64)
    sx, sy, sz = spreads
    data = np.exp(-0.5 * ((x / sx) ** 2 + (y / sy) ** 2 + (z / sz) ** 2))
    data += 0.6 * np.exp(
        -0.5 * (((x - sx) / 2) ** 2 + ((y - sy) / 2) ** 2 + ((z - sz) / 2) ** 2)
    )
    return _simulated(data, "blob")


def test_query_poses_cover_a_nearly_ambiguous_stored_pose():
    # spreads 10 and 9.2 Å: a relative variance gap of about 0.15, above
    # EIGEN_GAP (0.1), so the stored pose takes the principal axes as they are;
    # a query also tries the in-plane spins that a wider threshold would give
    from ingest.canonical import EIGEN_GAP, QUERY_MARGIN

    dmap = _skewed_blob((10.0, 9.2, 5.0))
    stored = canonicalize(dmap, contour=0.3, grid=32)
    exact = canonicalize_poses(dmap, contour=0.3, grid=32, margin=1.0)
    query = canonicalize_poses(dmap, contour=0.3, grid=32)
    assert EIGEN_GAP < 0.15 < EIGEN_GAP * QUERY_MARGIN
    assert len(exact) == len(stored.candidates) < len(query)
    # the stored map's own candidates come first, in order
    for a, b in zip(exact, query, strict=False):
        assert np.allclose(a.rotation, b.rotation)
    assert np.allclose(query[0].values, stored.values)


def _near_sphere(
    rotation: np.ndarray | None = None, lobe_z: float = 10.5, cap: float = 0.4
) -> DensityMap:
    """A SIMULATED four-fold assembly: four equal lobes of z spread ``lobe_z`` Å in
    a square (x/y spreads equal; z spread a few % smaller at the default) and a cap
    on +z, in a 56^3 box of 1 Å voxels, optionally rotated about the box centre."""
    z, y, x = np.mgrid[-28:28, -28:28, -28:28].astype(np.float64)
    pts = np.stack([x, y, z], axis=-1)
    if rotation is not None:
        pts = pts @ rotation  # density at R^T p: the assembly rotated by R
    data = cap * np.exp(-0.5 * ((pts - (0, 0, 6.0)) ** 2).sum(-1) / 4.0**2)
    for cx, cy in ((9.0, 0), (-9.0, 0), (0, 9.0), (0, -9.0)):
        d = (pts - (cx, cy, 0.0)) / (4.0, 4.0, lobe_z)
        data += np.exp(-0.5 * (d**2).sum(-1))
    return _simulated(data, "near-sphere")


def test_near_spherical_map_spins_about_its_most_distinct_axis(rng):
    # x'/y' spreads are equal (their directions in that plane are arbitrary) and
    # z' is within EIGEN_GAP of them: the in-plane angle must be fixed by a spin
    # about z', not about x' (whose direction a rotation or resampling changes)
    ref = canonicalize(_near_sphere(), contour=0.3, grid=32)
    assert "x'/y'" in ref.ambiguity and "all three spreads" in ref.ambiguity
    for _ in range(3):
        moved = _near_sphere(random_rotation(rng))
        assert _best_correlation(ref, moved, 0.3) >= POSE_BOUND


def test_flat_four_fold_map_orients_its_axis_by_its_skew(rng):
    # an oblate C4-like assembly: z' (the smallest spread, the symmetry axis) is
    # clear and lopsided, but x'/y' are degenerate, so their signs are arbitrary;
    # z' must take its sign from its own skew, not from x' cross y'
    def flat(rotation=None):
        return _near_sphere(rotation, lobe_z=3.0, cap=1.0)

    ref = canonicalize(flat(), contour=0.3, grid=32)
    assert "x'/y'" in ref.ambiguity and "z' sign" not in ref.ambiguity
    for _ in range(4):
        assert _best_correlation(ref, flat(random_rotation(rng)), 0.3) >= POSE_BOUND


def test_query_spins_finely_when_the_in_plane_harmonic_is_weak():
    # y'/z' degenerate, and the strongest in-plane harmonic (3-fold, |c3| = 0.1) is
    # weak: the stored pose takes its angle from it, but a query, whose weak
    # harmonic may point elsewhere, also tries spins at most 45 degrees apart
    from ingest.canonical import _candidate_poses

    phi, x = np.meshgrid(
        np.linspace(0, 2 * np.pi, 360, endpoint=False), np.arange(-5, 6)
    )
    phi, x = phi.ravel(), 4.0 * x.ravel()
    proj = np.stack([x, 3 * np.cos(phi), 3 * np.sin(phi)], axis=1)
    weights = 1 + 0.2 * np.cos(3 * phi)
    cov = (proj * weights[:, None]).T @ proj / weights.sum()
    evals = np.sort(np.linalg.eigvalsh(cov))[::-1]
    skew = np.array([0.5, 0.5, 0.5])

    def voxels():  # in the principal frame (base = identity), one slab
        return iter([(proj.T, weights)])

    stored, why = _candidate_poses(np.eye(3), evals, skew, voxels)
    query, _ = _candidate_poses(np.eye(3), evals, skew, voxels, margin=3.0)
    assert "3-fold" in why and len(stored) == 3
    assert len(query) == 8 and np.allclose(query[0], stored[0])
    for rot in query:
        assert np.isclose(np.linalg.det(rot), 1.0)


def test_voxels_on_the_spin_axis_do_not_turn_the_pose():
    # y'/z' degenerate with a weak 4-fold harmonic; voxels on the x' axis have no
    # angle, and the rounding residue of their coordinates (1e-13 Å, which changes
    # with the order of summation) must not decide the in-plane angle
    from ingest.canonical import _spin_degenerate_plane

    phi = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    ring = np.stack([np.zeros_like(phi), 5 * np.cos(phi), 5 * np.sin(phi)])
    weights = 1 + 0.05 * np.cos(4 * (phi - 0.3))
    frames = []
    for seed in (1, 2):
        axis = np.zeros((3, 40))
        axis[0] = np.linspace(-5, 5, 40)
        axis[1:] = 1e-13 * np.random.default_rng(seed).normal(size=(2, 40))
        rel = np.concatenate([ring, axis], axis=1)
        w = np.concatenate([weights, np.full(40, 2.0)])
        frame, m, _ = _spin_degenerate_plane(
            np.eye(3), lambda rel=rel, w=w: iter([(rel, w)]), 0, on_axis=1e-7
        )
        assert m == 4
        frames.append(frame)
    assert np.allclose(frames[0], frames[1], atol=1e-12)
    # the angle is the 4-fold pattern's: 0.3 rad
    assert np.isclose(np.arctan2(frames[0][2, 1], frames[0][1, 1]), 0.3)
