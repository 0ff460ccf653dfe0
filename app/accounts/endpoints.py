from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from app.accounts import jurisdiction, lifecycle, service
from app.accounts.errors import ResetTokenInvalid
from app.accounts.schemas import (
    AccountOut,
    ChangePassword,
    CreateAccount,
    JurisdictionOut,
    LoginOut,
    RegisterClient,
    SetJurisdiction,
    UseReset,
)
from app.auth import logins
from app.auth.dependencies import CurrentPrincipal, EnrolmentPrincipal, StepUpAdmin
from app.core import audit
from app.core.errors import (
    EmailTaken,
    Forbidden,
    InvalidCredentials,
    NotFound,
    RateLimited,
    StepUpRequired,
    Unauthorized,
    WeakPassword,
)
from app.core.passwords import PasswordsBusy
from app.models import Role
from app.web.deps import ContextDep, SessionDep, client_address
from app.web.errors import responses
from app.web.pagination import PageDep, micros, paged

router = APIRouter(tags=["accounts"])


@router.post(
    "/v1/accounts",
    status_code=status.HTTP_201_CREATED,
    response_model=AccountOut,
    responses=responses(EmailTaken, WeakPassword, PasswordsBusy),
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
    responses=responses(
        StepUpRequired, Unauthorized, Forbidden, EmailTaken, WeakPassword, PasswordsBusy
    ),
    summary="Create an account of any role (admin)",
)
async def create(
    body: CreateAccount, admin: StepUpAdmin, session: SessionDep, ctx: ContextDep
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
async def me(principal: EnrolmentPrincipal, session: SessionDep, ctx: ContextDep) -> AccountOut:
    """The caller's own account: id, email, display name, role and creation time."""
    audit.record(
        session,
        "account.read",
        actor_id=principal.id,
        actor_role=principal.role,
        target=principal.id,
    )
    return await service.view(session, ctx.vault, principal.account)


@router.put(
    "/v1/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(Unauthorized, InvalidCredentials, WeakPassword, RateLimited, PasswordsBusy),
    summary="Change the caller's password; every other log-in ends",
)
async def change_password(
    body: ChangePassword,
    principal: CurrentPrincipal,
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
) -> Response:
    """Needs the current password (wrong: 401 `invalid_credentials`, throttled like log-in, 429
    with `Retry-After`); the new one follows the registration's rules (422 `weak_password`). Every
    other log-in of the account ends (its tokens die, its sockets close with 4001); this one goes
    on.
    """
    await lifecycle.change_password(
        session,
        ctx,
        principal,
        current=body.current_password,
        new=body.new_password,
        address=client_address(request),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/v1/auth/password-reset",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(ResetTokenInvalid, WeakPassword, RateLimited, PasswordsBusy),
    summary="Spend a reset token an admin started: a new password, every log-in ended",
)
async def use_reset(
    body: UseReset, request: Request, session: SessionDep, ctx: ContextDep
) -> Response:
    """An unknown, used, voided or expired token answers 400 `reset_token_invalid`, throttled per
    address (429 with `Retry-After`). Every log-in of the account ends; second factors stay.
    """
    await lifecycle.use_reset(
        session,
        ctx,
        token=body.reset_token,
        new=body.new_password,
        address=client_address(request),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/v1/me/logins",
    response_model=list[LoginOut],
    responses=paged(responses(Unauthorized)),
    summary="The caller's live log-ins, most recently used first",
)
async def my_logins(
    principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep, page: PageDep
) -> list[LoginOut]:
    """Each log-in's device (a coarse label from the User-Agent at log-in) and its times, truncated
    to the hour; `current` marks the one that asked. Paginated.
    """
    found = page.take(
        await lifecycle.my_logins(session, ctx, principal),
        lambda login: (micros(login.last_used_at), micros(login.created_at), login.id),
        ("logins", principal.id),
        descending=True,
    )
    audit.record(
        session,
        "auth.logins_read",
        actor_id=principal.id,
        actor_role=principal.role,
        target=principal.id,
    )
    return found


@router.delete(
    "/v1/me/logins/{login_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(Unauthorized, NotFound),
    summary="End one of the caller's log-ins",
)
async def end_login(
    login_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> Response:
    """Its refresh and access tokens die and its sockets close with 4001, as log-out does. Another
    person's log-in, or one already ended, is 404.
    """
    await logins.end_login(session, ctx, principal.id, login_id)
    audit.record(
        session,
        "auth.login_end",
        actor_id=principal.id,
        actor_role=principal.role,
        target=principal.id,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


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
