"""The coarse-to-fine benchmark's counts: errors per scale, growth, summaries."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.bench_coarse_to_fine import growth, scale_errors, summarize
from encoder.model import CryoSwan, CryoSwanConfig


def _row(name: str, kind: str, mse: list[float], r: list[float]) -> dict:
    return {
        "name": name,
        "kind": kind,
        "mse": mse,
        "one_minus_pearson": [1 - v for v in r],
    }


def test_growth_counts_only_steps_beyond_the_tolerance():
    rows = [
        _row("a", "real", [1.0, 1.04, 0.5], [0.5, 0.6, 0.9]),  # +4 %: within
        _row("b", "real", [1.0, 0.9, 0.99], [0.5, 0.6, 0.9]),  # +10 % at 2->3
        _row("c", "synthetic", [1.0, 1.2, 0.1], [0.6, 0.4, 0.96]),
    ]
    summary = summarize(rows, tolerance=0.05)
    mse = summary["all"]["mse"]
    assert mse["maps_growing"] == 2 and mse["maps_growing_at_all"] == 3
    assert mse["growing_steps"] == {"1->2": 1, "2->3": 1}
    assert mse["worst"][0]["name"] == "c" and mse["worst"][0]["step"] == "1->2"
    assert summary["real"]["mse"]["maps_growing"] == 1
    # 1 - r grows only for c (0.4 -> 0.6); full correlations 0.9, 0.9, 0.96
    assert summary["all"]["one_minus_pearson"]["maps_growing"] == 1
    assert summary["all"]["full_pearson_median"] == 0.9
    assert np.allclose(growth(np.array([[2.0, 1.0, 3.0]])), [[0.5, 3.0]])


def test_scale_errors_are_the_partial_reconstructions_errors():
    cfg = CryoSwanConfig(
        grid=32,
        scales=(1, 2, 4),
        depths=(1, 1, 1),
        codebook_size=32,
        latent_dim=8,
        channels=(8, 16),
    )
    torch.manual_seed(0)
    model = CryoSwan(cfg).eval()
    x = torch.rand(3, 32, 32, 32).numpy()
    errors = scale_errors(model, x)
    assert errors["mse"].shape == errors["one_minus_pearson"].shape == (3, 3)
    code = model.encode(torch.from_numpy(x).unsqueeze(1))
    recon = model.decode(code, up_to=2).squeeze(1).numpy()
    assert np.allclose(errors["mse"][:, 1], ((recon - x) ** 2).mean(axis=(1, 2, 3)))
