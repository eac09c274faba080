"""Training loop: resumable, with a progress bar and a JSON-lines metrics log.

``OUT/last.pt`` is written every ``checkpoint_every`` steps and at the end, with the
optimizer state, so a run that stops (or is stopped) resumes where it was by running
the same command again. ``OUT/metrics.jsonl`` gets one line per ``log_every`` steps
(losses, samples/s, codebook perplexity and dead codes per scale) and one per
validation. ``OUT/model.pt`` is the final checkpoint without optimizer state (what
is shipped).

Augmentation: random half turns about the canonical axes (the sign flips a
canonical pose may take when it is ambiguous), so the code learns to shrug them off.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from encoder.baselines import PlainAutoencoder, single_scale_config
from encoder.checkpoint import load_checkpoint, save_checkpoint
from encoder.evaluate import choose_surface_level
from encoder.model import CryoSwan, CryoSwanConfig
from encoder.training_data.dataset import load_split

log = logging.getLogger(__name__)

ARCHS = ("cryoswan", "single-scale", "plain-ae")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """The loop's settings, shared by the encoder's and the prior's training."""

    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.0
    steps: int = 20_000
    minutes: float | None = None
    log_every: int = 50
    val_every: int = 500
    checkpoint_every: int = 250
    seed: int = 0
    device: str = "auto"
    threads: int | None = None


@dataclass(frozen=True)
class TrainConfig(RunConfig):
    """One training run (saved in each checkpoint's ``extra``)."""

    dataset: str
    out: str
    arch: str = "cryoswan"
    model: CryoSwanConfig = field(default_factory=CryoSwanConfig)
    #: ``fp32``, or ``bf16``: the convolutions in bfloat16 under autocast (the
    #: weights, the optimizer, the losses and the quantizers stay float32)
    precision: str = "fp32"


def build_model(arch: str, config: CryoSwanConfig) -> torch.nn.Module:
    """A fresh model of one of :data:`ARCHS`."""
    if arch == "cryoswan":
        return CryoSwan(config)
    if arch == "single-scale":
        return CryoSwan(single_scale_config(config))
    if arch == "plain-ae":
        return PlainAutoencoder(config)
    raise ValueError(f"unknown arch {arch!r}; use one of {ARCHS}")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def start_run(cfg: RunConfig, out: str) -> tuple[Path, torch.device]:
    """Check a run's settings, set its threads, make its folder ``out``.

    Returns:
        The run folder and the device to train on.
    """
    if cfg.batch_size < 1 or cfg.steps < 1:
        raise ValueError("batch_size and steps must be positive")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    Path(out).mkdir(parents=True, exist_ok=True)
    return Path(out), _device(cfg.device)


def step_bar(cfg: RunConfig, step: int, desc: str, enabled: bool = True) -> Any:
    """The run's progress bar (tqdm, on stderr), starting at ``step``."""
    from tqdm import tqdm

    return tqdm(
        total=cfg.steps,
        initial=step,
        desc=desc,
        unit="step",
        disable=not enabled,
        file=sys.stderr,
    )


def restore(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    seed: int,
    resumed: torch.nn.Module,
    blob: dict,
) -> int:
    """Put a resumed run's weights and optimizer state (``resumed``, ``blob``:
    its ``last.pt``) into ``model`` and ``opt``, reseed ``gen``; its step."""
    model.load_state_dict(resumed.state_dict())
    if blob.get("optimizer"):
        opt.load_state_dict(blob["optimizer"])
    step = int(blob["step"])
    gen.manual_seed(seed + step)
    log.info("resumed at step %d", step)
    return step


def make_optimizer(model: torch.nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    """AdamW over ``model``'s parameters, fused (one kernel for all parameters
    instead of several small ones each) where the device allows it."""
    params = list(model.parameters())
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(
        params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None
    )


#: What ``TrainConfig.precision`` may be: the autocast dtype of each.
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def train_step(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    precision: str = "fp32",
) -> dict[str, torch.Tensor]:
    """One training step on the batch ``x`` ``[B, 1, G, G, G]``: forward,
    backward, gradient clipping at norm 1, optimizer step; the model's outputs.

    ``precision="bf16"`` runs the forward pass under bfloat16 autocast (the
    backward follows the forward's dtypes): on a CPU with AVX512-BF16 a step
    takes about half the time (``benchmarks/bench_train_step.py``); the weights,
    gradients, optimizer state and losses stay float32, and the model keeps its
    quantizers out of the autocast (:meth:`encoder.model.CryoSwan.forward`)."""
    dtype = PRECISIONS[precision]
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
        out = model(x)
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return out


def _half_turns(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each volume turned by one of the four proper axis-sign flips (D2 group)."""
    choice = torch.randint(0, 4, (x.shape[0],), generator=gen)
    out = x.clone()
    for k, dims in ((1, (3, 4)), (2, (2, 4)), (3, (2, 3))):  # flip two axes
        sel = (choice == k).nonzero().flatten()
        if len(sel):
            out[sel] = torch.flip(x[sel], dims=dims)
    return out


def _lr(cfg: TrainConfig, progress: float) -> float:
    """Linear warm-up over the first 2 % of the run, then cosine decay to 5 %."""
    warm = 0.02
    if progress < warm:
        return cfg.lr * max(progress / warm, 0.01)
    frac = min((progress - warm) / (1 - warm), 1.0)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


def _progress(cfg: TrainConfig, step: int, elapsed: float) -> float:
    """Fraction of the run done: by steps, or by time when ``minutes`` is set."""
    done = step / cfg.steps
    if cfg.minutes:
        done = max(done, elapsed / (cfg.minutes * 60))
    return min(done, 1.0)


@torch.no_grad()
def evaluate_loss(
    model: torch.nn.Module,
    volumes: torch.Tensor,
    device: torch.device,
    batch_size: int = 32,
) -> float:
    """Mean reconstruction loss (MSE + 0.5 L1) over uint8 ``volumes``."""
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(volumes), batch_size):
        x = volumes[i : i + batch_size].to(device).float().div_(255).unsqueeze(1)
        total += float(model(x)["rec_loss"]) * len(x)
        n += len(x)
    model.train()
    return total / max(n, 1)


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    """Train (or resume) a model; returns the path of the final ``model.pt``.

    Raises:
        ValueError: bad dataset folder, empty training split, or bad settings.
    """
    if cfg.precision not in PRECISIONS:
        raise ValueError(
            f"precision {cfg.precision!r}: use one of {', '.join(PRECISIONS)}"
        )
    out, device = start_run(cfg, cfg.out)
    train_set = torch.from_numpy(load_split(cfg.dataset, "train"))
    val_set = torch.from_numpy(load_split(cfg.dataset, "val"))[:256]
    if len(train_set) == 0:
        raise ValueError(f"{cfg.dataset}: the training split is empty")
    grid = int(train_set.shape[-1])
    model_cfg = cfg.model.for_grid(grid) if cfg.model.grid != grid else cfg.model
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg.arch, model_cfg).to(device)
    opt = make_optimizer(model, cfg)
    step = 0
    last = out / "last.pt"
    if last.exists():
        resumed, blob = load_checkpoint(last, map_location=device)
        step = restore(model, opt, gen, cfg.seed, resumed, blob)
    if device.type == "cuda":
        train_set = train_set.to(device)
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick fast kernels
    model.train()
    extra = {
        "train": {
            **asdict(replace(cfg, model=model_cfg)),
            "model": model_cfg.to_dict(),
        },
        "argv": sys.argv,
    }
    metrics = open(out / "metrics.jsonl", "a")
    started = time.time()
    deadline = started + cfg.minutes * 60 if cfg.minutes else None
    bar = step_bar(cfg, step, cfg.arch, progress)
    window_t, window_n = time.time(), 0
    while step < cfg.steps and (deadline is None or time.time() < deadline):
        idx = torch.randint(0, len(train_set), (cfg.batch_size,), generator=gen)
        x = train_set[idx.to(train_set.device)].to(device).float().div_(255)
        x = _half_turns(x.unsqueeze(1), gen.manual_seed(cfg.seed * 1_000_003 + step))
        for group in opt.param_groups:
            group["lr"] = _lr(cfg, _progress(cfg, step, time.time() - started))
        out_dict = train_step(model, opt, x, cfg.precision)
        step += 1
        window_n += len(x)
        bar.update()
        if step % cfg.log_every == 0:
            now = time.time()
            rec = {
                "step": step,
                "time": round(now - started, 1),
                "samples_per_s": round(window_n / max(now - window_t, 1e-9), 2),
                "lr": round(opt.param_groups[0]["lr"], 6),
                **{
                    k: round(float(v.detach()), 6)
                    for k, v in out_dict.items()
                    if k != "recon"
                },
            }
            if isinstance(model, CryoSwan):
                rec["codebooks"] = model.codebook_stats()
                for q in model.quantizers:
                    for cb in q.codebooks:
                        cb.reset_usage()
            metrics.write(json.dumps(rec) + "\n")
            metrics.flush()
            bar.set_postfix(loss=f"{rec['rec_loss']:.4f}")
            window_t, window_n = now, 0
        if step % cfg.val_every == 0 and len(val_set):
            val = evaluate_loss(model, val_set, device)
            metrics.write(
                json.dumps({"step": step, "val_rec_loss": round(val, 6)}) + "\n"
            )
            metrics.flush()
        if step % cfg.checkpoint_every == 0:
            save_checkpoint(model, last, step, opt, extra)
    bar.close()
    loop_seconds = round(time.time() - started, 1)  # the steps alone
    save_checkpoint(model, last, step, opt, extra)
    model.eval()
    if hasattr(model, "surface_level"):  # where the decoded surface is
        choice = choose_surface_level(model, cfg.dataset)
        model.surface_level = choice["level"]
        metrics.write(
            json.dumps(
                {
                    "step": step,
                    "surface_level": choice["level"],
                    "surface_iou": choice["by_level"][str(choice["level"])]["iou"],
                }
            )
            + "\n"
        )
    final = out / "model.pt"
    save_checkpoint(
        model.cpu(),
        final,
        step,
        None,
        {
            **extra,
            "seconds": round(time.time() - started, 1),
            "loop_seconds": loop_seconds,
        },
    )
    if len(val_set):
        val = evaluate_loss(model, val_set, torch.device("cpu"))
        metrics.write(
            json.dumps({"step": step, "final_val_rec_loss": round(val, 6)}) + "\n"
        )
    metrics.close()
    return final


__all__ = [
    "ARCHS",
    "PRECISIONS",
    "RunConfig",
    "TrainConfig",
    "restore",
    "start_run",
    "step_bar",
    "build_model",
    "evaluate_loss",
    "make_optimizer",
    "train",
    "train_step",
]
