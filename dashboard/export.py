"""Search hits as files: CSV and JSON, for the dashboard's download buttons and
the API's ``format=csv``.

Two sources, one shape of row:

* :func:`table_export_rows`: the rows of a hits table as the dashboard shows
  them (:func:`dashboard.tables.hits_table_rows`), in the table's column order,
  the EMDB cell written out as ``emdb_id`` and ``emdb_url``;
* :func:`hit_export_rows`: search hits as the API answers them
  (``Hit.to_dict()``), flattened the same way (a column per scale).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dashboard.tables import emdb_url, hits_table_rows

#: Columns every export carries, after the table's own.
ID_COLUMNS = ("id", "emdb_id", "emdb_url")


def table_export_rows(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str]
) -> list[dict[str, Any]]:
    """Rows of a hits table ready for a file.

    Args:
        rows: the table's ``data``.
        columns: the table's column ids, in order.

    Returns:
        One dict per row: the table's columns (the ``emdb`` link cell left out:
        its id and URL are columns of their own), then :data:`ID_COLUMNS`.
    """
    keys = [c for c in columns if c != "emdb" and c not in ID_COLUMNS]
    out = []
    for row in rows:
        item = {k: row.get(k) for k in keys}
        item["id"] = row.get("id")
        item["emdb_id"] = row.get("emdb_id")
        item["emdb_url"] = emdb_url(row.get("emdb_id"))
        out.append(item)
    return out


def hit_export_rows(hits: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """API search hits (``Hit.to_dict()``) as flat rows: rank, name, score, a
    ``scale_<side>`` column per scale, fit, size, method, resolution, then
    :data:`ID_COLUMNS` (as the dashboard's export)."""
    rows = hits_table_rows(hits)
    if not rows:
        return []
    columns = [k for k in rows[0] if k not in ("emdb",)]
    return table_export_rows(rows, columns)


def rows_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV text (header line first) of rows sharing their keys; empty cells for
    missing values."""
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()


def rows_json(rows: Sequence[Mapping[str, Any]], query: Any = None) -> str:
    """JSON text: ``{"query": ..., "hits": rows}``."""
    return json.dumps({"query": query, "hits": list(rows)}, indent=1, default=str)
