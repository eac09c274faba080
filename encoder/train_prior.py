"""Training the latent prior (:mod:`encoder.prior`) on a dataset folder.

The encoder is frozen: each split's volumes are encoded once into latents ``f`` and
tokens, cached in ``OUT/latents_<split>.pt`` (tied to the encoder's hash and the
dataset's manifest; the training split also in one random half turn per item,
the augmentation ``swan train`` uses). The loop is ``swan train``'s: resumable
from ``OUT/last.pt``, tqdm, ``OUT/metrics.jsonl`` (training loss every
``log_every`` steps, held-out loss every ``val_every``), and ``OUT/prior.pt``
without optimizer state at the end (what is shipped).

Held-out loss: for ``flow``, the flow-matching loss on the validation split with
fixed noise and times; for ``tokens``, the negative log-likelihood of all its
tokens in bits per map.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from encoder.checkpoint import atomic_save, load_checkpoint
from encoder.model import CryoSwan
from encoder.prior import LatentPrior, PriorConfig, load_prior, prior_blob
from encoder.train import (
    RunConfig,
    _half_turns,
    _lr,
    _progress,
    restore,
    start_run,
    step_bar,
)
from encoder.training_data.dataset import load_split

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class PriorTrainConfig(RunConfig):
    """One prior training run (saved in the prior file's ``extra``)."""

    dataset: str
    encoder: str
    out: str
    prior: PriorConfig = field(default_factory=PriorConfig)
    batch_size: int = 32
    lr: float = 1e-3
    val_every: int = 250
    #: a prior file of this encoder to start from (its weights and normalisation)
    init: str | None = None
    #: completion: SIMULATED partial/whole pairs made per training volume
    pairs_per_item: int = 4


#: Completion pairs are encoded this many at a time (their volumes then dropped).
PAIR_CHUNK = 256


@torch.no_grad()
def encode_split(
    encoder: CryoSwan, volumes: torch.Tensor, batch_size: int = 32
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Latents ``[N, D, n, n, n]`` and tokens per scale of uint8 ``volumes``."""
    device = encoder.phi[0].weight.device
    if len(volumes) == 0:
        cfg, n = encoder.config, encoder.config.latent_side
        return torch.zeros(0, cfg.latent_dim, n, n, n), [
            torch.zeros(0, d, s, s, s, dtype=torch.int16)
            for d, s in zip(cfg.depths, cfg.scales, strict=True)
        ]
    fs, toks = [], []
    for i in range(0, len(volumes), batch_size):
        x = volumes[i : i + batch_size].to(device).float().div_(255).unsqueeze(1)
        f, _ = encoder.encode_latent(x)
        fs.append(f.cpu())
        toks.append([t.cpu().short() for t in encoder._quantize(f)[1]])
    tokens = [torch.cat([t[s] for t in toks]) for s in range(len(toks[0]))]
    return torch.cat(fs), tokens


def _cache_key(encoder: CryoSwan, dataset: str, extra: str = "") -> str:
    """What a cache of ``dataset``'s latents depends on: the encoder, the
    dataset's manifest and ``extra`` (refuses a folder that is not a dataset)."""
    manifest = Path(dataset) / "manifest.json"
    if not manifest.is_file():
        raise ValueError(
            f"{dataset}: not a dataset folder (no manifest.json); "
            "build one with `swan dataset build`"
        )
    text = encoder.checkpoint_hash + manifest.read_bytes().hex() + extra
    return hashlib.sha256(text.encode()).hexdigest()


def cached_latents(
    encoder: CryoSwan, dataset: str, split: str, out: Path, seed: int
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A split's latents and tokens, from ``out`` when cached for this encoder and
    dataset, else encoded (the training split twice: as is and half-turned)."""
    key = _cache_key(encoder, dataset)
    path = out / f"latents_{split}.pt"
    if path.exists():
        blob = torch.load(path, weights_only=True)
        if blob.get("key") == key:
            return blob["f"], blob["tokens"]
    volumes = torch.from_numpy(load_split(dataset, split))
    if split == "train" and len(volumes):
        gen = torch.Generator().manual_seed(seed)
        turned = _half_turns(volumes.unsqueeze(1), gen).squeeze(1)
        volumes = torch.cat([volumes, turned])
    f, tokens = encode_split(encoder, volumes)
    atomic_save({"key": key, "f": f.half(), "tokens": tokens}, path)
    return f.half(), tokens


def completion_pairs(
    encoder: CryoSwan,
    dataset: str,
    split: str,
    out: Path,
    seed: int,
    per_item: int,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents of SIMULATED partial/whole pairs (:func:`encoder.completion.
    completion_pair`, ``per_item`` per volume of ``split``): ``(whole, partial)``,
    both in the partial map's frame; cached in ``out`` for this encoder, dataset,
    seed and count."""
    import numpy as np
    from tqdm import tqdm

    from encoder.completion import completion_pair

    if per_item < 1:
        raise ValueError(f"--pairs-per-item {per_item}: make at least one pair")
    key = _cache_key(encoder, dataset, f"completion {seed} {per_item}")
    path = out / f"completion_{split}.pt"
    if path.exists():
        blob = torch.load(path, weights_only=True)
        if blob.get("key") == key:
            return blob["whole"], blob["partial"]
    volumes = load_split(dataset, split)
    rng = np.random.default_rng([seed, len(split)])
    empty = encode_split(encoder, torch.zeros(0))[0]  # an empty split: no pairs
    wholes, partials = [empty], [empty]
    chunk: list[tuple[np.ndarray, np.ndarray]] = []

    def flush() -> None:  # encode a chunk of pairs: memory holds latents only
        if chunk:
            for i, kept in enumerate((wholes, partials)):
                stack = torch.from_numpy(np.stack([pair[i] for pair in chunk]))
                kept.append(encode_split(encoder, stack)[0].half())
            chunk.clear()

    items = [(i, r) for i in range(len(volumes)) for r in range(per_item)]
    for i, _ in tqdm(items, desc=f"pairs {split}", disable=not progress):
        try:
            p, w, _ = completion_pair(volumes[i].astype(np.float32) / 255, rng)
        except ValueError as err:  # a volume too small to cut, or one left empty
            log.warning("%s item %d: no pair (%s)", split, i, err)
            continue
        chunk.append(
            (np.round(w * 255).astype(np.uint8), np.round(p * 255).astype(np.uint8))
        )
        if len(chunk) == PAIR_CHUNK:
            flush()
    flush()
    blob = {
        "key": key,
        "whole": torch.cat([t.half() for t in wholes]),
        "partial": torch.cat([t.half() for t in partials]),
    }
    atomic_save(blob, path)
    return blob["whole"], blob["partial"]


def _batch_loss(
    prior: LatentPrior,
    encoder: CryoSwan,
    f: torch.Tensor,
    tokens: list[torch.Tensor],
    gen: torch.Generator,
) -> torch.Tensor:
    """One batch's training loss (a random number of kept scales per map; for a
    completion prior, ``tokens`` is ``[partial latents]``)."""
    if prior.config.task == "completion":
        k = torch.full((len(f),), prior.config.completion_k, device=f.device)
        return prior.flow_loss(f, tokens[0].float(), k)
    n_scales = len(tokens)
    if prior.config.kind == "tokens":
        k = int(torch.randint(0, n_scales, (), generator=gen))
        cond = encoder.cumulative_latents(tokens[:k])[-1] if k else f * 0
        nll = prior.token_nll(cond, k, tokens[k])
        return nll.mean() / tokens[k][0].numel()  # nats per token
    k = torch.randint(0, n_scales, (len(f),), generator=gen).to(f.device)
    cumulative = [f * 0, *encoder.cumulative_latents(tokens[:-1])]
    cond = torch.stack(cumulative)[k, torch.arange(len(f), device=f.device)]
    return prior.flow_loss(f, cond, k)


@torch.no_grad()
def held_out_loss(
    prior: LatentPrior,
    encoder: CryoSwan,
    f: torch.Tensor,
    tokens: list[torch.Tensor],
    batch_size: int = 64,
) -> float:
    """Flow: mean flow loss over every number of kept scales, with fixed noise and
    times (seed 0); tokens: bits per map of all tokens."""
    prior.eval()
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    device = encoder.phi[0].weight.device
    total, n = 0.0, 0
    for i in range(0, len(f), batch_size):
        fb = f[i : i + batch_size].to(device).float()
        tb = [t[i : i + batch_size].to(device) for t in tokens]
        if prior.config.task == "completion":  # tokens: [partial latents]
            ks = torch.full((len(fb),), prior.config.completion_k, device=device)
            total += float(prior.flow_loss(fb, tb[0].float(), ks)) * len(fb)
            n += len(fb)
            continue
        cumulative = [fb * 0, *encoder.cumulative_latents(tb[:-1])]
        for k in range(len(tb)):
            if prior.config.kind == "tokens":
                total += float(prior.token_nll(cumulative[k], k, tb[k]).sum()) / 0.6931
            else:
                ks = torch.full((len(fb),), k, device=device, dtype=torch.long)
                total += (
                    float(prior.flow_loss(fb, cumulative[k], ks)) * len(fb) / len(tb)
                )
        n += len(fb)
    torch.random.set_rng_state(state)
    prior.train()
    return total / max(n, 1)


def train_prior(cfg: PriorTrainConfig, progress: bool = True) -> Path:
    """Train (or resume) a prior; returns the path of the final ``prior.pt``.

    Raises:
        ValueError: bad dataset folder or encoder file, empty split, bad settings,
            or a ``last.pt`` of another encoder in ``out``.
    """
    out, device = start_run(cfg, cfg.out)
    encoder, _ = load_checkpoint(cfg.encoder, map_location=device)
    if not isinstance(encoder, CryoSwan):
        raise ValueError(f"{cfg.encoder}: a baseline checkpoint; use a Cryo-SWAN one")
    encoder.requires_grad_(False)
    if cfg.prior.task == "completion":
        pairs = {
            split: completion_pairs(
                encoder, cfg.dataset, split, out, cfg.seed, cfg.pairs_per_item
            )
            for split in ("train", "val")
        }
        (f_train, p_train), (f_val, p_val) = pairs["train"], pairs["val"]
        t_train, t_val = [p_train], [p_val]
    else:
        f_train, t_train = cached_latents(encoder, cfg.dataset, "train", out, cfg.seed)
        f_val, t_val = cached_latents(encoder, cfg.dataset, "val", out, cfg.seed)
    if len(f_train) == 0:
        raise ValueError(f"{cfg.dataset}: the training split is empty")
    f_train, t_train = f_train.to(device), [t.to(device) for t in t_train]
    f_val, t_val = f_val[:256], [t[:256] for t in t_val]
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    config = PriorConfig.for_encoder(encoder, **_shape(cfg.prior))
    prior = LatentPrior(config).to(device)
    flat = f_train.float().transpose(0, 1).flatten(1)  # [D, N * n^3]
    prior.mean.copy_(flat.mean(1).reshape(prior.mean.shape))
    prior.std.copy_(flat.std(1).clamp_min(1e-4).reshape(prior.std.shape))
    prior.encoder_hash = encoder.checkpoint_hash
    if cfg.init:  # its weights and normalisation; the config's shape must match
        start, _ = load_prior(cfg.init, encoder, map_location=device)
        if _shape(start.config) | {"task": cfg.prior.task} != _shape(config):
            raise ValueError(
                f"{cfg.init}: a prior of another shape ({_shape(start.config)}); "
                "pass --kind, --channels and --blocks as it has them"
            )
        prior.load_state_dict(start.state_dict())
    opt = torch.optim.AdamW(
        prior.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    step = 0
    last = out / "last.pt"
    if last.exists():
        resumed, blob = load_prior(last, encoder, map_location=device)
        step = restore(prior, opt, gen, cfg.seed, resumed, blob)
    extra = {
        "train": {**asdict(cfg), "prior": config.to_dict()},
        "argv": sys.argv,
        "train_items": len(f_train),
    }
    seconds = 0.0
    if last.exists():
        seconds = float(torch.load(last, weights_only=True)["extra"].get("seconds", 0))
    prior.train()
    metrics = open(out / "metrics.jsonl", "a")
    started = time.time()
    deadline = started + cfg.minutes * 60 if cfg.minutes else None
    bar = step_bar(cfg, step, f"prior-{config.kind}", progress)

    def save(path: Path, with_opt: bool) -> None:
        done = {**extra, "seconds": round(seconds + time.time() - started, 1)}
        atomic_save(prior_blob(prior, step, opt if with_opt else None, done), path)

    def log_line(rec: dict) -> None:
        metrics.write(json.dumps(rec) + "\n")
        metrics.flush()

    while step < cfg.steps and (deadline is None or time.time() < deadline):
        idx = torch.randint(0, len(f_train), (cfg.batch_size,), generator=gen)
        idx = idx.to(device)
        f = f_train[idx].float()
        tokens = [t[idx] for t in t_train]
        for group in opt.param_groups:
            group["lr"] = _lr(cfg, _progress(cfg, step, time.time() - started))
        loss = _batch_loss(prior, encoder, f, tokens, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update()
        if step % cfg.log_every == 0:
            rec = {"step": step, "time": round(time.time() - started, 1)}
            log_line({**rec, "loss": round(float(loss.detach()), 6)})
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        if step % cfg.val_every == 0 and len(f_val):
            val = held_out_loss(prior, encoder, f_val, t_val)
            log_line({"step": step, "val_loss": round(val, 6)})
        if step % cfg.checkpoint_every == 0:
            save(last, True)
    bar.close()
    save(last, True)
    if len(f_val):
        val = held_out_loss(prior, encoder, f_val, t_val)
        log_line({"step": step, "final_val_loss": round(val, 6)})
    metrics.close()
    prior.eval()
    final = out / "prior.pt"
    save(final, False)
    return final


def _shape(cfg: PriorConfig) -> dict:
    """The fields of a prior config that are the prior's own (not the encoder's)."""
    keys = ("kind", "task", "channels", "blocks", "steps")
    return {k: getattr(cfg, k) for k in keys}


__all__ = [
    "PriorTrainConfig",
    "completion_pairs",
    "encode_split",
    "held_out_loss",
    "train_prior",
]
