"""Verify a store: each part against the database, and the database against itself.

:func:`check_store` reads the store as it is on disk, without the repairs that
:meth:`Store.open <swan_index.store.Store.open>` makes in memory, while holding the
store's write lock (so no writer changes it meanwhile):

* the database: every entry has a code; previews and layout rows belong to
  entries; ids lie below the next id; codes have the encoder's token sizes and
  finite, L2-normalised vectors; sha256s are unique; a sample of previews
  decodes;
* every FAISS index file against the ``codes`` table: the same id set, and on a
  sample of ids the same vectors; the joint first-stage index
  (``faiss/joint.ivf``, large stores only), when there is one: readable, and
  the same id set;
* the manifest against the database: format, encoder, counts, the high-water
  mark (a database behind it lost committed writes), the index files' sizes;
* ``ingest_log``: known statuses, ``ok`` rows naming an entry id once handed out;
* the source files of the entries: still there and unchanged (notes only: the
  store does not need them).

Each problem is one line saying what is wrong and how to fix it; notes are
informational and never make a store inconsistent.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from swan_index.db import StoreDamagedError, WriterLock, connect, readable
from swan_index.joint import JOINT_FILE, LEGACY_JOINT_FILE, JointIndex
from swan_index.manifest import MANIFEST_NAME, find_loss, load_manifest, mark_of
from swan_index.schema import FORMAT_VERSION, EncoderInfo, decode_preview
from swan_index.store import DB_NAME
from swan_index.tables import Connection, fetch_vectors, read_meta, stored_encoder
from swan_index.vectors import ScaleIndex, scale_file

#: Ids whose vectors (and previews) are compared per index.
SAMPLE = 256
#: Examples named per problem.
SHOWN = 5
#: Statuses ``ingest_log`` rows may have.
LOG_STATUSES = ("ok", "skipped", "error", "removed")


@dataclass
class CheckReport:
    """What :func:`check_store` found.

    Attributes:
        path: the store folder.
        problems: one line each: what is inconsistent, and the fix.
        notes: one line each: informational (source files moved, no layout ...).
        counts: entries, codes, previews, layout rows, log rows, index vectors.
    """

    path: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def consistent(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """The last line of ``swan check``."""
        n = self.counts.get("entries")
        held = "" if n is None else f"{n} entries; "
        notes = f"{len(self.notes)} note(s)"
        if self.consistent:
            return f"{self.path}: consistent ({held}{notes})"
        return f"{self.path}: {len(self.problems)} problem(s) ({held}{notes})"

    def to_dict(self) -> dict[str, Any]:
        """The ``swan check --json`` record."""
        return {
            "store": str(self.path),
            "consistent": self.consistent,
            "problems": self.problems,
            "notes": self.notes,
            "counts": self.counts,
            "summary": self.summary(),
        }


def check_store(
    path: str | Path, sample: int = SAMPLE, files: bool = True
) -> CheckReport:
    """Check the store at ``path`` (see the module docs).

    Args:
        path: the store folder.
        sample: ids per index whose vectors are compared with the database.
        files: also look at the entries' source files (notes only).

    Returns:
        The report; ``report.consistent`` is false on any problem.

    Raises:
        FileNotFoundError: no store at ``path``.
        ValueError: ``path`` is a file.
        StoreBusyError: a writer is running (its FAISS files lag the database
            until it flushes): check when it has finished.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: a file, not a store folder; give the store's folder")
    db = path / DB_NAME
    if not db.exists():
        raise FileNotFoundError(
            f"{path}: no store here (no {DB_NAME}); give the store's folder"
        )
    report = CheckReport(path)
    lock: WriterLock | None = WriterLock(path)
    try:
        lock.acquire()
    except PermissionError:  # a read-only copy: nothing can write to it either
        lock = None
        report.notes.append(f"{path}: read-only folder, checked without the lock")
    try:
        manifest = load_manifest(path)
        with readable(db), connect(db, read_only=True) as con:
            _check_all(con, path, manifest, report, sample, files)
    except StoreDamagedError as err:
        report.problems.append(str(err))
    finally:
        if lock is not None:
            lock.release()
    return report


def _check_all(
    con: Connection,
    path: Path,
    manifest: tuple[dict[str, Any] | None, str | None],
    report: CheckReport,
    sample: int,
    files: bool,
) -> None:
    meta = read_meta(con)
    try:
        encoder = stored_encoder(path / DB_NAME, meta)
        next_id = int(meta["next_id"])
        int(meta["generation"])  # present and a number
    except (KeyError, TypeError, ValueError) as err:
        report.problems.append(
            f"{path / DB_NAME}: store_meta unusable ({err}); restore the store "
            "folder from a backup"
        )
        return
    codes = _check_tables(con, path, encoder, next_id, report, sample)
    sizes, index_next_id = _check_indexes(con, path, encoder, codes, report, sample)
    _check_joint(path, encoder, codes, report)
    _check_manifest(path, manifest, encoder, meta, sizes, index_next_id, report)
    _check_log(con, path, next_id, report)
    for loss in meta.get("accepted_losses", []):
        ids = loss.get("ids")
        lost = f"ids {ids[0]}-{ids[1]}" if ids else "no ids"
        report.notes.append(
            f"{path}: a loss was accepted on {loss.get('accepted', '?')[:19]}: {lost} "
            f"(database at write {loss.get('database_write')}, "
            f"{loss.get('source')} recorded write {loss.get('recorded_write')})"
        )
    if files:
        _check_files(con, report)


def _ids(con: Connection, table: str) -> np.ndarray:
    got = con.execute(f"SELECT id FROM {table} ORDER BY id").fetchnumpy()["id"]
    return np.asarray(got, np.int64)


def _some(ids: np.ndarray) -> str:
    shown = ", ".join(str(int(i)) for i in ids[:SHOWN])
    return f"ids {shown}{', ...' if len(ids) > SHOWN else ''}"


def _spread(ids: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` of ``ids``, evenly spread (first and last included)."""
    if len(ids) <= n:
        return ids
    return ids[np.unique(np.linspace(0, len(ids) - 1, n).astype(np.int64))]


def _check_tables(
    con: Connection,
    path: Path,
    encoder: EncoderInfo,
    next_id: int,
    report: CheckReport,
    sample: int,
) -> np.ndarray:
    """The database against itself; returns the ``codes`` ids."""
    db = path / DB_NAME
    restore = "restore the store folder from a backup"
    entries, codes = _ids(con, "entries"), _ids(con, "codes")
    previews, layout = _ids(con, "previews"), _ids(con, "layout")
    report.counts.update(entries=len(entries), codes=len(codes), previews=len(previews))
    report.counts["layout"] = len(layout)
    pairs = [
        (np.setdiff1d(entries, codes), "entries have no code", "problem"),
        (np.setdiff1d(codes, entries), "codes belong to no entry", "problem"),
        (np.setdiff1d(previews, entries), "previews belong to no entry", "problem"),
        (np.setdiff1d(layout, entries), "layout rows belong to no entry", "problem"),
        (np.setdiff1d(entries, previews), "entries have no preview", "note"),
    ]
    if len(layout):
        pairs.append((np.setdiff1d(entries, layout), "entries lack a layout", "note"))
    for ids, what, kind in pairs:
        if not len(ids):
            continue
        if kind == "problem":
            report.problems.append(f"{db}: {len(ids)} {what} ({_some(ids)}); {restore}")
        else:
            fix = "run `swan layout`" if "layout" in what else "stored without one"
            report.notes.append(f"{db}: {len(ids)} {what} ({_some(ids)}; {fix})")
    high = np.concatenate([entries, codes])
    high = np.unique(high[(high >= next_id) | (high < 1)])
    if len(high):
        report.problems.append(
            f"{db}: {len(high)} ids outside 1..{next_id - 1}, the ids handed out "
            f"({_some(high)}): a new entry would take one again; {restore}"
        )
    for i, (side, depth) in enumerate(zip(encoder.scales, encoder.depths, strict=True)):
        size = 2 * depth * side**3
        bad_tokens = con.execute(
            f"SELECT count(*) FROM codes WHERE octet_length(tokens_{i}) != ?", [size]
        ).fetchone()[0]
        bad_vectors = con.execute(
            f"SELECT count(*) FROM codes WHERE NOT "
            f"(abs(sqrt(array_inner_product(vector_{i}, vector_{i})) - 1) <= 1e-3)"
        ).fetchone()[0]
        if bad_tokens or bad_vectors:
            report.problems.append(
                f"{db}: scale {side}: {bad_tokens} codes with tokens of the wrong "
                f"size, {bad_vectors} with vectors not finite and L2-normalised; "
                f"{restore}"
            )
    other = con.execute(
        "SELECT count(*) FROM entries WHERE encoder_hash != ?", [encoder.hash]
    ).fetchone()[0]
    twice = con.execute(
        "SELECT count(*) FROM (SELECT sha256 FROM entries GROUP BY sha256 "
        "HAVING count(*) > 1)"
    ).fetchone()[0]
    if other:
        report.problems.append(
            f"{db}: {other} entries hold another encoder's codes; {restore}"
        )
    if twice:
        report.problems.append(
            f"{db}: {twice} maps (sha256) are stored twice; delete the newer copies"
        )
    _check_previews(con, db, _spread(previews, sample), report)
    return codes


def _check_previews(
    con: Connection, db: Path, ids: np.ndarray, report: CheckReport
) -> None:
    bad = []
    for row in con.execute(
        "SELECT id, grid, volume FROM previews WHERE list_contains(?, id)",
        [[int(i) for i in ids]],
    ).fetchall():
        try:
            decode_preview(row[2], int(row[1]))
        except (zlib.error, ValueError):
            bad.append(row[0])
    if bad:
        report.problems.append(
            f"{db}: {len(bad)} of {len(ids)} sampled previews do not decode "
            f"({_some(np.asarray(bad))}); restore the store folder from a backup"
        )


def _check_indexes(
    con: Connection,
    path: Path,
    encoder: EncoderInfo,
    codes: np.ndarray,
    report: CheckReport,
    sample: int,
) -> tuple[dict[str, int], int]:
    """Every FAISS file against ``codes``; returns each file's size (by scale
    side) and one past the largest id the files hold."""
    repair = f"`swan check --store {path} --repair` rebuilds it from the database"
    sizes: dict[str, int] = {}
    top = 0
    for i, (side, dim) in enumerate(zip(encoder.scales, encoder.dims, strict=True)):
        file = scale_file(path / "faiss", side)
        if not file.exists() and scale_file(path / "faiss", side, True).exists():
            file = scale_file(path / "faiss", side, True)  # the previous format
        if not file.exists():
            report.problems.append(f"{file}: missing; {repair}")
            continue
        try:
            index = ScaleIndex.read(file, dim)
        except Exception as exc:  # noqa: BLE001 - any damage is one problem line
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
            report.problems.append(f"{file}: unreadable ({why}); {repair}")
            continue
        held = np.sort(index.ids())
        sizes[str(side)] = len(held)
        top = max(top, int(held[-1]) + 1 if len(held) else 0)
        twice = held[1:][held[1:] == held[:-1]]
        extra = np.setdiff1d(held, codes)
        missing = np.setdiff1d(codes, held)
        for ids, what in (
            (twice, "ids it holds twice"),
            (extra, "ids the database does not hold"),
            (missing, "ids of the database it lacks"),
        ):
            if len(ids):
                report.problems.append(
                    f"{file}: {len(ids)} {what} ({_some(ids)}); {repair}"
                )
        both = _spread(np.intersect1d(held, codes), sample)
        differ = 0
        for got, vecs in fetch_vectors(con, i, dim, both):
            differ += int(
                np.sum(np.abs(index.lookup(got) - vecs).max(axis=1, initial=0) > 1e-6)
            )
        if differ:
            report.problems.append(
                f"{file}: {differ} of {len(both)} sampled vectors differ from the "
                f"database's; {repair}"
            )
    report.counts["indexes"] = len(sizes)
    return sizes, top


def _check_joint(
    path: Path, encoder: EncoderInfo, codes: np.ndarray, report: CheckReport
) -> None:
    """The joint first-stage index against ``codes``, when the store has one (a
    store of more than the approximate threshold's entries; one without it gets
    it when it is next opened)."""
    file = path / "faiss" / JOINT_FILE
    if not file.exists():
        file = path / "faiss" / LEGACY_JOINT_FILE  # the previous format
    if not file.exists():
        return
    repair = f"`swan check --store {path} --repair` rebuilds it from the database"
    try:
        held = np.sort(JointIndex.read(file, tuple(encoder.dims)).ids())
    except Exception as exc:  # noqa: BLE001 - any damage is one problem line
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        report.problems.append(f"{file}: unreadable ({why}); {repair}")
        return
    report.counts["joint"] = len(held)
    twice = held[1:][held[1:] == held[:-1]]
    for ids, what in (
        (twice, "ids it holds twice"),
        (np.setdiff1d(held, codes), "ids the database does not hold"),
        (np.setdiff1d(codes, held), "ids of the database it lacks"),
    ):
        if len(ids):
            report.problems.append(
                f"{file}: {len(ids)} {what} ({_some(ids)}); {repair}"
            )


def _check_manifest(
    path: Path,
    manifest: tuple[dict[str, Any] | None, str | None],
    encoder: EncoderInfo,
    meta: dict[str, Any],
    sizes: dict[str, int],
    index_next_id: int,
    report: CheckReport,
) -> None:
    file = path / MANIFEST_NAME
    repair = f"`swan check --store {path} --repair` rewrites it"
    found, problem = manifest
    next_id, generation = int(meta["next_id"]), int(meta["generation"])
    loss = find_loss(mark_of(found), index_next_id, next_id, generation)
    if loss is not None:
        report.problems.append(loss.message(path))
    if found is None:
        report.problems.append(f"{problem or f'{file}: missing'}; {repair}")
        return
    if found.get("format_version") != FORMAT_VERSION:
        report.problems.append(
            f"{file}: format {found.get('format_version')}, the database's is "
            f"{FORMAT_VERSION}; {repair}"
        )
    if (found.get("encoder") or {}).get("hash") != encoder.hash:
        report.problems.append(
            f"{file}: names another encoder than the database's "
            f"({encoder.hash[:12]}); {repair}"
        )
    mark = mark_of(found)
    count = report.counts.get("entries", 0)
    if mark is None:
        report.notes.append(
            f"{file}: no high-water mark (written by an older version); the next "
            "writer records one"
        )
    elif loss is None and (mark.next_id, mark.generation, mark.count) != (
        next_id,
        generation,
        count,
    ):
        report.problems.append(
            f"{file}: records write {mark.generation} ({mark.count} entries, next id "
            f"{mark.next_id}), the database is at write {generation} ({count} "
            f"entries, next id {next_id}): a crash after a commit; {repair}"
        )
    recorded = found.get("indexes") or {}
    for side, n in sizes.items():
        said = (recorded.get(side) or {}).get("ntotal")
        if said != n:
            report.problems.append(
                f"{file}: says faiss/{scale_file(path, side).name} holds {said} "
                f"vectors, it holds {n}; {repair}"
            )


def _check_log(con: Connection, path: Path, next_id: int, report: CheckReport) -> None:
    db = path / DB_NAME
    statuses = ", ".join(f"'{s}'" for s in LOG_STATUSES)
    report.counts["log_rows"] = con.execute(
        "SELECT count(*) FROM ingest_log"
    ).fetchone()[0]
    for sql, what in (
        (f"status IS NULL OR status NOT IN ({statuses})", "have an unknown status"),
        ("status = 'ok' AND entry_id IS NULL", "say 'ok' without an entry id"),
        (f"entry_id >= {int(next_id)} OR entry_id < 1", "name ids never handed out"),
    ):
        n = con.execute(f"SELECT count(*) FROM ingest_log WHERE {sql}").fetchone()[0]
        if n:
            report.problems.append(
                f"{db}: {n} ingest_log rows {what}; restore the store folder from a "
                "backup"
            )


def _check_files(con: Connection, report: CheckReport) -> None:
    """Notes on the entries' source files: gone, or changed since ingest (by
    size and modification time, as a re-ingest decides)."""
    gone: list[str] = []
    changed: list[str] = []
    n_gone = n_changed = 0
    cur = con.execute(
        "SELECT source_path, file_size, file_mtime_ns FROM entries "
        "WHERE source_path IS NOT NULL ORDER BY id"
    )
    while rows := cur.fetchmany(10_000):
        for source, size, mtime in rows:
            try:
                st = os.stat(source)
            except OSError:
                n_gone += 1
                gone += [source] if len(gone) < SHOWN else []
                continue
            if (size is not None and size != st.st_size) or (
                mtime is not None and mtime != st.st_mtime_ns
            ):
                n_changed += 1
                changed += [source] if len(changed) < SHOWN else []
    if n_gone:
        report.notes.append(
            f"{n_gone} source files are gone (e.g. {', '.join(gone)}); searches of "
            "those entries use their stored vectors"
        )
    if n_changed:
        report.notes.append(
            f"{n_changed} source files changed since ingest (e.g. "
            f"{', '.join(changed)}); `swan ingest` stores the new versions"
        )
