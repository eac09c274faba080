"""The joint index split into shards: the merged answer is the unsharded one."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from swan_index.joint import JointIndex
from swan_index.ranking import coarse_candidates
from swan_index.shards import ShardedJoint, merge_top, split_ivf, split_joint

DIMS = (8, 8, 16)


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def library() -> tuple[JointIndex, list[np.ndarray], np.ndarray]:
    """A seeded joint index of 4,000 entries (ids not in order) and 5 queries."""
    rng = np.random.default_rng(7)
    vectors = [_unit(rng, 4000, d) for d in DIMS]
    joint = JointIndex.train(vectors, dims=12)
    ids = rng.permutation(10_000)[:4000].astype(np.int64)
    joint.add(ids, vectors)
    queries = [_unit(rng, 5, d) for d in DIMS]
    q = joint.query(queries, np.full(len(DIMS), 1 / len(DIMS)))
    return joint, vectors, q


def test_merge_top_keeps_the_best_and_pads() -> None:
    scores = [np.array([[0.9, 0.5, -1.0]]), np.array([[0.7, 0.0, 0.0]])]
    ids = [np.array([[4, 8, -1]]), np.array([[3, -1, -1]])]
    top_s, top_i = merge_top(scores, ids, 3)
    assert top_i.tolist() == [[4, 3, 8]]
    assert top_s.tolist() == [[0.9, 0.7, 0.5]]
    top_s, top_i = merge_top(scores, ids, 8)
    assert top_i.tolist() == [[4, 3, 8, -1, -1, -1, -1, -1]]
    assert np.isneginf(top_s[0, 3:]).all()
    with pytest.raises(ValueError, match="one \\(scores, ids\\) pair per shard"):
        merge_top([], [], 3)


@pytest.mark.parametrize("n_shards", [1, 3, 4])
@pytest.mark.parametrize("workers", [1, 2])
def test_sharded_search_equals_unsharded(library, n_shards: int, workers: int) -> None:
    joint, _, q = library
    before = joint.search(q, 50, None, nprobe=6)
    shards = split_joint(joint, n_shards)
    assert sum(s.ntotal for s in shards) == joint.ntotal
    for s, shard in enumerate(shards):
        assert (shard.ids() % n_shards == s).all()
    merged = ShardedJoint(shards, workers=workers).search(q, 50, None, nprobe=6)
    assert np.array_equal(np.sort(merged[1], axis=1), np.sort(before[1], axis=1))
    np.testing.assert_allclose(merged[0], before[0], rtol=1e-5, atol=1e-5)
    # the split leaves the index as it was: same answer, removal by id works
    again = joint.search(q, 50, None, nprobe=6)
    assert np.array_equal(again[1], before[1])


def test_sharded_search_with_a_filter(library) -> None:
    joint, _, q = library
    allowed = np.sort(joint.ids())[::7]
    before = joint.search(q, 30, allowed, nprobe=joint.nlist)
    merged = ShardedJoint(split_joint(joint, 3)).search(q, 30, allowed, joint.nlist)
    assert np.isin(merged[1][merged[1] >= 0], allowed).all()
    assert np.array_equal(np.sort(merged[1], axis=1), np.sort(before[1], axis=1))


def test_first_stage_takes_the_sharded_index(library) -> None:
    joint, _, q = library
    sharded = ShardedJoint(split_joint(joint, 4), workers=2)
    for nprobe in (4, joint.nlist):
        one = coarse_candidates(joint, q, 100, 10, None, nprobe)
        many = coarse_candidates(sharded, q, 100, 10, None, nprobe)
        assert np.array_equal(one, many)


def test_split_of_other_codes_and_removal(library) -> None:
    joint, vectors, _ = library
    ivf = faiss.IndexIVFScalarQuantizer(
        faiss.IndexFlatL2(joint.index.d),
        joint.index.d,
        16,
        faiss.ScalarQuantizer.QT_8bit,
    )
    x = joint.project(vectors)
    ivf.train(x)
    ivf.add_with_ids(x, np.arange(len(x), dtype=np.int64))
    shards = split_ivf(ivf, 2)
    assert [s.ntotal for s in shards] == [2000, 2000]
    assert all(isinstance(s, faiss.IndexIVFScalarQuantizer) for s in shards)
    d0, i0 = ivf.search(x[:3], 5)
    parts = [s.search(x[:3], 5) for s in shards]
    _, i1 = merge_top([-p[0] for p in parts], [p[1] for p in parts], 5)
    assert np.array_equal(np.sort(i0, axis=1), np.sort(i1, axis=1))
    shard = split_joint(joint, 2)[0]
    some = shard.ids()[:10]
    assert shard.remove(some) == 10
    assert not np.isin(some, shard.ids()).any()
    assert joint.ntotal == 4000


def test_shards_must_share_a_frame(library) -> None:
    joint, vectors, _ = library
    other = JointIndex.train([v[:2000] for v in vectors], dims=12)
    with pytest.raises(ValueError, match="different frames"):
        ShardedJoint([joint, other])
    with pytest.raises(ValueError, match="at least 1 shard"):
        split_ivf(joint.index, 0)
