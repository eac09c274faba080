"""3D Haar wavelet transform as invertible, parameter-free tensor ops.

One level maps ``[B, C, D, H, W]`` to ``[B, 8C, D/2, H/2, W/2]``: for every 2x2x2
block, the 8 orthonormal Haar coefficients (LLL first, the low-pass band, then the 7
detail bands). The transform is orthonormal, so :func:`haar_inverse` undoes it
exactly and energy is preserved. Written here rather than taken from a wavelet
package because it must run inside the model on batched torch tensors (and on the
GPU) with gradients; pywt works on numpy arrays one at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_SQRT_2 = 2.0**0.5


def _haar_filters(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    low = torch.tensor([1.0, 1.0], dtype=dtype, device=device) / _SQRT_2
    high = torch.tensor([1.0, -1.0], dtype=dtype, device=device) / _SQRT_2
    bank = []
    for fz in (low, high):
        for fy in (low, high):
            for fx in (low, high):
                bank.append(fz[:, None, None] * fy[None, :, None] * fx[None, None, :])
    return torch.stack(bank)[:, None]  # [8, 1, 2, 2, 2]


def haar_forward(x: torch.Tensor) -> torch.Tensor:
    """One Haar level: ``[B, C, D, H, W] -> [B, 8C, D/2, H/2, W/2]``.

    Channel ``8c + k`` holds band ``k`` of input channel ``c``; band 0 is the
    low-pass (scaled local mean, times 2^1.5).
    """
    b, c, d, h, w = x.shape
    if d % 2 or h % 2 or w % 2:
        raise ValueError(f"Haar level needs even sides, got {tuple(x.shape[2:])}")
    filt = _haar_filters(x.dtype, x.device)
    y = F.conv3d(x.reshape(b * c, 1, d, h, w), filt, stride=2)
    return y.reshape(b, c * 8, d // 2, h // 2, w // 2)


def haar_inverse(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`haar_forward`: ``[B, 8C, n, n, n] -> [B, C, 2n, 2n, 2n]``."""
    b, c8, d, h, w = y.shape
    if c8 % 8:
        raise ValueError(f"inverse Haar needs a multiple of 8 channels, got {c8}")
    filt = _haar_filters(y.dtype, y.device)
    x = F.conv_transpose3d(y.reshape(b * (c8 // 8), 8, d, h, w), filt, stride=2)
    return x.reshape(b, c8 // 8, 2 * d, 2 * h, 2 * w)


def haar_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Low-pass bands of ``levels`` Haar levels, fine to coarse (input excluded).

    Each band is rescaled to the input's units (a local mean), so
    ``haar_pyramid(x, 3)[-1]`` is ``x`` averaged over 8^3 blocks.
    """
    out = []
    for _ in range(levels):
        x = haar_forward(x)[:, ::8] / (2.0**1.5)
        out.append(x)
    return out
