"""Data keys in the database, and sealing and opening of encrypted columns.

Every person's records are sealed under that person's own data key; records
that belong to no one person (the audit payload) use the system data key.
A sealed field does not say which key sealed it: the caller names the owner
whose record it opens (decision note 0007).
Data keys are stored wrapped by the newest master key, through a `DataKeys`
repository (the table lives with the models: `app.models.data_key`);
unwrapped keys are cached in memory. Destroying a data key shreds
everything it sealed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.core import encryption
from app.core.clock import Clock
from app.core.codec import new_id
from app.core.keys import KeySource

#: The data key of records that belong to no one person (the audit payload).
SYSTEM_KEY_ID = "system"
#: The `info` marker of an encrypted column (`app.models.base.encrypted`).
ENCRYPTED = "encrypted"


class DataKeyDestroyed(Exception):
    """The data key is gone: the records it sealed can no longer be read."""


@dataclass(frozen=True)
class WrappedKey:
    """A data key as stored: wrapped by the master key `master_kid`."""

    id: str
    master_kid: str
    wrapped: bytes


class DataKeys(Protocol):
    """Where the wrapped data keys are kept, by id."""

    async def get(self, session: AsyncSession, key_id: str) -> bytes | None:
        """The wrapped key, or None once it is destroyed (or never was)."""
        ...

    async def create(self, session: AsyncSession, key: WrappedKey) -> None: ...

    async def destroy(self, session: AsyncSession, key_id: str) -> None: ...

    async def not_under(self, session: AsyncSession, master_kid: str) -> list[WrappedKey]:
        """Every key wrapped by another master key than `master_kid`."""
        ...

    async def rewrap(self, session: AsyncSession, key: WrappedKey) -> None:
        """Store an existing key wrapped anew."""
        ...


def _where(attr: InstrumentedAttribute[Any]) -> tuple[str, str]:
    column = attr.property.columns[0]
    if not column.info.get(ENCRYPTED):
        raise TypeError(f"{attr} is not an encrypted column")
    return column.table.name, column.name


class Vault:
    def __init__(
        self,
        source: KeySource,
        keyring: encryption.Keyring,
        index_key: bytes,
        clock: Clock,
        keys: DataKeys,
    ) -> None:
        self._source = source
        self._keys = keys
        self.keyring = keyring
        self._index_key = index_key
        self._clock = clock
        self._cache: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"Vault(keyring={self.keyring!r}, cached={len(self._cache)})"

    # -- data keys ---------------------------------------------------------
    async def create_data_key(self, session: AsyncSession, key_id: str | None = None) -> str:
        key_id = key_id or new_id()
        key = encryption.generate_key()
        # `confide keys rotate` may have added a newer master key since this
        # process started: wrap under the newest, or the rotation leaves new
        # data keys behind under a master key that is about to be retired.
        self.keyring = self._source.keyring()
        wrapped = encryption.wrap_data_key(self.keyring, key_id, key)
        await self._keys.create(session, WrappedKey(key_id, self.keyring.current_kid, wrapped))
        self._cache[key_id] = key
        return key_id

    async def ensure_system_key(self, session: AsyncSession) -> None:
        if await self._keys.get(session, SYSTEM_KEY_ID) is None:
            await self.create_data_key(session, SYSTEM_KEY_ID)

    async def destroy_data_key(self, session: AsyncSession, key_id: str) -> None:
        """Delete the key, which shreds what it sealed, and drop this instance's copy."""
        await self._keys.destroy(session, key_id)
        self.forget(key_id)

    async def data_key(self, session: AsyncSession, key_id: str) -> bytes:
        cached = self._cache.get(key_id)
        if cached is not None:
            return cached
        row = await self._keys.get(session, key_id)
        if row is None:
            raise DataKeyDestroyed(key_id)
        if encryption.wrapped_kid(row) not in self.keyring.kids():
            # A master key added by `confide keys rotate` after this process started.
            self.keyring = self._source.keyring()
        key = encryption.unwrap_data_key(self.keyring, key_id, row)
        self._cache[key_id] = key
        return key

    def forget(self, key_id: str) -> None:
        self._cache.pop(key_id, None)

    async def rewrap_all(self, session: AsyncSession) -> int:
        """Re-wrap every data key not yet under the newest master key."""
        self.keyring = self._source.keyring()
        current = self.keyring.current_kid
        count = 0
        for stale in await self._keys.not_under(session, current):
            key = encryption.unwrap_data_key(self.keyring, stale.id, stale.wrapped)
            wrapped = encryption.wrap_data_key(self.keyring, stale.id, key)
            await self._keys.rewrap(session, WrappedKey(stale.id, current, wrapped))
            count += 1
        return count

    # -- fields -------------------------------------------------------------
    async def seal(
        self,
        session: AsyncSession,
        key_id: str,
        attr: InstrumentedAttribute[Any],
        row_id: str,
        plaintext: str,
    ) -> bytes:
        table, column = _where(attr)
        key = await self.data_key(session, key_id)
        return encryption.seal_str(
            key, key_id, plaintext, table=table, column=column, row_id=row_id
        )

    async def open(
        self,
        session: AsyncSession,
        key_id: str,
        attr: InstrumentedAttribute[Any],
        row_id: str,
        blob: bytes,
    ) -> str:
        """Open a field of the record of `key_id`'s owner (a sealed field names no key)."""
        table, column = _where(attr)
        key = await self.data_key(session, key_id)
        return encryption.open_str(
            key, blob, key_id=key_id, table=table, column=column, row_id=row_id
        )

    async def seal_json(
        self,
        session: AsyncSession,
        key_id: str,
        attr: InstrumentedAttribute[Any],
        row_id: str,
        value: Mapping[str, Any],
    ) -> bytes:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        return await self.seal(session, key_id, attr, row_id, text)

    async def open_json(
        self,
        session: AsyncSession,
        key_id: str,
        attr: InstrumentedAttribute[Any],
        row_id: str,
        blob: bytes,
    ) -> dict[str, Any]:
        value = json.loads(await self.open(session, key_id, attr, row_id, blob))
        assert isinstance(value, dict)
        return value

    # -- blind indexes -------------------------------------------------------
    def index(self, value: str, *, purpose: str) -> bytes:
        return encryption.blind_index(self._index_key, value, purpose=purpose)

    def email_index(self, email: str) -> bytes:
        return self.index(encryption.normalize_email(email), purpose="account.email")
