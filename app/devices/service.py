"""Devices: the end-to-end public keys of an account's app installations.

A device row names no owner (see `app.models.Device`): label, public key and
times are sealed under the owner's data key, the owner is only a keyed hash
of (account, device) and a slot index. The public key is the raw bytes the
client sent, never parsed. A revoked device keeps its row (revoked set) and
disappears from every answer; erasure deletes the rows.

Every device brings a signing key (its MLS signature key) signed by the
account's identity key (`app.keys.statements`); the first device brings the
identity key itself. Each addition and revocation, and the identity key,
goes into the account's key log (`app.keys`), in the same transaction.
Devices registered before devices were signed have no signing key and no
log entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import audit
from app.core.clock import Clock
from app.core.codec import b64url_decode, b64url_encode, is_id
from app.core.errors import Conflict, NotFound
from app.core.events import DeviceAdded, DeviceRevoked, emit
from app.core.slots import Slots
from app.core.vault import Vault
from app.devices.schemas import DeviceOut
from app.keys import log as key_log
from app.keys import service as keys
from app.keys.statements import device_statement, verify
from app.models import Account, Device

MAX_ACTIVE_DEVICES = 100


class TooManyDevices(Conflict):
    code, title = "too_many_devices", "Too many devices"


class DeviceIdTaken(Conflict):
    code, title = "device_id_taken", "A device with this id exists"


SLOTS = Slots(Device.slot_ix, "device.owner.slot")


def owner_index(vault: Vault, account_id: str, device_id: str) -> bytes:
    return vault.index(f"{account_id}:{device_id}", purpose="device.owner")


@dataclass(frozen=True)
class DeviceInfo:
    """A device as its owner's key opens it."""

    id: str
    account_id: str
    label: str
    public_key: bytes
    signing_key: bytes | None
    signature: bytes | None
    created_at: datetime
    revoked_at: datetime | None
    row: Device

    @property
    def active(self) -> bool:
        return not self.row.revoked


def device_keys(device: DeviceInfo) -> tuple[str, str | None]:
    """What the room socket shows of a device: its public key and signing key (None
    for a device registered before devices were signed), base64url."""
    signing = b64url_encode(device.signing_key) if device.signing_key is not None else None
    return b64url_encode(device.public_key), signing


async def _open(session: AsyncSession, vault: Vault, account: Account, row: Device) -> DeviceInfo:
    assert account.data_key_id is not None
    key_id = account.data_key_id
    details = await vault.open_json(session, key_id, Device.details, row.id, row.details)
    revoked_at = details.get("revoked_at")
    signing_key, signature = details.get("signing_key"), details.get("signature")
    return DeviceInfo(
        id=row.id,
        account_id=account.id,
        label=await vault.open(session, key_id, Device.label, row.id, row.label),
        public_key=b64url_decode(details["public_key"]),
        signing_key=b64url_decode(signing_key) if signing_key else None,
        signature=b64url_decode(signature) if signature else None,
        created_at=datetime.fromisoformat(details["created_at"]),
        revoked_at=datetime.fromisoformat(revoked_at) if revoked_at else None,
        row=row,
    )


async def _seal_details(
    session: AsyncSession,
    vault: Vault,
    account: Account,
    device_id: str,
    public_key: bytes,
    created_at: datetime,
    revoked_at: datetime | None,
    signing_key: bytes | None,
    signature: bytes | None,
) -> bytes:
    assert account.data_key_id is not None
    details = {
        "public_key": b64url_encode(public_key),
        "created_at": created_at.isoformat(),
        "revoked_at": revoked_at.isoformat() if revoked_at else None,
    }
    if signing_key is not None and signature is not None:
        details |= {
            "signing_key": b64url_encode(signing_key),
            "signature": b64url_encode(signature),
        }
    return await vault.seal_json(session, account.data_key_id, Device.details, device_id, details)


@dataclass(frozen=True)
class NewDevice:
    """A device as its owner registers it, signed by the account's identity key."""

    id: str
    label: str
    public_key: bytes
    signing_key: bytes
    signature: bytes

    def signed_by(self, account_id: str, identity_key: bytes) -> bool:
        statement = device_statement(account_id, self.id, self.signing_key, self.public_key)
        return verify(identity_key, statement, self.signature)


async def register(
    session: AsyncSession,
    vault: Vault,
    clock: Clock,
    account: Account,
    new: NewDevice,
    *,
    identity_key: bytes | None,
) -> DeviceInfo:
    """Register a signed device; the first one brings the identity key.

    The signature is checked under the identity key in force, read under the
    account's key-log lock; any refusal raises, and the transaction, rolled
    back, leaves nothing behind.
    """
    # Registrations of one account take turns (the slot lock; on SQLite the
    # write that comes first), and the count runs after our own row is in, so
    # two at once cannot both see room for one more. The account's row is
    # not locked: a lock leaves the transaction's id on it (PostgreSQL
    # `xmax`), which would pair the account with its device in the data files.
    if account.data_key_id is None:  # shredded: the account is being erased
        raise NotFound("No such account.")
    if identity_key is not None and not new.signed_by(account.id, identity_key):
        raise keys.BadDeviceSignature("The identity key given did not sign this device.")
    device = await _add_row(session, vault, clock, account, new)
    log = await keys.writer(session, vault, clock, account)
    if log.identity is None:
        if identity_key is None:
            raise keys.IdentityKeyRequired(
                "The account has no identity key: its first device brings it (identity_key)."
            )
        await log.append(key_log.IDENTITY_SET, identity_key=identity_key)
    elif identity_key is not None:
        raise keys.IdentityKeyExists(
            "The account has an identity key; a new one replaces it only through "
            "POST /v1/me/identity/reset."
        )
    elif not new.signed_by(account.id, log.identity):
        raise keys.BadDeviceSignature("The account's identity key did not sign this device.")
    await _log_added(log, new)
    await log.finish()
    active = sum(not row.revoked for row in await SLOTS.rows(session, vault, account.id))
    if active > MAX_ACTIVE_DEVICES:
        raise TooManyDevices(
            f"An account holds at most {MAX_ACTIVE_DEVICES} active devices; revoke one first."
        )
    _announce_added(session, account.id, new)
    audit.record(
        session,
        "device.register",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
        details={"device": new.id},
    )
    return await _open(session, vault, account, device)


async def _add_row(
    session: AsyncSession, vault: Vault, clock: Clock, account: Account, new: NewDevice
) -> Device:
    assert account.data_key_id is not None
    if await session.get(Device, new.id) is not None:
        raise DeviceIdTaken("Choose another device id.")
    device = Device(
        id=new.id,
        owner_ix=owner_index(vault, account.id, new.id),
        revoked=False,
        label=await vault.seal(session, account.data_key_id, Device.label, new.id, new.label),
        details=await _seal_details(
            session,
            vault,
            account,
            new.id,
            new.public_key,
            clock.now(),
            None,
            new.signing_key,
            new.signature,
        ),
    )
    await SLOTS.add(session, vault, account.id, device)
    return device


def _announce_added(session: AsyncSession, account_id: str, new: NewDevice) -> None:
    """The `device` `added` event, with the keys contacts see."""
    emit(
        session,
        DeviceAdded(
            account_id, new.id, b64url_encode(new.public_key), b64url_encode(new.signing_key)
        ),
    )


async def _log_added(log: keys.Writer, new: NewDevice) -> None:
    await log.append(
        key_log.DEVICE_ADDED,
        device_id=new.id,
        signing_key=new.signing_key,
        public_key=new.public_key,
        signature=new.signature,
    )


async def reset_identity(
    session: AsyncSession,
    vault: Vault,
    clock: Clock,
    account: Account,
    identity_key: bytes,
    new: NewDevice,
) -> DeviceInfo:
    """Replace the account's identity key: revoke every device, then add `new` under the new key."""
    if account.data_key_id is None:
        raise NotFound("No such account.")
    if not new.signed_by(account.id, identity_key):
        raise keys.BadDeviceSignature("The new identity key did not sign this device.")
    revoked = []
    for info in await list_active(session, vault, account):
        if await _revoke_row(session, vault, clock, account, info.id) is not None:
            revoked.append(info)
    device = await _add_row(session, vault, clock, account, new)
    log = await keys.writer(session, vault, clock, account)
    if log.identity is None:
        raise keys.IdentityKeyMissing(
            "The account has no identity key to reset: register a device with one."
        )
    for info in revoked:
        if info.signing_key is not None:
            await log.append(key_log.DEVICE_REVOKED, device_id=info.id)
    await log.append(key_log.IDENTITY_RESET, identity_key=identity_key)
    await _log_added(log, new)
    await log.finish()
    for info in revoked:
        emit(session, DeviceRevoked(account.id, info.id))
    _announce_added(session, account.id, new)
    audit.record(
        session,
        "identity.reset",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
        details={"device": new.id, "revoked": [info.id for info in revoked]},
    )
    return await _open(session, vault, account, device)


async def all_of(
    session: AsyncSession, vault: Vault, account: Account, *, active_only: bool
) -> list[DeviceInfo]:
    """The account's devices (only the active ones, or all), oldest first."""
    return (await _devices_of(session, vault, [account], active_only=active_only))[account.id]


async def _devices_of(
    session: AsyncSession, vault: Vault, owners: Sequence[Account], *, active_only: bool
) -> dict[str, list[DeviceInfo]]:
    live = [a for a in owners if a.data_key_id is not None]
    rows = await SLOTS.rows_many(session, vault, [a.id for a in live])
    out: dict[str, list[DeviceInfo]] = {a.id: [] for a in owners}
    for account in live:
        # The revoked flag is plain: revoked devices are not even opened when unwanted.
        wanted = [row for row in rows[account.id] if not (active_only and row.revoked)]
        infos = [await _open(session, vault, account, row) for row in wanted]
        out[account.id] = sorted(infos, key=lambda d: (d.created_at, d.id))
    return out


async def list_active(session: AsyncSession, vault: Vault, account: Account) -> list[DeviceInfo]:
    """The account's active devices, oldest first."""
    return await all_of(session, vault, account, active_only=True)


async def active_device(
    session: AsyncSession, vault: Vault, account_id: str, device_id: str
) -> Device | None:
    """The account's own device `device_id`, unless it is revoked or unknown."""
    if not is_id(device_id):
        return None
    return (
        await session.execute(
            select(Device).where(
                Device.id == device_id,
                Device.owner_ix == owner_index(vault, account_id, device_id),
                Device.revoked.is_(False),
            )
        )
    ).scalar_one_or_none()


async def active_devices_of(
    session: AsyncSession, vault: Vault, account_ids: Sequence[str]
) -> dict[str, list[DeviceInfo]]:
    """Every given account id mapped to its active devices (oldest first).

    A constant number of queries, whatever the number of accounts (a room's
    participants, when a socket joins).
    """
    out: dict[str, list[DeviceInfo]] = {account_id: [] for account_id in account_ids}
    if not out:
        return out
    owners = list(
        (await session.execute(select(Account).where(Account.id.in_(list(out))))).scalars()
    )
    out.update(await _devices_of(session, vault, owners, active_only=True))
    return out


async def _revoke_row(
    session: AsyncSession, vault: Vault, clock: Clock, account: Account, device_id: str
) -> DeviceInfo | None:
    """Revoke the account's own active device (one conditional UPDATE), or None."""
    if not is_id(device_id):
        return None
    revoked = (
        await session.execute(
            update(Device)
            .where(
                Device.id == device_id,
                Device.owner_ix == owner_index(vault, account.id, device_id),
                Device.revoked.is_(False),
            )
            .values(revoked=True)
            .returning(Device.id)
        )
    ).scalar_one_or_none()
    if revoked is None:
        return None
    row = await session.get(Device, device_id)
    assert row is not None
    await session.refresh(row)
    info = await _open(session, vault, account, row)
    row.details = await _seal_details(
        session,
        vault,
        account,
        device_id,
        info.public_key,
        info.created_at,
        clock.now(),
        info.signing_key,
        info.signature,
    )
    await session.flush()
    return info


async def revoke(
    session: AsyncSession, vault: Vault, clock: Clock, account: Account, device_id: str
) -> None:
    """Revoke the account's own active device; anything else is not found.

    One conditional UPDATE, so two revocations at once succeed exactly once.
    """
    info = await _revoke_row(session, vault, clock, account, device_id)
    if info is None:
        raise NotFound("No such device.")
    if info.signing_key is not None:  # signed devices are in the key log
        log = await keys.writer(session, vault, clock, account)
        await log.append(key_log.DEVICE_REVOKED, device_id=device_id)
        await log.finish()
    emit(session, DeviceRevoked(account.id, device_id))
    audit.record(
        session,
        "device.revoke",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
        details={"device": device_id},
    )


@dataclass(frozen=True)
class Removed:
    """The devices an erasure deleted."""

    #: The ones that were active, each now revoked (`device_revoked`), sorted.
    active: list[str]
    #: Every device the account ever had, revoked ones included, sorted.
    every: list[str]


async def revoke_all_for(session: AsyncSession, vault: Vault, account: Account) -> Removed:
    """Delete every device row of the account (erasure), revoking the active ones.

    Other participants' apps stop encrypting to the revoked devices.
    """
    every = sorted(d.id for d in await all_of(session, vault, account, active_only=False))
    active = sorted(d.id for d in await list_active(session, vault, account))
    await SLOTS.remove_all(session, vault, account.id)
    for device_id in active:
        emit(session, DeviceRevoked(account.id, device_id))
    return Removed(active=active, every=every)


def view(device: DeviceInfo) -> DeviceOut:
    return DeviceOut(
        device_id=device.id,
        label=device.label,
        public_key=b64url_encode(device.public_key),
        signing_key=b64url_encode(device.signing_key) if device.signing_key else None,
        signature=b64url_encode(device.signature) if device.signature else None,
        created_at=device.created_at,
    )
