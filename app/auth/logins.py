"""A person's own log-ins: list them, end one, and end all of them at once.

A log-in is a refresh family (`app.auth.service`); what is shown of it is
coarse: a device label from the User-Agent at log-in and times truncated to
the hour, all read from the family's sealed details.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import SLOTS, Family, open_family, revoke_family
from app.core.context import Context
from app.core.errors import NotFound


@dataclass(frozen=True)
class Login:
    id: str
    device: str
    created_at: datetime
    last_used_at: datetime


def coarse(moment: datetime) -> datetime:
    """A time truncated to its hour."""
    return moment.replace(minute=0, second=0, microsecond=0)


def _live(ctx: Context, family: Family, now: datetime) -> bool:
    idle = timedelta(seconds=ctx.settings.refresh_idle_timeout)
    lifetime = timedelta(seconds=ctx.settings.refresh_max_lifetime)
    return (
        not family.row.revoked
        and family.revoked_at is None
        and now < family.started_at + lifetime
        and now < family.last_at + idle
    )


async def _live_families(session: AsyncSession, ctx: Context, account_id: str) -> list[Family]:
    now = ctx.clock.now()
    families = [
        await open_family(session, ctx, row)
        for row in await SLOTS.rows(session, ctx.vault, account_id)
    ]
    return [family for family in families if _live(ctx, family, now)]


async def list_logins(session: AsyncSession, ctx: Context, account_id: str) -> list[Login]:
    """The account's live log-ins (not ended, not idle or older than their lifetime)."""
    return [
        Login(
            id=family.row.id,
            device=family.device,
            created_at=coarse(family.started_at),
            last_used_at=coarse(family.last_at),
        )
        for family in await _live_families(session, ctx, account_id)
    ]


async def end_login(session: AsyncSession, ctx: Context, account_id: str, login_id: str) -> None:
    """End one of the account's log-ins; another's, or an ended one, is 404."""
    for family in await _live_families(session, ctx, account_id):
        if family.row.id == login_id:
            await revoke_family(session, ctx, login_id)
            return
    raise NotFound("No such log-in.")


async def end_all(
    session: AsyncSession, ctx: Context, account_id: str, *, keep: str | None = None
) -> int:
    """End every log-in of the account but `keep`: its tokens die, its sockets close with 4001.

    How many were ended.
    """
    ended = 0
    for row in await SLOTS.rows(session, ctx.vault, account_id):
        if row.id != keep and not row.revoked:
            await revoke_family(session, ctx, row.id)
            ended += 1
    return ended
