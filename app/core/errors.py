"""Domain errors and their one mapping to RFC 9457 problem details.

Services raise these; they never raise `HTTPException`. Each class carries its
HTTP status and a stable machine `code`; the socket maps the same errors to
close codes. Every body is `application/problem+json`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("confide.errors")

PROBLEM_JSON = "application/problem+json"


class ConfideError(Exception):
    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"
    #: Commit the unit of work before answering (audit entries of a failed
    #: log-in, the revocation of a family whose spent token was replayed).
    persist: bool = False

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


class PayloadTooLarge(ConfideError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class ServiceUnavailable(ConfideError):
    status, code, title = 503, "unavailable", "Service unavailable"


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


def install_error_handlers(app: FastAPI) -> None:
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

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "unhandled error on %s %s: %s",
            request.method,
            request.scope.get("route").path if request.scope.get("route") else "?",  # type: ignore[union-attr]
            type(exc).__name__,
        )
        return problem_response(500, "internal_error", "Internal error", "Internal error.")

    app.add_exception_handler(ConfideError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
