"""The completion prior: SIMULATED partial/whole pairs, its training, sampling
given a partial latent, and the completion searched in its own frame."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from encoder.completion import (
    MISSING,
    RECONTOUR,
    as_map,
    completion_pair,
    cut_partial,
    render_in_frame,
)
from encoder.prior import PriorConfig, load_prior, sample
from encoder.train_prior import PriorTrainConfig, train_prior
from ingest.canonical import canonicalize
from swan_index.generate import DEFAULT_PRIOR, canonical_voxel_size
from tests.test_prior import _train, tiny  # noqa: F401  (the module's fixture)


def _blob(side: int = 32) -> np.ndarray:
    """A SIMULATED canonical volume: two joined ellipsoids, values in [0.5, 1]."""
    z, y, x = np.indices((side,) * 3) - (side - 1) / 2
    a = (x / 11) ** 2 + (y / 6) ** 2 + (z / 5) ** 2
    b = ((x - 6) / 5) ** 2 + ((y + 5) / 5) ** 2 + (z / 4) ** 2
    d = np.maximum(1.0 - a, 1.0 - b)
    return np.where(d >= 0, 0.5 + 0.5 * np.clip(d, 0, 1), 0.0).astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_a_cut_removes_the_share_drawn_and_adds_nothing(seed):
    v = _blob()
    partial, kind, share = cut_partial(v, np.random.default_rng(seed))
    inside = v >= 0.5
    lost = (v - partial)[inside].sum() / v[inside].sum()
    assert kind in ("plane", "ball")
    assert MISSING[0] <= share <= MISSING[1] + 0.02
    assert lost == pytest.approx(share, abs=1e-5)
    assert np.all(partial <= v) and np.all((partial == 0) | (partial == v))


def test_a_volume_with_nothing_inside_cannot_be_cut():
    with pytest.raises(ValueError, match="almost nothing inside"):
        cut_partial(np.zeros((8, 8, 8), np.float32), np.random.default_rng(0))


def test_a_volume_rendered_in_its_own_frame_is_its_canonical_volume():
    v = _blob()
    cv = canonicalize(as_map(v), RECONTOUR, 32)
    again = render_in_frame(v, cv)
    assert np.corrcoef(again.ravel(), cv.values.ravel())[0, 1] > 0.99


def test_a_pair_holds_the_part_inside_the_whole_in_the_parts_frame():
    partial, whole, cut = completion_pair(_blob(), np.random.default_rng(3))
    p, w = partial >= 0.5, whole >= 0.5
    assert partial.shape == whole.shape == (32, 32, 32)
    assert (p & w).sum() / p.sum() > 0.9  # the part is where the whole is
    assert w.sum() > p.sum()  # and the whole holds more
    assert cut["kind"] in ("plane", "ball") and 0.09 < cut["share"] < 0.37


def test_scales_priors_keep_their_hash_and_completion_is_a_flow():
    _, blob = load_prior(DEFAULT_PRIOR)  # recomputes the hash from the config
    assert "task" not in blob["config"]
    assert PriorConfig().task == "scales"
    with pytest.raises(ValueError, match="completion prior is a flow"):
        PriorConfig(kind="tokens", task="completion")
    with pytest.raises(ValueError, match="prior task"):
        PriorConfig(task="inpaint")


def _train_completion(tiny, out, steps):  # noqa: F811
    return _train(
        tiny["root"],
        tiny["encoder"],
        "flow",
        steps,
        out=out,
        task="completion",
        init=tiny["flow"],
        pairs_per_item=2,
    )


def test_completion_prior_trains_from_a_scales_prior_and_resumes(tiny, tmp_path):  # noqa: F811
    out = tmp_path / "compl"
    final = _train_completion(tiny, out, steps=3)
    prior, blob = load_prior(final)
    assert prior.config.task == "completion" and blob["config"]["task"] == "completion"
    start, _ = load_prior(tiny["flow"])
    assert torch.equal(prior.mean, start.mean)  # the scales prior's normalisation
    pairs = torch.load(out / "completion_train.pt", weights_only=True)
    assert pairs["whole"].shape == pairs["partial"].shape
    assert len(pairs["whole"]) > 0
    _train_completion(tiny, out, steps=4)  # the same run, longer: resumed
    _, blob = load_prior(out / "prior.pt")
    assert blob["step"] == 4
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == [1, 2, 3, 4]
    assert any("val_loss" in r for r in lines)
    # another shape than the prior it starts from is refused in one line
    bad = PriorTrainConfig(
        dataset=tiny["dataset"],
        encoder=tiny["encoder"],
        out=str(tmp_path / "bad"),
        prior=PriorConfig(kind="flow", task="completion", channels=16, steps=4),
        init=tiny["flow"],
        steps=1,
        device="cpu",
    )
    with pytest.raises(ValueError, match="another shape"):
        train_prior(bad, progress=False)
    from dataclasses import replace

    none = replace(bad, out=str(tmp_path / "none"), pairs_per_item=0)
    with pytest.raises(ValueError, match="at least one pair"):
        train_prior(none, progress=False)


def test_completion_prior_samples_given_a_partial_latent_only(tiny, tmp_path):  # noqa: F811
    from encoder.checkpoint import load_checkpoint

    enc, _ = load_checkpoint(tiny["encoder"])
    completion, _ = load_prior(_train_completion(tiny, tmp_path / "c", steps=2), enc)
    scales, _ = load_prior(tiny["flow"], enc)
    f, _ = enc.encode_latent(torch.rand(2, 1, 32, 32, 32))
    gen = torch.Generator().manual_seed(0)
    drawn = sample(completion, enc, 2, start=f, strength=0.5, given=f, generator=gen)
    assert [t.shape[0] for t in drawn] == [2] * len(drawn)
    with pytest.raises(ValueError, match="completion prior completes"):
        sample(completion, enc, 2, generator=gen)
    with pytest.raises(ValueError, match="completion prior completes"):
        sample(scales, enc, 2, given=f, generator=gen)


def test_canonical_voxel_size_recovers_the_scale():
    v = _blob()
    cv = canonicalize(as_map(v), RECONTOUR, 32)
    # the blob at 1 Å per voxel: its radius of gyration in Å over the
    # canonical volume's own gives the canonical voxel size
    w = np.clip(v - 0.5, 0, None)
    idx = np.indices(v.shape).reshape(3, -1)
    c = idx @ (w.ravel() / w.sum())
    rg = np.sqrt(((idx - c[:, None]) ** 2).sum(0) @ (w.ravel() / w.sum()))
    size = canonical_voxel_size(cv.values, rg)
    assert size == pytest.approx(cv.angstrom_per_voxel, rel=0.05)
    assert canonical_voxel_size(cv.values, None) == 1.0
    assert canonical_voxel_size(np.zeros_like(v), 10.0) == 1.0


def test_swan_complete_with_a_completion_prior_keeps_the_input_grid(tiny, tmp_path):  # noqa: F811
    from ingest.mapio import GENERATED_LABEL, read_map
    from swan_index.cli import main
    from tests.conftest import DATA

    completion = _train_completion(tiny, tmp_path / "c", steps=2)
    src = DATA / "maps" / "emd_5625.map"
    out = tmp_path / "done.mrc"
    args = ["complete", str(src), "-o", str(out), "--checkpoint", tiny["encoder"]]
    assert main([*args, "--prior", str(completion)]) == 0
    before, after = read_map(src), read_map(out)
    assert after.shape == before.shape and after.generated
    assert np.allclose(after.voxel_size, before.voxel_size)
    assert after.header["labels"][0] == GENERATED_LABEL
    assert "swan complete of emd_5625.map" in after.header["labels"][1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "done.mrc"]


def _half_box(tmp_path):
    """emd_5625 with half of its box set to its background: a part missing."""
    from dataclasses import replace

    from ingest.mapio import read_map, write_map
    from tests.conftest import DATA

    dmap = read_map(DATA / "maps" / "emd_5625.map")
    data = dmap.data.copy()
    data[: data.shape[0] // 2] = np.median(data)
    write_map(replace(dmap, data=data), tmp_path / "partial.mrc")
    return tmp_path / "partial.mrc"


def test_the_shipped_completion_prior_fits_the_shipped_encoder():
    from encoder.checkpoint import load_checkpoint
    from swan_index.generate import DEFAULT_COMPLETION_PRIOR
    from swan_index.map_encoder import DEFAULT_CHECKPOINT

    assert DEFAULT_COMPLETION_PRIOR.stat().st_size <= 20 * 2**20
    enc, _ = load_checkpoint(DEFAULT_CHECKPOINT)
    prior, blob = load_prior(DEFAULT_COMPLETION_PRIOR, enc)
    assert prior.config.task == "completion" and blob["optimizer"] is None
    assert blob["extra"]["train"]["init"]  # started from the scales prior


def test_a_completion_is_searched_in_its_own_frame(encoder, tmp_path):
    from swan_index.generate import (
        DEFAULT_COMPLETION_PRIOR,
        Generator,
        completion_of,
        with_own_density,
    )
    from swan_index.map_encoder import DEFAULT_CHECKPOINT
    from swan_index.query import Query

    query = Query.from_file(encoder, _half_box(tmp_path))
    gen = Generator.load(DEFAULT_CHECKPOINT, DEFAULT_COMPLETION_PRIOR)
    assert gen.completes
    one = completion_of(query, gen, encoder, 1.0, draws=1, keep_data=False)
    assert one.name.startswith("completion of") and one.rg > 0
    assert len(one.code) == len(one.volumes) == one.poses
    # canonicalized again: its own centre and scale, not the partial map's
    first = one.volumes[0]
    w = np.clip(first - 0.5, 0, None)
    centre = np.indices(first.shape).reshape(3, -1) @ (w.ravel() / w.sum())
    assert np.allclose(centre, (first.shape[0] - 1) / 2, atol=1.5)
    assert not np.allclose(first, query.volumes[0])
    # several draws: every pose of every draw is a row of one query
    two = completion_of(query, gen, encoder, 1.0, draws=2, keep_data=False)
    assert two.poses > one.poses and len(two.volumes) == len(two.code)
    # keeping the data: the map's own density wherever it reaches the surface
    drawn = np.zeros_like(query.volumes[0])
    kept = with_own_density(drawn, query.volumes[0])
    inside = query.volumes[0] >= 0.5
    assert np.array_equal(kept[inside], query.volumes[0][inside])
    assert not kept[~inside].any()


def test_search_complete_uses_the_completion_prior(store, tmp_path, capsys):
    from swan_index.cli import main

    partial = _half_box(tmp_path)
    store.close()
    base = ["search", str(partial), "--store", str(store.path), "--exact", "--json"]
    assert main([*base, "-k", "6"]) == 0
    plain = {h["id"]: h["score"] for h in json.loads(capsys.readouterr().out)}
    assert main([*base, "-k", "6", "--complete"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert {h["id"] for h in both} == set(plain)
    assert all(h["score"] >= plain[h["id"]] - 1e-6 for h in both)


def _hit(i, score, excess, evalue=1.0, pose=0):
    from swan_index.ranking import Hit

    return Hit(
        rank=1,
        id=i,
        score=score,
        scores={},
        pose=pose,
        entry={},
        excess=excess,
        evalue=evalue,
        significant=evalue < 0.01,
    )


def test_the_merge_compares_each_querys_excess_over_its_background():
    from types import SimpleNamespace

    from swan_index.generate import merge_completion
    from swan_index.significance import Significance

    sig = Significance("f", 0.01, 50, 0, "no significant match", {})
    query = SimpleNamespace(poses=3, entry_id=None)
    # the map: entry 1 first on raw score; its background median 0.70
    hits = [_hit(1, 0.80, 0.10), _hit(2, 0.78, 0.08)]
    # its completion: lower raw scores (background 0.50), entry 2 far above it
    more = [_hit(2, 0.75, 0.25, evalue=0.001), _hit(1, 0.60, 0.10)]
    merged, told = merge_completion(hits, sig, more, query, 5)
    assert [h.id for h in merged] == [2, 1] and [h.rank for h in merged] == [1, 2]
    assert merged[0].pose == 3 and merged[0].score == 0.75  # from the completion
    assert merged[1].pose == 0  # a tie in excess keeps the map's own hit
    assert told.significant == 1 and "1 significant match" in told.message
    # by raw score (the earlier rule) the map's entry 1 stays first
    raw, _ = merge_completion(hits, sig, more, query, 5, by="score")
    assert [h.id for h in raw] == [1, 2] and raw[1].score == 0.78
    # without a null model (no excess) the raw scores decide
    bare = [replace_excess(h) for h in hits]
    plain, _ = merge_completion(bare, sig, more, query, 5)
    assert [h.id for h in plain] == [1, 2]
    with pytest.raises(ValueError, match="merge by"):
        merge_completion(hits, sig, more, query, 5, by="evalue")


def test_the_summed_merge_ranks_by_both_queries_evidence():
    from types import SimpleNamespace

    from swan_index.generate import merge_completion
    from swan_index.significance import Significance

    sig = Significance("f", 0.01, 50, 0, "no significant match", {})
    query = SimpleNamespace(poses=3, entry_id=None)
    # the partial map fits entry 1 best, its completion entry 2; entry 2 is
    # well supported by both queries, entry 1 by the map alone
    hits = [_hit(1, 0.80, 0.30), _hit(2, 0.78, 0.20), _hit(3, 0.70, 0.05)]
    more = [_hit(2, 0.75, 0.25), _hit(3, 0.60, 0.06), _hit(1, 0.50, -0.05)]
    by_excess, _ = merge_completion(hits, sig, more, query, 5)
    assert [h.id for h in by_excess] == [1, 2, 3]  # the better hit: 0.30 > 0.25
    summed, _ = merge_completion(hits, sig, more, query, 5, by="sum")
    assert [h.id for h in summed] == [2, 1, 3]  # 0.45 > 0.25 > 0.11
    assert summed[0].pose == 3 and summed[0].score == 0.75  # its better hit kept
    assert summed[1].pose == 0 and summed[1].score == 0.80
    # an entry one query did not return counts that query's lowest excess
    short = [_hit(2, 0.75, 0.25), _hit(3, 0.60, 0.06)]
    summed, _ = merge_completion(hits, sig, short, query, 5, by="sum")
    assert [h.id for h in summed] == [2, 1, 3]  # entry 1: 0.30 + 0.06
    # without a null model the summed rule falls back to the raw scores
    bare = [replace_excess(h) for h in hits]
    plain, _ = merge_completion(bare, sig, more, query, 5, by="sum")
    assert [h.id for h in plain] == [1, 2, 3]


def replace_excess(h):
    from dataclasses import replace

    return replace(h, excess=None)


def test_the_cut_out_benchmark_scores_what_a_completion_found():
    from benchmarks.bench_completion_pairs import scores

    whole = _blob()
    partial, _, _ = cut_partial(whole, np.random.default_rng(1))
    assert scores(whole, whole, partial)["missing_found"] == pytest.approx(1.0)
    same = scores(partial, whole, partial)
    assert same["missing_found"] == 0.0 and same["iou"] < 1.0
    assert scores(whole, whole, partial)["pearson"] == pytest.approx(1.0)


def test_the_merge_takes_each_entrys_own_background_off_too():
    from types import SimpleNamespace

    from swan_index.generate import merge_completion
    from swan_index.significance import Significance

    sig = Significance("f", 0.01, 50, 0, "no significant match", {})
    query = SimpleNamespace(poses=3, entry_id=None)
    # entry 9 meets every query high (a hub: own background 0.20); entry 2 is
    # the molecule, a little below it for the partial map and its completion
    hits = [_hit(9, 0.82, 0.26), _hit(2, 0.80, 0.22), _hit(3, 0.70, 0.05)]
    more = [_hit(9, 0.70, 0.24), _hit(2, 0.69, 0.23)]
    centers = {9: 0.20, 2: 0.05, 3: 0.0}
    plain, _ = merge_completion(hits, sig, more, query, 5)
    assert [h.id for h in plain] == [9, 2, 3]
    shipped, _ = merge_completion(hits, sig, more, query, 5, centers=centers)
    assert [h.id for h in shipped] == [9, 2, 3]  # weight 0 as shipped
    fair, _ = merge_completion(
        hits, sig, more, query, 5, centers=centers, center_weight=1
    )
    assert [h.id for h in fair] == [2, 9, 3]  # 0.18 > 0.06 > 0.05
    assert fair[0].pose == 3 and fair[0].score == 0.69  # its better hit kept
    # half the weight: 0.225 > 0.16; none: the query's background alone
    half, _ = merge_completion(
        hits, sig, more, query, 5, centers=centers, center_weight=0.5
    )
    assert [h.id for h in half] == [2, 9, 3]
    none, _ = merge_completion(
        hits, sig, more, query, 5, centers=centers, center_weight=0
    )
    assert [h.id for h in none] == [9, 2, 3]
    # the raw-score rule has no background to take off
    raw, _ = merge_completion(hits, sig, more, query, 5, by="score", centers=centers)
    assert [h.id for h in raw] == [9, 2, 3]
    # the map's hits alone (nothing from a completion) are re-ranked the same way
    alone, _ = merge_completion(
        hits, sig, [], query, 5, centers=centers, center_weight=1
    )
    assert [h.id for h in alone] == [2, 9, 3] and alone[0].pose == 0
