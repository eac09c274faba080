"""MultiScaleCode: what the encoder produces for a batch of canonical volumes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class MultiScaleCode:
    """Quantized codes of a batch of B maps, coarse to fine.

    Attributes:
        scales: grid side of each scale, coarse to fine, e.g. ``(1, 2, 4, 8)``.
        tokens: per scale, int16 ``[B, depth_s, n_s, n_s, n_s]`` token indices.
        vectors: per scale, float32 ``[B, dim_s]`` L2-normalised retrieval vectors.
        checkpoint_hash: hash of the encoder checkpoint that made the code; codes of
            different checkpoints are never compared.
    """

    scales: tuple[int, ...]
    tokens: tuple[np.ndarray, ...]
    vectors: tuple[np.ndarray, ...]
    checkpoint_hash: str

    def __post_init__(self) -> None:
        if not (len(self.scales) == len(self.tokens) == len(self.vectors)):
            raise ValueError("scales, tokens and vectors must have one entry per scale")
        sizes = {t.shape[0] for t in self.tokens} | {v.shape[0] for v in self.vectors}
        if len(sizes) != 1:
            raise ValueError(f"inconsistent batch sizes across scales: {sizes}")

    def __len__(self) -> int:
        return int(self.tokens[0].shape[0])

    def __getitem__(self, item: int | slice) -> MultiScaleCode:
        """A sub-batch (an int gives a batch of one)."""
        sel = slice(item, item + 1) if isinstance(item, int) else item
        if isinstance(item, int) and not -len(self) <= item < len(self):
            raise IndexError(item)
        return MultiScaleCode(
            self.scales,
            tuple(t[sel] for t in self.tokens),
            tuple(v[sel] for v in self.vectors),
            self.checkpoint_hash,
        )

    def bits(self, codebook_sizes: int | Sequence[int]) -> int:
        """Bits per map: a token of a scale whose codebook holds K codes costs
        log2(K) bits (``codebook_sizes``: one size for all scales, or one each)."""
        sizes = (
            [codebook_sizes] * len(self.tokens)
            if isinstance(codebook_sizes, int)
            else list(codebook_sizes)
        )
        return int(
            sum(
                np.prod(t.shape[1:]) * np.log2(k)
                for t, k in zip(self.tokens, sizes, strict=True)
            )
        )
