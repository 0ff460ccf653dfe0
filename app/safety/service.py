"""Safety check-ins and licensure: storage and the admission gate. Knows no room service.

A check-in (`SafetyCheckin`) is the client's latest one for a room, sealed
under the client's data key (erasure shreds it); recording again replaces it.
The room's hosts find it by computing `checkin_ix` from the room and the
client; the client lists all theirs by slot (export, erasure). Licensure
(`Licensure`) is one row per counselor, sealed under the counselor's key.
Who may read or write what is `app.rooms.checkins` (check-ins, by room
membership) and the admin endpoints (licensure); when a room token is
refused is `gate`, which `app.rooms.service.admit_device` calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import Principal
from app.core import audit
from app.core.codec import is_id, new_id
from app.core.context import Context
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.slots import Slots
from app.core.vault import DataKeyDestroyed, Vault
from app.models import Account, Licensure, Role, Room, SafetyCheckin, SafetyCheckinMode
from app.models.account import find_active
from app.safety import rules
from app.safety.errors import JurisdictionMismatch, SafetyCheckinRequired

SLOTS = Slots(SafetyCheckin.owner_ix, "account.checkins.slot")
_MODES: dict[SafetyCheckinMode, rules.Mode] = {
    SafetyCheckinMode.required: "required",
    SafetyCheckinMode.optional: "optional",
    SafetyCheckinMode.off: "off",
}


@dataclass(frozen=True)
class Checkin:
    room_id: str
    account_id: str
    address: str
    jurisdiction: str
    contact_name: str
    contact_phone: str
    callback_phone: str
    recorded_at: datetime

    @property
    def valid_until(self) -> datetime:
        return rules.valid_until(self.recorded_at)

    def details(self) -> dict[str, Any]:
        return {
            "room": self.room_id,
            "location": {"address": self.address, "jurisdiction": self.jurisdiction},
            "emergency_contact": {"name": self.contact_name, "phone": self.contact_phone},
            "callback_phone": self.callback_phone,
            "recorded_at": self.recorded_at.isoformat(),
        }


def checkin_index(vault: Vault, room_id: str, account_id: str) -> bytes:
    return vault.index(f"{room_id}:{account_id}", purpose="safety.checkin")


def licensure_index(vault: Vault, account_id: str) -> bytes:
    return vault.index(account_id, purpose="safety.licensure")


def _open_checkin(account_id: str, data: dict[str, Any]) -> Checkin:
    return Checkin(
        room_id=data["room"],
        account_id=account_id,
        address=data["location"]["address"],
        jurisdiction=data["location"]["jurisdiction"],
        contact_name=data["emergency_contact"]["name"],
        contact_phone=data["emergency_contact"]["phone"],
        callback_phone=data["callback_phone"],
        recorded_at=datetime.fromisoformat(data["recorded_at"]),
    )


# -- check-ins -----------------------------------------------------------------------


async def record(session: AsyncSession, vault: Vault, account: Account, checkin: Checkin) -> None:
    """Store `checkin` as the account's latest for its room (replacing an older one)."""
    if account.data_key_id is None:
        raise DataKeyDestroyed(account.id)
    ix = checkin_index(vault, checkin.room_id, account.id)
    row = (
        await session.execute(select(SafetyCheckin).where(SafetyCheckin.checkin_ix == ix))
    ).scalar_one_or_none()
    fresh = row is None
    if row is None:
        row = SafetyCheckin(id=new_id(), checkin_ix=ix, details=b"")
    row.details = await vault.seal_json(
        session, account.data_key_id, SafetyCheckin.details, row.id, checkin.details()
    )
    try:
        if fresh:
            await SLOTS.add(session, vault, account.id, row)
        else:
            await session.flush()
    except IntegrityError:
        # Another check-in of the same client for the same room, at the same moment.
        raise Conflict(
            "A check-in for this room was being recorded at once; send it again."
        ) from None


async def latest(
    session: AsyncSession, vault: Vault, account: Account, room_id: str
) -> Checkin | None:
    """The account's latest check-in for the room, or None (none, or erased)."""
    if account.data_key_id is None:
        return None
    row = (
        await session.execute(
            select(SafetyCheckin).where(
                SafetyCheckin.checkin_ix == checkin_index(vault, room_id, account.id)
            )
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    try:
        data = await vault.open_json(
            session, account.data_key_id, SafetyCheckin.details, row.id, row.details
        )
    except DataKeyDestroyed:
        return None
    return _open_checkin(account.id, data)


async def all_of(session: AsyncSession, vault: Vault, account: Account) -> list[Checkin]:
    """Every check-in of the account (its latest per room), oldest first (the export)."""
    if account.data_key_id is None:
        return []
    found = []
    for row in await SLOTS.rows(session, vault, account.id):
        data = await vault.open_json(
            session, account.data_key_id, SafetyCheckin.details, row.id, row.details
        )
        found.append(_open_checkin(account.id, data))
    return sorted(found, key=lambda c: (c.recorded_at, c.room_id))


async def forget(session: AsyncSession, vault: Vault, account_id: str) -> None:
    """Delete every check-in of the account (erasure) and its licensure, if a counselor's."""
    await SLOTS.remove_all(session, vault, account_id)
    row = await _licensure_row(session, vault, account_id)
    if row is not None:
        await session.delete(row)
        await session.flush()


# -- licensure -----------------------------------------------------------------------


async def _licensure_row(session: AsyncSession, vault: Vault, account_id: str) -> Licensure | None:
    return (
        await session.execute(
            select(Licensure).where(Licensure.owner_ix == licensure_index(vault, account_id))
        )
    ).scalar_one_or_none()


async def licensure_of(session: AsyncSession, vault: Vault, account: Account) -> list[str]:
    """The jurisdictions the account is licensed for (none recorded: none)."""
    row = await _licensure_row(session, vault, account.id)
    if row is None or account.data_key_id is None:
        return []
    try:
        data = await vault.open_json(
            session, account.data_key_id, Licensure.details, row.id, row.details
        )
    except DataKeyDestroyed:
        return []
    return list(data["jurisdictions"])


async def set_licensure(
    session: AsyncSession,
    vault: Vault,
    account: Account,
    jurisdictions: Sequence[str],
    now: datetime,
) -> list[str]:
    """Replace the account's licensed jurisdictions; the stored list (sorted, no repeats)."""
    if account.data_key_id is None:
        raise DataKeyDestroyed(account.id)
    stored = sorted(set(jurisdictions))
    row = await _licensure_row(session, vault, account.id)
    if row is None:
        row = Licensure(id=new_id(), owner_ix=licensure_index(vault, account.id), details=b"")
        session.add(row)
    row.details = await vault.seal_json(
        session,
        account.data_key_id,
        Licensure.details,
        row.id,
        {"jurisdictions": stored, "updated_at": now.isoformat()},
    )
    await session.flush()
    return stored


async def hosts_licensure(
    session: AsyncSession, vault: Vault, host_ids: Sequence[str]
) -> list[list[str]]:
    """Each host's licensed jurisdictions."""
    out = []
    for host_id in host_ids:
        host = await session.get(Account, host_id)
        out.append(await licensure_of(session, vault, host) if host is not None else [])
    return out


async def is_licensed(
    session: AsyncSession, vault: Vault, jurisdiction: str, host_ids: Sequence[str]
) -> bool:
    return rules.licensed(jurisdiction, await hosts_licensure(session, vault, host_ids))


# -- the admission gate --------------------------------------------------------------


async def gate(
    session: AsyncSession,
    ctx: Context,
    *,
    room: Room,
    account: Account,
    is_client: bool,
    host_ids: Sequence[str],
    now: datetime,
) -> None:
    """Refuse a client's way into the room without the check-in it needs (`rules.refusal`).

    Only clients check in (hosts, supervisors, interpreters and guardians do not). Called by
    the one admission rule (`app.rooms.service.admit_device`): room tokens, sockets, TURN
    credentials.
    """
    if not is_client:
        return
    mode = _MODES[room.safety_checkin]
    policy = ctx.settings.jurisdiction_mismatch
    if mode == "off" and policy == "warn":
        return
    checkin = await latest(session, ctx.vault, account, room.id)
    checked_in = checkin is not None and rules.is_valid(checkin.recorded_at, now)
    licensed: bool | None = None
    if checkin is not None and checked_in and policy == "refuse":
        licensed = await is_licensed(session, ctx.vault, checkin.jurisdiction, host_ids)
    why = rules.refusal(mode, policy, checked_in=checked_in, is_licensed=licensed)
    if why == "safety_checkin_required":
        raise SafetyCheckinRequired(
            "This room needs a safety check-in of the last 24 hours before you join."
        )
    if why == "jurisdiction_mismatch":
        assert checkin is not None
        raise JurisdictionMismatch(
            f"No host of this room is licensed for {checkin.jurisdiction}.",
        )


def record_read(session: AsyncSession, reader: Account, checkin: Checkin, via: str) -> None:
    """Audit a read of a check-in: an entry in the client's access log."""
    audit.record(
        session,
        "checkin.read",
        actor_id=reader.id,
        actor_role=reader.role.value,
        target=checkin.account_id,
        details={"room": checkin.room_id, "via": via},
    )


# -- licensure, as admins manage it ----------------------------------------------------


async def _counselor(session: AsyncSession, account_id: str) -> Account:
    account = await find_active(session, account_id) if is_id(account_id) else None
    if account is None:
        raise NotFound("No such account.")
    if account.role != Role.counselor:
        raise ValidationFailed("Only counselors hold licensure.")
    return account


async def read_licensure(
    session: AsyncSession, ctx: Context, admin: Principal, account_id: str
) -> list[str]:
    account = await _counselor(session, account_id)
    found = await licensure_of(session, ctx.vault, account)
    audit.record(
        session,
        "licensure.read",
        actor_id=admin.id,
        actor_role=admin.role,
        target=account.id,
    )
    return found


async def write_licensure(
    session: AsyncSession,
    ctx: Context,
    admin: Principal,
    account_id: str,
    jurisdictions: Sequence[str],
) -> list[str]:
    account = await _counselor(session, account_id)
    stored = await set_licensure(session, ctx.vault, account, jurisdictions, ctx.clock.now())
    audit.record(
        session,
        "licensure.update",
        actor_id=admin.id,
        actor_role=admin.role,
        target=account.id,
        details={"jurisdictions": stored},
    )
    return stored
