"""Re-encoding a store with a new checkpoint (what ``swan reencode`` runs).

Codes of two checkpoints are never compared, so a new checkpoint needs a new
store. This builds it from the files the old store's entries came from: every map
is read again (with its header), every atomic model simulated again at the
resolution, and from the assembly or asymmetric unit, its entry was stored with
(:func:`plan_sources`), all through :func:`swan_index.indexer.ingest_paths`.

**What an entry keeps.** Its id (so store ids, addresses and saved searches keep
pointing at the same map) and what the store alone knows: of the columns
:data:`CARRIED`, a value the sources no longer give (``NULL``, or no fitted
PDB ids) is carried over from the old entry; ``label`` is never in a source, so
it is always carried. Everything measured on the map (contour, size, box,
content hash, file size and time) is derived again. The old ``ingest_log`` stays
with the old store; the new one logs the re-encoding's ingest runs.

**What is listed, not dropped.** An entry whose source file is gone, that never
had one (made from data only the store holds), or whose file no longer ingests,
is not in the new store: each is listed with its reason
(:attr:`ReencodeSummary.missing`).

**Safety.** The old store is never written: it stays readable and searchable
until the new one is complete, and its write lock is held meanwhile, so no ingest
changes it behind the re-encoding's back. The new store is built in a sibling
folder ``TARGET.reencoding-<hash>`` (:func:`build_path`) and moved into place
only when complete: to ``out`` by one rename, or in place of the old store by
one atomic exchange of the two folders (Linux ``renameat2``; elsewhere two
renames, undone if the second fails), the old store kept beside it as
``STORE.before-reencode-<old hash>`` unless asked to delete it. A reader of
the old store (``swan serve``) is told on its next refresh to open the store
again (the new store's generation is past the old one's). The build is
resumable: after an interruption the same call continues it (ingest skips what
the build already holds).

**The layout** (UMAP and clusters) belongs to the codes: it is computed again in
the new store before the swap when the old store had one (or when asked), so the
dashboard never shows a layout of the old codes; otherwise the new store has
none, and the dashboard says to run ``swan layout``.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ingest.models import file_sha256, is_model_file, model_key
from swan_index.db import WriterLock, connect
from swan_index.indexer import IngestSummary, _vanished, check_engine, ingest_paths
from swan_index.schema import EncoderInfo, sql_type
from swan_index.store import DB_NAME, Store
from swan_index.tables import (
    bump,
    create_db,
    entry_columns,
    read_meta,
    renumber_rows,
    set_meta,
)

if TYPE_CHECKING:
    from swan_index.map_encoder import MapEncoder

log = logging.getLogger(__name__)

#: ``entries`` columns whose old value is carried over where the sources no
#: longer give one (see the module docs).
CARRIED = (
    "emdb_id",
    "title",
    "method",
    "resolution",
    "organism",
    "sample_name",
    "release_date",
    "fitted_pdbs",
    "label",
    "pdb_id",
    "model_method",
    "n_chains",
    "n_residues",
)
#: What identifies an entry's source, read from the old store.
_SOURCE_COLUMNS = ("id", "emdb_id", "sha256", "source_path", "resolution", "simulated")


@dataclass
class Sources:
    """The files to ingest again, and the entries that have none.

    Attributes:
        maps: map files.
        models: ``(assembly, resolutions) -> model files``: each group is one
            ingest (its models simulated at those resolutions, from the first
            biological assembly or, ``assembly=False``, the asymmetric unit).
        missing: ``{"id", "emdb_id", "path", "reason"}`` per entry with no source.
    """

    maps: list[str] = field(default_factory=list)
    models: dict[tuple[bool, tuple[float, ...]], list[str]] = field(
        default_factory=dict
    )
    missing: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ReencodeSummary:
    """What a re-encoding did.

    Attributes:
        store: the old store.
        out: where the new store is.
        backup: where the old store was kept (in-place re-encoding), else ``None``.
        old_encoder, new_encoder: checkpoint hashes.
        entries: entries of the old store.
        reencoded: of them, in the new store (same ids).
        missing: ``{"id", "emdb_id", "path", "reason"}`` per entry left out.
        carried: per column of :data:`CARRIED`, entries whose old value was kept.
        ingest: the ingest runs' counts summed (``ok``, ``skipped``, ``failed``).
        layout: :func:`~swan_index.layout.layout_store`'s summary, or ``None``
            when the new store has no layout.
        seconds: wall time.
    """

    store: str
    out: str
    backup: str | None = None
    old_encoder: str = ""
    new_encoder: str = ""
    entries: int = 0
    reencoded: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    carried: dict[str, int] = field(default_factory=dict)
    ingest: dict[str, int] = field(default_factory=dict)
    layout: dict[str, Any] | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


def build_path(target: str | Path, encoder_hash: str) -> Path:
    """The sibling folder where the store for ``target`` is built (the same for
    every try with one checkpoint, so that a second try continues the first)."""
    target = Path(target).absolute()
    return target.with_name(f"{target.name}.reencoding-{encoder_hash[:12]}")


def _model_assembly(row: dict[str, Any]) -> bool:
    """Whether a model entry was simulated from the file's assembly: its content
    key says so while the file is unchanged; else its ``sample_name`` does."""
    try:
        sha = file_sha256(row["source_path"])
    except OSError:
        sha = None
    if sha is not None:
        for assembly in (True, False):
            if model_key(sha, float(row["resolution"]), assembly) == row["sha256"]:
                return assembly
    return not (row["sample_name"] or "").startswith("asymmetric unit")


def plan_sources(rows: list[dict[str, Any]]) -> Sources:
    """Which files to ingest again, and how, for the old store's entries.

    Args:
        rows: per entry, at least ``id``, ``emdb_id``, ``sha256``,
            ``source_path``, ``resolution``, ``simulated``, ``sample_name``.

    Returns:
        The :class:`Sources`.
    """
    out = Sources()
    maps: dict[str, None] = {}  # ordered set
    models: dict[tuple[str, bool], set[float]] = {}
    for row in rows:
        src = row["source_path"]
        if not src or _vanished(src):  # one that cannot be checked is tried
            out.missing.append(
                {
                    "id": int(row["id"]),
                    "emdb_id": row["emdb_id"],
                    "path": src,
                    "reason": "its source file is gone" if src else _NO_SOURCE,
                }
            )
        elif row["simulated"] and is_model_file(src) and row["resolution"]:
            assembly = _model_assembly(row)
            models.setdefault((src, assembly), set()).add(float(row["resolution"]))
        else:
            maps[src] = None
    out.maps = list(maps)
    for (src, assembly), resolutions in models.items():
        out.models.setdefault((assembly, tuple(sorted(resolutions))), []).append(src)
    return out


_NO_SOURCE = (
    "no source file recorded (made from data only the store holds, e.g. a "
    "simulated set); it cannot be encoded again"
)


def _read_old(path: Path) -> tuple[pa.Table, dict[str, Any], bool]:
    """The old store's entries (source columns and :data:`CARRIED`), its
    ``store_meta``, and whether it has a layout."""
    with connect(path / DB_NAME, read_only=True) as con:
        have = entry_columns(con)
        cols = ", ".join(  # an older store lacks the columns added since
            c if c in have else f"CAST(NULL AS {sql_type(c)}) AS {c}"
            for c in dict.fromkeys([*_SOURCE_COLUMNS, *CARRIED])
        )
        table = con.sql(f"SELECT {cols} FROM entries ORDER BY id").to_arrow_table()
        meta = read_meta(con)
        laid = con.execute("SELECT count(*) FROM layout").fetchone()[0] > 0
    return table, meta, laid


def _start_build(
    build: Path, info: EncoderInfo, source: Path, old_hash: str, next_id: int
) -> None:
    """Create the build store (ids from the old store's next id, so that a
    re-derived entry can take its old id and a new one never reuses an id), or
    check that the one there is this re-encoding's."""
    db = build / DB_NAME
    origin = {"store": str(source), "encoder": old_hash}
    if db.exists():
        with connect(db, read_only=True) as con:
            meta = read_meta(con)
        if {k: meta.get("reencoded_from", {}).get(k) for k in origin} != origin:
            raise ValueError(
                f"{build}: holds another build, not the re-encoding of {source}; "
                "remove that folder and run again"
            )
        return
    if build.exists() and any(build.iterdir()):
        raise ValueError(
            f"{build}: exists and holds no store; remove that folder and run again"
        )
    build.mkdir(parents=True, exist_ok=True)
    create_db(db, info)
    with connect(db, read_only=False) as con:
        set_meta(con, {"next_id": next_id, "reencoded_from": origin})


def _ingest_all(
    sources: Sources, store: Store, encoder: MapEncoder, options: dict[str, Any]
) -> list[IngestSummary]:
    """One ingest of the maps, and one per group of models."""
    runs = []
    if sources.maps:
        runs.append(ingest_paths(sources.maps, store, encoder, **options))
    for (assembly, resolutions), paths in sources.models.items():
        runs.append(
            ingest_paths(
                paths,
                store,
                encoder,
                model_resolutions=resolutions,
                model_assembly=assembly,
                **options,
            )
        )
    return runs


def _match(old: list[dict], new: list[dict]) -> dict[int, int]:
    """``old id -> new id``: the same content (an unchanged file), else the same
    file (and, for a model, resolution) whose content changed."""

    def place(row: dict) -> tuple:
        res = row["resolution"] if row["simulated"] else None
        return (row["source_path"], res)

    by_sha = {r["sha256"]: int(r["id"]) for r in new}
    pairs: dict[int, int] = {}
    for r in old:
        if r["sha256"] in by_sha:
            pairs[int(r["id"])] = by_sha[r["sha256"]]
    taken = set(pairs.values())
    by_place = {place(r): int(r["id"]) for r in new if int(r["id"]) not in taken}
    for r in old:
        i = int(r["id"])
        if i not in pairs and r["source_path"] and place(r) in by_place:
            pairs[i] = by_place.pop(place(r))
    return pairs


def _carry(con: Any, old: pa.Table) -> dict[str, int]:
    """Fill the :data:`CARRIED` columns the sources left empty from ``old`` (rows
    of the old store, ids already those of the new one); returns per column how
    many entries kept their old value."""
    con.register("old_rows", old)
    counts, sets = {}, []
    for c in CARRIED:
        if c == "fitted_pdbs":
            empty, has = f"coalesce(len(e.{c}), 0) = 0", f"len(o.{c}) > 0"
        else:
            empty, has = f"e.{c} IS NULL", f"o.{c} IS NOT NULL"
        counts[c] = con.execute(
            f"SELECT count(*) FROM entries e JOIN old_rows o ON e.id = o.id "
            f"WHERE {empty} AND {has}"
        ).fetchone()[0]
        sets.append(f"{c} = CASE WHEN {empty} THEN o.{c} ELSE e.{c} END")
    con.execute(
        f"UPDATE entries e SET {', '.join(sets)} FROM old_rows o WHERE e.id = o.id"
    )
    con.unregister("old_rows")
    return {c: int(n) for c, n in counts.items() if n}


def _finish(build: Path, old: pa.Table, old_meta: dict) -> tuple[set[int], dict]:
    """Give re-derived entries their old ids and carried values, in one
    transaction, and a generation past the old store's (so that its readers see
    the swap as a change); the FAISS files are dropped, and rebuilt by the next
    open.

    Returns:
        The ids of the re-derived entries (the same in both stores), and the
        carried counts.
    """
    lock = WriterLock(build)
    lock.acquire()
    try:
        with connect(build / DB_NAME, read_only=False) as con:
            new = con.execute(
                f"SELECT {', '.join(_SOURCE_COLUMNS)} FROM entries"
            ).fetchall()
            new_rows = [dict(zip(_SOURCE_COLUMNS, r, strict=True)) for r in new]
            pairs = _match(old.select(list(_SOURCE_COLUMNS)).to_pylist(), new_rows)
            moves = [(n, o) for o, n in pairs.items() if n != o]
            held = {r["id"] for r in new_rows} - {n for n, _ in moves}
            if any(o in held for _, o in moves):  # cannot happen: ids start past
                raise RuntimeError(f"{build}: an old id is taken; remove the build")
            con.begin()
            try:
                if moves:
                    cur, tgt = zip(*moves, strict=True)
                    renumber_rows(con, np.array(cur), np.array(tgt))
                kept = pa.array(np.isin(old["id"].to_numpy(), list(pairs)))
                carried = _carry(con, old.filter(kept).select(["id", *CARRIED]))
                meta = read_meta(con)
                gen = max(int(meta["generation"]), int(old_meta["generation"]))
                next_id = max(int(meta["next_id"]), int(old_meta["next_id"]))
                bump(con, {**meta, "generation": gen}, next_id=next_id)
                con.commit()
            except BaseException:
                con.rollback()
                raise
        if moves:
            faiss_dir = build / "faiss"
            for index in [*faiss_dir.glob("scale_*"), *faiss_dir.glob("joint.*")]:
                index.unlink()  # the next open builds them from the database
    finally:
        lock.release()
    return set(pairs), carried


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders atomically (Linux ``renameat2(RENAME_EXCHANGE)``, which
    the standard library lacks); ``False`` where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    fn.argtypes += [ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _free_name(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3`` ... the first that does not exist."""
    n, out = 1, path
    while out.exists():
        n += 1
        out = path.with_name(f"{path.name}-{n}")
    return out


def _sync_dir(path: Path) -> None:
    """Make renames in the folder ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def swap_in(build: Path, target: Path, backup: Path | None) -> None:
    """Move the finished ``build`` to ``target``: by one rename when ``backup`` is
    ``None`` (``target`` must not exist, or be an empty folder), else in place of
    the store at ``target``, which becomes ``backup``."""
    if backup is None:
        os.rename(build, target)
    elif _exchange(build, target):
        os.rename(build, backup)  # the old store, now at the build's name
    else:
        os.rename(target, backup)
        try:
            os.rename(build, target)
        except BaseException:
            os.rename(backup, target)
            raise
    _sync_dir(target.parent)


def reencode_store(
    store: str | Path,
    encoder: MapEncoder,
    out: str | Path | None = None,
    delete_old: bool = False,
    layout: bool | None = None,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    batch_size: int = 16,
    max_model_atoms: int | None = None,
    progress: bool = True,
) -> ReencodeSummary:
    """Build the store of ``encoder`` from the sources of the store at ``store``
    (see the module docs).

    Args:
        store: the old store's folder.
        encoder: the new checkpoint.
        out: a new folder for the new store (``store`` is left as it is);
            ``None``: the new store takes the old one's place, the old one kept
            as a backup (its path in the summary).
        delete_old: delete that backup once the new store is in place, when every
            entry was re-encoded (else it is kept, and the summary says where).
        layout: compute the layout of the new store; ``None``: when the old store
            had one.
        engine: ``local`` or ``ray``, as in
            :func:`~swan_index.indexer.ingest_paths`.
        address: the Ray cluster's address (``engine="ray"``).
        workers, batch_size, max_model_atoms, progress: as in
            :func:`~swan_index.indexer.ingest_paths`.

    Returns:
        A :class:`ReencodeSummary`.

    Raises:
        FileNotFoundError: no store at ``store``.
        ValueError: the store already holds this checkpoint's codes, ``out``
            exists, a leftover build of something else, or a bad ``engine``.
        StoreBusyError: another process is writing to the store.
    """
    check_engine(engine)
    t0 = time.perf_counter()
    options = {
        "workers": workers,
        "batch_size": batch_size,
        "progress": progress,
        "max_model_atoms": max_model_atoms,
        "engine": engine,
        "address": address,
        # the old store holds generated maps only if they were allowed there
        "allow_generated": True,
    }
    source = Path(store).absolute()
    target = Path(out).absolute() if out is not None else source
    new_hash = encoder.info.hash
    with Store.open(source, read_only=True) as old_store:  # checks it is a store
        old_hash = old_store.encoder.hash
    if old_hash == new_hash:
        left = build_path(source, new_hash)
        raise ValueError(
            f"{source}: already holds codes of encoder {new_hash[:12]}; nothing to "
            "re-encode"
            + (
                f" ({left} is the store before re-encoding, left by an interrupted "
                "swap: keep it as a backup, or delete it)"
                if left.exists()
                else ""
            )
        )
    if out is not None and target.exists() and not _empty_dir(target):
        raise ValueError(
            f"{target}: exists; give --out a new folder (or leave --out out to "
            "replace the store in place)"
        )
    build = build_path(target, new_hash)
    summary = ReencodeSummary(str(source), str(target), None, old_hash, new_hash)
    lock = WriterLock(source)  # no ingest changes the old store meanwhile
    lock.acquire()
    try:
        old, old_meta, laid = _read_old(source)
        rows = old.select([*_SOURCE_COLUMNS, "sample_name"]).to_pylist()
        sources = plan_sources(rows)
        summary.entries = len(rows)
        _start_build(build, encoder.info, source, old_hash, old_meta["next_id"])
        with Store.open(build, encoder=encoder.info) as new_store:
            runs = _ingest_all(sources, new_store, encoder, options)
        kept, summary.carried = _finish(build, old, old_meta)
        with Store.open(build, encoder=encoder.info) as new_store:
            if layout or (layout is None and laid):
                from swan_index.layout import layout_store

                summary.layout = layout_store(new_store)
        summary.reencoded = len(kept)
        summary.ingest = {
            k: sum(getattr(r, k) for r in runs) for k in ("ok", "skipped", "failed")
        }
        summary.missing = _missing(rows, kept, sources, runs)
        if out is None:
            backup = _free_name(
                source.with_name(f"{source.name}.before-reencode-{old_hash[:12]}")
            )
            swap_in(build, source, backup)
            summary.backup = str(backup)
        else:
            swap_in(build, target, None)
    finally:
        lock.release()
    if summary.backup and delete_old and not summary.missing:
        shutil.rmtree(summary.backup)
        summary.backup = None
    summary.seconds = time.perf_counter() - t0
    return summary


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _missing(
    rows: list[dict], kept: set[int], sources: Sources, runs: list[IngestSummary]
) -> list[dict[str, Any]]:
    """The old entries not in the new store, each with its reason."""
    listed = {m["id"] for m in sources.missing}
    why = {f["path"]: f["reason"] for r in runs for f in r.failures}
    out = list(sources.missing)
    for row in rows:
        i = int(row["id"])
        if i in kept or i in listed:
            continue
        src = row["source_path"]
        reason = why.get(src) or "not encoded again (same content as another entry)"
        out.append({"id": i, "emdb_id": row["emdb_id"], "path": src, "reason": reason})
    return sorted(out, key=lambda m: m["id"])
