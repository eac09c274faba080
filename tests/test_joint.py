"""The joint first-stage index (swan_index.joint) inside a store: approximate
search equals exact when everything is probed, filters, deletes, reopening, a
missing or damaged file, and a store at or below its approximate threshold."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from swan_index import joint
from swan_index.ranking import SearchOptions
from swan_index.store import Store
from tests.test_store import _seeded

N = 2000
THRESHOLD = 500
#: Few candidates, so that agreeing with exact search is not trivial.
FEW = {"min_candidates": 40, "overfetch": 4}
EVERYTHING = SearchOptions(nprobe=10**6, **FEW)
EXACT = SearchOptions(exact=True)


@pytest.fixture
def full_dims(monkeypatch):
    """Keep every PCA axis: the projection is then a rotation."""
    monkeypatch.setattr(joint, "JOINT_DIMS", 10**4)


def _build(path, encoder, n=N):
    code, records = _seeded(encoder, n)
    st = Store.open(path, encoder=encoder.info, approx_threshold=THRESHOLD)
    st.add(code, records)
    st.flush()
    return st


def _ids(hits):
    return [h.id for h in hits]


def _same(a, e, sa, se):
    """The same hits with the same scores, up to the order of (float-)tied
    scores and which of several tied at the 10th place."""
    np.testing.assert_allclose(sa, se, atol=1e-5)
    for i, (x, y) in enumerate(zip(a, e, strict=True)):
        if x != y:
            assert abs(sa[i] - se[i]) < 1e-5
    tenth = se[-1]
    differ = set(a) ^ set(e)
    score = dict(zip(a, sa, strict=True)) | dict(zip(e, se, strict=True))
    assert all(abs(score[i] - tenth) < 1e-5 for i in differ)
    return True


def _agree(st, queries, options, rg=None, where=None):
    """Per query: (approximate ids, exact ids, approximate and exact scores)."""
    out = []
    for q in range(len(queries)):
        a = st.search(queries[q], 10, options, rg=rg)
        e = st.search(queries[q], 10, SearchOptions(exact=True, where=where), rg=rg)
        out.append((_ids(a), _ids(e), [h.score for h in a], [h.score for h in e]))
    return out


def test_everything_probed_equals_exact(tmp_path, encoder, full_dims):
    queries, _ = _seeded(encoder, 20, seed=1)
    with _build(tmp_path / "s", encoder) as st:
        info = st.joint_info()
        assert info is not None and info["ntotal"] == N and info["nlist"] > 1
        assert (tmp_path / "s" / "faiss" / "joint.ivf").exists()
        for rg in (None, 35.0):
            for a, e, sa, se in _agree(st, queries, EVERYTHING, rg=rg):
                assert _same(a, e, sa, se)


def test_default_recall_and_the_coarse_stage_it_replaces(tmp_path, encoder):
    queries, _ = _seeded(encoder, 30, seed=1)
    with _build(tmp_path / "s", encoder) as st:
        assert st.joint_info()["dim"] == min(joint.JOINT_DIMS, sum(encoder.info.dims))
        rec = [
            len(set(a) & set(e)) / 10
            for a, e, _, _ in _agree(st, queries, SearchOptions(**FEW), rg=35.0)
        ]
        coarse = SearchOptions(joint=False, nprobe=10**6, **FEW)
        rec_coarse = [
            len(set(a) & set(e)) / 10
            for a, e, _, _ in _agree(st, queries, coarse, rg=35.0)
        ]
        assert np.mean(rec) >= 0.95
        assert np.mean(rec) >= np.mean(rec_coarse)


@pytest.mark.parametrize(
    "where",
    ["method = 'helical'", "resolution < 3", "method = 'helical' AND resolution = 3"],
)
def test_filters_through_the_joint_index(tmp_path, encoder, full_dims, where):
    queries, _ = _seeded(encoder, 10, seed=1)
    opts = SearchOptions(where=where, exact_filter_limit=0, nprobe=10**6, **FEW)
    with _build(tmp_path / "s", encoder) as st:
        n = st.count(where)
        assert 10 <= n < N
        for a, e, sa, se in _agree(st, queries, opts, rg=35.0, where=where):
            assert len(a) == 10 and _same(a, e, sa, se)
        # one list scanned at first: the scan widens until it has the candidates
        hits = st.search(
            queries[0], 10, SearchOptions(where=where, exact_filter_limit=0, nprobe=1)
        )
        assert len(hits) == 10
        rows = {r["id"]: r for r in st.get(_ids(hits))}
        allowed = set(st._allowed(where).tolist())
        assert set(rows) <= allowed


def test_deletes_and_reopen(tmp_path, encoder, full_dims):
    queries, _ = _seeded(encoder, 10, seed=1)
    path = tmp_path / "s"
    with _build(path, encoder) as st:
        gone = [_ids(st.search(queries[q], 10, EVERYTHING))[0] for q in range(10)]
        st.delete(gone)
        assert st.joint_info()["ntotal"] == N - len(set(gone))
        after = [_ids(st.search(queries[q], 10, EVERYTHING)) for q in range(10)]
        assert not set(gone) & {i for ids in after for i in ids}
        assert after == [_ids(st.search(queries[q], 10, EXACT)) for q in range(10)]
        default = [_ids(st.search(queries[q], 10)) for q in range(10)]
    with Store.open(path, read_only=True) as reader:  # the same index reloads
        assert reader.joint_info()["ntotal"] == N - len(set(gone))
        assert [_ids(reader.search(queries[q], 10)) for q in range(10)] == default


def test_missing_or_damaged_file_is_rebuilt(tmp_path, encoder, full_dims, caplog):
    queries, _ = _seeded(encoder, 5, seed=1)
    path = tmp_path / "s"
    file = path / "faiss" / "joint.ivf"
    with _build(path, encoder) as st:
        want = [_ids(st.search(queries[q], 10, EVERYTHING)) for q in range(5)]
    file.unlink()  # as a store written before the joint index existed
    with Store.open(
        path, read_only=True, approx_threshold=THRESHOLD
    ) as reader:  # built in memory
        assert reader.joint_info()["ntotal"] == N
        assert [
            _ids(reader.search(queries[q], 10, EVERYTHING)) for q in range(5)
        ] == want
    assert not file.exists()  # a reader changes nothing on disk
    with Store.open(path, approx_threshold=THRESHOLD) as writer:  # a writer writes it
        assert writer.joint_info()["ntotal"] == N
    assert file.exists()
    file.write_bytes(b"not an index")
    with (
        caplog.at_level(logging.WARNING),
        Store.open(path, read_only=True, approx_threshold=THRESHOLD) as reader,
    ):
        assert reader.joint_info()["ntotal"] == N
        assert [
            _ids(reader.search(queries[q], 10, EVERYTHING)) for q in range(5)
        ] == want
    assert "joint.ivf unreadable" in caplog.text


def test_out_of_step_file_is_repaired(tmp_path, encoder, full_dims):
    """A crash between the database commit and the joint file's write."""
    queries, _ = _seeded(encoder, 5, seed=1)
    path = tmp_path / "s"
    file = path / "faiss" / "joint.ivf"
    with _build(path, encoder) as st:
        old = file.read_bytes()
        top = _ids(st.search(queries[0], 10, EVERYTHING))[0]
        st.delete([top])
    file.write_bytes(old)  # the file from before the delete
    with Store.open(path, read_only=True) as reader:
        assert reader.joint_info()["ntotal"] == N - 1
        assert top not in _ids(reader.search(queries[0], 10, EVERYTHING))


def test_none_at_or_below_the_threshold(tmp_path, encoder):
    path = tmp_path / "s"
    with _build(path, encoder, n=THRESHOLD) as st:
        assert st.joint_info() is None
    assert not (path / "faiss" / "joint.ivf").exists()
    code, records = _seeded(encoder, 10, seed=7)
    with Store.open(path, approx_threshold=THRESHOLD) as st:  # built at the flush
        st.add(code, records)
        st.flush()
        assert st.joint_info()["ntotal"] == THRESHOLD + 10
        st.delete(list(range(1, 21)))
        st.flush()  # back at or below it: dropped
        assert st.joint_info() is None
    assert not (path / "faiss" / "joint.ivf").exists()


def test_swan_check_inspects_the_joint_index(tmp_path, encoder):
    from swan_index.check import check_store

    path = tmp_path / "s"
    file = path / "faiss" / "joint.ivf"
    with _build(path, encoder) as st:
        old = file.read_bytes()
        st.delete([1])
    report = check_store(path, files=False)
    assert report.consistent, report.problems
    assert report.counts["joint"] == N - 1
    file.write_bytes(old)  # the file from before the delete: one id too many
    report = check_store(path, files=False)
    (problem,) = report.problems
    assert "joint.ivf: 1 ids the database does not hold (ids 1)" in problem
    assert "--repair" in problem
    file.write_bytes(b"not an index")
    (problem,) = check_store(path, files=False).problems
    assert "joint.ivf: unreadable" in problem
    with Store.open(path, approx_threshold=THRESHOLD):  # a writer mends it
        pass
    assert check_store(path, files=False).consistent


def test_a_reader_maps_its_files_and_copies_them_on_a_refresh(
    tmp_path, encoder, full_dims
):
    """A reader memory-maps the vectors and the joint index; a writer's commits,
    picked up by a refresh, copy them into memory first (FAISS cannot change a
    mapped index), and the answers follow."""
    queries, _ = _seeded(encoder, 5, seed=1)
    path = tmp_path / "s"
    _build(path, encoder).close()
    with Store.open(path, read_only=True) as reader:
        assert all(ix.mapped for ix in reader._indexes.indexes)
        assert reader._indexes.joint.mapped
        before = [_ids(reader.search(queries[q], 10, EVERYTHING)) for q in range(5)]
        assert before == [_ids(reader.search(queries[q], 10, EXACT)) for q in range(5)]
        code, records = _seeded(encoder, 30, seed=3)
        with Store.open(path, approx_threshold=THRESHOLD) as writer:
            new = writer.add(code, records)
            writer.delete([before[0][0]])
        reader.refresh()
        assert not reader._indexes.joint.mapped
        assert not any(ix.mapped for ix in reader._indexes.indexes)
        assert reader.joint_info()["ntotal"] == N + 30 - 1
        for q in range(5):
            a = reader.search(queries[q], 10, EVERYTHING)
            e = reader.search(queries[q], 10, EXACT)
            assert _same(_ids(a), _ids(e), [h.score for h in a], [h.score for h in e])
        assert before[0][0] not in _ids(reader.search(queries[0], 10, EVERYTHING))
        assert reader.search(int(new[0]), 1, EVERYTHING)[0].id == new[0]


def _write_previous_format(path, encoder):
    """Rewrite a store's files as the previous format wrote them: a FAISS
    ``IndexIDMap2(IndexFlatIP)`` per scale (``scale_<s>.index``) and
    ``joint.npz`` (version 1, with a hash-table direct map)."""
    import faiss

    folder = path / "faiss"
    with Store.open(path, read_only=True) as st:
        for side in encoder.info.scales:
            ids, vecs = st.vectors(side)
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(vecs.shape[1]))
            index.add_with_ids(vecs, ids)
            faiss.write_index(index, str(folder / f"scale_{side}.index"))
            (folder / f"scale_{side}.vectors").unlink()
        j = st._indexes.joint
        j._own()
        j.index.set_direct_map_type(faiss.DirectMap.Hashtable)
        np.savez(
            folder / "joint.npz",
            version=np.array(1),
            dims=np.array(j.dims),
            index=faiss.serialize_index(j.index),
            mean=j.mean,
            matrix=j.matrix,
            radius=np.array(j.radius),
        )
    (folder / "joint.ivf").unlink()


def test_a_store_of_the_previous_format_is_read_then_converted(
    tmp_path, encoder, full_dims, caplog
):
    queries, _ = _seeded(encoder, 5, seed=1)
    path = tmp_path / "s"
    folder = path / "faiss"
    with _build(path, encoder) as st:
        want = [_ids(st.search(queries[q], 10, EVERYTHING)) for q in range(5)]
    _write_previous_format(path, encoder)
    old = sorted(p.name for p in folder.iterdir())
    with (
        caplog.at_level(logging.WARNING),
        Store.open(path, read_only=True) as reader,
    ):
        assert reader.joint_info()["ntotal"] == N
        assert [_ids(reader.search(queries[q], 10, EVERYTHING)) for q in range(5)] == (
            want
        )
    (line,) = [r.message for r in caplog.records if "previous format" in r.message]
    assert "read into memory" in line and "--repair" in line
    assert sorted(p.name for p in folder.iterdir()) == old  # a reader writes nothing
    caplog.clear()
    with (
        caplog.at_level(logging.WARNING),
        Store.open(path, approx_threshold=THRESHOLD) as writer,
    ):
        assert [_ids(writer.search(queries[q], 10, EVERYTHING)) for q in range(5)] == (
            want
        )
    (line,) = [r.message for r in caplog.records if "previous format" in r.message]
    assert "converting" in line
    names = {p.name for p in folder.iterdir()}
    assert "joint.ivf" in names and "joint.npz" not in names
    assert not [n for n in names if n.endswith(".index")]
    assert len([n for n in names if n.endswith(".vectors")]) == 4
    with Store.open(path, read_only=True) as reader:
        assert all(ix.mapped for ix in reader._indexes.indexes)
        assert [_ids(reader.search(queries[q], 10, EVERYTHING)) for q in range(5)] == (
            want
        )
