"""Retrieval metrics and `swan eval retrieval` against a truth table."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

from ingest import rotate_map
from ingest.discover import find_entries
from ingest.mapio import read_map
from ingest.transform import random_rotation
from swan_index.cli import main as swan
from swan_index.map_encoder import MapEncoder
from swan_index.prepare import prepare_entry, prepare_map
from swan_index.query import Query, search
from swan_index.ranking import SearchOptions
from swan_index.retrieval import evaluate_store, rank_metrics, read_truth, summarize
from swan_index.store import Store
from tests.conftest import DATA, MAPS


def test_rank_metrics_known_values():
    # relevant items at ranks 2 and 4 of 5, and a third relevant one never listed
    m = rank_metrics(["b", "a", "c", "a", "d"], "a", n_relevant=3)
    assert m["p_at_1"] == 0.0
    assert m["mrr"] == pytest.approx(0.5)
    assert m["map"] == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert m["recall_at_10"] == pytest.approx(2 / 3)
    perfect = rank_metrics(["a", "a", "x"], "a", n_relevant=2)
    assert perfect == {"p_at_1": 1.0, "mrr": 1.0, "map": 1.0, "recall_at_10": 1.0}
    none = rank_metrics(["x"] * 20, "a", n_relevant=1)
    assert none == {"p_at_1": 0.0, "mrr": 0.0, "map": 0.0, "recall_at_10": 0.0}
    # recall counts the top 10 only
    late = rank_metrics(["x"] * 10 + ["a"], "a", n_relevant=1)
    assert late["recall_at_10"] == 0.0 and late["mrr"] == pytest.approx(1 / 11)
    with pytest.raises(ValueError, match="n_relevant"):
        rank_metrics(["a"], "a", n_relevant=0)
    with pytest.raises(ValueError, match="relevant items listed"):
        rank_metrics(["a", "a"], "a", n_relevant=1)
    assert summarize([perfect, none]) == {
        "n": 2,
        "p_at_1": 0.5,
        "mrr": 0.5,
        "map": 0.5,
        "recall_at_10": 0.5,
    }


def _find(key: str) -> int:
    known = {"EMD-1": 1, "2": 2, "EMD-3": 3}
    if key not in known:
        raise KeyError(key)
    return known[key]


def test_read_truth_resolves_ids_and_rejects_bad_files(tmp_path):
    good = tmp_path / "t.csv"
    good.write_text("entry,group\nEMD-1,a\n2,a\nEMD-3,b\nEMD-404,b\n")
    truth = read_truth(good, _find)
    assert truth.groups == {1: "a", 2: "a", 3: "b"} and truth.unknown == ("EMD-404",)
    bad = {
        "cols.csv": ("id,label\n1,a\n", "entry,group"),
        "empty.csv": ("entry,group\n1,\n", "empty entry or group"),
        "twice.csv": ("entry,group\nEMD-1,a\nEMD-1,b\n", "two groups"),
        "none.csv": ("entry,group\nEMD-9,a\n", "none of its 1 entries"),
    }
    for name, (text, message) in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=message):
            read_truth(tmp_path / name, _find)
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="CSV|columns"):
        read_truth(tmp_path / "bin.csv", _find)
    with pytest.raises(ValueError, match="no such truth file"):
        read_truth(tmp_path / "missing.csv", _find)


@pytest.fixture(scope="module")
def labelled_store(tmp_path_factory):
    """The six sample maps plus two rotated copies of EMD-5625 and EMD-1832 (groups
    of two and three), in a store."""
    encoder = MapEncoder()
    prepared = [prepare_entry(e, encoder.grid) for e in find_entries(DATA / "maps")]
    rng = np.random.default_rng(3)
    for key in ("emd_5625", "emd_5625", "emd_1832"):
        turned = rotate_map(read_map(MAPS[key]), random_rotation(rng))
        digest = hashlib.sha256(turned.data.tobytes()).hexdigest()
        prepared.append(prepare_map(replace(turned, sha256=digest), encoder.grid))
    code = encoder.encode(np.concatenate([p.volumes for p in prepared]))
    path = tmp_path_factory.mktemp("ret") / "s.swan"
    with Store.open(path, encoder=encoder.info) as store:
        ids = store.add(code, [p.record for p in prepared])
    names = [p.record.emdb_id for p in prepared[:-3]] + ["copy"] * 3
    return path, dict(zip(ids.tolist(), names, strict=True))


def test_evaluate_store_leave_one_out(labelled_store):
    path, names = labelled_store
    ids = {v: k for k, v in names.items() if v != "copy"}
    copies = [k for k, v in names.items() if v == "copy"]
    groups = {
        ids["EMD-5625"]: "5625",
        copies[0]: "5625",
        copies[1]: "5625",
        ids["EMD-1832"]: "1832",
        copies[2]: "1832",
        ids["EMD-3001"]: "alone",
    }
    with Store.open(path, read_only=True) as store:
        from swan_index.retrieval import Truth

        result = evaluate_store(store, Truth(groups, ()), k=20)
    assert result["skipped"] == [ids["EMD-3001"]]
    assert result["summary"]["n"] == 5
    assert {r["id"] for r in result["queries"]} == set(groups) - {ids["EMD-3001"]}
    assert all(r["top"] != r["id"] for r in result["queries"])
    # rotated copies of one real map find each other first
    for r in result["queries"]:
        if r["group"] == "5625":
            assert r["p_at_1"] == 1.0, r
    assert result["by_group"]["5625"]["n"] == 3
    assert result["sources"] == {"stored": 5}  # no encoder: stored vectors
    with Store.open(path, read_only=True) as store:
        # as `swan search ID`: the real maps read again in every candidate pose
        again = evaluate_store(store, Truth(groups, ()), MapEncoder(), k=20)
        by_id = {r["id"]: r for r in again["queries"]}
        assert by_id[ids["EMD-5625"]]["source"] == "map"
        assert by_id[ids["EMD-1832"]]["source"] == "map"
        for r in again["queries"]:
            query = Query.from_entry(store, MapEncoder(), r["id"])
            hits = search(store, query, k=21, options=SearchOptions(exact=True))
            assert r["top"] == next(h.id for h in hits if h.id != r["id"])


def _eval(*args: object) -> int:
    """``swan eval retrieval ARGS...``: the exit status."""
    return swan(["eval", "retrieval", *(str(a) for a in args)])


def test_eval_retrieval_command(labelled_store, tmp_path, capsys):
    path, names = labelled_store
    ids = {v: k for k, v in names.items() if v != "copy"}
    copies = [k for k, v in names.items() if v == "copy"]
    truth = tmp_path / "truth.csv"
    truth.write_text(
        f"entry,group\n{ids['EMD-5625']},x\n{copies[0]},x\n{copies[1]},x\n"
        f"{ids['EMD-1832']},y\n{copies[2]},y\nEMD-77777,y\n"
    )
    assert _eval("--store", path, "--truth", truth, "--json") == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["summary"]["n"] == 5 and out["unknown"] == ["EMD-77777"]
    assert "EMD-77777 is not in the store" in captured.err
    assert _eval("--store", str(path), "--truth", str(truth), "--scales", "1") == 0
    text = capsys.readouterr().out
    assert "p_at_1" in text and text.splitlines()[-1].startswith("all")
    assert _eval("--store", str(tmp_path / "nope"), "--truth", str(truth)) == 2
    (tmp_path / "bad.csv").write_text("id,label\n1,a\n")
    assert _eval("--store", str(path), "--truth", str(tmp_path / "bad.csv")) == 2
    assert "entry,group" in capsys.readouterr().err
