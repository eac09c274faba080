"""The archive benchmark's pieces: the running top 10 over batches (its exact
baseline), the batches cut at every size, and the draws (a batch drawn again
is the same, so each size is a prefix of the next)."""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.archive_measure import TopK, tied_at_boundary
from benchmarks.bench_archive import batches, draw, vector_base


def test_running_top_k_equals_a_full_sort() -> None:
    rng = np.random.default_rng(3)
    scores = rng.standard_normal((6, 1000))
    top = TopK(6, 10)
    for a in range(0, 1000, 130):  # uneven batches, one shorter than k at the end
        top.add(scores[:, a : a + 130], a)
    want = np.argsort(-scores, axis=1)[:, :10]
    assert np.array_equal(top.ids, want)
    np.testing.assert_allclose(top.scores, np.take_along_axis(scores, want, axis=1))


def test_batches_cut_at_every_size() -> None:
    cuts = batches([250, 1000], 300)
    assert cuts[0][0] == 0 and cuts[-1][1] == 1000
    assert all(a < b for a, b in cuts)
    assert all(b == c for (_, b), (c, _) in zip(cuts, cuts[1:], strict=False))
    assert {b for _, b in cuts} >= {250, 1000}
    assert max(b - a for a, b in cuts) <= 300


def test_a_batch_drawn_again_is_the_same() -> None:
    rng = np.random.default_rng(0)
    dims = (4, 4, 8)
    base = {"rg": np.ones(30), "group": np.repeat(np.arange(10), 3)}
    for i, d in enumerate(dims):
        v = rng.standard_normal((30, d)).astype(np.float32)
        base[f"vectors_{i}"] = v / np.linalg.norm(v, axis=1, keepdims=True)
        base[f"tokens_{i}"] = np.zeros((30, 2, 2), np.int16)
    vbase = vector_base(base)
    assert vbase["tokens_0"].shape == (30, 1) and base["tokens_0"].shape == (30, 2, 2)
    pool = [base[f"vectors_{i}"] - base[f"vectors_{i}"].mean(0) for i in range(3)]
    args = argparse.Namespace(
        seed=0,
        noise=0.5,
        noise_spread=0.4,
        token_swaps=0.02,
        codebook=16,
        corpus="mixtures",
    )
    once = draw(vbase, pool, args, 100, 140)
    again = draw(vbase, pool, args, 100, 140)
    other = draw(vbase, pool, args, 140, 180)
    for a, b, c, d in zip(once, again, other, dims, strict=True):
        assert a.shape == (40, d)
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)


def test_answers_differing_only_by_ties_at_the_last_score() -> None:
    a = (np.array([[0.9, 0.5, 0.3]]), np.array([[1, 2, 3]]))
    tied = (np.array([[0.9, 0.5, 0.3]]), np.array([[1, 2, 4]]))
    other = (np.array([[0.9, 0.4, 0.3]]), np.array([[1, 4, 3]]))
    assert tied_at_boundary(a, a)
    assert tied_at_boundary(a, tied)
    assert not tied_at_boundary(a, other)
