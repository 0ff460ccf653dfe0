from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from app.auth import service
from app.auth.dependencies import CurrentPrincipal
from app.auth.schemas import RefreshRequest, TokenPair
from app.core.errors import InvalidCredentials, RateLimited, RefreshReused, Unauthorized
from app.core.passwords import MAX_LENGTH
from app.web.deps import ContextDep, SessionDep
from app.web.errors import responses

router = APIRouter(tags=["auth"])


@router.post(
    "/v1/auth/token",
    response_model=TokenPair,
    responses=responses(InvalidCredentials, RateLimited),
    summary="Log in (OAuth2 password grant)",
)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
) -> TokenPair:
    if len(form.username) > 320 or len(form.password) > MAX_LENGTH:
        raise InvalidCredentials("The email or password is wrong.")
    address = request.client.host if request.client else "unknown"
    return await service.login(
        session, ctx, email=form.username, password=form.password, address=address
    )


@router.post(
    "/v1/auth/refresh",
    response_model=TokenPair,
    responses=responses(Unauthorized, RefreshReused),
    summary="Rotate a refresh token for a new pair",
)
async def refresh(body: RefreshRequest, session: SessionDep, ctx: ContextDep) -> TokenPair:
    return await service.refresh(session, ctx, body.refresh_token)


@router.post(
    "/v1/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(Unauthorized),
    summary="End this log-in: its refresh family is revoked",
)
async def logout(principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep) -> Response:
    await service.logout(session, ctx, principal.account, principal.login_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/.well-known/jwks.json", tags=["auth"], summary="Public keys of access and room tokens"
)
async def jwks(ctx: ContextDep) -> dict[str, Any]:
    return ctx.tokens.jwks()
