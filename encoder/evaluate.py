"""Reconstruction quality per scale: IoU at the contour, correlation, bits per map.

For each item of a dataset split and each ``up_to`` = 1..S (Cryo-SWAN) or the full
code (baselines): IoU of ``recon >= 0.5`` against ``target >= 0.5`` (0.5 is the
canonical surface level, i.e. the map's contour), Pearson correlation of the
volumes, and the bits of the code used. Results are averaged per item kind
(real, simulated, synthetic, shape).
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from encoder.baselines import bits_up_to, reconstruct
from encoder.model import CANONICAL_SURFACE, CryoSwan
from encoder.training_data.dataset import from_uint8, load_split, read_items

SURFACE_LEVEL = 0.5


def iou(a: np.ndarray, b: np.ndarray, level: float = SURFACE_LEVEL) -> np.ndarray:
    """Per-item IoU of ``a >= level`` and ``b >= level`` over a batch ``[B, ...]``."""
    x = a.reshape(len(a), -1) >= level
    y = b.reshape(len(b), -1) >= level
    union = (x | y).sum(1)
    return np.where(union > 0, (x & y).sum(1) / np.maximum(union, 1), 1.0)


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-item Pearson correlation over a batch ``[B, ...]``."""
    x = a.reshape(len(a), -1).astype(np.float64)
    y = b.reshape(len(b), -1).astype(np.float64)
    x -= x.mean(1, keepdims=True)
    y -= y.mean(1, keepdims=True)
    den = np.sqrt((x * x).sum(1) * (y * y).sum(1))
    return np.where(den > 0, (x * y).sum(1) / np.maximum(den, 1e-12), 0.0)


@torch.no_grad()
def evaluate_recon(
    model: torch.nn.Module,
    dataset: str | Path,
    split: str = "test",
    batch_size: int = 16,
    limit: int | None = None,
) -> dict:
    """Reconstruction metrics of ``model`` on one split, per kind and per ``up_to``.

    Returns:
        ``{"items": N, "by_kind": {kind: {up_to: {"iou", "pearson", "bits", "n"}}}}``
        where ``up_to`` is ``"1".."S"`` for Cryo-SWAN and ``"all"`` otherwise.
    """
    model.eval()
    volumes = load_split(dataset, split)
    items = read_items(dataset)
    with np.load(Path(dataset) / f"{split}.npz") as data:
        index = data["index"]
    kinds = [items[int(i)]["kind"] for i in index]
    if limit:
        volumes, kinds = volumes[:limit], kinds[:limit]
    levels: list[int | None] = (
        list(range(1, len(model.config.scales) + 1))
        if isinstance(model, CryoSwan)
        else [None]
    )
    sums: dict = defaultdict(lambda: defaultdict(lambda: np.zeros(3)))
    device = next(model.parameters()).device
    for start in range(0, len(volumes), batch_size):
        target = from_uint8(volumes[start : start + batch_size])
        x = torch.from_numpy(target).unsqueeze(1).to(device)
        batch_kinds = kinds[start : start + batch_size]
        for up_to in levels:
            recon = reconstruct(model, x, up_to).squeeze(1).cpu().numpy()
            i, p = iou(recon, target), pearson(recon, target)
            key = str(up_to) if up_to else "all"
            for kind, iv, pv in zip(batch_kinds, i, p, strict=True):
                for k in (kind, "all"):
                    sums[k][key] += (iv, pv, 1)
    by_kind = {}
    for kind, per_level in sums.items():
        by_kind[kind] = {}
        for key, (si, sp, n) in per_level.items():
            up_to = None if key == "all" else int(key)
            by_kind[kind][key] = {
                "iou": round(si / n, 4),
                "pearson": round(sp / n, 4),
                "bits": bits_up_to(model, up_to),
                "n": int(n),
            }
    return {
        "split": split,
        "items": len(volumes),
        "surface_level": getattr(model, "surface_level", CANONICAL_SURFACE),
        "by_kind": by_kind,
    }


#: Decoded values :func:`choose_surface_level` tries as the surface.
SURFACE_LEVELS = tuple(round(v, 3) for v in np.arange(0.15, 0.501, 0.025))


@torch.no_grad()
def choose_surface_level(
    model: torch.nn.Module,
    dataset: str | Path,
    *,
    split: str = "train",
    limit: int = 800,
    seed: int = 0,
    batch_size: int = 16,
    levels: tuple[float, ...] = SURFACE_LEVELS,
) -> dict:
    """The decoded value that best stands for the input's surface: the level
    of ``levels`` at which the full code's reconstruction, thresholded, has the
    highest mean IoU with the input at its contour (canonical 0.5), over
    ``limit`` items of ``split`` (a seeded draw; the training split by
    default: never the maps a result is reported on).

    Why: the decoder regresses canonical values under an MSE + L1 loss, so
    where it is unsure (thin parts, the edge of the molecule) it decodes less
    than the input holds; at 0.5 its surface encloses too little (the shipped
    encoder's reconstructions of the test split's real maps held about a third
    of their inputs' volume inside the contour). Mapping the chosen level to
    0.5 (:func:`encoder.model.to_surface`) puts the decoded surface where the
    input's is.

    Returns:
        ``{"level", "split", "items", "seed", "by_level": {level: {"iou",
        "pearson"}}}`` (the Pearson correlation after the mapping, for the
        record).
    """
    from encoder.model import to_surface

    model.eval()
    volumes = load_split(dataset, split)
    if not len(volumes):
        raise ValueError(f"{dataset}: the {split} split is empty")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(volumes), min(limit, len(volumes)), replace=False))
    device = next(model.parameters()).device
    sums = {lv: np.zeros(2) for lv in levels}
    kept, model.surface_level = model.surface_level, CANONICAL_SURFACE
    try:
        for start in range(0, len(pick), batch_size):
            target = from_uint8(volumes[pick[start : start + batch_size]])
            x = torch.from_numpy(target).unsqueeze(1).to(device)
            raw = reconstruct(model, x)  # the full code
            for lv in levels:
                recon = to_surface(raw, lv).squeeze(1).cpu().numpy()
                sums[lv] += (iou(recon, target).sum(), pearson(recon, target).sum())
    finally:
        model.surface_level = kept
    by_level = {
        lv: {
            "iou": round(float(s[0] / len(pick)), 4),
            "pearson": round(float(s[1] / len(pick)), 4),
        }
        for lv, s in sums.items()
    }
    best = max(levels, key=lambda lv: (by_level[lv]["iou"], lv))
    return {
        "level": float(best),
        "split": split,
        "items": len(pick),
        "seed": seed,
        "by_level": {str(lv): m for lv, m in by_level.items()},
    }


@torch.no_grad()
def encoding_throughput(
    model: torch.nn.Module,
    grid: int = 64,
    batch_size: int = 32,
    repeat: int = 3,
    encode=None,
    volumes: torch.Tensor | None = None,
) -> float:  # noqa: ANN001
    """Maps per second of ``encode(x)`` (default ``model.encode``) on
    ``volumes`` ``[B, 1, grid, grid, grid]`` (default: ``batch_size`` random
    binary volumes); best of ``repeat``.
    """
    model.eval()
    encode = encode or model.encode
    if volumes is None:
        gen = torch.Generator().manual_seed(0)
        x = (torch.rand(batch_size, 1, grid, grid, grid, generator=gen) > 0.9).float()
    else:
        x, batch_size = volumes, len(volumes)
    x = x.to(next(model.parameters()).device)
    encode(x[:2])  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        encode(x)
        best = min(best, time.perf_counter() - t0)
    return batch_size / best


@torch.no_grad()
def codebook_usage(
    model: CryoSwan, volumes: np.ndarray, batch_size: int = 32
) -> list[list[dict[str, float]]]:
    """Per scale and depth: perplexity and dead codes over uint8 ``volumes``."""
    model.eval()
    device = next(model.parameters()).device
    for q in model.quantizers:
        for cb in q.codebooks:
            cb.reset_usage()
    for start in range(0, len(volumes), batch_size):
        x = torch.from_numpy(from_uint8(volumes[start : start + batch_size]))
        model.encode_indices(x.unsqueeze(1).to(device))
    return model.codebook_stats()
