"""The store's tables in one DuckDB connection: creating, inserting, deleting.

Plain functions over an open connection, with no locking and no FAISS: the
:class:`~swan_index.store.Store` opens connections under its locking rules
(:mod:`swan_index.db`), wraps writes in transactions and keeps its indexes in
step. The tables themselves are described in :mod:`swan_index.schema`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from encoder.code import MultiScaleCode
from swan_index.db import StoreDamagedError
from swan_index.manifest import Loss
from swan_index.schema import (
    ADDED_COLUMNS,
    ARROW_TYPES,
    FORMAT_VERSION,
    EncoderInfo,
    EntryRecord,
    ddl,
    encode_preview,
    record_columns,
    sql_type,
)

Connection = duckdb.DuckDBPyConnection


def jsonable(value: Any) -> Any:
    """A database value as JSON can hold it (dates as ISO text, numpy scalars
    as Python numbers)."""
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def id_in(ids: list[int]) -> str:
    """``id IN (1, 2, 3)`` with the ids written out as integer literals (never
    user text): DuckDB answers that from the primary key's index, where
    ``list_contains(?, id)`` scans the whole table. An empty list matches
    nothing."""
    if not ids:
        return "FALSE"
    return f"id IN ({', '.join(str(int(i)) for i in ids)})"


def query_rows(con: Connection, sql: str, params: list | None = None) -> list[dict]:
    """Rows of a query as dicts of JSON-able values."""
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [
        {k: jsonable(v) for k, v in zip(names, row, strict=True)}
        for row in cur.fetchall()
    ]


def create_db(db: Path, encoder: EncoderInfo) -> None:
    """Create an empty store database at ``db`` (atomically: a crash leaves no
    half-made file)."""
    tmp = db.with_name(db.name + ".creating")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        for stmt in ddl(encoder.scales, encoder.dims):
            con.execute(stmt)
        meta = {
            "format_version": FORMAT_VERSION,
            "encoder": encoder.to_dict(),
            "next_id": 1,
            "generation": 0,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        con.executemany(
            "INSERT INTO store_meta VALUES (?, ?)",
            [(k, json.dumps(v)) for k, v in meta.items()],
        )
        con.close()
        os.replace(tmp, db)
    finally:
        con.close()
        tmp.unlink(missing_ok=True)


def read_meta(con: Connection) -> dict[str, Any]:
    """The ``store_meta`` table as a dict."""
    rows = con.execute("SELECT key, value FROM store_meta").fetchall()
    return {k: json.loads(v) for k, v in rows}


def read_generation(con: Connection) -> int:
    """The store's generation (bumped by every write)."""
    rows = con.execute(
        "SELECT value FROM store_meta WHERE key = 'generation'"
    ).fetchall()
    return int(json.loads(rows[0][0]))


def bump(con: Connection, meta: dict, **changes: Any) -> None:
    """Set ``store_meta`` keys and bump the generation."""
    changes["generation"] = int(meta["generation"]) + 1
    for key, value in changes.items():
        con.execute(
            "UPDATE store_meta SET value = ? WHERE key = ?", [json.dumps(value), key]
        )


def set_meta(con: Connection, values: dict[str, Any]) -> None:
    """Set (insert or replace) ``store_meta`` keys; the generation is not bumped."""
    con.executemany(
        "INSERT OR REPLACE INTO store_meta VALUES (?, ?)",
        [(key, json.dumps(value)) for key, value in values.items()],
    )


def accept_loss(con: Connection, loss: Loss) -> int:
    """Record an accepted loss (``store_meta``'s ``accepted_losses``) and move the
    next id and the generation past what was lost, so no id is handed out twice.

    Args:
        con: a writing connection, in a transaction.
        loss: what the database lacks.

    Returns:
        The next entry id from now on.
    """
    meta = read_meta(con)
    next_id = max(int(meta["next_id"]), loss.mark.next_id)
    generation = max(int(meta["generation"]), loss.mark.generation) + 1
    accepted = [*meta.get("accepted_losses", []), loss.record()]
    set_meta(
        con,
        {"next_id": next_id, "generation": generation, "accepted_losses": accepted},
    )
    return next_id


def entry_columns(con: Connection) -> set[str]:
    """The columns the store's ``entries`` table has."""
    return {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'entries'"
        ).fetchall()
    }


def add_columns(con: Connection) -> list[str]:
    """Add the :data:`~swan_index.schema.ADDED_COLUMNS` an older store's
    ``entries`` lacks (nullable: its rows read ``NULL``). Inserts go by column
    name, so the order of the columns does not matter.

    Returns:
        The columns added.
    """
    have = entry_columns(con)
    added = [c for c in ADDED_COLUMNS if c not in have]
    for column in added:
        con.execute(f"ALTER TABLE entries ADD COLUMN {column} {sql_type(column)}")
    return added


def stored_encoder(db: Path, meta: dict[str, Any]) -> EncoderInfo:
    """The encoder a store's ``store_meta`` records, after checking its format.

    Args:
        db: the database file (for messages).
        meta: its ``store_meta`` (:func:`read_meta`).

    Returns:
        The encoder whose codes the store holds.

    Raises:
        ValueError: another store format.
        StoreDamagedError: ``store_meta`` lacks the encoder.
    """
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{db.parent}: store format {meta.get('format_version')}, this version "
            f"reads {FORMAT_VERSION}; re-ingest into a new store"
        )
    try:
        return EncoderInfo.from_dict(meta["encoder"])
    except (KeyError, TypeError, ValueError) as err:
        raise StoreDamagedError(
            f"{db}: its store_meta lacks the encoder ({err!r}); restore the store "
            "folder from a backup (docs/operations.md)"
        ) from None


def insert_entries(
    con: Connection,
    ids: np.ndarray,
    records: list[EntryRecord],
    encoder_hash: str,
    now: dt.datetime,
) -> None:
    """``entries`` rows of a batch."""
    columns = {"id": pa.array(ids, pa.int64())}
    rows = [r.row() for r in records]
    for j, name in enumerate(record_columns()):
        columns[name] = pa.array([row[j] for row in rows], ARROW_TYPES[name])
    columns["encoder_hash"] = pa.array([encoder_hash] * len(ids))
    columns["ingested_at"] = pa.array([now] * len(ids), pa.timestamp("us"))
    con.register("batch_entries", pa.table(columns))
    con.execute("INSERT INTO entries BY NAME SELECT * FROM batch_entries")
    con.unregister("batch_entries")


def insert_codes(con: Connection, ids: np.ndarray, code: MultiScaleCode) -> None:
    """``codes`` rows of a batch: per scale the tokens and the vectors."""
    columns: dict[str, pa.Array] = {"id": pa.array(ids, pa.int64())}
    for i, (tok, vec) in enumerate(zip(code.tokens, code.vectors, strict=True)):
        tok = np.ascontiguousarray(tok, dtype="<i2")
        columns[f"tokens_{i}"] = pa.array([t.tobytes() for t in tok], pa.binary())
        flat = pa.array(np.ascontiguousarray(vec, np.float32).ravel(), pa.float32())
        columns[f"vector_{i}"] = pa.FixedSizeListArray.from_arrays(flat, vec.shape[1])
    con.register("batch_codes", pa.table(columns))
    con.execute("INSERT INTO codes SELECT * FROM batch_codes")
    con.unregister("batch_codes")


def insert_previews(
    con: Connection, ids: np.ndarray, previews: list[np.ndarray]
) -> None:
    """``previews`` rows: small canonical volumes ``[g, g, g]`` in [0, 1]."""
    grid = int(previews[0].shape[0])
    con.executemany(
        "INSERT INTO previews VALUES (?, ?, ?)",
        [(int(i), grid, encode_preview(p)) for i, p in zip(ids, previews, strict=True)],
    )


def insert_log(
    con: Connection,
    rows: list[dict[str, Any]],
    by_sha: dict[str, int],
    now: dt.datetime,
) -> None:
    """``ingest_log`` rows (``entry_id`` from ``by_sha`` when not given)."""
    con.executemany(
        "INSERT INTO ingest_log VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                r.get("run_id"),
                now,
                r.get("path"),
                r.get("sha256"),
                r["status"],
                r.get("reason"),
                r.get("entry_id", by_sha.get(r.get("sha256"))),
            )
            for r in rows
        ],
    )


def replace_layout(
    con: Connection, ids: np.ndarray, xy: np.ndarray, cluster: np.ndarray
) -> None:
    """Replace the ``layout`` table (rows of entries that exist only)."""
    table = pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "x": pa.array(xy[:, 0]),
            "y": pa.array(xy[:, 1]),
            "cluster": pa.array(cluster, pa.int32()),
        }
    )
    con.execute("DELETE FROM layout")
    con.register("new_layout", table)
    con.execute(
        "INSERT INTO layout SELECT n.* FROM new_layout n JOIN entries e ON e.id = n.id"
    )
    con.unregister("new_layout")


def delete_rows(con: Connection, ids: np.ndarray) -> int:
    """Delete entries and everything stored for them; returns how many existed."""
    con.register("del_ids", pa.table({"id": pa.array(ids, pa.int64())}))
    n = con.execute(
        "SELECT count(*) FROM entries WHERE id IN (SELECT id FROM del_ids)"
    ).fetchone()[0]
    for table in ("codes", "previews", "layout", "entries"):
        con.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM del_ids)")
    con.unregister("del_ids")
    return int(n)


def renumber_rows(con: Connection, current: np.ndarray, target: np.ndarray) -> None:
    """Give entries other ids (``current[i]`` becomes ``target[i]``) in every
    table that holds entry ids. The targets must be held by no other entry (the
    caller checks; the primary keys refuse a clash)."""
    moves = pa.table(
        {
            "cur": pa.array(np.asarray(current, np.int64)),
            "new": pa.array(np.asarray(target, np.int64)),
        }
    )
    con.register("id_moves", moves)
    for table in ("entries", "codes", "previews", "layout"):
        con.execute(
            f"UPDATE {table} SET id = m.new FROM id_moves m WHERE {table}.id = m.cur"
        )
    con.execute(
        "UPDATE ingest_log SET entry_id = m.new FROM id_moves m "
        "WHERE ingest_log.entry_id = m.cur"
    )
    con.unregister("id_moves")


def fetch_vectors(
    con: Connection, i: int, dim: int, ids: np.ndarray, chunk: int = 200_000
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(ids, vectors [n, dim])`` of scale ``i`` for the given ids, in chunks."""
    for start in range(0, len(ids), chunk):
        want = pa.table({"id": pa.array(ids[start : start + chunk], pa.int64())})
        con.register("want_ids", want)
        table = con.sql(
            f"SELECT c.id, c.vector_{i} AS v FROM codes c "
            "JOIN want_ids w ON c.id = w.id ORDER BY c.id"
        ).to_arrow_table()
        con.unregister("want_ids")
        got = table.column("id").to_numpy().astype(np.int64)
        vec = table.column("v").combine_chunks().values.to_numpy()
        yield got, vec.astype(np.float32, copy=False).reshape(len(got), dim)


def read_code(con: Connection, entry_id: int, encoder: EncoderInfo) -> MultiScaleCode:
    """The stored code of one entry (a batch of one).

    Raises:
        KeyError: no such entry.
    """
    cols = ", ".join(f"tokens_{i}, vector_{i}" for i in range(len(encoder.scales)))
    row = con.execute(
        f"SELECT {cols} FROM codes WHERE id = ?", [int(entry_id)]
    ).fetchone()
    if row is None:
        raise KeyError(entry_id)
    tokens, vectors = [], []
    for i, side in enumerate(encoder.scales):
        tok = np.frombuffer(row[2 * i], "<i2").astype(np.int16)
        tokens.append(tok.reshape(1, encoder.depths[i], side, side, side))
        vectors.append(np.asarray(row[2 * i + 1], np.float32)[None])
    return MultiScaleCode(encoder.scales, tuple(tokens), tuple(vectors), encoder.hash)
