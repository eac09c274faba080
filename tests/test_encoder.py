"""Cryo-SWAN model: wavelets, codebooks, multi-scale codes, checkpoints, training."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from encoder import (
    Codebook,
    CryoSwan,
    CryoSwanConfig,
    haar_forward,
    haar_inverse,
    haar_pyramid,
    load_checkpoint,
    save_checkpoint,
)
from encoder.train import RunConfig, TrainConfig, make_optimizer, train, train_step
from ingest import canonicalize, read_map
from tests.conftest import MAPS

SMALL = CryoSwanConfig(
    grid=32,
    scales=(1, 2, 4),
    depths=(2, 2, 2),
    codebook_size=64,
    latent_dim=16,
    channels=(16, 32),
)


@pytest.fixture(scope="module")
def batch():
    """Real canonical volumes at 32^3 (EMDB sample maps), ``[4, 1, 32, 32, 32]``."""
    vols = [
        canonicalize(read_map(MAPS[k]), grid=32).values
        for k in ("emd_1832", "emd_5625", "emd_21457_seg", "emd_6824")
    ]
    return torch.from_numpy(np.stack(vols)[:, None])


def test_haar_is_orthonormal_and_invertible():
    x = torch.randn(2, 3, 8, 8, 8)
    y = haar_forward(x)
    assert y.shape == (2, 24, 4, 4, 4)
    assert torch.allclose(haar_inverse(y), x, atol=1e-5)
    assert torch.allclose((y**2).sum(), (x**2).sum(), rtol=1e-5)
    low = haar_pyramid(x, 3)[-1]
    assert torch.allclose(low[..., 0, 0, 0], x.mean(dim=(2, 3, 4)), atol=1e-5)


def test_config_validation():
    with pytest.raises(ValueError, match="end at grid/8"):
        CryoSwanConfig(grid=64, scales=(1, 2, 4))
    with pytest.raises(ValueError, match="one entry per scale"):
        CryoSwanConfig(grid=32, scales=(1, 2, 4), depths=(1, 1))


def test_code_shapes_dtypes_and_norms(batch):
    model = CryoSwan(SMALL).eval()
    code = model.encode(batch)
    assert code.scales == (1, 2, 4)
    assert [t.shape for t in code.tokens] == [
        (4, 2, 1, 1, 1),
        (4, 2, 2, 2, 2),
        (4, 2, 4, 4, 4),
    ]
    assert all(t.dtype == np.int16 for t in code.tokens)
    # pooled from the reconstructions to 4^3 cells, 6^3 at the finest scale
    assert [v.shape for v in code.vectors] == [(4, 64), (4, 64), (4, 216)]
    assert SMALL.retrieval_dims == (64, 64, 216)
    for v in code.vectors:
        assert v.dtype == np.float32
        assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert len(code[1]) == 1
    assert code.bits(SMALL.codebook_sizes) == model.bits_per_map() == SMALL.bits()
    assert SMALL.codebook_sizes == (256, 256, 64)


def test_retrieval_vectors_correlate_the_partial_reconstructions(batch):
    model = CryoSwan(SMALL).eval()
    code = model.encode(batch)
    for s, cells in ((1, 4), (3, 6)):
        recon = model.decode(code, up_to=s)
        pooled = F.adaptive_avg_pool3d(recon, cells).flatten(1)
        r = np.corrcoef(pooled.numpy().astype(np.float64))
        cos = code.vectors[s - 1].astype(np.float64) @ code.vectors[s - 1].T
        assert np.allclose(cos, r, atol=1e-4)
    latent = CryoSwan(replace(SMALL, retrieval_from="latent")).eval()
    dims = [v.shape[1] for v in latent.encode(batch).vectors]
    assert dims == [16, 128, 128] == list(latent.config.retrieval_dims)


def test_retrieval_vectors_from_the_low_pass_band_equal_the_full_decoding(batch):
    # cells of whole Haar blocks are pooled from the decoder's low-pass band
    # alone; the vectors are those of the full reconstruction, to rounding
    model = CryoSwan(SMALL).eval()
    code = model.encode(batch)
    with torch.no_grad():
        f, _ = model.encode_latent(batch)
        cumulative = model._quantize(f)[0]
        for s, cells in enumerate(SMALL.retrieval_cells):
            pooled = F.adaptive_avg_pool3d(model.decoder(cumulative[s]), cells)
            pooled = pooled.flatten(1) - pooled.flatten(1).mean(dim=1, keepdim=True)
            full = F.normalize(pooled, dim=1).numpy()
            assert np.abs(full - code.vectors[s]).max() < 1e-5


def test_rows_that_share_tokens_are_decoded_once_with_the_same_vectors(batch):
    # the candidate poses of one map share their coarse tokens: each distinct
    # token prefix is decoded once, and every row gets its own row's vectors
    model = CryoSwan(SMALL).eval()
    rows = batch[[0, 1, 0, 2, 1, 0]]
    code = model.encode(rows)
    assert code.tokens[0][0].tobytes() == code.tokens[0][2].tobytes()
    for i in range(len(rows)):
        alone = model.encode(rows[i : i + 1])
        for s in range(len(SMALL.scales)):
            assert np.array_equal(code.tokens[s][i], alone.tokens[s][0])
            assert np.abs(code.vectors[s][i] - alone.vectors[s][0]).max() < 1e-5


def test_map_encoder_encodes_identical_volumes_once(monkeypatch):
    from swan_index.map_encoder import MapEncoder

    encoder = MapEncoder()
    vols = [
        canonicalize(read_map(MAPS[k]), grid=encoder.grid).values
        for k in ("emd_1832", "emd_5625")
    ]
    seen = []
    encode = encoder.model.encode
    monkeypatch.setattr(
        encoder.model, "encode", lambda x: seen.append(len(x)) or encode(x)
    )
    code = encoder.encode(np.stack([vols[0], vols[1], vols[0], vols[0]]))
    assert seen == [2] and len(code) == 4
    single = encoder.encode(np.stack(vols))
    for s in range(len(code.scales)):
        assert np.array_equal(code.tokens[s][[0, 2, 3]], single.tokens[s][[0, 0, 0]])
        assert np.abs(code.vectors[s][1] - single.vectors[s][1]).max() < 1e-5


def test_eval_encoding_is_deterministic(batch):
    model = CryoSwan(SMALL).eval()
    a, b = model.encode(batch), model.encode(batch)
    assert all(np.array_equal(x, y) for x, y in zip(a.tokens, b.tokens, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(a.vectors, b.vectors, strict=True))


def test_decode_indices_equals_forward_reconstruction(batch):
    model = CryoSwan(SMALL).eval()
    with torch.no_grad():
        forward = model(batch)["recon"]
    decoded = model.decode_indices(model.encode_indices(batch))
    assert torch.allclose(forward, decoded, atol=1e-5)
    assert torch.allclose(model.decode(model.encode(batch)), decoded, atol=1e-5)
    assert (
        model.decode_indices(model.encode_indices(batch), up_to=1).shape == batch.shape
    )


def test_checkpoint_round_trip_gives_identical_codes(batch, tmp_path):
    model = CryoSwan(SMALL)
    model.train()
    model(batch)  # k-means init and one EMA update of the codebooks
    model.eval()
    digest = save_checkpoint(model, tmp_path / "m.pt", step=7)
    loaded, blob = load_checkpoint(tmp_path / "m.pt")
    assert blob["step"] == 7 and loaded.checkpoint_hash == digest
    a, b = model.encode(batch), loaded.encode(batch)
    assert a.checkpoint_hash == b.checkpoint_hash == digest
    assert all(np.array_equal(x, y) for x, y in zip(a.tokens, b.tokens, strict=True))


def test_codes_of_another_checkpoint_are_refused(batch, tmp_path):
    model = CryoSwan(SMALL).eval()
    save_checkpoint(model, tmp_path / "a.pt")
    other = CryoSwan(SMALL).eval()
    save_checkpoint(other, tmp_path / "b.pt")
    with pytest.raises(ValueError, match="re-encode with the same checkpoint"):
        other.decode(model.encode(batch))


def test_corrupt_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(bad)


def test_training_steps_lower_the_loss(batch):
    torch.manual_seed(0)
    model = CryoSwan(SMALL).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        out = model(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["rec_loss"]))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_bf16_steps_lower_the_loss_with_float32_weights_and_quantizers(
    batch, monkeypatch
):
    torch.manual_seed(0)
    model = CryoSwan(SMALL).train()
    opt = make_optimizer(model, RunConfig(lr=2e-3))
    autocast_in_nearest = []
    nearest = Codebook.nearest

    def watched(self, z):  # noqa: ANN001, ANN202
        autocast_in_nearest.append(torch.is_autocast_enabled(z.device.type))
        assert z.dtype == torch.float32
        return nearest(self, z)

    monkeypatch.setattr(Codebook, "nearest", watched)
    losses = []
    for _ in range(25):
        out = train_step(model, opt, batch, "bf16")
        losses.append(float(out["rec_loss"]))
    assert out["recon"].dtype == torch.bfloat16  # the decoder ran under autocast
    assert autocast_in_nearest and not any(autocast_in_nearest)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    # the same weights give about the same loss in either precision
    model.eval()
    full = float(model(batch)["rec_loss"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = float(model(batch)["rec_loss"])
    assert half == pytest.approx(full, rel=0.05)
    with pytest.raises(ValueError, match="precision"):
        train(TrainConfig(dataset="unused", out="unused", precision="fp16"))


def test_dead_code_restart_replaces_unused_codes():
    torch.manual_seed(0)
    cb = Codebook(size=16, dim=4, decay=0.5, dead_threshold=0.05).train()
    data = torch.randn(256, 4)
    cb(data)  # k-means init
    far = torch.full((4,), 100.0)
    cb.embed[3] = far  # code 3 now never wins
    cb.embed_sum[3] = far
    for _ in range(10):
        cb(data)
    assert not torch.allclose(cb.embed[3], far)  # it was moved onto the data
    assert cb.embed[3].abs().max() < 10
    cb.reset_usage()
    cb.eval()
    cb(data)
    stats = cb.stats()
    assert stats["used"] + stats["dead"] == 16 and stats["perplexity"] > 1


def test_plain_baseline_quantized_latent(batch):
    from encoder.baselines import PlainAutoencoder
    from encoder.evaluate import encoding_throughput

    torch.manual_seed(0)
    plain = PlainAutoencoder(SMALL).eval()
    with torch.no_grad():
        z = plain.quantized_latent(batch)
    side = plain.config.latent_side
    assert z.shape == (len(batch), plain.config.latent_dim, side, side, side)
    levels = 2**plain.bits - 1
    steps = (z + 1) / 2 * levels
    assert torch.allclose(steps, torch.round(steps), atol=1e-4)
    assert float(z.abs().max()) <= 1.0
    assert torch.equal(plain.reconstruct(batch), plain.decoder(z))
    rate = encoding_throughput(plain, 32, 2, 1, encode=plain.quantized_latent)
    assert rate > 0


def test_a_decoder_that_knows_the_scales_reads_each_prefix_with_its_own_bias(
    batch, tmp_path
):
    # decoder_knows_scales: one learned bias per number of scales read, zero at
    # the start (the same decoding as without it), trained by the partial-code
    # loss, used by decode(up_to=s) and by the retrieval vectors of scale s
    cfg = replace(SMALL, decoder_knows_scales=True)
    torch.manual_seed(0)
    model = CryoSwan(cfg)
    torch.manual_seed(0)
    plain = CryoSwan(SMALL)
    shared = {k: v for k, v in model.state_dict().items() if "scale_bias" not in k}
    assert set(shared) == set(plain.state_dict())
    plain.load_state_dict(shared)
    model.eval(), plain.eval()
    idx = model.encode_indices(batch)
    for s in (1, 2, 3):
        assert torch.allclose(
            model.decode_indices(idx, s), plain.decode_indices(idx, s), atol=1e-6
        )
    model.train()
    torch.manual_seed(1)
    model(batch)["loss"].backward()
    grad = model.decoder.scale_bias.grad
    assert grad[-1].abs().sum() > 0  # the full code's bias, every step
    assert (grad[:-1].abs().sum(dim=1) > 0).sum() == 1  # the drawn prefix's only
    # the training step moved the codebooks: compare the model with itself
    model.eval()
    before = {s: model.decode_indices(idx, s) for s in (1, 2, 3)}
    vectors = model.encode(batch).vectors
    with torch.no_grad():
        model.decoder.scale_bias[0] += 1.0
    for s, changed in ((1, True), (2, False), (3, False)):
        differs = not torch.allclose(model.decode_indices(idx, s), before[s], atol=1e-6)
        assert differs == changed
    after = model.encode(batch).vectors
    assert not np.allclose(after[0], vectors[0], atol=1e-4)
    assert np.array_equal(after[2], vectors[2])
    digest = save_checkpoint(model, tmp_path / "k.pt")
    loaded, _ = load_checkpoint(tmp_path / "k.pt")
    assert loaded.config.decoder_knows_scales and loaded.checkpoint_hash == digest
    assert torch.equal(loaded.decoder.scale_bias, model.decoder.scale_bias)
