"""The encoder wrapper: a loaded checkpoint that turns canonical volumes into codes.

The part that needs no model (reading, canonicalization) is in
:mod:`swan_index.prepare`, so that worker processes need not import torch; queries
(a map file, an upload, a stored entry) are built in :mod:`swan_index.query`.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from encoder.checkpoint import load_checkpoint
from encoder.code import MultiScaleCode
from encoder.model import CryoSwan
from swan_index.schema import EncoderInfo

log = logging.getLogger(__name__)

#: The trained checkpoint shipped with the package.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "data" / "cryoswan.pt"


class MapEncoder:
    """A loaded Cryo-SWAN checkpoint that encodes canonical volumes.

    Args:
        checkpoint: a file written by ``swan train`` (default: the shipped one).
        device: torch device.
    """

    def __init__(
        self, checkpoint: str | Path = DEFAULT_CHECKPOINT, device: str = "cpu"
    ) -> None:
        model, _ = load_checkpoint(checkpoint, map_location=device)
        if not isinstance(model, CryoSwan):
            raise ValueError(
                f"{checkpoint}: a baseline checkpoint; the store needs a Cryo-SWAN one"
            )
        self.model = model.eval()
        self.device = device
        self.checkpoint = Path(checkpoint)
        self.info = EncoderInfo.of(model)

    @property
    def grid(self) -> int:
        return int(self.model.config.grid)

    def encode(self, volumes: np.ndarray, batch_size: int = 32) -> MultiScaleCode:
        """Codes of canonical volumes ``[B, G, G, G]`` (one row per volume)."""
        volumes = np.asarray(volumes, np.float32)
        g = self.grid
        if volumes.ndim != 4 or volumes.shape[1:] != (g, g, g):
            raise ValueError(
                f"volumes {volumes.shape}: expected [B, {g}, {g}, {g}] canonical "
                "volumes at this checkpoint's grid"
            )
        # identical volumes (a symmetric map's candidate poses often are) are
        # encoded once: a code is a function of its volume
        first, back = _distinct(volumes)
        distinct = volumes[first] if len(first) < len(volumes) else volumes
        parts = []
        for start in range(0, len(distinct), batch_size):
            x = torch.from_numpy(distinct[start : start + batch_size])[:, None]
            parts.append(self.model.encode(x.to(self.device)))
        code = concat_codes(parts)
        if len(first) == len(volumes):
            return code
        return MultiScaleCode(
            code.scales,
            tuple(t[back] for t in code.tokens),
            tuple(v[back] for v in code.vectors),
            code.checkpoint_hash,
        )


def _distinct(volumes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, back)``: the index of one of each distinct volume, in order of
    first appearance, and for each volume which of those it equals."""
    seen: dict[bytes, list[int]] = {}
    first: list[int] = []
    back = np.empty(len(volumes), np.int64)
    for i, v in enumerate(volumes):
        key = hashlib.blake2b(v.tobytes(), digest_size=16).digest()
        same = [j for j in seen.get(key, ()) if np.array_equal(volumes[first[j]], v)]
        if same:
            back[i] = same[0]
        else:
            seen.setdefault(key, []).append(len(first))
            back[i] = len(first)
            first.append(i)
    return np.asarray(first, np.int64), back


def concat_codes(codes: list[MultiScaleCode]) -> MultiScaleCode:
    """One code holding the rows of several (same encoder)."""
    first = codes[0]
    if any(c.checkpoint_hash != first.checkpoint_hash for c in codes):
        raise ValueError("cannot join codes of different encoders")
    n = len(first.scales)
    return MultiScaleCode(
        first.scales,
        tuple(np.concatenate([c.tokens[i] for c in codes]) for i in range(n)),
        tuple(np.concatenate([c.vectors[i] for c in codes]) for i in range(n)),
        first.checkpoint_hash,
    )
