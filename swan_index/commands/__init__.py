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


def load_encoder(checkpoint: str) -> Any:
    """The encoder of ``checkpoint`` to read stored entries' maps again, or
    ``None`` after a note on stderr (the caller searches with stored vectors)."""
    from swan_index.map_encoder import MapEncoder

    try:
        return MapEncoder(checkpoint)
    except (OSError, ValueError) as err:
        print(f"note: {err}; searching with the stored pose", file=sys.stderr)
        return None
