"""Log-in, refresh-token rotation and log-out.

Refresh tokens are random strings; only their SHA-256 is stored. Each log-in
starts a family; a refresh spends the presented token and issues the next of
the same family. Presenting a spent token means it was copied: the whole
family is revoked (RFC 9700 §4.14.2). A token unused for the idle timeout is
dead, and a family dies at its maximum lifetime whatever its use.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import factors
from app.auth.devices import UNKNOWN_DEVICE
from app.auth.schemas import TokenPair
from app.core import audit
from app.core.codec import new_id
from app.core.context import Context
from app.core.errors import (
    AccountDisabled,
    InvalidCredentials,
    MfaRequired,
    RateLimited,
    RefreshReused,
    Unauthorized,
)
from app.core.events import LoginRevoked, emit
from app.core.slots import Slots
from app.core.tokens import ACCESS_AUDIENCE, ACCESS_TYP, MFA_AUDIENCE, MFA_TYP
from app.core.vault import SYSTEM_KEY_ID
from app.models import Account, AccountStatus, LoginFamily, RefreshToken
from app.models.account import find_active, find_by_email_index

SLOTS = Slots(LoginFamily.slot_ix, "login.owner.slot")
#: Whose password log-in checks: a disabled account's right password answers
#: 403 `account_disabled` (a wrong one stays 401 `invalid_credentials`).
USABLE = (AccountStatus.active, AccountStatus.disabled)

#: RFC 8176 authentication methods of a password log-in.
PASSWORD_AMR = ("pwd",)


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass
class Family:
    """A log-in family as the system key opens it."""

    row: LoginFamily
    account_id: str
    started_at: datetime
    last_at: datetime
    revoked_at: datetime | None
    #: How the log-in was last authenticated (RFC 8176) and when.
    amr: tuple[str, ...] = PASSWORD_AMR
    auth_time: datetime | None = None
    #: A coarse label of the device that logged in (`app.auth.devices`).
    device: str = UNKNOWN_DEVICE


async def open_family(session: AsyncSession, ctx: Context, row: LoginFamily) -> Family:
    data = await ctx.vault.open_json(
        session, SYSTEM_KEY_ID, LoginFamily.details, row.id, row.details
    )
    revoked_at = data.get("revoked_at")
    started_at = datetime.fromisoformat(data["started_at"])
    auth_time = data.get("auth_time")
    return Family(
        row=row,
        account_id=data["account"],
        started_at=started_at,
        last_at=datetime.fromisoformat(data["last_at"]),
        revoked_at=datetime.fromisoformat(revoked_at) if revoked_at else None,
        amr=tuple(data.get("amr") or PASSWORD_AMR),
        auth_time=datetime.fromisoformat(auth_time) if auth_time else started_at,
        device=data.get("device", UNKNOWN_DEVICE),
    )


async def _seal_family(session: AsyncSession, ctx: Context, family: Family) -> None:
    family.row.details = await ctx.vault.seal_json(
        session,
        SYSTEM_KEY_ID,
        LoginFamily.details,
        family.row.id,
        {
            "account": family.account_id,
            "started_at": family.started_at.isoformat(),
            "last_at": family.last_at.isoformat(),
            "revoked_at": family.revoked_at.isoformat() if family.revoked_at else None,
            "amr": list(family.amr),
            "auth_time": (family.auth_time or family.started_at).isoformat(),
            "device": family.device,
        },
    )


async def _issue(
    session: AsyncSession, ctx: Context, account: Account, family: Family
) -> TokenPair:
    refresh = secrets.token_urlsafe(32)
    token_id = new_id()
    session.add(
        RefreshToken(
            id=token_id,
            family_id=family.row.id,
            token_hash=_hash(refresh),
            spent=False,
            details=await ctx.vault.seal_json(
                session,
                SYSTEM_KEY_ID,
                RefreshToken.details,
                token_id,
                {"created_at": ctx.clock.now().isoformat()},
            ),
        )
    )
    await session.flush()
    access = issue_access(ctx, account, family)
    return TokenPair(
        access_token=access, expires_in=ctx.settings.access_token_ttl, refresh_token=refresh
    )


def issue_access(ctx: Context, account: Account, family: Family) -> str:
    """An access token of the log-in, with its `amr` and `auth_time` (RFC 9470)."""
    auth_time = family.auth_time or family.started_at
    return ctx.tokens.issue(
        audience=ACCESS_AUDIENCE,
        typ=ACCESS_TYP,
        subject=account.id,
        ttl=ctx.settings.access_token_ttl,
        claims={
            "role": account.role.value,
            "sid": family.row.id,
            "amr": list(family.amr),
            "auth_time": int(auth_time.timestamp()),
        },
    ).token


async def _start_family(
    session: AsyncSession,
    ctx: Context,
    account: Account,
    amr: tuple[str, ...] = PASSWORD_AMR,
    device: str = UNKNOWN_DEVICE,
) -> Family:
    now = ctx.clock.now()
    family = Family(
        row=LoginFamily(id=new_id(), revoked=False, details=b""),
        account_id=account.id,
        started_at=now,
        last_at=now,
        revoked_at=None,
        amr=amr,
        auth_time=now,
        device=device,
    )
    await _seal_family(session, ctx, family)
    await SLOTS.add(session, ctx.vault, account.id, family.row)
    return family


async def login(
    session: AsyncSession,
    ctx: Context,
    *,
    email: str,
    password: str,
    address: str,
    device: str = UNKNOWN_DEVICE,
) -> TokenPair:
    settings = ctx.settings
    throttle = ctx.login_throttle
    email_ix = ctx.vault.email_index(email)
    account_key = "account:" + email_ix.hex()
    address_key = "address:" + address
    wait = max(
        throttle.retry_after(account_key, settings.login_max_failures_per_account),
        throttle.retry_after(address_key, settings.login_max_failures_per_address),
    )
    if wait:
        raise RateLimited(wait, "Too many failed log-ins; try again later.")

    # A place for the hash before the database is asked: a flood's excess is
    # refused (503 busy) without holding a connection.
    with ctx.passwords.reserve():
        account = await find_by_email_index(session, email_ix)
        usable = account is not None and account.status in USABLE
        hashed = account.password_hash if usable and account else None
        ok = await ctx.passwords.verify(hashed, password)
    if not ok or account is None:
        throttle.fail(account_key)
        throttle.fail(address_key)
        audit.record(
            session, "auth.login_failed", target=account.id if account is not None else None
        )
        raise InvalidCredentials("The email or password is wrong.")

    throttle.clear(account_key)
    if account.status == AccountStatus.disabled:
        audit.record(session, "auth.login_refused", target=account.id)
        raise AccountDisabled("An admin disabled this account.")
    methods = factors.methods(await factors.factors_of(session, ctx, account))
    if methods:
        # No log-in yet: the second factor turns this token into one (app.mfa).
        ttl = ctx.settings.mfa_token_ttl
        issued = ctx.tokens.issue(audience=MFA_AUDIENCE, typ=MFA_TYP, subject=account.id, ttl=ttl)
        audit.record(
            session,
            "auth.login_password_ok",
            actor_id=account.id,
            actor_role=account.role.value,
            target=account.id,
        )
        raise MfaRequired(mfa_token=issued.token, expires_in=ttl, methods=methods)
    family = await _start_family(session, ctx, account, device=device)
    pair = await _issue(session, ctx, account, family)
    audit.record(
        session,
        "auth.login",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
    )
    return pair


async def login_with(
    session: AsyncSession,
    ctx: Context,
    account: Account,
    amr: tuple[str, ...],
    device: str = UNKNOWN_DEVICE,
) -> TokenPair:
    """Start a log-in that a second factor completed (`amr` says which)."""
    family = await _start_family(session, ctx, account, amr, device)
    pair = await _issue(session, ctx, account, family)
    audit.record(
        session,
        "auth.login",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
        details={"amr": list(amr)},
    )
    return pair


async def reauthenticate(
    session: AsyncSession, ctx: Context, account: Account, login_id: str, amr: tuple[str, ...]
) -> str:
    """Record a fresh authentication of the log-in (step-up, a factor proven): a new access
    token carrying it."""
    row = await session.get(LoginFamily, login_id)
    if row is None or row.revoked:
        raise Unauthorized("This session has ended.")
    family = await open_family(session, ctx, row)
    family.amr = amr
    family.auth_time = ctx.clock.now()
    await _seal_family(session, ctx, family)
    await session.flush()
    return issue_access(ctx, account, family)


async def revoke_others(session: AsyncSession, ctx: Context, account: Account, keep: str) -> int:
    """End every log-in of the account but `keep`; how many were ended."""
    ended = 0
    for row in await SLOTS.rows(session, ctx.vault, account.id):
        if row.id != keep and not row.revoked:
            await revoke_family(session, ctx, row.id)
            ended += 1
    return ended


async def revoke_family(session: AsyncSession, ctx: Context, family_id: str) -> None:
    """End a log-in: its refresh tokens, its access tokens and its sockets."""
    session.info.pop(_LIVE, None)
    emit(session, LoginRevoked(family_id))
    revoked = (
        await session.execute(
            update(LoginFamily)
            .where(LoginFamily.id == family_id, LoginFamily.revoked.is_(False))
            .values(revoked=True)
            .returning(LoginFamily.id)
        )
    ).scalar_one_or_none()
    if revoked is None:
        return
    row = await session.get(LoginFamily, family_id)
    assert row is not None
    await session.refresh(row)
    family = await open_family(session, ctx, row)
    family.revoked_at = ctx.clock.now()
    await _seal_family(session, ctx, family)
    await session.flush()


async def remove_families(session: AsyncSession, ctx: Context, account: Account) -> int:
    """Delete every log-in of the account at once (erasure); how many were live."""
    rows = await SLOTS.rows(session, ctx.vault, account.id)
    live = [row.id for row in rows if not row.revoked]
    for family_id in live:
        emit(session, LoginRevoked(family_id))
    await SLOTS.remove_all(session, ctx.vault, account.id)
    return len(live)


async def _dead_families(session: AsyncSession, ctx: Context, cutoff: datetime) -> list[Family]:
    """Log-in families that died (revoked, idle, or too old) before `cutoff`.

    Every time is sealed (decision note 0007), so each family is opened; a
    family's last use is when its newest refresh token was issued.
    """
    idle = timedelta(seconds=ctx.settings.refresh_idle_timeout)
    lifetime = timedelta(seconds=ctx.settings.refresh_max_lifetime)
    dead = []
    for row in (await session.execute(select(LoginFamily))).scalars():
        family = await open_family(session, ctx, row)
        died = min(family.last_at + idle, family.started_at + lifetime)
        if family.revoked_at is not None:
            died = min(died, family.revoked_at)
        if died <= cutoff:
            dead.append(family)
    return dead


async def purge_dead_logins(session: AsyncSession, ctx: Context, cutoff: datetime) -> int:
    """Delete the log-ins that died before `cutoff`, with their refresh tokens (retention).

    A spent token must outlive its use, or a replay of it could not be
    recognised: a family's rows go together, once the whole family is dead.
    The number of refresh tokens deleted.
    """
    deleted = 0
    for family in await _dead_families(session, ctx, cutoff):
        result = await session.execute(
            delete(RefreshToken).where(RefreshToken.family_id == family.row.id)
        )
        deleted += int(result.rowcount or 0)  # type: ignore[attr-defined]
        await SLOTS.remove(session, ctx.vault, family.account_id, family.row)
    return deleted


async def refresh(session: AsyncSession, ctx: Context, token: str) -> TokenPair:
    digest = _hash(token)
    row = (
        await session.execute(select(RefreshToken).where(RefreshToken.token_hash == digest))
    ).scalar_one_or_none()
    family_row = await session.get(LoginFamily, row.family_id) if row is not None else None
    if row is None or family_row is None or family_row.revoked:
        raise Unauthorized("Unknown or revoked refresh token.")
    family = await open_family(session, ctx, family_row)
    # Spending is one conditional update: of several requests presenting the
    # same token at once, exactly one wins; every other one is a reuse.
    won = (
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == row.id, RefreshToken.spent.is_(False))
            .values(spent=True)
            .returning(RefreshToken.id)
        )
    ).scalar_one_or_none()
    if won is None:
        await revoke_family(session, ctx, family.row.id)
        audit.record(
            session,
            "auth.refresh_reused",
            actor_id=family.account_id,
            target=family.account_id,
            details={"family": family.row.id},
        )
        raise RefreshReused("This refresh token was already used; the session is revoked.")
    now = ctx.clock.now()
    created = await ctx.vault.open_json(
        session, SYSTEM_KEY_ID, RefreshToken.details, row.id, row.details
    )
    idle = timedelta(seconds=ctx.settings.refresh_idle_timeout)
    lifetime = timedelta(seconds=ctx.settings.refresh_max_lifetime)
    if (
        datetime.fromisoformat(created["created_at"]) + idle <= now
        or family.started_at + lifetime <= now
    ):
        raise Unauthorized("The refresh token has expired.", code="token_expired")
    account = await find_active(session, family.account_id)
    if account is None:
        raise Unauthorized("Unknown or revoked refresh token.")
    family.last_at = now
    await _seal_family(session, ctx, family)
    pair = await _issue(session, ctx, account, family)
    audit.record(
        session,
        "auth.refresh",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
    )
    return pair


async def login_is_live(session: AsyncSession, family_id: str) -> bool:
    live = await session.execute(
        select(LoginFamily.id).where(LoginFamily.id == family_id, LoginFamily.revoked.is_(False))
    )
    return live.first() is not None


async def live_account(session: AsyncSession, account_id: str, login_id: str) -> Account:
    """The account behind a token, while it is active and the token's log-in is live.

    What every access token and every room token needs, whatever else it is
    for: an erased account, or a log-in ended by log-out or a reused refresh
    token, is 401 `token_invalid` (on the room socket, 4001).
    """
    # Asked again within one unit of work (the caller's principal, then the
    # room's admission rule), the answer is the one it already had.
    known = session.info.get(_LIVE)
    if known is not None and known[0] == (account_id, login_id):
        return cast(Account, known[1])
    account = await find_active(session, account_id)
    if account is None or not await login_is_live(session, login_id):
        raise Unauthorized("This session has ended.")
    session.info[_LIVE] = ((account_id, login_id), account)
    return account


_LIVE = "auth.live_account"


async def logout(session: AsyncSession, ctx: Context, account: Account, family_id: str) -> None:
    await revoke_family(session, ctx, family_id)
    audit.record(
        session,
        "auth.logout",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
    )


@dataclass(frozen=True)
class Principal:
    account: Account
    login_id: str
    claims: dict[str, object]
    #: How and when the log-in was last authenticated (RFC 8176 `amr`, `auth_time`).
    amr: tuple[str, ...] = PASSWORD_AMR
    auth_time: datetime | None = None

    @property
    def id(self) -> str:
        return self.account.id

    @property
    def role(self) -> str:
        return self.account.role.value
