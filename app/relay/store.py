"""What the brokers share: a message going in, a message as retained, the bounds, the errors.

Both brokers (`broker.InProcessBroker`, `redis_broker.RedisBroker`) and the
relay's core import these; nothing here imports a broker.

A message is stored as a fragment (`app.relay.frames`): the frame without its
`type` and `seq`. Erasure (decision notes 0005 and 0006) rewrites retained
fragments so that nothing names the erased person: `forgotten` is the rule
for one message, `ERASED_SENDER` what replaces their sender.

Admission points (decision note 0005): the events that admit an account to a
room, or take it out, move its point; `admission_change` says how.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple, assert_never

from app.core.events import (
    AccountClosed,
    AccountErased,
    Admitted,
    CheckinRecorded,
    DataKeyDestroyed,
    DeviceAdded,
    DeviceRevoked,
    Event,
    LoginRevoked,
    ParticipantAdded,
    ParticipantRemoved,
    Presence,
    RoomEnded,
    RoomLocked,
    RoomSchedule,
    RoomUnlocked,
    SupervisionWithdrawn,
    Unadmitted,
)
from app.relay.frames import sender_member

if TYPE_CHECKING:
    from app.core.config import Settings


@dataclass(frozen=True)
class Outgoing:
    room: str
    sender_device: str
    client_id: str
    broadcast: str | None  # fragment for every other device
    directed: dict[str, str] | None  # device id -> fragment
    sender_account: str = ""  # whose quota it counts against (the device's, when empty)
    #: The epoch of the MLS commit this message carries, if it is one: the broker
    #: accepts it only for the room's current epoch, then moves to the next.
    commit_epoch: int | None = None

    @property
    def sender(self) -> str:
        return self.sender_account or self.sender_device

    def payload(self) -> tuple[str, str]:
        """(kind, payload) as stored: `b` and the fragment, or `d` and the JSON map."""
        if self.broadcast is not None:
            return "b", self.broadcast
        return "d", json.dumps(self.directed, separators=(",", ":"))


@dataclass(frozen=True)
class ReplayLimits:
    """How much a room's replay store may hold (PROTOCOL.md, "The room socket")."""

    max_frames: int = 20_000
    max_bytes: int = 32 * 1024 * 1024
    sender_max_bytes: int = 16 * 1024 * 1024
    idle_s: float = 24 * 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ReplayLimits:
        return cls(
            max_frames=settings.replay_max_frames,
            max_bytes=settings.replay_max_bytes,
            sender_max_bytes=settings.replay_sender_max_bytes,
            idle_s=settings.replay_idle_hours * 3600.0,
        )


AdmissionMove = Literal["first", "reset", "drop"]


def admission_change(event: Event) -> tuple[str, str, AdmissionMove] | None:
    """(room, account, how) for an event that moves an admission point, else None.

    `how` is `first` (record the latest seq unless there is a point already),
    `reset` (a new membership that is admitted at once: the latest seq) or
    `drop` (no longer admitted: forget the point).
    """
    match event:
        case Admitted(room=room, account=account):
            return room, account, "first"
        case ParticipantAdded(room=room, account=account, admitted=admitted):
            return room, account, "reset" if admitted else "drop"
        case (
            ParticipantRemoved(room=room, account=account) | Unadmitted(room=room, account=account)
        ):
            return room, account, "drop"
        case (
            DeviceAdded()
            | DeviceRevoked()
            | CheckinRecorded()
            | AccountClosed()
            | LoginRevoked()
            | RoomLocked()
            | RoomUnlocked()
            | RoomSchedule()
            | RoomEnded()
            | DataKeyDestroyed()
            | AccountErased()
            | Presence()
            | SupervisionWithdrawn()
        ):
            return None
        case _:
            assert_never(event)


class Stored(NamedTuple):
    """A retained message. Only strings, ints and tuples: the garbage collector
    stops tracking such tuples, so a long session's history costs no GC time."""

    seq: int
    sender_device: str
    broadcast: str | None
    directed: tuple[tuple[str, str], ...] | None  # (device id, fragment) pairs

    def fragment_for(self, device_id: str) -> str | None:
        if self.broadcast is not None:
            return self.broadcast if device_id != self.sender_device else None
        assert self.directed is not None
        for device, fragment in self.directed:
            if device == device_id:
                return fragment
        return None


#: What replaces the sender of a retained message once its sender is erased.
ERASED_SENDER = sender_member("", "")


def forgotten(stored: Stored, account_id: str, devices: set[str]) -> Stored:
    """`stored` with nothing left that names `devices` or `account_id` as their sender."""
    sender = stored.sender_device
    erased = sender in devices
    old = sender_member(account_id, sender) if erased else ""
    broadcast, directed = stored.broadcast, stored.directed
    if broadcast is not None:
        if not erased:
            return stored
        return Stored(stored.seq, "", broadcast.replace(old, ERASED_SENDER, 1), None)
    assert directed is not None
    if not erased and not any(device in devices for device, _ in directed):
        return stored
    kept = tuple(
        (device, fragment.replace(old, ERASED_SENDER, 1) if erased else fragment)
        for device, fragment in directed
        if device not in devices
    )
    return Stored(stored.seq, "" if erased else sender, None, kept)


MessageHandler = Callable[[str, Stored], Awaitable[None]]
EventHandler = Callable[[Event], Awaitable[None]]


class BrokerUnavailable(Exception):
    """The broker cannot be reached: a send is refused, never silently dropped."""


class QuotaExceeded(Exception):
    """The sender has put its whole quota into this room's replay store: refused, not stored."""


class StaleEpoch(Exception):
    """An MLS commit for another epoch than the room's current one: refused, not stored."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"the room is at epoch {epoch}")
        self.epoch = epoch
