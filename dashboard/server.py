"""One process serving the HTTP API and the Dash dashboard (``swan serve``).

:func:`create_server` puts the dashboard (a Flask WSGI app) behind the API's
ASGI app: routes under ``/api`` go to the API, everything else to Dash, through
:class:`a2wsgi.WSGIMiddleware` (Dash callbacks run in its thread pool). The API's
body size limit and error handling cover both. :func:`serve` runs it with uvicorn.

**Overload.** A search costs seconds of every core, so a server sent searches
faster than it answers them would queue them without end, every answer later
than the last. :class:`SearchLimit` keeps at most ``max_searches`` search
requests (``POST /api/search``, ``POST /api/encode``, ``GET
/api/entries/{entry}/similar``) in the server at once, running or waiting their
turn; one more is answered ``503`` at once, before its body is read, with
``Retry-After`` (the recent mean time of a search, in whole seconds). Other
routes are never refused by it.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from a2wsgi import WSGIMiddleware
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from dashboard.api import API_PREFIX, create_api
from dashboard.service import SwanService

log = logging.getLogger(__name__)

#: Search requests held at once by default (running or waiting); 0: no limit.
#: Two fits run at once (``dashboard.service.FIT_SLOTS``), so 4 keeps them busy
#: with one more search each ready behind; measured against 0 and 8 by
#: ``benchmarks.bench_load`` (docs/api.md).
MAX_SEARCHES = 4
#: Longest ``Retry-After`` sent (seconds).
MAX_RETRY_AFTER = 60


class _DashboardMount(Mount):
    """A mount at ``/`` that never takes ``/api`` paths, so an unknown API route
    or method gets the API's JSON 404/405 rather than a dashboard page."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = scope.get("path", "")
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            return Match.NONE, {}
        return super().matches(scope)


class SearchLimit:
    """ASGI middleware: at most ``limit`` search requests in the server at once.

    A search request counts from its arrival to the end of its answer
    (running, or waiting for the store, a fit or an upload slot). One more gets a
    JSON ``503`` at once, its body unread, with ``Retry-After``: the mean time
    of the last searches, whole seconds, 1 to :data:`MAX_RETRY_AFTER`.
    Starlette and uvicorn offer no such limit per route (uvicorn's
    ``--limit-concurrency`` counts every connection, health checks included).

    Args:
        app: the ASGI app.
        limit: search requests held at once; 0 for no limit.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"max_searches={limit}: give 0 (no limit) or more")
        self.app = app
        self.limit = limit
        self.active = 0
        self.mean_seconds = 1.0  # a running mean of the last searches' times

    @staticmethod
    def is_search(scope: Scope) -> bool:
        """Whether a request is one the limit counts."""
        method, path = scope.get("method", ""), scope.get("path", "").rstrip("/")
        if method == "POST":
            return path in (f"{API_PREFIX}/search", f"{API_PREFIX}/encode")
        return (
            method == "GET"
            and path.startswith(f"{API_PREFIX}/entries/")
            and path.endswith("/similar")
        )

    def retry_after(self) -> int:
        """Seconds a refused client should wait: about one search's time."""
        return min(MAX_RETRY_AFTER, max(1, math.ceil(self.mean_seconds)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.limit or not self.is_search(scope):
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:  # one event loop: no await since the check
            wait = self.retry_after()
            log.info("refused a search: %d in progress", self.active)
            response = JSONResponse(
                {
                    "error": f"the server is busy with {self.active} searches "
                    f"(its limit); retry in {wait} s"
                },
                status_code=503,
                headers={"Retry-After": str(wait)},
            )
            await response(scope, receive, send)
            return
        self.active += 1
        started = time.monotonic()
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
            took = time.monotonic() - started
            self.mean_seconds += 0.2 * (took - self.mean_seconds)


def create_server(
    service: SwanService,
    dash_app: Any = None,
    max_searches: int = MAX_SEARCHES,
    **api_options: Any,
) -> FastAPI:
    """The API over ``service`` and, when given, the dashboard at ``/``.

    Args:
        service: the store to serve.
        dash_app: a ``dash.Dash`` (e.g. from ``dashboard.app.create_app``); its
            Flask server is mounted last, so ``/api`` routes win.
        max_searches: search requests held at once (:class:`SearchLimit`); 0
            for no limit.
        **api_options: passed to :func:`dashboard.api.create_api`
            (``upload_slots``, ``upload_wait``).

    Returns:
        The ASGI app to run.

    Raises:
        ValueError: a negative ``max_searches``.
    """
    app = create_api(service, **api_options)
    # the archive map of a large store is megabytes of JSON: ~7x smaller gzipped
    app.add_middleware(GZipMiddleware, minimum_size=1000, compresslevel=5)
    if max_searches < 0:
        raise ValueError(f"max_searches={max_searches}: give 0 (no limit) or more")
    app.add_middleware(SearchLimit, limit=max_searches)  # outermost: first to act
    if dash_app is not None:
        wsgi = WSGIMiddleware(dash_app.server)
        app.router.routes.append(_DashboardMount("/", app=wsgi, name="dashboard"))
    return app


def serve(
    service: SwanService,
    host: str = "127.0.0.1",
    port: int = 8050,
    dash_app: Any = None,
    max_searches: int = MAX_SEARCHES,
    **api_options: Any,
) -> None:
    """Serve the API (and the dashboard) until interrupted.

    Args:
        service: the store to serve.
        host: interface to listen on (``0.0.0.0`` for every interface: put a
            TLS proxy in front when writes are enabled, the token is sent in clear).
        port: TCP port.
        dash_app: the dashboard, or ``None`` for the API alone.
        max_searches: search requests held at once (:class:`SearchLimit`); 0
            for no limit.
        **api_options: passed to :func:`dashboard.api.create_api`.
    """
    import uvicorn

    app = create_server(service, dash_app, max_searches, **api_options)
    shown = f"[{host}]" if ":" in host else host
    print(f"Cryo-SWAN search on http://{shown}:{port}/", flush=True)
    print(f"  API docs: http://{shown}:{port}{API_PREFIX}/docs", flush=True)
    if service.write_token is not None:
        log.warning("writes (ingest, delete) are enabled with a token")
    uvicorn.run(app, host=host, port=port, log_level="warning")
