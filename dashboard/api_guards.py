"""What guards the HTTP API: every error as ``{"error": "<one line>"}`` with no
server path in it (:func:`add_error_handlers`), and the request body limit
(:class:`BodySizeLimit`), enforced before a body is read."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashboard.api_models import ABS_PATH, API_PREFIX, MAX_MESSAGE
from dashboard.generative import PriorUnavailable
from dashboard.service import AmbiguousEntry, SwanService, UploadError
from swan_index.db import StoreBusyError

log = logging.getLogger(__name__)


# -- errors ------------------------------------------------------------------------
class ApiError(Exception):
    """An answer with this status, message and headers (raised inside endpoints)."""

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def _one_line(text: str, service: SwanService) -> str:
    """A message fit for a client: one line, no server paths, bounded length."""
    for folder in {str(service.store_path), str(service.store_path.resolve())}:
        text = text.replace(folder, "the store")
    text = ABS_PATH.sub(lambda m: m.group(1) or "(path)", text)
    text = " ".join(text.split())
    if text.startswith("--where "):  # the store speaks to the command line
        text = "where " + text[len("--where ") :]
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 3] + "..."
    return text or "error"


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        where, name = (
            (loc[0], ".".join(loc[1:])) if len(loc) > 1 else ("", "".join(loc))
        )
        label = f"{name} ({where})" if where else name or "request"
        parts.append(f"{label}: {err.get('msg', 'invalid')}")
    text = "; ".join(parts) or "invalid request"
    if "file (body)" in text:
        text += "; send the map as the multipart form field 'file'"
    return text


def add_error_handlers(app: FastAPI, service: SwanService) -> None:
    """Every error becomes ``{"error": "<one line>"}`` with its status."""

    def answer(
        status: int, message: str, headers: dict | None = None, scrub: bool = True
    ) -> JSONResponse:
        text = _one_line(message, service) if scrub else message
        return JSONResponse({"error": text}, status_code=status, headers=headers)

    def text(exc: BaseException) -> str:
        return str(exc.args[0]) if exc.args else type(exc).__name__

    handlers: dict[type[BaseException], Callable[[Request, Any], JSONResponse]] = {}

    def handles(kind: type[BaseException]):  # noqa: ANN202
        def register(fn: Callable[[Request, Any], JSONResponse]) -> Callable:
            handlers[kind] = fn
            return fn

        return register

    @handles(ApiError)
    def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return answer(exc.status, text(exc), exc.headers)

    @handles(UploadError)
    def upload_error(request: Request, exc: UploadError) -> JSONResponse:
        log.info("%s %s: %s", request.method, request.url.path, exc)
        return answer(exc.status, text(exc))

    @handles(AmbiguousEntry)
    def ambiguous(request: Request, exc: AmbiguousEntry) -> JSONResponse:
        return JSONResponse(
            {"error": _one_line(text(exc), service), "ids": exc.ids}, status_code=409
        )

    @handles(PriorUnavailable)
    def no_prior(request: Request, exc: PriorUnavailable) -> JSONResponse:
        return answer(503, text(exc))

    @handles(ValueError)
    def bad_value(request: Request, exc: ValueError) -> JSONResponse:
        return answer(400, text(exc))

    @handles(KeyError)
    def not_found(request: Request, exc: KeyError) -> JSONResponse:
        return answer(
            404,
            f"{text(exc)}; give a store id (e.g. 3) or an EMDB id (e.g. EMD-1832)",
        )

    @handles(PermissionError)
    def forbidden(request: Request, exc: PermissionError) -> JSONResponse:
        return answer(403, text(exc))

    @handles(StoreBusyError)
    def busy(request: Request, exc: StoreBusyError) -> JSONResponse:
        return answer(409, text(exc))

    @handles(RequestValidationError)
    def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return answer(422, _validation_message(exc))

    @handles(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        method, path = request.method, request.url.path
        if exc.status_code == 404:
            message = f"no route {path}; see {API_PREFIX}/docs"
        elif exc.status_code == 405:
            message = f"{method} is not allowed on {path}; see {API_PREFIX}/docs"
        elif exc.status_code == 400:
            message = (
                f"{str(exc.detail).rstrip('.')}; send a multipart/form-data body "
                "with the map as "
                "form field 'file'"
            )
        else:
            message = str(exc.detail)
        headers = getattr(exc, "headers", None)
        return answer(exc.status_code, message, headers, scrub=exc.status_code == 400)

    @handles(Exception)
    def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return answer(500, "internal error; the server log has the details")

    for kind, fn in handlers.items():
        app.add_exception_handler(kind, fn)


# -- body size limit ---------------------------------------------------------------
class _BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: refuse request bodies over a limit with a JSON 413.

    A ``Content-Length`` over the limit is refused before any of the body is read;
    a chunked body is counted as it arrives and refused as soon as it passes the
    limit (whatever the app answered to the cut body is replaced by the 413).

    Starlette (1.x) and FastAPI (0.16x) now ship a similar limit, but it answers
    in plain text and is newer than the versions this package supports; this one
    answers JSON and gives the dashboard (base64 uploads in JSON) its own limit.

    Args:
        app: the ASGI app.
        api_limit: bytes allowed for requests under ``/api``.
        other_limit: bytes allowed for other paths (the dashboard).
        upload_limit: the map size limit, named in the message.
    """

    def __init__(
        self, app: ASGIApp, api_limit: int, other_limit: int, upload_limit: int
    ) -> None:
        self.app = app
        self.api_limit = api_limit
        self.other_limit = other_limit
        self.upload_limit = upload_limit

    def _limit(self, path: str) -> int:
        under_api = path == API_PREFIX or path.startswith(API_PREFIX + "/")
        return self.api_limit if under_api else self.other_limit

    async def _refuse(self, send: Send, size: int | None, limit: int) -> None:
        what = "request body" if size is None else f"request body of {size:,} bytes"
        message = (
            f"{what} is over the {limit:,}-byte limit (maps up to "
            f"{self.upload_limit:,} bytes); send a smaller or gzipped map"
        )
        body = JSONResponse({"error": message}, status_code=413).body
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope.get("path", ""))
        length = _content_length(scope)
        if length is not None and length > limit:
            log.info("refused %s-byte body for %s", length, scope.get("path"))
            await self._refuse(send, length, limit)
            return
        received = 0
        too_large = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, too_large
            if too_large:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:  # the app's answer to a cut body: replaced by the 413
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            log.info("refused a body over %s bytes for %s", limit, scope.get("path"))
            await self._refuse(send, None, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
