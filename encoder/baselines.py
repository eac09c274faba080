"""Baselines for the reconstruction benchmark, at (nearly) equal code bits.

Both reuse the Cryo-SWAN trunk (the same Haar encoder and decoder), so the
comparison isolates the latent code:

* **single-scale VQ-VAE**: :class:`~encoder.model.CryoSwan` with one scale, the
  full latent grid n^3, and a residual quantizer of depth 2 whose codebook size is
  chosen so that its bits equal the Cryo-SWAN config's (``2 x n^3 x log2(K)``;
  K = 1,246 against Cryo-SWAN's 10,530 bits at 64^3).
* **plain convolutional autoencoder**: no codebook; a ``latent_dim``-channel
  latent at n^3 squashed by tanh and uniformly quantized to ``bits`` bits per value
  (straight-through in training): ``512 x 5 x 4 = 10,240`` bits at 64^3.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from encoder.model import (
    CANONICAL_SURFACE,
    CryoSwan,
    CryoSwanConfig,
    Decoder,
    Encoder,
    reconstruction_loss,
    to_surface,
)


def single_scale_config(base: CryoSwanConfig) -> CryoSwanConfig:
    """The single-scale VQ-VAE's config for a Cryo-SWAN config ``base``, at the
    same bits per map (within one code's rounding)."""
    depth, cells = 2, base.latent_side**3
    size = round(2 ** (base.bits() / (depth * cells)))
    return replace(
        base,
        scales=(base.latent_side,),
        depths=(depth,),
        codebook_size=size,
        coarse_codebook_size=None,
        prefix_weight=0.0,
        extra={**base.extra, "baseline": "single-scale"},
    )


class PlainAutoencoder(nn.Module):
    """Convolutional autoencoder with a uniformly quantized continuous latent."""

    def __init__(
        self, config: CryoSwanConfig, latent_dim: int = 5, bits: int = 4
    ) -> None:
        super().__init__()
        self.config = replace(
            config,
            latent_dim=latent_dim,
            kl_weight=0.0,
            extra={**config.extra, "baseline": "plain-ae", "bits": bits},
        )
        self.bits = bits
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        self.checkpoint_hash = "untrained"
        #: as :attr:`encoder.model.CryoSwan.surface_level` (for a like-for-like
        #: comparison, chosen the same way)
        self.surface_level = CANONICAL_SURFACE

    def quantized_latent(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's latent of ``x``, squashed to [-1, 1] and quantized.

        Args:
            x: canonical volumes ``[B, 1, G, G, G]``.

        Returns:
            ``[B, latent_dim, S, S, S]`` on ``2**bits`` uniform levels in [-1, 1],
            with a straight-through gradient.
        """
        z = torch.tanh(self.encoder(x).float())  # float32 also under autocast
        levels = 2**self.bits - 1
        q = torch.round((z + 1) / 2 * levels) / levels * 2 - 1
        return z + (q - z).detach()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        recon = self.decoder(self.quantized_latent(x))
        rec_loss = reconstruction_loss(recon, x)
        return {"recon": recon, "loss": rec_loss, "rec_loss": rec_loss.detach()}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, up_to: int | None = None) -> torch.Tensor:
        recon = self.decoder(self.quantized_latent(x))
        return to_surface(recon, self.surface_level)

    def bits_per_map(self) -> int:
        return self.config.latent_side**3 * self.config.latent_dim * self.bits


def reconstruct(
    model: nn.Module, x: torch.Tensor, up_to: int | None = None
) -> torch.Tensor:
    """Reconstruction of ``x`` by any benchmarked model (``up_to`` for Cryo-SWAN)."""
    if isinstance(model, CryoSwan):
        return model.decode_indices(model.encode_indices(x), up_to)
    return model.reconstruct(x)


def bits_up_to(model: nn.Module, up_to: int | None = None) -> int:
    """Bits per map of the first ``up_to`` scales (all for the baselines)."""
    if isinstance(model, CryoSwan):
        return model.config.bits(up_to)
    return model.bits_per_map()
