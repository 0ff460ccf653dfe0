"""Rooms, their participants, and the room tokens that admit one device to one room.

Storage (decision notes 0004 and 0007): a room's title and times are sealed
under the room's own data key. Membership is two rows that a dump cannot join:
`room_members` (room id, HMAC of room+account, sealed {account, role,
admitted} under the room key) and `account_rooms` (the account's slot index,
sealed room id under the account's key).

Who may become a member: the host's own client, added directly, or whoever
accepts an invitation (`app.rooms.invitations`, decision note 0008). Who may
join (a room token, a socket, TURN credentials): `admit_device`, the one home
of that rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.accounts import service as accounts
from app.auth.service import Principal, live_account
from app.consent.errors import ConsentNotPublished, ConsentRequired
from app.consent.service import ConsentGate, consent_gate, required_kinds
from app.core import audit, events, mls, webhooks
from app.core.clock import Clock
from app.core.codec import b64url_encode, is_id, new_id
from app.core.context import Context
from app.core.errors import Forbidden, NotFound, ValidationFailed
from app.core.events import emit
from app.core.slots import Slots
from app.core.tokens import ROOM_AUDIENCE, ROOM_TYP
from app.core.vault import DataKeyDestroyed, Vault
from app.devices.service import active_device, active_devices_of, device_keys
from app.models import (
    Account,
    AccountRoom,
    ConsentKind,
    Device,
    Role,
    Room,
    RoomKind,
    RoomMember,
    SafetyCheckinMode,
)
from app.rooms.errors import (
    AlreadyParticipant,
    DeviceRevoked,
    LastHost,
    OutsideTimeWindow,
    RoomEnded,
    RoomFull,
    RoomLocked,
    RoomNotFound,
)
from app.rooms.gates import role_gate
from app.rooms.schemas import (
    CreateRoom,
    ParticipantOut,
    ParticipantRole,
    PatchRoom,
    QualificationOut,
    RoomOut,
)
from app.safety import service as safety

#: Tokens are issued from this long before `starts_at`.
JOIN_EARLY = timedelta(minutes=10)
HOST, PARTICIPANT = "host", "participant"
#: Typed participants (PROTOCOL.md, "Typed participants"; `app.rooms.roles`).
SUPERVISOR, INTERPRETER, GUARDIAN = "supervisor", "interpreter", "guardian"


@dataclass
class Member:
    account_id: str
    role: str
    admitted: bool
    row: RoomMember
    #: The rest of the sealed membership: a typed participant's qualification and
    #: consent record, a client's supervision consent (`app.rooms.roles`).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RoomState:
    room: Room
    title: str
    starts_at: datetime | None
    ends_at: datetime | None
    ended_at: datetime | None
    created_at: str | None = None
    members: list[Member] = field(default_factory=list)
    #: When the first admitted device joined the room's socket (`room.started`).
    started_at: datetime | None = None

    def member(self, account_id: str) -> Member | None:
        return next((m for m in self.members if m.account_id == account_id), None)

    def status(self, now: datetime) -> str:
        if self.room.ended or (self.ends_at is not None and now >= self.ends_at):
            return "ended"
        if self.starts_at is not None and now < self.starts_at - JOIN_EARLY:
            return "scheduled"
        return "open"

    def is_admitted(self, member: Member) -> bool:
        return member.role == HOST or member.admitted or not self.room.waiting_room


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def member_index(vault: Vault, room_id: str, account_id: str) -> bytes:
    return vault.index(f"{room_id}:{account_id}", purpose="room.member")


SLOTS = Slots(AccountRoom.owner_ix, "account.rooms.slot")


def _account_room_index(vault: Vault, account_id: str, room_id: str) -> bytes:
    return vault.index(f"{account_id}:{room_id}", purpose="account.room")


# -- loading -------------------------------------------------------------------


async def room_state(
    session: AsyncSession, vault: Vault, room: Room, rows: Iterable[RoomMember] | None = None
) -> RoomState:
    """The room with its members, opened; `rows`: its members' rows, when already loaded."""
    key_id = room.data_key_id
    if key_id is None:
        raise NotFound("No such room.")
    details = await vault.open_json(session, key_id, Room.details, room.id, room.details)
    state = RoomState(
        room=room,
        title=details["title"],
        starts_at=_time(details.get("starts_at")),
        ends_at=_time(details.get("ends_at")),
        ended_at=_time(details.get("ended_at")),
        created_at=details.get("created_at"),
        started_at=_time(details.get("started_at")),
    )
    if rows is None:
        rows = (
            await session.execute(select(RoomMember).where(RoomMember.room_id == room.id))
        ).scalars()
    for row in rows:
        data = await vault.open_json(session, key_id, RoomMember.details, row.id, row.details)
        extra = {k: v for k, v in data.items() if k not in ("account", "role", "admitted")}
        state.members.append(Member(data["account"], data["role"], data["admitted"], row, extra))
    return state


async def load_for(
    session: AsyncSession, vault: Vault, room_id: str, account_id: str
) -> tuple[RoomState, Member]:
    """The room as its participant `account_id` sees it; 404 for anyone else.

    A room that does not exist is `RoomNotFound`, one the caller is not in
    `NotFound`: the same answer on REST, told apart only on the socket, whose
    token named the room. Both are looked up either way.
    """
    if not is_id(room_id):
        # Never send a path id that cannot name a room to the database: PostgreSQL
        # refuses a NUL (a 500) that SQLite would compare; both must answer 404.
        raise RoomNotFound("No such room.")
    # The room and its members' rows in one statement; membership is told by the
    # member index before anything is opened.
    found = (
        await session.execute(
            select(Room, RoomMember)
            .outerjoin(RoomMember, RoomMember.room_id == Room.id)
            .where(Room.id == room_id)
        )
    ).all()
    if not found:
        raise RoomNotFound("No such room.")
    room = found[0][0]
    rows = [row for _, row in found if row is not None]
    ix = member_index(vault, room_id, account_id)
    if not any(row.member_ix == ix for row in rows):
        raise NotFound("No such room.")
    state = await room_state(session, vault, room, rows)
    member = state.member(account_id)
    if member is None:
        raise NotFound("No such room.")
    return state, member


async def load_as_host(
    session: AsyncSession, vault: Vault, room_id: str, account_id: str
) -> RoomState:
    state, member = await load_for(session, vault, room_id, account_id)
    if member.role != HOST:
        raise Forbidden("Only a host of this room may do this.")
    return state


async def display_names(
    session: AsyncSession, vault: Vault, account_ids: Sequence[str]
) -> dict[str, str]:
    rows = (
        await session.execute(select(Account).where(Account.id.in_(list(account_ids))))
    ).scalars()
    # An erased account's key is gone and its name overwritten: "".
    return {account.id: await accounts.display_name(session, vault, account) for account in rows}


async def view(session: AsyncSession, ctx: Context, state: RoomState) -> RoomOut:
    names = await display_names(session, ctx.vault, [m.account_id for m in state.members])
    return RoomOut(
        id=state.room.id,
        title=state.title,
        kind=state.room.kind,
        status=state.status(ctx.clock.now()),
        starts_at=state.starts_at,
        ends_at=state.ends_at,
        max_participants=state.room.max_participants,
        waiting_room=state.room.waiting_room,
        locked=state.room.locked,
        safety_checkin=state.room.safety_checkin,
        participants=[_participant_out(state, m, names) for m in state.members],
        mls_group_id=b64url_encode(mls.room_group_id(state.room.id)),
    )


async def participant_view(
    session: AsyncSession, ctx: Context, state: RoomState, member: Member
) -> ParticipantOut:
    names = await display_names(session, ctx.vault, [member.account_id])
    return _participant_out(state, member, names)


def _participant_out(state: RoomState, m: Member, names: dict[str, str]) -> ParticipantOut:
    qualification = m.extra.get("qualification")
    consent = m.extra.get("consent_record")
    return ParticipantOut(
        account_id=m.account_id,
        display_name=names.get(m.account_id, ""),
        role=cast(ParticipantRole, m.role),
        admitted=state.is_admitted(m),
        qualification=QualificationOut(**qualification) if qualification else None,
        consent_note=consent.get("note") if isinstance(consent, dict) else None,
        supervision_consent=("supervision_consent" in m.extra) if m.role == PARTICIPANT else None,
    )


def record_on_room(
    session: AsyncSession,
    action: str,
    principal: Principal,
    state: RoomState,
    details: dict[str, Any] | None = None,
) -> None:
    """Audit a read or change of a room: an entry on the room, and one in the access
    log of every other participant, whose session (and name) it concerns."""
    audit.record(
        session,
        action,
        actor_id=principal.id,
        actor_role=principal.role,
        target=state.room.id,
        details=details,
    )
    audit.record_reads(
        session,
        action,
        [m.account_id for m in state.members],
        actor_id=principal.id,
        actor_role=principal.role,
        details={"room": state.room.id, **(details or {})},
    )


# -- writing -------------------------------------------------------------------


async def _sealed_details(session: AsyncSession, vault: Vault, state: RoomState) -> bytes:
    assert state.room.data_key_id is not None
    details: dict[str, str | None] = {
        "title": state.title,
        "starts_at": _iso(state.starts_at),
        "ends_at": _iso(state.ends_at),
        "ended_at": _iso(state.ended_at),
        "created_at": state.created_at,
    }
    if state.started_at is not None:
        details["started_at"] = _iso(state.started_at)
    return await vault.seal_json(
        session, state.room.data_key_id, Room.details, state.room.id, details
    )


async def _seal_details(session: AsyncSession, vault: Vault, state: RoomState) -> None:
    state.room.details = await _sealed_details(session, vault, state)


async def mark_started(session: AsyncSession, ctx: Context, state: RoomState) -> bool:
    """The room has started: its first admitted device joined its socket (`room.started`).

    True once per room: the start is sealed into the room's details by a
    compare-and-set, so of two devices joining at the same moment one wins.
    """
    if state.started_at is not None:
        return False
    old = state.room.details
    state.started_at = ctx.clock.now()
    new = await _sealed_details(session, ctx.vault, state)
    won = (
        await session.execute(
            update(Room)
            .where(Room.id == state.room.id, Room.details == old)
            .values(details=new)
            .returning(Room.id)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one_or_none()
    if won is None:
        return False
    set_committed_value(state.room, "details", new)
    webhooks.announce(session, "room.started", state.started_at, room_id=state.room.id)
    return True


async def seal_member(session: AsyncSession, vault: Vault, state: RoomState, m: Member) -> None:
    assert state.room.data_key_id is not None
    m.row.details = await vault.seal_json(
        session,
        state.room.data_key_id,
        RoomMember.details,
        m.row.id,
        {**m.extra, "account": m.account_id, "role": m.role, "admitted": m.admitted},
    )


async def _add_member(
    session: AsyncSession,
    vault: Vault,
    state: RoomState,
    account: Account,
    role: str,
    extra: dict[str, Any] | None = None,
) -> Member:
    row = RoomMember(
        id=new_id(),
        room_id=state.room.id,
        member_ix=member_index(vault, state.room.id, account.id),
        details=b"",
    )
    member = Member(account.id, role, role == HOST, row, dict(extra or {}))
    await seal_member(session, vault, state, member)
    if account.data_key_id is None:
        raise NotFound("No such account.")
    link_id = new_id()
    link = AccountRoom(
        id=link_id,
        room_ix=_account_room_index(vault, account.id, state.room.id),
        room=await vault.seal(
            session, account.data_key_id, AccountRoom.room, link_id, state.room.id
        ),
    )
    session.add(row)
    try:
        await session.flush()
        await SLOTS.add(session, vault, account.id, link)
    except IntegrityError:
        raise AlreadyParticipant("This account is already in the room.") from None
    state.members.append(member)
    return member


async def create_room(
    session: AsyncSession, ctx: Context, principal: Principal, body: CreateRoom
) -> RoomState:
    if principal.account.role != Role.counselor:
        raise Forbidden("Only counselors create rooms.")
    now = ctx.clock.now()
    if body.ends_at is not None and body.ends_at <= now:
        raise ValidationFailed("ends_at must be in the future.")
    room_id = new_id()
    key_id = await ctx.vault.create_data_key(session)
    room = Room(
        id=room_id,
        kind=body.kind,
        data_key_id=key_id,
        details=b"",
        max_participants=body.max_participants or (2 if body.kind == RoomKind.individual else 8),
        waiting_room=body.waiting_room,
        locked=False,
        ended=False,
        safety_checkin=body.safety_checkin or SafetyCheckinMode(ctx.settings.room_safety_checkin),
    )
    session.add(room)
    state = RoomState(room, body.title, body.starts_at, body.ends_at, None, now.isoformat())
    await _seal_details(session, ctx.vault, state)
    await session.flush()
    await _add_member(session, ctx.vault, state, principal.account, HOST)
    audit.record(
        session,
        "room.create",
        actor_id=principal.id,
        actor_role=principal.role,
        target=room_id,
    )
    return state


async def list_rooms(session: AsyncSession, ctx: Context, account: Account) -> list[RoomState]:
    if account.data_key_id is None:
        return []
    states = []
    for link in await SLOTS.rows(session, ctx.vault, account.id):
        room_id = await ctx.vault.open(
            session, account.data_key_id, AccountRoom.room, link.id, link.room
        )
        room = await session.get(Room, room_id)
        if room is not None and room.data_key_id is not None:
            states.append(await room_state(session, ctx.vault, room))
    states.sort(key=lambda s: (s.starts_at is None, s.starts_at or ctx.clock.now(), s.room.id))
    return states


def not_ended(state: RoomState, ctx: Context) -> None:
    """409 `room_ended` once the room has ended."""
    if state.status(ctx.clock.now()) == "ended":
        raise RoomEnded("This session has ended.")


async def patch_room(
    session: AsyncSession, ctx: Context, principal: Principal, room_id: str, body: PatchRoom
) -> RoomState:
    state = await load_as_host(session, ctx.vault, room_id, principal.id)
    not_ended(state, ctx)
    changes = body.model_fields_set
    waiting = [m for m in state.members if not state.is_admitted(m)]
    if "title" in changes and body.title is not None:
        state.title = body.title
    if "starts_at" in changes:
        state.starts_at = body.starts_at
    if "ends_at" in changes:
        if body.ends_at is not None and body.ends_at <= ctx.clock.now():
            raise ValidationFailed("ends_at must be in the future.")
        state.ends_at = body.ends_at
    if state.starts_at and state.ends_at and state.ends_at <= state.starts_at:
        raise ValidationFailed("ends_at must be after starts_at.")
    if "max_participants" in changes and body.max_participants is not None:
        if body.max_participants < len(state.members):
            raise ValidationFailed("max_participants is below the current participant count.")
        state.room.max_participants = body.max_participants
    if "waiting_room" in changes and body.waiting_room is not None:
        state.room.waiting_room = body.waiting_room
    if "safety_checkin" in changes and body.safety_checkin is not None:
        state.room.safety_checkin = body.safety_checkin
    await _seal_details(session, ctx.vault, state)
    await session.flush()
    if "ends_at" in changes or "starts_at" in changes:
        emit(session, events.RoomSchedule(room_id, state.ends_at))
    if "waiting_room" in changes and not state.room.waiting_room:
        for member in state.members:
            emit(session, events.Admitted(room_id, member.account_id))
        for member in waiting:
            webhooks.announce(
                session,
                "participant.admitted",
                ctx.clock.now(),
                room_id=room_id,
                account_id=member.account_id,
            )
    record_on_room(session, "room.update", principal, state, {"fields": sorted(changes)})
    return state


async def add_member(
    session: AsyncSession,
    ctx: Context,
    state: RoomState,
    account: Account,
    *,
    actor: Principal,
    typed: tuple[str, dict[str, Any]] | None = None,
) -> Member:
    """Make `account` a member of the room: a counselor as host, a client as participant,
    or anyone as the typed participant (role, sealed extras) `typed` names
    (`app.rooms.roles`: supervisor, interpreter, guardian).

    The callers decide whether they may: a host adding their own client
    directly, or the invitee accepting an invitation (`app.rooms.invitations`).
    """
    if account.role == Role.admin:
        raise ValidationFailed("Admins do not join rooms.")
    if state.member(account.id) is not None:
        raise AlreadyParticipant("This account is already in the room.")
    if len(state.members) >= state.room.max_participants:
        raise RoomFull("The room has reached max_participants.")
    role = HOST if account.role == Role.counselor else PARTICIPANT
    extra: dict[str, Any] = {}
    if typed is not None:
        role, extra = typed
    member = await _add_member(session, ctx.vault, state, account, role, extra)
    names = await display_names(session, ctx.vault, [account.id])
    devices = (await active_devices_of(session, ctx.vault, [account.id])).get(account.id, [])
    emit(
        session,
        events.ParticipantAdded(
            state.room.id,
            account.id,
            role,
            names.get(account.id, ""),
            state.is_admitted(member),
            tuple((d.id, *device_keys(d)) for d in devices),
        ),
    )
    audit.record(
        session,
        "room.participant_add",
        actor_id=actor.id,
        actor_role=actor.role,
        target=account.id,
        details={"room": state.room.id, "role": role},
    )
    if role == PARTICIPANT and any(m.role == SUPERVISOR for m in state.members):
        # A new client has not consented to supervision: supervisors' sockets close.
        emit(session, events.SupervisionWithdrawn(state.room.id))
    return member


async def remove_participant(
    session: AsyncSession, ctx: Context, principal: Principal, room_id: str, account_id: str
) -> None:
    state = await load_as_host(session, ctx.vault, room_id, principal.id)
    member = state.member(account_id)
    if member is None:
        raise NotFound("No such participant.")
    if member.role == HOST and sum(m.role == HOST for m in state.members) == 1:
        raise LastHost("A room keeps at least one host.")
    await session.delete(member.row)
    await session.flush()
    link = (
        await session.execute(
            select(AccountRoom).where(
                AccountRoom.room_ix == _account_room_index(ctx.vault, account_id, room_id)
            )
        )
    ).scalar_one_or_none()
    if link is not None:
        await SLOTS.remove(session, ctx.vault, account_id, link)
    emit(session, events.ParticipantRemoved(room_id, account_id))
    audit.record(
        session,
        "room.participant_remove",
        actor_id=principal.id,
        actor_role=principal.role,
        target=account_id,
        details={"room": room_id},
    )


async def forget_member(
    session: AsyncSession, ctx: Context, state: RoomState, account_id: str
) -> None:
    """Take an erased account out of the room (its own list of rooms goes with its key)."""
    member = state.member(account_id)
    if member is None:
        return
    await session.delete(member.row)
    await session.flush()
    state.members.remove(member)
    emit(session, events.ParticipantRemoved(state.room.id, account_id))


async def forget_rooms_of(session: AsyncSession, vault: Vault, account_id: str) -> None:
    """Delete the account's own list of rooms (erasure)."""
    await SLOTS.remove_all(session, vault, account_id)


async def admit(
    session: AsyncSession, ctx: Context, principal: Principal, room_id: str, account_id: str
) -> tuple[RoomState, Member]:
    state = await load_as_host(session, ctx.vault, room_id, principal.id)
    not_ended(state, ctx)
    member = state.member(account_id)
    if member is None:
        raise NotFound("No such participant.")
    if not member.admitted:
        member.admitted = True
        await seal_member(session, ctx.vault, state, member)
        await session.flush()
        if member.role != HOST and state.room.waiting_room:
            webhooks.announce(
                session,
                "participant.admitted",
                ctx.clock.now(),
                room_id=room_id,
                account_id=account_id,
            )
    emit(session, events.Admitted(room_id, account_id))
    audit.record(
        session,
        "room.admit",
        actor_id=principal.id,
        actor_role=principal.role,
        target=account_id,
        details={"room": room_id},
    )
    return state, member


async def back_to_waiting(
    session: AsyncSession, ctx: Context, account: Account, kind: ConsentKind | None
) -> list[str]:
    """Consent of `kind` withdrawn: the account goes back to the waiting room of every
    room it is admitted to that has not ended and whose kind needs that consent
    (every kind when `kind` is None). Hosts need no consent and stay.

    Each such room hears `presence` `waiting` for the account (`Unadmitted`),
    which also drops its admission point: a host's admission after this one
    is a new admission point. In a room without a waiting room, the account
    is let in again when it next joins (with its consent given again).
    Returns the ids of the rooms it left.
    """
    now = ctx.clock.now()
    left = []
    for state in await list_rooms(session, ctx, account):
        member = state.member(account.id)
        # Consent documents bind clients: hosts and typed participants stay.
        if member is None or member.role != PARTICIPANT or state.status(now) == "ended":
            continue
        if not state.is_admitted(member):
            continue
        needs = required_kinds(group=state.room.kind == RoomKind.group)
        if kind is not None and kind not in needs:
            continue
        member.admitted = False
        await seal_member(session, ctx.vault, state, member)
        emit(session, events.Unadmitted(state.room.id, account.id))
        audit.record(
            session,
            "room.unadmit",
            actor_id=account.id,
            actor_role=account.role.value,
            target=account.id,
            details={"room": state.room.id, "reason": "consent_withdrawn"},
        )
        left.append(state.room.id)
    await session.flush()
    return left


async def set_locked(
    session: AsyncSession, ctx: Context, principal: Principal, room_id: str, locked: bool
) -> RoomState:
    state = await load_as_host(session, ctx.vault, room_id, principal.id)
    not_ended(state, ctx)
    state.room.locked = locked
    await session.flush()
    emit(session, events.RoomLocked(room_id) if locked else events.RoomUnlocked(room_id))
    record_on_room(session, "room.lock" if locked else "room.unlock", principal, state)
    return state


async def end_room(
    session: AsyncSession, ctx: Context, principal: Principal, room_id: str
) -> RoomState:
    state = await load_as_host(session, ctx.vault, room_id, principal.id)
    now = ctx.clock.now()
    # A room the clock already ended (not yet marked by the scan) ended at `ends_at`.
    at = min(now, state.ends_at) if state.ends_at is not None else now
    if await _mark_ended(session, ctx.vault, state, at):
        emit(session, events.RoomEnded(room_id))
        record_on_room(session, "room.end", principal, state)
    return state


async def _mark_ended(
    session: AsyncSession, vault: Vault, state: RoomState, at: datetime, *, announce: bool = True
) -> bool:
    """Mark the room ended at `at` and announce `room.ended` (unless not `announce`):
    True once per room.

    A compare-and-set on the plain `ended` flag and the sealed details, so a
    host's end and the scan of ended rooms (or two scans) announce it once.
    """
    if state.room.ended:
        return False
    old = state.room.details
    state.ended_at = at
    new = await _sealed_details(session, vault, state)
    won = (
        await session.execute(
            update(Room)
            .where(Room.id == state.room.id, Room.ended.is_(False), Room.details == old)
            .values(ended=True, details=new)
            .returning(Room.id)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one_or_none()
    if won is None:
        state.ended_at = None
        return False
    set_committed_value(state.room, "ended", True)
    set_committed_value(state.room, "details", new)
    if announce:
        webhooks.announce(session, "room.ended", at, room_id=state.room.id)
    return True


#: Room id -> (its sealed details when last opened, the `ends_at` they held).
EndsSeen = dict[str, tuple[bytes, datetime | None]]


async def announce_ends(
    session: AsyncSession, vault: Vault, clock: Clock, seen: EndsSeen, *, max_age: timedelta
) -> int:
    """Mark ended, and announce `room.ended` for, each room whose `ends_at` has passed.

    Only rooms not yet marked ended are read (a host's end and this scan both
    set the plain `ended` flag), and a room's details are opened only when
    they changed since the caller's last scan: `seen` keeps, per open room,
    its sealed details and the `ends_at` they held. At = the room's `ends_at`.
    Once per room however many instances scan (`_mark_ended`). A room that
    ended more than `max_age` ago (the age at which a delivery is given up:
    rooms of before an upgrade, or of a time without the worker) is marked
    ended without an announcement. The number announced.
    """
    now = clock.now()
    announced = 0
    rows = (
        await session.execute(
            select(Room.id, Room.details).where(
                Room.ended.is_(False), Room.data_key_id.is_not(None)
            )
        )
    ).all()
    live: set[str] = set()
    for room_id, details in rows:
        live.add(room_id)
        known = seen.get(room_id)
        if known is not None and known[0] == details:
            ends_at = known[1]
        else:
            room = await session.get(Room, room_id)
            if room is None or room.data_key_id is None:
                continue
            try:
                opened = await vault.open_json(
                    session, room.data_key_id, Room.details, room.id, room.details
                )
            except DataKeyDestroyed:
                seen[room_id] = (details, None)  # erased: nothing to announce
                continue
            ends_at = _time(opened.get("ends_at"))
            seen[room_id] = (details, ends_at)
        if ends_at is None or now < ends_at:
            continue
        room = await session.get(Room, room_id)
        if room is None:
            continue
        state = await room_state(session, vault, room)
        if state.ends_at is not None and now >= state.ends_at:
            fresh = now - state.ends_at <= max_age
            marked = await _mark_ended(session, vault, state, state.ends_at, announce=fresh)
            if marked and fresh:
                announced += 1
    for room_id in set(seen) - live:
        del seen[room_id]
    return announced


# -- admission -----------------------------------------------------------------


@dataclass(frozen=True)
class Seat:
    """One participant as the room socket's `welcome` shows them."""

    account_id: str
    role: str
    display_name: str
    admitted: bool
    #: Device id -> (public key, signing key or None), base64url; the active devices only.
    devices: dict[str, tuple[str, str | None]]


@dataclass(frozen=True)
class Admission:
    """Why one account (and one of its devices) may join a room now."""

    account: Account
    login_id: str
    state: RoomState
    member: Member
    #: The device asked for (None when none was: TURN credentials).
    device: Device | None
    #: The moment the rule was applied.
    at: datetime
    #: Every participant, when asked for (the socket's `welcome`).
    seats: list[Seat] | None = None

    @property
    def admitted(self) -> bool:
        """Admitted to the room, not in its waiting room."""
        return self.state.is_admitted(self.member)


def _admission_rules(
    state: RoomState, member: Member, now: datetime, consent: ConsentGate | None
) -> None:
    if state.status(now) == "ended":
        raise RoomEnded("This session has ended.")
    if state.starts_at is not None and now < state.starts_at - JOIN_EARLY:
        raise OutsideTimeWindow("The room opens 10 minutes before it starts.")
    if state.room.locked and not state.is_admitted(member):
        raise RoomLocked("The room is locked.")
    if consent is not None:
        if consent.unpublished:
            raise ConsentNotPublished(consent.unpublished)
        if consent.missing:
            raise ConsentRequired(consent.missing)


async def _seats(session: AsyncSession, ctx: Context, state: RoomState) -> list[Seat]:
    ids = [m.account_id for m in state.members]
    names = await display_names(session, ctx.vault, ids)
    devices = await active_devices_of(session, ctx.vault, ids)
    return [
        Seat(
            m.account_id,
            m.role,
            names.get(m.account_id, ""),
            state.is_admitted(m),
            {d.id: device_keys(d) for d in devices.get(m.account_id, [])},
        )
        for m in state.members
    ]


async def admit_device(
    session: AsyncSession,
    ctx: Context,
    *,
    account_id: str,
    login_id: str,
    room_id: str,
    device_id: str | None,
    with_seats: bool = False,
) -> Admission:
    """The one rule that lets an account's device into a room now: for a room token,
    a socket join, and TURN credentials (no device).

    In this order, each refusal an error whose `status`/`code` is the REST
    answer and whose `close_code` is the socket's:
    - the account is active and the log-in live (`Unauthorized`: 401, 4001);
    - the room exists (`RoomNotFound`: 404, 4004) and the account is in it
      (`NotFound`: 404, 4003);
    - the device is the account's own and active (`DeviceRevoked`: 404, 4003);
    - the room has not ended (`RoomEnded`: 409, 4010); it opens 10 minutes
      before `starts_at` (`OutsideTimeWindow`); a locked room admits only those
      already admitted (`RoomLocked`); for a client (`participant`), the
      practice has published the consent documents the room's kind needs
      (`ConsentNotPublished`) and the participant has accepted their current
      versions (`ConsentRequired`): 403, 4003;
    - for a participant, the safety check-in the room's `safety_checkin` and the
      practice's licensure policy need (`app.safety.service.gate`:
      `SafetyCheckinRequired`, `JurisdictionMismatch`): 403, 4003.
    - the typed participants' rules (`app.rooms.gates.role_gate`): a supervisor
      only while every client has given the room's supervision consent
      (`SupervisionConsentRequired`), a minor client only with a guardian's
      current consent or their own recorded one (`GuardianConsentRequired`):
      403, 4003.

    `with_seats` adds every participant's name, admission and device keys.
    """
    account = await live_account(session, account_id, login_id)
    state, member = await load_for(session, ctx.vault, room_id, account_id)
    device = None
    if device_id is not None:
        device = await active_device(session, ctx.vault, account_id, device_id)
        if device is None:
            raise DeviceRevoked("No such device.")
    now = ctx.clock.now()
    consent = (
        None
        if member.role != PARTICIPANT  # the documents bind clients (typed roles: `role_gate`)
        else await consent_gate(
            session, ctx.vault, account, group=state.room.kind == RoomKind.group
        )
    )
    _admission_rules(state, member, now, consent)
    await safety.gate(
        session,
        ctx,
        room=state.room,
        account=account,
        is_client=member.role == PARTICIPANT,
        host_ids=[m.account_id for m in state.members if m.role == HOST],
        now=now,
    )
    await role_gate(session, ctx, account, state, member)
    seats = await _seats(session, ctx, state) if with_seats else None
    return Admission(account, login_id, state, member, device, now, seats)


# -- tokens --------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedRoomToken:
    token: str
    expires_at: datetime


async def issue_token(
    session: AsyncSession,
    ctx: Context,
    principal: Principal,
    room_id: str,
    device_id: str,
) -> IssuedRoomToken:
    admission = await admit_device(
        session,
        ctx,
        account_id=principal.id,
        login_id=principal.login_id,
        room_id=room_id,
        device_id=device_id,
    )
    state, member, now = admission.state, admission.member, admission.at
    ttl = ctx.settings.room_token_ttl
    if state.ends_at is not None:
        ttl = max(1, min(ttl, int((state.ends_at - now).total_seconds())))
    issued = ctx.tokens.issue(
        audience=ROOM_AUDIENCE,
        typ=ROOM_TYP,
        subject=principal.id,
        ttl=ttl,
        claims={
            "room": room_id,
            "device": device_id,
            "role": member.role,
            "sid": principal.login_id,
        },
    )
    audit.record(
        session,
        "room.token",
        actor_id=principal.id,
        actor_role=principal.role,
        target=principal.id,
        details={"room": room_id, "device": device_id, "jti": issued.jti},
    )
    return IssuedRoomToken(issued.token, datetime.fromtimestamp(issued.expires_at, now.tzinfo))


def _end_of(details: dict[str, object], ended: bool) -> datetime | None:
    for key in ("ended_at", "ends_at"):
        value = details.get(key)
        if isinstance(value, str):
            when = datetime.fromisoformat(value)
            if key == "ended_at" or not ended:
                return when
    return None


async def ended_before(session: AsyncSession, vault: Vault, cutoff: datetime) -> list[str]:
    """Rooms whose end (by the host, or by the clock) lies before `cutoff` (retention).

    A room whose data key is destroyed (erased) counts as ended: nothing in it
    can be read any more.
    """
    due = []
    for room in (await session.execute(select(Room))).scalars():
        try:
            if room.data_key_id is None:
                raise DataKeyDestroyed(room.id)
            details = await vault.open_json(
                session, room.data_key_id, Room.details, room.id, room.details
            )
        except DataKeyDestroyed:
            due.append(room.id)  # erased: nothing in it can be read any more
            continue
        end = _end_of(details, room.ended)
        if end is not None and end <= cutoff:
            due.append(room.id)
    return due
