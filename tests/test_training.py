"""Dataset building, training (resumable), reconstruction evaluation, CLI."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

from encoder.checkpoint import load_checkpoint
from encoder.evaluate import SURFACE_LEVELS, evaluate_recon, iou, pearson
from encoder.model import CANONICAL_SURFACE, CryoSwanConfig
from encoder.train import TrainConfig, train
from encoder.training_data import (
    DatasetConfig,
    build_dataset,
    from_uint8,
    group_of,
    load_split,
    read_items,
    to_uint8,
)
from swan_index.cli import main
from tests.conftest import DATA


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    cfg = DatasetConfig(
        grid=32,
        real_maps=str(DATA / "maps"),
        models=str(DATA / "models"),
        synthetic=0,
        real_views=2,
        model_views=2,
        workers=2,
    )
    build_dataset(cfg, out, progress=False)
    return out


def test_dataset_holds_out_whole_molecules(tiny_dataset):
    manifest = json.loads((tiny_dataset / "manifest.json").read_text())
    items = read_items(tiny_dataset)
    splits_of_group = defaultdict(set)
    for row in items:
        splits_of_group[row["group"]].add(row["split"])
    assert all(len(s) == 1 for s in splits_of_group.values())
    # the real map and the model of one molecule share a group and a split
    assert group_of("emd_21457_seg.mrc") == group_of("6vyb_Ndom.pdb") == "spike"
    assert splits_of_group["haemoglobin"] == {"test"}  # 5me2.pdb
    assert splits_of_group["spike"] == {"test"}  # emd_21457_seg.mrc
    assert splits_of_group["emd_1832"] == {"train"}
    assert manifest["failures"] == []
    for split in ("train", "val", "test"):
        vols = load_split(tiny_dataset, split)
        assert len(vols) == sum(r["split"] == split for r in items)
        assert vols.dtype == np.uint8 and vols.shape[1:] == (32, 32, 32)
    kinds = {r["kind"] for r in items}
    assert kinds == {"real", "simulated"}


def test_views_are_augmented(tiny_dataset):
    items = [r for r in read_items(tiny_dataset) if r["source"] == "emd_1832.map"]
    augs = [json.loads(r["augmentation"]) for r in items]
    assert augs[0] == {"view": 0, "contour_source": "auto"}
    assert "rotation" in augs[1]


def test_uint8_round_trip():
    v = np.array([0.0, 0.5, 0.75, 1.0], dtype=np.float32)
    assert np.allclose(from_uint8(to_uint8(v)), v, atol=1 / 255)


def test_bad_dataset_folder(tmp_path):
    with pytest.raises(ValueError, match="not a dataset folder"):
        load_split(tmp_path, "train")
    with pytest.raises(ValueError, match="not a folder"):
        build_dataset(
            DatasetConfig(real_maps=str(tmp_path / "none"), synthetic=0),
            tmp_path / "out",
            progress=False,
        )


def test_train_resume_and_evaluate(tiny_dataset, tmp_path):
    small = CryoSwanConfig(
        latent_dim=8, codebook_size=32, channels=(8, 16), depths=(1, 1, 1, 1)
    )
    cfg = TrainConfig(
        dataset=str(tiny_dataset),
        out=str(tmp_path / "run"),
        model=small,
        batch_size=4,
        steps=6,
        log_every=3,
        checkpoint_every=3,
        device="cpu",
    )
    final = train(cfg, progress=False)
    model, blob = load_checkpoint(final)
    assert blob["step"] == 6 and model.config.scales == (1, 2, 4)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    logged = [json.loads(line) for line in lines]
    assert [r["step"] for r in logged if "rec_loss" in r] == [3, 6]
    assert "codebooks" in logged[0]
    # resuming: the same command with more steps continues from step 6
    train(TrainConfig(**{**cfg.__dict__, "steps": 9}), progress=False)
    _, blob = load_checkpoint(tmp_path / "run" / "model.pt")
    assert blob["step"] == 9
    # the run ends by choosing its decoded surface on the training split
    chosen = [r for r in logged if "surface_level" in r]
    assert len(chosen) == 1
    assert model.surface_level == chosen[0]["surface_level"] in SURFACE_LEVELS
    extra = blob["extra"]
    assert extra.get("surface_level", CANONICAL_SURFACE) == model.surface_level
    result = evaluate_recon(model, tiny_dataset, "test")
    assert result["surface_level"] == model.surface_level
    levels = result["by_kind"]["all"]
    assert set(levels) == {"1", "2", "3"}
    assert levels["1"]["bits"] < levels["2"]["bits"] < levels["3"]["bits"]
    assert all(0 <= m["iou"] <= 1 and -1 <= m["pearson"] <= 1 for m in levels.values())


@pytest.mark.parametrize("arch", ["single-scale", "plain-ae"])
def test_baselines_train_and_load(tiny_dataset, tmp_path, arch):
    code = main(
        [
            "train",
            "--dataset",
            str(tiny_dataset),
            "--out",
            str(tmp_path),
            "--arch",
            arch,
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    model, blob = load_checkpoint(tmp_path / "model.pt")
    assert blob["arch"] == arch
    res = evaluate_recon(model, tiny_dataset, "test", limit=4)
    assert set(res["by_kind"]["all"]) == {"all" if arch == "plain-ae" else "1"}


def test_metrics_helpers():
    a = np.zeros((2, 4, 4, 4))
    a[:, :2] = 1.0
    b = a.copy()
    b[1, :, :, :2] = 1.0
    assert iou(a, b).tolist() == [1.0, pytest.approx(32 / 48)]
    assert pearson(a, a) == pytest.approx([1.0, 1.0])


def test_run_job_builds_one_item_or_reports_its_error():
    from encoder.training_data import run_job

    vol, row = run_job(("synthetic", 0, 0, 32))
    assert vol.dtype == np.uint8 and vol.shape == (32, 32, 32)
    aug = json.loads(row["augmentation"])
    assert aug["spec"].startswith("SYNTHETIC") and 4.0 <= aug["resolution"] <= 12.0
    assert {"contour", "radius_of_gyration", "volume", "pose_candidates"} <= set(row)
    again, _ = run_job(("synthetic", 0, 0, 32))
    np.testing.assert_array_equal(vol, again)
    missing, error = run_job(("real", str(DATA / "maps" / "missing.map"), 1, 0, 32))
    assert missing is None and error["error"]


def test_realistic_items_are_labelled_and_keep_the_enclosed_volume():
    from encoder.training_data import run_job
    from encoder.training_data.realism import make_realistic
    from ingest import simulate_map
    from ingest.simulate import read_model

    dmap = simulate_map(read_model(DATA / "models" / "5me2.pdb"), 6.0, voxel_size=2.0)
    level = float(dmap.header["recommended_contour"])
    inside = int((dmap.data >= level).sum())
    kinds = set()
    for seed in range(8):
        out, contour, applied = make_realistic(dmap, level, np.random.default_rng(seed))
        assert out.data.shape == dmap.data.shape and out.data.dtype == np.float32
        assert out.header["recommended_contour"] == contour
        kinds |= set(applied)
        if applied and "noise" not in applied:  # blurred or sharpened only
            assert abs(int((out.data >= contour).sum()) - inside) <= 0.01 * inside
    assert {"bfactor", "anisotropy", "noise"} <= kinds
    # a dataset item made realistic says what was applied; chance 0 changes nothing
    plain, _ = run_job(("synthetic", 1, 0, 32))
    same, row = run_job(("synthetic", 1, 0, 32, 0.0))
    np.testing.assert_array_equal(plain, same)
    rows = [run_job(("synthetic", i, 0, 32, 1.0))[1] for i in range(4)]
    assert any("realistic" in json.loads(r["augmentation"]) for r in rows)
