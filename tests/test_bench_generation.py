"""The generation benchmark's metrics (benchmarks/bench_generation.py): IoU
distances, coverage and minimum matching distance, 1-NN accuracy, the Fréchet
distance, the Gaussian baseline and the contour remapping, on small arrays whose
answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.bench_generation import (
    coverage_mmd,
    frechet,
    gaussian_draws,
    iou_distance,
    level_for,
    masks,
    one_nna,
    relevel,
)


def _cubes() -> np.ndarray:
    """Three 8^3 volumes: a 4^3 block, the same block, a disjoint block."""
    v = np.zeros((3, 8, 8, 8), np.float32)
    v[0, :4, :4, :4] = v[1, :4, :4, :4] = 1.0
    v[2, 4:, 4:, 4:] = 0.7
    return v


def test_iou_distance_of_masks_at_the_contour():
    v = _cubes()
    d = iou_distance(masks(v), masks(v))
    assert d[0, 1] == 0.0 and d[0, 2] == 1.0 and np.allclose(np.diag(d), 0.0)
    half = v[0].copy()
    half[:2] = 0.4  # below the contour: half of the block left
    assert iou_distance(masks(half[None]), masks(v[:1]))[0, 0] == pytest.approx(0.5)
    empty = np.zeros((1, 8, 8, 8), np.float32)
    assert iou_distance(masks(empty), masks(empty))[0, 0] == 0.0


def test_coverage_and_minimum_matching_distance():
    # three references; both candidates are nearest to reference 0
    d = np.array([[0.1, 0.2], [0.5, 0.6], [0.9, 0.3]])
    cov, mmd = coverage_mmd(d)
    assert cov == pytest.approx(1 / 3)
    assert mmd == pytest.approx((0.1 + 0.5 + 0.3) / 3)


def test_one_nearest_neighbour_accuracy():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, (20, 3))
    far = rng.normal(50, 1, (20, 3))

    def dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.linalg.norm(a[:, None] - b[None], axis=-1)

    assert one_nna(dist(ref, ref), dist(far, far), dist(ref, far)) == 1.0
    # each candidate a copy of a reference: every map's nearest is its twin
    near = ref + 1e-6
    assert one_nna(dist(ref, ref), dist(near, near), dist(ref, near)) == 0.0


def test_frechet_distance():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (400, 4))
    x -= x.mean(0)
    assert frechet(x, x) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([3.0, 0.0, 4.0, 0.0])
    assert frechet(x, x + shift) == pytest.approx(25.0, rel=1e-6)
    wide = frechet(x, 2.0 * x)  # covariance 4: tr(C + 4C - 2 * 2C) = tr(C)
    assert wide == pytest.approx(np.trace(np.cov(x, rowvar=False)), rel=1e-3)
    with pytest.raises(ValueError, match="at least two"):
        frechet(x[:1], x)


def test_the_gaussian_baseline_matches_the_latents_moments():
    gen = torch.Generator().manual_seed(0)
    f = torch.randn(6, 2, 2, 2, 2, generator=gen) * 3.0 + 1.0
    draws = gaussian_draws(f, 20000, seed=0)
    assert draws.shape == (20000, 2, 2, 2, 2)
    flat, got = f.flatten(1).double().numpy(), draws.flatten(1).double().numpy()
    assert np.allclose(got.mean(0), flat.mean(0), atol=0.15)
    assert np.allclose(np.cov(got, rowvar=False), np.cov(flat, rowvar=False), atol=0.6)
    # the same seed draws the same maps, another seed others
    assert torch.equal(gaussian_draws(f, 3, seed=5), gaussian_draws(f, 3, seed=5))
    assert not torch.equal(gaussian_draws(f, 3, seed=5), gaussian_draws(f, 3, seed=6))


def test_a_chosen_level_becomes_the_contour():
    v = np.linspace(0.0, 1.0, 1001, dtype=np.float32)
    level = level_for(v, 0.25)  # a quarter of the values at or above it
    assert level == pytest.approx(0.75, abs=1e-3)
    out = relevel(v, level)
    assert (out >= 0.5).mean() == pytest.approx((v >= level).mean())
    assert out[0] == 0.0 and out[-1] == pytest.approx(1.0)
    assert np.all(np.diff(out) >= 0)  # order kept


@pytest.fixture(scope="module")
def shipped():
    from swan_index.generate import DEFAULT_PRIOR, Generator
    from swan_index.map_encoder import DEFAULT_CHECKPOINT

    return Generator.load(DEFAULT_CHECKPOINT, DEFAULT_PRIOR)


def test_the_comparison_samplers(shipped):
    from benchmarks.bench_generation import cascade_draws, euler_draws, prior_draws

    grid = shipped.encoder.config.grid
    own = shipped.prior.config
    # the prior's own step count draws what swan generate -n draws; the
    # config is restored after another count
    assert np.array_equal(
        euler_draws(shipped, 2, own.steps, 3), prior_draws(shipped, 2, 1.0, 3)
    )
    fewer = euler_draws(shipped, 2, 2, 3)
    assert shipped.prior.config is own
    assert not np.array_equal(fewer, prior_draws(shipped, 2, 1.0, 3))
    drawn = cascade_draws(shipped, 2, seed=4)
    assert drawn.shape == (2, grid, grid, grid)
    assert drawn.min() >= 0 and drawn.max() <= 1
    assert np.array_equal(drawn, cascade_draws(shipped, 2, seed=4))
    assert not np.array_equal(drawn, cascade_draws(shipped, 2, seed=5))


def test_sampler_names_are_checked():
    import argparse

    from benchmarks.bench_generation import _sampler

    assert _sampler("cascade") == "cascade" and _sampler("euler-64") == "euler-64"
    for bad in ("euler-", "euler-x", "heun-4", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="cascade or euler-N"):
            _sampler(bad)
