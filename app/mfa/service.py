"""Second factors: enrolment (TOTP, passkeys, recovery codes), the log-in's second step, step-up.

Every factor is a row of `auth_factors`, found through the account's slot
index and sealed under the account's data key (`app.auth.factors`). WebAuthn
challenges are stateless: a short signed token (audience `confide-webauthn`)
carries the challenge, the account and the purpose, and is spent once in the
broker's store of spent token ids, as the log-in's MFA token is.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from app.accounts import service as accounts
from app.auth import factors
from app.auth import service as auth
from app.auth.factors import RECOVERY, TOTP, WEBAUTHN, Factor
from app.auth.schemas import TokenPair
from app.auth.service import Principal
from app.core import audit
from app.core.codec import new_id
from app.core.context import Context
from app.core.errors import (
    Conflict,
    InvalidMfa,
    NotFound,
    RateLimited,
    StepUpRequired,
    Unauthorized,
)
from app.core.tokens import (
    MFA_AUDIENCE,
    MFA_TYP,
    WEBAUTHN_AUDIENCE,
    WEBAUTHN_TYP,
    TokenError,
)
from app.mfa import codes
from app.models import Account, AuthFactor
from app.models.account import find_active

#: Spends a token id once across instances (the broker's store): (jti, ttl, iat) -> first time.
SpendJti = Callable[[str, int, float], Awaitable[bool]]
Method = Literal["totp", "recovery_code", "webauthn"]
Purpose = Literal["register", "authenticate"]

OTP_AMR = ("pwd", "otp", "mfa")
PASSKEY_AMR = ("pwd", "hwk", "mfa")


@dataclass
class FactorProof:
    """What a second-factor attempt carries (the fields its method needs)."""

    method: Method
    code: str | None = None
    credential: Mapping[str, Any] | None = None
    challenge_token: str | None = None


@dataclass
class Enrolled:
    factor: Factor
    recovery_codes: list[str] | None
    access_token: str
    expires_in: int


# -- throttling ----------------------------------------------------------------------
def _keys(account_id: str, address: str) -> tuple[str, str]:
    return "mfa:account:" + account_id, "mfa:address:" + address


def _check_throttle(ctx: Context, account_id: str, address: str) -> None:
    settings = ctx.settings
    account_key, address_key = _keys(account_id, address)
    wait = max(
        ctx.login_throttle.retry_after(account_key, settings.login_max_failures_per_account),
        ctx.login_throttle.retry_after(address_key, settings.login_max_failures_per_address),
    )
    if wait:
        raise RateLimited(wait, "Too many failed attempts; try again later.")


def _fail(session: AsyncSession, ctx: Context, account: Account, address: str) -> InvalidMfa:
    for key in _keys(account.id, address):
        ctx.login_throttle.fail(key)
    audit.record(
        session,
        "auth.mfa_failed",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
    )
    return InvalidMfa("The second factor is wrong.")


# -- tokens ---------------------------------------------------------------------------
async def _spend(ctx: Context, spend: SpendJti, claims: Mapping[str, Any]) -> None:
    ttl = max(1, int(claims["exp"] - ctx.clock.time()) + 60)
    if not await spend(str(claims["jti"]), ttl, float(claims["iat"])):
        raise Unauthorized("This token was already used.")


def _verify(ctx: Context, token: str, *, audience: str, typ: str) -> dict[str, Any]:
    try:
        return ctx.tokens.verify(token, audience=audience, typ=typ)
    except TokenError as error:
        raise Unauthorized(error.detail, code=error.code) from None


def _challenge_token(ctx: Context, account: Account, challenge: bytes, purpose: Purpose) -> str:
    return ctx.tokens.issue(
        audience=WEBAUTHN_AUDIENCE,
        typ=WEBAUTHN_TYP,
        subject=account.id,
        ttl=ctx.settings.mfa_token_ttl,
        claims={"challenge": bytes_to_base64url(challenge), "purpose": purpose},
    ).token


async def _open_challenge(
    ctx: Context, spend: SpendJti, token: str | None, account: Account, purpose: Purpose
) -> bytes:
    """The challenge a challenge token carries, spent once; 401 `invalid_mfa` otherwise."""
    if not token:
        raise InvalidMfa("A challenge_token is required.")
    try:
        claims = ctx.tokens.verify(token, audience=WEBAUTHN_AUDIENCE, typ=WEBAUTHN_TYP)
    except TokenError as error:
        raise Unauthorized(error.detail, code=error.code) from None
    if claims["sub"] != account.id or claims.get("purpose") != purpose:
        raise InvalidMfa("The challenge is not for this ceremony.")
    challenge = claims.get("challenge")
    if not isinstance(challenge, str):
        raise InvalidMfa("The challenge is not for this ceremony.")
    await _spend(ctx, spend, claims)
    return base64url_to_bytes(challenge)


def _options_json(options: Any) -> dict[str, Any]:
    value = json.loads(options_to_json(options))
    assert isinstance(value, dict)
    return value


# -- the factors ------------------------------------------------------------------------
async def list_factors(
    session: AsyncSession, ctx: Context, account: Account
) -> tuple[list[Factor], int]:
    """The account's TOTP and passkey factors, and how many recovery codes are left."""
    every = await factors.factors_of(session, ctx, account)
    remaining = sum(len(f.data.get("codes", [])) for f in every if f.kind == RECOVERY)
    return [f for f in every if f.kind != RECOVERY], remaining


def require_step_up_if_enrolled(ctx: Context, principal: Principal, enrolled: bool) -> None:
    """Adding a factor to an account that has one, and removing one, need a step-up."""
    if not enrolled:
        return
    age = (ctx.clock.now() - principal.auth_time).total_seconds() if principal.auth_time else None
    if "mfa" not in principal.amr or age is None or age > ctx.settings.step_up_max_age:
        raise StepUpRequired(ctx.settings.step_up_max_age)


async def _add(
    session: AsyncSession, ctx: Context, account: Account, data: dict[str, Any]
) -> Factor:
    factor = Factor(AuthFactor(id=new_id(), details=b""), data)
    await factors.seal(session, ctx, account, factor)
    await factors.SLOTS.add(session, ctx.vault, account.id, factor.row)
    return factor


async def begin_totp(
    session: AsyncSession, ctx: Context, principal: Principal, label: str | None
) -> tuple[Factor, str, str]:
    """An unconfirmed TOTP factor: its id, secret and provisioning URI."""
    account = principal.account
    require_step_up_if_enrolled(ctx, principal, await factors.has_factor(session, ctx, account))
    secret = codes.new_secret()
    factor = await _add(
        session,
        ctx,
        account,
        {
            "kind": TOTP,
            "label": label or "Authenticator app",
            "created_at": ctx.clock.now().isoformat(),
            "confirmed": False,
            "secret": secret,
            "last_step": None,
        },
    )
    view = await accounts.view(session, ctx.vault, account)
    uri = codes.provisioning_uri(
        secret, account_name=view.email, issuer=ctx.settings.webauthn_rp_name
    )
    audit.record(
        session,
        "mfa.totp_started",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
        details={"factor": factor.id},
    )
    return factor, secret, uri


async def _enrolled(
    session: AsyncSession,
    ctx: Context,
    principal: Principal,
    factor: Factor,
    amr: tuple[str, ...],
    *,
    first: bool,
) -> Enrolled:
    account = principal.account
    recovery: list[str] | None = None
    ended = 0
    if first:
        recovery = await _replace_recovery_codes(session, ctx, account)
        # A password-only log-in that someone else might hold does not survive.
        ended = await auth.revoke_others(session, ctx, account, keep=principal.login_id)
    access = await auth.reauthenticate(session, ctx, account, principal.login_id, amr)
    audit.record(
        session,
        "mfa.factor_added",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
        details={"factor": factor.id, "kind": factor.kind, "logins_ended": ended},
    )
    return Enrolled(factor, recovery, access, ctx.settings.access_token_ttl)


async def confirm_totp(
    session: AsyncSession,
    ctx: Context,
    principal: Principal,
    factor_id: str,
    code: str,
    *,
    address: str,
) -> Enrolled:
    account = principal.account
    every = await factors.factors_of(session, ctx, account)
    factor = next((f for f in every if f.id == factor_id and f.kind == TOTP), None)
    if factor is None:
        raise NotFound("No such factor.")
    if factor.confirmed:
        raise Conflict("This factor is already confirmed.")
    first = not any(f.confirmed and f.kind != RECOVERY for f in every)
    require_step_up_if_enrolled(ctx, principal, not first)
    _check_throttle(ctx, account.id, address)
    step = codes.accepted_step(str(factor.data["secret"]), code, ctx.clock.time(), None)
    if step is None:
        raise _fail(session, ctx, account, address)
    factor.data["confirmed"] = True
    factor.data["last_step"] = step
    await factors.seal(session, ctx, account, factor)
    return await _enrolled(session, ctx, principal, factor, OTP_AMR, first=first)


async def registration_options(
    session: AsyncSession, ctx: Context, principal: Principal
) -> tuple[dict[str, Any], str]:
    account = principal.account
    every = await factors.factors_of(session, ctx, account)
    require_step_up_if_enrolled(
        ctx, principal, any(f.confirmed and f.kind != RECOVERY for f in every)
    )
    view = await accounts.view(session, ctx.vault, account)
    options = generate_registration_options(
        rp_id=ctx.settings.resolved_webauthn_rp_id,
        rp_name=ctx.settings.webauthn_rp_name,
        user_name=view.email,
        user_id=account.id.encode(),
        user_display_name=view.display_name,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(f.data["credential_id"]))
            for f in every
            if f.kind == WEBAUTHN
        ],
    )
    return _options_json(options), _challenge_token(ctx, account, options.challenge, "register")


async def register_passkey(
    session: AsyncSession,
    ctx: Context,
    principal: Principal,
    *,
    credential: Mapping[str, Any],
    challenge_token: str,
    label: str | None,
    spend: SpendJti,
) -> Enrolled:
    account = principal.account
    every = await factors.factors_of(session, ctx, account)
    first = not any(f.confirmed and f.kind != RECOVERY for f in every)
    require_step_up_if_enrolled(ctx, principal, not first)
    challenge = await _open_challenge(ctx, spend, challenge_token, account, "register")
    try:
        verified = verify_registration_response(
            credential=dict(credential),
            expected_challenge=challenge,
            expected_rp_id=ctx.settings.resolved_webauthn_rp_id,
            expected_origin=ctx.settings.resolved_webauthn_origins,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as error:
        raise InvalidMfa(f"The passkey was refused: {error}") from None
    credential_id = bytes_to_base64url(verified.credential_id)
    if any(f.kind == WEBAUTHN and f.data["credential_id"] == credential_id for f in every):
        raise Conflict("This passkey is already registered.")
    factor = await _add(
        session,
        ctx,
        account,
        {
            "kind": WEBAUTHN,
            "label": label or "Passkey",
            "created_at": ctx.clock.now().isoformat(),
            "confirmed": True,
            "credential_id": credential_id,
            "public_key": bytes_to_base64url(verified.credential_public_key),
            "sign_count": verified.sign_count,
        },
    )
    return await _enrolled(session, ctx, principal, factor, PASSKEY_AMR, first=first)


async def _replace_recovery_codes(
    session: AsyncSession, ctx: Context, account: Account
) -> list[str]:
    fresh = codes.new_recovery_codes()
    hashes = [codes.hash_recovery(code) for code in fresh]
    every = await factors.factors_of(session, ctx, account)
    row = next((f for f in every if f.kind == RECOVERY), None)
    if row is None:
        await _add(
            session,
            ctx,
            account,
            {"kind": RECOVERY, "created_at": ctx.clock.now().isoformat(), "codes": hashes},
        )
    else:
        row.data["codes"] = hashes
        row.data["created_at"] = ctx.clock.now().isoformat()
        await factors.seal(session, ctx, account, row)
    return fresh


async def regenerate_recovery_codes(
    session: AsyncSession, ctx: Context, principal: Principal
) -> list[str]:
    account = principal.account
    if not await factors.has_factor(session, ctx, account):
        raise Conflict("Recovery codes come with a second factor: enrol one first.")
    require_step_up_if_enrolled(ctx, principal, True)
    fresh = await _replace_recovery_codes(session, ctx, account)
    audit.record(
        session,
        "mfa.recovery_codes_regenerated",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
    )
    return fresh


async def delete_factor(
    session: AsyncSession, ctx: Context, principal: Principal, factor_id: str
) -> None:
    account = principal.account
    every = await factors.factors_of(session, ctx, account)
    factor = next((f for f in every if f.id == factor_id and f.kind != RECOVERY), None)
    if factor is None:
        raise NotFound("No such factor.")
    if factor.confirmed:
        require_step_up_if_enrolled(ctx, principal, True)
    await factors.SLOTS.remove(session, ctx.vault, account.id, factor.row)
    left = [f for f in every if f.id != factor_id and f.confirmed and f.kind != RECOVERY]
    if not left:
        for rest in every:
            if rest.kind == RECOVERY:
                await factors.SLOTS.remove(session, ctx.vault, account.id, rest.row)
    audit.record(
        session,
        "mfa.factor_removed",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
        details={"factor": factor.id, "kind": factor.kind},
    )


# -- proving a factor ---------------------------------------------------------------------
async def _prove(
    session: AsyncSession,
    ctx: Context,
    account: Account,
    proof: FactorProof,
    *,
    address: str,
    spend: SpendJti,
) -> tuple[str, ...]:
    """The amr a correct second factor earns; 401 `invalid_mfa` (throttled) otherwise."""
    _check_throttle(ctx, account.id, address)
    every = await factors.factors_of(session, ctx, account)
    amr: tuple[str, ...] | None = None
    if proof.method == "totp" and proof.code:
        for factor in every:
            if factor.kind != TOTP or not factor.confirmed:
                continue
            step = codes.accepted_step(
                str(factor.data["secret"]), proof.code, ctx.clock.time(), factor.data["last_step"]
            )
            if step is not None:
                factor.data["last_step"] = step
                await factors.seal(session, ctx, account, factor)
                amr = OTP_AMR
                break
    elif proof.method == "recovery_code" and proof.code:
        raw = codes.normalise_recovery(proof.code)
        digest = codes.hash_recovery(raw) if raw else None
        for factor in every:
            if factor.kind == RECOVERY and digest in factor.data.get("codes", []):
                factor.data["codes"] = [h for h in factor.data["codes"] if h != digest]
                await factors.seal(session, ctx, account, factor)
                amr = OTP_AMR
    elif proof.method == "webauthn" and proof.credential is not None:
        challenge = await _open_challenge(
            ctx, spend, proof.challenge_token, account, "authenticate"
        )
        presented = proof.credential.get("rawId") or proof.credential.get("id")
        factor_or_none = next(
            (f for f in every if f.kind == WEBAUTHN and f.data["credential_id"] == presented),
            None,
        )
        if factor_or_none is not None:
            passkey = factor_or_none
            try:
                verified = verify_authentication_response(
                    credential=dict(proof.credential),
                    expected_challenge=challenge,
                    expected_rp_id=ctx.settings.resolved_webauthn_rp_id,
                    expected_origin=ctx.settings.resolved_webauthn_origins,
                    credential_public_key=base64url_to_bytes(passkey.data["public_key"]),
                    credential_current_sign_count=int(passkey.data["sign_count"]),
                )
            except (WebAuthnException, ValueError, TypeError, KeyError):
                verified = None
            if verified is not None:
                passkey.data["sign_count"] = verified.new_sign_count
                await factors.seal(session, ctx, account, passkey)
                amr = PASSKEY_AMR
    if amr is None:
        raise _fail(session, ctx, account, address)
    ctx.login_throttle.clear(_keys(account.id, address)[0])
    return amr


async def _mfa_account(
    session: AsyncSession, ctx: Context, mfa_token: str
) -> tuple[Account, dict[str, Any]]:
    claims = _verify(ctx, mfa_token, audience=MFA_AUDIENCE, typ=MFA_TYP)
    account = await find_active(session, str(claims["sub"]))
    if account is None:
        raise Unauthorized("Unknown or revoked token.")
    return account, claims


async def complete_login(
    session: AsyncSession,
    ctx: Context,
    *,
    mfa_token: str,
    proof: FactorProof,
    address: str,
    spend: SpendJti,
    device: str,
) -> TokenPair:
    """The log-in's second step: a correct factor turns the MFA token into a token pair."""
    account, claims = await _mfa_account(session, ctx, mfa_token)
    amr = await _prove(session, ctx, account, proof, address=address, spend=spend)
    await _spend(ctx, spend, claims)
    return await auth.login_with(session, ctx, account, amr, device)


def _authentication_options(account_passkeys: list[Factor], ctx: Context) -> Any:
    return generate_authentication_options(
        rp_id=ctx.settings.resolved_webauthn_rp_id,
        allow_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(f.data["credential_id"]))
            for f in account_passkeys
        ],
        user_verification=UserVerificationRequirement.PREFERRED,
    )


async def authentication_options(
    session: AsyncSession, ctx: Context, account: Account
) -> tuple[dict[str, Any], str]:
    passkeys = [f for f in await factors.factors_of(session, ctx, account) if f.kind == WEBAUTHN]
    if not passkeys:
        raise NotFound("This account has no passkey.")
    options = _authentication_options(passkeys, ctx)
    return _options_json(options), _challenge_token(ctx, account, options.challenge, "authenticate")


async def login_options(
    session: AsyncSession, ctx: Context, mfa_token: str
) -> tuple[dict[str, Any], str]:
    account, _claims = await _mfa_account(session, ctx, mfa_token)
    return await authentication_options(session, ctx, account)


async def step_up(
    session: AsyncSession,
    ctx: Context,
    principal: Principal,
    *,
    proof: FactorProof | None,
    password: str | None,
    address: str,
    spend: SpendJti,
) -> str:
    """Authenticate the log-in again; a new access token carrying the fresh `auth_time`."""
    account = principal.account
    if proof is None:
        if await factors.has_factor(session, ctx, account):
            raise InvalidMfa("This account has a second factor: step up with it.")
        _check_throttle(ctx, account.id, address)
        if not password or not await ctx.passwords.verify(account.password_hash, password):
            raise _fail(session, ctx, account, address)
        amr: tuple[str, ...] = auth.PASSWORD_AMR
    else:
        amr = await _prove(session, ctx, account, proof, address=address, spend=spend)
    access = await auth.reauthenticate(session, ctx, account, principal.login_id, amr)
    audit.record(
        session,
        "auth.step_up",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
        details={"amr": list(amr)},
    )
    return access
