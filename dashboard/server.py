"""One process serving the HTTP API and the Dash dashboard (``swan serve``).

:func:`create_server` puts the dashboard (a Flask WSGI app) behind the API's
ASGI app: routes under ``/api`` go to the API, everything else to Dash, through
:class:`a2wsgi.WSGIMiddleware` (Dash callbacks run in its thread pool). The API's
body size limit and error handling cover both. :func:`serve` runs it with uvicorn.
"""

from __future__ import annotations

import logging
from typing import Any

from a2wsgi import WSGIMiddleware
from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Match, Mount
from starlette.types import Scope

from dashboard.api import API_PREFIX, create_api
from dashboard.service import SwanService

log = logging.getLogger(__name__)


class _DashboardMount(Mount):
    """A mount at ``/`` that never takes ``/api`` paths, so an unknown API route
    or method gets the API's JSON 404/405 rather than a dashboard page."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = scope.get("path", "")
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            return Match.NONE, {}
        return super().matches(scope)


def create_server(
    service: SwanService, dash_app: Any = None, **api_options: Any
) -> FastAPI:
    """The API over ``service`` and, when given, the dashboard at ``/``.

    Args:
        service: the store to serve.
        dash_app: a ``dash.Dash`` (e.g. from ``dashboard.app.create_app``); its
            Flask server is mounted last, so ``/api`` routes win.
        **api_options: passed to :func:`dashboard.api.create_api`
            (``upload_slots``, ``upload_wait``).

    Returns:
        The ASGI app to run.
    """
    app = create_api(service, **api_options)
    # the archive map of a large store is megabytes of JSON: ~7x smaller gzipped
    app.add_middleware(GZipMiddleware, minimum_size=1000, compresslevel=5)
    if dash_app is not None:
        wsgi = WSGIMiddleware(dash_app.server)
        app.router.routes.append(_DashboardMount("/", app=wsgi, name="dashboard"))
    return app


def serve(
    service: SwanService,
    host: str = "127.0.0.1",
    port: int = 8050,
    dash_app: Any = None,
    **api_options: Any,
) -> None:
    """Serve the API (and the dashboard) until interrupted.

    Args:
        service: the store to serve.
        host: interface to listen on (``0.0.0.0`` for every interface: put a
            TLS proxy in front when writes are enabled, the token is sent in clear).
        port: TCP port.
        dash_app: the dashboard, or ``None`` for the API alone.
        **api_options: passed to :func:`dashboard.api.create_api`.
    """
    import uvicorn

    app = create_server(service, dash_app, **api_options)
    shown = f"[{host}]" if ":" in host else host
    print(f"Cryo-SWAN search on http://{shown}:{port}/", flush=True)
    print(f"  API docs: http://{shown}:{port}{API_PREFIX}/docs", flush=True)
    if service.write_token is not None:
        log.warning("writes (ingest, delete) are enabled with a token")
    uvicorn.run(app, host=host, port=port, log_level="warning")
