"""Events for live connections, published only once the change they announce is committed.

Services call `emit(session, event)`; the unit of work publishes the queued
events after its commit succeeds (a rolled-back change announces nothing).
The publisher is the relay's broker, handed to the context at start-up, so
core stays free of the relay.

Event shapes (a dict with `kind`; ids are strings):
- `device_added`      {account, device, public_key}: public_key base64url
- `device_revoked`    {account, device}: its sockets close with 4003
- `account_closed`    {account, code, reason}: every socket of the account
                      closes with `code` (consent withdrawn: 4003; erased: 4001)
- `session_revoked`   {sid}: sockets opened under that log-in close with 4001
- `participant_added` {room, account, role, display_name, admitted}
- `participant_removed` {room, account}: its sockets close with 4003
- `admitted`          {room, account}
- `room_locked` / `room_unlocked` {room}
- `room_schedule`     {room, ends_at}: the end moved (timers are re-armed)
- `room_ended`        {room}: every socket closes with 4010
- `data_key_destroyed` {key}: every instance forgets its cached copy (erasure)
- `account_erased`    {account, devices, rooms}: the broker's replay store
                      forgets the account and every one of its devices in those rooms
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

PENDING = "confide.events.pending"

Publisher = Callable[[dict[str, Any]], Awaitable[None]]


def emit(session: AsyncSession, event: dict[str, Any]) -> None:
    session.info.setdefault(PENDING, []).append(event)


def take(session: AsyncSession) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = session.info.pop(PENDING, [])
    return events
