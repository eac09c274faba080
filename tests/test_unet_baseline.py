"""The denoising benchmark's learned baseline (benchmarks/unet_denoiser.py):
its step budget makes the same network whatever the machine's load."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmarks import unet_denoiser


@pytest.fixture
def small_maps(monkeypatch):
    """Two random 40^3 maps stand in for the training maps (built from the
    benchmarks' larger real data set otherwise)."""
    rng = np.random.default_rng(0)
    maps = [rng.random((40, 40, 40), dtype=np.float32) for _ in range(2)]
    monkeypatch.setattr(
        unet_denoiser, "_maps", lambda cache, seed: (maps, ["a", "b"], 0.0)
    )


def _train(out, steps):
    blob = unet_denoiser.train(
        out, math.inf, 10.0, seed=3, width=4, batch=1, max_steps=steps
    )
    torch.save(blob, out)
    return blob


def test_a_step_budget_stops_there_and_resumes_to_the_same_network(
    tmp_path, small_maps
):
    once = _train(tmp_path / "once.pt", 4)
    assert once["steps"] == 4 and once["steps_budget"] == 4
    _train(tmp_path / "twice.pt", 2)  # stopped half-way, then resumed
    twice = _train(tmp_path / "twice.pt", 4)
    assert twice["steps"] == 4
    for name, value in once["state"].items():
        assert torch.equal(value, twice["state"][name]), name
    again = _train(tmp_path / "again.pt", 4)  # another run, same seed
    for name, value in once["state"].items():
        assert torch.equal(value, again["state"][name]), name
