"""The Cryo-SWAN model: Haar wavelet trunk, multi-scale residual quantization.

Data flow for a canonical volume ``x`` ``[B, 1, G, G, G]`` (G = 64; n = G / 8):

* **Encoder**: two Haar levels turn ``x`` into 64 wavelet bands at G/4 (lossless);
  a conv stage there and a strided one bring it to n^3; the Haar low-pass band of
  ``x`` at n^3 (the global shape) is concatenated before the last projection to
  ``latent_dim`` channels: ``f`` ``[B, D, n, n, n]``.
* **Coarse-to-fine residual quantization** (as in VAR's multi-scale quantizer): for
  each scale side ``s`` in ``config.scales`` (coarse to fine, the last equal to n),
  the part of ``f`` that the coarser scales do not yet reconstruct, ``f - f_hat``,
  is area-pooled to s^3 and quantized by that scale's own residual quantizer
  (depth ``depths[i]``); the codes are upsampled to n^3, refined by a small conv
  (``phi``) and added to ``f_hat``. So each finer scale is encoded conditioned on
  what the coarser ones already reconstruct, and carries only the missing detail.
* **Decoder**: from ``f_hat`` (all scales, or the first ``up_to``) a conv stage at
  n^3 and a transposed conv to G/4, where a head predicts the 64 Haar bands; two
  inverse Haar levels give the G^3 volume. No convolution runs above G/4, which
  is what keeps the model fast on a CPU (full-resolution convs cost ~10x).
* **Retrieval vectors**: for scale i, what the decoder reconstructs from the
  first i+1 scales' codes, area-pooled to ``retrieval_grids[i]^3`` cells (4, 4, 4,
  6: 64, 64, 64 and 216 dims), centred and L2-normalised, so that their cosine is
  the Pearson correlation of the two reconstructions at that detail. (Pooling the
  quantized latent itself, ``retrieval_from="latent"``, was measurably worse for
  retrieval: see the README.)
* Optional **KL term** (``kl_weight > 0``): the encoder predicts a log-variance
  too, ``f`` is sampled in training, and ``KL(q(f|x) || N(0, I))`` is added.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from encoder.code import MultiScaleCode
from encoder.quantize import ResidualQuantizer
from encoder.wavelet import haar_forward, haar_inverse, haar_pyramid

#: Haar levels before the first / after the last convolution (G -> G/4).
HAAR_LEVELS = 2

#: Config fields added after checkpoints were first shipped, with the value that
#: reproduces the older behaviour: filled in when an older config is read, and
#: left out of the content hash at that value, so older checkpoints keep theirs.
ADDED_FIELDS = {
    "coarse_codebook_size": None,
    "prefix_trains_encoder": True,
    "retrieval_from": "latent",
    "retrieval_grids": None,
    "decoder_knows_scales": False,
}
# (retrieval_grids=None is also the current default: it stays out of the hash
# either way, and retrieval_from decides what None means)


@dataclass(frozen=True)
class CryoSwanConfig:
    """Model configuration (saved with every checkpoint)."""

    grid: int = 64
    scales: tuple[int, ...] = (1, 2, 4, 8)
    depths: tuple[int, ...] = (1, 1, 1, 2)
    codebook_size: int = 1024
    #: codebook size of the scales before the last (``None``: ``codebook_size``)
    coarse_codebook_size: int | None = 256
    latent_dim: int = 32
    channels: tuple[int, int] = (32, 64)
    groups: int = 8
    kl_weight: float = 0.0
    commitment: float = 0.25
    ema_decay: float = 0.99
    prefix_weight: float = 0.25
    #: whether the partial-code loss also trains the encoder (else only the
    #: decoder and the refinement convs learn to read partial codes)
    prefix_trains_encoder: bool = False
    #: what a scale's retrieval vector is pooled from: "reconstruction" (what the
    #: decoder makes of the first scales' codes) or "latent" (the cumulative
    #: quantized latent itself, as the first checkpoints did)
    retrieval_from: str = "reconstruction"
    #: per scale, the side of the cell grid the vector is pooled to (None: from
    #: the reconstruction, 4 for the coarser scales and 6 for the finest, i.e.
    #: 64 and 216 dims; from the latent, min(side, 2))
    retrieval_grids: tuple[int, ...] | None = None
    #: whether the decoder is told how many scales it reads (a learned bias per
    #: count after its first convolution, zero at the start), so that partial
    #: and full codes need not share one decoding
    decoder_knows_scales: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.grid // 8
        if self.grid % 8 or self.grid < 16:
            raise ValueError(f"grid={self.grid}: use a multiple of 8, at least 16")
        if list(self.scales) != sorted(self.scales) or self.scales[-1] != n:
            raise ValueError(
                f"scales {self.scales} must increase and end at grid/8={n}"
            )
        if len(self.channels) != 2:
            raise ValueError("channels takes two widths: (at G/4, at G/8)")
        if len(self.depths) != len(self.scales):
            raise ValueError("depths needs one entry per scale")
        if self.retrieval_from not in ("reconstruction", "latent"):
            raise ValueError("retrieval_from: use 'reconstruction' or 'latent'")
        if self.retrieval_grids is not None and (
            len(self.retrieval_grids) != len(self.scales)
            or min(self.retrieval_grids) < 1
        ):
            raise ValueError("retrieval_grids needs one positive side per scale")

    def for_grid(self, grid: int) -> CryoSwanConfig:
        """This config at another grid: scales beyond grid/8 are dropped."""
        n = grid // 8
        keep = [i for i, side in enumerate(self.scales) if side < n]
        scales = tuple(self.scales[i] for i in keep) + (n,)
        depths = tuple(self.depths[i] for i in keep) + (self.depths[-1],)
        grids = self.retrieval_grids
        if grids is not None:
            grids = tuple(grids[i] for i in keep) + (grids[-1],)
        return replace(
            self, grid=grid, scales=scales, depths=depths, retrieval_grids=grids
        )

    @property
    def latent_side(self) -> int:
        return self.grid // 8

    @property
    def retrieval_cells(self) -> tuple[int, ...]:
        """Per scale, the side of the grid its retrieval vector is pooled to."""
        if self.retrieval_grids is not None:
            return tuple(self.retrieval_grids)
        if self.retrieval_from == "latent":
            return tuple(min(s, 2) for s in self.scales)
        return (4,) * (len(self.scales) - 1) + (6,)

    @property
    def retrieval_dims(self) -> tuple[int, ...]:
        """Dimension of each scale's retrieval vector."""
        per_cell = 1 if self.retrieval_from == "reconstruction" else self.latent_dim
        return tuple(per_cell * g**3 for g in self.retrieval_cells)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        """Codebook size of each scale, coarse to fine."""
        coarse = self.coarse_codebook_size or self.codebook_size
        return (coarse,) * (len(self.scales) - 1) + (self.codebook_size,)

    def bits(self, up_to: int | None = None) -> int:
        """Bits per map of the first ``up_to`` scales' tokens (all by default)."""
        k = len(self.scales) if up_to is None else up_to
        return int(
            sum(
                d * s**3 * math.log2(size)
                for d, s, size in zip(
                    self.depths[:k],
                    self.scales[:k],
                    self.codebook_sizes[:k],
                    strict=True,
                )
            )
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("scales", "depths", "channels", "retrieval_grids"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CryoSwanConfig:
        d = dict(d)
        for key, legacy in ADDED_FIELDS.items():
            d.setdefault(key, legacy)
        for key in ("scales", "depths", "channels", "retrieval_grids"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)


class _ReconstructionLoss(torch.autograd.Function):
    """MSE + 0.5 L1 of ``recon`` against ``target`` and its gradient, from one
    difference volume: the same as ``F.mse_loss + 0.5 * F.l1_loss`` with a third
    of their full-size passes."""

    @staticmethod
    def forward(ctx, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = recon - target
        ctx.save_for_backward(diff)
        return (diff.square().sum() + 0.5 * diff.abs().sum()) / diff.numel()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        (diff,) = ctx.saved_tensors
        scale = grad / diff.numel()
        out = torch.sign(diff).mul_(0.5 * scale).add_(diff * (2 * scale))
        return out, None


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The reconstruction loss, ``MSE + 0.5 * L1`` (mean over voxels); the
    target gets no gradient."""
    return _ReconstructionLoss.apply(recon, target.detach())


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, twice, plus the input."""

    def __init__(self, ch: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(groups, ch),
            nn.SiLU(),
            nn.Conv3d(ch, ch, 3, padding=1),
            nn.GroupNorm(groups, ch),
            nn.SiLU(),
            nn.Conv3d(ch, ch, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    """Two Haar levels (lossless, G -> G/4 with 64 bands), conv stages to G/8."""

    def __init__(self, cfg: CryoSwanConfig) -> None:
        super().__init__()
        c1, c2 = cfg.channels
        g = cfg.groups
        self.stages = nn.Sequential(
            nn.Conv3d(8**HAAR_LEVELS, c1, 3, padding=1),
            ResBlock(c1, g),
            nn.Conv3d(c1, c2, 2, stride=2),
            ResBlock(c2, g),
            nn.GroupNorm(g, c2),
            nn.SiLU(),
        )
        out = cfg.latent_dim * (2 if cfg.kl_weight > 0 else 1)
        self.proj = nn.Conv3d(c2 + 1, out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stages(haar_forward(x, HAAR_LEVELS))
        low = haar_pyramid(x, 3)[-1]  # global shape: the low-pass band at n^3
        return self.proj(torch.cat([h, low], dim=1))


class Decoder(nn.Module):
    """Conv stages from G/8 to G/4, a head predicting 64 Haar bands, two inverse
    Haar levels back to G: no convolution runs above G/4."""

    def __init__(self, cfg: CryoSwanConfig) -> None:
        super().__init__()
        c1, c2 = cfg.channels
        g = cfg.groups
        self.n_scales = len(cfg.scales)
        #: per number of scales read, a bias after the first convolution
        #: (``decoder_knows_scales``; None: one decoding for every prefix)
        self.scale_bias = (
            nn.Parameter(torch.zeros(self.n_scales, c2))
            if cfg.decoder_knows_scales
            else None
        )
        self.net = nn.Sequential(
            nn.Conv3d(cfg.latent_dim, c2, 3, padding=1),
            ResBlock(c2, g),
            nn.ConvTranspose3d(c2, c1, 2, stride=2),
            ResBlock(c1, g),
            nn.GroupNorm(g, c1),
            nn.SiLU(),
            nn.Conv3d(c1, 8**HAAR_LEVELS, 3, padding=1),
        )

    def _trunk(
        self, f_hat: torch.Tensor, up_to: int | torch.Tensor | None
    ) -> torch.Tensor:
        """Every layer but the head. ``up_to``: how many scales ``f_hat`` holds
        (an int, or one per map; None: all), read when the decoder knows it."""
        if self.scale_bias is None:
            return self.net[:-1](f_hat)
        h = self.net[0](f_hat)
        if up_to is None:
            bias = self.scale_bias[-1].expand(len(h), -1)
        elif isinstance(up_to, torch.Tensor):
            bias = self.scale_bias[up_to.long() - 1]
        else:
            bias = self.scale_bias[up_to - 1].expand(len(h), -1)
        return self.net[1:-1](h + bias.to(h.dtype)[:, :, None, None, None])

    def bands(
        self, f_hat: torch.Tensor, up_to: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        """The 64 Haar bands at G/4 that :meth:`forward` inverts."""
        return self.net[-1](self._trunk(f_hat, up_to))

    def low_band(
        self, f_hat: torch.Tensor, up_to: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Band 0 of :meth:`bands` alone, ``[B, 1, G/4, G/4, G/4]``: the
        low-pass, 2^(1.5 L) times the reconstruction's mean over each block of
        2^L voxels per axis (L Haar levels). Its head is one output channel of
        the 64, so it costs about half a full decoder pass."""
        head = self.net[-1]
        trunk = self._trunk(f_hat, up_to)
        return F.conv3d(trunk, head.weight[:1], head.bias[:1], padding=1)

    def forward(
        self, f_hat: torch.Tensor, up_to: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        return haar_inverse(self.bands(f_hat, up_to), HAAR_LEVELS)


#: The canonical surface: canonical values at or above it are inside the map's
#: contour (:mod:`ingest.canonical`).
CANONICAL_SURFACE = 0.5


#: Width of the ramp below the surface level over which :func:`to_surface`
#: lifts decoded values to the canonical surface.
SURFACE_RAMP = 0.05


def to_surface(volume: torch.Tensor, level: float) -> torch.Tensor:
    """Decoded values mapped so that ``level`` becomes the canonical surface
    (0.5): values from ``level`` to 1 are spread linearly over 0.5 to 1, those
    within :data:`SURFACE_RAMP` below ``level`` rise linearly to 0.5, and lower
    ones stay as they are (monotone and continuous; the order of values kept).
    Why: the decoder's output is smoother than its input, so its surface sits
    below 0.5 (:func:`encoder.evaluate.choose_surface_level`); lifting only the
    values near and above the level moves the surface there while leaving the
    background as decoded. On 400 training-split items of ``runs/ds`` this
    keeps the Pearson correlation with the input at 0.902 (0.904 decoded as it
    is), where stretching all values below the level linearly gave 0.891 at the
    same IoU."""
    if level == CANONICAL_SURFACE:
        return volume
    if not SURFACE_RAMP < level < 1.0:
        raise ValueError(f"surface level {level}: use a value in ({SURFACE_RAMP}, 1)")
    foot = level - SURFACE_RAMP
    ramp = foot + (volume - foot) * ((CANONICAL_SURFACE - foot) / SURFACE_RAMP)
    high = CANONICAL_SURFACE + (volume - level) * (
        (1 - CANONICAL_SURFACE) / (1 - level)
    )
    return torch.where(volume < foot, volume, torch.where(volume < level, ramp, high))


class CryoSwan(nn.Module):
    """The Cryo-SWAN autoencoder (see the module docstring)."""

    def __init__(self, config: CryoSwanConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        d = config.latent_dim
        self.quantizers = nn.ModuleList(
            ResidualQuantizer(depth, size, d, config.ema_decay)
            for depth, size in zip(config.depths, config.codebook_sizes, strict=True)
        )
        self.phi = nn.ModuleList(nn.Conv3d(d, d, 3, padding=1) for _ in config.scales)
        for conv in self.phi:  # start as the identity: a plain residual quantizer
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.checkpoint_hash = "untrained"
        #: the decoded value made the canonical surface in the full code's
        #: reconstruction (:meth:`decode_indices`, :func:`to_surface`); chosen
        #: after training on the training split
        #: and kept in the checkpoint beside the weights (not in their hash:
        #: the codes do not depend on it)
        self.surface_level = CANONICAL_SURFACE

    # -- the multi-scale quantizer ------------------------------------------------
    def _upsample(self, q: torch.Tensor, i: int) -> torch.Tensor:
        n = self.config.latent_side
        if q.shape[-1] != n:
            q = F.interpolate(q, size=(n, n, n), mode="trilinear", align_corners=False)
        return q + 0.5 * self.phi[i](q)

    def cumulative_latents(self, indices: list[torch.Tensor]) -> list[torch.Tensor]:
        """``f_hat`` ``[B, D, n, n, n]`` after each of the first ``len(indices)``
        scales, from their indices (each ``[B, depth_s, s, s, s]``)."""
        f_hat, cumulative = 0, []
        for i, idx in enumerate(indices):
            q = self.quantizers[i].decode(idx.long().transpose(0, 1))
            f_hat = f_hat + self._upsample(q.permute(0, 4, 1, 2, 3), i)
            cumulative.append(f_hat)
        return cumulative

    def _quantize(
        self, f: torch.Tensor, keep: list[torch.Tensor] | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Returns cumulative reconstructions per scale, indices per scale, and the
        sum of per-scale quantization errors (for the codebook/phi loss). ``keep``:
        the first scales' indices, taken as given; the finer scales then quantize
        what those leave of ``f``."""
        b, d = f.shape[:2]
        keep = list(keep or [])
        cumulative = self.cumulative_latents(keep)
        indices = [k.long() for k in keep]
        f_hat = cumulative[-1] if cumulative else torch.zeros_like(f)
        for i, side in enumerate(self.config.scales[len(keep) :], start=len(keep)):
            rest = F.adaptive_avg_pool3d(f.detach() - f_hat.detach(), side)
            flat = rest.permute(0, 2, 3, 4, 1).reshape(-1, d)
            q, idx = self.quantizers[i](flat)
            q = q.reshape(b, side, side, side, d).permute(0, 4, 1, 2, 3)
            f_hat = f_hat + self._upsample(q, i)
            cumulative.append(f_hat)
            indices.append(idx.reshape(-1, b, side, side, side).transpose(0, 1))
        return cumulative, indices, f_hat

    def encode_latent(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-quantization latent ``f`` and the KL term (0 when disabled)."""
        h = self.encoder(x)
        if self.config.kl_weight <= 0:
            return h, h.new_zeros(())
        mu, logvar = h.chunk(2, dim=1)
        logvar = logvar.clamp(-10, 10)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).mean()
        f = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return f, kl

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training forward pass: reconstruction and the loss terms.

        Args:
            x: ``[B, 1, G, G, G]`` canonical volumes.

        Returns:
            dict with ``recon`` ``[B, 1, G, G, G]``, ``loss`` and its parts.
        """
        f, kl = self.encode_latent(x)
        # the nearest-code search and the codebooks' updates in float32 under
        # a lower-precision autocast (encoder.train's --precision bf16)
        with torch.autocast(x.device.type, enabled=False):
            f = f.float()
            cumulative, _, f_hat = self._quantize(f)
        cfg = self.config
        commit = F.mse_loss(f, f_hat.detach())
        fit = F.mse_loss(f_hat, f.detach())  # trains phi
        f_st = f + (f_hat - f).detach()  # straight-through
        prefix = None
        if cfg.prefix_weight > 0 and len(cfg.scales) > 1 and self.training:
            # Teach the decoder to read partial codes: decode(up_to=s) of a random s.
            # (s stays a tensor: a compiled step neither breaks nor recompiles
            # for it; the same draw and values as indexing the list by int)
            s = torch.randint(1, len(cfg.scales), ())
            half = max(1, x.shape[0] // 2)
            prefix = torch.stack(cumulative[:-1])[s - 1, :half]  # grads to phi only
            if cfg.prefix_trains_encoder:  # straight-through to the encoder too
                prefix = f[:half] + (prefix - f[:half]).detach()
            # One decoder pass for both (the decoder treats each map on its own).
            # The partial reconstructions only enter an MSE, which the orthonormal
            # Haar transform preserves: it is taken on the bands.
            read = torch.cat(
                [
                    torch.full((len(x),), len(cfg.scales), device=x.device),
                    s.to(x.device).expand(half),
                ]
            )
            bands, part = self.decoder.bands(torch.cat([f_st, prefix]), read).split(
                [len(x), half]
            )
            recon = haar_inverse(bands, HAAR_LEVELS)
        else:
            recon = self.decoder(f_st)
        rec_loss = reconstruction_loss(recon, x)
        loss = rec_loss + cfg.commitment * commit + fit + cfg.kl_weight * kl
        out = {
            "recon": recon,
            "rec_loss": rec_loss.detach(),
            "commit": commit.detach(),
            "kl": kl.detach(),
        }
        if prefix is not None:
            prefix_loss = F.mse_loss(part, haar_forward(x[:half], HAAR_LEVELS))
            loss = loss + cfg.prefix_weight * prefix_loss
            out["prefix_loss"] = prefix_loss.detach()
        out["loss"] = loss
        return out

    # -- inference ----------------------------------------------------------------
    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Token indices per scale, each ``[B, depth_s, s, s, s]`` (int64)."""
        f, _ = self.encode_latent(x)
        return self._quantize(f)[1]

    @torch.no_grad()
    def decode_indices(
        self, indices: list[torch.Tensor], up_to: int | None = None
    ) -> torch.Tensor:
        """Reconstruct ``[B, 1, G, G, G]`` from the first ``up_to`` scales' tokens.

        The full code's reconstruction has its surface put at 0.5
        (:attr:`surface_level`, chosen for the full code); a partial code's is
        the decoder's output as it is (the coarse shape, whose error falls
        scale by scale: ``benchmarks/bench_coarse_to_fine.py``)."""
        n_scales = len(self.config.scales)
        up_to = n_scales if up_to is None else up_to
        if not 1 <= up_to <= n_scales:
            raise ValueError(f"up_to={up_to}: use 1..{n_scales}")
        latent = self.cumulative_latents(list(indices[:up_to]))[-1]
        recon = self.decoder(latent, up_to)
        return to_surface(recon, self.surface_level) if up_to == n_scales else recon

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> MultiScaleCode:
        """Encode a batch ``[B, 1, G, G, G]`` into a :class:`MultiScaleCode`."""
        f, _ = self.encode_latent(x)
        cumulative, indices, _ = self._quantize(f)
        vectors = []
        cfg = self.config
        bands = x.shape[-1] >> HAAR_LEVELS  # side of the decoder's Haar bands
        for s, (f_hat, cells) in enumerate(
            zip(cumulative, cfg.retrieval_cells, strict=True)
        ):
            if cfg.retrieval_from == "latent":
                pooled = F.adaptive_avg_pool3d(f_hat, cells).flatten(1)
                vectors.append(F.normalize(pooled, dim=1).cpu().numpy())
                vectors[-1] = vectors[-1].astype(np.float32, copy=False)
                continue
            # the reconstruction from the scales so far, centred (cosine:
            # Pearson). It depends on those scales' tokens only: maps that share
            # them (the candidate poses of one map often do at the coarse
            # scales) are decoded once.
            prefix = torch.cat([t.flatten(1) for t in indices[: s + 1]], dim=1)
            _, back = prefix.unique(dim=0, return_inverse=True)
            every = torch.arange(len(back), device=back.device)
            first = torch.empty_like(every[: int(back.max()) + 1 if len(back) else 0])
            first.scatter_(0, back, every)  # one row of each (any: they are equal)
            if bands % cells == 0:
                # cells of whole Haar blocks: their means are the low-pass band's,
                # scaled (the detail bands sum to 0 over a block), which the
                # centring and normalising below take out
                recon = self.decoder.low_band(f_hat[first], s + 1)
            else:
                recon = self.decoder(f_hat[first], s + 1)
            pooled = F.adaptive_avg_pool3d(recon, cells).flatten(1)[back]
            pooled = pooled - pooled.mean(dim=1, keepdim=True)
            vectors.append(F.normalize(pooled, dim=1).cpu().numpy().astype(np.float32))
        tokens = tuple(t.cpu().numpy().astype(np.int16) for t in indices)
        return MultiScaleCode(
            tuple(self.config.scales), tokens, tuple(vectors), self.checkpoint_hash
        )

    @torch.no_grad()
    def decode(self, code: MultiScaleCode, up_to: int | None = None) -> torch.Tensor:
        """Reconstruct from a :class:`MultiScaleCode` (first ``up_to`` scales)."""
        if code.checkpoint_hash != self.checkpoint_hash:
            raise ValueError(
                f"code was made by checkpoint {code.checkpoint_hash[:12]}, this model "
                f"is {self.checkpoint_hash[:12]}; re-encode with the same checkpoint"
            )
        device = next(self.parameters()).device
        idx = [torch.from_numpy(t.astype(np.int64)).to(device) for t in code.tokens]
        return self.decode_indices(idx, up_to)

    def codebook_stats(self) -> list[list[dict[str, float]]]:
        """Per scale, per depth: perplexity and dead (unused) codes."""
        return [[cb.stats() for cb in q.codebooks] for q in self.quantizers]

    def bits_per_map(self) -> int:
        return self.config.bits()
