from __future__ import annotations

from fastapi import APIRouter, status

from app.accounts import jurisdiction, service
from app.accounts.schemas import (
    AccountOut,
    CreateAccount,
    JurisdictionOut,
    RegisterClient,
    SetJurisdiction,
)
from app.auth.dependencies import AdminPrincipal, CurrentPrincipal
from app.core import audit
from app.core.errors import EmailTaken, Forbidden, Unauthorized, WeakPassword
from app.models import Role
from app.web.deps import ContextDep, SessionDep
from app.web.errors import responses

router = APIRouter(tags=["accounts"])


@router.post(
    "/v1/accounts",
    status_code=status.HTTP_201_CREATED,
    response_model=AccountOut,
    responses=responses(EmailTaken, WeakPassword),
    summary="Register a client account",
)
async def register(body: RegisterClient, session: SessionDep, ctx: ContextDep) -> AccountOut:
    """Self-registration of a client. The password is 12 to 256 characters and not a common one; a
    taken email is 409 `email_taken`. Answers the account as `GET /v1/me` does.
    """
    account = await service.create_account(
        session,
        ctx.vault,
        ctx.clock,
        ctx.passwords,
        email=body.email,
        password=body.password,
        display_name=body.display_name,
        role=Role.client,
    )
    return await service.view(session, ctx.vault, account)


@router.post(
    "/v1/admin/accounts",
    status_code=status.HTTP_201_CREATED,
    response_model=AccountOut,
    responses=responses(Unauthorized, Forbidden, EmailTaken, WeakPassword),
    summary="Create an account of any role (admin)",
)
async def create(
    body: CreateAccount, admin: AdminPrincipal, session: SessionDep, ctx: ContextDep
) -> AccountOut:
    """An admin creates an account of any role (counselors and admins are created this way)."""
    account = await service.create_account(
        session,
        ctx.vault,
        ctx.clock,
        ctx.passwords,
        email=body.email,
        password=body.password,
        display_name=body.display_name,
        role=body.role,
        actor_id=admin.id,
        actor_role=admin.role,
    )
    return await service.view(session, ctx.vault, account)


@router.get(
    "/v1/me",
    response_model=AccountOut,
    responses=responses(Unauthorized),
    summary="The caller's own account",
)
async def me(principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep) -> AccountOut:
    """The caller's own account: id, email, display name, role and creation time."""
    audit.record(
        session,
        "account.read",
        actor_id=principal.id,
        actor_role=principal.role,
        target=principal.id,
    )
    return await service.view(session, ctx.vault, principal.account)


@router.get(
    "/v1/me/jurisdiction",
    response_model=JurisdictionOut,
    responses=responses(Unauthorized),
    summary="Where the caller lives (ISO 3166-2)",
)
async def my_jurisdiction(
    principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> JurisdictionOut:
    """The caller's own jurisdiction setting, null until set. Breach notification clocks use it."""
    audit.record(
        session,
        "account.read",
        actor_id=principal.id,
        actor_role=principal.role,
        target=principal.id,
    )
    return JurisdictionOut(
        jurisdiction=await jurisdiction.of_account(session, ctx.vault, principal.account)
    )


@router.put(
    "/v1/me/jurisdiction",
    response_model=JurisdictionOut,
    responses=responses(Unauthorized),
    summary="Set where the caller lives (ISO 3166-2)",
)
async def set_my_jurisdiction(
    body: SetJurisdiction, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> JurisdictionOut:
    """Sets (or, with null, clears) the caller's jurisdiction, sealed under their own key. An
    incident opened afterwards that affects the caller takes its state's breach notification
    deadline when that is shorter than HIPAA's 60 days.
    """
    await jurisdiction.set_jurisdiction(session, ctx.vault, principal.account, body.jurisdiction)
    return JurisdictionOut(jurisdiction=body.jurisdiction)
