"""Domain errors: what services raise, free of any web framework.

Services raise these; they never raise `HTTPException`. Each class carries its
HTTP status and a stable machine `code`, and the close code (`close_code`,
`close_reason`) the room socket sends when the same error refuses it.
`app.web.errors` maps them to RFC 9457 problem details, every body
`application/problem+json`.
"""

from __future__ import annotations

import sqlite3
from typing import Any, ClassVar

from sqlalchemy import exc as sa_exc

from app.core.close_codes import Close

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


class AccountDisabled(ConfideError):
    """The password was right, but an admin disabled the account."""

    status, code, title = 403, "account_disabled", "Account disabled"
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


class AuditUnavailable(ServiceUnavailable):
    """The audit entry of an action could not be written, so the action was not done.

    Fail-closed: the action's own changes are rolled back (decision note 0003).
    A 503 rather than a 500: nothing about the request was wrong, and a client
    may try again once the log can be written.
    """

    code, title = "audit_unavailable", "Audit log unavailable"

    def __init__(self) -> None:
        super().__init__(
            "The action could not be recorded in the audit log, so it was not done; try again."
        )


class HeadersTooLarge(ConfideError):
    status, code, title = 431, "headers_too_large", "Request header fields too large"


class RequestTimeout(ConfideError):
    """A request's head or body arrived too slowly (answered by the HTTP protocol)."""

    status, code, title = 408, "request_timeout", "Request timeout"


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


class MfaRequired(ConfideError):
    """The password was right; the account's second factor must follow (`POST /v1/auth/mfa`)."""

    status, code, title = 401, "mfa_required", "Second factor required"
    persist = True

    def __init__(self, *, mfa_token: str, expires_in: int, methods: list[str]) -> None:
        super().__init__(
            "Complete the log-in with a second factor.",
            mfa_token=mfa_token,
            expires_in=expires_in,
            methods=methods,
        )


class InvalidMfa(ConfideError):
    status, code, title = 401, "invalid_mfa", "Invalid second factor"
    persist = True


class MfaEnrolmentRequired(ConfideError):
    """A counselor or admin without a second factor, where MFA is required: enrol one first."""

    status, code, title = 403, "mfa_enrolment_required", "Second factor enrolment required"


class StepUpRequired(ConfideError):
    """The act needs a fresher authentication (RFC 9470): `POST /v1/auth/step-up`."""

    status, code, title = 401, "step_up_required", "Step-up authentication required"

    def __init__(self, max_age: int) -> None:
        super().__init__(
            "This act needs a recent authentication with your second factor.", max_age=max_age
        )
        self.headers = {
            "WWW-Authenticate": (
                'Bearer error="insufficient_user_authentication", '
                'error_description="A more recent authentication is required", '
                f"max_age={max_age}"
            )
        }
