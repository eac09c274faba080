"""The first stage of a large store's search: one index over every scale at once.

The coarsest scale alone says little (its cosine is at or above 0.95 between
almost any two maps), so at a million entries the candidates it gives miss a
quarter of the exact top 10. This index ranks by the search's own shape score
instead:

* an entry's **joint vector** is its retrieval vectors, one per scale,
  concatenated and each divided by ``sqrt(S)`` (S scales); a query's is its
  vectors each times ``w_s sqrt(S)`` (``w_s``: the search's scale weights, 0 for
  a scale left out). Their inner product is then ``sum_s w_s cos_s``, the shape
  score itself, for any weights;
* the joint vectors are **whitened against the archive**: centred on the
  archive's mean ``mu`` and projected on its ``dims`` principal axes (a
  ``faiss.PCAMatrix`` trained on the store). The query is projected without
  centring: ``q . (x - mu) = q . x - q . mu``, and ``q . mu`` is the same for
  every entry, so the order is the shape score's, up to the variance the
  dropped axes held (measured in ``benchmarks/bench_search.py``);
* the projected vectors go in an ``IndexIVFFlat`` with ``4 sqrt(N)`` lists (no
  direct map: a removal scans the lists' ids, and the index is never asked for
  a vector by id; a map would cost ~50 bytes an entry), searched for the largest inner
  product by the usual reduction to nearest neighbours: an entry's vector
  ``y`` gets one more coordinate, ``sqrt(R^2 - |y|^2)`` (``R``: 1.2 times the
  largest norm of the training sample; 0 past it), a query's gets 0, and then
  ``|q - y|^2 = |q|^2 + R^2 - 2 q . y``. Whitened vectors differ in norm, and
  lists chosen by inner product with their centroids favour the long ones
  (``benchmarks/bench_joint_choice.py``: of the exact top 10 of a million
  mixtures, 256 lists keep 0.903 chosen by inner product, 0.998 by distance).

The size term is applied when the candidates are pruned
(:func:`swan_index.ranking.coarse_candidates`, which takes this index as it takes
a scale's): ``JOINT_PRUNE_FACTOR`` times the candidates are fetched by
approximate shape score and the best by that score minus the size term kept;
then every candidate is scored exactly at every scale
(:meth:`swan_index.store.Store.rank`).

The index lives in ``faiss/joint.ivf``: the FAISS index, then the format version
and scale sizes, the PCA's mean and matrix and ``R`` (each an ``.npy`` array),
then the offset where those begin (8 bytes). It is **memory-mapped** when read
(FAISS's ``IO_FLAG_MMAP_IFC``), like the per-scale vectors
(:mod:`swan_index.vectors`): a search reads the lists it scans; the first change
(an add or a removal) reads the index into memory. It is written atomically;
built when a store passes its approximate threshold, kept in step on add and
delete, checked against the database on open and rebuilt from the per-scale
vectors when missing or unreadable (a store written before it existed gets it
when opened: a writer writes it, a reader builds it in memory on every open). A
``joint.npz`` of the previous format is read into memory, and rewritten by the
next writer.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import faiss
import numpy as np

from swan_index.files import atomic_write
from swan_index.vectors import read_npy

log = logging.getLogger(__name__)

#: Principal axes of the joint vector kept (see docs/search.md for the choice).
JOINT_DIMS = 64
#: IVF lists scanned at first (see docs/search.md for the choice).
JOINT_NPROBE = 256
#: First-stage candidates: max(JOINT_OVERFETCH x k, JOINT_MIN_CANDIDATES).
JOINT_OVERFETCH = 100
JOINT_MIN_CANDIDATES = 1000
#: With a size term, this many times the candidates are fetched, the best by
#: joint score minus the size term kept.
JOINT_PRUNE_FACTOR = 4
#: Vectors the PCA and the IVF lists are trained on (a random sample).
TRAIN_SAMPLE = 200_000
#: Format of the file; another value is rebuilt.
JOINT_VERSION = 2
#: The joint index's file in the store's ``faiss`` folder, and the previous
#: format's (an ``.npz``; read, then rewritten).
JOINT_FILE, LEGACY_JOINT_FILE = "joint.ivf", "joint.npz"


class JointIndex:
    """The joint first-stage index (see the module docs).

    Args:
        dims: per scale, the retrieval vector size.
        index: the trained ``IndexIVFFlat`` (L2) over projected vectors with
            their extra coordinate (``d + 1``).
        mean: the archive's mean joint vector ``[sum(dims)]``.
        matrix: the projection ``[d, sum(dims)]``.
        radius: ``R`` of the extra coordinate.
    """

    def __init__(
        self,
        dims: tuple[int, ...],
        index: faiss.IndexIVF,
        mean: np.ndarray,
        matrix: np.ndarray,
        radius: float,
    ) -> None:
        self.dims = tuple(dims)
        self.index = index
        self.mean = np.ascontiguousarray(mean, np.float32)
        self.matrix = np.ascontiguousarray(matrix, np.float32)
        self.radius = float(radius)
        #: Read from a file of the previous format: rewrite it.
        self.legacy = False
        self._source = None  # the file the index maps (see read, _own)
        if self.matrix.shape != (index.d - 1, sum(self.dims)):
            raise ValueError(f"joint projection {self.matrix.shape} does not fit")

    # -- building ------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        vectors: list[np.ndarray],
        entries: int | None = None,
        dims: int | None = None,
        seed: int = 0,
    ) -> JointIndex:
        """A new, empty index trained on per-scale vectors ``[n, dim_s]`` (rows
        aligned across scales, a sample of the store's): the PCA (``dims`` axes,
        default :data:`JOINT_DIMS`), then ``4 sqrt(entries)`` IVF lists
        (``entries``: the store's size, default ``n``).

        Raises:
            ValueError: fewer than 2 vectors.
        """
        sizes = tuple(v.shape[1] for v in vectors)
        n = len(vectors[0])
        if n < 2:
            raise ValueError("a joint index needs at least 2 entries to train on")
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(n, min(n, TRAIN_SAMPLE), replace=False))
        x = joint_vectors([v[pick] for v in vectors])
        d = int(min(JOINT_DIMS if dims is None else dims, x.shape[1]))
        pca = faiss.PCAMatrix(x.shape[1], d)
        pca.train(x)
        mean = faiss.vector_to_array(pca.mean).astype(np.float32)
        matrix = faiss.vector_to_array(pca.A).reshape(-1, x.shape[1])[:d]
        y = (x - mean) @ matrix.T
        radius = 1.2 * float(np.linalg.norm(y, axis=1).max())
        nlist = max(16, min(65536, int(4 * math.sqrt(entries or n))))
        nlist = min(nlist, max(1, len(y) // 39))  # FAISS: >= 39 points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d + 1), d + 1, nlist)
        index.cp.seed = seed
        sample = y[rng.permutation(len(y))[: 64 * nlist]]  # 64 a list: enough
        index.train(_lift(sample, radius))
        log.info("trained joint index: %d dims, %d lists on %d", d, nlist, len(x))
        return cls(sizes, index, mean, matrix, radius)

    # -- content -------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def nlist(self) -> int:
        return int(self.index.nlist)

    @property
    def kind(self) -> str:
        """``"ivf"``, as :attr:`swan_index.vectors.ScaleIndex.kind` says it."""
        return "ivf"

    def project(self, vectors: list[np.ndarray]) -> np.ndarray:
        """Entries' projected joint vectors with their extra coordinate
        ``[n, d + 1]``, from per-scale vectors."""
        y = (joint_vectors(vectors) - self.mean) @ self.matrix.T
        return _lift(y, self.radius)

    def add(self, ids: np.ndarray, vectors: list[np.ndarray]) -> None:
        """Add entries ``ids`` ``[n]`` with per-scale vectors ``[n, dim_s]``."""
        if len(ids):
            self._own()
            self.index.add_with_ids(
                self.project(vectors), np.ascontiguousarray(ids, np.int64)
            )

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids`` (those present); returns how many."""
        ids = np.ascontiguousarray(ids, np.int64)
        if not len(ids):
            return 0
        self._own()
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))

    def ids(self) -> np.ndarray:
        """Every id held (int64, unsorted)."""
        invlists = self.index.invlists
        parts = [  # views; concatenate copies them once
            faiss.rev_swig_ptr(invlists.get_ids(lst), n)
            for lst in range(self.nlist)
            if (n := invlists.list_size(lst))
        ]
        if not parts:
            return np.zeros(0, np.int64)
        return np.concatenate(parts).astype(np.int64)

    # -- search --------------------------------------------------------------------
    def query(
        self, vectors: list[np.ndarray | None], weights: np.ndarray
    ) -> np.ndarray:
        """Projected query vectors ``[P, d + 1]`` (the extra coordinate 0) from
        per-scale query vectors ``[P, dim_s]`` (``None`` for a scale of weight
        0) and the scale weights (one per scale, summing to 1)."""
        s = len(self.dims)
        p = next(len(v) for v in vectors if v is not None)
        parts = [
            np.zeros((p, d), np.float32) if v is None or w == 0 else v * (w * s**0.5)
            for v, w, d in zip(vectors, weights, self.dims, strict=True)
        ]
        q = np.hstack(parts) @ self.matrix.T
        return np.ascontiguousarray(np.hstack([q, np.zeros((p, 1))]), np.float32)

    def search(
        self,
        q: np.ndarray,
        n: int,
        allowed: np.ndarray | None,
        nprobe: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` by inner product for each projected query row ``q``
        ``[P, d + 1]``, among ``allowed`` ids (``None``: all): ``(scores,
        ids)`` ``[P, n]``, the scores ``q . (x - mu)`` projected, ``-1`` ids
        where fewer were found."""
        sel = None if allowed is None else id_selector(allowed)
        params = faiss.SearchParametersIVF(nprobe=min(nprobe, self.nlist), sel=sel)
        dist, ids = self.index.search(q, max(1, n), params=params)
        norm2 = np.einsum("ij,ij->i", q, q)[:, None]
        return (norm2 + self.radius**2 - dist) / 2, ids

    # -- files ---------------------------------------------------------------------
    def write(self, path: Path) -> None:
        """Write atomically (see the module docs for the format)."""

        def write(tmp: str) -> None:
            head = np.array([JOINT_VERSION, *self.dims], np.int64)
            radius = np.array([self.radius])
            with open(tmp, "wb") as fh:
                faiss.write_index(self.index, faiss.PyCallbackIOWriter(fh.write))
                start = fh.tell()
                for array in (head, self.mean, self.matrix, radius):
                    np.lib.format.write_array(fh, array, allow_pickle=False)
                fh.write(np.array(start, "<i8").tobytes())

        atomic_write(path, write)

    @classmethod
    def read(cls, path: Path, dims: tuple[int, ...]) -> JointIndex:
        """Read a file :meth:`write` wrote, memory-mapped (or one of the previous
        format, ``joint.npz``, into memory).

        Raises:
            ValueError: another format version or other scales (rebuild it).
        """
        if path.name == LEGACY_JOINT_FILE:
            return cls._read_npz(path, dims)
        source = open(path, "rb")  # noqa: SIM115 - kept open: see _own
        try:
            source.seek(-8, 2)
            source.seek(int(np.frombuffer(source.read(8), "<i8")[0]))
            head = read_npy(source, path)
            if int(head[0]) != JOINT_VERSION or tuple(head[1:]) != tuple(dims):
                raise ValueError(f"{path}: another joint index format; rebuilt")
            mean, matrix, radius = (read_npy(source, path) for _ in range(3))
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
            if not isinstance(index, faiss.IndexIVF):
                raise ValueError(f"{path}: not a joint IVF index")
        except BaseException:
            source.close()
            raise
        joint = cls(dims, index, mean, matrix, float(radius[0]))
        joint._source = source
        return joint

    def _own(self) -> None:
        """Before a change: read the mapped index into memory, from the file it
        was mapped from (held open, so a writer's replacing it since does not
        matter). FAISS cannot change a mapped index (it aborts the process)."""
        if self._source is None:
            return
        with self._source as fh:
            fh.seek(0)
            index = faiss.read_index(faiss.PyCallbackIOReader(fh.read, 1 << 24))
        self._source = None
        self.index = index

    @property
    def mapped(self) -> bool:
        """Whether the index is a memory map of its file (not yet changed)."""
        return self._source is not None

    @classmethod
    def _read_npz(cls, path: Path, dims: tuple[int, ...]) -> JointIndex:
        """Read the previous format (an ``.npz``, version 1, with a direct map,
        which is dropped); :attr:`legacy` says it needs rewriting."""
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != 1 or tuple(z["dims"]) != tuple(dims):
                raise ValueError(f"{path}: another joint index format; rebuilt")
            index = faiss.deserialize_index(z["index"])
            mean, matrix, radius = z["mean"], z["matrix"], float(z["radius"])
        if not isinstance(index, faiss.IndexIVF):
            raise ValueError(f"{path}: not a joint IVF index")
        index.set_direct_map_type(faiss.DirectMap.NoMap)
        joint = cls(dims, index, mean, matrix, radius)
        joint.legacy = True
        return joint


def _lift(y: np.ndarray, radius: float) -> np.ndarray:
    """``[n, d]`` -> ``[n, d + 1]``: the extra coordinate ``sqrt(R^2 - |y|^2)``
    (0 where ``|y| > R``), so that nearest by distance is largest by inner
    product (see the module docs)."""
    extra = np.sqrt(np.maximum(radius**2 - np.einsum("ij,ij->i", y, y), 0.0))
    return np.ascontiguousarray(np.hstack([y, extra[:, None]]), np.float32)


def joint_vectors(vectors: list[np.ndarray]) -> np.ndarray:
    """Per-scale vectors ``[n, dim_s]`` concatenated, each over ``sqrt(S)``:
    the inner product of two is the mean cosine over the S scales."""
    s = len(vectors)
    return np.hstack([np.asarray(v, np.float32) for v in vectors]) / np.float32(s**0.5)


def id_selector(allowed: np.ndarray) -> faiss.IDSelector:
    """A FAISS selector of the ``allowed`` ids: a bitmap over ``0 .. max id``
    (one bit per id, built at numpy speed, tested in O(1)), kept alive with the
    selector."""
    allowed = np.asarray(allowed, np.int64)
    top = int(allowed.max()) + 1 if len(allowed) else 1
    bits = np.zeros(top, bool)
    bits[allowed] = True
    bitmap = np.packbits(bits, bitorder="little")
    sel = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))  # bytes
    sel.bitmap_array = bitmap  # the selector holds a pointer into it
    return sel
