"""The declarative base and the one-line declaration of an encrypted column."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, LargeBinary, MetaData, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, mapped_column

from app.core.vault import ENCRYPTED

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite stores naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def encrypted(*, nullable: bool = False) -> Any:
    """An AES-256-GCM field: ciphertext bytes, sealed and opened by the vault.

    The vault derives the associated data (table, column, row id) from the
    mapped attribute itself, so a ciphertext copied to another row or column
    fails to open. Every such column is marked, so a test can list them all.
    """
    return mapped_column(LargeBinary, nullable=nullable, info={ENCRYPTED: True})


def blind_index(*, nullable: bool = False, unique: bool = False, index: bool = True) -> Any:
    """HMAC-SHA256 of a value under the index key: equality look-ups only."""
    return mapped_column(
        LargeBinary(32), nullable=nullable, unique=unique, index=index and not unique
    )


def slot_index(*, nullable: bool = False) -> Any:
    """HMAC(index key, purpose | owner | i) on an owner's i-th row: unique, groups nothing.

    See `app.core.slots`: the value occurs once in the database, so the rows
    of one owner cannot be told apart from anyone else's.
    """
    return mapped_column(LargeBinary(32), nullable=nullable, unique=True)
