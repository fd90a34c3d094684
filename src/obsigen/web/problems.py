"""RFC 9457 problem details: every error leaves as application/problem+json with a stable type."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from obsigen.ephemeral.interfaces import StoreUnavailable
from obsigen.errors import DatabaseUnavailable, MfaRequired, ObsigenError, TooManyAttempts
from obsigen.ratelimit.errors import RateLimited

PROBLEM_BASE = "https://obsigen.dev/problems/"
MEDIA_TYPE = "application/problem+json"
STORE_RETRY_AFTER_S = 5

log = logging.getLogger(__name__)


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


_HTTP_SLUGS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Permission denied"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("too-large", "Request too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    429: ("rate-limited", "Too many requests"),
}


async def _obsigen_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ObsigenError)
    headers: dict[str, str] | None = None
    if exc.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, MfaRequired):
        # RFC 9470 step-up: tell the client which authentication level the call needs.
        headers = {
            "WWW-Authenticate": 'Bearer error="insufficient_user_authentication", acr_values="mfa"'
        }
    elif isinstance(exc, RateLimited):
        headers = exc.headers()
    elif isinstance(exc, TooManyAttempts):
        headers = {"Retry-After": str(exc.retry_after_s)}
    elif isinstance(exc, StoreUnavailable | DatabaseUnavailable):
        # An outage of a shared store is usually brief; say when a retry is worth it.
        headers = {"Retry-After": str(STORE_RETRY_AFTER_S)}
    return problem(exc.status, exc.type_slug, exc.title, exc.detail, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(part) for part in err.get("loc", ())], "msg": str(err.get("msg", ""))}
        for err in exc.errors()
    ]
    return problem(422, "invalid-input", "Invalid input", "the request is not valid", errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    slug, title = _HTTP_SLUGS.get(exc.status_code, ("http-error", "HTTP error"))
    headers = dict(exc.headers) if exc.headers else None
    return problem(exc.status_code, slug, title, str(exc.detail), headers=headers)


async def _pool_exhausted(request: Request, exc: Exception) -> JSONResponse:
    # Every pooled connection stayed busy past pool_timeout: the database is too slow or
    # gone (connections held until their read timeout), not a bug of this request.
    log.warning("database pool exhausted on %s %s", request.method, request.url.path)
    return await _obsigen_error(
        request, DatabaseUnavailable("the database is overloaded; retry later")
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "internal", "Internal error", "an unexpected error occurred")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ObsigenError, _obsigen_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(PoolTimeout, _pool_exhausted)
    app.add_exception_handler(Exception, _unexpected)
