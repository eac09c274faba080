"""E-values of search hits (swan_index.significance): the null fit is calibrated
on scores of a known distribution, the null model follows the store's content,
and a family member is significant where an unrelated entry is not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from encoder.code import MultiScaleCode
from swan_index import significance as sg
from swan_index.ranking import SearchOptions
from swan_index.schema import EncoderInfo, EntryRecord
from swan_index.store import Store

#: A small encoder identity: stores of it need no checkpoint.
SMALL = EncoderInfo("s" * 64, (1, 2), (1, 1), (16, 16), 16)
NO_FIT = SearchOptions(fit_top=0)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype("f4")


def family_batch(
    rng: np.random.Generator, families: int, size: int, singles: int, start: int
) -> tuple[MultiScaleCode, list[EntryRecord]]:
    """``families`` families of ``size`` entries each (vectors close to the
    family's centre at every scale, labelled ``fam<i>``), then ``singles``
    unrelated entries."""
    labels = [f"fam{start}-{f}" for f in range(families) for _ in range(size)]
    labels += [None] * singles
    n = len(labels)
    vectors = []
    for dim in SMALL.dims:
        centres = rng.normal(size=(families, dim))
        v = rng.normal(size=(n, dim))
        for f in range(families):
            rows = slice(f * size, (f + 1) * size)
            v[rows] = centres[f] + 0.15 * rng.normal(size=(size, dim))
        vectors.append(_unit(v))
    tokens = [np.zeros((n, 1, s, s, s), np.int16) for s in SMALL.scales]
    code = MultiScaleCode(SMALL.scales, tuple(tokens), tuple(vectors), SMALL.hash)
    records = [
        EntryRecord(sha256=f"small-{start}-{i}", rg=20.0, label=lab)
        for i, lab in enumerate(labels)
    ]
    return code, records


@pytest.fixture
def family_store(tmp_path: Path):
    rng = np.random.default_rng(3)
    st = Store.open(tmp_path / "fam", encoder=SMALL)
    st.add(*family_batch(rng, families=3, size=5, singles=45, start=0))
    yield st
    st.close()


# -- the null fit --------------------------------------------------------------------
@pytest.mark.parametrize("shape", sorted(sg.SHAPES))
def test_fitted_null_gives_calibrated_pvalues(shape):
    """On scores drawn from a known distribution, with 3 % related pairs far
    above them, the fitted null gives fresh null scores p-values that are about
    uniform: the fraction below x is about x."""
    rng = np.random.default_rng(0)
    dist = sg.SHAPES[shape](loc=0.02, scale=0.07)
    null = dist.rvs(size=4000, random_state=rng)
    related = rng.uniform(0.7, 0.9, size=120)
    loc, scale, trimmed = sg.fit_tail(np.concatenate([null, related]), shape)
    assert loc == pytest.approx(0.02, abs=0.01)
    assert scale == pytest.approx(0.07, rel=0.1)
    assert trimmed >= 100  # the related pairs are left out of the fit
    fresh = dist.rvs(size=200_000, random_state=rng)
    p = sg.SHAPES[shape].sf(fresh, loc=loc, scale=scale)
    for x in (0.1, 0.01, 0.001):
        assert np.mean(p < x) == pytest.approx(x, rel=0.5)
    # E = N p: of N null entries, about E score at or above it
    model = sg.NullModel("k", 1000, shape, loc, scale, 4120, trimmed, ())
    threshold = dist.isf(0.01)  # 1 % of null entries reach it: E about 10
    assert float(model.evalue(threshold)) == pytest.approx(10, rel=0.5)


def test_fit_refuses_too_few_or_flat_scores():
    with pytest.raises(ValueError, match="at least 10"):
        sg.fit_tail(np.zeros(5))
    with pytest.raises(ValueError, match="spread"):
        sg.fit_tail(np.zeros(50))


def test_score_terms_add_up_to_the_score():
    scores = {"1": 0.999, "2": 0.984, "4": 0.949, "8": 0.833, "fit": 0.7, "size": -0.5}
    opts = SearchOptions()
    terms = sg.score_terms(scores, opts, (1, 2, 4, 8))
    shape = np.mean([0.999, 0.984, 0.949, 0.833])
    assert sg.shape_score(scores, opts, (1, 2, 4, 8)) == pytest.approx(shape)
    assert terms["shape"] == pytest.approx(0.5 * shape)
    assert terms["fit"] == pytest.approx(0.35)
    assert terms["size"] == pytest.approx(-0.05 * 0.5)
    no_fit = sg.score_terms(
        {k: v for k, v in scores.items() if k != "fit"}, opts, (1, 2, 4, 8)
    )
    assert no_fit["shape"] == pytest.approx(shape) and "fit" not in no_fit
    text = sg.formula(opts, (1, 2, 4, 8), fit=True)
    assert "0.5 x shape + 0.5 x fit - 0.05 x |ln(Rg_query / Rg_entry)|" in text
    assert sg.formula(NO_FIT, (1, 2), fit=False).startswith("score = shape - 0.05")


# -- the null model of a store -------------------------------------------------------
def test_null_model_follows_the_store_content(family_store, tmp_path, monkeypatch):
    models = sg.NullModels(cache=tmp_path / "cache")
    first, _ = models.get(family_store, NO_FIT, False)
    assert first.entries == 60 and first.pairs > 0
    again, _ = models.get(family_store, NO_FIT, False)
    assert again is first  # same content: kept
    # another process finds it on disk and fits nothing
    monkeypatch.setattr(sg, "calibrate", lambda *a, **k: pytest.fail("refitted"))
    loaded, _ = sg.NullModels(cache=tmp_path / "cache").get(family_store, NO_FIT, False)
    assert loaded == first
    monkeypatch.undo()
    # an add, then a delete: each gives a new model of the new size
    family_store.add(*family_batch(np.random.default_rng(4), 1, 5, 5, start=1))
    added, _ = models.get(family_store, NO_FIT, False)
    assert added.key != first.key and added.entries == 70
    family_store.delete(family_store.ids[:12])
    deleted, _ = models.get(family_store, NO_FIT, False)
    assert deleted.key not in (first.key, added.key) and deleted.entries == 58
    assert set(deleted.reference_ids) <= set(family_store.ids.tolist())


def test_too_small_a_store_says_so(tmp_path):
    rng = np.random.default_rng(5)
    with Store.open(tmp_path / "tiny", encoder=SMALL) as st:
        st.add(*family_batch(rng, 1, 3, 5, start=0))
        hits = st.search(1, k=3, options=NO_FIT)
        code = st.get_code(1)
        got, sig = sg.assess(
            st, hits, code, 20.0, NO_FIT, None, 1, sg.NullModels(cache=None)
        )
    assert sig.significant is None and sig.null is None
    assert "fewer than the 20" in sig.message
    assert all(h.evalue is None and h.terms for h in got)


def _assessed(store: Store, entry: int, k: int, models: sg.NullModels):
    """A stored entry searched (its stored vectors, no fit), hits assessed."""
    hits = store.search(entry, k=k, options=NO_FIT)
    code = store.get_code(entry)
    return sg.assess(store, hits, code, 20.0, NO_FIT, None, entry, models)


def test_family_members_are_significant_and_the_rest_are_not(family_store):
    models = sg.NullModels(cache=None)
    labels = dict(
        zip(
            family_store.entries(("id", "label"))["id"].tolist(),
            family_store.entries(("id", "label"))["label"].tolist(),
            strict=True,
        )
    )
    member = next(i for i, lab in labels.items() if lab == "fam0-1")
    got, sig = _assessed(family_store, member, 20, models)
    relatives = [h for h in got if h.id != member and labels[h.id] == "fam0-1"]
    others = [h for h in got if labels[h.id] != "fam0-1"]
    assert len(relatives) == 4
    assert all(h.significant for h in relatives)
    assert not any(h.significant for h in others)
    assert sig.significant == 4 and sig.message.startswith("4 significant matches")
    assert all(h.excess > 0 for h in relatives)
    assert set(got[0].scale_z) == {"1", "2"}
    # a single (no relative in the store): no significant match
    single = next(i for i, lab in labels.items() if lab is None)
    got, sig = _assessed(family_store, single, 5, models)
    assert sig.significant == 0
    assert sig.message.startswith("no significant match (E < 0.1)")
    # the E-values are of this store's size
    assert all(
        h.evalue == pytest.approx(60 * h.pvalue) for h in got if h.pvalue is not None
    )


# -- the command line, the API and the dashboard on a reduced demo store -----------
@pytest.fixture(scope="module")
def demo_store(tmp_path_factory) -> Path:
    """A reduced demo store (the six sample maps and 16 simulated maps of four
    families): 22 entries, enough for a null model."""
    from dashboard.demo import DemoConfig, build_demo_store
    from swan_index.map_encoder import MapEncoder

    path = tmp_path_factory.mktemp("sig") / "demo"
    cfg = DemoConfig(synthetic_families=2, variants=4)
    build_demo_store(path, MapEncoder(), cfg, progress=False)
    return path


@pytest.fixture
def private_models(tmp_path, monkeypatch):
    """Null models kept in a test folder, not the user's cache."""
    models = sg.NullModels(cache=tmp_path / "null")
    monkeypatch.setattr(sg, "MODELS", models)
    return models


def test_cli_prints_the_terms_the_evalues_and_the_verdict(
    demo_store, private_models, capsys
):
    from swan_index.cli import main

    args = ["search", "EMD-21457", "--store", str(demo_store), "-k", "3"]
    assert main([*args, "--stored-pose", "--fit-top", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("score = shape - 0.05 x |ln(Rg_query / Rg_entry)|")
    assert "E = unrelated entries expected" in out[1] and "E < 0.1" in out[1]
    head = out[2].split()
    assert head[:9] == ["rank", "id", "EMDB", "score", "E", "shape", "fit", "Rg", "q/e"]
    assert head[9:13] == ["z1", "z2", "z4", "z8"]
    assert out[3].split()[2] == "EMD-21457"  # itself first, then two others
    assert out[-1].startswith("no significant match (E < 0.1)")
    assert main([*args, "--stored-pose", "--fit-top", "0", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    for h in hits:
        assert h["evalue"] == pytest.approx(22 * h["pvalue"])
        assert sum(h["terms"].values()) == pytest.approx(h["score"], abs=1e-5)
        assert set(h["scale_z"]) == {"1", "2", "4", "8"}
    assert not any(h["significant"] for h in hits[1:])


def test_help_states_the_formula(capsys):
    from swan_index.cli import main

    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "score = 0.5 x shape + 0.5 x fit - 0.05 x |ln(Rg_query / Rg_entry)|" in text
    assert "E-value" in text and "no significant match" in text


def test_api_returns_the_terms_and_significance(demo_store, private_models):
    from fastapi.testclient import TestClient

    from dashboard.server import create_server
    from dashboard.service import SwanService

    service = SwanService(demo_store)
    try:
        with TestClient(create_server(service, None)) as client:
            got = client.get(
                "/api/entries/EMD-21457/similar", params={"k": 3, "fit": False}
            )
        assert got.status_code == 200, got.text
        body = got.json()
    finally:
        service.close()
    sig = body["significance"]
    assert sig["formula"].startswith("score = shape - 0.05")
    assert sig["entries"] == 22 and sig["threshold"] == 0.1
    assert sig["message"].startswith("no significant match") and sig["significant"] == 0
    assert sig["null"]["shape"] == sg.SHAPE and sig["null"]["pairs"] > 100
    first, *others = body["hits"]
    assert first["emdb_id"] == "EMD-21457" and first["excess"] > 0
    for h in body["hits"]:
        assert sum(h["terms"].values()) == pytest.approx(h["score"], abs=1e-5)
        assert h["shape"] == pytest.approx(h["terms"]["shape"])  # no fit: all shape
        assert 0 < h["pvalue"] <= 1 and h["evalue"] == pytest.approx(22 * h["pvalue"])
    assert not any(h["significant"] for h in others)


def test_the_benchmark_chooses_on_its_calibration_draw():
    """bench_significance's rule: the shape whose unrelated hits at E < 1 per
    query come closest to 1, the loosest threshold that keeps them at most
    MAX_FALSE_PER_QUERY per query (made-up measurements)."""
    from benchmarks.bench_significance import MAX_FALSE_PER_QUERY, choose

    def cells(*per_query):
        return {
            f"E<{t:g}": {"unrelated_per_query": u}
            for t, u in zip((1, 0.1, 0.01, 0.001), per_query, strict=True)
        }

    draw = {
        "by_shape": {
            "normal": cells(0.7, 0.2, 0.03, 0.0),
            "gumbel": cells(0.05, 0.0, 0.0, 0.0),
            "logistic": cells(3.0, 0.5, 0.1, 0.0),
        }
    }
    assert MAX_FALSE_PER_QUERY == 0.05
    assert choose(draw) == ("normal", 0.01)
    draw["by_shape"]["normal"] = cells(0.7, 0.2, 0.2, 0.2)  # none good enough
    assert choose(draw) == ("normal", 0.001)


def test_the_benchmark_writes_where_out_says(tmp_path, monkeypatch):
    """bench_significance --demo --out X writes X (not X_demo); without --out
    each mode has its own file under benchmarks/results."""
    from benchmarks import bench_significance as bs

    written = []
    monkeypatch.setattr(bs, "run_demo", lambda args: {"demo": True})
    monkeypatch.setattr(bs, "run", lambda args: {"demo": False})
    monkeypatch.setattr(
        bs, "save_result", lambda result, out, table: written.append((result, out))
    )
    none = str(tmp_path / "none")  # no data folder is read (nor the default)
    empty = ["--models", none, "--maps", none, "--shapes", none]
    bs.main([*empty, "--demo", "--out", str(tmp_path / "x.json")])
    bs.main([*empty, "--out", str(tmp_path / "y.json")])
    bs.main([*empty, "--demo"])
    bs.main(empty)
    assert written == [
        ({"demo": True}, tmp_path / "x.json"),
        ({"demo": False}, tmp_path / "y.json"),
        ({"demo": True}, bs.RESULTS / "bench_significance_demo.json"),
        ({"demo": False}, bs.RESULTS / "bench_significance.json"),
    ]


def test_another_store_with_the_same_ids_gets_its_own_null(tmp_path):
    """Two stores of the same encoder and ids but other maps: the cached model
    of one is not the other's."""
    cache = tmp_path / "cache"
    stores = []
    for name, seed in (("a", 1), ("b", 2)):
        st = Store.open(tmp_path / name, encoder=SMALL)
        code, records = family_batch(np.random.default_rng(seed), 2, 5, 20, start=0)
        records = [
            EntryRecord(sha256=f"{name}-{i}", rg=20.0, label=r.label)
            for i, r in enumerate(records)
        ]
        st.add(code, records)
        stores.append(st)
    try:
        a, _ = sg.NullModels(cache=cache).get(stores[0], NO_FIT, False)
        b, _ = sg.NullModels(cache=cache).get(stores[1], NO_FIT, False)
        assert a.key == b.key  # the same ids and options...
        assert a.reference_sha256 != b.reference_sha256  # ...but not the same maps
        assert (a.loc, a.scale) != (b.loc, b.scale)
    finally:
        for st in stores:
            st.close()


def test_an_entry_close_to_everything_has_the_highest_own_background(
    family_store, monkeypatch
):
    # a hub: at every scale the mean direction of all the store's entries
    vectors = [
        _unit(family_store.encoder.query_vectors(family_store.get_code(int(i)))[s])
        for i in family_store.ids
        for s in range(len(SMALL.dims))
    ]
    per_scale = [np.concatenate(vectors[s :: len(SMALL.dims)]) for s in range(2)]
    hub_vectors = tuple(_unit(v.sum(0, keepdims=True)) for v in per_scale)
    tokens = tuple(np.zeros((1, 1, s, s, s), np.int16) for s in SMALL.scales)
    code = MultiScaleCode(SMALL.scales, tokens, hub_vectors, SMALL.hash)
    (hub,) = family_store.add(code, [EntryRecord(sha256="hub", rg=20.0)])
    models = sg.NullModels(cache=None)
    ids = [int(i) for i in family_store.ids]
    centers = models.centers(family_store, ids, NO_FIT, False)
    assert set(centers) == set(ids)
    others = [c for i, c in centers.items() if i != hub]
    assert centers[hub] > max(others)
    assert centers[hub] > np.median(others) + 0.1
    # the same entry against the same null model: from memory, not scored again
    monkeypatch.setattr(sg, "stored_background", lambda *a, **k: pytest.fail("again"))
    assert models.centers(family_store, [hub], NO_FIT, False) == {hub: centers[hub]}


def test_a_store_without_a_null_model_has_no_own_backgrounds(tmp_path):
    st = Store.open(tmp_path / "few", encoder=SMALL)
    st.add(*family_batch(np.random.default_rng(6), 1, 3, 3, start=0))
    assert sg.NullModels(cache=None).centers(st, st.ids, NO_FIT, False) == {}
    st.close()


def test_search_with_completion_ranks_less_each_entrys_own_background(
    family_store, monkeypatch
):
    from swan_index import generate
    from swan_index.generate import merge_completion, search_with_completion
    from swan_index.query import Query, search_explained

    def query(i: int) -> Query:
        return Query(
            family_store.get_code(int(family_store.ids[i])), 20.0, None, "memory"
        )

    partial, completion = query(0), query(1)  # two members of one family
    # as shipped (weight 0) no entry's background is computed
    monkeypatch.setattr(generate, "hub_centers", lambda *a, **k: pytest.fail("hub"))
    plain, _ = search_with_completion(family_store, partial, completion, 12, NO_FIT)
    monkeypatch.undo()
    monkeypatch.setattr(generate, "CENTER_WEIGHT", 0.75)
    got, sig = search_with_completion(family_store, partial, completion, 12, NO_FIT)
    hits, sig0 = search_explained(family_store, partial, 12, NO_FIT)
    more, _ = search_explained(family_store, completion, 12, NO_FIT)
    ids = {h.id for h in [*hits, *more]}
    centers = sg.MODELS.centers(family_store, ids, NO_FIT, False)
    assert set(centers) == ids
    want, _ = merge_completion(hits, sig0, more, partial, 12, centers=centers)
    assert [h.id for h in got] == [h.id for h in want]
    same, _ = merge_completion(
        hits, sig0, more, partial, 12, centers=centers, center_weight=0
    )
    assert [h.id for h in plain] == [h.id for h in same]
    assert [h.pose for h in got] == [h.pose for h in want]
    assert sig.significant == sum(h.significant for h in got)


def test_another_store_with_the_same_ids_gets_its_own_backgrounds(tmp_path):
    models = sg.NullModels(cache=None)
    got = []
    for name, seed in (("one", 7), ("two", 8)):
        st = Store.open(tmp_path / name, encoder=SMALL)
        st.add(*family_batch(np.random.default_rng(seed), 2, 5, 20, start=seed))
        got.append(models.centers(st, st.ids, NO_FIT, False))
        st.close()
    assert set(got[0]) == set(got[1])  # the same ids, other maps
    assert any(abs(got[0][i] - got[1][i]) > 1e-6 for i in got[0])
