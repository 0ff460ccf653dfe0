"""Devices: the end-to-end public keys of an account's app installations.

The label is sealed under the owner's data key; the public key is stored as
the raw bytes the client sent and never parsed. A revoked device keeps its
row (revoked_at set) and disappears from every answer.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import audit
from app.core.clock import Clock
from app.core.errors import Conflict, NotFound
from app.core.events import emit
from app.core.vault import Vault
from app.devices.schemas import DeviceOut
from app.models import Account, Device
from app.models.base import new_id

MAX_ACTIVE_DEVICES = 100


class TooManyDevices(Conflict):
    code, title = "too_many_devices", "Too many devices"


def encode_key(raw: bytes) -> str:
    """base64url without padding (RFC 4648 §5), as every binary value is sent."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _is_id(value: str) -> bool:
    # Ids are canonical UUID strings. Anything else cannot name a device, and
    # is never sent to the database (PostgreSQL refuses a NUL that SQLite
    # would compare): both answer the same.
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


async def register(
    session: AsyncSession,
    vault: Vault,
    clock: Clock,
    account: Account,
    *,
    label: str,
    public_key: bytes,
) -> Device:
    # Registrations of one account take turns, so two at once cannot both see
    # room for one more: PostgreSQL by this row lock; SQLite (which drops FOR
    # UPDATE) serializes writers, and the count below runs after our insert.
    if account.data_key_id is None:  # shredded: the account is being erased
        raise NotFound("No such account.")
    await session.execute(select(Account.id).where(Account.id == account.id).with_for_update())
    device_id = new_id()
    device = Device(
        id=device_id,
        account_id=account.id,
        label=await vault.seal(session, account.data_key_id, Device.label, device_id, label),
        public_key=public_key,
        created_at=clock.now(),
    )
    session.add(device)
    await session.flush()
    active = await session.scalar(
        select(func.count())
        .select_from(Device)
        .where(Device.account_id == account.id, Device.revoked_at.is_(None))
    )
    if (active or 0) > MAX_ACTIVE_DEVICES:
        raise TooManyDevices(
            f"An account holds at most {MAX_ACTIVE_DEVICES} active devices; revoke one first."
        )
    emit(
        session,
        {
            "kind": "device_added",
            "account": account.id,
            "device": device_id,
            "public_key": encode_key(public_key),
        },
    )
    audit.record(
        session,
        "device.register",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
        details={"device": device_id},
    )
    return device


async def list_active(session: AsyncSession, account_id: str) -> list[Device]:
    """The account's active devices, oldest first."""
    return (await active_devices_of(session, [account_id]))[account_id]


async def active_device(session: AsyncSession, account_id: str, device_id: str) -> Device | None:
    """The account's own device `device_id`, unless it is revoked or unknown."""
    if not _is_id(device_id):
        return None
    return (
        await session.execute(
            select(Device).where(
                Device.id == device_id,
                Device.account_id == account_id,
                Device.revoked_at.is_(None),
            )
        )
    ).scalar_one_or_none()


async def active_devices_of(
    session: AsyncSession, account_ids: Sequence[str]
) -> dict[str, list[Device]]:
    """Every given account id mapped to its active devices (oldest first), in one query."""
    out: dict[str, list[Device]] = {account_id: [] for account_id in account_ids}
    if not out:
        return out
    rows = (
        await session.execute(
            select(Device)
            .where(Device.account_id.in_(list(out)), Device.revoked_at.is_(None))
            .order_by(Device.created_at, Device.id)
        )
    ).scalars()
    for device in rows:
        out[device.account_id].append(device)
    return out


async def revoke(session: AsyncSession, clock: Clock, account: Account, device_id: str) -> None:
    """Revoke the account's own active device; anything else is not found.

    One conditional UPDATE, so two revocations at once succeed exactly once.
    """
    revoked = None
    if _is_id(device_id):
        revoked = (
            await session.execute(
                update(Device)
                .where(
                    Device.id == device_id,
                    Device.account_id == account.id,
                    Device.revoked_at.is_(None),
                )
                .values(revoked_at=clock.now())
                .returning(Device.id)
            )
        ).scalar_one_or_none()
    if revoked is None:
        raise NotFound("No such device.")
    emit(session, {"kind": "device_revoked", "account": account.id, "device": device_id})
    audit.record(
        session,
        "device.revoke",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
        details={"device": device_id},
    )


async def view(session: AsyncSession, vault: Vault, device: Device) -> DeviceOut:
    return DeviceOut(
        device_id=device.id,
        label=await vault.open(session, Device.label, device.id, device.label),
        public_key=encode_key(device.public_key),
        created_at=device.created_at,
    )
