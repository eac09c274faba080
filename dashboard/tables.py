"""Entries tables for the dashboard: columns as arrays, rows for its DataTables.

A *table* is what :meth:`swan_index.store.Store.entries` returns: a mapping of
column name to array, rows aligned, missing values masked (``np.ma``) or ``None``.
A *row* is a JSON-ready dict, one per entry, keyed by column name; the DataTables
show the columns they list (:func:`table_columns`) and key rows by ``id``.

Every row shown to a user has a ``name`` (:func:`entry_name`: title, else label,
else file name) and an ``emdb`` cell (:func:`emdb_cell`: a link to the entry's
EMDB page, or what the entry is when it is not an EMDB map).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePath
from typing import Any

import numpy as np

#: An entry's EMDB page (``{}``: the digits of its id).
EMDB_PAGE = "https://www.ebi.ac.uk/emdb/EMD-{}"
_EMDB_ID = re.compile(r"(?i)emd[-_]?(\d{1,8})")


# -- columns ---------------------------------------------------------------------------
def missing(values: Any) -> np.ndarray:
    """Boolean mask of missing values (masked, None, NaN, NaT)."""
    mask = np.ma.getmaskarray(values).copy()
    data = np.ma.getdata(values)
    if data.dtype.kind == "f":
        mask |= np.isnan(data)
    elif data.dtype.kind == "M":
        mask |= np.isnat(data)
    elif data.dtype.kind == "O":
        mask |= np.array(
            [v is None or (isinstance(v, float) and math.isnan(v)) for v in data], bool
        )
    return mask


def column(table: Mapping[str, Any], name: str, n: int) -> np.ndarray:
    """A column as a (possibly masked) array; all-missing when absent."""
    if name not in table:
        return np.ma.masked_all(n, object)
    values = table[name]
    return values if isinstance(values, np.ndarray) else np.asarray(values, object)


# -- names and links -------------------------------------------------------------------
def emdb_url(emdb_id: Any) -> str | None:
    """The EMDB page of an entry.

    Args:
        emdb_id: an id such as ``"EMD-1832"`` (``emd_1832`` is read too).

    Returns:
        ``https://www.ebi.ac.uk/emdb/EMD-1832``, or None for anything else.
    """
    found = _EMDB_ID.fullmatch(str(emdb_id or "").strip())
    return EMDB_PAGE.format(found.group(1)) if found else None


def emdb_cell(row: Mapping[str, Any]) -> str:
    """The EMDB cell of a row, as DataTable markdown: a link to the entry's EMDB
    page; ``simulated`` for a map computed from a model; ``—`` otherwise. Only
    validated ids become links, so no stored text is read as markdown.

    Args:
        row: with ``emdb_id`` and ``simulated`` when known.

    Returns:
        The cell's markdown.
    """
    url = emdb_url(row.get("emdb_id"))
    if url is not None:
        return f"[{url.rsplit('/', 1)[-1]}]({url})"
    return "simulated" if row.get("simulated") else "—"


def entry_name(row: Mapping[str, Any]) -> str:
    """What to call an entry: its title, else its label, else its map's file
    name, else ``entry <id>``.

    Args:
        row: with ``id`` and any of ``title``, ``label``, ``source_path``.

    Returns:
        The name (never empty).
    """
    for key in ("title", "label"):
        text = str(row.get(key) or "").strip()
        if text:
            return text
    path = str(row.get("source_path") or "").strip()
    if path:
        return PurePath(path).name
    return f"entry {row.get('id')}"


def with_names(
    rows: list[dict[str, Any]], details: Mapping[int, Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Add ``name`` (:func:`entry_name`) and ``emdb`` (:func:`emdb_cell`) to
    every row, in place.

    Args:
        rows: rows with at least ``id`` (``title``, ``label``, ``emdb_id``,
            ``source_path``, ``simulated`` used when present).
        details: more columns by entry id (e.g. ``source_path`` and
            ``simulated``, which search hits do not carry).

    Returns:
        ``rows``.
    """
    for row in rows:
        known = {**(details or {}).get(int(row["id"]), {}), **row}
        row["name"] = entry_name(known)
        row["emdb"] = emdb_cell(known)
    return rows


# -- rows ------------------------------------------------------------------------------
def _num(value: Any, digits: int = 3) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else round(f, digits)


def hits_table_rows(
    hits: Iterable[Mapping[str, Any]],
    details: Mapping[int, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Rows for a hits table from search hits (``Hit.to_dict()`` dicts).

    Args:
        hits: the hits, best first.
        details: more columns by entry id for naming (see :func:`with_names`).

    Returns:
        One row per hit: ``rank``, ``id``, ``emdb_id``, ``score``, ``evalue``
        (its E-value, 2 significant digits, when known), ``shape`` (the shape
        score), ``scale_<side>`` (the cosine at each scale, coarse to fine),
        ``z_<side>`` (that cosine against the query's background, when known),
        ``fit`` (the best correlation over rotations, when the hit was
        re-scored), ``size`` (``ln(rg_query / rg_entry)``, when known),
        ``rg_ratio`` (``rg_query / rg_entry``), ``title``, ``method``,
        ``resolution``, then ``name`` and ``emdb`` (:func:`with_names`). Other
        numbers are rounded to 3 digits.
    """
    rows = []
    for h in hits:
        scores = dict(h.get("scores") or {})
        row: dict[str, Any] = {
            "rank": int(h["rank"]),
            "id": int(h["id"]),
            "emdb_id": h.get("emdb_id"),
            "score": _num(h.get("score")),
        }
        if h.get("evalue") is not None:
            row["evalue"] = float(f"{float(h['evalue']):.2g}")
        if h.get("shape") is not None:
            row["shape"] = _num(h["shape"])
        scale_z = dict(h.get("scale_z") or {})
        for key in sorted((k for k in scores if k.isdigit()), key=int):
            row[f"scale_{key}"] = _num(scores[key])
            if key in scale_z:
                row[f"z_{key}"] = _num(scale_z[key], 1)
        if "fit" in scores:
            row["fit"] = _num(scores["fit"])
        if "size" in scores:
            row["size"] = _num(scores["size"])
            row["rg_ratio"] = _num(math.exp(scores["size"]), 2)
        row["title"] = h.get("title")
        row["method"] = h.get("method")
        row["resolution"] = _num(h.get("resolution"), 2)
        known = {**(details or {}).get(row["id"], {}), **h}
        row["name"] = entry_name(known)
        row["emdb"] = emdb_cell(known)
        rows.append(row)
    return rows


def table_rows(
    table: Mapping[str, Any], columns: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Row dicts (JSON-ready: missing -> None, dates -> ISO text, floats rounded)
    from a columnar entries table."""
    columns = list(table) if columns is None else list(columns)
    n = len(table["id"]) if "id" in table else len(next(iter(table.values()), []))
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for c in columns:
        values = column(table, c, n)
        absent = missing(values)
        data = np.ma.getdata(values)
        if data.dtype.kind == "M":
            data = data.astype("datetime64[D]").astype(str)
        for r in range(n):
            v = None if absent[r] else data[r]
            if isinstance(v, np.generic):
                v = v.item()
            if isinstance(v, float):
                v = round(v, 3)
            elif isinstance(v, dt.date):
                v = v.isoformat()[:10]
            elif isinstance(v, (list, tuple, np.ndarray)):
                v = ", ".join(str(x) for x in v)
            out[r][c] = v
    return out


# -- columns of a DataTable ------------------------------------------------------------
_COLUMN_NAMES = {
    "rank": "#",
    "id": "store id",
    "name": "name",
    "emdb": "EMDB",
    "emdb_id": "EMDB",
    "score": "score",
    "evalue": "E-value",
    "shape": "shape",
    "rg_ratio": "Rg query/entry",
    "fit": "fit (all rotations)",
    "size": "size ln(Rg ratio)",
    "title": "title",
    "method": "method",
    "resolution": "resolution (Å)",
    "organism": "organism",
    "release_date": "released",
    "cluster": "cluster",
    "label": "label",
    "rg": "Rg (Å)",
}
_NUMERIC = ("score", "evalue", "shape", "fit", "size", "rg_ratio", "resolution", "rg")
#: What each column of a hits table means (its header's tooltip).
HIT_COLUMN_HELP = {
    "score": "score = (1 - w) x shape + w x fit - 0.05 x |ln(Rg query / Rg entry)|, "
    "w = 0.5 when the rotational fit re-scored the hit (else 0)",
    "evalue": "E-value: unrelated entries expected to score this high for this "
    "query in a store of this size; below 0.1 is significant",
    "shape": "mean cosine similarity of the retrieval vectors over the scales",
    "fit": "best correlation of the query with the entry over all rotations",
    "rg_ratio": "radius of gyration of the query over the entry's (1 = same size)",
    "z": "cosine at this scale against this query's cosines to unrelated maps, in "
    "robust standard deviations (0: typical of an unrelated map)",
}


def table_columns(
    rows: Sequence[Mapping[str, Any]], default: Sequence[str] = ()
) -> list[dict[str, str]]:
    """DataTable ``columns`` for ``rows`` (the keys of the first row, in order;
    ``default`` when there are no rows). ``emdb`` is markdown (its links)."""
    columns: list[dict[str, str]] = []
    for key in list(rows[0]) if rows else list(default):
        if key.startswith("scale_"):
            columns.append({"name": f"scale {key[6:]}³", "id": key, "type": "numeric"})
            continue
        if key.startswith("z_"):
            columns.append({"name": f"z {key[2:]}³", "id": key, "type": "numeric"})
            continue
        col = {"name": _COLUMN_NAMES.get(key, key), "id": key}
        if key in _NUMERIC:
            col["type"] = "numeric"
        if key == "emdb":
            col["presentation"] = "markdown"
        columns.append(col)
    return columns


def hit_tooltips(columns: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """DataTable ``tooltip_header`` of a hits table's ``columns``: what each
    column means (:data:`HIT_COLUMN_HELP`)."""
    out = {}
    for col in columns:
        key = str(col["id"])
        text = HIT_COLUMN_HELP.get("z" if key.startswith("z_") else key)
        if text:
            out[key] = text
    return out


def hits_caption(significance: Mapping[str, Any] | None) -> str:
    """One line under a hits table: the verdict (how many hits are significant,
    or "no significant match"), the score's formula and what the columns are.

    Args:
        significance: a search result's ``significance`` (``None``: not known).
    """
    if not significance:
        return ""
    return (
        f"{significance['message']}. {significance['formula']}. E: unrelated "
        f"entries expected to score this high among {significance['entries']}; "
        "z n³: the cosine at scale n against this query's unrelated maps (0 is "
        "typical)"
    )
