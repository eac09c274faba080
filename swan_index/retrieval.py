"""Retrieval quality against ground-truth labels.

A query is answered by a ranked list of gallery items; an item is *relevant* when it
carries the query's group label (the same molecule, or the same family). Per query:

* **precision@1**: the top hit is relevant (1 or 0);
* **reciprocal rank**: 1 / rank of the first relevant hit (0 when none is listed);
* **average precision**: the mean, over all relevant items, of the precision at the
  rank where each one appears (one missing from the list adds 0), so
  ``n_relevant`` counts what should have been found, not what was listed;
* **recall@10**: the fraction of the relevant items in the top 10.

Their means over queries are P@1, MRR, mAP and R@10. :func:`evaluate_store` runs
this on a store with a truth table: every labelled entry that has another entry of
its group in the store queries the store as ``swan search ID`` would, and its own
entry is taken out of its list.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from swan_index.map_encoder import MapEncoder
from swan_index.query import Query, search
from swan_index.ranking import SearchOptions
from swan_index.store import Store

#: The per-query measures, in the order tables show them.
METRICS = ("p_at_1", "mrr", "map", "recall_at_10")


def rank_metrics(
    ranked: Sequence[Any], label: Any, n_relevant: int, cutoff: int = 10
) -> dict[str, float]:
    """The measures of one ranked list.

    Args:
        ranked: the group label of each listed item, best first (the query itself
            left out).
        label: the query's group.
        n_relevant: how many gallery items carry ``label`` (at least 1).
        cutoff: the rank for recall (10).

    Returns:
        ``{"p_at_1", "mrr", "map", "recall_at_10"}``.

    Raises:
        ValueError: ``n_relevant`` < 1, or fewer than the relevant items listed.
    """
    if n_relevant < 1:
        raise ValueError("n_relevant must be at least 1: a query needs a right answer")
    hits = np.fromiter((r == label for r in ranked), dtype=bool, count=len(ranked))
    found = np.flatnonzero(hits)
    if len(found) > n_relevant:
        raise ValueError(
            f"{len(found)} relevant items listed but n_relevant={n_relevant}"
        )
    precision_at = np.arange(1, len(found) + 1) / (found + 1)
    return {
        "p_at_1": float(hits[0]) if len(hits) else 0.0,
        "mrr": float(1.0 / (found[0] + 1)) if len(found) else 0.0,
        "map": float(precision_at.sum() / n_relevant),
        "recall_at_10": float(hits[:cutoff].sum() / n_relevant),
    }


def summarize(rows: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Means of :data:`METRICS` over per-query rows, plus ``n`` (queries)."""
    rows = list(rows)
    out: dict[str, float] = {"n": len(rows)}
    for key in METRICS:
        out[key] = round(float(np.mean([r[key] for r in rows])), 4) if rows else 0.0
    return out


@dataclass(frozen=True)
class Truth:
    """A truth table resolved against a store: entry id -> group label."""

    groups: dict[int, str]
    unknown: tuple[str, ...]


def read_truth(path: str | Path, find: Any) -> Truth:
    """Read a truth CSV (header ``entry,group``; ``entry`` is a store id or an
    EMDB id) and resolve its entries with ``find`` (:meth:`Store.find`).

    Rows whose entry the store does not hold are listed in ``unknown``.

    Raises:
        ValueError: the file is missing, not CSV, lacks the columns, names an
            entry twice with different groups, or has no known entry.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such truth file; give a CSV with entry,group")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(
            f"{path}: not a readable CSV ({err}); write it as UTF-8 text, "
            "header entry,group"
        ) from err
    columns = set(rows[0]) if rows else set()
    if not {"entry", "group"} <= columns:
        raise ValueError(
            f"{path}: needs the columns entry,group (found {sorted(columns)}); "
            "entry is a store id or an EMDB id"
        )
    groups: dict[int, str] = {}
    unknown = []
    for line, row in enumerate(rows, start=2):
        key, group = (row["entry"] or "").strip(), (row["group"] or "").strip()
        if not key or not group:
            raise ValueError(f"{path}:{line}: empty entry or group; fill both in")
        try:
            entry_id = int(find(key))
        except KeyError:
            unknown.append(key)
            continue
        if groups.get(entry_id, group) != group:
            raise ValueError(
                f"{path}:{line}: entry {key} is listed in two groups "
                f"({groups[entry_id]!r}, {group!r}); give it one"
            )
        groups[entry_id] = group
    if not groups:
        raise ValueError(
            f"{path}: none of its {len(rows)} entries is in the store; "
            "check the ids (store ids or EMDB ids such as EMD-1832)"
        )
    return Truth(groups, tuple(unknown))


def evaluate_store(
    store: Store,
    truth: Truth,
    encoder: MapEncoder | None = None,
    k: int = 100,
    options: SearchOptions | None = None,
) -> dict[str, Any]:
    """Leave-one-out retrieval over the labelled entries of a store.

    Each labelled entry with at least one other entry of its group in ``truth``
    queries the store exactly as ``swan search ID`` does
    (:meth:`Query.from_entry <swan_index.query.Query.from_entry>`: its map read
    again in every candidate pose when its file is unchanged, else its stored
    vectors; then the rotational fit against its stored preview); its own entry
    is removed from the hits; entries without a label count as wrong answers
    (distractors).

    Args:
        store: an open :class:`~swan_index.store.Store`.
        truth: from :func:`read_truth`.
        encoder: the store's encoder, to read entries' maps again (``None``:
            every query is its entry's stored vectors, ``swan search
            --stored-pose``).
        k: hits fetched per query (recall and AP count what is not listed as
            missed).
        options: how to search (default: ``SearchOptions(exact=True)``, every
            entry scored, with the rotational fit).

    Returns:
        ``{"summary", "by_group", "queries", "skipped", "sources"}``; ``queries``
        holds one row per query (id, group, the measures, the top hit, the query
        source, seconds); ``sources`` counts the queries by source (``"map"``:
        read again, ``"stored"``: stored vectors).
    """
    opts = SearchOptions(exact=True) if options is None else options
    sizes = Counter(truth.groups.values())
    rows, skipped = [], []
    for entry_id, group in sorted(truth.groups.items()):
        if sizes[group] < 2:
            skipped.append(entry_id)
            continue
        t0 = time.perf_counter()
        query = Query.from_entry(store, encoder, entry_id)
        hits = search(store, query, k=k + 1, options=opts, significance=False)
        seconds = time.perf_counter() - t0
        hits = [h for h in hits if h.id != entry_id][:k]
        ranked = [truth.groups.get(h.id) for h in hits]
        rows.append(
            {
                "id": entry_id,
                "group": group,
                **rank_metrics(ranked, group, sizes[group] - 1),
                "top": hits[0].id if hits else -1,
                "source": query.source,
                "seconds": round(seconds, 4),
            }
        )
    by_group = {
        g: summarize(r for r in rows if r["group"] == g)
        for g in sorted({r["group"] for r in rows})
    }
    return {
        "summary": summarize(rows),
        "by_group": by_group,
        "queries": rows,
        "skipped": skipped,
        "sources": dict(Counter(r["source"] for r in rows)),
    }


__all__ = [
    "METRICS",
    "Truth",
    "evaluate_store",
    "rank_metrics",
    "read_truth",
    "summarize",
]
