"""Who is calling: `CurrentPrincipal`, `AdminPrincipal`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer

from app.auth import service
from app.auth.service import Principal
from app.core.errors import Forbidden, Unauthorized
from app.core.tokens import ACCESS_AUDIENCE, ACCESS_TYP, TokenError
from app.models import Role
from app.web.deps import ContextDep, SessionDep

oauth2 = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


async def current_principal(
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
    return Principal(account=account, login_id=sid, claims=claims)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def admin_principal(principal: CurrentPrincipal) -> Principal:
    if principal.account.role != Role.admin:
        raise Forbidden("Only an admin may do this.")
    return principal


AdminPrincipal = Annotated[Principal, Depends(admin_principal)]
