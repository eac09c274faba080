"""3D Haar wavelet transform as invertible, parameter-free tensor ops.

One level maps ``[B, C, D, H, W]`` to ``[B, 8C, D/2, H/2, W/2]``: for every 2x2x2
block, the 8 orthonormal Haar coefficients (LLL first, the low-pass band, then the 7
detail bands). ``levels`` levels (every band split again, a full wavelet packet)
map each block of side 2^levels to its 8^levels coefficients at once, in the order
that applying one level ``levels`` times gives. The transform is orthonormal, so
:func:`haar_inverse` undoes it exactly, energy is preserved, and each function's
gradient is the other one. Written here rather than taken from a wavelet package
because it must run inside the model on batched torch tensors (and on the GPU)
with gradients; pywt works on numpy arrays one at a time.

Speed: all levels run as one strided convolution (forward) or one 1x1
convolution and a block shuffle (inverse), and the gradients are the other
transform rather than autograd's transposed convolutions (several times slower
on a CPU).
"""

from __future__ import annotations

from functools import lru_cache

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


@lru_cache(maxsize=16)
def _filters(levels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ``8^levels`` filters ``[P, 1, s, s, s]`` (s = 2^levels) of ``levels``
    one-level transforms in a row, as one convolution of stride s."""
    one = _haar_filters(torch.float64, torch.device("cpu"))
    side, p = 2**levels, 8**levels
    basis = torch.eye(p, dtype=torch.float64).reshape(p, 1, side, side, side)
    for _ in range(levels):  # coefficients of each one-voxel block
        n, c, d = basis.shape[:3]
        basis = F.conv3d(basis.reshape(n * c, 1, d, d, d), one, stride=2)
        basis = basis.reshape(n, c * 8, d // 2, d // 2, d // 2)
    bank = basis.reshape(p, p).t().reshape(p, 1, side, side, side)
    return bank.to(dtype=dtype, device=device)


def _check_levels(levels: int) -> None:
    if levels < 1:
        raise ValueError(f"levels={levels}: use 1 or more Haar levels")


def _down(x: torch.Tensor, levels: int) -> torch.Tensor:
    b, c, d, h, w = x.shape
    side = 2**levels
    if d % side or h % side or w % side:
        raise ValueError(
            f"{levels} Haar level(s) need sides divisible by {side}, "
            f"got {tuple(x.shape[2:])}"
        )
    filt = _filters(levels, x.dtype, x.device)
    y = F.conv3d(x.reshape(b * c, 1, d, h, w), filt, stride=side)
    return y.reshape(b, c * len(filt), d // side, h // side, w // side)


def _up(y: torch.Tensor, levels: int) -> torch.Tensor:
    b, cp, d, h, w = y.shape
    p, side = 8**levels, 2**levels
    if cp % p:
        raise ValueError(
            f"inverse of {levels} Haar level(s) needs a multiple of {p} "
            f"channels, got {cp}"
        )
    # coefficients -> the block's voxels (a 1x1 convolution), then the voxels
    # of each block put in place
    weight = _filters(levels, y.dtype, y.device).reshape(p, p).t()
    weight = weight.reshape(p, p, 1, 1, 1)
    blocks = F.conv3d(y.reshape(b * (cp // p), p, d, h, w), weight)
    blocks = blocks.reshape(b, cp // p, side, side, side, d, h, w)
    blocks = blocks.permute(0, 1, 5, 2, 6, 3, 7, 4)
    return blocks.reshape(b, cp // p, d * side, h * side, w * side)


class _Haar(torch.autograd.Function):
    """The transform (``inverse`` False) or its inverse; each one's gradient is
    the other one, the transform being orthonormal."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, levels: int, inverse: bool) -> torch.Tensor:
        ctx.levels, ctx.inverse = levels, inverse
        return _up(x, levels) if inverse else _down(x, levels)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        return _Haar.apply(grad, ctx.levels, not ctx.inverse), None, None


def haar_forward(x: torch.Tensor, levels: int = 1) -> torch.Tensor:
    """``levels`` Haar levels: ``[B, C, D, H, W] -> [B, 8^L C, D/2^L, ...]``.

    With one level, channel ``8c + k`` holds band ``k`` of input channel ``c``;
    band 0 is the low-pass (scaled local mean, times 2^1.5). With more, the
    result equals one level applied ``levels`` times.

    Raises:
        ValueError: a side not divisible by 2^levels, or levels < 1.
    """
    _check_levels(levels)
    return _Haar.apply(x, levels, False)


def haar_inverse(y: torch.Tensor, levels: int = 1) -> torch.Tensor:
    """Inverse of :func:`haar_forward`: ``[B, 8^L C, n, n, n] -> [B, C, 2^L n, ...]``.

    Raises:
        ValueError: channels not a multiple of 8^levels, or levels < 1.
    """
    _check_levels(levels)
    return _Haar.apply(y, levels, True)


def haar_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Low-pass bands of ``levels`` Haar levels, fine to coarse (input excluded).

    Each band is rescaled to the input's units (a local mean), so
    ``haar_pyramid(x, 3)[-1]`` is ``x`` averaged over 8^3 blocks. (The Haar
    low-pass band over 2^3 voxels is 2^1.5 times their mean: an average pool.)
    """
    out = []
    for _ in range(levels):
        x = F.avg_pool3d(x, 2)
        out.append(x)
    return out
