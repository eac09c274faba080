"""The store's manifest (``STORE/manifest.json``) and the high-water mark it keeps.

DuckDB writes each commit to its write-ahead log (``swan.duckdb.wal``) and moves
it into ``swan.duckdb`` at a checkpoint (when the writer's connection closes). A
crash in between leaves committed writes in the log only; if the log is then
damaged or lost, DuckDB opens without them and says nothing, and their ids would
be handed out again. So after every committed write the writer also records,
outside the database, the *mark* of that write: the next entry id, the database
generation and the entry count (:class:`Mark`). A database behind its mark has
lost committed writes: :func:`find_loss` says which, and the store refuses to
write until the loss is accepted (``swan check --accept-loss``).

The manifest is written atomically and durably (:mod:`swan_index.files`); it is
derived data, and the writer rewrites it when it is missing or unreadable.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swan_index.db import StoreDamagedError
from swan_index.files import atomic_write_text
from swan_index.schema import FORMAT_VERSION

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class Mark:
    """The store as of its last committed write.

    Attributes:
        next_id: the next entry id; every id below it was handed out.
        generation: the database generation (bumped by every add, delete, layout).
        count: entries after that write.
    """

    next_id: int
    generation: int
    count: int


@dataclass(frozen=True)
class Loss:
    """Committed writes the database lacks.

    Attributes:
        next_id: the database's next entry id.
        generation: the database's generation.
        mark: what had been committed (``next_id`` also covers the ids the FAISS
            files hold).
        source: where the mark comes from (``manifest.json``, ``faiss/``).
    """

    next_id: int
    generation: int
    mark: Mark
    source: str

    @property
    def missing_ids(self) -> range:
        """Ids handed out by the lost writes (some may have been deleted since)."""
        return range(self.next_id, max(self.next_id, self.mark.next_id))

    def describe(self) -> str:
        """What is missing, in a few words (no path, no fix)."""
        ids = self.missing_ids
        parts = []
        if len(ids):
            span = f"{ids[0]}-{ids[-1]}" if len(ids) > 1 else f"{ids[0]}"
            parts.append(f"{len(ids)} entries, ids {span}")
        if self.generation < self.mark.generation:
            parts.append(
                f"the database is at write {self.generation}, {self.source} "
                f"recorded write {self.mark.generation}"
            )
        else:
            parts.append(f"{self.source} holds ids up to {self.mark.next_id - 1}")
        return "; ".join(parts)

    def message(self, path: Path) -> str:
        """One line: the store, what is missing, why, and the two ways on."""
        return (
            f"{path}: the database lost committed writes ({self.describe()}): its "
            "write-ahead log swan.duckdb.wal was damaged or lost in a crash; restore "
            "the store folder from a backup, or accept the loss with "
            f"`swan check --store {path} --accept-loss`"
        )

    def record(self) -> dict[str, Any]:
        """The ``store_meta`` record of an accepted loss."""
        ids = self.missing_ids
        return {
            "accepted": dt.datetime.now(dt.timezone.utc).isoformat(),
            "ids": [ids[0], ids[-1]] if len(ids) else None,
            "database_write": self.generation,
            "recorded_write": self.mark.generation,
            "source": self.source,
        }


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of the store in ``folder``, or ``None`` when there is none.

    Args:
        folder: the store folder.

    Returns:
        The manifest as a dict, or ``None`` when the file does not exist.

    Raises:
        ValueError: the file exists but is not a manifest (one line, the file).
    """
    path = folder / MANIFEST_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ValueError(f"{path}: unreadable ({err.strerror})") from err
    try:
        manifest = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not JSON ({err})") from err
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: not a manifest (a JSON object)")
    return manifest


def mark_of(manifest: dict[str, Any] | None) -> Mark | None:
    """The high-water mark a manifest records, or ``None`` (no manifest, or one
    written before marks were kept)."""
    if manifest is None:
        return None
    try:
        return Mark(
            int(manifest["next_id"]),
            int(manifest["generation"]),
            int(manifest["count"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def find_loss(
    mark: Mark | None, index_next_id: int, next_id: int, generation: int
) -> Loss | None:
    """Compare the database with what was committed before it.

    Args:
        mark: the manifest's mark (``None``: none recorded).
        index_next_id: one past the largest id the FAISS files hold (0: none);
            the indexes only ever hold committed ids.
        next_id: the database's next entry id.
        generation: the database's generation.

    Returns:
        The :class:`Loss`, or ``None`` when the database holds every committed
        write the mark and the indexes know of.
    """
    recorded = mark or Mark(0, -1, 0)
    top = max(recorded.next_id, index_next_id)
    if next_id >= top and generation >= recorded.generation:
        return None
    behind = next_id < recorded.next_id or generation < recorded.generation
    source = MANIFEST_NAME if mark is not None and behind else "faiss/"
    return Loss(
        next_id, generation, Mark(top, recorded.generation, recorded.count), source
    )


def check_mark(
    folder: Path,
    manifest: tuple[dict[str, Any] | None, str | None],
    index_next_id: int,
    meta: dict[str, Any],
) -> Loss | None:
    """On opening a store: warn about a manifest that cannot serve as a mark,
    and compare the database with the mark.

    Args:
        folder: the store folder.
        manifest: :func:`load_manifest`'s answer, read before the database.
        index_next_id: one past the largest id the FAISS files hold (read before
            the database).
        meta: the database's ``store_meta`` (``next_id``, ``generation``).

    Returns:
        The loss, or ``None`` when nothing is lost.
    """
    found, problem = manifest
    next_id, generation = int(meta["next_id"]), int(meta["generation"])
    if problem is not None or (found is None and generation > 0):
        log.warning(
            "%s; a lost write-ahead log cannot be detected from it this time; a "
            "writer rewrites it",
            problem or f"{folder / MANIFEST_NAME}: missing",
        )
    return find_loss(mark_of(found), index_next_id, next_id, generation)


def refuse_new_database(folder: Path, db_name: str) -> None:
    """Refuse to create a database where the manifest records a store's entries
    (the database was deleted or moved: a new one would hand out their ids again).

    Args:
        folder: the store folder.
        db_name: the database's file name.

    Raises:
        StoreDamagedError: the manifest records entries.
    """
    try:
        mark = mark_of(read_manifest(folder))
    except ValueError:
        return
    if mark is not None and mark.next_id > 1:
        raise StoreDamagedError(
            f"{folder / db_name}: missing, but {MANIFEST_NAME} records a store of "
            f"{mark.count} entries (ids up to {mark.next_id - 1}); restore the store "
            "folder from a backup, or create the new store in an empty folder"
        )


def load_manifest(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """:func:`read_manifest` without raising: ``(manifest or None, why it is
    unreadable or None)``."""
    try:
        return read_manifest(folder), None
    except ValueError as err:
        return None, str(err)


def write_manifest(
    folder: Path, encoder: dict[str, Any], mark: Mark, extra: dict[str, Any]
) -> None:
    """Replace the manifest atomically and durably.

    Args:
        folder: the store folder.
        encoder: the encoder's identity (:meth:`EncoderInfo.to_dict`).
        mark: the last committed write.
        extra: further keys: ``indexes`` (per scale side, the kind, size and
            lists of its FAISS file as last written), ``approx_threshold``.

    Raises:
        OSError: it cannot be written (the old one stays).
    """
    manifest = {
        "format_version": FORMAT_VERSION,
        **extra,
        "encoder": encoder,
        "count": mark.count,
        "next_id": mark.next_id,
        "generation": mark.generation,
        "written": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
    atomic_write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=2))
