"""Subcommands of the ``swan`` command line (see :mod:`swan_index.cli`)."""

from __future__ import annotations

import sys
from typing import Any


def open_reader(path: str) -> Any:
    """The store at ``path`` opened read-only, or ``None`` after printing why not
    (the caller exits with status 2)."""
    from swan_index.db import StoreBusyError
    from swan_index.store import Store

    try:
        return Store.open(path, read_only=True)
    except (FileNotFoundError, ValueError, StoreBusyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return None
