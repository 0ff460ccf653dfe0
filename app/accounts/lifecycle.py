"""The account lifecycle: password change and reset, disable and enable, role changes.

Each action is audited with the affected account as its target, so it shows
in that person's access log; an admin's action names the admin as actor.
Whatever ends log-ins goes through `app.auth`, so their tokens die and their
sockets close on every instance.

A write to the account's row must not share a transaction with a write to a
row of its log-ins: PostgreSQL stamps every row a transaction writes with its
id (`xmin`), which a dump shows, and the same id on both would tell a thief
whose log-ins they are (tests/test_linker.py). So where the account's row
changes, its log-ins are deleted (`remove_families`: a deleted row is in no
dump), and a password change, which keeps the caller's log-in, ends the
others in a transaction of their own, before it writes the new hash.

Reset tokens are random (256 bits), shown once, and stored only as their
SHA-256 in `password_resets`, whose owner is a slot index and whose times
are sealed. A new reset voids the earlier ones, so an account has at most one
row: deleting it leaves the owner's slots dense.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as accounts
from app.accounts.errors import LastAdmin, ResetTokenInvalid, RoleChangeRefused
from app.accounts.passwords import check_strength
from app.accounts.schemas import AdminAccountOut, LoginOut
from app.auth import logins
from app.auth.service import Principal, remove_families
from app.core import audit
from app.core.close_codes import Close
from app.core.codec import new_id
from app.core.context import Context
from app.core.errors import InvalidCredentials, NotFound, RateLimited
from app.core.events import AccountClosed, emit
from app.core.slots import Slots
from app.core.vault import SYSTEM_KEY_ID
from app.models import Account, AccountStatus, PasswordReset, Role

RESETS = Slots(PasswordReset.slot_ix, "password_reset.owner.slot")
#: How long a reset token is good for.
RESET_TTL = timedelta(minutes=30)


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def _personal(session: AsyncSession, ctx: Context, account: Account) -> list[str]:
    """What a password must not be built from: the email and the name."""
    view = await accounts.view(session, ctx.vault, account)
    return [view.email, view.email.split("@")[0], view.display_name]


# -- password change -------------------------------------------------------------------
async def change_password(
    session: AsyncSession,
    ctx: Context,
    principal: Principal,
    *,
    current: str,
    new: str,
    address: str,
) -> None:
    """Set a new password after checking the current one; end every other log-in.

    A wrong current password is throttled with the log-in's counters (the
    same account and address keys), so it is no side door for guessing.
    """
    account = principal.account
    settings = ctx.settings
    throttle = ctx.login_throttle
    account_key = "account:" + account.email_ix.hex()
    address_key = "address:" + address
    wait = max(
        throttle.retry_after(account_key, settings.login_max_failures_per_account),
        throttle.retry_after(address_key, settings.login_max_failures_per_address),
    )
    if wait:
        raise RateLimited(wait, "Too many wrong passwords; try again later.")
    if not await ctx.passwords.verify(account.password_hash, current):
        throttle.fail(account_key)
        throttle.fail(address_key)
        audit.record(
            session,
            "account.password_change_failed",
            actor_id=account.id,
            actor_role=account.role.value,
            target=account.id,
        )
        raise InvalidCredentials("The current password is wrong.")
    throttle.clear(account_key)
    check_strength(new, personal=await _personal(session, ctx, account))
    # Its own unit of work (see the module's note); should the change fail
    # after it, the other log-ins are ended all the same, the safe way to fail.
    async with ctx.transaction() as own:
        ended = await logins.end_all(own, ctx, account.id, keep=principal.login_id)
    account.password_hash = await ctx.passwords.hash(new)
    await session.flush()
    audit.record(
        session,
        "account.password_change",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
        details={"logins_ended": ended},
    )


# -- own log-ins -----------------------------------------------------------------------
async def my_logins(session: AsyncSession, ctx: Context, principal: Principal) -> list[LoginOut]:
    """The caller's live log-ins, most recently used first; `current` marks the caller's."""
    found = await logins.list_logins(session, ctx, principal.id)
    return [
        LoginOut(
            id=login.id,
            device=login.device,
            created_at=login.created_at,
            last_used_at=login.last_used_at,
            current=login.id == principal.login_id,
        )
        for login in sorted(found, key=lambda x: (x.last_used_at, x.created_at), reverse=True)
    ]


# -- reset -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Reset:
    token: str
    expires_at: datetime


async def start_reset(
    session: AsyncSession, ctx: Context, admin: Principal, account_id: str
) -> Reset:
    """A new single-use reset token for the account (the earlier ones are void)."""
    account = await target(session, account_id)
    token = secrets.token_urlsafe(32)
    now = ctx.clock.now()
    expires_at = now + RESET_TTL
    await RESETS.lock(session, ctx.vault, account.id)
    await RESETS.remove_all(session, ctx.vault, account.id)
    reset_id = new_id()
    row = PasswordReset(
        id=reset_id,
        token_hash=_hash(token),
        details=await ctx.vault.seal_json(
            session,
            SYSTEM_KEY_ID,
            PasswordReset.details,
            reset_id,
            {
                "account": account.id,
                "created_at": now.isoformat(),
                "expires_at": expires_at.isoformat(),
            },
        ),
    )
    await RESETS.add(session, ctx.vault, account.id, row)
    await session.flush()
    audit.record(
        session,
        "account.password_reset_start",
        actor_id=admin.id,
        actor_role=admin.role,
        target=account.id,
    )
    return Reset(token=token, expires_at=expires_at)


async def use_reset(
    session: AsyncSession, ctx: Context, *, token: str, new: str, address: str
) -> None:
    """Spend a reset token: set the new password and end every log-in of the account.

    Unknown, spent, voided and expired tokens answer alike (400
    `reset_token_invalid`), and are throttled per address like failed log-ins.
    Second factors stay as they were.
    """
    throttle = ctx.login_throttle
    address_key = "reset:" + address
    wait = throttle.retry_after(address_key, ctx.settings.login_max_failures_per_address)
    if wait:
        raise RateLimited(wait, "Too many invalid reset tokens; try again later.")
    row = (
        await session.execute(select(PasswordReset).where(PasswordReset.token_hash == _hash(token)))
    ).scalar_one_or_none()
    account: Account | None = None
    if row is not None:
        data = await ctx.vault.open_json(
            session, SYSTEM_KEY_ID, PasswordReset.details, row.id, row.details
        )
        if ctx.clock.now() < datetime.fromisoformat(data["expires_at"]):
            account = await session.get(Account, data["account"])
    if row is None or account is None or account.status == AccountStatus.erased:
        throttle.fail(address_key)
        raise ResetTokenInvalid("This reset token is unknown, used or expired.")
    check_strength(new, personal=await _personal(session, ctx, account))
    # Spending is one conditional delete: of two requests with the token, one wins.
    spent = (
        await session.execute(
            delete(PasswordReset).where(PasswordReset.id == row.id).returning(PasswordReset.id)
        )
    ).scalar_one_or_none()
    if spent is None:
        throttle.fail(address_key)
        raise ResetTokenInvalid("This reset token is unknown, used or expired.")
    account.password_hash = await ctx.passwords.hash(new)
    ended = await remove_families(session, ctx, account)
    await session.flush()
    audit.record(
        session,
        "account.password_reset",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
        details={"logins_ended": ended},
    )


async def purge_expired_resets(session: AsyncSession, ctx: Context) -> int:
    """Retention: delete the reset tokens that expired (each owner has one row at most, in its
    first slot, so deleting it leaves the owner's slots dense). How many were deleted."""
    now = ctx.clock.now()
    expired = []
    for row in (await session.execute(select(PasswordReset))).scalars():
        data = await ctx.vault.open_json(
            session, SYSTEM_KEY_ID, PasswordReset.details, row.id, row.details
        )
        if datetime.fromisoformat(data["expires_at"]) <= now:
            expired.append(row.id)
    if expired:
        await session.execute(delete(PasswordReset).where(PasswordReset.id.in_(expired)))
    return len(expired)


async def forget_resets(session: AsyncSession, ctx: Context, account_id: str) -> None:
    """Erasure: delete the account's reset tokens."""
    await RESETS.remove_all(session, ctx.vault, account_id)


# -- admin: list, view -----------------------------------------------------------------
async def target(session: AsyncSession, account_id: str) -> Account:
    """The account an admin acts on: unknown or erased is 404."""
    account = await session.get(Account, account_id)
    if account is None or account.status == AccountStatus.erased:
        raise NotFound("No such account.")
    return account


async def find(session: AsyncSession, account_id: str) -> Account:
    """The account an admin looks at, erased ones included (their tombstone)."""
    account = await session.get(Account, account_id)
    if account is None:
        raise NotFound("No such account.")
    return account


async def search(
    session: AsyncSession,
    ctx: Context,
    *,
    email: str | None = None,
    role: Role | None = None,
    status: AccountStatus | None = None,
) -> list[Account]:
    """Every account matching the filters; the email through its blind index, exactly."""
    query = select(Account)
    if email is not None:
        query = query.where(Account.email_ix == ctx.vault.email_index(email))
    if role is not None:
        query = query.where(Account.role == role)
    if status is not None:
        query = query.where(Account.status == status)
    return list((await session.execute(query)).scalars())


async def admin_view(session: AsyncSession, ctx: Context, account: Account) -> AdminAccountOut:
    if account.status == AccountStatus.erased or account.data_key_id is None:
        return AdminAccountOut(
            id=account.id,
            email=None,
            display_name=None,
            role=account.role,
            status=account.status,
            created_at=None,
        )
    view = await accounts.view(session, ctx.vault, account)
    return AdminAccountOut(
        id=account.id,
        email=view.email,
        display_name=view.display_name,
        role=account.role,
        status=account.status,
        created_at=view.created_at,
    )


# -- admin: disable, enable, role ------------------------------------------------------
async def _keep_an_admin(session: AsyncSession, account: Account) -> None:
    """Refuse (409 `last_admin`) to take the last active admin away.

    The active admins' rows are taken first (PostgreSQL), in one order, so
    two admins disabling each other at once cannot both succeed.
    """
    if account.role != Role.admin or account.status != AccountStatus.active:
        return
    admins = (
        select(Account.id)
        .where(Account.role == Role.admin, Account.status == AccountStatus.active)
        .order_by(Account.id)
        .with_for_update()
    )
    await session.execute(admins)
    others = await session.scalar(
        select(func.count())
        .select_from(Account)
        .where(
            Account.role == Role.admin,
            Account.status == AccountStatus.active,
            Account.id != account.id,
        )
    )
    if not others:
        raise LastAdmin("The last active admin cannot be disabled or demoted.")


async def disable(
    session: AsyncSession, ctx: Context, admin: Principal, account_id: str
) -> Account:
    """Disable the account: log-in refused, every token dead, live sockets closed with 4012."""
    account = await target(session, account_id)
    if account.status == AccountStatus.disabled:
        return account
    await _keep_an_admin(session, account)
    account.status = AccountStatus.disabled
    # Sockets first, with 4012: the log-ins ended below would close them with 4001.
    emit(session, AccountClosed(account.id, Close.DISABLED, "account_disabled"))
    ended = await remove_families(session, ctx, account)
    await session.flush()
    audit.record(
        session,
        "account.disable",
        actor_id=admin.id,
        actor_role=admin.role,
        target=account.id,
        details={"logins_ended": ended},
    )
    return account


async def enable(session: AsyncSession, ctx: Context, admin: Principal, account_id: str) -> Account:
    """Enable a disabled account: its password logs in again (its old tokens stay dead)."""
    account = await target(session, account_id)
    if account.status == AccountStatus.active:
        return account
    account.status = AccountStatus.active
    await session.flush()
    audit.record(
        session,
        "account.enable",
        actor_id=admin.id,
        actor_role=admin.role,
        target=account.id,
    )
    return account


async def set_role(
    session: AsyncSession, ctx: Context, admin: Principal, account_id: str, role: Role
) -> Account:
    """Make a counselor an admin or an admin a counselor; every log-in of theirs ends,
    so the next tokens carry the new role. A client's role is not changed (409)."""
    actor_role = admin.role
    account = await target(session, account_id)
    if account.role == Role.client or role == Role.client:
        raise RoleChangeRefused("Only counselors and admins change roles, between the two.")
    if account.role == role:
        return account
    if account.role == Role.admin:
        await _keep_an_admin(session, account)
    previous = account.role
    account.role = role
    ended = await remove_families(session, ctx, account)
    await session.flush()
    audit.record(
        session,
        "account.role_change",
        actor_id=admin.id,
        actor_role=actor_role,
        target=account.id,
        details={"from": previous.value, "to": role.value, "logins_ended": ended},
    )
    return account
