"""The denoising benchmark's mean over flips (benchmarks/bench_denoise.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.bench_denoise import FLIPS, mean_over_flips


@dataclass
class _Volume:
    values: np.ndarray


class _Reconstructs:
    """Reconstructs a canonical volume as ``f(values)``; records what it saw."""

    def __init__(self, f):
        self.f, self.seen = f, []

    def reconstruct(self, cv, strength, seed=0):
        self.seen.append(cv.values.copy())
        return self.f(cv.values)[None]


def test_the_eight_flips_are_the_axis_flips():
    assert len(FLIPS) == 8 and len(set(FLIPS)) == 8 and FLIPS[0] == ()


def test_each_flip_is_reconstructed_and_flipped_back():
    values = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    same = _Reconstructs(lambda v: v)
    assert np.allclose(mean_over_flips(same, _Volume(values), 0.5, 8), values)
    # the reconstructions saw the 8 flipped volumes, each once
    assert len(same.seen) == 8
    assert len({v.tobytes() for v in same.seen}) == 8
    # a reconstruction that adds a ramp along the first axis: flipped back, the
    # ramp runs both ways and its mean over the flips is flat
    ramp = np.arange(4, dtype=np.float32)[:, None, None]
    biased = _Reconstructs(lambda v: v + ramp)
    out = mean_over_flips(biased, _Volume(values), 0.5, 8)
    assert np.allclose(out, values + 1.5)
    # fewer flips: the first n only
    one = mean_over_flips(_Reconstructs(lambda v: v + ramp), _Volume(values), 0.5, 1)
    assert np.allclose(one, values + ramp)


def test_the_decoders_input_is_fitted_and_the_weights_stay():
    """``--ceilings``' fit (benchmarks/denoise_ceilings.py): a few Adam steps
    on the decoder's input bring its map closer to the target, and leave the
    weights (and which of them train) as they were."""
    import torch

    from benchmarks.denoise_ceilings import _code_latent, _decode, _fit
    from swan_index.generate import DEFAULT_PRIOR, Generator
    from swan_index.map_encoder import DEFAULT_CHECKPOINT

    gen = Generator.load(DEFAULT_CHECKPOINT, DEFAULT_PRIOR)
    side = gen.encoder.config.grid
    z, y, x = np.indices((side, side, side)) - (side - 1) / 2
    ball = (x**2 + (y / 0.6) ** 2 + z**2 < (side / 4) ** 2).astype(np.float32)
    target = np.where(ball > 0, 0.75, 0.0).astype(np.float32)
    start = _code_latent(gen, target)
    before = {k: v.clone() for k, v in gen.encoder.state_dict().items()}
    trains = [p.requires_grad for p in gen.encoder.parameters()]

    def error(latent: torch.Tensor) -> float:
        return float(np.mean((_decode(gen, latent) - target) ** 2))

    fitted = _fit(gen, target, start, 5)
    assert error(fitted) < error(start)
    after = gen.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in gen.encoder.parameters()] == trains
