"""The latent prior: training (resumable), files tied to their encoder, sampling
that keeps scales, ``swan denoise`` / ``swan generate`` / ``swan complete`` on map
files, and searching with a completion."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from encoder.checkpoint import save_checkpoint
from encoder.model import CryoSwan, CryoSwanConfig
from encoder.prior import PriorConfig, load_prior, sample
from encoder.train_prior import PriorTrainConfig, train_prior
from encoder.training_data import DatasetConfig, build_dataset
from ingest.mapio import DensityMap, read_map, write_map
from swan_index import generate as generate_module
from swan_index.cli import main
from swan_index.generate import DEFAULT_PRIOR, GENERATED_LABEL
from swan_index.map_encoder import DEFAULT_CHECKPOINT
from tests.conftest import DATA

TINY = CryoSwanConfig(
    grid=32,
    scales=(1, 2, 4),
    depths=(1, 1, 2),
    codebook_size=32,
    coarse_codebook_size=16,
    latent_dim=8,
    channels=(8, 16),
)


def _encoder(path, seed: int) -> str:
    torch.manual_seed(seed)
    save_checkpoint(CryoSwan(TINY), path)
    return str(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A dataset of the sample maps at 32^3, an (untrained) tiny encoder, and a
    flow prior and a token prior trained 3 steps on it."""
    root = tmp_path_factory.mktemp("prior")
    cfg = DatasetConfig(
        grid=32,
        real_maps=str(DATA / "maps"),
        synthetic=0,
        real_views=1,
        val_groups=("emd_1832",),
        workers=1,
    )
    build_dataset(cfg, root / "ds", progress=False)
    enc = _encoder(root / "enc.pt", 0)
    priors = {}
    for kind in ("flow", "tokens"):
        priors[kind] = _train(root, enc, kind, steps=3)
    return {"root": root, "dataset": str(root / "ds"), "encoder": enc, **priors}


def _train(root, enc, kind, steps, out=None, task="scales", **more):
    """A tiny prior trained ``steps`` steps on the fixture's dataset (``more``:
    other fields of the run, e.g. ``init`` and ``pairs_per_item``)."""
    cfg = PriorTrainConfig(
        dataset=str(root / "ds"),
        encoder=enc,
        out=str(out or root / kind),
        prior=PriorConfig(kind=kind, task=task, channels=8, blocks=1, steps=4),
        batch_size=2,
        steps=steps,
        log_every=1,
        val_every=3,
        checkpoint_every=2,
        device="cpu",
        **more,
    )
    return str(train_prior(cfg, progress=False))


@pytest.mark.parametrize("kind", ["flow", "tokens"])
def test_train_prior_logs_and_resumes(tiny, kind):
    out = tiny["root"] / kind
    _, blob = load_prior(out / "prior.pt")
    assert blob["step"] == 3 and blob["optimizer"] is None
    _train(tiny["root"], tiny["encoder"], kind, steps=5)  # the same run, longer
    prior, blob = load_prior(out / "prior.pt")
    assert blob["step"] == 5 and prior.config.kind == kind
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(r["loss"]) for r in lines if "loss" in r)
    assert any("val_loss" in r for r in lines)


def test_train_prior_bad_dataset_one_line_exit_1(tiny, tmp_path, capsys):
    args = ["train-prior", "--dataset", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main(args + ["--encoder", tiny["encoder"]]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not a dataset folder" in err and str(tmp_path) in err


def test_prior_loads_for_its_encoder_only(tiny, tmp_path):
    from encoder.checkpoint import load_checkpoint

    own, _ = load_checkpoint(tiny["encoder"])
    prior, blob = load_prior(tiny["flow"], own)
    assert prior.encoder_hash == own.checkpoint_hash == blob["encoder_hash"]
    other, _ = load_checkpoint(_encoder(tmp_path / "other.pt", 1))
    with pytest.raises(ValueError) as err:
        load_prior(tiny["flow"], other)
    msg = str(err.value)
    assert "\n" not in msg and tiny["flow"] in msg and "trained on encoder" in msg
    assert own.checkpoint_hash[:12] in msg and other.checkpoint_hash[:12] in msg


def test_prior_file_checks(tiny, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a prior")
    with pytest.raises(ValueError, match="not a readable prior"):
        load_prior(bad)
    blob = torch.load(tiny["flow"], weights_only=True)
    key = next(iter(blob["state_dict"]))
    blob["state_dict"][key] = blob["state_dict"][key] + 1
    torch.save(blob, tmp_path / "changed.pt")
    with pytest.raises(ValueError, match="do not match the recorded hash"):
        load_prior(tmp_path / "changed.pt")


@pytest.mark.parametrize("kind", ["flow", "tokens"])
@pytest.mark.parametrize("keep", [1, 2])
def test_sampling_keeps_the_kept_scales(tiny, kind, keep):
    from encoder.checkpoint import load_checkpoint

    enc, _ = load_checkpoint(tiny["encoder"])
    prior, _ = load_prior(tiny[kind], enc)
    x = torch.rand(3, 1, 32, 32, 32)
    tokens = enc.encode_indices(x)
    gen = torch.Generator().manual_seed(0)
    drawn = sample(prior, enc, 3, keep=tokens[:keep], generator=gen)
    assert [t.shape for t in drawn] == [t.shape for t in tokens]
    for i in range(keep):
        assert torch.equal(drawn[i], tokens[i])
    for t, size in zip(drawn, TINY.codebook_sizes, strict=True):
        assert t.min() >= 0 and t.max() < size
    assert enc.decode_indices(drawn).shape == (3, 1, 32, 32, 32)


def _denoise(tiny, map_file, out, *extra):
    return main(
        [
            "denoise",
            str(map_file),
            "-o",
            str(out),
            "--checkpoint",
            tiny["encoder"],
            "--prior",
            tiny["flow"],
            *extra,
        ]
    )


@pytest.mark.parametrize("strength", ["0.5", "0"])
def test_denoise_keeps_the_input_grid_and_is_labelled(tiny, tmp_path, strength):
    src = DATA / "maps" / "emd_5625.map"
    out = tmp_path / "den.mrc"
    assert _denoise(tiny, src, out, "--strength", strength) == 0
    before, after = read_map(src), read_map(out)
    assert after.shape == before.shape
    assert np.allclose(after.voxel_size, before.voxel_size)
    assert np.allclose(after.origin, before.origin)
    assert after.header["labels"][0] == GENERATED_LABEL
    assert "swan denoise" in after.header["labels"][1]
    assert np.isfinite(after.data).all() and after.data.std() > 0
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left


def test_denoise_bad_input_one_line_exit_1(tiny, tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty.mrc"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mrc"
    text.write_text("not a map\n" * 200)
    blank = tmp_path / "blank.mrc"
    write_map(
        DensityMap(np.zeros((20, 20, 20), np.float32), (1, 1, 1), (0, 0, 0), "", ""),
        blank,
    )
    cases = [(empty, []), (text, []), (blank, []), (tmp_path / "missing.mrc", [])]
    src = DATA / "maps" / "emd_5625.map"
    cases.append((src, ["--contour", "1e9"]))  # nothing at the contour
    cases.append((src, ["--strength", "2"]))
    for path, extra in cases:
        assert _denoise(tiny, path, tmp_path / "out.mrc", *extra) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, err
    assert _denoise(tiny, src, tmp_path / "no" / "out.mrc") == 1  # no such folder
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "folder does not exist" in err
    monkeypatch.setattr(generate_module, "MAX_MAP_BYTES", 1000)
    assert _denoise(tiny, src, tmp_path / "out.mrc") == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(src) in err
    assert not (tmp_path / "out.mrc").exists()


def test_generate_writes_labelled_variations(tiny, tmp_path, capsys):
    src = DATA / "maps" / "emd_5625.map"
    args = ["--checkpoint", tiny["encoder"], "--prior", tiny["tokens"]]
    out = tmp_path / "gen"
    assert main(["generate", "--like", str(src), "-n", "2", "-o", str(out)] + args) == 0
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["generated_000.mrc", "generated_001.mrc"]
    like = read_map(src)
    for f in files:
        m = read_map(f)
        assert m.shape == like.shape and m.header["labels"][0] == GENERATED_LABEL
    assert main(["generate", "-n", "1", "-o", str(tmp_path / "u")] + args) == 0
    assert read_map(tmp_path / "u" / "generated_000.mrc").shape == (32, 32, 32)
    bad = ["generate", "--like", str(src), "--keep-scales", "3", "-o", str(out)]
    assert main(bad + args) == 1
    assert capsys.readouterr().err.strip() == "error: --keep-scales 3: use 0..2"
    unconditional = ["generate", "--keep-scales", "1", "-o", str(tmp_path / "k")]
    assert main(unconditional + args) == 1  # keeps nothing without --like
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --keep-scales") and "\n" not in err


def test_generate_strength_keeps_variations_closer_to_the_map(tiny, tmp_path, capsys):
    src = DATA / "maps" / "emd_5625.map"
    args = ["--checkpoint", tiny["encoder"], "--prior", tiny["flow"], "-n", "3"]
    like = read_map(src).data.ravel()
    closeness = {}
    for strength in ("1", "0.3"):
        out = tmp_path / strength
        cmd = ["generate", "--like", str(src), "--strength", strength, "-o", str(out)]
        assert main(cmd + args) == 0
        made = [read_map(f) for f in sorted(out.iterdir())]
        assert all(m.header["labels"][0] == GENERATED_LABEL for m in made)
        closeness[strength] = np.mean(
            [np.corrcoef(m.data.ravel(), like)[0, 1] for m in made]
        )
    assert "strength 0.3" in made[0].header["labels"][1]
    assert closeness["0.3"] > closeness["1"]
    bad_cases = (
        ["--like", str(src), "--strength", "0"],
        ["--strength", "0.5"],  # without --like
        ["--strength", "1"],
    )
    for bad in bad_cases:
        assert main(["generate", *bad, "-o", str(tmp_path / "x")] + args) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "strength" in err


def test_generate_like_a_stored_entry(tiny, store, tmp_path, capsys):
    store.close()  # the command opens it read-only
    args = ["--checkpoint", tiny["encoder"], "--prior", tiny["flow"]]
    args += ["--store", str(store.path), "-n", "1"]
    out = tmp_path / "v"
    assert main(["generate", "--like", "EMD-5625", "-o", str(out)] + args) == 0
    made = read_map(out / "generated_000.mrc")
    assert made.shape == read_map(DATA / "maps" / "emd_5625.map").shape
    # the defaults: all but the finest of this encoder's 3 scales (3 for 4
    # scales), started from the entry's own at strength 0.6
    assert "like EMD-5625 keep 2 strength 0.6" in made.header["labels"][1]
    assert main(["generate", "--like", "EMD-9999", "-o", str(out)] + args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "9999" in err


def test_shipped_prior_fits_the_shipped_encoder():
    from encoder.checkpoint import load_checkpoint

    assert DEFAULT_PRIOR.stat().st_size <= 20 * 2**20
    enc, _ = load_checkpoint(DEFAULT_CHECKPOINT)
    prior, blob = load_prior(DEFAULT_PRIOR, enc)
    assert blob["optimizer"] is None and blob["extra"]["seconds"] > 0
    assert prior.config.kind == "flow" and prior.encoder_hash == enc.checkpoint_hash
    tokens = enc.encode_indices(torch.rand(1, 1, 64, 64, 64))
    gen = torch.Generator().manual_seed(0)
    drawn = sample(prior, enc, 1, keep=tokens[:2], generator=gen)
    assert all(torch.equal(a, b) for a, b in zip(drawn[:2], tokens[:2], strict=True))


def _half(src, path):
    """``src`` with one half of its box set to its background: a partial map."""
    from dataclasses import replace

    dmap = read_map(src)
    data = dmap.data.copy()
    data[: data.shape[0] // 2] = np.median(data)
    write_map(replace(dmap, data=data), path)
    return path


def test_complete_writes_a_labelled_map_on_the_input_grid(tmp_path):
    partial = _half(DATA / "maps" / "emd_5625.map", tmp_path / "partial.mrc")
    out = tmp_path / "done.mrc"
    assert main(["complete", str(partial), "-o", str(out), "--seed", "1"]) == 0
    made, before = read_map(out), read_map(partial)
    assert made.shape == before.shape and made.generated
    assert "swan complete of partial.mrc strength" in made.header["labels"][1]
    assert np.isfinite(made.data).all() and made.data.std() > 0


def test_search_with_the_completion_keeps_each_entrys_best(store, tmp_path, capsys):
    from swan_index.generate import Generator, completion_of, search_with_completion
    from swan_index.map_encoder import MapEncoder
    from swan_index.query import Query, search_explained
    from swan_index.ranking import SearchOptions

    partial = _half(DATA / "maps" / "emd_5625.map", tmp_path / "partial.mrc")
    encoder = MapEncoder()
    query = Query.from_file(encoder, partial)
    gen = Generator.load(DEFAULT_CHECKPOINT, DEFAULT_PRIOR)
    completion = completion_of(query, gen, encoder, 0.6)
    assert completion.volumes.shape == query.volumes.shape
    assert not np.allclose(completion.volumes, query.volumes)
    opts = SearchOptions(exact=True)
    plain, _ = search_explained(store, query, 6, opts)
    alone, _ = search_explained(store, completion, 6, opts)
    merged, sig = search_with_completion(store, query, completion, 6, opts)
    by_plain = {h.id: h for h in plain}
    by_alone = {h.id: h for h in alone}
    assert [h.rank for h in merged] == list(range(1, len(merged) + 1))
    assert [h.score for h in merged] == sorted((h.score for h in merged), reverse=True)
    for h in merged:  # each entry's better hit, marked by its pose
        best = max(by_plain[h.id].score, by_alone[h.id].score)
        assert h.score == pytest.approx(best)
        from_completion = h.pose >= query.poses
        assert from_completion == (by_alone[h.id].score > by_plain[h.id].score)
    assert sig.significant is None  # six entries: too few for a null model
    assert sig.message.startswith("no significance")
    # the command line
    store.close()  # the command opens it read-only
    base = ["search", str(partial), "--store", str(store.path), "--exact", "--json"]
    scales = ["--prior", str(DEFAULT_PRIOR)]  # the scales prior's completion
    complete = ["--complete", "--complete-strength", "0.6", *scales]
    assert main([*base, "-k", "6", *complete]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [h["id"] for h in shown] == [h.id for h in merged]
    for bad in (
        [*base, "--complete-strength", "0.5"],  # without --complete
        [*base, "--complete", "--complete-strength", "0"],
    ):
        assert main(bad) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --complete-strength") and "\n" not in err
    stored = ["search", "EMD-5625", "--store", str(store.path), "--stored-pose"]
    assert main([*stored, "--complete"]) == 2
    assert "completion needs the map itself" in capsys.readouterr().err


def test_denoise_is_closer_to_the_clean_map_than_its_input(tmp_path):
    """A SIMULATED map of a held-out molecule plus noise: ``swan denoise`` (the
    shipped encoder and prior, the reconstruction made consistent with the
    map) is closer to the clean map than the noisy input and than the
    autoencoder's reconstruction alone."""
    from dataclasses import replace

    from ingest.canonical import volume_correlation
    from ingest.simulate import simulate_map
    from swan_index.generate import Generator, on_input_grid

    clean = simulate_map(DATA / "models" / "5me2.pdb", 6.0)
    rng = np.random.default_rng(0)
    data = clean.data + rng.normal(0, clean.data.std(), clean.shape)
    noisy = replace(clean, data=data.astype(np.float32))
    write_map(noisy, tmp_path / "noisy.mrc")
    out = tmp_path / "denoised.mrc"
    level = str(clean.header["recommended_contour"])  # the depositor's level
    args = ["denoise", str(tmp_path / "noisy.mrc"), "-o", str(out)]
    assert main([*args, "--contour", level]) == 0
    made = read_map(out)
    assert made.shape == clean.shape and made.generated
    gen = Generator.load(DEFAULT_CHECKPOINT, DEFAULT_PRIOR)
    cv = gen.canonical(noisy, float(level))
    alone = on_input_grid(gen.reconstruct(cv, None)[0], cv, noisy)
    r = volume_correlation(made.data, clean.data)
    assert r > volume_correlation(noisy.data, clean.data) + 0.1
    assert r > volume_correlation(alone, clean.data) + 0.02


def test_denoise_without_a_contour_chooses_it_on_the_smoothed_map(tmp_path):
    """A noisy map that carries no contour: the automatic level of the map
    itself grows with the noise; ``swan denoise`` takes it on the map smoothed
    by one voxel instead, near the clean map's level, and its result is as
    close to the clean map as with the depositor's level given."""
    from dataclasses import replace

    from ingest.canonical import volume_correlation
    from ingest.contour import auto_contour
    from ingest.simulate import simulate_map
    from swan_index.generate import noisy_contour

    clean = simulate_map(DATA / "models" / "5me2.pdb", 6.0)
    truth_level = auto_contour(clean.data)
    rng = np.random.default_rng(1)
    data = clean.data + rng.normal(0, clean.data.std(), clean.shape)
    noisy = replace(clean, data=data.astype(np.float32), header={})
    raw, smoothed = auto_contour(noisy.data), noisy_contour(noisy)
    assert abs(smoothed - truth_level) < 0.5 * abs(raw - truth_level)
    # a level given, or carried by the map, is kept as it is
    assert noisy_contour(noisy, 0.3) == 0.3
    assert noisy_contour(clean) is None  # the simulated map carries its level
    write_map(noisy, tmp_path / "noisy.mrc")
    assert read_map(tmp_path / "noisy.mrc").header.get("recommended_contour") is None
    runs = {}
    for name, extra in (("auto", []), ("given", ["--contour", str(truth_level)])):
        out = tmp_path / f"{name}.mrc"
        assert (
            main(["denoise", str(tmp_path / "noisy.mrc"), "-o", str(out), *extra]) == 0
        )
        runs[name] = volume_correlation(read_map(out).data, clean.data)
    assert runs["auto"] > volume_correlation(noisy.data, clean.data) + 0.1
    assert runs["auto"] > runs["given"] - 0.02


@pytest.mark.parametrize(
    ("where", "name", "fix"),
    [
        ("generate", "gaussian_filter", "--contour"),  # smoothing for the contour
        ("shells", "rfftn", "making the denoised map consistent"),
    ],
)
def test_denoise_out_of_memory_is_one_line(
    tmp_path, monkeypatch, capsys, where, name, fix
):
    """No memory for the smoothed copy (its contour) or for the copies that
    make the reconstruction consistent with the map: one line naming the file
    and the way out, exit 1, nothing written."""
    from swan_index import generate, shells

    def no_memory(*args, **kwargs):
        raise MemoryError

    data = np.random.default_rng(0).normal(size=(24, 24, 24)).astype(np.float32)
    data[8:16, 8:16, 8:16] += 6.0  # a molecule, so a contour is found
    noisy = DensityMap(data, np.full(3, 2.0), np.zeros(3), "noisy.mrc", "")
    write_map(noisy, tmp_path / "noisy.mrc")
    module = generate.ndimage if where == "generate" else shells.fft
    monkeypatch.setattr(module, name, no_memory)
    out = tmp_path / "out.mrc"
    assert main(["denoise", str(tmp_path / "noisy.mrc"), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "noisy.mrc" in err and fix in err
    assert not out.exists()
