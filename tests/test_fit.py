"""Rotational fit: the rotation grid, scoring, and the re-scored search."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.transform import Rotation

from swan_index import fit as fit_module
from swan_index.fit import FitQuery, apply_fit, fit_query, rotation_grid
from swan_index.prepare import shrink
from swan_index.query import Query, search
from swan_index.ranking import SIZE_WEIGHT, SearchOptions
from swan_index.store import Store
from swan_index.turn import grid_sample_turn


def _query(code, volumes, rg=None) -> Query:
    """A query of a map already encoded, with the volumes the fit turns."""
    return Query(code, rg, volumes, "memory")


def _angles_to_nearest(probes: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Per probe rotation, the angle (degrees) to the nearest rotation of grid."""
    trace = np.einsum("pij,gij->pg", probes, grid)
    cos = np.clip((trace.max(axis=1) - 1.0) / 2.0, -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def test_rotation_grid_is_proper_deterministic_and_even():
    grid = rotation_grid(2000)
    assert grid.shape == (2000, 3, 3)
    eye = np.einsum("nij,nkj->nik", grid, grid)
    assert np.allclose(eye, np.eye(3), atol=1e-5)
    assert np.allclose(np.linalg.det(grid), 1.0, atol=1e-5)
    assert np.array_equal(grid, rotation_grid(2000))
    probes = Rotation.random(500, random_state=0).as_matrix()
    spiral = _angles_to_nearest(probes, grid)
    rand = _angles_to_nearest(probes, Rotation.random(2000, random_state=1).as_matrix())
    # no rotation is far from the grid, and the grid leaves smaller holes than
    # as many random rotations do
    assert spiral.max() < 20.0
    assert spiral.max() < rand.max()
    with pytest.raises(ValueError, match="at least one"):
        rotation_grid(0)


def _turned(volume: np.ndarray, seed: int) -> np.ndarray:
    """``volume`` turned about its centre by a random rotation (trilinear)."""
    rot = Rotation.random(random_state=seed).as_matrix()
    c = (np.array(volume.shape) - 1) / 2.0
    return ndimage.affine_transform(volume, rot, offset=c - rot @ c, order=1)


def test_fit_finds_a_map_turned_out_of_its_pose(samples):
    prepared, _ = samples
    previews = np.stack([p.preview() for p in prepared])
    for i, seed in ((0, 1), (3, 2)):
        turned = _turned(prepared[i].volumes[0], seed)
        best = FitQuery(turned).score(previews)
        as_is = FitQuery(turned, rotations=0).score(previews)
        assert int(np.argmax(best)) == i
        assert best[i] > 0.85
        # it is the rotation search that finds it back
        assert best[i] > as_is[i] + 0.15
        assert np.all(best >= as_is - 1e-6)


def test_fit_checks_its_input():
    with pytest.raises(ValueError, match=r"\[P, G, G, G\]"):
        FitQuery(np.zeros((4, 4)))
    fit = FitQuery(np.random.default_rng(0).random((32, 32, 32)), rotations=10)
    assert len(fit) == 11
    assert fit.score(np.zeros((0, 32, 32, 32))).shape == (0,)
    with pytest.raises(ValueError, match="multiple of 16"):
        fit.score(np.zeros((1, 12, 12, 12)))
    # an encoder of another grid: no fit rather than a failed search
    with pytest.raises(ValueError, match="multiple of 16"):
        FitQuery(np.zeros((24, 24, 24)))
    assert fit_query(np.zeros((24, 24, 24))) is None
    assert fit_query(None) is None
    # previews of two grids score alike
    vol = np.random.default_rng(1).random((32, 32, 32)).astype(np.float32)
    small = vol.reshape(16, 2, 16, 2, 16, 2).mean(axis=(1, 3, 5))
    both = FitQuery(vol, rotations=10).score([vol, small])
    assert both[0] == pytest.approx(both[1], abs=1e-5)


def test_search_rescores_the_best_hits_by_the_fit(store, samples, encoder):
    prepared, _ = samples
    turned = _turned(prepared[2].volumes[0], 3)
    code = encoder.encode(turned[None])
    rg = prepared[2].record.rg
    plain = store.search(code, k=6, rg=rg)
    query = _query(code, turned, rg)
    hits = search(store, query, k=6, options=SearchOptions(fit_top=6))
    assert hits[0].id == 3  # ids follow the order of the samples
    assert all("fit" in h.scores for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    by_id = {h.id: h for h in plain}
    for h in hits:  # half the learned score, half the fit, the same size term
        learned = by_id[h.id]
        shape = learned.score + SIZE_WEIGHT * abs(learned.scores.get("size", 0.0))
        want = (
            0.5 * shape
            + 0.5 * h.scores["fit"]
            - SIZE_WEIGHT * abs(h.scores.get("size", 0.0))
        )
        assert h.score == pytest.approx(want, abs=1e-5)
    only = search(store, query, k=6, options=SearchOptions(fit_top=6, fit_weight=1))
    assert only[0].score == pytest.approx(
        only[0].scores["fit"] - SIZE_WEIGHT * abs(only[0].scores.get("size", 0.0)),
        abs=1e-5,
    )
    # only the fit_top best of the vector search are re-scored and returned
    two = search(store, query, k=2, options=SearchOptions(fit_top=2))
    assert {h.id for h in two} == {h.id for h in plain[:2]}
    with pytest.raises(ValueError, match="fit_weight"):
        search(store, query, k=2, options=SearchOptions(fit_weight=1.5))
    # the fit turned off: the vector search alone
    off = search(store, query, k=6, options=SearchOptions(fit_top=0))
    assert [(h.id, h.score) for h in off] == [(h.id, h.score) for h in plain]


def test_search_in_stages_matches_one_call(store, samples, encoder):
    """rank -> apply_fit -> hits (how a server runs the fit outside its lock)
    gives the hits of one search; an entry deleted between the stages is
    replaced by the next best, not returned without its metadata."""
    prepared, _ = samples
    turned = _turned(prepared[2].volumes[0], 3)
    code = encoder.encode(turned[None])
    fit = FitQuery(turned)
    rg = prepared[2].record.rg
    once = search(store, _query(code, turned, rg), k=4)
    ranking = store.rank(code, k=4, rg=rg, fit=True)
    assert set(ranking.previews) == {int(i) for i in ranking.cand}  # all 6
    apply_fit(ranking, fit)
    apply_fit(ranking, fit)  # applied once
    staged = store.hits(ranking)
    assert [(h.id, h.score, h.scores) for h in staged] == [
        (h.id, h.score, h.scores) for h in once
    ]
    full = search(store, _query(code, turned, rg), k=6)
    ranking = store.rank(code, k=4, rg=rg, fit=True)
    with pytest.raises(ValueError, match="apply_fit"):
        store.hits(ranking)
    apply_fit(ranking, fit)
    store.delete([once[1].id])
    after = store.hits(ranking)  # the next best takes the deleted one's place
    assert [h.id for h in after] == [h.id for h in full if h.id != once[1].id][:4]
    assert [h.rank for h in after] == [1, 2, 3, 4]
    assert all(h.entry["emdb_id"] for h in after)


def test_entries_without_previews_keep_the_learned_score(tmp_path, encoder, samples):
    prepared, code = samples
    st = Store.open(tmp_path / "bare", encoder=encoder.info)
    st.add(code, [p.record for p in prepared])
    try:
        query = code[1:2]
        plain = st.search(query, k=6)
        fitted = search(st, _query(query, prepared[1].volumes[0]), k=6)
        assert [(h.id, h.score) for h in fitted] == [(h.id, h.score) for h in plain]
        assert not any("fit" in h.scores for h in fitted)
    finally:
        st.close()


def test_fit_tries_small_shifts(samples):
    """A map whose centre moved (as when a part is missing) fits better when its
    best rotations are also tried shifted by a voxel of the fit grid."""
    prepared, _ = samples
    previews = np.stack([p.preview() for p in prepared])
    for i in (0, 4):  # moved by one voxel of the fit grid along two axes
        moved = ndimage.shift(_turned(prepared[i].volumes[0], 5), (4, 0, -4), order=1)
        fit = FitQuery(moved)
        shifted, fixed = fit.score(previews), fit.score(previews, shift=0)
        assert int(np.argmax(shifted)) == i
        assert shifted[i] > fixed[i] + 0.15
        assert np.all(shifted >= fixed - 1e-6)


def test_fit_refines_the_best_rotations_locally(samples):
    """The grid leaves up to 16 degrees between rotations; a thin map needs the
    local refinement to fit itself well."""
    prepared, _ = samples
    previews = np.stack([p.preview() for p in prepared])
    turned = _turned(prepared[1].volumes[0], 5)
    fit = FitQuery(turned)
    refined, coarse = fit.score(previews), fit.score(previews, refine=0)
    assert int(np.argmax(refined)) == 1
    assert refined[1] > coarse[1] + 0.05
    assert np.all(refined >= coarse - 1e-6)


def _brute_shift_corr(vols, ent, g, shift):
    """Reference for _shift_corr: every shift as an explicit zero-filled window."""
    out = np.full(vols.shape[:2], -np.inf)
    pad = np.pad(
        vols.reshape(*vols.shape[:2], g, g, g), [(0, 0)] * 2 + [(shift, shift)] * 3
    )
    e = ent.reshape(-1, g, g, g)
    r = range(2 * shift + 1)
    for n in range(vols.shape[0]):
        for k in range(vols.shape[1]):
            for a, b, c in itertools.product(r, r, r):
                win = pad[n, k, a : a + g, b : b + g, c : c + g].ravel()
                win = win - win.mean()
                corr = win @ e[n].ravel() / max(np.linalg.norm(win), 1e-12)
                out[n, k] = max(out[n, k], corr)
    return out


@pytest.mark.parametrize("copies_from", [1, 1000])  # both ways of _moved_dots
@pytest.mark.parametrize("shift", [1, 2])
def test_shifted_correlation_matches_explicit_windows(monkeypatch, shift, copies_from):
    monkeypatch.setattr(fit_module, "_MOVED_COPIES_FROM", copies_from)
    g = 6
    rng = np.random.default_rng(shift)
    vols = rng.random((5, 3, g**3)).astype(np.float32)
    vols[:, :, : g**2] = 0  # an empty face, as a map inside its box has
    ent = fit_module._unit_rows(torch.from_numpy(rng.random((5, g**3), np.float32)))
    want = _brute_shift_corr(vols.astype(np.float64), ent.double().numpy(), g, shift)
    got = fit_module._shift_corr(torch.from_numpy(vols), ent, g, shift).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    # in chunks of one and two entries (the bound on memory)
    for floats in (1, 2 * (2 * shift + 1) ** 3 * g**3):
        monkeypatch.setattr(fit_module, "_SHIFT_FLOATS", floats)
        chunked = fit_module._shift_corr(torch.from_numpy(vols), ent, g, shift)
        np.testing.assert_allclose(chunked.numpy(), got, atol=1e-6)


def test_shrink_all_matches_prepare():
    rng = np.random.default_rng(0)
    same = rng.random((3, 32, 32, 32), np.float32)
    mixed = [same[0], rng.random((16, 16, 16), np.float32), same[1]]
    for previews in (same, list(same), mixed):
        want = np.stack([shrink(p, 16) for p in previews])
        np.testing.assert_allclose(
            fit_module._shrink_all(previews, 16), want, atol=1e-6
        )


def _grid_sample_turn(volume, mats, unit):
    """The fit's turning as it was computed before the compiled kernel."""
    rows = grid_sample_turn(volume, torch.from_numpy(np.asarray(mats)))
    mean = rows.mean(dim=1, keepdim=True)
    norm = (rows - mean).norm(dim=1, keepdim=True).clamp_min(1e-12)
    return ((rows - mean) / norm if unit else rows), mean, norm


def test_fit_equals_the_grid_sample_fit_on_real_maps(samples, monkeypatch):
    """The compiled turning gives the fit grid_sample gave, on the real sample
    maps turned out of their pose (all poses, all steps): to 1e-4."""
    prepared, _ = samples
    previews = np.stack([p.preview() for p in prepared])
    queries = [_turned(p.volumes[0], seed) for seed, p in enumerate(prepared)]
    fast = [FitQuery(q).score(previews) for q in queries]
    monkeypatch.setattr(fit_module, "_turn", _grid_sample_turn)
    slow = [FitQuery(q).score(previews) for q in queries]
    for got, want in zip(fast, slow, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
        assert int(np.argmax(got)) == int(np.argmax(want))


def test_a_query_scored_again_gives_the_same_scores(samples, monkeypatch):
    """The local turns a query keeps between searches change nothing: scoring
    again, or with a memo too small to keep them, gives what a fresh query
    gives, bit for bit."""
    prepared, _ = samples
    previews = np.stack([p.preview() for p in prepared])
    turned = _turned(prepared[1].volumes[0], 5)
    fit = FitQuery(turned)
    first = fit.score(previews)
    assert fit._near  # the refinement's turns were kept
    np.testing.assert_array_equal(fit.score(previews), first)
    backwards = np.ascontiguousarray(previews[::-1])
    np.testing.assert_allclose(fit.score(backwards), first[::-1], atol=1e-6)
    fit.forget()
    assert not fit._near
    np.testing.assert_array_equal(fit.score(previews), first)
    monkeypatch.setattr(fit_module, "FIT_LOCAL_MEMO", 1)
    small = FitQuery(turned)
    np.testing.assert_array_equal(small.score(previews), first)
    assert len(small._near) == 1


class _Query:
    """What FitCache reads of a query: ``entry_id`` and ``fit()``."""

    def __init__(self, volume, entry_id=1):
        self.volume, self.entry_id, self.calls = volume, entry_id, 0

    def fit(self):
        self.calls += 1
        return FitQuery(self.volume)


def test_fit_cache_keeps_stored_entries_queries_within_its_bytes(samples):
    prepared, _ = samples
    vols = [p.volumes[0] for p in prepared[:3]]
    a, b, c = (_Query(v, i) for i, v in enumerate(vols))
    one = FitQuery(vols[0]).nbytes
    cache = fit_module.FitCache(max_bytes=2 * one)
    assert cache.get(a) is cache.get(a) and a.calls == 1
    cache.get(b), cache.get(c)  # a is the least recently used: dropped
    assert cache.get(a) is not None and a.calls == 2
    assert cache.get(c) is not None and c.calls == 1
    upload = _Query(vols[0], entry_id=None)  # not a stored entry: never kept
    cache.get(upload), cache.get(upload)
    assert upload.calls == 2
    small, calls = fit_module.FitCache(max_bytes=one - 1), a.calls
    small.get(a), small.get(a)  # larger than the whole cache: turned, not kept
    assert a.calls == calls + 2


@pytest.mark.parametrize("native", [True, False])
def test_best_rows_are_the_float32_products_best(samples, monkeypatch, native):
    """The rotations each entry keeps, picked through the bfloat16 product and
    its rounding bound (or in float32 where bfloat16 is not native, or for
    many entries), are the float32 product's best, with its correlations."""
    if native and not fit_module._bf16_products():
        pytest.skip("bfloat16 products are not native here")
    monkeypatch.setattr(fit_module, "_bf16_products", lambda: native)
    prepared, _ = samples
    previews = np.stack([p.preview() for p in prepared])
    fit = FitQuery(_turned(prepared[2].volumes[0], 3))
    assert (fit._rows.hi is not None) == native
    rows = fit._rows.f32
    small = fit_module._shrink_all(previews, fit.grid)
    ent = fit_module._unit_rows(torch.from_numpy(small).flatten(1))
    # near ties too: an entry that is one of the rows, slightly perturbed
    rng = np.random.default_rng(0)
    noisy = rows[7] + 1e-4 * torch.from_numpy(rng.standard_normal(rows.shape[1]))
    ent = torch.cat([ent, fit_module._unit_rows(noisy.float()[None])])
    for keep in (1, 4):
        which, corr = fit._best_rows(ent, keep)
        want, want_which = (ent.double() @ rows.double().T).topk(keep, dim=1)
        np.testing.assert_allclose(corr.numpy(), want.numpy(), atol=2e-5)
        assert torch.equal(which, want_which)
    assert int(fit._best_rows(ent, 1)[0][-1]) == 7
    # more entries than the bfloat16 product is used for: the same
    monkeypatch.setattr(fit_module, "_BF16_MAX_ENTRIES", 2)
    which, corr = fit._best_rows(ent, 4)
    want, want_which = (ent.double() @ rows.double().T).topk(4, dim=1)
    np.testing.assert_allclose(corr.numpy(), want.numpy(), atol=2e-5)
    assert torch.equal(which, want_which)
