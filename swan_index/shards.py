"""The joint first stage split into shards, searched side by side, merged.

A library too large for one machine's memory keeps its joint index
(:mod:`swan_index.joint`) in shards, each on its own machine (or process)
behind the API. For the merged answer to be the unsharded one, the shards
share one frame and one set of lists:

* **one frame**: the archive's mean, PCA matrix and radius ``R`` (trained once
  on a sample of the whole archive), so that a shard's scores ``q . (x - mu)``
  are comparable with another's;
* **one coarse quantizer**: every shard holds, for each IVF list, the entries of
  that list whose id falls to it (``id mod S``), the codes unchanged. A query
  then scans the same lists in every shard, and the merged top ``n`` of the
  shards' top ``n`` is exactly the unsharded top ``n`` (ties aside): each
  shard ranks its own entries by the same distances.

:func:`split_joint` makes the shards from a built index (as a sharded build
would: train once, route each added entry to its shard);
:class:`ShardedJoint` searches them (one after the other, or in threads: FAISS
releases the GIL while it searches) and merges by :func:`merge_top`. It has the
search interface of :class:`~swan_index.joint.JointIndex`, so the first stage
(:func:`swan_index.ranking.coarse_candidates`) takes it as it takes one index.
The second stage (exact scoring of the candidates from the per-scale vectors)
then runs on the shard that holds each candidate.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np

from swan_index.joint import JointIndex


def merge_top(
    scores: list[np.ndarray], ids: list[np.ndarray], n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` largest scores of several shards' answers, per query row.

    Args:
        scores: per shard, scores ``[P, n_s]`` (larger is better).
        ids: per shard, the ids ``[P, n_s]``; ``-1`` where the shard found fewer.
        n: how many to keep.

    Returns:
        ``(scores, ids)`` ``[P, n]``, best first; ``-inf`` and ``-1`` where
        fewer than ``n`` were found in all.

    Raises:
        ValueError: no shards, or shards answering for different query rows.
    """
    if not scores or len(scores) != len(ids):
        raise ValueError("merge_top needs one (scores, ids) pair per shard")
    s = np.hstack([np.asarray(x, np.float64) for x in scores])
    i = np.hstack([np.asarray(x, np.int64) for x in ids])
    if s.shape != i.shape:
        raise ValueError(f"scores {s.shape} and ids {i.shape} do not match")
    s = np.where(i >= 0, s, -np.inf)
    keep = min(n, s.shape[1])
    order = np.argsort(-s, axis=1, kind="stable")[:, :keep]
    top_s = np.take_along_axis(s, order, axis=1)
    top_i = np.where(np.isfinite(top_s), np.take_along_axis(i, order, axis=1), -1)
    if keep < n:  # fewer found than asked in all shards together: pad
        pad = n - keep
        top_s = np.hstack([top_s, np.full((len(s), pad), -np.inf)])
        top_i = np.hstack([top_i, np.full((len(i), pad), -1, np.int64)])
    return top_s, top_i


def split_ivf(index: faiss.IndexIVF, n_shards: int) -> list[faiss.IndexIVF]:
    """An IVF index's entries dealt to ``n_shards`` indexes by ``id mod
    n_shards``, each with a copy of the trained coarse quantizer (and the same
    code type), the codes copied as they are (no re-encoding).

    The shards have no direct map; ``index`` is left as it was.

    Raises:
        ValueError: ``n_shards`` below 1.
    """
    if n_shards < 1:
        raise ValueError(f"n_shards={n_shards}: a split needs at least 1 shard")
    index = faiss.extract_index_ivf(index)
    shells = _empty_copies(index, n_shards)
    invlists, code_size = index.invlists, index.code_size
    for lst in range(index.nlist):
        size = invlists.list_size(lst)
        if not size:
            continue
        ids = faiss.rev_swig_ptr(invlists.get_ids(lst), size).astype(np.int64)
        codes = faiss.rev_swig_ptr(invlists.get_codes(lst), size * code_size)
        codes = np.array(codes, np.uint8).reshape(size, code_size)
        shard = ids % n_shards
        for s, shell in enumerate(shells):
            rows = np.flatnonzero(shard == s)
            if len(rows):
                sid = np.ascontiguousarray(ids[rows])
                scodes = np.ascontiguousarray(codes[rows])
                shell.invlists.add_entries(
                    lst, len(rows), faiss.swig_ptr(sid), faiss.swig_ptr(scodes)
                )
                shell.ntotal += len(rows)
    return shells


def _empty_copies(index: faiss.IndexIVF, n: int) -> list[faiss.IndexIVF]:
    """``n`` copies of ``index`` without its entries or direct map (the
    inverted lists are swapped for empty ones while it is cloned, so that the
    entries are never copied)."""
    kind = index.direct_map.type
    held, own, ntotal = index.invlists, index.own_invlists, index.ntotal
    empty = faiss.ArrayInvertedLists(index.nlist, index.code_size)
    index.own_invlists = False  # replace_invlists would free the held lists
    try:
        if kind != faiss.DirectMap.NoMap:
            index.set_direct_map_type(faiss.DirectMap.NoMap)
        index.replace_invlists(empty, False)
        index.ntotal = 0
        shells = [faiss.clone_index(index) for _ in range(n)]
    finally:
        index.replace_invlists(held, own)
        index.ntotal = ntotal
        if kind != faiss.DirectMap.NoMap:
            index.set_direct_map_type(kind)
    return shells


def split_joint(joint: JointIndex, n_shards: int) -> list[JointIndex]:
    """A joint index split into ``n_shards`` by :func:`split_ivf`, each shard
    in the same frame (mean, matrix, radius) and, as a store's joint index,
    without a direct map (removal by id scans the lists)."""
    out = []
    for shell in split_ivf(joint.index, n_shards):
        out.append(
            JointIndex(joint.dims, shell, joint.mean, joint.matrix, joint.radius)
        )
    return out


class ShardedJoint:
    """Shards of one joint index searched as one (see the module docs).

    Args:
        shards: the shards, in one frame (same dims, mean, matrix and radius).
        workers: shards searched at once (threads); 1 searches them in turn.

    Raises:
        ValueError: no shards, or shards in different frames.
    """

    def __init__(self, shards: list[JointIndex], workers: int = 1) -> None:
        if not shards:
            raise ValueError("a sharded index needs at least one shard")
        first = shards[0]
        for s in shards[1:]:
            if (
                s.dims != first.dims
                or s.radius != first.radius
                or not np.array_equal(s.mean, first.mean)
                or not np.array_equal(s.matrix, first.matrix)
            ):
                raise ValueError(
                    "shards in different frames (mean, matrix or radius differ): "
                    "train the frame once and split with split_joint"
                )
        self.shards = list(shards)
        self.workers = max(1, int(workers))

    @property
    def ntotal(self) -> int:
        return sum(s.ntotal for s in self.shards)

    @property
    def nlist(self) -> int:
        return max(s.nlist for s in self.shards)

    @property
    def kind(self) -> str:
        return "ivf"

    def query(
        self, vectors: list[np.ndarray | None], weights: np.ndarray
    ) -> np.ndarray:
        """As :meth:`JointIndex.query` (the shards share the frame)."""
        return self.shards[0].query(vectors, weights)

    def search(
        self,
        q: np.ndarray,
        n: int,
        allowed: np.ndarray | None,
        nprobe: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`JointIndex.search`: every shard's top ``n``, merged."""

        def one(shard: JointIndex) -> tuple[np.ndarray, np.ndarray]:
            return shard.search(q, n, allowed, nprobe)

        if self.workers == 1 or len(self.shards) == 1:
            answers = [one(s) for s in self.shards]
        else:
            with ThreadPoolExecutor(min(self.workers, len(self.shards))) as pool:
                answers = list(pool.map(one, self.shards))
        return merge_top([a[0] for a in answers], [a[1] for a in answers], max(1, n))
