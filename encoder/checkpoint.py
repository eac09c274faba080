"""Checkpoints that rebuild the model without the training code.

A checkpoint is one ``torch.save`` file holding plain data only (loaded with
``weights_only=True``): the config as a dict, the weights and buffers (codebooks
included), the step, the optimizer state (optional), the package version, and a
content hash of config + weights. The hash identifies the encoder in every code it
makes. ``extra`` holds what the run recorded and, as ``surface_level``, the
decoded value that :meth:`encoder.model.CryoSwan.decode_indices` makes the
canonical surface (chosen after training; outside the hash, since the codes do
not depend on it).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from encoder.model import (
    ADDED_FIELDS,
    CANONICAL_SURFACE,
    SURFACE_RAMP,
    CryoSwan,
    CryoSwanConfig,
)

FORMAT_VERSION = 1


def state_hash(config: CryoSwanConfig, state: dict[str, torch.Tensor]) -> str:
    """sha256 of the config (JSON, sorted keys) and every tensor, in key order."""
    described = {
        k: v
        for k, v in config.to_dict().items()
        if not (k in ADDED_FIELDS and v == ADDED_FIELDS[k])
    }
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode())
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(
            tensor.view(-1).view(torch.uint8).numpy().tobytes()
            if tensor.numel()
            else b""
        )
    return digest.hexdigest()


def save_checkpoint(
    model: CryoSwan,
    path: str | Path,
    step: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write ``model`` to ``path`` atomically; returns the content hash."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    digest = state_hash(model.config, state)
    extra = dict(extra or {})
    level = getattr(model, "surface_level", CANONICAL_SURFACE)
    if level != CANONICAL_SURFACE:
        extra["surface_level"] = float(level)
    blob = {
        "format_version": FORMAT_VERSION,
        "arch": model.config.extra.get("baseline", "cryoswan"),
        "config": model.config.to_dict(),
        "state_dict": state,
        "step": int(step),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "hash": digest,
        "extra": extra,
    }
    atomic_save(blob, path)
    model.checkpoint_hash = digest
    return digest


def atomic_save(blob: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(blob, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model from ``path`` (eval mode) and return it with the raw blob.

    Raises:
        ValueError: the file is not a Cryo-SWAN checkpoint, or its weights do not
            match its recorded hash (corrupt file).
    """
    path = Path(path)
    fix = "pass a file written by `swan train`"
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as err:
        raise ValueError(
            f"{path}: cannot read the checkpoint ({err.strerror or err}); {fix}"
        ) from err
    except Exception as err:  # torch raises many types for a bad file
        # torch's own message runs over many lines and suggests loading the file
        # with weights_only=False, which would run code from it: name the type only
        raise ValueError(
            f"{path}: not a readable checkpoint ({type(err).__name__}); {fix}"
        ) from err
    if not isinstance(blob, dict) or "config" not in blob or "state_dict" not in blob:
        raise ValueError(f"{path}: not a Cryo-SWAN checkpoint; {fix}")
    try:
        config = CryoSwanConfig.from_dict(blob["config"])
        if blob.get("arch") == "plain-ae":
            from encoder.baselines import PlainAutoencoder

            model = PlainAutoencoder(config, config.latent_dim, config.extra["bits"])
        else:
            model = CryoSwan(config)
        model.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        why = (str(err).strip().splitlines() or [""])[0][:120]
        raise ValueError(
            f"{path}: its config or weights do not fit this version's model "
            f"({type(err).__name__}: {why}); {fix}"
        ) from err
    digest = state_hash(config, blob["state_dict"])
    if digest != blob.get("hash"):
        raise ValueError(
            f"{path}: weights do not match the recorded hash; "
            "the file is corrupt, copy it again"
        )
    model.checkpoint_hash = digest
    extra = blob.get("extra") or {}
    if hasattr(model, "surface_level") and "surface_level" in extra:
        model.surface_level = float(extra["surface_level"])
    model.eval()
    return model, blob


def write_surface_level(path: str | Path, level: float) -> None:
    """Record ``level`` as the checkpoint's surface level (in place, atomically;
    the weights and their hash unchanged)."""
    load_checkpoint(path)  # a readable checkpoint whose weights match its hash
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not SURFACE_RAMP < level < 1.0:
        raise ValueError(f"surface level {level}: use a value in ({SURFACE_RAMP}, 1)")
    blob["extra"] = {**(blob.get("extra") or {}), "surface_level": float(level)}
    atomic_save(blob, path)
