"""Second factors: `/v1/me/factors*`, `/v1/me/recovery-codes`, `/v1/auth/mfa*`, step-up."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from app.auth.dependencies import CurrentPrincipal, EnrolmentPrincipal
from app.auth.devices import device_label
from app.auth.schemas import TokenPair
from app.core.errors import (
    Conflict,
    InvalidMfa,
    MfaEnrolmentRequired,
    NotFound,
    RateLimited,
    StepUpRequired,
    Unauthorized,
)
from app.core.passwords import PasswordsBusy
from app.mfa import service
from app.mfa.schemas import (
    AccessToken,
    CeremonyOptions,
    ConfirmTotp,
    Enrolled,
    FactorAttempt,
    FactorList,
    MfaLogin,
    MfaOptionsRequest,
    RecoveryCodes,
    RegisterPasskey,
    StartTotp,
    StepUpRequest,
    TotpStarted,
    factor_out,
)
from app.mfa.service import FactorProof, SpendJti
from app.web.deps import ContextDep, SessionDep, client_address
from app.web.errors import responses

router = APIRouter(tags=["mfa"])


def _spend(request: Request) -> SpendJti:
    """The broker's store of spent token ids, shared by every instance."""
    spend: SpendJti = request.app.state.hub.broker.spend_jti
    return spend


def _enrolled(done: service.Enrolled) -> Enrolled:
    return Enrolled(
        factor=factor_out(done.factor),
        recovery_codes=done.recovery_codes,
        access_token=done.access_token,
        expires_in=done.expires_in,
    )


def _proof(body: FactorAttempt) -> FactorProof:
    return FactorProof(
        method=body.method,
        code=body.code,
        credential=body.credential,
        challenge_token=body.challenge_token,
    )


# -- enrolment -----------------------------------------------------------------------------
@router.get(
    "/v1/me/factors",
    response_model=FactorList,
    responses=responses(Unauthorized),
    summary="The caller's second factors",
)
async def list_factors(
    principal: EnrolmentPrincipal, session: SessionDep, ctx: ContextDep
) -> FactorList:
    """The caller's TOTP and passkey factors (confirmed or not) and how many recovery codes are
    left. Open to an account that must still enrol (403 `mfa_enrolment_required` elsewhere)."""
    found, remaining = await service.list_factors(session, ctx, principal.account)
    return FactorList(factors=[factor_out(f) for f in found], recovery_codes_remaining=remaining)


@router.post(
    "/v1/me/factors/totp",
    status_code=status.HTTP_201_CREATED,
    response_model=TotpStarted,
    responses=responses(Unauthorized, StepUpRequired),
    summary="Start enrolling a TOTP authenticator",
)
async def start_totp(
    body: StartTotp, principal: EnrolmentPrincipal, session: SessionDep, ctx: ContextDep
) -> TotpStarted:
    """An unconfirmed TOTP factor (RFC 6238: SHA-1, 6 digits, 30 s): show the provisioning URI as
    a QR code, then confirm with a first code. Adding a factor to an account that has one needs a
    step-up (401 `step_up_required`)."""
    factor, secret, uri = await service.begin_totp(session, ctx, principal, body.label)
    return TotpStarted(id=factor.id, secret=secret, provisioning_uri=uri)


@router.post(
    "/v1/me/factors/totp/{factor_id}/confirm",
    response_model=Enrolled,
    responses=responses(Unauthorized, InvalidMfa, NotFound, Conflict, RateLimited, StepUpRequired),
    summary="Confirm a TOTP factor with a first code",
)
async def confirm_totp(
    factor_id: str,
    body: ConfirmTotp,
    request: Request,
    principal: EnrolmentPrincipal,
    session: SessionDep,
    ctx: ContextDep,
) -> Enrolled:
    """A right code confirms the factor and counts as a second-factor authentication of this
    log-in: a new access token (`amr` `["pwd","otp","mfa"]`). With the account's first factor:
    ten recovery codes (shown once), and every OTHER log-in of the account ends. A wrong code:
    401 `invalid_mfa`, throttled like passwords."""
    done = await service.confirm_totp(
        session, ctx, principal, factor_id, body.code, address=client_address(request)
    )
    return _enrolled(done)


@router.post(
    "/v1/me/factors/webauthn/options",
    response_model=CeremonyOptions,
    responses=responses(Unauthorized, StepUpRequired),
    summary="Options to register a passkey",
)
async def passkey_options(
    principal: EnrolmentPrincipal, session: SessionDep, ctx: ContextDep
) -> CeremonyOptions:
    """PublicKeyCredentialCreationOptions for `navigator.credentials.create()` (attestation
    `none`, resident key and user verification preferred), and the `challenge_token` to send back
    with the credential."""
    options, token = await service.registration_options(session, ctx, principal)
    return CeremonyOptions(options=options, challenge_token=token)


@router.post(
    "/v1/me/factors/webauthn",
    status_code=status.HTTP_201_CREATED,
    response_model=Enrolled,
    responses=responses(Unauthorized, InvalidMfa, Conflict, StepUpRequired),
    summary="Register a passkey",
)
async def register_passkey(
    body: RegisterPasskey,
    request: Request,
    principal: EnrolmentPrincipal,
    session: SessionDep,
    ctx: ContextDep,
) -> Enrolled:
    """Verifies the registration (challenge, origin, relying party id) and stores the passkey;
    the answer is shaped as a TOTP confirmation's (amr `["pwd","hwk","mfa"]`). A refused
    credential: 401 `invalid_mfa`; a spent or foreign challenge token: 401."""
    done = await service.register_passkey(
        session,
        ctx,
        principal,
        credential=body.credential,
        challenge_token=body.challenge_token,
        label=body.label,
        spend=_spend(request),
    )
    return _enrolled(done)


@router.delete(
    "/v1/me/factors/{factor_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(Unauthorized, NotFound, StepUpRequired),
    summary="Remove a second factor",
)
async def delete_factor(
    factor_id: str, principal: EnrolmentPrincipal, session: SessionDep, ctx: ContextDep
) -> Response:
    """Removing a confirmed factor needs a step-up. Removing the last one voids the recovery
    codes too."""
    await service.delete_factor(session, ctx, principal, factor_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/v1/me/recovery-codes",
    response_model=RecoveryCodes,
    responses=responses(Unauthorized, Conflict, StepUpRequired),
    summary="A new set of recovery codes (the old ones are void)",
)
async def regenerate_recovery_codes(
    principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> RecoveryCodes:
    """Ten new single-use codes, shown once; needs a step-up. 409 without a second factor."""
    fresh = await service.regenerate_recovery_codes(session, ctx, principal)
    return RecoveryCodes(recovery_codes=fresh)


# -- the log-in's second step --------------------------------------------------------------
@router.post(
    "/v1/auth/mfa/webauthn/options",
    response_model=CeremonyOptions,
    responses=responses(Unauthorized, NotFound),
    summary="Options for a passkey log-in's second step",
)
async def mfa_passkey_options(
    body: MfaOptionsRequest, session: SessionDep, ctx: ContextDep
) -> CeremonyOptions:
    """PublicKeyCredentialRequestOptions for `navigator.credentials.get()` for the account of the
    `mfa_token` (not spent), and a single-use `challenge_token`."""
    options, token = await service.login_options(session, ctx, body.mfa_token)
    return CeremonyOptions(options=options, challenge_token=token)


@router.post(
    "/v1/auth/mfa",
    response_model=TokenPair,
    responses=responses(Unauthorized, InvalidMfa, RateLimited),
    summary="Complete a log-in with a second factor",
)
async def complete_mfa(
    body: MfaLogin, request: Request, session: SessionDep, ctx: ContextDep
) -> TokenPair:
    """Turns the `mfa_token` of a password log-in (401 `mfa_required`) into a token pair, with a
    TOTP code, a recovery code (each usable once) or a passkey assertion. A wrong factor: 401
    `invalid_mfa`, throttled per account and per address like passwords (429 with
    `Retry-After`). The `mfa_token` is spent on success: a second use is 401 `token_invalid`."""
    return await service.complete_login(
        session,
        ctx,
        mfa_token=body.mfa_token,
        proof=_proof(body),
        address=client_address(request),
        spend=_spend(request),
        device=device_label(request.headers.get("user-agent")),
    )


# -- step-up --------------------------------------------------------------------------------
@router.post(
    "/v1/auth/step-up/webauthn/options",
    response_model=CeremonyOptions,
    responses=responses(Unauthorized, NotFound, MfaEnrolmentRequired),
    summary="Options for a passkey step-up",
)
async def step_up_passkey_options(
    principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> CeremonyOptions:
    """PublicKeyCredentialRequestOptions for the caller's passkeys, and a `challenge_token`."""
    options, token = await service.authentication_options(session, ctx, principal.account)
    return CeremonyOptions(options=options, challenge_token=token)


@router.post(
    "/v1/auth/step-up",
    response_model=AccessToken,
    responses=responses(Unauthorized, InvalidMfa, RateLimited, MfaEnrolmentRequired, PasswordsBusy),
    summary="Authenticate again for a sensitive act",
)
async def step_up(
    body: StepUpRequest,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    ctx: ContextDep,
) -> AccessToken:
    """Proves a second factor again (or the password, only for an account without a factor):
    the log-in's `amr` and `auth_time` are updated and a new access token is answered. Acts
    that answer 401 `step_up_required` pass with it for `step_up_max_age` seconds."""
    proof = (
        None
        if body.method == "password"
        else FactorProof(
            method=body.method,
            code=body.code,
            credential=body.credential,
            challenge_token=body.challenge_token,
        )
    )
    access = await service.step_up(
        session,
        ctx,
        principal,
        proof=proof,
        password=body.password,
        address=client_address(request),
        spend=_spend(request),
    )
    return AccessToken(access_token=access, expires_in=ctx.settings.access_token_ttl)
