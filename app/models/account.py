from __future__ import annotations

import enum

from sqlalchemy import Enum, ForeignKey, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.core.codec import new_id
from app.models.base import Base, blind_index, encrypted


class Role(enum.StrEnum):
    client = "client"
    counselor = "counselor"
    admin = "admin"


class AccountStatus(enum.StrEnum):
    active = "active"
    disabled = "disabled"
    erased = "erased"


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=16))
    status: Mapped[AccountStatus] = mapped_column(
        Enum(AccountStatus, native_enum=False, length=16), default=AccountStatus.active
    )
    email_ix: Mapped[bytes] = blind_index(unique=True)
    email: Mapped[bytes] = encrypted()
    display_name: Mapped[bytes] = encrypted()
    password_hash: Mapped[str] = mapped_column(String(255))
    data_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("data_keys.id", ondelete="SET NULL"), nullable=True
    )
    # The creation time, sealed under the account's key: a dump shows no time.
    created: Mapped[bytes] = encrypted()
    # Where the person lives, an ISO 3166-2 code (`US-CO`), sealed under the
    # account's key; null until they say. Breach clocks use it (app.incidents).
    jurisdiction: Mapped[bytes | None] = encrypted(nullable=True)


# The look-ups that log-in and every request's caller need (app.auth), and that
# app.accounts offers the other domains: auth sits below accounts, whose
# endpoints need to know the caller.


async def find_by_email_index(session: AsyncSession, email_ix: bytes) -> Account | None:
    """The account whose email has this blind index, whatever its status."""
    found = await session.execute(select(Account).where(Account.email_ix == email_ix))
    return found.scalar_one_or_none()


async def find_active(session: AsyncSession, account_id: str) -> Account | None:
    """The account, unless it is unknown or erased."""
    account = await session.get(Account, account_id)
    if account is None or account.status != AccountStatus.active:
        return None
    return account
