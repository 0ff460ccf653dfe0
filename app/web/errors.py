"""The one mapping of errors to RFC 9457 problem details, and its OpenAPI entries.

Every error answer is `application/problem+json`: the domain errors of
`app.core.errors` with their own status and `code`, FastAPI's validation
errors, Starlette's HTTP errors, a dependency that cannot be reached (503
`unavailable`), and anything unexpected (500).
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import (
    PROBLEM_JSON,
    ConfideError,
    HeadersTooLarge,
    RequestTimeout,
    ServiceUnavailable,
    is_unavailable,
)

log = logging.getLogger("confide.errors")


class Problem(BaseModel):
    """RFC 9457 problem details, as every error body is shaped."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://confide.invalid/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def responses(*errors: type[ConfideError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the errors a route may answer with."""

    # `model` registers the Problem schema, but FastAPI attaches it to
    # application/json only: reference it under the media type actually sent.
    def entry_for(description: str) -> dict[str, Any]:
        problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
        return {"model": Problem, "description": description, "content": {PROBLEM_JSON: problem}}

    out: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        entry = out.setdefault(error.status, entry_for(""))
        entry["description"] = ", ".join(filter(None, [entry["description"], error.code]))
    out.setdefault(422, entry_for("validation_error"))
    # Any route that reaches the database may find it gone for a moment.
    unavailable = out.setdefault(503, entry_for(""))
    if ServiceUnavailable.code not in unavailable["description"].split(", "):
        unavailable["description"] = ", ".join(
            filter(None, [unavailable["description"], ServiceUnavailable.code])
        )
    return out


_STATUS_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("token_invalid", "Not authenticated"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    408: (RequestTimeout.code, RequestTimeout.title),
    431: (HeadersTooLarge.code, HeadersTooLarge.title),
    503: (ServiceUnavailable.code, ServiceUnavailable.title),
}


def _clean_validation_errors(errors: Any) -> list[dict[str, Any]]:
    # Never echo the input back: it may be a password.
    cleaned = []
    for error in errors:
        cleaned.append(
            {
                "loc": [str(part) for part in error.get("loc", ())],
                "msg": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
        )
    return cleaned


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", None) or "?")


def unavailable_response(exc: BaseException, where: str) -> JSONResponse:
    """503 `unavailable` with Retry-After, and one log line (no traceback, no values)."""
    log.warning(
        "a dependency is unavailable (%s on %s): 503",
        type(exc).__name__,
        where,
        extra={"status": 503, "error": type(exc).__name__},
    )
    error = ServiceUnavailable()
    return problem_response(error.status, error.code, error.title, error.detail, error.headers)


def install_error_handlers(app: FastAPI, unavailable: tuple[type[Exception], ...] = ()) -> None:
    """Map every error to a problem; `unavailable` adds exception types that always mean 503.

    A connection failure (see `is_unavailable`) is a 503 `unavailable` with
    `Retry-After` and one warning line. Anything else unexpected stays a 500
    whose traceback the server logs: that is a bug to fix.
    """

    async def on_domain_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ConfideError)
        return problem_response(
            exc.status, exc.code, exc.title, exc.detail, exc.headers or None, **exc.extra
        )

    async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(
            422,
            "validation_error",
            "Validation failed",
            "The request did not match the schema.",
            errors=_clean_validation_errors(exc.errors()),
        )

    async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code, title = _STATUS_CODES.get(exc.status_code, ("error", "Error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        return problem_response(
            exc.status_code, code, title, detail, dict(exc.headers) if exc.headers else None
        )

    async def on_dependency_error(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, unavailable) or is_unavailable(exc):
            return unavailable_response(exc, f"{request.method} {_route(request)}")
        # A bug: the catch-all below answers 500 and the server logs the traceback.
        raise exc

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "unhandled error on %s %s: %s", request.method, _route(request), type(exc).__name__
        )
        return problem_response(500, "internal_error", "Internal error", "Internal error.")

    app.add_exception_handler(ConfideError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    # Handled here (by the exception middleware) rather than by the catch-all,
    # after which Starlette re-raises and the server logs a traceback.
    dependency_errors: tuple[type[Exception], ...] = (
        OSError,
        sa_exc.DBAPIError,
        sa_exc.TimeoutError,
        sa_exc.DisconnectionError,
        # The driver's own errors reach the request unwrapped when connecting
        # fails: TooManyConnectionsError (SQLSTATE 53300) is a full database.
        asyncpg.PostgresError,
        *unavailable,
    )
    for kind in dependency_errors:
        app.add_exception_handler(kind, on_dependency_error)
    app.add_exception_handler(Exception, on_unexpected)
