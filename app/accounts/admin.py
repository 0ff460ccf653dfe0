"""Admins manage accounts: list and look up, reset a password, disable, enable, change a role."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from app.accounts import lifecycle
from app.accounts.errors import LastAdmin, RoleChangeRefused
from app.accounts.schemas import AdminAccountOut, Email, ResetOut, SetRole
from app.auth.dependencies import AdminPrincipal, StepUpAdmin
from app.core import audit
from app.core.errors import Forbidden, NotFound, StepUpRequired, Unauthorized
from app.models import AccountStatus, Role
from app.web.deps import ContextDep, SessionDep
from app.web.errors import responses
from app.web.pagination import PageDep, paged

router = APIRouter(tags=["accounts"])

ACCOUNT = "/v1/admin/accounts/{account_id}"


@router.get(
    "/v1/admin/accounts",
    response_model=list[AdminAccountOut],
    responses=paged(responses(Unauthorized, Forbidden)),
    summary="Every account, filtered by exact email, role or status (admin)",
)
async def list_accounts(
    admin: AdminPrincipal,
    session: SessionDep,
    ctx: ContextDep,
    page: PageDep,
    email: Annotated[
        Email | None, Query(description="Exactly this email (found through its blind index).")
    ] = None,
    role: Annotated[Role | None, Query(description="Only accounts of this role.")] = None,
    account_status: Annotated[
        AccountStatus | None, Query(alias="status", description="Only accounts in this status.")
    ] = None,
) -> list[AdminAccountOut]:
    """Paginated (`limit`, `cursor`; the next page's cursor in `X-Next-Cursor`), in id order.
    An erased account shows as its tombstone: `email`, `display_name` and `created_at` null.
    Each account shown is recorded in its own access log.
    """
    found = await lifecycle.search(session, ctx, email=email, role=role, status=account_status)
    shown = page.take(found, lambda account: (account.id,), ("admin-accounts", admin.id))
    audit.record_reads(
        session,
        "account.admin_read",
        [account.id for account in shown],
        actor_id=admin.id,
        actor_role=admin.role,
    )
    return [await lifecycle.admin_view(session, ctx, account) for account in shown]


@router.get(
    ACCOUNT,
    response_model=AdminAccountOut,
    responses=responses(Unauthorized, Forbidden, NotFound),
    summary="One account (admin)",
)
async def get_account(
    account_id: str, admin: AdminPrincipal, session: SessionDep, ctx: ContextDep
) -> AdminAccountOut:
    """The account, as the list shows it; an unknown id is 404."""
    account = await lifecycle.find(session, account_id)
    audit.record(
        session,
        "account.admin_read",
        actor_id=admin.id,
        actor_role=admin.role,
        target=account.id,
    )
    return await lifecycle.admin_view(session, ctx, account)


@router.post(
    ACCOUNT + "/password-reset",
    status_code=status.HTTP_201_CREATED,
    response_model=ResetOut,
    responses=responses(StepUpRequired, Unauthorized, Forbidden, NotFound),
    summary="Start a password reset: a single-use token for 30 minutes (admin)",
)
async def start_reset(
    account_id: str, admin: StepUpAdmin, session: SessionDep, ctx: ContextDep
) -> ResetOut:
    """A reset token, shown this once, for the admin to pass on by a channel of the practice's
    choice; `POST /v1/auth/password-reset` spends it. A new reset voids the earlier tokens.
    """
    reset = await lifecycle.start_reset(session, ctx, admin, account_id)
    return ResetOut(reset_token=reset.token, expires_at=reset.expires_at)


@router.post(
    ACCOUNT + "/disable",
    response_model=AdminAccountOut,
    responses=responses(StepUpRequired, Unauthorized, Forbidden, NotFound, LastAdmin),
    summary="Disable an account: log-in refused, tokens dead, sockets closed with 4012 (admin)",
)
async def disable(
    account_id: str, admin: StepUpAdmin, session: SessionDep, ctx: ContextDep
) -> AdminAccountOut:
    """Every log-in of the account ends, its live room sockets close with 4012, and its right
    password answers 403 `account_disabled` until it is enabled. The last active admin cannot be
    disabled (409 `last_admin`). Disabling a disabled account changes nothing.
    """
    account = await lifecycle.disable(session, ctx, admin, account_id)
    return await lifecycle.admin_view(session, ctx, account)


@router.post(
    ACCOUNT + "/enable",
    response_model=AdminAccountOut,
    responses=responses(StepUpRequired, Unauthorized, Forbidden, NotFound),
    summary="Enable a disabled account (admin)",
)
async def enable(
    account_id: str, admin: StepUpAdmin, session: SessionDep, ctx: ContextDep
) -> AdminAccountOut:
    """Its password logs in again; the tokens it held before it was disabled stay dead."""
    account = await lifecycle.enable(session, ctx, admin, account_id)
    return await lifecycle.admin_view(session, ctx, account)


@router.put(
    ACCOUNT + "/role",
    response_model=AdminAccountOut,
    responses=responses(
        StepUpRequired, Unauthorized, Forbidden, NotFound, RoleChangeRefused, LastAdmin
    ),
    summary="Change a role between counselor and admin (admin)",
)
async def set_role(
    account_id: str, body: SetRole, admin: StepUpAdmin, session: SessionDep, ctx: ContextDep
) -> AdminAccountOut:
    """Every log-in of the account ends, so its next tokens carry the new role. A client's role is
    not changed (409 `role_change_refused`); the last active admin is not demoted (409
    `last_admin`).
    """
    account = await lifecycle.set_role(session, ctx, admin, account_id, Role(body.role))
    return await lifecycle.admin_view(session, ctx, account)
