"""Cryo-SWAN encoder: multi-scale wavelet autoencoder with residual quantization.

The data it is trained on (SYNTHETIC assemblies, ModelNet shapes, dataset folders)
comes from :mod:`encoder.training_data`.
"""

from encoder.checkpoint import load_checkpoint, save_checkpoint, state_hash
from encoder.code import MultiScaleCode
from encoder.model import CryoSwan, CryoSwanConfig
from encoder.quantize import Codebook, ResidualQuantizer
from encoder.wavelet import haar_forward, haar_inverse, haar_pyramid

__all__ = [
    "Codebook",
    "CryoSwan",
    "CryoSwanConfig",
    "MultiScaleCode",
    "ResidualQuantizer",
    "haar_forward",
    "haar_inverse",
    "haar_pyramid",
    "load_checkpoint",
    "save_checkpoint",
    "state_hash",
]
