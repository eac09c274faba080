"""One FAISS index per scale, with ids equal to the store's DuckDB entry ids.

Index types (chosen by size, see :func:`index_kind`):

* ``flat``: ``IndexIDMap2(IndexFlatIP)``, exact inner product (= cosine: retrieval
  vectors are L2-normalised). Every scale uses it below ``approx_threshold``
  entries, and the finer scales always use it, because they only re-rank the few
  hundred candidates of the coarsest scale (a lookup by id, not a scan).
* ``ivf``: ``IndexIVFFlat`` (inner product) with ``nlist = 4 sqrt(N)`` lists and a
  hash-table direct map (lookup and removal by id), used for the coarsest scale
  above ``approx_threshold`` entries. It is approximate: it scans ``nprobe`` lists.
  Recall of the coarse candidate stage is measured by
  ``benchmarks/bench_search.py``, results in ``docs/results/search.md``.

Files are written atomically (a temporary file in the same folder, then
``os.replace``), so a reader never sees half an index.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np

from swan_index.files import atomic_write

log = logging.getLogger(__name__)

#: Lists scanned per query by default (of ``nlist``); see docs/results/search.md.
DEFAULT_NPROBE = 32


def index_kind(n: int, coarsest: bool, approx_threshold: int) -> str:
    """``"ivf"`` for the coarsest scale above ``approx_threshold`` entries, else
    ``"flat"``."""
    return "ivf" if coarsest and n > approx_threshold else "flat"


class ScaleIndex:
    """The vectors of one scale: add, remove, look up by id, search.

    Args:
        dim: vector dimension.
        index: an existing FAISS index (from :meth:`read`), or ``None`` for an
            empty flat one.
    """

    def __init__(self, dim: int, index: faiss.Index | None = None) -> None:
        self.dim = dim
        self.index = index if index is not None else _flat(dim)
        self._pos_of: np.ndarray | None = None  # flat: position by id (-1: none)
        if self.index.d != dim:
            raise ValueError(f"index has {self.index.d} dims, expected {dim}")

    # -- kind and conversion -----------------------------------------------------
    @property
    def kind(self) -> str:
        return "ivf" if isinstance(self.index, faiss.IndexIVF) else "flat"

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def nlist(self) -> int:
        return int(self.index.nlist) if self.kind == "ivf" else 0

    def convert(self, kind: str, seed: int = 0) -> None:
        """Rebuild this index as ``kind`` (``"flat"`` or ``"ivf"``) from its own
        vectors (exact copies: both kinds store float32)."""
        if kind == self.kind:
            return
        self._pos_of = None
        ids, vecs = self.all_vectors()
        order = np.argsort(ids)  # ascending ids keep lookups on the fast path
        ids, vecs = ids[order], vecs[order]
        if kind == "flat":
            self.index = _flat(self.dim)
        else:
            self.index = _ivf(vecs, seed)
        if len(ids):
            self.index.add_with_ids(vecs, ids)

    # -- content -------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` ``[n, dim]`` float32 under ``ids`` ``[n]`` int64."""
        if len(ids):
            self._pos_of = None
            self.index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32),
                np.ascontiguousarray(ids, dtype=np.int64),
            )

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids``; returns how many were present."""
        if not len(ids):
            return 0
        self._pos_of = None
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.kind == "ivf":  # the hash-table direct map takes an explicit array
            present = np.isin(ids, self.ids())
            ids = np.ascontiguousarray(ids[present])
            sel = faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))
        else:
            sel = faiss.IDSelectorBatch(ids)
        return int(self.index.remove_ids(sel))

    def ids(self) -> np.ndarray:
        """Every id in the index (int64, unsorted)."""
        if self.kind == "flat":
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        parts = [lst_ids for lst_ids, _ in self._lists(with_codes=False)]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def all_vectors(self, copy: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(ids [n], vectors [n, dim])`` of everything stored, in index order.

        With ``copy=False`` a flat index's vectors are a view of its storage, valid
        until the index changes.
        """
        if self.kind == "flat":
            ids = self.ids()
            vecs = self._flat_vectors()
            return ids, (vecs.copy() if copy else vecs)
        ids, vecs = [], []
        for lst_ids, codes in self._lists(with_codes=True):
            ids.append(lst_ids)
            vecs.append(codes.view(np.float32).reshape(-1, self.dim))
        if not ids:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        return np.concatenate(ids), np.concatenate(vecs)

    def _flat_vectors(self) -> np.ndarray:
        """A flat index's storage ``[n, dim]`` as a view (valid until it changes)."""
        n = self.ntotal
        if not n:
            return np.zeros((0, self.dim), np.float32)
        flat = faiss.downcast_index(self.index.index)  # a view; self owns it
        return faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)

    def _lists(self, with_codes: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        invlists = self.index.invlists
        code_size = invlists.code_size
        for lst in range(self.index.nlist):
            n = invlists.list_size(lst)
            if not n:
                continue
            ids = faiss.rev_swig_ptr(invlists.get_ids(lst), n).astype(np.int64)
            codes = (
                faiss.rev_swig_ptr(invlists.get_codes(lst), n * code_size).copy()
                if with_codes
                else None
            )
            yield ids, codes

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """Vectors ``[n, dim]`` of ``ids`` (each must be present)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        if self.kind == "flat":
            # A position per id (ids are dense: given out in ascending order,
            # rarely deleted), so a lookup is one take from a table and one from
            # the storage: ~25x faster than FAISS's per-id hash lookups, and
            # ~5x faster than a binary search over the ids at a million entries.
            if self._pos_of is None:
                held = self.ids()
                top = int(held.max()) + 1 if len(held) else 0
                pos_of = np.full(top, -1, np.int64 if len(held) >> 31 else np.int32)
                pos_of[held] = np.arange(len(held))
                self._pos_of = pos_of
            inside = (ids >= 0) & (ids < len(self._pos_of))
            pos = np.where(inside, self._pos_of[np.where(inside, ids, 0)], -1)
            if np.any(pos < 0):
                raise KeyError(f"ids not in the index: {ids[pos < 0][:5]}")
            return self._flat_vectors()[pos]
        try:
            return self.index.reconstruct_batch(ids)
        except RuntimeError as exc:
            raise KeyError(f"ids not in the index: {ids[:5]}") from exc

    # -- search --------------------------------------------------------------------
    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        nprobe: int = DEFAULT_NPROBE,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` by inner product for each query row.

        Args:
            queries: ``[q, dim]`` float32.
            k: hits per query.
            allowed: restrict to these ids (``None``: all).
            nprobe: lists scanned (``ivf`` only; capped at ``nlist``).

        Returns:
            ``(scores [q, k], ids [q, k])``; ``-1`` ids where fewer than k exist.
        """
        k = max(1, min(k, self.ntotal)) if self.ntotal else 1
        sel = (
            faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            if allowed is not None
            else None
        )
        if self.kind == "ivf":
            params = faiss.SearchParametersIVF(nprobe=min(nprobe, self.nlist), sel=sel)
        else:
            params = faiss.SearchParameters(sel=sel) if sel is not None else None
        q = np.ascontiguousarray(queries, dtype=np.float32)
        return self.index.search(q, k, params=params)

    # -- files ---------------------------------------------------------------------
    def write(self, path: Path) -> None:
        """Write atomically: temp file in the same folder, then rename."""
        atomic_write(path, lambda tmp: faiss.write_index(self.index, tmp))

    @classmethod
    def read(cls, path: Path, dim: int) -> ScaleIndex:
        index = faiss.read_index(str(path))  # already downcast to its class
        if isinstance(index, faiss.IndexIVF):
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
        elif not isinstance(index, faiss.IndexIDMap2):
            raise ValueError(f"{path}: not an index this store writes; delete it")
        return cls(dim, index)


def _flat(dim: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def _ivf(vectors: np.ndarray, seed: int) -> faiss.Index:
    """An IVF-Flat index trained on (a sample of) ``vectors``."""
    n, dim = vectors.shape
    nlist = max(16, min(65536, int(4 * math.sqrt(max(n, 1)))))
    nlist = min(nlist, max(1, n // 39))  # FAISS wants >= 39 training points per list
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = vectors
    if n > 64 * nlist:  # 64 points per list train k-means well enough, 4x faster
        sample = vectors[rng.choice(n, 64 * nlist, replace=False)]
    index.cp.seed = seed
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    log.info("trained IVF index: %d lists on %d vectors", nlist, len(sample))
    return index
