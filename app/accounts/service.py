"""Accounts: creation and reading. Email and display name are sealed under the
account's own data key; the email is found through its blind index."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.passwords import check_strength
from app.accounts.schemas import AccountOut
from app.core import audit
from app.core.clock import Clock
from app.core.codec import new_id
from app.core.encryption import DecryptionError
from app.core.errors import EmailTaken, NotFound, Unauthorized
from app.core.passwords import PasswordHasher
from app.core.vault import DataKeyDestroyed, Vault
from app.models import Account, AccountStatus, Role
from app.models.account import find_active, find_by_email_index

#: Not an argon2 hash: verification of any password against it fails.
UNUSABLE_PASSWORD = "!erased"


async def find_by_email(session: AsyncSession, vault: Vault, email: str) -> Account | None:
    return await find_by_email_index(session, vault.email_index(email))


async def get_active(session: AsyncSession, account_id: str) -> Account | None:
    return await find_active(session, account_id)


async def create_account(
    session: AsyncSession,
    vault: Vault,
    clock: Clock,
    passwords: PasswordHasher,
    *,
    email: str,
    password: str,
    display_name: str,
    role: Role,
    actor_id: str | None = None,
    actor_role: str | None = None,
) -> Account:
    check_strength(password, personal=[email, email.split("@")[0], display_name])
    email_ix = vault.email_index(email)
    # The hash's place before the database is asked (see auth.service.login).
    with passwords.reserve():
        if (
            await session.execute(select(Account.id).where(Account.email_ix == email_ix))
        ).first() is not None:
            raise EmailTaken("An account with this email already exists.")
        password_hash = await passwords.hash(password)
    account_id = new_id()
    key_id = await vault.create_data_key(session)
    account = Account(
        id=account_id,
        role=role,
        status=AccountStatus.active,
        email_ix=email_ix,
        email=await vault.seal(session, key_id, Account.email, account_id, email),
        display_name=await vault.seal(
            session, key_id, Account.display_name, account_id, display_name
        ),
        password_hash=password_hash,
        data_key_id=key_id,
        created=await vault.seal(
            session, key_id, Account.created, account_id, clock.now().isoformat()
        ),
    )
    session.add(account)
    try:
        await session.flush()
    except IntegrityError:
        # A concurrent registration of the same email won the race.
        raise EmailTaken("An account with this email already exists.") from None
    audit.record(
        session,
        "account.create",
        actor_id=actor_id or account_id,
        actor_role=actor_role or role.value,
        target=account_id,
        details={"role": role.value},
    )
    return account


async def view(session: AsyncSession, vault: Vault, account: Account) -> AccountOut:
    key_id = account.data_key_id
    if key_id is None:
        raise NotFound("No such account.")
    return AccountOut(
        id=account.id,
        email=await vault.open(session, key_id, Account.email, account.id, account.email),
        display_name=await vault.open(
            session, key_id, Account.display_name, account.id, account.display_name
        ),
        role=account.role,
        created_at=datetime.fromisoformat(
            await vault.open(session, key_id, Account.created, account.id, account.created)
        ),
    )


async def display_name(session: AsyncSession, vault: Vault, account: Account) -> str:
    """The account's name; empty once it is erased (its key is gone)."""
    if account.data_key_id is None:
        return ""
    try:
        return await vault.open(
            session, account.data_key_id, Account.display_name, account.id, account.display_name
        )
    except (DataKeyDestroyed, DecryptionError):
        return ""


# -- erasure ---------------------------------------------------------------------------
async def lock_for_erasure(session: AsyncSession, account: Account) -> None:
    """Take the account's row (an admin: every active admin's row), still active.

    PostgreSQL: two admins erasing themselves at once take the same rows in
    the same order, so the second waits, then sees the first one erased.
    SQLite ignores FOR UPDATE but serializes writers; the admin count
    (`active_admins`) runs after this transaction's own write, so it sees the
    first.
    """
    query = select(Account.id).where(Account.status == AccountStatus.active)
    if account.role == Role.admin:
        query = query.where(Account.role == Role.admin)
    else:
        query = query.where(Account.id == account.id)
    locked = set((await session.execute(query.order_by(Account.id).with_for_update())).scalars())
    if account.id not in locked:
        # Erased by a concurrent request with another of its tokens.
        raise Unauthorized("This session has ended.")


async def tombstone(session: AsyncSession, account: Account) -> None:
    """Leave the erased account's id, role and creation time: no email, name or password.

    Audit entries and disclosures recorded by a counselor name it by id.
    """
    account.status = AccountStatus.erased
    account.password_hash = UNUSABLE_PASSWORD
    # Random, unique: log-in by the email finds nothing, and it may register again.
    account.email_ix = secrets.token_bytes(32)
    account.email = b""
    account.display_name = b""
    account.created = b""
    account.jurisdiction = None
    await session.flush()


async def active_admins(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Account)
        .where(Account.role == Role.admin, Account.status == AccountStatus.active)
    )
    return int(count or 0)


async def shred(session: AsyncSession, vault: Vault, account: Account) -> str | None:
    """Destroy the account's data key: what it sealed can never be opened again.

    The id of the key destroyed, if the account still had one.
    """
    key_id = account.data_key_id
    account.data_key_id = None
    if key_id is not None:
        await vault.destroy_data_key(session, key_id)
    return key_id
