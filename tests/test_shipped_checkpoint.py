"""The shipped checkpoint: loads without the training code, and coarse-to-fine holds."""

from __future__ import annotations

import numpy as np
import torch

from encoder import load_checkpoint
from ingest import canonicalize, read_map
from tests.conftest import DATA, MAPS

CHECKPOINT = DATA / "cryoswan.pt"


def _sample_batch(grid: int) -> torch.Tensor:
    vols = [canonicalize(read_map(p), grid=grid).values for p in MAPS.values()]
    return torch.from_numpy(np.stack(vols)[:, None])


def test_shipped_checkpoint_loads_and_is_small():
    assert CHECKPOINT.stat().st_size < 20 * 2**20
    model, blob = load_checkpoint(CHECKPOINT)
    assert blob["arch"] == "cryoswan"
    assert model.checkpoint_hash == blob["hash"]
    assert model.config.grid == 64 and model.config.scales == (1, 2, 4, 8)


def test_error_does_not_grow_as_scales_are_added():
    model, _ = load_checkpoint(CHECKPOINT)
    x = _sample_batch(model.config.grid)
    code = model.encode(x)
    errors = [
        float(((model.decode(code, up_to=s) - x) ** 2).mean())
        for s in range(1, len(code.scales) + 1)
    ]
    assert all(b <= a + 1e-4 for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.8 * errors[0]


def test_real_maps_reconstruct_at_the_contour():
    model, _ = load_checkpoint(CHECKPOINT)
    x = _sample_batch(model.config.grid)
    recon = model.decode(model.encode(x))
    inside, predicted = x >= 0.5, recon >= 0.5
    iou = (inside & predicted).sum() / (inside | predicted).sum()
    assert iou > 0.2
