"""Serve a store: the HTTP API (under /api) and the Dash dashboard, one process.

The API's OpenAPI schema is at /api/openapi.json and its docs at /api/docs.
Searching, entry details and encoding are open; writes (ingest an upload, delete
an entry) are off unless a token is given with --write-token-file (a file holding
the token, so it stays out of the process list); clients then send
"Authorization: Bearer TOKEN". The server reads the store while `swan ingest`
writes to it, and picks up new entries within seconds.

Searches (by upload, by entry id, and encode) beyond --max-searches in progress
are answered 503 at once with Retry-After, so that an overloaded server says so
instead of answering ever later.

examples:
  $ swan serve --store runs/sample.swan
  $ swan serve --store emdb.swan --host 0.0.0.0 --port 8080 --max-upload-mb 256
  $ swan serve --store emdb.swan --write-token-file /etc/swan/token
  $ swan serve --store emdb.swan --max-searches 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from swan_index.db import StoreBusyError
from swan_index.map_encoder import DEFAULT_CHECKPOINT


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register ``swan serve``'s arguments."""
    parser.add_argument("--store", required=True, help="store folder")
    add_server_args(parser)


def _searches(text: str) -> int:
    """``--max-searches``: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a whole number of searches, or 0 for no limit"
        )
    return value


def add_server_args(parser: argparse.ArgumentParser) -> None:
    """Options shared with ``swan demo``."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument(
        "--prior",
        default=None,
        help="latent prior for denoising and variations (default: the shipped "
        "data/prior.pt; it must be trained on --checkpoint)",
    )
    parser.add_argument(
        "--completion-prior",
        default=None,
        help="completion prior for completing uploads (default: the shipped "
        "data/completion.pt; trained on --checkpoint)",
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=512, help="largest upload (MB)"
    )
    parser.add_argument(
        "--max-map-mb",
        type=float,
        default=1024,
        help="largest map a request may make the server hold, as its header "
        "announces it (float32 MB; a small .gz can announce a huge map)",
    )
    parser.add_argument(
        "--write-token-file", default=None, help="enables ingest/delete over HTTP"
    )
    parser.add_argument(
        "--max-searches",
        type=_searches,
        default=None,  # the server's MAX_SEARCHES (not imported: --help stays quick)
        help="search requests in progress at once (running or waiting); more get "
        "503 with Retry-After; 0: no limit (default 4)",
    )


def run_server(store: str | Path, args: argparse.Namespace) -> int:
    """Open the store and serve it until interrupted; returns the exit code."""
    from dashboard.app import create_app
    from dashboard.server import serve
    from dashboard.service import SwanService

    token = None
    if args.write_token_file:
        try:
            token = Path(args.write_token_file).read_text().strip()
        except OSError as err:
            print(f"error: {args.write_token_file}: {err.strerror}", file=sys.stderr)
            return 2
        if len(token) < 16:
            print(
                f"error: {args.write_token_file}: the token is shorter than 16 "
                "characters; use a long random one (e.g. `openssl rand -hex 24`)",
                file=sys.stderr,
            )
            return 2
    try:
        service = SwanService(
            store,
            checkpoint=args.checkpoint,
            write_token=token,
            max_upload_bytes=int(args.max_upload_mb * 2**20),
            max_map_bytes=int(args.max_map_mb * 2**20),
            prior=args.prior,
        )
    except (FileNotFoundError, ValueError, StoreBusyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if getattr(args, "completion_prior", None):
        from dashboard.generative import prior_service

        prior_service(service).completion_path = Path(args.completion_prior)
    try:
        limit = {} if args.max_searches is None else {"max_searches": args.max_searches}
        serve(service, args.host, args.port, dash_app=create_app(service), **limit)
    finally:
        service.close()
    return 0


def main(args: argparse.Namespace) -> int:
    """Run ``swan serve``."""
    return run_server(args.store, args)
