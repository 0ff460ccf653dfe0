"""Invitations: a host asks, the invitee accepts (PROTOCOL.md, Rooms; decision note 0008).

`POST /v1/rooms/{id}/participants` adds a client directly only when the
client has accepted an invitation of this host before (a care relationship,
`app.rooms.care`). Anyone else, or no one, gets a pending invitation, and the
host gets the same answer whoever it was: 202 with an invitation id, no name,
no account id. So the endpoint tells a counselor nothing about an address or
id they do not already know as their client's: not whether it is registered,
nor whether it is a client's, a counselor's or an admin's.

For that, an invitation nobody can accept (an address or id that is no one's,
an admin's, an erased account's, a member's) is still written: a decoy of the
same shape, written by the same steps (the same look-ups, the same sealing,
a slot of its own for a random owner no one will ever compute, an audit
entry), listed to the host as pending like any other, and found by no one.

Storage: `room_invitations` holds the room id (a room's own rows name it, as
`room_members` does), the invitee's slot index, the details sealed under the
invitee's own key ({room, host, created_at}; a decoy's under the system key)
and the creation time sealed under the room's key for the host's list. The
invitee finds their invitations by their slot indexes and opens them with
their key; accepting one makes them a member and records the care
relationship, declining deletes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as accounts
from app.auth.service import Principal
from app.core import audit, webhooks
from app.core.codec import is_id, new_id
from app.core.context import Context
from app.core.encryption import DecryptionError
from app.core.errors import NotFound
from app.core.slots import Slots
from app.core.vault import SYSTEM_KEY_ID, Vault
from app.models import Account, AccountStatus, Role, Room, RoomInvitation
from app.rooms import care, roles
from app.rooms import service as rooms
from app.rooms.errors import InterpreterNotQualified, RoomFull

SLOTS = Slots(RoomInvitation.invitee_ix, "room.invitation.slot")
_NO_SUCH_INVITATION = "No such invitation."


@dataclass(frozen=True)
class Added:
    """The host's own client, added directly."""

    state: rooms.RoomState
    member: rooms.Member


@dataclass(frozen=True)
class Invited:
    invitation_id: str


@dataclass(frozen=True)
class Typed:
    """A typed participant the host invites (`app.rooms.roles`; PROTOCOL.md, Rooms)."""

    role: str
    #: An interpreter's attested {qualified, basis}.
    qualification: dict[str, Any] | None = None
    #: What the room's clients were told and agreed to (supervisor, interpreter).
    consent_note: str | None = None


@dataclass(frozen=True)
class InvitationView:
    """An invitation as its invitee sees it."""

    id: str
    room_id: str
    host_id: str
    host_name: str
    title: str
    starts_at: datetime | None
    ends_at: datetime | None
    created_at: datetime
    role: str | None = None


@dataclass(frozen=True)
class PendingView:
    """An invitation as the room's hosts see it: no one named."""

    id: str
    created_at: datetime


@dataclass(frozen=True)
class _Opened:
    row: RoomInvitation
    room_id: str
    host_id: str
    created_at: datetime
    role: str | None = None


async def _account(
    session: AsyncSession, vault: Vault, account_id: str | None, email: str | None
) -> Account | None:
    if email is not None:
        account = await accounts.find_by_email(session, vault, email)
    elif account_id is not None and is_id(account_id):
        account = await session.get(Account, account_id)
    else:
        account = None
    if account is None or account.status != AccountStatus.active or account.data_key_id is None:
        return None
    return account


async def add_or_invite(
    session: AsyncSession,
    ctx: Context,
    principal: Principal,
    room_id: str,
    *,
    account_id: str | None,
    email: str | None,
    typed: Typed | None = None,
) -> Added | Invited:
    """Add the host's own client, or invite anyone else (or no one: a decoy).

    A typed participant is always invited. One whom the role does not fit (a
    supervisor who is not a counselor, a guardian who is no client's of this
    room) gets a decoy, the same answer as for an address that is no one's.
    """
    state = await rooms.load_as_host(session, ctx.vault, room_id, principal.id)
    rooms.not_ended(state, ctx)
    if (
        typed is not None
        and typed.role == rooms.INTERPRETER
        and (typed.qualification is None or typed.qualification.get("qualified") is not True)
    ):
        raise InterpreterNotQualified("An interpreter's qualification must be attested.")
    account = await _account(session, ctx.vault, account_id, email)
    # The same indexed look-up whoever it is (a random id for no one).
    subject = account.id if account is not None else new_id()
    cared = await care.has_care(session, ctx.vault, principal.id, subject)
    if typed is None and account is not None and account.role == Role.client and cared:
        return Added(state, await rooms.add_member(session, ctx, state, account, actor=principal))
    if len(state.members) >= state.room.max_participants:
        raise RoomFull("The room has reached max_participants.")
    invitee = (
        account
        if account is not None and account.role != Role.admin and state.member(account.id) is None
        else None
    )
    if (
        invitee is not None
        and typed is not None
        and not await roles.fits(session, ctx.vault, state, invitee, typed.role)
    ):
        invitee = None
    return Invited(await _invite(session, ctx, principal, state, invitee, typed))


async def _invite(
    session: AsyncSession,
    ctx: Context,
    principal: Principal,
    state: rooms.RoomState,
    invitee: Account | None,
    typed: Typed | None = None,
) -> str:
    """Write an invitation of `invitee`; for None, a decoy written the same way."""
    assert state.room.data_key_id is not None
    created_at = ctx.clock.now().isoformat()
    row_id = new_id()
    # A decoy is the i-th invitation of an owner that exists nowhere, sealed
    # under a key that no invitee holds: no one lists it, no one opens it.
    owner = invitee.id if invitee is not None else new_id()
    key_id = invitee.data_key_id if invitee is not None else SYSTEM_KEY_ID
    assert key_id is not None
    details: dict[str, Any] = {
        "room": state.room.id,
        "host": principal.id,
        "created_at": created_at,
    }
    room_details: dict[str, Any] = {"created_at": created_at}
    if typed is not None:
        details["role"] = typed.role
        room_details.update(
            roles.invitation_record(state, typed.role, typed.qualification, typed.consent_note)
        )
    row = RoomInvitation(
        id=row_id,
        room_id=state.room.id,
        details=await ctx.vault.seal_json(session, key_id, RoomInvitation.details, row_id, details),
        room_details=await ctx.vault.seal_json(
            session,
            state.room.data_key_id,
            RoomInvitation.room_details,
            row_id,
            room_details,
        ),
    )
    await SLOTS.add(session, ctx.vault, owner, row)
    audit.record(
        session,
        "room.invite",
        actor_id=principal.id,
        actor_role=principal.role,
        target=owner,
        details={"room": state.room.id, "invitation": row_id},
    )
    return row_id


# -- the invitee -----------------------------------------------------------------


async def _open_all(session: AsyncSession, vault: Vault, account: Account) -> list[_Opened]:
    key_id = account.data_key_id
    if key_id is None:
        return []
    opened = []
    for row in await SLOTS.rows(session, vault, account.id):
        try:
            data: dict[str, Any] = await vault.open_json(
                session, key_id, RoomInvitation.details, row.id, row.details
            )
        except DecryptionError:
            continue
        opened.append(
            _Opened(
                row,
                str(data["room"]),
                str(data["host"]),
                datetime.fromisoformat(data["created_at"]),
                data.get("role"),
            )
        )
    return opened


async def _mine(
    session: AsyncSession, vault: Vault, principal: Principal, invitation_id: str
) -> tuple[_Opened, list[_Opened]]:
    """The caller's invitation `invitation_id`, and all of the caller's; 404 for any other."""
    if not is_id(invitation_id):
        raise NotFound(_NO_SUCH_INVITATION)
    opened = await _open_all(session, vault, principal.account)
    mine = next((each for each in opened if each.row.id == invitation_id), None)
    if mine is None:
        raise NotFound(_NO_SUCH_INVITATION)
    return mine, opened


async def list_mine(
    session: AsyncSession, ctx: Context, principal: Principal
) -> list[InvitationView]:
    """The caller's pending invitations to rooms that have not ended, oldest first."""
    now = ctx.clock.now()
    found: list[tuple[_Opened, rooms.RoomState]] = []
    for each in await _open_all(session, ctx.vault, principal.account):
        room = await session.get(Room, each.room_id)
        if room is None or room.data_key_id is None:
            continue
        state = await rooms.room_state(session, ctx.vault, room)
        if state.status(now) == "ended" or state.member(principal.id) is not None:
            continue
        found.append((each, state))
    names = await rooms.display_names(session, ctx.vault, [each.host_id for each, _ in found])
    views = [
        InvitationView(
            id=each.row.id,
            room_id=each.room_id,
            host_id=each.host_id,
            host_name=names.get(each.host_id, ""),
            title=state.title,
            starts_at=state.starts_at,
            ends_at=state.ends_at,
            created_at=each.created_at,
            role=each.role,
        )
        for each, state in found
    ]
    return sorted(views, key=lambda v: (v.created_at, v.id))


async def accept(
    session: AsyncSession, ctx: Context, principal: Principal, invitation_id: str
) -> rooms.RoomState:
    """Join the room; a client becomes the inviting host's client (the care relationship)."""
    mine, opened = await _mine(session, ctx.vault, principal, invitation_id)
    room = await session.get(Room, mine.room_id)
    if room is None or room.data_key_id is None:
        raise NotFound(_NO_SUCH_INVITATION)
    state = await rooms.room_state(session, ctx.vault, room)
    rooms.not_ended(state, ctx)
    typed = None
    if mine.role is not None:
        assert room.data_key_id is not None
        record = await ctx.vault.open_json(
            session,
            room.data_key_id,
            RoomInvitation.room_details,
            mine.row.id,
            mine.row.room_details,
        )
        if not await roles.fits(session, ctx.vault, state, principal.account, mine.role):
            raise NotFound(_NO_SUCH_INVITATION)
        typed = (mine.role, roles.member_extra(record))
    if state.member(principal.id) is None:
        await rooms.add_member(session, ctx, state, principal.account, actor=principal, typed=typed)
    if typed is None and principal.account.role == Role.client:
        await care.record_care(session, ctx.vault, mine.host_id, principal.id)
    # This invitation, and any other of the caller's to the same room, is answered.
    for each in opened:
        if each.room_id == mine.room_id:
            await SLOTS.remove(session, ctx.vault, principal.id, each.row)
    webhooks.announce(
        session,
        "invitation.accepted",
        ctx.clock.now(),
        room_id=mine.room_id,
        account_id=principal.id,
        invitation_id=mine.row.id,
    )
    audit.record(
        session,
        "room.invitation_accept",
        actor_id=principal.id,
        actor_role=principal.role,
        target=principal.id,
        details={"room": mine.room_id, "invitation": mine.row.id, "host": mine.host_id},
    )
    return state


async def decline(
    session: AsyncSession, ctx: Context, principal: Principal, invitation_id: str
) -> None:
    mine, _ = await _mine(session, ctx.vault, principal, invitation_id)
    await SLOTS.remove(session, ctx.vault, principal.id, mine.row)
    audit.record(
        session,
        "room.invitation_decline",
        actor_id=principal.id,
        actor_role=principal.role,
        target=principal.id,
        details={"room": mine.room_id, "invitation": mine.row.id, "host": mine.host_id},
    )


# -- the host ----------------------------------------------------------------------


async def forget(session: AsyncSession, vault: Vault, account_id: str) -> None:
    """Delete every invitation waiting for the account (erasure)."""
    await SLOTS.remove_all(session, vault, account_id)


async def pending(
    session: AsyncSession, ctx: Context, principal: Principal, room_id: str
) -> list[PendingView]:
    """The room's pending invitations, decoys among them, oldest first (hosts)."""
    state = await rooms.load_as_host(session, ctx.vault, room_id, principal.id)
    key_id = state.room.data_key_id
    assert key_id is not None
    rows = (
        await session.execute(select(RoomInvitation).where(RoomInvitation.room_id == state.room.id))
    ).scalars()
    views = []
    for row in rows:
        data = await ctx.vault.open_json(
            session, key_id, RoomInvitation.room_details, row.id, row.room_details
        )
        views.append(PendingView(row.id, datetime.fromisoformat(data["created_at"])))
    return sorted(views, key=lambda v: (v.created_at, v.id))
