"""Subcommands of the ``swan`` command line (see :mod:`swan_index.cli`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def open_reader(path: str) -> Any:
    """The store at ``path`` opened read-only, or ``None`` after printing why not
    in one line (the caller exits with status 2).

    Args:
        path: the store folder (``--store``).

    Returns:
        The :class:`~swan_index.store.Store`, or ``None``.
    """
    from swan_index.db import StoreBusyError
    from swan_index.store import Store

    try:
        return Store.open(path, read_only=True)
    except (FileNotFoundError, ValueError, StoreBusyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return None


def load_encoder(checkpoint: str) -> Any:
    """The encoder of ``checkpoint``, to read stored entries' maps again.

    Args:
        checkpoint: the ``--checkpoint`` file.

    Returns:
        A :class:`~swan_index.map_encoder.MapEncoder`.

    Raises:
        ValueError: the file is not a readable Cryo-SWAN checkpoint (one line that
            names it; the caller exits with status 2).
    """
    from swan_index.map_encoder import MapEncoder

    return MapEncoder(checkpoint)


def add_query_args(parser: argparse.ArgumentParser) -> None:
    """The options of searching with stored entries (``swan search``, ``swan eval
    retrieval``): ``--stored-pose``, ``--fit-top``, ``--checkpoint``."""
    from swan_index.map_encoder import DEFAULT_CHECKPOINT
    from swan_index.ranking import FIT_TOP

    parser.add_argument(
        "--stored-pose",
        action="store_true",
        help="for a stored entry: search with its stored vectors (one pose) instead "
        "of reading its map again in every candidate pose",
    )
    parser.add_argument(
        "--fit-top",
        type=int,
        default=FIT_TOP,
        help="re-score this many best hits by a search over all rotations of the "
        "query against their stored previews (finds maps with missing parts or "
        "moved domains); 0: off (default %(default)s)",
    )
    parser.add_argument(
        "--checkpoint",
        default=str(DEFAULT_CHECKPOINT),
        help="encoder (must be the store's), to read stored entries' maps again",
    )


def add_run_args(parser: argparse.ArgumentParser, batch_size: int, lr: float) -> None:
    """The options of a training run (``swan train``, ``swan train-prior``):
    ``--steps``, ``--minutes``, ``--batch-size``, ``--lr``, ``--device``,
    ``--threads``, ``--seed``; :func:`run_settings` reads them back."""
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument(
        "--minutes", type=float, default=None, help="stop after this much wall time"
    )
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options of :func:`add_run_args`, as a training config's fields."""
    keys = ("steps", "minutes", "batch_size", "lr", "device", "threads", "seed")
    return {key: getattr(args, key) for key in keys}


def add_prior_args(parser: argparse.ArgumentParser, prior: Any = None) -> None:
    """The options of the commands that use the prior (``swan denoise``, ``swan
    generate``, ``swan complete``): ``--contour``, ``--seed``, ``--prior``
    (default ``prior``, else the shipped prior), ``--checkpoint``."""
    from swan_index.generate import DEFAULT_PRIOR
    from swan_index.map_encoder import DEFAULT_CHECKPOINT

    parser.add_argument("--contour", type=float, default=None, help="MAP's contour")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--prior", default=str(prior or DEFAULT_PRIOR), help="prior file"
    )
    parser.add_argument(
        "--checkpoint",
        default=str(DEFAULT_CHECKPOINT),
        help="encoder (the one the prior was trained on)",
    )
