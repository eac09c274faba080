"""Vector quantization: EMA codebook -> residual quantizer (one per scale).

The codebook learns by exponential moving averages of the vectors assigned to each
code (no gradient), starts from k-means on the first training batch, and restarts
dead codes (EMA usage below ``dead_threshold`` of the average code's) on random
vectors of the current batch, so the whole codebook stays in use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Rows of a batch whose distances to the codes :meth:`Codebook.nearest` holds
#: at once.
NEAREST_ROWS = 1024


def _kmeans(x: torch.Tensor, k: int, iters: int = 10) -> torch.Tensor:
    """k-means centroids of ``x`` ``[N, D]`` (sampled with replacement when N < k)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    idx = torch.randint(0, x.shape[0], (k,), generator=gen)
    centroids = x[idx.to(x.device)].clone()
    for _ in range(iters):
        assign = torch.cdist(x, centroids).argmin(dim=1)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids


class Codebook(nn.Module):
    """``size`` codes of dimension ``dim`` with EMA updates and dead-code restart.

    State that survives a checkpoint lives in buffers: ``embed`` ``[K, D]``,
    ``cluster_size`` ``[K]`` (EMA of assignments), ``embed_sum`` ``[K, D]``,
    ``initted`` and ``usage`` ``[K]`` (assignments counted since the last
    :meth:`reset_usage`, for perplexity and dead-code reports).
    """

    def __init__(
        self,
        size: int,
        dim: int,
        decay: float = 0.99,
        dead_threshold: float = 0.02,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.size, self.dim, self.decay = size, dim, decay
        self.dead_threshold, self.eps = dead_threshold, eps
        self.register_buffer("embed", torch.randn(size, dim) * 0.1)
        self.register_buffer("embed_sum", self.embed.clone())
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("initted", torch.tensor(False))
        self.register_buffer("usage", torch.zeros(size))

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of ``z`` ``[N, D]`` -> ``[N]``.

        The squared distance less ``|z|^2``, which is the same for every code
        of a row, in one fused product per block of :data:`NEAREST_ROWS` rows
        (a block's distances stay in cache: about 3x faster than the whole
        distance matrix at once)."""
        norms = self.embed.pow(2).sum(1)
        codes = self.embed.t()
        if len(z) <= NEAREST_ROWS:
            return torch.addmm(norms, z, codes, alpha=-2).argmin(dim=1)
        return torch.cat(
            [
                torch.addmm(norms, part, codes, alpha=-2).argmin(dim=1)
                for part in z.split(NEAREST_ROWS)
            ]
        )

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """Code vectors of ``idx`` (any shape) -> ``[..., D]``."""
        return F.embedding(idx.long(), self.embed)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantize ``z`` ``[N, D]``; in training mode also update the codebook.

        Returns:
            ``(q, idx)``: the code vectors ``[N, D]`` (no gradient) and indices ``[N]``.
        """
        z = z.detach().float()
        if self.training and not bool(self.initted):
            self.embed.copy_(_kmeans(z, self.size))
            self.embed_sum.copy_(self.embed)
            self.cluster_size.fill_(1.0)
            self.initted.fill_(True)
        idx = self.nearest(z)
        counts = torch.bincount(idx, minlength=self.size).float()
        self.usage += counts
        if self.training:
            self._ema_update(z, idx, counts)
        return self.lookup(idx), idx

    @torch.no_grad()
    def _ema_update(
        self, z: torch.Tensor, idx: torch.Tensor, counts: torch.Tensor
    ) -> None:
        d = self.decay
        self.cluster_size.mul_(d).add_(counts, alpha=1 - d)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, idx, z)
        self.embed_sum.mul_(d).add_(sums, alpha=1 - d)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.size * self.eps) * n
        self.embed.copy_(self.embed_sum / smoothed[:, None])
        self.restart_dead(z)

    @torch.no_grad()
    def restart_dead(self, z: torch.Tensor) -> int:
        """Move codes whose EMA usage is below ``dead_threshold`` times the average
        code's onto random rows of ``z``. Relative, so that a coarse scale (one
        vector per map, few per batch) does not churn codes that are merely rare.

        Returns:
            How many codes were restarted.
        """
        average = float(self.cluster_size.sum()) / self.size
        dead = self.cluster_size < self.dead_threshold * average
        n_dead = int(dead.sum())
        if n_dead:
            pick = torch.randint(0, z.shape[0], (n_dead,), device=z.device)
            self.embed[dead] = z[pick]
            self.embed_sum[dead] = z[pick]
            self.cluster_size[dead] = 1.0
        return n_dead

    def reset_usage(self) -> None:
        """Start counting assignments afresh (for :meth:`stats`)."""
        self.usage.zero_()

    def stats(self) -> dict[str, float]:
        """Perplexity and number of unused codes since the last usage reset."""
        total = float(self.usage.sum())
        if total == 0:
            return {"perplexity": 0.0, "dead": self.size, "used": 0}
        p = self.usage / total
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        used = int((self.usage > 0).sum())
        return {
            "perplexity": float(entropy.exp()),
            "dead": self.size - used,
            "used": used,
        }


class ResidualQuantizer(nn.Module):
    """``depth`` codebooks applied in turn, each to what the previous ones left."""

    def __init__(self, depth: int, size: int, dim: int, decay: float = 0.99) -> None:
        super().__init__()
        self.codebooks = nn.ModuleList(Codebook(size, dim, decay) for _ in range(depth))

    @property
    def depth(self) -> int:
        return len(self.codebooks)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantize ``z`` ``[N, D]`` -> ``(summed codes [N, D], idx [depth, N])``."""
        residual = z.detach()
        total = torch.zeros_like(residual)
        indices = []
        for codebook in self.codebooks:
            q, idx = codebook(residual)
            total = total + q
            residual = residual - q
            indices.append(idx)
        return total, torch.stack(indices)

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices ``[depth, ...]`` -> summed code vectors ``[..., D]``."""
        return sum(
            cb.lookup(idx) for cb, idx in zip(self.codebooks, indices, strict=True)
        )
