from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from app.auth import service
from app.auth.dependencies import EnrolmentPrincipal
from app.auth.devices import device_label
from app.auth.schemas import RefreshRequest, TokenPair
from app.core.errors import (
    AccountDisabled,
    InvalidCredentials,
    MfaRequired,
    RateLimited,
    RefreshReused,
    Unauthorized,
)
from app.core.passwords import MAX_LENGTH, PasswordsBusy
from app.web.deps import ContextDep, SessionDep, client_address
from app.web.errors import responses

router = APIRouter(tags=["auth"])


@router.post(
    "/v1/auth/token",
    response_model=TokenPair,
    responses=responses(
        InvalidCredentials, MfaRequired, AccountDisabled, RateLimited, PasswordsBusy
    ),
    summary="Log in (OAuth2 password grant)",
)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
) -> TokenPair:
    """OAuth2 password grant (form fields `username`, `password`). Answers an access token (15
    minutes at most) and a refresh token. Wrong credentials answer 401 `invalid_credentials`, the
    same whether or not the email exists; repeated failures are throttled (429 with
    `Retry-After`). An account with a second factor answers 401 `mfa_required` with an
    `mfa_token` and its `methods` instead: `POST /v1/auth/mfa` completes the log-in. The right
    password of an account an admin disabled answers 403 `account_disabled`.
    """
    if len(form.username) > 320 or len(form.password) > MAX_LENGTH:
        raise InvalidCredentials("The email or password is wrong.")
    address = client_address(request)
    return await service.login(
        session,
        ctx,
        email=form.username,
        password=form.password,
        address=address,
        device=device_label(request.headers.get("user-agent")),
    )


@router.post(
    "/v1/auth/refresh",
    response_model=TokenPair,
    responses=responses(Unauthorized, RefreshReused),
    summary="Rotate a refresh token for a new pair",
)
async def refresh(body: RefreshRequest, session: SessionDep, ctx: ContextDep) -> TokenPair:
    """Spends the refresh token and answers a new pair. A refresh token presented a second time
    revokes its whole family (401 `refresh_reused`); one unused for 30 minutes is dead.
    """
    return await service.refresh(session, ctx, body.refresh_token)


@router.post(
    "/v1/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(Unauthorized),
    summary="End this log-in: its refresh family is revoked",
)
async def logout(principal: EnrolmentPrincipal, session: SessionDep, ctx: ContextDep) -> Response:
    """Revokes the refresh family of the log-in that the access token belongs to."""
    await service.logout(session, ctx, principal.account, principal.login_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/.well-known/jwks.json",
    tags=["auth"],
    summary="Public keys of access and room tokens",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "keys": [
                            {
                                "kty": "EC",
                                "crv": "P-256",
                                "x": "5FaUfN_a2mOoDc2R3D6RlXvDyAnKrFyJlEA37q8uwRU",
                                "y": "GgWWGRIAMmyfni1u7JmVZyIVq5RnNfXOFHoRwEySzms",
                                "kid": "4_V5hQ0Wq8y1x3L2n7m9JcA6bD0eF1gH2iJ3kL4mN5o",
                                "alg": "ES256",
                                "use": "sig",
                            }
                        ]
                    }
                }
            }
        }
    },
)
async def jwks(ctx: ContextDep) -> dict[str, Any]:
    """The ES256 public keys (JWK set) that verify access tokens, room tokens and signed heads: the
    key that signs now first. A client meeting an unknown `kid` fetches this again.
    """
    return ctx.tokens.jwks()
