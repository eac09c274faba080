"""The reconstruction benchmark's seed summary and merge (no training here)."""

from __future__ import annotations

import json

from benchmarks.bench_recon import merge, summarize


def _run(steps: int, by_kind: dict) -> dict:
    return {"steps": steps, "loop_seconds": 10.0, "recon": {"by_kind": by_kind}}


def _cells(iou: float, pearson: float, scales: int | None) -> dict:
    row = {"iou": iou, "pearson": pearson, "bits": 100, "n": 4}
    kinds = ("all", "real", "simulated", "synthetic", "shape")
    if scales is None:  # the plain autoencoder: one row named "all"
        return {k: {"all": row} for k in kinds}
    coarse = {"iou": 0.0, "pearson": 0.1, "bits": 8, "n": 4}
    return {
        k: {**{str(s): coarse for s in range(1, scales)}, str(scales): row}
        for k in kinds
    }


def test_summary_takes_the_full_code_and_pairs_the_seeds():
    results = {
        "runs": {
            "cryoswan@s0": _run(7, _cells(0.6, 0.9, 4)),
            "cryoswan@s1": _run(7, _cells(0.5, 0.8, 4)),
            "plain-ae@s0": _run(7, _cells(0.4, 0.85, None)),
            "plain-ae@s1": _run(7, _cells(0.55, 0.7, None)),
            "plain-ae@time@s0": _run(9, _cells(0.7, 0.95, None)),
            "not-seeded": _run(7, _cells(0.1, 0.1, None)),
        }
    }
    summary = summarize(results)
    assert set(summary) == {"cryoswan", "plain-ae", "plain-ae@time"}
    cs = summary["cryoswan"]["real"]
    assert cs["iou"] == [0.6, 0.5] and cs["iou_mean"] == 0.55
    assert "cryoswan_minus_iou" not in cs
    ae = summary["plain-ae"]["all"]
    assert ae["cryoswan_minus_iou"] == [0.2, -0.05]
    assert ae["cryoswan_minus_pearson"] == [0.05, 0.1]
    timed = summary["plain-ae@time"]
    assert timed["seeds"] == [0] and timed["steps"] == [9]
    assert timed["all"]["cryoswan_minus_iou"] == [-0.1]


def test_merge_writes_every_run_and_the_summary(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(
        json.dumps(
            {"benchmark": "x", "runs": {"cryoswan@s0": _run(5, _cells(0.5, 0.8, 2))}}
        )
    )
    b.write_text(
        json.dumps(
            {
                "benchmark": "y",
                "budget": {"steps": 99, "minutes": 1.5, "seed": 0, "precision": "bf16"},
                "runs": {"plain-ae@s0": _run(5, _cells(0.4, 0.7, None))},
            }
        )
    )
    out = tmp_path / "all.json"
    merge([a, b], out)
    merged = json.loads(out.read_text())
    assert merged["benchmark"] == "x"
    assert set(merged["runs"]) == {"cryoswan@s0", "plain-ae@s0"}
    assert merged["summary"]["plain-ae"]["all"]["cryoswan_minus_iou"] == [0.1]
    # each run keeps its own file's budget (the header is the first file's)
    ae = merged["runs"]["plain-ae@s0"]
    assert ae["budget"] == {"steps": 99, "minutes": 1.5}
    assert ae["seed"] == 0 and ae["precision"] == "bf16"
    assert "budget" not in merged["runs"]["cryoswan@s0"]  # none said


def test_summary_keeps_the_kinds_every_run_has():
    # a test split without shapes, and one run evaluated without real maps
    cells = _cells(0.6, 0.9, 4)
    del cells["shape"]
    other = _cells(0.5, 0.8, 4)
    del other["shape"], other["real"]
    summary = summarize(
        {"runs": {"cryoswan@s0": _run(7, cells), "single-scale@s0": _run(7, other)}}
    )
    assert [
        k for k in summary["cryoswan"] if isinstance(summary["cryoswan"][k], dict)
    ] == [
        "all",
        "simulated",
        "synthetic",
    ]
    assert summary["single-scale"]["synthetic"]["cryoswan_minus_iou"] == [0.1]


def test_summary_compares_with_the_reference_asked_for():
    runs = {
        "cryoswan-2100@s0": _run(21, _cells(0.7, 0.85, 4)),
        "single-scale-2100@s0": _run(21, _cells(0.72, 0.86, 1)),
    }
    assert (
        "cryoswan_minus_iou"
        not in summarize({"runs": runs})["single-scale-2100"]["all"]
    )
    summary = summarize({"runs": runs}, reference="cryoswan-2100")
    assert summary["single-scale-2100"]["all"]["cryoswan_minus_iou"] == [-0.02]
    assert "cryoswan_minus_iou" not in summary["cryoswan-2100"]["all"]
