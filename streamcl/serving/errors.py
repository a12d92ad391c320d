"""One error shape for every HTTP error: ``{"error": {"reason", "field", "detail"}}``.

Our own errors (:class:`HTTPError`, domain errors through :data:`STATUS`), FastAPI's and
Starlette's (404, 405, request validation), a wrong content type (415) and unexpected
failures (500) all answer this body. Errors below the application (a malformed request
line or ``Content-Length: -1``, which uvicorn answers itself) get it from
:class:`streamcl.serving.httpserver.StreamclH11Protocol`. Expected client errors are logged
at INFO in one line; only 5xx carry a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from streamcl.errors import DecodeError, NotReadyError, QueueFullError, StreamclError

__all__ = [
    "STATUS",
    "ErrorBody",
    "HTTPError",
    "V2ErrorBody",
    "error_body",
    "error_response",
    "install_error_handlers",
    "is_json",
]

log = logging.getLogger("streamcl.http")

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Any]


class HTTPError(StreamclError):
    """An error answered with ``status`` and the common error body."""

    def __init__(
        self,
        status: int,
        reason: str,
        field: str,
        detail: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.reason, self.field, self.detail = status, reason, field, detail
        self.headers = headers


#: Domain error -> HTTP status.
STATUS: dict[type[Exception], int] = {
    DecodeError: 422,
    QueueFullError: 503,
    NotReadyError: 503,
}


class ErrorDetail(BaseModel):
    """What went wrong: a short machine-readable reason, the field (dotted path), a sentence."""

    reason: str
    field: str
    detail: str


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: ErrorDetail


class V2ErrorBody(ErrorDetail):
    """The error body under ``/v2``: the protocol's ``{"error": message}``, plus our fields.

    The Open Inference Protocol's clients require ``error`` to be a string.
    """

    error: str


#: Reason of a Starlette HTTPException by status.
_REASONS = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


def error_body(reason: str, field: str, detail: str, path: str = "") -> dict[str, Any]:
    """The common error body as a dict (:class:`V2ErrorBody` for a ``path`` under ``/v2``)."""
    if path.startswith("/v2"):
        where = f" at {field}" if field else ""
        message = f"{reason}{where}: {detail}"
        return {"error": message, "reason": reason, "field": field, "detail": detail}
    return {"error": {"reason": reason, "field": field, "detail": detail}}


def error_response(
    status: int,
    reason: str,
    field: str,
    detail: str,
    headers: dict[str, str] | None = None,
    path: str = "",
) -> JSONResponse:
    """A JSON response with the common error body (``path``: see :func:`error_body`)."""
    body = error_body(reason, field, detail, path)
    return JSONResponse(body, status_code=status, headers=headers)


def _logged(request: Request, status: int, reason: str, field: str, detail: str) -> None:
    where = f" at {field}" if field else ""
    log.info(
        "%s %s -> %d %s%s: %s", request.method, request.url.path, status, reason, where, detail
    )


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with the common body and log 4xx in one INFO line."""

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPError)
        _logged(request, exc.status, exc.reason, exc.field, exc.detail)
        return error_response(
            exc.status, exc.reason, exc.field, exc.detail, exc.headers, request.url.path
        )

    async def on_starlette(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        reason = _REASONS.get(status, f"http_{status}")
        field = {404: "path", 405: "method"}.get(status, "")
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        _logged(request, status, reason, field, detail)
        headers = dict(exc.headers or {}) or None
        return error_response(status, reason, field, detail, headers, request.url.path)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in err.get("loc", ())]
        field = ".".join(loc[1:] if loc and loc[0] in ("body", "path", "query") else loc)
        _logged(request, 422, "invalid", field, str(err.get("msg")))
        return error_response(422, "invalid", field, str(err.get("msg")), None, request.url.path)

    async def on_domain(request: Request, exc: Exception) -> JSONResponse:
        status = next(s for t, s in STATUS.items() if isinstance(exc, t))
        reason = getattr(exc, "reason", type(exc).__name__)
        field, detail = getattr(exc, "field", ""), getattr(exc, "detail", str(exc))
        _logged(request, status, reason, field, detail)
        return error_response(status, reason, field, detail, None, request.url.path)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this answer, so the server logs the traceback once.
        detail = "internal server error; see the service log"
        return error_response(500, "internal", "", detail, None, request.url.path)

    app.add_exception_handler(HTTPError, on_http_error)
    app.add_exception_handler(StarletteHTTPException, on_starlette)
    app.add_exception_handler(RequestValidationError, on_validation)
    for kind in STATUS:
        app.add_exception_handler(kind, on_domain)
    app.add_exception_handler(Exception, on_unexpected)
    app.add_middleware(JSONContentTypeMiddleware)


def is_json(content_type: str) -> bool:
    """``content_type`` is ``application/json`` or ``application/*+json`` (parameters aside)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class JSONContentTypeMiddleware:
    """Answer 415 to a request body declared as anything but JSON (every body here is JSON).

    A body without a ``Content-Type`` is taken as JSON (HTTP clients such as tritonclient
    send none); a body of the KServe binary tensor extension is refused.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = {k.lower(): v for k, v in scope["headers"]}
            length = headers.get(b"content-length", b"0").strip()
            has_body = (length.isdigit() and int(length) > 0) or b"transfer-encoding" in headers
            content_type = headers.get(b"content-type", b"").decode("latin-1")
            if b"inference-header-content-length" in headers:
                content_type = "binary tensors (Inference-Header-Content-Length)"
            if has_body and content_type and not is_json(content_type):
                detail = f"expected application/json, got {content_type!r}"
                log.info(
                    "%s %s -> 415 unsupported_media_type: %s",
                    scope["method"],
                    scope["path"],
                    detail,
                )
                response = error_response(
                    415, "unsupported_media_type", "content-type", detail, None, scope["path"]
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
