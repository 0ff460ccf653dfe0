"""Events for live connections, published only once the change they announce is committed.

Services call `emit(session, event)`; the unit of work publishes the queued
events after its commit succeeds (a rolled-back change announces nothing).
The publisher is the relay's broker, handed to the context at start-up, so
core stays free of the relay.

Each event is a frozen dataclass (ids are strings):
- `DeviceAdded(account, device, public_key, signing_key)`: keys base64url;
  signing_key None for a device registered before devices were signed
- `DeviceRevoked(account, device)`: its sockets close with 4003
- `AccountClosed(account, code, reason)`: every socket of the account closes
  with `code` (consent withdrawn: 4003; erased: 4001; disabled: 4012)
- `LoginRevoked(login)`: sockets opened under that log-in close with 4001
- `ParticipantAdded(room, account, role, display_name, admitted, devices)`:
  devices as (device id, public key, signing key or None) triples
- `ParticipantRemoved(room, account)`: its sockets close with 4003
- `Admitted(room, account)`
- `Unadmitted(room, account)`: back in the waiting room (consent withdrawn);
  the others hear `presence` `waiting`, its admission point is dropped
- `CheckinRecorded(room, account, address, jurisdiction, contact_name,
  contact_phone, callback_phone, recorded_at, licensed)`: a client's safety
  check-in, for the room's hosts' sockets only (never another participant's)
- `SupervisionWithdrawn(room)`: a client withdrew (or a new client has not
  given) the room's supervision consent: supervisors' sockets close with 4013
- `RoomLocked(room)` / `RoomUnlocked(room)`
- `RoomSchedule(room, ends_at)`: the end moved (timers are re-armed)
- `RoomEnded(room)`: every socket closes with 4010
- `DataKeyDestroyed(key)`: every instance forgets its cached copy (erasure)
- `AccountErased(account, devices, rooms)`: the broker's replay store forgets
  the account and every one of its devices in those rooms
- `Presence(room, event, account, device, conn)`: published by the relay, not
  by services: a device's socket came `online` (`waiting` in the waiting
  room) or went `offline`; `conn` names the connection, so that a device
  that joins again replaces its older socket on whichever instance holds it

Across instances an event travels as one JSON object: its fields and `kind`
(`device_added`, `presence`, ...). `decode` is strict: an unknown kind, a
missing or extra field, or a value of the wrong type is an `EventError`, so
a broker can log and drop what it cannot trust instead of acting on half of it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal, cast, get_args, get_type_hints

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.close_codes import Close

PENDING = "confide.events.pending"


@dataclass(frozen=True, slots=True)
class DeviceAdded:
    account: str
    device: str
    public_key: str
    signing_key: str | None


@dataclass(frozen=True, slots=True)
class DeviceRevoked:
    account: str
    device: str


@dataclass(frozen=True, slots=True)
class AccountClosed:
    account: str
    code: Close
    reason: str


@dataclass(frozen=True, slots=True)
class LoginRevoked:
    login: str


@dataclass(frozen=True, slots=True)
class ParticipantAdded:
    room: str
    account: str
    role: str
    display_name: str
    admitted: bool
    devices: tuple[tuple[str, str, str | None], ...]


@dataclass(frozen=True, slots=True)
class ParticipantRemoved:
    room: str
    account: str


@dataclass(frozen=True, slots=True)
class Admitted:
    room: str
    account: str


@dataclass(frozen=True, slots=True)
class Unadmitted:
    room: str
    account: str


@dataclass(frozen=True, slots=True)
class CheckinRecorded:
    room: str
    account: str
    address: str
    jurisdiction: str
    contact_name: str
    contact_phone: str
    callback_phone: str
    recorded_at: datetime | None
    licensed: bool


@dataclass(frozen=True, slots=True)
class SupervisionWithdrawn:
    room: str


@dataclass(frozen=True, slots=True)
class RoomLocked:
    room: str


@dataclass(frozen=True, slots=True)
class RoomUnlocked:
    room: str


@dataclass(frozen=True, slots=True)
class RoomSchedule:
    room: str
    ends_at: datetime | None


@dataclass(frozen=True, slots=True)
class RoomEnded:
    room: str


@dataclass(frozen=True, slots=True)
class DataKeyDestroyed:
    key: str


@dataclass(frozen=True, slots=True)
class AccountErased:
    account: str
    devices: tuple[str, ...]
    rooms: tuple[str, ...]


PresenceEvent = Literal["online", "offline", "waiting"]


@dataclass(frozen=True, slots=True)
class Presence:
    room: str
    event: PresenceEvent
    account: str
    device: str
    conn: str


Event = (
    DeviceAdded
    | DeviceRevoked
    | AccountClosed
    | LoginRevoked
    | ParticipantAdded
    | ParticipantRemoved
    | Admitted
    | Unadmitted
    | CheckinRecorded
    | SupervisionWithdrawn
    | RoomLocked
    | RoomUnlocked
    | RoomSchedule
    | RoomEnded
    | DataKeyDestroyed
    | AccountErased
    | Presence
)

#: The name of each kind on the wire.
KINDS: dict[str, type[Event]] = {
    "device_added": DeviceAdded,
    "device_revoked": DeviceRevoked,
    "account_closed": AccountClosed,
    "login_revoked": LoginRevoked,
    "participant_added": ParticipantAdded,
    "participant_removed": ParticipantRemoved,
    "admitted": Admitted,
    "unadmitted": Unadmitted,
    "checkin_recorded": CheckinRecorded,
    "supervision_withdrawn": SupervisionWithdrawn,
    "room_locked": RoomLocked,
    "room_unlocked": RoomUnlocked,
    "room_schedule": RoomSchedule,
    "room_ended": RoomEnded,
    "data_key_destroyed": DataKeyDestroyed,
    "account_erased": AccountErased,
    "presence": Presence,
}
_KIND_OF: dict[type[Event], str] = {cls: kind for kind, cls in KINDS.items()}

Publisher = Callable[[Event], Awaitable[None]]


def emit(session: AsyncSession, event: Event) -> None:
    session.info.setdefault(PENDING, []).append(event)


def take(session: AsyncSession) -> list[Event]:
    events: list[Event] = session.info.pop(PENDING, [])
    return events


def kind_of(event: Event) -> str:
    return _KIND_OF[type(event)]


class EventError(ValueError):
    """Text that is not one well-formed event."""


def encode(event: Event) -> str:
    """One JSON object: `kind`, then the event's fields."""
    data: dict[str, Any] = {"kind": kind_of(event)}
    for item in fields(event):
        value = getattr(event, item.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif item.name == "devices" and isinstance(event, ParticipantAdded):
            value = {device: [public, signing] for device, public, signing in value}
        elif isinstance(value, tuple):
            value = list(value)
        data[item.name] = value
    return json.dumps(data, separators=(",", ":"))


def decode(text: str | bytes) -> Event:
    """The event `text` encodes, or `EventError`: no field missing or extra, each of its type."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise EventError("not JSON") from None
    if not isinstance(data, dict):
        raise EventError("not an object")
    kind = data.pop("kind", None)
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise EventError(f"unknown kind {kind!r}"[:80])
    readers = _READ[cls]
    if data.keys() != readers.keys():
        raise EventError(f"{kind}: not the fields {sorted(readers)}")
    return cls(**{name: read(data[name]) for name, read in readers.items()})


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise EventError("expected a string")
    return value


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise EventError("expected a boolean")
    return value


def _close(value: object) -> Close:
    if type(value) is not int or value not in _CLOSE_CODES:
        raise EventError("expected a close code")
    return Close(value)


def _moment(value: object) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(_text(value))
    except ValueError:
        raise EventError("expected an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise EventError("expected a time with its zone")
    return moment


def _texts(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise EventError("expected a list")
    return tuple(_text(item) for item in value)


def _maybe_text(value: object) -> str | None:
    return None if value is None else _text(value)


def _keys(value: object) -> tuple[tuple[str, str, str | None], ...]:
    """{device id: [public key, signing key or null]}."""
    if not isinstance(value, dict):
        raise EventError("expected an object")
    out = []
    for device, keys in value.items():
        if not isinstance(keys, list) or len(keys) != 2:
            raise EventError("expected [public key, signing key]")
        out.append((_text(device), _text(keys[0]), _maybe_text(keys[1])))
    return tuple(out)


def _presence(value: object) -> PresenceEvent:
    if value not in get_args(PresenceEvent):
        raise EventError("expected online, offline or waiting")
    return cast(PresenceEvent, value)


_CLOSE_CODES = frozenset(code.value for code in Close)
_READERS: dict[object, Callable[[object], Any]] = {
    str: _text,
    str | None: _maybe_text,
    bool: _flag,
    Close: _close,
    datetime | None: _moment,
    tuple[str, ...]: _texts,
    tuple[tuple[str, str, str | None], ...]: _keys,
    PresenceEvent: _presence,
}
#: How each field of each kind is read back, from its annotation (a field of
#: a type without a reader above is a KeyError at import).
_READ: dict[type[Event], dict[str, Callable[[object], Any]]] = {
    cls: {name: _READERS[hint] for name, hint in get_type_hints(cls).items()}
    for cls in KINDS.values()
}
