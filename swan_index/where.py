"""The ``where`` sandbox: a user's SQL predicate over the entries, run safely.

A search or a listing may be restricted by a SQL predicate over the ``entries``
table (``"resolution < 4 AND method = 'singleParticle'"``). The predicate comes from
users (the command line, the HTTP API), so it is checked before it runs: it must
be one expression that reads only ``entries`` and ``layout`` (subqueries over
them are fine), calls no table function (``read_csv``, ``range``...) and no
function that reveals the server's setup. It then runs on a read-only connection
with file access disabled and is interrupted after :data:`WHERE_TIMEOUT` seconds.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import duckdb
import numpy as np

from swan_index.schema import record_columns

#: Tables a ``where`` predicate may read.
WHERE_TABLES = frozenset({"entries", "layout"})
#: Functions a ``where`` predicate may not call (they reveal the server's setup).
WHERE_FORBIDDEN = frozenset({"current_setting", "getenv", "duckdb_settings"})
#: Seconds a ``where`` predicate may run.
WHERE_TIMEOUT = 10.0


def predicate_sql(where: str) -> str:
    """The query that lists the ids of the entries matching ``where``."""
    return f"SELECT id FROM entries WHERE ({where}) ORDER BY id"


def check_predicate(where: str, sql: str) -> None:
    """Refuse anything but one expression over ``entries`` (and ``layout``).

    Args:
        where: the user's predicate (for messages).
        sql: the statement it is run in (:func:`predicate_sql`).

    Raises:
        ValueError: not one SELECT, a syntax error, another table, a table
            function or a forbidden function.
    """
    example = "e.g. \"resolution < 4 AND method = 'singleParticle'\""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ValueError(f"where {where!r}: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise ValueError(f"where {where!r}: give one predicate over entries, {example}")
    con = duckdb.connect(config={"enable_external_access": False})
    try:
        tree = json.loads(
            con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]
        )
    finally:
        con.close()
    if tree.get("error"):
        msg = tree.get("error_message", "syntax error")
        raise ValueError(f"where {where!r}: {msg}")
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        if kind == "BASE_TABLE" and str(node.get("table_name")).lower() not in (
            WHERE_TABLES
        ):
            raise ValueError(
                f"where {where!r}: only the entries and layout tables can be used"
            )
        if kind == "TABLE_FUNCTION":
            raise ValueError(f"where {where!r}: table functions are not allowed")
        if str(node.get("function_name", "")).lower() in WHERE_FORBIDDEN:
            raise ValueError(f"where {where!r}: {node['function_name']} is not allowed")
        stack.extend(node.values())


def matching_ids(con: duckdb.DuckDBPyConnection, where: str) -> np.ndarray:
    """Ids (ascending) of the entries matching ``where``, checked and run on
    ``con`` (a read-only connection of the store) under :data:`WHERE_TIMEOUT`.

    Raises:
        ValueError: a predicate :func:`check_predicate` refuses, one that fails
            (the message lists the columns), or one that runs too long.
    """
    sql = predicate_sql(where)
    check_predicate(where, sql)
    timer = threading.Timer(WHERE_TIMEOUT, con.interrupt)
    timer.start()
    try:
        return np.asarray(con.execute(sql).fetchnumpy()["id"], np.int64)
    except duckdb.InterruptException:
        raise ValueError(
            f"where {where!r}: took over {WHERE_TIMEOUT:.0f} s; simplify it"
        ) from None
    except duckdb.Error as exc:
        columns = ", ".join(["id", *record_columns(), "ingested_at"])
        raise ValueError(
            f"where {where!r}: {str(exc).splitlines()[0]} (columns: {columns})"
        ) from None
    finally:
        timer.cancel()
