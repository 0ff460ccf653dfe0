"""Who is calling: `CurrentPrincipal`, `AdminPrincipal`, `EnrolmentPrincipal`, `StepUpPrincipal`.

Where MFA is required (`settings.requires_mfa`), a counselor or admin without
a confirmed second factor holds a working log-in, but `CurrentPrincipal`
refuses it (403 `mfa_enrolment_required`): only the few endpoints that take
an `EnrolmentPrincipal` (who am I, enrolling a factor, refresh, log-out)
answer it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer

from app.auth import factors, service
from app.auth.service import PASSWORD_AMR, Principal
from app.core.errors import Forbidden, MfaEnrolmentRequired, StepUpRequired, Unauthorized
from app.core.tokens import ACCESS_AUDIENCE, ACCESS_TYP, TokenError
from app.models import Role
from app.web.deps import ContextDep, SessionDep

oauth2 = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


def _amr(claims: dict[str, object]) -> tuple[str, ...]:
    amr = claims.get("amr")
    if isinstance(amr, list) and all(isinstance(m, str) for m in amr):
        return tuple(str(m) for m in amr)
    return PASSWORD_AMR


async def enrolment_principal(
    ctx: ContextDep, session: SessionDep, token: Annotated[str | None, Depends(oauth2)]
) -> Principal:
    if token is None:
        raise Unauthorized("A bearer access token is required.")
    try:
        claims = ctx.tokens.verify(token, audience=ACCESS_AUDIENCE, typ=ACCESS_TYP)
    except TokenError as error:
        raise Unauthorized(error.detail, code=error.code) from None
    sid = claims.get("sid")
    if not isinstance(sid, str):
        raise Unauthorized("This session has ended.")
    account = await service.live_account(session, str(claims["sub"]), sid)
    auth_time = claims.get("auth_time")
    return Principal(
        account=account,
        login_id=sid,
        claims=claims,
        amr=_amr(claims),
        auth_time=datetime.fromtimestamp(
            auth_time if isinstance(auth_time, int) else int(claims["iat"]), UTC
        ),
    )


#: The caller, even one who must still enrol a second factor.
EnrolmentPrincipal = Annotated[Principal, Depends(enrolment_principal)]


async def current_principal(
    principal: EnrolmentPrincipal, ctx: ContextDep, session: SessionDep
) -> Principal:
    if (
        factors.must_enrol_role(ctx, principal.account)
        and "mfa" not in principal.amr
        and not await factors.has_factor(session, ctx, principal.account)
    ):
        raise MfaEnrolmentRequired("Enrol a second factor (/v1/me/factors) before using the API.")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def admin_principal(principal: CurrentPrincipal) -> Principal:
    if principal.account.role != Role.admin:
        raise Forbidden("Only an admin may do this.")
    return principal


AdminPrincipal = Annotated[Principal, Depends(admin_principal)]


async def step_up_principal(
    principal: CurrentPrincipal, ctx: ContextDep, session: SessionDep
) -> Principal:
    """The caller, authenticated within `step_up_max_age` seconds (RFC 9470).

    With a second factor, the last authentication must have used it (`mfa` in
    `amr`); without one (where MFA is not required), a recent password will do.
    Otherwise 401 `step_up_required`: `POST /v1/auth/step-up`, then try again.
    """
    max_age = ctx.settings.step_up_max_age
    auth_time = principal.auth_time
    recent = auth_time is not None and (ctx.clock.now() - auth_time).total_seconds() <= max_age
    if not recent or (
        "mfa" not in principal.amr and await factors.has_factor(session, ctx, principal.account)
    ):
        raise StepUpRequired(max_age)
    return principal


StepUpPrincipal = Annotated[Principal, Depends(step_up_principal)]


async def step_up_admin(principal: StepUpPrincipal) -> Principal:
    if principal.account.role != Role.admin:
        raise Forbidden("Only an admin may do this.")
    return principal


StepUpAdmin = Annotated[Principal, Depends(step_up_admin)]
