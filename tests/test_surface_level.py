"""The decoded surface level: decoding maps it to the canonical surface (0.5),
it is chosen on training items by IoU at the contour, and it travels in the
checkpoint beside the weights without changing their hash or the codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from encoder import evaluate
from encoder.checkpoint import load_checkpoint, save_checkpoint, write_surface_level
from encoder.evaluate import choose_surface_level
from encoder.model import CANONICAL_SURFACE, CryoSwan, to_surface
from swan_index.cli import main
from tests.test_encoder import SMALL


def test_the_level_becomes_the_surface_and_the_ends_stay():
    v = torch.tensor([0.0, 0.1, 0.2, 0.225, 0.25, 0.4, 1.0])
    out = to_surface(v, 0.25)
    # the background as decoded, a ramp up to the level, then spread to 1
    assert out.tolist() == pytest.approx([0.0, 0.1, 0.2, 0.35, 0.5, 0.6, 1.0])
    assert torch.all(out[1:] > out[:-1])  # monotone: the order of values kept
    assert to_surface(v, CANONICAL_SURFACE) is v
    with pytest.raises(ValueError, match="surface level"):
        to_surface(v, 1.0)


class _Blurred(nn.Module):
    """Decodes 0.6 x its input: its surface sits at 0.3 (a stand-in for a
    decoder that decodes less than it was given)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.surface_level = CANONICAL_SURFACE

    def reconstruct(self, x, up_to=None):  # noqa: ANN001, ANN201
        return to_surface(0.6 * x, self.surface_level)


def test_the_chosen_level_is_where_the_decoded_surface_matches(monkeypatch):
    rng = np.random.default_rng(0)
    volumes = (rng.random((20, 8, 8, 8)) * 255).astype(np.uint8)
    monkeypatch.setattr(evaluate, "load_split", lambda dataset, split: volumes)
    model = _Blurred()
    model.surface_level = 0.4  # what it had is not what it is measured with
    choice = choose_surface_level(model, "unused", limit=12)
    assert choice["level"] == pytest.approx(0.3)
    assert choice["by_level"]["0.3"]["iou"] == pytest.approx(1.0)
    assert choice["by_level"]["0.5"]["iou"] < 0.8
    assert choice["items"] == 12 and model.surface_level == 0.4


def test_the_level_travels_in_the_checkpoint_not_in_its_hash(tmp_path):
    torch.manual_seed(0)
    model = CryoSwan(SMALL).eval()
    plain = save_checkpoint(model, tmp_path / "a.pt")
    model.surface_level = 0.3
    assert save_checkpoint(model, tmp_path / "b.pt") == plain
    back, blob = load_checkpoint(tmp_path / "b.pt")
    assert back.surface_level == 0.3 and blob["extra"]["surface_level"] == 0.3
    first, _ = load_checkpoint(tmp_path / "a.pt")
    assert first.surface_level == CANONICAL_SURFACE
    write_surface_level(tmp_path / "a.pt", 0.35)
    again, _ = load_checkpoint(tmp_path / "a.pt")
    assert again.surface_level == 0.35 and again.checkpoint_hash == plain
    x = (torch.rand(2, 1, 32, 32, 32) > 0.7).float()
    a, b = first.encode(x), again.encode(x)
    for p, q in zip(a.tokens + a.vectors, b.tokens + b.vectors, strict=True):
        assert np.array_equal(p, q)  # the codes do not depend on it
    raw = first.decode(a)
    assert torch.allclose(again.decode(b), to_surface(raw, 0.35))
    with pytest.raises(ValueError, match="surface level"):
        write_surface_level(tmp_path / "a.pt", 0.0)


def test_swan_eval_surface_writes_the_level(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    path = tmp_path / "m.pt"
    save_checkpoint(CryoSwan(SMALL).eval(), path)
    rng = np.random.default_rng(1)
    volumes = (rng.random((6, 32, 32, 32)) > 0.8).astype(np.uint8) * 255
    monkeypatch.setattr(evaluate, "load_split", lambda dataset, split: volumes)
    args = ["eval", "surface", "--checkpoint", str(path), "--dataset", "d"]
    assert main([*args, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert load_checkpoint(path)[0].surface_level == CANONICAL_SURFACE  # not yet
    assert main([*args, "--write"]) == 0
    assert "recorded in the checkpoint" in capsys.readouterr().out
    assert load_checkpoint(path)[0].surface_level == shown["level"]
    assert (
        main(
            [
                "eval",
                "surface",
                "--checkpoint",
                str(tmp_path / "no.pt"),
                "--dataset",
                "d",
            ]
        )
        == 1
    )
    assert "no.pt" in capsys.readouterr().err
