"""Safety check-ins in a room: who records and who reads them (PROTOCOL.md, "Safety check-in
and licensure").

A client participant records their own check-in for a room (hosts do not
check in); the room's hosts read every client's latest, with whether a host
is licensed for its jurisdiction, over REST and on their sockets (the
`checkin` frame, when a client records one and when a host joins); the
client reads their own. Another participant is refused (403 `forbidden`, as
for any host-only action); someone outside the room gets 404. Each read is
audited with the client as target (`checkin.read`), so it shows in the
client's access log. Storage and the admission gate are `app.safety`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import Principal
from app.core import audit, events
from app.core.context import Context
from app.core.errors import Forbidden, NotFound
from app.core.events import emit
from app.models import Account
from app.rooms import service as rooms
from app.rooms.errors import RoomEnded
from app.safety import rules
from app.safety import service as safety
from app.safety.schemas import CheckinIn


@dataclass(frozen=True)
class Shown:
    """A check-in as someone reads it: licensed is None in the client's own view."""

    checkin: safety.Checkin
    valid: bool
    licensed: bool | None


def _hosts(state: rooms.RoomState) -> list[str]:
    return [m.account_id for m in state.members if m.role == rooms.HOST]


async def record(
    session: AsyncSession, ctx: Context, principal: Principal, room_id: str, body: CheckinIn
) -> Shown:
    """The caller, a client participant of the room, records their check-in for it."""
    state, member = await rooms.load_for(session, ctx.vault, room_id, principal.id)
    if member.role != rooms.PARTICIPANT:
        # Hosts, supervisors, interpreters and guardians do not check in; the clients do.
        raise Forbidden("Only the room's clients check in.")
    if state.status(ctx.clock.now()) == "ended":
        raise RoomEnded("This session has ended.")
    now = ctx.clock.now()
    checkin = safety.Checkin(
        room_id=room_id,
        account_id=principal.id,
        address=body.location.address,
        jurisdiction=body.location.jurisdiction,
        contact_name=body.emergency_contact.name,
        contact_phone=body.emergency_contact.phone,
        callback_phone=body.callback_phone,
        recorded_at=now,
    )
    await safety.record(session, ctx.vault, principal.account, checkin)
    licensed = await safety.is_licensed(session, ctx.vault, checkin.jurisdiction, _hosts(state))
    emit(
        session,
        events.CheckinRecorded(
            room_id,
            principal.id,
            checkin.address,
            checkin.jurisdiction,
            checkin.contact_name,
            checkin.contact_phone,
            checkin.callback_phone,
            checkin.recorded_at,
            licensed,
        ),
    )
    audit.record(
        session,
        "checkin.record",
        actor_id=principal.id,
        actor_role=principal.role,
        target=principal.id,
        details={"room": room_id, "jurisdiction": checkin.jurisdiction},
    )
    return Shown(checkin, True, None)


async def own(session: AsyncSession, ctx: Context, principal: Principal, room_id: str) -> Shown:
    """The caller's own latest check-in for the room; 404 when there is none."""
    await rooms.load_for(session, ctx.vault, room_id, principal.id)
    checkin = await safety.latest(session, ctx.vault, principal.account, room_id)
    if checkin is None:
        raise NotFound("No check-in for this room.")
    safety.record_read(session, principal.account, checkin, "rest")
    return Shown(checkin, rules.is_valid(checkin.recorded_at, ctx.clock.now()), None)


async def for_hosts(
    session: AsyncSession,
    ctx: Context,
    state: rooms.RoomState,
    reader: Account,
    via: str,
    *,
    only_valid: bool = False,
) -> list[Shown]:
    """Every client's latest check-in for the room (`only_valid`: those that still admit),
    as its hosts see them; each read audited."""
    now = ctx.clock.now()
    hosts = await safety.hosts_licensure(session, ctx.vault, _hosts(state))
    shown = []
    for member in state.members:
        if member.role != rooms.PARTICIPANT:
            continue
        account = await session.get(Account, member.account_id)
        if account is None:
            continue
        checkin = await safety.latest(session, ctx.vault, account, state.room.id)
        if checkin is None:
            continue
        valid = rules.is_valid(checkin.recorded_at, now)
        if only_valid and not valid:
            continue
        safety.record_read(session, reader, checkin, via)
        licensed = rules.licensed(checkin.jurisdiction, hosts)
        shown.append(Shown(checkin, valid, licensed))
    return shown


async def hosts_view(
    session: AsyncSession, ctx: Context, principal: Principal, room_id: str
) -> list[Shown]:
    """For a host of the room: every client's latest check-in. 403 for another participant."""
    state = await rooms.load_as_host(session, ctx.vault, room_id, principal.id)
    return await for_hosts(session, ctx, state, principal.account, "rest")
