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

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as accounts
from app.accounts.passwords import verify_password
from app.auth.schemas import TokenPair
from app.core import audit
from app.core.context import Context
from app.core.errors import InvalidCredentials, RateLimited, RefreshReused, Unauthorized
from app.core.events import emit
from app.core.tokens import ACCESS_AUDIENCE, ACCESS_TYP
from app.models import Account, RefreshToken
from app.models.base import new_id


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def _issue(
    session: AsyncSession,
    ctx: Context,
    account: Account,
    family_id: str,
    family_started_at: datetime,
) -> TokenPair:
    refresh = secrets.token_urlsafe(32)
    session.add(
        RefreshToken(
            id=new_id(),
            family_id=family_id,
            account_id=account.id,
            token_hash=_hash(refresh),
            family_started_at=family_started_at,
            created_at=ctx.clock.now(),
        )
    )
    await session.flush()
    ttl = ctx.settings.access_token_ttl
    access = ctx.tokens.issue(
        audience=ACCESS_AUDIENCE,
        typ=ACCESS_TYP,
        subject=account.id,
        ttl=ttl,
        claims={"role": account.role.value, "sid": family_id},
    )
    return TokenPair(access_token=access.token, expires_in=ttl, refresh_token=refresh)


async def login(
    session: AsyncSession, ctx: Context, *, email: str, password: str, address: str
) -> TokenPair:
    settings = ctx.settings
    throttle = ctx.login_throttle
    account_key = "account:" + ctx.vault.email_index(email).hex()
    address_key = "address:" + address
    wait = max(
        throttle.retry_after(account_key, settings.login_max_failures_per_account),
        throttle.retry_after(address_key, settings.login_max_failures_per_address),
    )
    if wait:
        raise RateLimited(wait, "Too many failed log-ins; try again later.")

    account = await accounts.find_by_email(session, ctx.vault, email)
    usable = account is not None and account.status == "active"
    ok = await verify_password(account.password_hash if usable and account else None, password)
    if not ok or account is None:
        throttle.fail(account_key)
        throttle.fail(address_key)
        audit.record(
            session, "auth.login_failed", target=account.id if account is not None else None
        )
        raise InvalidCredentials("The email or password is wrong.")

    throttle.clear(account_key)
    pair = await _issue(session, ctx, account, new_id(), ctx.clock.now())
    audit.record(
        session,
        "auth.login",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
    )
    return pair


async def revoke_family(session: AsyncSession, ctx: Context, family_id: str) -> None:
    """End a log-in: its refresh tokens, its access tokens and its sockets."""
    emit(session, {"kind": "session_revoked", "sid": family_id})
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=ctx.clock.now())
    )


async def refresh(session: AsyncSession, ctx: Context, token: str) -> TokenPair:
    row = (
        await session.execute(select(RefreshToken).where(RefreshToken.token_hash == _hash(token)))
    ).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        raise Unauthorized("Unknown or revoked refresh token.")
    now = ctx.clock.now()
    if row.spent_at is not None:
        await revoke_family(session, ctx, row.family_id)
        audit.record(
            session,
            "auth.refresh_reused",
            actor_id=row.account_id,
            target=row.account_id,
            details={"family": row.family_id},
        )
        raise RefreshReused("This refresh token was already used; the session is revoked.")
    idle = timedelta(seconds=ctx.settings.refresh_idle_timeout)
    lifetime = timedelta(seconds=ctx.settings.refresh_max_lifetime)
    if row.created_at + idle <= now or row.family_started_at + lifetime <= now:
        raise Unauthorized("The refresh token has expired.", code="token_expired")
    account = await accounts.get_active(session, row.account_id)
    if account is None:
        raise Unauthorized("Unknown or revoked refresh token.")
    row.spent_at = now
    pair = await _issue(session, ctx, account, row.family_id, row.family_started_at)
    audit.record(
        session,
        "auth.refresh",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
    )
    return pair


async def session_is_live(session: AsyncSession, family_id: str) -> bool:
    live = await session.execute(
        select(RefreshToken.id)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .limit(1)
    )
    return live.first() is not None


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
    session_id: str
    claims: dict[str, object]

    @property
    def id(self) -> str:
        return self.account.id

    @property
    def role(self) -> str:
        return self.account.role.value
