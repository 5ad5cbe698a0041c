"""The API's errors: named exceptions as HTTP statuses with OpenAI's error body, and the
request-body limit (a pure ASGI middleware, so an oversized body is never read whole)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from chat.errors import (
    BadInput,
    ChatError,
    Forbidden,
    ModelUnavailable,
    NotEnoughData,
    NotFound,
    RateLimited,
)

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1 << 20  # a request body larger than this is refused before parsing


class Unauthorized(ChatError):
    """A missing or unknown API key."""


class PayloadTooLarge(BadInput):
    """The request body is larger than MAX_BODY_BYTES."""


# most specific first: the first matching class decides the status
ERROR_STATUS = [
    (Unauthorized, 401, "invalid_request_error"), (PayloadTooLarge, 413, "invalid_request_error"),
    (RateLimited, 429, "rate_limit_error"), (Forbidden, 403, "permission_error"),
    (NotFound, 404, "not_found_error"), (NotEnoughData, 409, "invalid_request_error"),
    (ModelUnavailable, 503, "server_error"), (ChatError, 400, "invalid_request_error"),
]


_KIND_BY_STATUS = {status: kind for _, status, kind in reversed(ERROR_STATUS)}


def error_response(status: int, message: str, kind: str, code: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def chat_error_response(exc: ChatError) -> JSONResponse:
    """A named exception as HTTP 4xx with OpenAI's error body."""
    for cls, status, kind in ERROR_STATUS:
        if isinstance(exc, cls):
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            if status == 429:
                headers = {"Retry-After": str(getattr(exc, "retry_after", 5))}
            code = "invalid_api_key" if status == 401 else None
            return error_response(status, str(exc), kind, code, headers)
    raise TypeError(exc)  # unreachable: ChatError is last


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())[1:]) or "body"
        parts.append(f"{where}: {err.get('msg')}")
    return "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """ChatError -> 4xx, validation -> 400, anything else -> 500, all as JSON error bodies."""

    async def _chat_error(request: Request, exc: ChatError):
        return chat_error_response(exc)

    async def _invalid(request: Request, exc: RequestValidationError):
        return error_response(400, _validation_message(exc), "invalid_request_error")

    async def _http_error(request: Request, exc: StarletteHTTPException):
        # FastAPI's own refusals (a body it cannot parse, e.g. JSON nested too deeply; an
        # unknown route) in the same error shape as everything else
        kind = _KIND_BY_STATUS.get(exc.status_code,
                                   "server_error" if exc.status_code >= 500
                                   else "invalid_request_error")
        message = exc.detail if isinstance(exc.detail, str) else "invalid request"
        return error_response(exc.status_code, message, kind, headers=exc.headers)

    async def _crash(request: Request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__}", "server_error")

    app.add_exception_handler(ChatError, _chat_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _crash)


def _too_large(size: str) -> JSONResponse:
    return chat_error_response(PayloadTooLarge(
        f"the request body is too large ({size}; the limit is {MAX_BODY_BYTES})"))


class BodyLimit:
    """Pure ASGI middleware: a /v1/ body past MAX_BODY_BYTES is answered 413, unparsed.

    A declared Content-Length is refused before anything is read; a chunked body (no length)
    is counted as it arrives and refused once past the limit, so no body is read whole.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            return await _too_large(f"{int(length)} bytes")(scope, receive, send)
        seen, refused, started = 0, False, False

        async def counting_receive():
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > MAX_BODY_BYTES:
                    refused = True
                    raise PayloadTooLarge("the request body is too large")
            return message

        async def guarded_send(message):
            nonlocal started
            if not refused:  # the app's answer to a body it could not read is replaced
                started = True
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:  # whatever the app made of a refused body, the answer is 413
                raise
        if refused and not started:
            await _too_large(f"more than {MAX_BODY_BYTES} bytes")(scope, receive, send)
