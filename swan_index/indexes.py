"""The store's per-scale vectors and its joint index, kept in step with its
database.

DuckDB is the source of truth; an index agrees with it exactly when it holds the
same id set (entry ids are never reused). :meth:`ScaleIndexes.reconcile` brings
each index in line with the ``codes`` table (adds what it lacks from the
database, removes what the database no longer holds), :meth:`ScaleIndexes.write`
saves the changed ones atomically. Every scale is flat and memory-mapped when
read (:mod:`swan_index.vectors`). Above the approximate threshold the store
also keeps the joint first-stage index (:mod:`swan_index.joint`,
``folder/joint.ivf``), made from the per-scale vectors: built when the store
passes the threshold or when its file is missing or unreadable, kept in step on
add, remove and reconcile.

A store of the previous format (``scale_<side>.index``, FAISS files, and
``joint.npz``) is read into memory (:attr:`ScaleIndexes.legacy`); the next write
converts it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from swan_index.joint import JOINT_FILE, LEGACY_JOINT_FILE, TRAIN_SAMPLE, JointIndex
from swan_index.tables import Connection, fetch_vectors
from swan_index.vectors import ScaleIndex, scale_file

#: Entries per chunk when the joint index is filled from the per-scale ones.
JOINT_CHUNK = 100_000

log = logging.getLogger(__name__)


class ScaleIndexes:
    """One :class:`~swan_index.vectors.ScaleIndex` per scale, with the files
    they live in (``folder/scale_<side>.vectors``).

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
        self.joint: JointIndex | None = None
        self._joint_dirty = False
        #: Whether :meth:`load` read files of the previous format.
        self.legacy = False

    def path(self, i: int) -> Path:
        """The file of scale ``i``'s vectors."""
        return scale_file(self.folder, self.scales[i])

    def legacy_path(self, i: int) -> Path:
        """The FAISS file of scale ``i`` in the previous format."""
        return scale_file(self.folder, self.scales[i], legacy=True)

    @property
    def joint_path(self) -> Path:
        """The file of the joint first-stage index."""
        return self.folder / JOINT_FILE

    def load(self) -> None:
        """Read the files there are (memory-mapped; those of the previous
        format into memory, setting :attr:`legacy`); an unreadable one is
        rebuilt from the database by the next :meth:`reconcile`."""
        for i, dim in enumerate(self.dims):
            path, old = self.path(i), self.legacy_path(i)
            path = path if path.exists() or not old.exists() else old
            if not path.exists():
                continue
            self.legacy |= path == old
            self._dirty[i] = path == old  # written in the new format
            try:
                self.indexes[i] = ScaleIndex.read(path, dim)
            except Exception as exc:  # noqa: BLE001 - any damage: rebuild
                log.warning(
                    "%s unreadable (%s): rebuilding from the database", path, exc
                )
                self.indexes[i] = ScaleIndex(dim)
                self._dirty[i] = True
        path, old = self.joint_path, self.folder / LEGACY_JOINT_FILE
        path = path if path.exists() or not old.exists() else old
        if path.exists():
            try:
                self.joint = JointIndex.read(path, self.dims)
                self._joint_dirty = self.joint.legacy
                self.legacy |= self.joint.legacy
            except Exception as exc:  # noqa: BLE001 - any damage: rebuild
                log.warning("%s unreadable (%s): rebuilding", path, exc)
                self.joint = None

    def reconcile(self, con: Connection, code_ids: np.ndarray, warn: bool) -> None:
        """Make every index hold exactly ``code_ids`` (sorted, unique): ids it
        lacks are added from the ``codes`` table over ``con``, others removed.

        Args:
            con: a connection to the store's database.
            code_ids: the ids of the ``codes`` table.
            warn: log a repair (on open, a disagreement means a crash).
        """
        for i, index in enumerate(self.indexes):
            have = index.ids()
            if len(have) == len(code_ids) and np.array_equal(have, code_ids):
                continue  # the usual case: the same ids, in the same order
            have = np.sort(have)  # ids are unique on both sides
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
        if self.joint is not None:  # made from the per-scale indexes, now right
            have = self.joint.ids()
            if not _same_ids(have, code_ids):
                have = np.sort(have)
                if warn and len(have):
                    log.warning(
                        "%s disagreed with the database: repaired", self.joint_path
                    )
                self.joint.remove(np.setdiff1d(have, code_ids, assume_unique=True))
                self._fill_joint(np.setdiff1d(code_ids, have, assume_unique=True))
                self._joint_dirty = True

    def _fill_joint(self, ids: np.ndarray) -> None:
        """Add ``ids`` to the joint index from the per-scale indexes, in chunks."""
        for start in range(0, len(ids), JOINT_CHUNK):
            chunk = ids[start : start + JOINT_CHUNK]
            self.joint.add(chunk, [ix.lookup(chunk) for ix in self.indexes])

    def ensure_joint(self, n: int, approx_threshold: int, drop: bool = True) -> bool:
        """Build the joint index (trained on a sample of the per-scale
        indexes, then filled) when ``n`` entries call for one and there is none;
        drop it when they do not (unless ``drop`` is false: a reader keeps the
        index its writer made, whatever its own threshold). Returns whether it
        changed."""
        want = n > approx_threshold
        if want == (self.joint is not None) or not (want or drop):
            return False
        if not want:
            self.joint = None
            self._joint_dirty = True
            return True
        ids = np.sort(self.indexes[0].ids())
        pick = np.sort(np.random.default_rng(0).permutation(ids)[:TRAIN_SAMPLE])
        self.joint = JointIndex.train(
            [ix.lookup(pick) for ix in self.indexes], entries=len(ids)
        )
        self._fill_joint(ids)
        self._joint_dirty = True
        log.info("joint index built for %d entries", len(ids))
        return True

    def add(self, ids: np.ndarray, vectors: tuple[np.ndarray, ...]) -> None:
        """Add a batch: per scale ``[n, dim]`` vectors."""
        for i, index in enumerate(self.indexes):
            index.add(ids, vectors[i])
            self._dirty[i] = True
        self._sorted.clear()
        if self.joint is not None and len(ids):
            self.joint.add(ids, list(vectors))
            self._joint_dirty = True

    def remove(self, ids: np.ndarray) -> None:
        for i, index in enumerate(self.indexes):
            index.remove(ids)
            self._dirty[i] = True
        self._sorted.clear()
        if self.joint is not None and self.joint.remove(ids):
            self._joint_dirty = True

    def write(self, n: int, approx_threshold: int) -> None:
        """Write the changed indexes (atomically; a file of the previous format
        is replaced by one of this), and build or drop the joint index as ``n``
        entries call for."""
        for i, index in enumerate(self.indexes):
            if self._dirty[i] or not self.path(i).exists():
                index.write(self.path(i))
                self._dirty[i] = False
            self.legacy_path(i).unlink(missing_ok=True)
        self.legacy = False
        self.ensure_joint(n, approx_threshold)
        if self.joint is None:
            self.joint_path.unlink(missing_ok=True)
        elif self._joint_dirty or not self.joint_path.exists():
            self.joint.write(self.joint_path)
        (self.folder / LEGACY_JOINT_FILE).unlink(missing_ok=True)
        self._joint_dirty = False

    def info(self) -> list[dict[str, Any]]:
        """Per scale: side, dims, index kind (``flat``), entries, IVF lists (0)."""
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

    def joint_info(self) -> dict[str, Any] | None:
        """The joint index's dims, entries and IVF lists (``None``: none)."""
        j = self.joint
        if j is None:
            return None
        return {
            "kind": "joint ivf",
            "dim": len(j.matrix),
            "ntotal": j.ntotal,
            "nlist": j.nlist,
        }

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


def _same_ids(have: np.ndarray, code_ids: np.ndarray) -> bool:
    """Whether ``have`` (any order, maybe with repeats) holds exactly the ids
    ``code_ids`` (sorted, unique), in O(n): as many, and every one of those
    present (then none can repeat)."""
    if len(have) != len(code_ids):
        return False
    if not len(have):
        return True
    top = max(int(have.max()), int(code_ids[-1])) + 1
    if have.min() < 0:
        return False
    present = np.zeros(top, bool)
    present[have] = True
    return bool(present[code_ids].all())
