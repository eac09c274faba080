"""The filters' logic, for the archive map's section (:mod:`dashboard.pages.explore`):
the choices the store offers, one SQL predicate from the SQL box and the quick
filters, what a change of them says, the resolution slider's marks, and the check
of "hits per search"."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from dash import html, no_update

from dashboard.pages.common import checked_k, filter_error, message
from dashboard.service import SwanService

#: The ``keep-unresolved`` checklist's one value.
KEEP_UNRESOLVED = "keep"
EXAMPLE_WHERE = "resolution < 4 AND method = 'singleParticle'"


def _sql_text(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def filter_options(service: SwanService) -> dict[str, Any]:
    """Choices for the quick filters, from the store: ``methods`` (sorted) and
    ``resolution`` bounds ``[lo, hi]`` (Å, to 0.1; ``None`` when no entry has
    one)."""
    table = service.table(("id", "method", "resolution"))
    methods = np.ma.compressed(np.ma.asarray(table["method"]))
    res = np.ma.compressed(np.ma.asarray(table["resolution"], np.float64))
    res = res[np.isfinite(res)]
    bounds = None
    if len(res):
        lo, hi = math.floor(res.min() * 10) / 10, math.ceil(res.max() * 10) / 10
        bounds = [round(lo, 1), round(hi if hi > lo else lo + 0.1, 1)]
    return {
        "methods": sorted({str(m) for m in methods if m is not None}),
        "resolution": bounds,
    }


def build_where(
    where_text: str | None,
    res_range: list[float] | None = None,
    methods: list[str] | None = None,
    res_bounds: list[float] | None = None,
    keep_unresolved: bool = False,
) -> str | None:
    """One SQL predicate from the free ``where`` and the quick filters (joined
    with AND), or ``None`` for no filter.

    The resolution range filters only when narrower than ``res_bounds`` (the
    store's full range), so entries with no resolution are not dropped by an
    untouched slider; with ``keep_unresolved`` a narrowed range keeps them too.
    """
    parts = []
    text = (where_text or "").strip().rstrip(";").strip()
    if text:
        parts.append(f"({text})")
    if res_range and len(res_range) == 2 and res_bounds:
        lo, hi = float(res_range[0]), float(res_range[1])
        if lo > res_bounds[0] + 1e-9 or hi < res_bounds[1] - 1e-9:
            between = f"resolution BETWEEN {lo:g} AND {hi:g}"
            parts.append(
                f"({between} OR resolution IS NULL)" if keep_unresolved else between
            )
    if methods:
        parts.append(f"method IN ({', '.join(_sql_text(m) for m in methods)})")
    return " AND ".join(parts) or None


def on_filter(
    service: SwanService,
    where_text: str | None,
    res_range: list[float] | None = None,
    methods: list[str] | None = None,
    res_bounds: list[float] | None = None,
    current: str | None = None,
    keep: list[str] | None = None,
) -> tuple[Any, html.Div, Any]:
    """Filters changed: ``(where for where-store, message, filter-state)``.

    Args:
        service: the store.
        where_text: the SQL box.
        res_range: the resolution slider.
        methods: the methods chosen.
        res_bounds: the slider's full range (:func:`filter_options`).
        current: the filter in effect (``where-store``).
        keep: the ``keep-unresolved`` checklist (``["keep"]``: a narrowed
            resolution range keeps the entries with no resolution).

    Returns:
        The new filter, a message with its count (saying how many entries with
        no resolution a narrowed resolution range hides, or keeps), and the
        inputs that made it (``filter-state``, for the page's address). An
        invalid ``where`` leaves the filter in effect unchanged (``no_update``
        for both); the message says what is wrong and which filter still
        applies.
    """
    keep_unresolved = bool(keep) and KEEP_UNRESOLVED in keep
    where = build_where(where_text, res_range, methods, res_bounds, keep_unresolved)
    state = {
        "where": (where_text or "").strip() or None,
        "res": list(res_range) if res_range else None,
        "bounds": res_bounds,
        "keep": keep_unresolved,
        "methods": list(methods or []),
    }
    if where is None:
        return None, message(f"no filter: all {entries_text(service.count())}"), state
    try:
        n = service.count(where)
    except ValueError as exc:
        still = (
            f"The map and searches still use the previous filter: {current}"
            if current
            else "The map and searches still show every entry (no filter)."
        )
        text = f"{filter_error(exc)}. Example: {EXAMPLE_WHERE}. {still}"
        return no_update, message(text, error=True), no_update
    text = f"{entries_text(n)} {'matches' if n == 1 else 'match'}: {where}"
    base = build_where(where_text, None, methods, None)
    if base != build_where(where_text, res_range, methods, res_bounds):
        # the resolution range filters: say what it does with unknown resolutions
        unknown = service.count(
            "resolution IS NULL" if base is None else f"{base} AND resolution IS NULL"
        )
        if unknown:
            verb = "is" if unknown == 1 else "are"
            if keep_unresolved:
                text += f". {entries_text(unknown)} with no resolution {verb} kept"
            else:
                text += (
                    f". {entries_text(unknown)} with no resolution {verb} hidden by "
                    "the resolution range: tick “keep entries with no "
                    "resolution” to include them"
                )
    return where, message(text), state


def entries_text(n: int) -> str:
    """``"1 entry"``, ``"2 entries"``."""
    return "1 entry" if n == 1 else f"{n:,} entries"


def resolution_marks(bounds: list[float] | None, most: int = 6) -> dict[float, str]:
    """Labelled marks for the resolution slider.

    Args:
        bounds: the slider's range ``[lo, hi]`` (Å), or None.
        most: the most marks.

    Returns:
        ``{value: label}``: both ends (the top one with its unit) and round
        values between them; empty without bounds.
    """
    if not bounds:
        return {}
    lo, hi = float(bounds[0]), float(bounds[1])
    steps = [s for s in (0.5, 1, 2, 5, 10, 20, 50) if (hi - lo) / s <= most - 1]
    step = steps[0] if steps else (hi - lo) / (most - 1)
    marks = {lo: f"{lo:g}", hi: f"{hi:g} Å"}
    value = math.ceil(lo / step) * step
    while value < hi - 0.4 * step:
        if value > lo + 0.4 * step:
            marks[round(value, 1)] = f"{value:g}"
        value += step
    return dict(sorted(marks.items()))


def on_k(value: Any) -> tuple[Any, html.Div | None]:
    """The hits-per-search box changed.

    Args:
        value: what the box holds (a number, or None when empty).

    Returns:
        ``(value to show, message)``: a value out of range, empty or fractional
        is replaced by the one searches will use, and the message says so; a
        good value is left alone (``no_update``) with no message.
    """
    k, note = checked_k(value)
    if note is None:
        return no_update, None
    return k, message(note, error=True)
