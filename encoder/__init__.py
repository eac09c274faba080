"""Cryo-SWAN encoder: multi-scale wavelet autoencoder with residual quantization.

The names below are loaded on first use (PEP 562): ``encoder.code`` (what the
store and the ingest workers need) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module that defines it.
_EXPORTS = {
    "Codebook": "encoder.quantize",
    "CryoSwan": "encoder.model",
    "CryoSwanConfig": "encoder.model",
    "MultiScaleCode": "encoder.code",
    "ResidualQuantizer": "encoder.quantize",
    "haar_forward": "encoder.wavelet",
    "haar_inverse": "encoder.wavelet",
    "haar_pyramid": "encoder.wavelet",
    "load_checkpoint": "encoder.checkpoint",
    "save_checkpoint": "encoder.checkpoint",
    "state_hash": "encoder.checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'encoder' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
