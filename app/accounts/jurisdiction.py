"""Where a person is, as an ISO 3166-2 code (`US-CO`): the laws of that place apply.

The account's own setting is sealed under its data key (`Account.jurisdiction`),
so a dump shows no place, and erasure shreds it. `account_jurisdiction` is the
one look-up the other domains use (breach clocks in `app.incidents`): a client's
latest safety check-in (`app.safety`) first, where they said they were, then the
setting.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.core import audit
from app.core.context import Context
from app.core.encryption import DecryptionError
from app.core.vault import DataKeyDestroyed, Vault
from app.models import Account
from app.models.account import find_active
from app.safety import service as safety

#: ISO 3166-2: a country's alpha-2 code, a hyphen, one to three letters or digits.
PATTERN = r"^[A-Z]{2}-[A-Z0-9]{1,3}$"
MAX_CHARS = 6


async def of_account(session: AsyncSession, vault: Vault, account: Account) -> str | None:
    """The account's own setting; None when unset or shredded."""
    if account.jurisdiction is None or account.data_key_id is None:
        return None
    try:
        return await vault.open(
            session, account.data_key_id, Account.jurisdiction, account.id, account.jurisdiction
        )
    except (DataKeyDestroyed, DecryptionError):
        return None


async def account_jurisdiction(session: AsyncSession, ctx: Context, account_id: str) -> str | None:
    """Where the account's person is, for the laws that follow them; None if unknown.

    The sources, first that answers: the jurisdiction of the client's latest
    safety check-in, in any room, then the account's own setting.
    """
    account = await find_active(session, account_id)
    if account is None:
        return None
    checkins = await safety.all_of(session, ctx.vault, account)
    if checkins:
        return max(checkins, key=lambda c: c.recorded_at).jurisdiction
    return await of_account(session, ctx.vault, account)


async def set_jurisdiction(
    session: AsyncSession, vault: Vault, account: Account, jurisdiction: str | None
) -> None:
    """Set (or with None clear) the account's own jurisdiction."""
    key_id = account.data_key_id
    if key_id is None:
        return
    account.jurisdiction = (
        None
        if jurisdiction is None
        else await vault.seal(session, key_id, Account.jurisdiction, account.id, jurisdiction)
    )
    await session.flush()
    audit.record(
        session,
        "account.jurisdiction_update",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
    )
