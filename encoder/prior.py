"""A generative prior over the Cryo-SWAN latent, coarse to fine.

Data flow (``f`` ``[B, D, n, n, n]`` is the encoder's latent before quantization,
D = 32 and n = 8 for the shipped encoder; ``f_hat_k`` is what the first k scales'
codes reconstruct of it, :meth:`CryoSwan.cumulative_latents`):

* **Flow matching** (``kind="flow"``, the shipped one): a velocity field
  ``v(x_t, t | f_hat_k, k)`` over the normalised latent, trained on straight
  paths ``x_t = (1 - t) noise + t f`` (rectified flow) with a random number of
  kept scales k in 0 .. S-1 (k = 0: unconditional). Sampling integrates it from
  noise (t = 0) to data (t = 1) with Euler steps; the latent is then quantized by
  the encoder's own quantizers (the kept scales' tokens taken as given) and
  decoded. **Denoising** (SDEdit) starts from a noisy map's latent mixed with
  noise at ``t = 1 - strength`` and integrates the rest of the way.
* **Next-scale tokens** (``kind="tokens"``, VAR-style, the alternative measured
  in docs/prior.md): logits of scale k's tokens (each depth of its residual
  quantizer) given ``f_hat_k`` of the coarser scales, every position of a scale
  predicted in parallel, as VAR does. Sampling goes scale by scale.
  **Denoising** picks, scale by scale, the token that maximises ``strength *
  prior logit - distance`` of the noisy map's residual to the code (over the
  mean nearest distance): strength 0 leaves the noisy map's code as it is.

* **Completion** (``task="completion"``, a flow): the same velocity field,
  conditioned instead on the latent of a map with parts missing (at condition
  index k = S), learns the latent of the whole molecule in that map's frame from
  SIMULATED partial/whole pairs (:mod:`encoder.completion`). Sampling starts from
  the partial map's latent mixed with noise at ``t = 1 - strength``.

Both run one network, :class:`LatentNet`: a small 3D U-Net at n^3 -> (n/2)^3 ->
n^3 whose residual blocks are modulated (FiLM) by embeddings of t and k.

A prior file records the hash of the encoder it was trained on and refuses to load
against another (:func:`load_prior`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from encoder.model import CryoSwan

KINDS = ("flow", "tokens")
#: ``scales``: the latent given its first K scales (denoising, generation);
#: ``completion``: a whole molecule's latent given a partial map's latent, both in
#: the partial map's canonical frame (:mod:`encoder.completion`).
TASKS = ("scales", "completion")
FORMAT = "cryoswan-prior"


@dataclass(frozen=True)
class PriorConfig:
    """The prior's shape (saved with it); the encoder fields come from the encoder.

    Attributes:
        kind: ``"flow"`` or ``"tokens"`` (see the module docstring).
        channels: width of the U-Net at n^3 (twice this at (n/2)^3).
        blocks: residual blocks per level.
        steps: Euler steps of a full sample (a denoise takes ``strength`` of them).
    """

    kind: str = "flow"
    task: str = "scales"
    channels: int = 32
    blocks: int = 1
    steps: int = 32
    latent_dim: int = 32
    latent_side: int = 8
    scales: tuple[int, ...] = (1, 2, 4, 8)
    depths: tuple[int, ...] = (1, 1, 1, 2)
    codebook_sizes: tuple[int, ...] = (256, 256, 256, 1024)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"prior kind {self.kind!r}: use one of {KINDS}")
        if self.task not in TASKS:
            raise ValueError(f"prior task {self.task!r}: use one of {TASKS}")
        if self.task == "completion" and self.kind != "flow":
            raise ValueError("a completion prior is a flow (--kind flow)")
        if self.latent_side % 2 or self.channels % 8:
            raise ValueError("latent side must be even, channels a multiple of 8")

    @classmethod
    def for_encoder(cls, encoder: CryoSwan, **kwargs: Any) -> PriorConfig:
        """A config that fits ``encoder``'s latent and codes."""
        c = encoder.config
        return cls(
            latent_dim=c.latent_dim,
            latent_side=c.latent_side,
            scales=tuple(c.scales),
            depths=tuple(c.depths),
            codebook_sizes=tuple(c.codebook_sizes),
            **kwargs,
        )

    def to_dict(self) -> dict:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if d["task"] == "scales":  # files written before the field keep their hash
            del d["task"]
        return d

    @property
    def completion_k(self) -> int:
        """The condition index a completion prior is run with (one past the
        kept-scale counts 0..S-1 that a ``scales`` prior learns)."""
        return len(self.scales)

    @classmethod
    def from_dict(cls, d: dict) -> PriorConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class Block(nn.Module):
    """GroupNorm-SiLU-conv twice, the second norm modulated by an embedding."""

    def __init__(self, ch: int, emb: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(8, ch), nn.GroupNorm(8, ch)
        self.conv1 = nn.Conv3d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv3d(ch, ch, 3, padding=1)
        self.film = nn.Linear(emb, 2 * ch)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        x = self.conv1(F.silu(self.norm1(h)))
        scale, shift = self.film(e)[:, :, None, None, None].chunk(2, dim=1)
        x = self.norm2(x) * (1 + scale) + shift
        return h + self.conv2(F.silu(x))


def _time_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of ``t`` ``[B]`` in [0, 1] -> ``[B, dim]``."""
    freqs = torch.exp(torch.arange(dim // 2, device=t.device) * (-math.log(1e3) / dim))
    angles = 1e3 * t[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class LatentNet(nn.Module):
    """A 3D U-Net over the latent grid, n^3 -> (n/2)^3 -> n^3, FiLM by (t, k)."""

    def __init__(self, cfg: PriorConfig, in_ch: int, out_ch: int) -> None:
        super().__init__()
        c, e = cfg.channels, cfg.channels
        self.emb_dim = e
        self.t_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.k_emb = nn.Embedding(len(cfg.scales) + 1, e)
        self.inp = nn.Conv3d(in_ch, c, 3, padding=1)
        self.enc = nn.ModuleList(Block(c, e) for _ in range(cfg.blocks))
        self.down = nn.Conv3d(c, 2 * c, 2, stride=2)
        self.mid = nn.ModuleList(Block(2 * c, e) for _ in range(cfg.blocks))
        self.up = nn.ConvTranspose3d(2 * c, c, 2, stride=2)
        self.merge = nn.Conv3d(2 * c, c, 1)
        self.dec = nn.ModuleList(Block(c, e) for _ in range(cfg.blocks))
        self.out_norm = nn.GroupNorm(8, c)
        self.out = nn.Conv3d(c, out_ch, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def features(
        self, x: torch.Tensor, t: torch.Tensor, k: torch.Tensor
    ) -> torch.Tensor:
        """Last feature map ``[B, C, n, n, n]`` (before the output conv)."""
        e = self.t_mlp(_time_features(t, self.emb_dim)) + self.k_emb(k)
        h = self.inp(x)
        for block in self.enc:
            h = block(h, e)
        skip = h
        h = self.down(h)
        for block in self.mid:
            h = block(h, e)
        h = self.merge(torch.cat([self.up(h), skip], dim=1))
        for block in self.dec:
            h = block(h, e)
        return F.silu(self.out_norm(h))

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, k: torch.Tensor
    ) -> torch.Tensor:
        return self.out(self.features(x, t, k))


class LatentPrior(nn.Module):
    """The prior (see the module docstring). ``mean``/``std`` ``[1, D, 1, 1, 1]``
    normalise the latent (set from the training data, saved as buffers)."""

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        self.config = config
        d = config.latent_dim
        self.register_buffer("mean", torch.zeros(1, d, 1, 1, 1))
        self.register_buffer("std", torch.ones(1, d, 1, 1, 1))
        if config.kind == "flow":
            self.net = LatentNet(config, 2 * d, d)
        else:
            self.net = LatentNet(config, d, 1)
            self.heads = nn.ModuleList(
                nn.Conv3d(config.channels, depth * size, 1)
                for depth, size in zip(
                    config.depths, config.codebook_sizes, strict=True
                )
            )
        self.encoder_hash = ""

    def normalise(self, f: torch.Tensor) -> torch.Tensor:
        return (f - self.mean) / self.std

    def denormalise(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean

    # -- flow matching --------------------------------------------------------------
    def velocity(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, k: torch.Tensor
    ) -> torch.Tensor:
        """Velocity at normalised ``x`` ``[B, D, n, n, n]``, time ``t`` ``[B]``, given
        the normalised kept-scale latent ``cond`` (zeros for k = 0) and ``k``."""
        return self.net(torch.cat([x, cond], dim=1), t, k)

    def flow_loss(
        self, f: torch.Tensor, cond: torch.Tensor, k: torch.Tensor
    ) -> torch.Tensor:
        """Rectified-flow loss on raw latents ``f`` and kept-scale latents ``cond``."""
        x1, c = self.normalise(f), self._cond(cond, k)
        x0 = torch.randn_like(x1)
        t = torch.rand(len(x1), device=x1.device)
        xt = (1 - t)[:, None, None, None, None] * x0 + t[:, None, None, None, None] * x1
        return F.mse_loss(self.velocity(xt, t, c, k), x1 - x0)

    def _cond(self, cond: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.where(
            (k > 0)[:, None, None, None, None], self.normalise(cond), 0.0
        )

    @torch.no_grad()
    def integrate(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        k: torch.Tensor,
        t0: float = 0.0,
    ) -> torch.Tensor:
        """Euler steps from normalised ``x`` at time ``t0`` to t = 1; raw latent out.

        ``x`` at t0 is ``t0 * data + (1 - t0) * noise`` (the caller mixes it)."""
        c = self._cond(cond, k)
        n = max(1, round(self.config.steps * (1 - t0)))
        ts = torch.linspace(t0, 1.0, n + 1, device=x.device)
        for a, b in zip(ts[:-1], ts[1:], strict=True):
            x = x + (b - a) * self.velocity(x, a.expand(len(x)), c, k)
        return self.denormalise(x)

    # -- next-scale tokens ----------------------------------------------------------
    def token_logits(self, cond: torch.Tensor, k: int) -> torch.Tensor:
        """Logits ``[B, depth_k, K_k, s, s, s]`` of scale ``k``'s tokens given the
        raw latent ``cond`` of scales < k (ignored for k = 0)."""
        ks = torch.full((len(cond),), k, device=cond.device, dtype=torch.long)
        t = torch.zeros(len(cond), device=cond.device)
        h = self.net.features(self._cond(cond, ks), t, ks)
        side, depth = self.config.scales[k], self.config.depths[k]
        logits = self.heads[k](F.adaptive_avg_pool3d(h, side))
        return logits.reshape(len(cond), depth, -1, side, side, side)

    def token_nll(
        self, cond: torch.Tensor, k: int, tokens: torch.Tensor
    ) -> torch.Tensor:
        """Summed negative log-likelihood (nats) per map of scale ``k``'s tokens."""
        logits = self.token_logits(cond, k)
        nll = F.cross_entropy(logits.transpose(1, 2), tokens.long(), reduction="none")
        return nll.flatten(1).sum(1)


# -- sampling with the encoder ------------------------------------------------------
def _kept(encoder: CryoSwan, keep: list[torch.Tensor], batch: int) -> torch.Tensor:
    cfg = encoder.config
    if not keep:
        n, d = cfg.latent_side, cfg.latent_dim
        return torch.zeros(batch, d, n, n, n, device=encoder.phi[0].weight.device)
    return encoder.cumulative_latents(keep)[-1]


@torch.no_grad()
def sample(
    prior: LatentPrior,
    encoder: CryoSwan,
    n: int,
    keep: list[torch.Tensor] | None = None,
    start: torch.Tensor | None = None,
    strength: float = 1.0,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    given: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Token indices per scale of ``n`` maps drawn from the prior.

    Args:
        prior, encoder: a prior and the encoder it was trained on.
        n: how many maps.
        keep: the first K scales' indices ``[n, depth_s, s, s, s]`` to keep (their
            tokens come out unchanged; the finer scales are sampled given them).
        start: a raw latent ``[n, D, m, m, m]`` to start from (denoising): it is
            mixed with noise at ``t = 1 - strength`` and carried to t = 1.
        strength: in (0, 1]; 1 ignores ``start``.
        generator: for reproducible draws.
        temperature: scales the starting noise (flow) or divides the logits
            (tokens).
        given: for a completion prior (and only for one), the raw latent
            ``[n, D, m, m, m]`` of the partial maps to complete.

    Returns:
        Per scale, int64 ``[n, depth_s, s, s, s]`` indices; decode them with
        ``encoder.decode_indices``.
    """
    check_pair(prior, encoder)
    if not 0 < strength <= 1:
        raise ValueError(f"strength {strength}: use a value in (0, 1]")
    keep = list(keep or [])
    cfg = prior.config
    device = encoder.phi[0].weight.device
    completes = given is not None
    if (cfg.task == "completion") != completes or (completes and keep):
        raise ValueError(
            "a completion prior completes given partial latents (and keeps no "
            "scales); a scales prior takes no given latent"
        )
    cond = given if given is not None else _kept(encoder, keep, n)
    index = cfg.completion_k if given is not None else len(keep)
    k = torch.full((n,), index, dtype=torch.long, device=device)
    if cfg.kind == "tokens":
        return _sample_tokens(
            prior, encoder, keep, n, generator, temperature, start, strength
        )
    side, d = cfg.latent_side, cfg.latent_dim
    noise = torch.randn(n, d, side, side, side, generator=generator).to(device)
    t0 = 0.0
    x = noise * temperature
    if start is not None and strength < 1:
        t0 = 1.0 - strength
        x = t0 * prior.normalise(start) + (1 - t0) * noise
    f = prior.integrate(x, cond, k, t0)
    return encoder._quantize(f, keep=keep)[1]


def _sample_tokens(
    prior: LatentPrior,
    encoder: CryoSwan,
    keep: list[torch.Tensor],
    n: int,
    generator: torch.Generator | None,
    temperature: float,
    start: torch.Tensor | None,
    strength: float,
) -> list[torch.Tensor]:
    """Scale by scale; with ``start``, each token's logits add the prior's
    (weighted by ``strength``) to the closeness of ``start``'s residual to each
    code (a posterior: the prior corrects the noisy map's tokens)."""
    tokens = [t.long() for t in keep]
    for i in range(len(keep), len(prior.config.scales)):
        cond = _kept(encoder, tokens, n)
        logits = prior.token_logits(cond, i) / temperature  # [n, depth, K, s, s, s]
        if start is not None and strength < 1:
            logits = strength * logits + _code_fit(encoder, i, start - cond)
            picked = logits.argmax(dim=2)
        else:
            probs = logits.softmax(dim=2).movedim(2, -1).reshape(-1, logits.shape[2])
            picked = torch.multinomial(probs, 1, generator=generator)
            picked = picked.reshape(logits.shape[:2] + logits.shape[3:])
        tokens.append(picked)
    return tokens


def _code_fit(encoder: CryoSwan, i: int, rest: torch.Tensor) -> torch.Tensor:
    """Minus the squared distance of ``rest`` pooled to scale i to each code of each
    depth (depth j > 0 measured after the nearest codes of depths < j), over the
    mean nearest distance: ``[B, depth, K, s, s, s]``."""
    side = encoder.config.scales[i]
    r = F.adaptive_avg_pool3d(rest, side).permute(0, 2, 3, 4, 1)  # [B, s, s, s, D]
    fits = []
    for codebook in encoder.quantizers[i].codebooks:
        dist = (r[..., None, :] - codebook.embed).pow(2).sum(-1)  # [B, s, s, s, K]
        fits.append(-dist / dist.min(-1).values.mean().clamp_min(1e-6))
        r = r - codebook.lookup(dist.argmin(-1))
    return torch.stack(fits, dim=1).movedim(-1, 2)


# -- files --------------------------------------------------------------------------
def prior_hash(
    config: PriorConfig, state: dict[str, torch.Tensor], encoder: str
) -> str:
    """sha256 of the config, the encoder's hash and every tensor, in key order."""
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    digest.update(encoder.encode())
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(key.encode() + str(tuple(tensor.shape)).encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def prior_blob(
    prior: LatentPrior,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a prior file holds: plain data, loadable with ``weights_only=True``."""
    state = {k: v.detach().cpu() for k, v in prior.state_dict().items()}
    return {
        "format": FORMAT,
        "config": prior.config.to_dict(),
        "state_dict": state,
        "encoder_hash": prior.encoder_hash,
        "hash": prior_hash(prior.config, state, prior.encoder_hash),
        "step": int(step),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "extra": extra or {},
    }


def check_pair(prior: LatentPrior, encoder: CryoSwan) -> None:
    """Raise ``ValueError`` unless ``prior`` was trained on ``encoder``."""
    if prior.encoder_hash != encoder.checkpoint_hash:
        raise ValueError(
            f"the prior was trained on encoder {prior.encoder_hash[:12]}, not on "
            f"{encoder.checkpoint_hash[:12]}; train one for this encoder with "
            "`swan train-prior --encoder CKPT`"
        )


def load_prior(
    path: str | Path,
    encoder: CryoSwan | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[LatentPrior, dict[str, Any]]:
    """Rebuild a prior from its file (eval mode), with the raw blob.

    Args:
        path: a file written by ``swan train-prior``.
        encoder: the encoder to use it with; refused unless it is the one the
            prior was trained on (same checkpoint hash).

    Raises:
        ValueError: one line: not a prior file, corrupt, or another encoder's.
    """
    path = Path(path)
    fix = "pass a file written by `swan train-prior`"
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for a bad file
        raise ValueError(
            f"{path}: not a readable prior ({type(err).__name__}); {fix}"
        ) from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path}: not a Cryo-SWAN prior; {fix}")
    config = PriorConfig.from_dict(blob["config"])
    digest = prior_hash(config, blob["state_dict"], blob["encoder_hash"])
    if digest != blob["hash"]:
        raise ValueError(
            f"{path}: weights do not match the recorded hash; copy it again"
        )
    prior = LatentPrior(config)
    prior.load_state_dict(blob["state_dict"])
    prior.encoder_hash = blob["encoder_hash"]
    prior.eval()
    if encoder is not None:
        try:
            check_pair(prior, encoder)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    return prior, blob
