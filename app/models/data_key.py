from __future__ import annotations

from sqlalchemy import LargeBinary, String, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.core.vault import WrappedKey
from app.models.base import Base


class DataKey(Base):
    """A data key, wrapped by a master key. Deleting the row shreds what it sealed."""

    __tablename__ = "data_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    master_kid: Mapped[str] = mapped_column(String(32), index=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary(128))


class DataKeyRows:
    """The vault's `DataKeys`: wrapped data keys as rows of `data_keys`."""

    async def get(self, session: AsyncSession, key_id: str) -> bytes | None:
        found = await session.execute(select(DataKey.wrapped).where(DataKey.id == key_id))
        return found.scalar_one_or_none()

    async def create(self, session: AsyncSession, key: WrappedKey) -> None:
        session.add(DataKey(id=key.id, master_kid=key.master_kid, wrapped=key.wrapped))
        await session.flush()

    async def destroy(self, session: AsyncSession, key_id: str) -> None:
        await session.execute(delete(DataKey).where(DataKey.id == key_id))

    async def not_under(self, session: AsyncSession, master_kid: str) -> list[WrappedKey]:
        rows = await session.execute(
            select(DataKey.id, DataKey.master_kid, DataKey.wrapped).where(
                DataKey.master_kid != master_kid
            )
        )
        return [WrappedKey(key_id, kid, wrapped) for key_id, kid, wrapped in rows]

    async def rewrap(self, session: AsyncSession, key: WrappedKey) -> None:
        await session.execute(
            update(DataKey)
            .where(DataKey.id == key.id)
            .values(master_kid=key.master_kid, wrapped=key.wrapped)
        )
