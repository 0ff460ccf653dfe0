"""A device's MLS KeyPackages: its stock, uploads, and taking one out.

Each package is checked on upload (an `MLSMessage` of wire format 5, a
KeyPackage of version 1 and cipher suite 2, at most `MAX_KEY_PACKAGE_BYTES`)
and stored sealed under the owner's data key, at one of the device's slot
indexes (`app.core.slots`, owner = the device id): a dump sees unrelated
unique values, not whose device a package belongs to. A device also keeps
one last-resort package, at an index of its own; it is handed out only when
the others are gone, and kept.

Taking a package out is one conditional `DELETE ... RETURNING` of the
device's last slot, with the device's writers taking turns (the slots' keyed
advisory lock on PostgreSQL; on SQLite the caller has written first, so its
transaction holds the one write lock): under concurrent claims each package
is handed out once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import mls
from app.core.codec import b64url_decode, b64url_encode, new_id
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.slots import Slots
from app.core.vault import Vault
from app.devices.service import active_device
from app.models import Account, KeyPackage

#: An encoded KeyPackage is ~300-500 bytes with a basic credential.
MAX_KEY_PACKAGE_BYTES = 8 * 1024
#: Packages in one upload.
MAX_BATCH = 100
#: Packages a device holds at most, the last-resort one aside.
MAX_STOCK = 500

SLOTS = Slots(KeyPackage.slot_ix, "key_package.device.slot")


class KeyPackageInvalid(ValidationFailed):
    code, title = "key_package_invalid", "Not a KeyPackage this server accepts"


class TooManyKeyPackages(Conflict):
    code, title = "too_many_key_packages", "Too many key packages"


@dataclass(frozen=True)
class Stock:
    count: int
    last_resort: bool


@dataclass(frozen=True)
class Taken:
    package: bytes
    ref: bytes
    last_resort: bool


def last_resort_index(vault: Vault, device_id: str) -> bytes:
    return vault.index(device_id, purpose="key_package.device.last_resort")


def check(encoded: str, *, index: int | None) -> tuple[bytes, bytes]:
    """The raw MLSMessage and its KeyPackageRef, or `KeyPackageInvalid`.

    `index` says which package of the upload failed (None: the last-resort one).
    """
    where = {"index": index} if index is not None else {"last_resort": True}
    if len(encoded) > -(-MAX_KEY_PACKAGE_BYTES // 3) * 4:
        raise KeyPackageInvalid(
            f"A key package is at most {MAX_KEY_PACKAGE_BYTES} bytes.", reason="too_large", **where
        )
    try:
        raw = b64url_decode(encoded)
    except ValueError:
        raise KeyPackageInvalid("Not base64url.", reason="base64url", **where) from None
    if len(raw) > MAX_KEY_PACKAGE_BYTES:
        raise KeyPackageInvalid(
            f"A key package is at most {MAX_KEY_PACKAGE_BYTES} bytes.", reason="too_large", **where
        )
    try:
        header = mls.parse(raw)
    except mls.MlsFormatError as error:
        raise KeyPackageInvalid(
            "Not an MLS message this server reads.", reason=error.reason, **where
        ) from None
    if not isinstance(header, mls.KeyPackageHeader):
        raise KeyPackageInvalid("Not a KeyPackage.", reason="wire_format", **where)
    if header.cipher_suite != mls.SUITE_P256 or header.ref is None:
        raise KeyPackageInvalid(
            "Confide uses MLS cipher suite 2 (MLS_128_DHKEMP256_AES128GCM_SHA256_P256) only.",
            reason="cipher_suite",
            **where,
        )
    return raw, header.ref


async def _own_device(
    session: AsyncSession, vault: Vault, account: Account, device_id: str
) -> None:
    if (
        account.data_key_id is None
        or await active_device(session, vault, account.id, device_id) is None
    ):
        raise NotFound("No such device.")


async def _row(session: AsyncSession, vault: Vault, account: Account, raw: bytes) -> KeyPackage:
    assert account.data_key_id is not None
    row_id = new_id()
    sealed = await vault.seal(
        session, account.data_key_id, KeyPackage.package, row_id, b64url_encode(raw)
    )
    # A random index until the row takes its slot: the write comes first.
    return KeyPackage(id=row_id, slot_ix=os.urandom(32), package=sealed)


async def stock(session: AsyncSession, vault: Vault, account: Account, device_id: str) -> Stock:
    await _own_device(session, vault, account, device_id)
    return await _stock(session, vault, device_id)


async def _stock(session: AsyncSession, vault: Vault, device_id: str) -> Stock:
    count = await SLOTS.count(session, vault, device_id)
    last = await session.scalar(
        select(KeyPackage.id).where(KeyPackage.slot_ix == last_resort_index(vault, device_id))
    )
    return Stock(count, last is not None)


async def upload(
    session: AsyncSession,
    vault: Vault,
    account: Account,
    device_id: str,
    packages: list[str],
    last_resort: str | None,
) -> Stock:
    """Add packages (and replace the last-resort one) of the account's own device.

    Every package is checked before anything is written: one bad package
    refuses the whole upload.
    """
    await _own_device(session, vault, account, device_id)
    raws = [check(encoded, index=i) for i, encoded in enumerate(packages)]
    last_raw = check(last_resort, index=None)[0] if last_resort is not None else None
    rows = [await _row(session, vault, account, raw) for raw, _ref in raws]
    last_row = await _row(session, vault, account, last_raw) if last_raw is not None else None
    session.add_all(rows + ([last_row] if last_row is not None else []))
    await session.flush()
    await SLOTS.lock(session, vault, device_id)
    n = await SLOTS.count(session, vault, device_id)
    if n + len(rows) > MAX_STOCK:
        raise TooManyKeyPackages(
            f"A device holds at most {MAX_STOCK} key packages; it holds {n}.", count=n
        )
    for i, row in enumerate(rows):
        row.slot_ix = SLOTS.ix(vault, device_id, n + i)
    if last_row is not None:
        index = last_resort_index(vault, device_id)
        await session.execute(delete(KeyPackage).where(KeyPackage.slot_ix == index))
        last_row.slot_ix = index
    await session.flush()
    return await _stock(session, vault, device_id)


async def take(session: AsyncSession, vault: Vault, owner: Account, device_id: str) -> Taken | None:
    """Hand out one package of `owner`'s device `device_id`, or None if it has none.

    The newest one is taken (its slot is the last, so no row moves); the
    last-resort package only when no other is left, and it stays. On SQLite
    the caller must have written in this transaction already.
    """
    key_id = owner.data_key_id
    if key_id is None:
        return None
    await SLOTS.lock(session, vault, device_id)
    found: tuple[str, bytes] | None = None
    last_resort = False
    for _attempt in range(3):
        n = await SLOTS.count(session, vault, device_id)
        if n == 0:
            break
        taken = (
            await session.execute(
                delete(KeyPackage)
                .where(KeyPackage.slot_ix == SLOTS.ix(vault, device_id, n - 1))
                .returning(KeyPackage.id, KeyPackage.package)
            )
        ).first()
        if taken is not None:
            found = (taken[0], taken[1])
            break
    if found is None:
        row = (
            await session.execute(
                select(KeyPackage.id, KeyPackage.package).where(
                    KeyPackage.slot_ix == last_resort_index(vault, device_id)
                )
            )
        ).first()
        if row is None:
            return None
        found, last_resort = (row[0], row[1]), True
    text = await vault.open(session, key_id, KeyPackage.package, found[0], found[1])
    raw = b64url_decode(text)
    return Taken(raw, mls.key_package_ref(raw[4:]), last_resort)


async def remove_all(session: AsyncSession, vault: Vault, device_id: str) -> None:
    """Delete every package of the device (it is revoked, or its account erased)."""
    await SLOTS.remove_all(session, vault, device_id)
    await session.execute(
        delete(KeyPackage).where(KeyPackage.slot_ix == last_resort_index(vault, device_id))
    )
