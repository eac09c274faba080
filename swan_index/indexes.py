"""The store's FAISS indexes, one per scale, kept in step with its database.

DuckDB is the source of truth; an index agrees with it exactly when it holds the
same id set (entry ids are never reused). :meth:`ScaleIndexes.reconcile` brings
each index in line with the ``codes`` table (adds what it lacks from the
database, removes what the database no longer holds), :meth:`ScaleIndexes.write`
saves the changed ones atomically, converting the coarsest to IVF above the
approximate threshold (:func:`swan_index.vectors.index_kind`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from swan_index.tables import Connection, fetch_vectors
from swan_index.vectors import ScaleIndex, index_kind

log = logging.getLogger(__name__)


class ScaleIndexes:
    """One :class:`~swan_index.vectors.ScaleIndex` per scale, with the files
    they live in (``folder/scale_<side>.index``).

    Args:
        folder: the store's ``faiss`` folder.
        scales: scale sides, coarse to fine.
        dims: retrieval vector size per scale.
    """

    def __init__(
        self, folder: Path, scales: tuple[int, ...], dims: tuple[int, ...]
    ) -> None:
        self.folder = folder
        self.scales = tuple(scales)
        self.dims = tuple(dims)
        self.indexes = [ScaleIndex(d) for d in dims]
        self._dirty = [False] * len(dims)
        self._sorted: dict[int, np.ndarray | None] = {}  # see all_scores

    def path(self, i: int) -> Path:
        """The file of scale ``i``'s index."""
        return self.folder / f"scale_{self.scales[i]}.index"

    def load(self) -> None:
        """Read the index files there are; an unreadable one is rebuilt from the
        database by the next :meth:`reconcile`."""
        for i, dim in enumerate(self.dims):
            path = self.path(i)
            if path.exists():
                try:
                    self.indexes[i] = ScaleIndex.read(path, dim)
                except Exception as exc:  # noqa: BLE001 - any damage: rebuild
                    log.warning(
                        "%s unreadable (%s): rebuilding from the database", path, exc
                    )
                    self.indexes[i] = ScaleIndex(dim)
                    self._dirty[i] = True

    def reconcile(self, con: Connection, code_ids: np.ndarray, warn: bool) -> None:
        """Make every index hold exactly ``code_ids`` (sorted, unique): ids it
        lacks are added from the ``codes`` table over ``con``, others removed.

        Args:
            con: a connection to the store's database.
            code_ids: the ids of the ``codes`` table.
            warn: log a repair (on open, a disagreement means a crash).
        """
        for i, index in enumerate(self.indexes):
            have = np.sort(index.ids())  # ids are unique on both sides
            if np.array_equal(have, code_ids):
                continue
            extra = np.setdiff1d(have, code_ids, assume_unique=True)
            missing = np.setdiff1d(code_ids, have, assume_unique=True)
            if warn and len(have):
                log.warning(
                    "%s disagreed with the database (%d missing, %d extra): repaired",
                    self.path(i),
                    len(missing),
                    len(extra),
                )
            index.remove(extra)
            for ids, vecs in fetch_vectors(con, i, self.dims[i], missing):
                index.add(ids, vecs)
            self._dirty[i] = True
        self._sorted.clear()

    def add(self, ids: np.ndarray, vectors: tuple[np.ndarray, ...]) -> None:
        """Add a batch: per scale ``[n, dim]`` vectors."""
        for i, index in enumerate(self.indexes):
            index.add(ids, vectors[i])
            self._dirty[i] = True
        self._sorted.clear()

    def remove(self, ids: np.ndarray) -> None:
        for i, index in enumerate(self.indexes):
            index.remove(ids)
            self._dirty[i] = True
        self._sorted.clear()

    def write(self, n: int, approx_threshold: int) -> None:
        """Write the changed indexes (atomically), first converting each to the
        kind ``n`` entries call for."""
        for i, index in enumerate(self.indexes):
            kind = index_kind(n, i == 0, approx_threshold)
            if kind != index.kind:
                log.info("scale %d: %s index for %d entries", i, kind, n)
                index.convert(kind)
                self._dirty[i] = True
            if self._dirty[i] or not self.path(i).exists():
                index.write(self.path(i))
                self._dirty[i] = False

    def info(self) -> list[dict[str, Any]]:
        """Per scale: side, dims, index kind, entries, IVF lists (0: flat)."""
        return [
            {
                "scale": s,
                "dim": d,
                "kind": idx.kind,
                "ntotal": idx.ntotal,
                "nlist": idx.nlist,
            }
            for s, d, idx in zip(self.scales, self.dims, self.indexes, strict=True)
        ]

    def lookup(self, i: int, ids: np.ndarray) -> np.ndarray:
        """Scale ``i``'s vectors ``[n, dim]`` of the given ids."""
        return self.indexes[i].lookup(ids)

    def all_scores(self, i: int, q: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """``[P, N]`` cosines of the query ``q`` ``[P, dim]`` with every entry at
        scale ``i``, in the order of ``ids`` (all the index holds, ascending)."""
        index = self.indexes[i]
        if i not in self._sorted:
            have, vecs = index.all_vectors(copy=False)
            if len(have) != len(ids):
                raise RuntimeError(f"{self.path(i)} out of step; reopen")
            if np.all(have == ids):  # the usual case: no copy needed
                self._sorted[i] = None
            else:
                self._sorted[i] = np.ascontiguousarray(vecs[np.argsort(have)])
        vecs = self._sorted[i]
        if vecs is None:
            vecs = index.all_vectors(copy=False)[1]
        return q @ vecs.T

    def sorted_vectors(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids [N], vectors [N, dim])`` of scale ``i``, ids ascending (a copy)."""
        ids, vecs = self.indexes[i].all_vectors()
        order = np.argsort(ids)
        return ids[order], vecs[order]
