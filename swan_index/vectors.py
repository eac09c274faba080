"""The vectors of one scale, with ids equal to the store's DuckDB entry ids.

Every scale is held flat: the vectors themselves, float32, L2-normalised (inner
product = cosine), one row per entry. A store above the approximate threshold
finds its candidates with the joint index (:mod:`swan_index.joint`); the
per-scale vectors serve the exact scores of those candidates (a lookup by id) and
``exact=True`` (a scan of every row).

**File.** ``faiss/scale_<side>.vectors`` holds two arrays in NumPy's ``.npy``
format, one after the other: the ids ``[n]`` int64, then the vectors ``[n,
dim]`` float32, in the same row order. It is **memory-mapped** when read, not
copied: opening costs next to nothing, and a reader's vectors live in the
operating system's page cache (shared between the processes that read one
store, dropped under memory pressure and read again from disk), not in its own
memory. A search reads the rows of its candidates only; ``exact=True`` reads
them all. The first change to a mapped scale (an add or a removal: a writer's
ingest, a reader's refresh after a writer's commits) copies it into memory.

Files are written atomically (a temporary file in the same folder, then
``os.replace``), so a reader never sees half a file, and a reader's mapping of a
file since replaced stays valid (it maps the old file until it reopens).

Stores written before this format hold ``scale_<side>.index`` (a FAISS index:
``IndexIDMap2(IndexFlatIP)``, or ``IndexIVFFlat`` for the coarsest scale of a
large store): :meth:`ScaleIndex.read` reads those into memory, and a writer
rewrites them in this format (:class:`swan_index.indexes.ScaleIndexes`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np

from swan_index.files import atomic_write

log = logging.getLogger(__name__)

#: The file of a scale's vectors, and the FAISS file of the previous format.
SUFFIX, LEGACY_SUFFIX = ".vectors", ".index"


def scale_file(folder: Path, side: int, legacy: bool = False) -> Path:
    """The file of scale ``side``'s vectors in the store's ``faiss`` folder
    (``legacy``: the FAISS file of the previous format)."""
    return folder / f"scale_{side}{LEGACY_SUFFIX if legacy else SUFFIX}"


class ScaleIndex:
    """The vectors of one scale: add, remove, look up by id, search.

    Args:
        dim: vector dimension.
        ids: ``[n]`` int64 (unique), or ``None`` for an empty index.
        vectors: ``[n, dim]`` float32, rows aligned with ``ids`` (may be a
            read-only memory map: see the module docs).
        mapped: whether ``vectors`` is a memory map of the file.
    """

    def __init__(
        self,
        dim: int,
        ids: np.ndarray | None = None,
        vectors: np.ndarray | None = None,
        mapped: bool = False,
    ) -> None:
        self.dim = dim
        self._mapped = mapped
        self._ids = np.zeros(0, np.int64) if ids is None else ids
        self._vecs = np.zeros((0, dim), np.float32) if vectors is None else vectors
        if self._vecs.shape != (len(self._ids), dim):
            raise ValueError(
                f"{self._vecs.shape} vectors for {len(self._ids)} ids of {dim} dims"
            )
        self._n = len(self._ids)  # rows in use (the arrays may hold spare room)
        self._pos_of: np.ndarray | None = None  # row by id (-1: none)

    # -- kind ----------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return "flat"

    @property
    def ntotal(self) -> int:
        return self._n

    @property
    def nlist(self) -> int:
        return 0

    @property
    def mapped(self) -> bool:
        """Whether the vectors are a memory map of the file (not yet changed)."""
        return self._mapped

    # -- content -------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` ``[n, dim]`` float32 under ``ids`` ``[n]`` int64."""
        m = len(ids)
        if not m:
            return
        self._pos_of = None
        n = self._n
        if self.mapped or len(self._ids) < n + m:  # grow by half: amortised O(1)
            room = max(n + m, n + n // 2)
            ids_buf = np.empty(room, np.int64)
            vec_buf = np.empty((room, self.dim), np.float32)
            ids_buf[:n], vec_buf[:n] = self._ids[:n], self._vecs[:n]
            self._ids, self._vecs, self._mapped = ids_buf, vec_buf, False
        self._ids[n : n + m] = ids
        self._vecs[n : n + m] = vectors
        self._n = n + m

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids``; returns how many were present."""
        if not len(ids) or not self._n:
            return 0
        gone = np.isin(self._ids[: self._n], np.asarray(ids, np.int64))
        count = int(gone.sum())
        if count:
            self._pos_of = None
            keep = ~gone
            self._ids = self._ids[: self._n][keep]  # copies: in memory from now on
            self._vecs = np.ascontiguousarray(self._vecs[: self._n][keep])
            self._mapped = False
            self._n = len(self._ids)
        return count

    def ids(self) -> np.ndarray:
        """Every id held, in row order (int64, a read-only view)."""
        view = self._ids[: self._n].view()
        view.flags.writeable = False
        return view

    def all_vectors(self, copy: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(ids [n], vectors [n, dim])`` of everything stored, in row order.

        With ``copy=False`` both are views of the storage (or of the memory
        map), valid until the index changes.
        """
        ids, vecs = self.ids(), self._vecs[: self._n]
        return (ids.copy(), np.array(vecs)) if copy else (ids, vecs)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """Vectors ``[n, dim]`` of ``ids`` (each must be present)."""
        ids = np.asarray(ids, np.int64)
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        # A row per id (ids are dense: given out in ascending order, rarely
        # deleted), so a lookup is one take from a table and one from the rows.
        pos_of = self._positions()
        inside = (ids >= 0) & (ids < len(pos_of))
        pos = np.where(inside, pos_of[np.where(inside, ids, 0)], -1)
        if np.any(pos < 0):
            raise KeyError(f"ids not in the index: {ids[pos < 0][:5]}")
        return self._vecs[pos]

    def _positions(self) -> np.ndarray:
        if self._pos_of is None:
            held = self._ids[: self._n]
            top = int(held.max()) + 1 if len(held) else 0
            pos_of = np.full(top, -1, np.int64 if len(held) >> 31 else np.int32)
            pos_of[held] = np.arange(len(held))
            self._pos_of = pos_of
        return self._pos_of

    # -- search --------------------------------------------------------------------
    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        nprobe: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` by inner product for each query row, exactly (every row, or
        every allowed one, is scored).

        Args:
            queries: ``[q, dim]`` float32.
            k: hits per query.
            allowed: restrict to these ids (``None``: all; ids not held are
                ignored).
            nprobe: ignored (an exact index scans everything).

        Returns:
            ``(scores [q, k], ids [q, k])`` best first; ``-1`` ids (and ``-inf``
            scores) where fewer than k exist.
        """
        q = np.atleast_2d(np.asarray(queries, np.float32))
        ids = self._ids[: self._n]
        vecs = self._vecs[: self._n]
        if allowed is not None:
            allowed = np.asarray(allowed, np.int64)
            pos_of = self._positions()
            allowed = allowed[(allowed >= 0) & (allowed < len(pos_of))]
            pos = pos_of[allowed]
            pos = np.sort(pos[pos >= 0])
            ids, vecs = ids[pos], vecs[pos]
        k = max(1, int(k))
        scores = np.full((len(q), k), -np.inf, np.float32)
        found = np.full((len(q), k), -1, np.int64)
        if len(ids):
            sims = q @ vecs.T
            m = min(k, len(ids))
            top = np.argpartition(-sims, m - 1, axis=1)[:, :m]
            best = np.take_along_axis(sims, top, axis=1)
            order = np.argsort(-best, axis=1, kind="stable")
            scores[:, :m] = np.take_along_axis(best, order, axis=1)
            found[:, :m] = ids[np.take_along_axis(top, order, axis=1)]
        return scores, found

    # -- files ---------------------------------------------------------------------
    def write(self, path: Path) -> None:
        """Write atomically (see the module docs for the format)."""

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(self.ids()))
                np.lib.format.write_array(
                    fh, np.ascontiguousarray(self._vecs[: self._n], np.float32)
                )

        atomic_write(path, write)

    @classmethod
    def read(cls, path: Path, dim: int) -> ScaleIndex:
        """Read (memory-map) a file :meth:`write` wrote, or read a FAISS file of
        the previous format (``.index``, into memory).

        Raises:
            ValueError: not a file this store writes, or of another dimension.
        """
        if path.suffix == LEGACY_SUFFIX:
            return cls._read_faiss(path, dim)
        with open(path, "rb") as fh:
            id_shape, id_type = _array_header(fh, path)
            id_offset = fh.tell()
            fh.seek(id_offset + 8 * int(np.prod(id_shape)))
            shape, dtype = _array_header(fh, path)
            offset = fh.tell()
        if (
            id_type != np.int64
            or len(id_shape) != 1
            or shape != (id_shape[0], dim)
            or dtype != np.float32
        ):
            raise ValueError(
                f"{path}: holds {shape} {dtype} vectors for {id_shape} {id_type} "
                f"ids, not [n, {dim}] float32 for [n] int64; delete it (rebuilt "
                "from the database)"
            )
        if not id_shape[0]:
            return cls(dim)
        ids = np.memmap(path, np.int64, "r", offset=id_offset, shape=id_shape)
        vecs = np.memmap(path, np.float32, "r", offset=offset, shape=shape)
        return cls(dim, np.asarray(ids), np.asarray(vecs), mapped=True)

    @classmethod
    def _read_faiss(cls, path: Path, dim: int) -> ScaleIndex:
        """The vectors of a FAISS file of the previous format, into memory."""
        index = faiss.read_index(str(path))  # already downcast to its class
        if index.d != dim:
            raise ValueError(f"{path}: {index.d} dims, expected {dim}")
        if isinstance(index, faiss.IndexIVF):
            invlists = index.invlists
            ids, vecs = [], []
            for lst in range(index.nlist):
                if n := invlists.list_size(lst):
                    ids.append(faiss.rev_swig_ptr(invlists.get_ids(lst), n).copy())
                    codes = faiss.rev_swig_ptr(invlists.get_codes(lst), n * 4 * dim)
                    vecs.append(codes.copy().view(np.float32).reshape(n, dim))
            if not ids:
                return cls(dim)
            ids, vecs = np.concatenate(ids), np.concatenate(vecs)
            order = np.argsort(ids)  # ascending ids keep lookups on the fast path
            return cls(dim, ids[order].astype(np.int64), vecs[order])
        if not isinstance(index, faiss.IndexIDMap):
            raise ValueError(f"{path}: not an index this store writes; delete it")
        ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        flat = faiss.downcast_index(index.index)
        n = int(flat.ntotal)
        vecs = faiss.rev_swig_ptr(flat.get_xb(), n * dim).reshape(n, dim).copy()
        return cls(dim, ids, vecs)


def _array_header(fh, path: Path) -> tuple[tuple[int, ...], np.dtype]:  # noqa: ANN001
    """The shape and dtype of the ``.npy`` array starting at ``fh``'s position."""
    try:
        version = np.lib.format.read_magic(fh)
        read = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }[version]
        shape, fortran, dtype = read(fh)
    except Exception as exc:  # noqa: BLE001 - any damage: one message
        raise ValueError(f"{path}: not a vectors file ({exc})") from exc
    if fortran:
        raise ValueError(f"{path}: not a vectors file (Fortran order)")
    return tuple(shape), np.dtype(dtype)


def read_npy(fh, path: Path) -> np.ndarray:  # noqa: ANN001
    """The ``.npy`` array starting at ``fh``'s position, read into memory
    (``path``: the file, for messages).

    Raises:
        ValueError: not an ``.npy`` array there, or a truncated one.
    """
    shape, dtype = _array_header(fh, path)
    count = int(np.prod(shape))
    out = np.fromfile(fh, dtype, count)
    if len(out) != count:
        raise ValueError(f"{path}: truncated")
    return out.reshape(shape)
