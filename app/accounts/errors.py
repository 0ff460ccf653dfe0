"""The account lifecycle's refusals (each with its status and stable code)."""

from __future__ import annotations

from app.core.errors import ConfideError, Conflict


class LastAdmin(Conflict):
    code, title = "last_admin", "The last active admin"


class RoleChangeRefused(Conflict):
    code, title = "role_change_refused", "Role change refused"


class ResetTokenInvalid(ConfideError):
    """Unknown, used, voided by a newer reset, or expired: the same answer for each."""

    status, code, title = 400, "reset_token_invalid", "Reset token invalid"
