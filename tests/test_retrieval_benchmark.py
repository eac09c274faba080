"""The retrieval benchmark end to end, on a tiny gallery (one held-out synthetic
molecule and its versions, two distractors, the shipped sample maps)."""

from __future__ import annotations

import argparse

from benchmarks.retrieval.run import BASELINES, OURS, run
from benchmarks.retrieval.variants import QUERY_CONDITIONS
from swan_index.map_encoder import DEFAULT_CHECKPOINT
from tests.conftest import DATA


def test_benchmark_runs_and_reports_every_method_and_condition():
    args = argparse.Namespace(
        models=None,
        maps=DATA / "maps",
        shapes=None,
        synthetic=1,
        distractors=2,
        shapes_limit=1,
        per_condition=1,
        seed=0,
        checkpoint=DEFAULT_CHECKPOINT,
        entry_background=[0.5],
    )
    result = run(args)
    extra = "cryo-swan+fit less entry background x0.5"
    methods = [*OURS, extra, *BASELINES]
    assert list(result["summary"]) == methods
    # a store this small has no null model: no background to take off, the
    # product's order stands
    tops = {(r["query"], r["method"]): r["top"] for r in result["rows"]}
    for query, method in list(tops):
        if method == extra:
            assert tops[(query, extra)] == tops[(query, "cryo-swan+fit")]
    # the synthetic molecule's queries: one per condition, three noise levels
    assert set(result["by_condition"]) == set(QUERY_CONDITIONS)
    assert result["queries"]["by_condition"]["noise"] == 3
    assert result["gallery"]["by_kind"] == {
        "synthetic": 1,
        "distractor-synthetic": 2,
        "real-map": 6,
    }
    rows = result["rows"]
    assert len(rows) == len(methods) * result["queries"]["size"]
    for row in rows:
        assert row["n_relevant"] == 1  # only the reference is the same molecule
        assert 0 <= row["map"] <= row["mrr"] <= 1
    # a plain rotation of the molecule is found first by every method
    for row in rows:
        if row["condition"] == "rotation":
            assert row["p_at_1"] == 1.0, row
    for method in [*OURS, *BASELINES]:
        assert result["ms_per_query"][method] > 0
    assert result["per_comparison"]["canonical-correlation floats"] == 64**3
    paired = result["paired"]["condition"]
    assert set(paired) == {"all", *QUERY_CONDITIONS}
    n_queries = result["queries"]["size"]
    for per in paired.values():
        assert set(per) == set(BASELINES)
        for x in per.values():
            assert x["better"] + x["worse"] <= x["n"] <= n_queries
            assert x["ci95"][0] <= x["diff"] <= x["ci95"][1]
    assert paired["all"]["zernike"]["n"] == n_queries


def test_paired_counts_and_interval():
    from benchmarks.retrieval.run import _paired

    rows = []
    # ours right on all 10 queries; zernike wrong on 4, the correlation on none
    for i in range(10):
        for method, hit in (
            ("cryo-swan", 1.0),
            ("zernike", 0.0 if i < 4 else 1.0),
            ("canonical-correlation", 1.0),
        ):
            rows.append(
                {"query": f"q{i}", "method": method, "condition": "c", "p_at_1": hit}
            )
    out = _paired(rows, "condition")["c"]
    assert (out["zernike"]["better"], out["zernike"]["worse"]) == (4, 0)
    assert out["zernike"]["diff"] == 0.4 and out["zernike"]["ci95"][0] > 0
    assert out["canonical-correlation"]["diff"] == 0.0
    assert out["canonical-correlation"]["ci95"] == [0.0, 0.0]
