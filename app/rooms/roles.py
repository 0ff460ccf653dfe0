"""Typed participants: supervisor, interpreter, guardian (PROTOCOL.md, "Typed participants").

Besides the host (a counselor) and the client (`participant`), a host invites:
- a **supervisor**: a counselor account. Observes: receives the room's
  messages and takes part in its MLS group (handshakes), but sends no
  application message (`app.relay.room`). Admitted only while every client of
  the room has given this room's supervision consent (`app.rooms.gates`);
  a client's withdrawal closes the supervisors' sockets with 4013.
- an **interpreter**: any client or counselor account, a full participant,
  with the host's attestation of their qualification (45 CFR 92.201).
- a **guardian**: a linked guardian (`app.guardians`) of a client of the room.

Adding a supervisor or interpreter records, sealed with the membership under
the room's key, what the clients were told and agreed to (`consent_note`) and
which clients had given their supervision consent at that moment.

A client's supervision consent is sealed in the client's own membership
(`room_members.details`, under the room's key): it goes with the membership.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import Principal
from app.core import events
from app.core.context import Context
from app.core.events import emit
from app.core.vault import Vault
from app.guardians import service as guardians
from app.models import Account, Role
from app.rooms import service as rooms
from app.rooms.errors import NotAClient
from app.rooms.gates import SUPERVISION_CONSENT


async def fits(
    session: AsyncSession, vault: Vault, state: rooms.RoomState, account: Account, role: str
) -> bool:
    """May `account` be the room's `role`?"""
    if role == rooms.SUPERVISOR:
        return account.role == Role.counselor
    if role == rooms.INTERPRETER:
        return account.role in (Role.client, Role.counselor)
    if role == rooms.GUARDIAN:
        for m in state.members:
            if m.role == rooms.PARTICIPANT and await guardians.is_guardian_of(
                session, vault, account, m.account_id
            ):
                return True
    return False


def _clients(state: rooms.RoomState) -> list[dict[str, Any]]:
    return [
        {
            "account_id": m.account_id,
            "supervision_consent": (m.extra.get(SUPERVISION_CONSENT) or {}).get("given_at"),
        }
        for m in state.members
        if m.role == rooms.PARTICIPANT
    ]


def invitation_record(
    state: rooms.RoomState,
    role: str,
    qualification: dict[str, Any] | None,
    consent_note: str | None,
) -> dict[str, Any]:
    """What a typed invitation keeps, sealed under the room's key, for its acceptance."""
    return {
        "role": role,
        "qualification": qualification,
        "consent_note": consent_note,
        "clients": _clients(state),
    }


def member_extra(record: dict[str, Any]) -> dict[str, Any]:
    """The sealed extras of the membership an accepted typed invitation makes."""
    extra: dict[str, Any] = {}
    if record.get("qualification"):
        extra["qualification"] = record["qualification"]
    if record.get("consent_note"):
        extra["consent_record"] = {
            "note": record["consent_note"],
            "clients": record.get("clients", []),
            "recorded_at": record.get("created_at"),
        }
    return extra


async def set_supervision_consent(
    session: AsyncSession, ctx: Context, principal: Principal, room_id: str, *, give: bool
) -> rooms.RoomState:
    """A client gives (or withdraws) consent to supervision in this room.

    Giving it again keeps the first moment. Withdrawing closes every supervisor's
    socket in the room (`SupervisionWithdrawn`: 4013), on every instance.
    """
    state, member = await rooms.load_for(session, ctx.vault, room_id, principal.id)
    if member.role != rooms.PARTICIPANT:
        raise NotAClient("Only a client of the room gives or withdraws supervision consent.")
    rooms.not_ended(state, ctx)
    had = SUPERVISION_CONSENT in member.extra
    if give and not had:
        member.extra[SUPERVISION_CONSENT] = {"given_at": ctx.clock.now().isoformat()}
    elif not give:
        member.extra.pop(SUPERVISION_CONSENT, None)
    await rooms.seal_member(session, ctx.vault, state, member)
    await session.flush()
    if not give and had:
        emit(session, events.SupervisionWithdrawn(room_id))
    rooms.record_on_room(
        session,
        "room.supervision_consent" if give else "room.supervision_consent_withdraw",
        principal,
        state,
    )
    return state
