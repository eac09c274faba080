"""The faster training step computes what the previous one did.

The reference below is the previous code, kept as it was: one Haar level at a
time as strided (transposed) convolutions with autograd through them, the
low-pass pyramid through the Haar transform, two decoder passes (all maps, then
the partial codes of the first half) with both losses on the volumes, and the
unfused AdamW. The optimized step must give the same losses, reconstructions,
gradients, codebook updates and weights to float tolerance, and the checkpoint
shipped then (``2bc2aef48ac9``, kept in
``benchmarks/results/previous_2bc2aef48ac9/``) the same tokens as the previous
code gave (``tests/data/shipped_codes_d87b088.npz``: the sample maps encoded by
commit d87b088). The checkpoint shipped now (``2a508c599e66``) must give the
codes recorded when it was shipped (``tests/data/shipped_codes_2a508c599e66.npz``).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from encoder import load_checkpoint
from encoder.model import CryoSwan, reconstruction_loss
from encoder.train import RunConfig, make_optimizer, train_step
from encoder.wavelet import _haar_filters, haar_forward, haar_inverse, haar_pyramid
from ingest import canonicalize, read_map
from tests.conftest import DATA, MAPS, ROOT, TEST_DATA


def ref_haar_forward(x: torch.Tensor) -> torch.Tensor:
    b, c, d, h, w = x.shape
    filt = _haar_filters(x.dtype, x.device)
    y = F.conv3d(x.reshape(b * c, 1, d, h, w), filt, stride=2)
    return y.reshape(b, c * 8, d // 2, h // 2, w // 2)


def ref_haar_inverse(y: torch.Tensor) -> torch.Tensor:
    b, c8, d, h, w = y.shape
    filt = _haar_filters(y.dtype, y.device)
    x = F.conv_transpose3d(y.reshape(b * (c8 // 8), 8, d, h, w), filt, stride=2)
    return x.reshape(b, c8 // 8, 2 * d, 2 * h, 2 * w)


def ref_decoder(model: CryoSwan, f_hat: torch.Tensor) -> torch.Tensor:
    return ref_haar_inverse(ref_haar_inverse(model.decoder.net(f_hat)))


def ref_forward(model: CryoSwan, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``CryoSwan.forward`` as it was (KL term off)."""
    h = model.encoder.stages(ref_haar_forward(ref_haar_forward(x)))
    low = x
    for _ in range(3):
        low = ref_haar_forward(low)[:, ::8] / (2.0**1.5)
    f = model.encoder.proj(torch.cat([h, low], dim=1))
    cumulative, _, f_hat = model._quantize(f)
    cfg = model.config
    commit = F.mse_loss(f, f_hat.detach())
    fit = F.mse_loss(f_hat, f.detach())
    f_st = f + (f_hat - f).detach()
    recon = ref_decoder(model, f_st)
    rec_loss = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x)
    loss = rec_loss + cfg.commitment * commit + fit
    s = int(torch.randint(1, len(cfg.scales), ()).item())
    half = max(1, x.shape[0] // 2)
    part = ref_decoder(model, cumulative[s - 1][:half])
    prefix_loss = F.mse_loss(part, x[:half])
    loss = loss + cfg.prefix_weight * prefix_loss
    return {
        "recon": recon,
        "rec_loss": rec_loss,
        "prefix_loss": prefix_loss,
        "loss": loss,
    }


def ref_train_step(model: CryoSwan, opt: torch.optim.Optimizer, x: torch.Tensor):
    out = ref_forward(model, x)
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=False)
    opt.step()
    return out


@pytest.fixture(scope="module")
def shipped():
    """The shipped model (its trained codebooks have no ties) and four sample
    maps at its grid, ``[4, 1, 64, 64, 64]``."""
    model, _ = load_checkpoint(DATA / "cryoswan.pt")
    vols = [
        canonicalize(read_map(MAPS[k]), grid=model.config.grid).values
        for k in ("emd_1832", "emd_5625", "emd_21457_seg", "emd_6824")
    ]
    return model, torch.from_numpy(np.stack(vols)[:, None])


def test_multilevel_haar_equals_the_levels_in_turn():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 16, 16, generator=gen, requires_grad=True)
    ref = ref_haar_forward(ref_haar_forward(x))
    new = haar_forward(x, 2)
    assert new.shape == (2, 192, 4, 4, 4)
    assert torch.allclose(new, ref, atol=1e-5)
    assert torch.allclose(haar_forward(x), ref_haar_forward(x), atol=1e-6)
    g = torch.randn(ref.shape, generator=gen)
    (ref_grad,) = torch.autograd.grad(ref, x, g)
    (new_grad,) = torch.autograd.grad(new, x, g)
    assert torch.allclose(new_grad, ref_grad, atol=1e-5)

    y = torch.randn(2, 128, 4, 4, 4, generator=gen, requires_grad=True)
    ref = ref_haar_inverse(ref_haar_inverse(y))
    new = haar_inverse(y, 2)
    assert new.shape == (2, 2, 16, 16, 16)
    assert torch.allclose(new, ref, atol=1e-5)
    g = torch.randn(ref.shape, generator=gen)
    (ref_grad,) = torch.autograd.grad(ref, y, g)
    (new_grad,) = torch.autograd.grad(new, y, g)
    assert torch.allclose(new_grad, ref_grad, atol=1e-5)
    assert torch.allclose(haar_inverse(haar_forward(x, 3), 3), x, atol=1e-5)


def test_pyramid_is_the_haar_low_pass_band():
    x = torch.randn(2, 1, 16, 16, 16)
    low = x
    for band in haar_pyramid(x, 3):
        low = ref_haar_forward(low)[:, ::8] / (2.0**1.5)
        assert torch.allclose(band, low, atol=1e-6)


def test_haar_refuses_sides_it_cannot_split():
    with pytest.raises(ValueError, match="divisible by 4"):
        haar_forward(torch.zeros(1, 1, 8, 8, 6), 2)
    with pytest.raises(ValueError, match="multiple of 64"):
        haar_inverse(torch.zeros(1, 8, 2, 2, 2), 2)


def test_reconstruction_loss_is_mse_plus_half_l1():
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(3, 1, 16, 16, 16, generator=gen)
    recon = torch.rand(3, 1, 16, 16, 16, generator=gen)
    recon[0, 0, 0, 0, :4] = target[0, 0, 0, 0, :4]  # zero differences too
    a = recon.clone().requires_grad_()
    b = recon.clone().requires_grad_()
    ref = F.mse_loss(a, target) + 0.5 * F.l1_loss(a, target)
    new = reconstruction_loss(b, target)
    (3 * ref).backward()
    (3 * new).backward()
    assert torch.allclose(new, ref, rtol=1e-6)
    assert torch.allclose(b.grad, a.grad, atol=1e-9)


def test_training_forward_equals_the_previous_math(shipped):
    model, volumes = copy.deepcopy(shipped[0]).train(), shipped[1]
    ref_model = copy.deepcopy(model)
    torch.manual_seed(1)
    new = model(volumes)
    new["loss"].backward()
    torch.manual_seed(1)
    ref = ref_forward(ref_model, volumes)
    ref["loss"].backward()
    assert "prefix_loss" in new
    for key in ("loss", "rec_loss", "prefix_loss"):
        assert torch.allclose(new[key], ref[key], rtol=1e-5), key
    assert torch.allclose(new["recon"], ref["recon"], atol=1e-5)
    for (name, p), q in zip(
        model.named_parameters(), ref_model.parameters(), strict=True
    ):
        assert torch.allclose(p.grad, q.grad, rtol=1e-3, atol=1e-6), name
    for (name, b), c in zip(model.named_buffers(), ref_model.buffers(), strict=True):
        assert torch.allclose(b.float(), c.float(), atol=1e-5), name


def test_training_steps_equal_the_previous_steps(shipped):
    model, volumes = copy.deepcopy(shipped[0]).train(), shipped[1][:2]
    ref_model = copy.deepcopy(model)
    cfg = RunConfig(lr=1e-3)
    opt = make_optimizer(model, cfg)
    ref_opt = torch.optim.AdamW(ref_model.parameters(), lr=cfg.lr, weight_decay=0)
    for step in range(2):
        torch.manual_seed(10 + step)
        new = train_step(model, opt, volumes)
        torch.manual_seed(10 + step)
        ref = ref_train_step(ref_model, ref_opt, volumes)
        # the same weights at the first step; then as close as Adam allows
        assert torch.allclose(new["loss"], ref["loss"], rtol=2e-3 if step else 1e-5)
    # From a fresh optimizer state Adam moves every weight by about lr, in the
    # sign of its gradient: a gradient at float noise level may go either way.
    # Any real difference would move most weights apart.
    apart = sum(
        int(((p - q).abs() > cfg.lr / 10).sum())
        for p, q in zip(model.parameters(), ref_model.parameters(), strict=True)
    )
    total = sum(p.numel() for p in model.parameters())
    assert apart < 0.002 * total, (apart, total)


def test_optimizer_step_equals_the_previous_one(shipped):
    model = copy.deepcopy(shipped[0])
    ref_model = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(0)
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        p.grad = torch.randn(p.shape, generator=gen) * 1e-2
        q.grad = p.grad.clone()
    cfg = RunConfig(lr=1e-3, weight_decay=0.01)
    opt = make_optimizer(model, cfg)
    ref_opt = torch.optim.AdamW(ref_model.parameters(), lr=1e-3, weight_decay=0.01)
    for optimizer, m in ((opt, model), (ref_opt, ref_model)):
        for _ in range(3):
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            optimizer.step()
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


#: The checkpoint shipped before ``2a508c599e66``, with the results measured on it.
PREVIOUS = ROOT / "benchmarks" / "results" / "previous_2bc2aef48ac9" / "cryoswan.pt"


@pytest.mark.parametrize(
    ("checkpoint", "golden_file"),
    [
        (PREVIOUS, "shipped_codes_d87b088.npz"),
        (DATA / "cryoswan.pt", "shipped_codes_2a508c599e66.npz"),
    ],
    ids=["2bc2aef48ac9", "2a508c599e66"],
)
def test_checkpoint_gives_the_recorded_codes(checkpoint, golden_file):
    model, blob = load_checkpoint(checkpoint)
    model = model.eval()
    golden = np.load(TEST_DATA / golden_file)
    if "checkpoint" in golden.files:  # the hash of the checkpoint it was recorded from
        assert blob["hash"].startswith(str(golden["checkpoint"]))
    names = list(golden["names"])
    x = np.stack([canonicalize(read_map(MAPS[n]), grid=64).values for n in names])
    code = model.encode(torch.from_numpy(x[:, None]))
    for i, (tokens, vectors) in enumerate(zip(code.tokens, code.vectors, strict=True)):
        assert np.array_equal(tokens, golden[f"tokens_{i}"]), f"scale {i}"
        assert np.allclose(vectors, golden[f"vectors_{i}"], atol=1e-5), f"scale {i}"
