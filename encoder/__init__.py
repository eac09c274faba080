"""Cryo-SWAN encoder: multi-scale wavelet autoencoder with residual quantization.

The data it is trained on (SYNTHETIC assemblies, ModelNet shapes, dataset folders)
comes from :mod:`encoder.training_data`.

The names below are loaded on first use (``lazy_loader``, SPEC 1), so that
``encoder.code`` (what the store and the ingest workers need) does not load torch.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "checkpoint": ["load_checkpoint", "save_checkpoint", "state_hash"],
        "code": ["MultiScaleCode"],
        "model": ["CryoSwan", "CryoSwanConfig"],
        "quantize": ["Codebook", "ResidualQuantizer"],
        "wavelet": ["haar_forward", "haar_inverse", "haar_pyramid"],
    },
)
