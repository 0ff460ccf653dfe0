"""Domain errors and their one mapping to RFC 9457 problem details.

Services raise these; they never raise `HTTPException`. Each class carries its
HTTP status and a stable machine `code`, and the close code (`close_code`,
`close_reason`) the room socket sends when the same error refuses it. Every
body is `application/problem+json`.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.close_codes import Close

log = logging.getLogger("confide.errors")

PROBLEM_JSON = "application/problem+json"


class ConfideError(Exception):
    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"
    #: Commit the unit of work before answering (audit entries of a failed
    #: log-in, the revocation of a family whose spent token was replayed).
    persist: bool = False
    #: The room socket's close code when this error refuses it, and the close
    #: frame's reason: the problem `code` unless a class names another.
    close_code: ClassVar[Close] = Close.FORBIDDEN
    close_reason: ClassVar[str | None] = None

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra
        self.headers: dict[str, str] = {}


class NotFound(ConfideError):
    status, code, title = 404, "not_found", "Not found"


class Forbidden(ConfideError):
    status, code, title = 403, "forbidden", "Forbidden"


class Unauthorized(ConfideError):
    status, code, title = 401, "token_invalid", "Not authenticated"
    close_code = Close.TOKEN

    def __init__(self, detail: str | None = None, *, code: str | None = None) -> None:
        super().__init__(detail)
        if code is not None:
            self.code = code
        self.headers = {"WWW-Authenticate": "Bearer"}


class InvalidCredentials(ConfideError):
    status, code, title = 401, "invalid_credentials", "Invalid credentials"
    persist = True


class RefreshReused(ConfideError):
    status, code, title = 401, "refresh_reused", "Refresh token already used"
    persist = True


class Conflict(ConfideError):
    status, code, title = 409, "conflict", "Conflict"


class EmailTaken(Conflict):
    code, title = "email_taken", "Email already registered"


class ValidationFailed(ConfideError):
    status, code, title = 422, "validation_error", "Validation failed"


class WeakPassword(ValidationFailed):
    code, title = "weak_password", "Password too weak"


class RateLimited(ConfideError):
    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": str(max(1, retry_after))}


#: Seconds a client waits before trying again after a 503 `unavailable`.
RETRY_AFTER_S = 5


class ServiceUnavailable(ConfideError):
    """A dependency (the database, the broker) cannot be reached: try again later."""

    status, code, title = 503, "unavailable", "Service unavailable"
    close_code = Close.TRY_AGAIN

    def __init__(self, detail: str | None = None, *, retry_after: int = RETRY_AFTER_S) -> None:
        super().__init__(detail or "A service Confide depends on is unreachable; try again.")
        self.headers = {"Retry-After": str(max(1, retry_after))}


class HeadersTooLarge(ConfideError):
    status, code, title = 431, "headers_too_large", "Request header fields too large"


# SQLSTATE classes that say "the database is not there right now", not "this
# request is wrong": 08 connection exception, 53 insufficient resources (too
# many connections, disk full), 57 operator intervention (admin shutdown, the
# server starting up or shutting down, a cancelled statement).
_UNAVAILABLE_SQLSTATE = ("08", "53", "57")
# What SQLite says when its file cannot be used for a while (another writer,
# a full or failing disk), as opposed to a statement it cannot run.
_UNAVAILABLE_SQLITE = ("database is locked", "unable to open database file", "disk i/o error")


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` means a dependency is unreachable (a 503), not a bug (a 500).

    Connection failures reach the request as they were raised: an `OSError`
    (`ConnectionRefusedError`, a failed DNS look-up, `TimeoutError`) from the
    driver's connect, SQLAlchemy's pool `TimeoutError`, or a DBAPI error for
    a connection that died (`connection_invalidated`) or whose SQLSTATE says
    so. The explicit cause chain (`orig`, `__cause__`) is followed too.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError | sa_exc.TimeoutError | sa_exc.DisconnectionError):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate[:2] in _UNAVAILABLE_SQLSTATE:
            return True
        if isinstance(current, sqlite3.OperationalError) and str(current).lower().startswith(
            _UNAVAILABLE_SQLITE
        ):
            return True
        pending += [getattr(current, "orig", None), current.__cause__]
    return False


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
    out.setdefault(503, entry_for(ServiceUnavailable.code))
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
        *unavailable,
    )
    for kind in dependency_errors:
        app.add_exception_handler(kind, on_dependency_error)
    app.add_exception_handler(Exception, on_unexpected)
