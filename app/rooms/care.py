"""Care relationships: who is a counselor's client, by the client's own acceptance.

A client becomes a counselor's client by accepting that counselor's invitation
to a room (`app.rooms.invitations`). From then on the counselor may add the
client to further rooms directly and record disclosures about them; before
that, the counselor gets no more than an invitation that the client may
decline, and the client does not exist for the counselor's disclosures.

Storage (decision note 0008): one row per pair holding only
HMAC(index key, counselor id + client id). The server asks "is C a client of
H" by computing it; a dump sees a value that occurs once and leads to neither
person.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.codec import new_id
from app.core.vault import Vault
from app.models import Account, CareRelationship

PURPOSE = "care.pair"


def care_index(vault: Vault, counselor_id: str, client_id: str) -> bytes:
    return vault.index(f"{counselor_id}:{client_id}", purpose=PURPOSE)


async def has_care(session: AsyncSession, vault: Vault, counselor_id: str, client_id: str) -> bool:
    """Has the client `client_id` accepted an invitation of the counselor `counselor_id`?"""
    found = await session.execute(
        select(CareRelationship.id).where(
            CareRelationship.pair_ix == care_index(vault, counselor_id, client_id)
        )
    )
    return found.first() is not None


async def record_care(
    session: AsyncSession, vault: Vault, counselor_id: str, client_id: str
) -> None:
    """Record the pair, once (INSERT … ON CONFLICT DO NOTHING: a concurrent
    acceptance of another invitation of the same counselor is no error)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        insert(CareRelationship)
        .values(id=new_id(), pair_ix=care_index(vault, counselor_id, client_id))
        .on_conflict_do_nothing(index_elements=["pair_ix"])
    )


async def forget(session: AsyncSession, vault: Vault, account_id: str) -> None:
    """Delete every pair the account is part of, on either side (erasure).

    The pairs name no one, so every possible pair with another account is
    computed: one HMAC per account, in chunks.
    """
    others = list((await session.execute(select(Account.id))).scalars())
    indexes = [
        ix
        for other in others
        for ix in (care_index(vault, other, account_id), care_index(vault, account_id, other))
    ]
    for start in range(0, len(indexes), 500):
        await session.execute(
            delete(CareRelationship).where(
                CareRelationship.pair_ix.in_(indexes[start : start + 500])
            )
        )
