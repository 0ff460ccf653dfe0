"""A live room's rules, without I/O: `handle(room, event, now) -> [Action]`.

The hub (`app.relay.hub`) owns sockets, queues, tasks, timers and the broker.
Everything it learns becomes one input to `handle`: a frame a socket read, a
message or event the broker delivered, an answer of the broker to an action,
a timer, the clock. `handle` updates the room's state (`RoomState`, and the
`Peer` of each connection) and answers with actions for the hub to carry out,
in order: frames to queue, sockets to close, broker calls to make, timers to
arm or cancel. It never awaits, never reads a clock (`now` is an input) and
never raises for anything a peer or the broker sends, so every rule below is
tested without sockets, without a broker and without sleeping
(tests/relay/test_room.py, test_room_machine.py).

Rules, and why (PROTOCOL.md, "The room socket"):
- The room knows its participants, their admission and their devices from the
  database when a socket joins (`Granted`), then from events. Messages need no
  database at all.
- A connection is sent, live or by replay, only what was sent while its
  account was admitted, and only what is addressed to its device. A waiting
  connection gets presence and room events only.
- `seq` comes from the broker (`Append` -> `Appended`): the same for every
  recipient, across instances. A resend of a client id gets the first send's
  seq from the broker, which publishes nothing the second time: acked again,
  delivered once.
- A replay (`resume`) reads the broker a page at a time (`ReadPage`) and
  queues each message paced (`SendPaced`: the hub waits for room in the
  socket's queue first), so a backlog of any length reaches a device that
  reads. It starts after the account's admission point. Live messages for the
  device are held back while it runs (the replay reads on past them) and
  flow again after `resumed`. A message is sent to one socket once: what a
  replay or live delivery already sent is skipped. A new `resume` stops the
  one running and starts over from its own `after`; what the stopped one
  queued counts as sent.
- A device that joins again replaces its older connection (4011), on this
  instance or another (`Presence` carries the connection's id).
- The room's end closes every connection (4010), by the event or by the
  clock; an `ending` notice goes out five minutes before a scheduled end, and
  again when the end moves (`RoomSchedule` re-arms the timers).
- Close codes are those of `app.core.close_codes.Close`, each for the reason
  PROTOCOL.md gives it.
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Literal, assert_never

from app.core import mls
from app.core.close_codes import Close
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
from app.relay import frames
from app.relay.frames import DeviceKeys
from app.relay.protocol import (
    MAX_STRIKES,
    AuthFrame,
    FrameError,
    FrameRead,
    PingFrame,
    ResumeFrame,
    SendFrame,
    State,
    TokenBucket,
    parse_client_frame,
)
from app.relay.store import Outgoing, Stored

#: The `ending` notice goes out this long before a scheduled end.
ENDING_NOTICE = timedelta(minutes=5)
#: Messages read from the broker at a time by a replay.
REPLAY_PAGE = 64
#: Seqs of live messages a connection remembers having sent (a replay skips them).
LIVE_SEEN_MAX = 10_000
#: The role whose sockets observe (`app.rooms.roles`): handshakes only, closed on
#: a withdrawn supervision consent (4013).
SUPERVISOR = "supervisor"
#: The roles a `presence` frame names (`app.rooms.roles`): hosts and clients it leaves
#: unnamed, as `welcome` gives every role.
TYPED_ROLES = frozenset({SUPERVISOR, "interpreter", "guardian"})

_OPEN = (State.WAITING, State.ADMITTED)
#: The role of a room's hosts (`app.rooms.service.HOST`).
HOST = "host"
_HEARS_MESSAGES = (State.ADMITTED, State.DRAINING)


@dataclass(frozen=True, slots=True)
class Now:
    """The time of an input: `wall` for messages and the schedule, `mono` (seconds of a
    monotonic clock) for the rate limit and idle time."""

    wall: datetime
    mono: float


# -- state -------------------------------------------------------------------------


@dataclass(slots=True)
class Participant:
    account_id: str
    role: str
    display_name: str
    admitted: bool
    #: Device id -> (public key, signing key or None).
    devices: dict[str, DeviceKeys] = field(default_factory=dict)


@dataclass
class Grant:
    """What the database said when the socket joined."""

    room_id: str
    account_id: str
    device_id: str
    role: str
    login_id: str
    admitted: bool
    ends_at: datetime | None
    locked: bool
    participants: dict[str, Participant]
    #: Frames for this connection alone, right after its `welcome`: a host's
    #: `checkin` frames of the room's clients.
    greeting: tuple[str, ...] = ()


class Timer(Enum):
    ENDING = "ending"
    END = "end"


@dataclass(slots=True)
class Replay:
    """One `resume` under way on a connection."""

    id: int
    after: int
    begun: bool = False
    start: int = 0  # where it began: max(after, the admission point)
    position: int = 0  # the last seq gone through (queued, or nothing to send)
    expected: int = 0  # the next seq the client is owed
    latest: int = 0  # the room's latest seq when it began
    empty: int = 0  # empty pages read in a row
    full_page: bool = False
    pending: deque[Stored] = field(default_factory=deque)  # the rest of the page in hand


@dataclass(eq=False, slots=True)
class Peer:
    """One connection, as its room sees it."""

    id: str
    room_id: str
    account_id: str
    device_id: str
    role: str
    login_id: str
    joins_as: State  # WAITING or ADMITTED, as its grant said
    bucket: TokenBucket = field(repr=False)
    state: State = State.AUTHENTICATING
    close_code: Close | None = None
    close_reason: str = ""
    last_active: float = field(default=0.0, repr=False)
    #: The client id of the `send` the broker is storing, if any.
    sending: str | None = field(default=None, repr=False)
    replay: Replay | None = field(default=None, repr=False)
    replays: int = field(default=0, repr=False)
    #: The highest seq held back from live delivery while a replay ran.
    live_high: int = field(default=0, repr=False)
    #: (lo, hi]: the seqs that replays on this connection have gone through.
    replayed: tuple[int, int] = field(default=(0, 0), repr=False)
    live_seen: set[int] = field(default_factory=set, repr=False)
    #: What the last frame read was (the hub counts frames by it).
    read: FrameRead = field(default="unread", repr=False)
    #: The grant's `greeting`, sent once after `welcome`.
    greeting: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_grant(cls, peer_id: str, grant: Grant, rate_per_s: int) -> Peer:
        return cls(
            id=peer_id,
            room_id=grant.room_id,
            account_id=grant.account_id,
            device_id=grant.device_id,
            role=grant.role,
            login_id=grant.login_id,
            joins_as=State.ADMITTED if grant.admitted else State.WAITING,
            bucket=TokenBucket(rate=rate_per_s, burst=2 * rate_per_s),
            greeting=grant.greeting,
        )


@dataclass(eq=False)
class RoomState:
    id: str
    idle_timeout_s: float = 300.0
    ends_at: datetime | None = None
    locked: bool = False
    participants: dict[str, Participant] = field(default_factory=dict)
    #: Device id -> its connection in the room (the newest: an older one is replaced).
    connections: dict[str, Peer] = field(default_factory=dict)
    #: Connections on their way in (`Opening` to `Joined`): the room stays meanwhile.
    joining: dict[str, Peer] = field(default_factory=dict)
    timers: dict[Timer, datetime] = field(default_factory=dict)

    def known_devices(self) -> set[str]:
        return {d for part in self.participants.values() for d in part.devices}


# -- inputs ------------------------------------------------------------------------
# Besides these, every event of app.core.events is an input.


@dataclass(frozen=True, slots=True)
class Granted:
    """A socket's grant: the database's view of the room refreshes the room's."""

    grant: Grant


@dataclass(frozen=True, slots=True)
class Opening:
    """A granted connection is on its way in."""

    peer: Peer


@dataclass(frozen=True, slots=True)
class Joined:
    """What `Load` read: the devices online in the room and its latest seq."""

    peer: Peer
    online: frozenset[str]
    latest: int


@dataclass(frozen=True, slots=True)
class JoinFailed:
    """The broker could not be reached for `Load`."""

    peer: Peer


@dataclass(frozen=True, slots=True)
class AnnounceFailed:
    """The broker could not be reached to say that a connection came online."""

    peer: Peer


@dataclass(frozen=True, slots=True)
class Received:
    """A frame the socket read: its text, or None for a binary frame."""

    peer: Peer
    text: str | None


@dataclass(frozen=True, slots=True)
class Appended:
    peer: Peer
    client_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class AppendRefused:
    peer: Peer
    client_id: str
    reason: Literal["unavailable", "quota", "stale_epoch"]
    #: The room's current MLS epoch, for `stale_epoch`.
    epoch: int | None = None


@dataclass(frozen=True, slots=True)
class WelcomeResolved:
    """What `ResolveWelcome` found: the device each ref was handed out for in the room
    (refs not handed out there are absent), or None if the database could not say."""

    peer: Peer
    welcome: ResolveWelcome
    devices: dict[bytes, str] | None


@dataclass(frozen=True, slots=True)
class ReplayBegun:
    """What `StartReplay` read: the account's admission point and the room's latest seq."""

    peer: Peer
    replay: int
    point: int
    latest: int


@dataclass(frozen=True, slots=True)
class PageRead:
    peer: Peer
    replay: int
    page: tuple[Stored, ...]


@dataclass(frozen=True, slots=True)
class Queued:
    """The frame of a `SendPaced` is in the socket's queue."""

    peer: Peer
    replay: int
    seq: int


@dataclass(frozen=True, slots=True)
class ReplayFailed:
    """The broker could not be reached (`broken` False), or reading failed otherwise."""

    peer: Peer
    replay: int
    broken: bool


@dataclass(frozen=True, slots=True)
class MessageStored:
    """A message the broker accepted, from any instance, in seq order."""

    stored: Stored


@dataclass(frozen=True, slots=True)
class TimerFired:
    timer: Timer
    at: datetime


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passes: silent connections and timers the clock has reached."""


@dataclass(frozen=True, slots=True)
class Drain:
    """The server is stopping: read no more, answer the frame in hand, close with 1012."""


@dataclass(frozen=True, slots=True)
class CloseAll:
    code: Close
    reason: str


@dataclass(frozen=True, slots=True)
class Overflowed:
    """The socket's send queue is full: its consumer is too slow."""

    peer: Peer


@dataclass(frozen=True, slots=True)
class PeerGone:
    """Writing to the socket failed."""

    peer: Peer


@dataclass(frozen=True, slots=True)
class Aborted:
    """The socket's reading stopped abnormally (it failed, or its task was cancelled)."""

    peer: Peer


@dataclass(frozen=True, slots=True)
class ReaderDone:
    """The socket will read no more: the peer closed it, or the server drains."""

    peer: Peer


@dataclass(frozen=True, slots=True)
class Left:
    """The connection's tasks are over."""

    peer: Peer


Input = (
    MessageStored
    | Received
    | WelcomeResolved
    | Appended
    | AppendRefused
    | Queued
    | PageRead
    | ReplayBegun
    | ReplayFailed
    | Granted
    | Opening
    | Joined
    | JoinFailed
    | AnnounceFailed
    | TimerFired
    | Tick
    | Drain
    | CloseAll
    | Overflowed
    | PeerGone
    | Aborted
    | ReaderDone
    | Left
    | Event
)


# -- actions -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Queue `frame` for each of `to` (serialized once, whatever the number of recipients)."""

    to: tuple[Peer, ...]
    frame: str


@dataclass(frozen=True, slots=True)
class SendPaced:
    """Queue a replayed message once the replay's share of the queue has room; then `Queued`."""

    peer: Peer
    replay: int
    seq: int
    frame: str


@dataclass(frozen=True, slots=True)
class CloseNow:
    """Close the socket with `code`; what is queued is dropped."""

    peer: Peer
    code: Close
    reason: str


@dataclass(frozen=True, slots=True)
class CloseAfter:
    """Close the socket with `code` once what is queued is written."""

    peer: Peer
    code: Close
    reason: str


@dataclass(frozen=True, slots=True)
class Load:
    """Read the devices online and the latest seq, and record an admission point for each
    of `admitted` that has none; then `Joined` (or `JoinFailed`)."""

    peer: Peer
    admitted: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Announce:
    """Mark the device online (or not) and publish `presence`; `AnnounceFailed` if that
    fails while coming online."""

    peer: Peer
    presence: Presence
    online: bool


@dataclass(frozen=True, slots=True)
class ResolveWelcome:
    """Find which devices the KeyPackageRefs of a Welcome were handed out for in the
    room (one database query); then `WelcomeResolved`."""

    peer: Peer
    client_id: str
    refs: tuple[bytes, ...]
    #: The message as it will be stored, for each device it goes to.
    fragment: str


@dataclass(frozen=True, slots=True)
class Append:
    """Store and publish a message; then `Appended` or `AppendRefused`."""

    peer: Peer
    message: Outgoing


@dataclass(frozen=True, slots=True)
class StartReplay:
    """Stop the connection's replay task if one runs, and start one: read the account's
    admission point and the latest seq, then `ReplayBegun` (or `ReplayFailed`)."""

    peer: Peer
    replay: int


@dataclass(frozen=True, slots=True)
class ReadPage:
    """Read at most `limit` retained messages after `after`; then `PageRead` (or `ReplayFailed`)."""

    peer: Peer
    replay: int
    after: int
    limit: int


@dataclass(frozen=True, slots=True)
class ArmTimer:
    timer: Timer
    at: datetime


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer: Timer


@dataclass(frozen=True, slots=True)
class Dispose:
    """The room has no connection left: the hub forgets it."""


Action = (
    Send
    | SendPaced
    | CloseNow
    | CloseAfter
    | Load
    | Announce
    | Append
    | ResolveWelcome
    | StartReplay
    | ReadPage
    | ArmTimer
    | CancelTimer
    | Dispose
)


# -- the rules ---------------------------------------------------------------------


def handle(room: RoomState, event: Input, now: Now) -> list[Action]:
    """Apply `event` to `room`; what the hub must do, in order."""
    match event:
        case MessageStored(stored=stored):
            return _deliver(room, stored)
        case Received(peer=peer, text=text):
            return _received(room, peer, text, now)
        case WelcomeResolved(peer=peer, welcome=welcome, devices=devices):
            return _welcome_resolved(room, peer, welcome, devices)
        case Appended(peer=peer, client_id=client_id, seq=seq):
            return _answered(peer, frames.ack(client_id, seq))
        case AppendRefused(peer=peer, client_id=client_id, reason="quota"):
            detail = "your share of this room's replay store is used"
            return _answered(peer, frames.error("quota_exceeded", detail, client_id))
        case AppendRefused(peer=peer, client_id=client_id, reason="stale_epoch", epoch=epoch):
            detail = "a commit for another epoch than the room's; apply the newer commit first"
            return _answered(peer, frames.error("stale_epoch", detail, client_id, epoch=epoch))
        case AppendRefused(peer=peer, client_id=client_id):
            detail = "message not accepted; send again"
            return _answered(peer, frames.error("unavailable", detail, client_id))
        case Queued(peer=peer, replay=replay_id, seq=seq):
            replay = _current(peer, replay_id)
            if replay is None:
                return []
            replay.position = seq
            return _replay_items(peer, replay)
        case PageRead(peer=peer, replay=replay_id, page=page):
            replay = _current(peer, replay_id)
            return [] if replay is None else _page_read(peer, replay, page)
        case ReplayBegun(peer=peer, replay=replay_id, point=point, latest=latest):
            replay = _current(peer, replay_id)
            if replay is None:
                return []
            replay.begun = True
            replay.start = replay.position = max(replay.after, point)
            replay.expected = replay.after + 1
            replay.latest = latest
            return _replay_next(peer, replay)
        case ReplayFailed(peer=peer, replay=replay_id, broken=broken):
            replay = _current(peer, replay_id)
            if replay is None:
                return []
            _stop_replay(peer)
            if broken:
                return _close(peer, Close.TRY_AGAIN, "replay failed; resume again")
            detail = "replay not available; resume again"
            return _to(peer, frames.error("unavailable", detail))
        case Granted(grant=grant):
            room.participants = grant.participants
            room.locked = grant.locked
            if room.ends_at == grant.ends_at:
                return []
            room.ends_at = grant.ends_at
            return _arm(room, now)
        case Opening(peer=peer):
            room.joining[peer.id] = peer
            admitted = tuple(a for a, part in room.participants.items() if part.admitted)
            return [Load(peer, admitted)]
        case Joined(peer=peer, online=online, latest=latest):
            return _joined(room, peer, online, latest, now)
        case JoinFailed(peer=peer):
            room.joining.pop(peer.id, None)
            return _close(peer, Close.TRY_AGAIN, "broker unavailable")
        case AnnounceFailed(peer=peer):
            return _close(peer, Close.TRY_AGAIN, "broker unavailable")
        case TimerFired(timer=timer, at=at):
            if room.timers.get(timer) != at:
                return []  # cancelled, or fired already
            del room.timers[timer]
            return _ending(room) if timer is Timer.ENDING else _end(room)
        case Tick():
            return _tick(room, now)
        case Drain():
            out: list[Action] = []
            for peer in list(room.connections.values()):
                if peer.state in _OPEN:
                    if peer.sending is None:
                        out += _finish(peer, Close.SERVICE_RESTART)
                    else:
                        peer.state = State.DRAINING
            return out
        case CloseAll(code=code, reason=reason):
            return [a for p in list(room.connections.values()) for a in _close(p, code, reason)]
        case Overflowed(peer=peer):
            return _close(peer, Close.TRY_AGAIN, "consumer too slow")
        case PeerGone(peer=peer):
            return _close(peer, Close.GOING_AWAY, "")
        case Aborted(peer=peer):
            return _close(peer, Close.NORMAL, "")
        case ReaderDone(peer=peer):
            peer.sending = None
            draining = peer.state is State.DRAINING
            return _finish(peer, Close.SERVICE_RESTART if draining else Close.NORMAL)
        case Left(peer=peer):
            return _left(room, peer)
        case Presence():
            return _presence(room, event)
        case Admitted(account=account):
            part = room.participants.get(account)
            if part is not None:
                part.admitted = True
            for peer in room.connections.values():
                if peer.account_id == account and peer.state is State.WAITING:
                    peer.state = State.ADMITTED
            return _broadcast(room, frames.presence("admitted", account, role=_role(room, account)))
        case Unadmitted(account=account):
            # Back in the waiting room (consent withdrawn): what it could hear ends
            # now, whatever order the account's own `AccountClosed` comes in.
            part = room.participants.get(account)
            if part is not None:
                part.admitted = False
            out = _close_where(
                room,
                lambda p: p.account_id == account,
                Close.FORBIDDEN,
                "back in the waiting room",
            )
            return out + _broadcast(
                room, frames.presence("waiting", account, role=_role(room, account))
            )
        case SupervisionWithdrawn():
            return _close_where(
                room,
                lambda p: p.role == SUPERVISOR,
                Close.SUPERVISION_WITHDRAWN,
                "supervision consent withdrawn",
            )
        case ParticipantAdded():
            room.participants[event.account] = Participant(
                event.account,
                event.role,
                event.display_name,
                event.admitted,
                {device: (public, signing) for device, public, signing in event.devices},
            )
            return []
        case ParticipantRemoved(account=account):
            removed = room.participants.pop(account, None)
            out = _close_where(
                room, lambda p: p.account_id == account, Close.FORBIDDEN, "removed from the room"
            )
            role = _typed(removed.role) if removed is not None else None
            return out + _broadcast(room, frames.presence("removed", account, role=role))
        case DeviceAdded(account=account, device=device, public_key=key, signing_key=signing):
            part = room.participants.get(account)
            if part is None:
                return []
            part.devices[device] = (key, signing)
            frame = frames.device("added", account, device, (key, signing))
            return _broadcast(room, frame, admitted_only=True)
        case DeviceRevoked(account=account, device=device):
            part = room.participants.get(account)
            if part is None:
                return []
            keys = part.devices.pop(device, ("", None))
            out = []
            peer_of_device = room.connections.get(device)
            if peer_of_device is not None:
                out += _close(peer_of_device, Close.FORBIDDEN, "device revoked")
            frame = frames.device("revoked", account, device, keys)
            return out + _broadcast(room, frame, admitted_only=True)
        case AccountClosed(account=account, code=code, reason=reason):
            return _close_where(room, lambda p: p.account_id == account, code, reason)
        case LoginRevoked(login=login):
            return _close_where(room, lambda p: p.login_id == login, Close.TOKEN, "logged out")
        case CheckinRecorded():
            frame = frames.checkin(
                event.account,
                address=event.address,
                jurisdiction=event.jurisdiction,
                contact_name=event.contact_name,
                contact_phone=event.contact_phone,
                callback_phone=event.callback_phone,
                recorded_at=event.recorded_at,
                licensed=event.licensed,
            )
            return _to_hosts(room, frame)
        case RoomLocked():
            room.locked = True
            return _broadcast(room, frames.room_locked(True))
        case RoomUnlocked():
            room.locked = False
            return _broadcast(room, frames.room_locked(False))
        case RoomSchedule(ends_at=ends_at):
            room.ends_at = ends_at
            out = _arm(room, now)
            if ends_at is not None and ends_at - now.wall <= ENDING_NOTICE:
                out += _ending(room)
            return out
        case RoomEnded():
            return _end(room)
        case DataKeyDestroyed() | AccountErased():
            return []  # the application's and the broker's business, not a room's
        case _:
            assert_never(event)


def target(event: Event) -> str | None:
    """The room an event concerns, or None when it may concern every room."""
    match event:
        case (
            Presence(room=room)
            | Admitted(room=room)
            | Unadmitted(room=room)
            | CheckinRecorded(room=room)
            | SupervisionWithdrawn(room=room)
            | ParticipantAdded(room=room)
            | ParticipantRemoved(room=room)
            | RoomLocked(room=room)
            | RoomUnlocked(room=room)
            | RoomSchedule(room=room)
            | RoomEnded(room=room)
        ):
            return room
        case (
            DeviceAdded()
            | DeviceRevoked()
            | AccountClosed()
            | LoginRevoked()
            | DataKeyDestroyed()
            | AccountErased()
        ):
            return None
        case _:
            assert_never(event)


# -- connections -------------------------------------------------------------------


def _to(peer: Peer, frame: str) -> list[Action]:
    return [] if peer.state is State.CLOSED else [Send((peer,), frame)]


def _close(peer: Peer, code: Close, reason: str) -> list[Action]:
    if peer.state is State.CLOSED:
        return []
    peer.state, peer.close_code, peer.close_reason = State.CLOSED, code, reason
    return [CloseNow(peer, code, reason)]


def _finish(peer: Peer, code: Close, reason: str = "") -> list[Action]:
    if peer.state is State.CLOSED:
        return []
    peer.state, peer.close_code, peer.close_reason = State.CLOSED, code, reason
    return [CloseAfter(peer, code, reason)]


def _close_where(
    room: RoomState, which: Callable[[Peer], bool], code: Close, reason: str
) -> list[Action]:
    return [a for p in list(room.connections.values()) if which(p) for a in _close(p, code, reason)]


def _broadcast(room: RoomState, frame: str, *, admitted_only: bool = False) -> list[Action]:
    states = _HEARS_MESSAGES if admitted_only else (*_OPEN, State.DRAINING)
    to = tuple(p for p in room.connections.values() if p.state in states)
    return [Send(to, frame)] if to else []


def _to_hosts(room: RoomState, frame: str) -> list[Action]:
    """`frame` to the room's hosts' open connections alone (a client's check-in)."""
    to = tuple(
        p
        for p in room.connections.values()
        if p.role == HOST and p.state in (*_OPEN, State.DRAINING)
    )
    return [Send(to, frame)] if to else []


def _joined(
    room: RoomState, peer: Peer, online: frozenset[str], latest: int, now: Now
) -> list[Action]:
    room.joining.pop(peer.id, None)
    if peer.state is not State.AUTHENTICATING:
        return []
    out: list[Action] = []
    previous = room.connections.get(peer.device_id)
    if previous is not None:
        out += _close(previous, Close.REPLACED, "replaced by a new connection")
    room.connections[peer.device_id] = peer
    peer.state = peer.joins_as
    peer.last_active = now.mono
    admitted = peer.state is State.ADMITTED
    you = (peer.account_id, peer.device_id, peer.role)
    members = room.participants.values()
    seen = online | {peer.device_id}
    state: Literal["admitted", "waiting"] = "admitted" if admitted else "waiting"
    out.append(Send((peer,), frames.welcome(room.id, you, state, latest, members, seen)))
    if room.ends_at is not None and room.ends_at - now.wall <= ENDING_NOTICE:
        out.append(Send((peer,), frames.room_ending(room.ends_at)))
    out += [Send((peer,), frame) for frame in peer.greeting]
    peer.greeting = ()
    event: Literal["online", "waiting"] = "online" if admitted else "waiting"
    presence = Presence(room.id, event, peer.account_id, peer.device_id, peer.id)
    out.append(Announce(peer, presence, online=True))
    return out


def _left(room: RoomState, peer: Peer) -> list[Action]:
    room.joining.pop(peer.id, None)
    if peer.state is not State.CLOSED:
        peer.state = State.CLOSED
    peer.replay = None
    out: list[Action] = []
    current = room.connections.get(peer.device_id) is peer
    if current:
        del room.connections[peer.device_id]
    if not room.connections and not room.joining:
        out += [CancelTimer(timer) for timer in room.timers]
        room.timers.clear()
        out.append(Dispose())
    if current:
        presence = Presence(room.id, "offline", peer.account_id, peer.device_id, peer.id)
        out.append(Announce(peer, presence, online=False))
    return out


def _presence(room: RoomState, event: Presence) -> list[Action]:
    out: list[Action] = []
    if event.event in ("online", "waiting"):
        existing = room.connections.get(event.device)
        if existing is not None and existing.id != event.conn:
            # The same device joined again, here or on another instance.
            out += _close(existing, Close.REPLACED, "replaced by a new connection")
    frame = frames.presence(
        event.event, event.account, event.device, role=_role(room, event.account)
    )
    to = tuple(
        p for p in room.connections.values() if p.id != event.conn and p.state is not State.CLOSED
    )
    return [*out, Send(to, frame)] if to else out


def _role(room: RoomState, account: str) -> str | None:
    """A typed participant's role, for its `presence` frames (hosts and clients: None)."""
    part = room.participants.get(account)
    return _typed(part.role) if part is not None else None


def _typed(role: str) -> str | None:
    return role if role in TYPED_ROLES else None


def _tick(room: RoomState, now: Now) -> list[Action]:
    silent_since = now.mono - room.idle_timeout_s
    out = _close_where(
        room, lambda p: p.last_active < silent_since, Close.GOING_AWAY, "idle timeout"
    )
    for timer, at in sorted(room.timers.items(), key=lambda item: item[1]):
        if at <= now.wall:
            out += handle(room, TimerFired(timer, at), now)
    return out


# -- frames from the socket --------------------------------------------------------


def _received(room: RoomState, peer: Peer, text: str | None, now: Now) -> list[Action]:
    if peer.state not in _OPEN:
        peer.read = "unread"
        return []  # closed or draining: it reads no more
    peer.last_active = now.mono
    if text is None:
        peer.read = "binary"
        return _close(peer, Close.POLICY, "binary frames are not allowed")
    if not peer.bucket.allow(now.mono):
        peer.read = "rate_limited"
        if peer.bucket.strikes > MAX_STRIKES:
            return _close(peer, Close.POLICY, "rate limit exceeded")
        return [Send((peer,), frames.error("rate_limited", "slow down"))]
    try:
        frame = parse_client_frame(text)
    except FrameError as error:
        peer.read = "invalid"
        return [Send((peer,), frames.error(error.code, error.detail, error.frame_id))]
    peer.read = frame.type
    match frame:
        case SendFrame():
            return _send(room, peer, frame, now)
        case PingFrame():
            return [Send((peer,), frames.PONG)]
        case ResumeFrame(after=after):
            return _resume(peer, after)
        case AuthFrame():
            return [Send((peer,), frames.error("validation_error", "already authenticated"))]
        case _:
            assert_never(frame)


def _send(room: RoomState, peer: Peer, frame: SendFrame, now: Now) -> list[Action]:
    if peer.state is not State.ADMITTED:
        return [Send((peer,), frames.error("not_admitted", "wait to be admitted", frame.id))]
    sent_at = frames.sent_at(now.wall)
    account, device = peer.account_id, peer.device_id
    broadcast: str | None = None
    directed: dict[str, str] | None = None
    commit_epoch: int | None = None
    if peer.role == SUPERVISOR and not _handshake(frame):
        # A supervisor observes: the group's handshakes, never a message of its own.
        detail = "a supervisor sends MLS handshake messages only"
        return [Send((peer,), frames.error("observer_cannot_send", detail, frame.id))]
    if frame.ciphertext is not None:
        header = _mls_header(frame.ciphertext)
        commit = _commit(header)
        if commit is not None and commit[0] != mls.room_group_id(room.id):
            detail = "a commit for another MLS group than this room's"
            return [Send((peer,), frames.error("wrong_group", detail, frame.id))]
        broadcast = frames.fragment(frame.id, account, device, frame.ciphertext, sent_at)
        commit_epoch = None if commit is None else commit[1]
        if isinstance(header, mls.WelcomeHeader):
            refs = header.new_members
            # A Welcome goes only to the devices it names (PROTOCOL.md); the room
            # asks the database which they are, once, for this message.
            peer.sending = frame.id
            return [ResolveWelcome(peer, frame.id, refs, broadcast)]
    else:
        assert frame.recipients is not None
        known = room.known_devices()
        if any(d not in known for d in frame.recipients):
            detail = "unknown recipient device"
            return [Send((peer,), frames.error("validation_error", detail, frame.id))]
        directed = {
            to: frames.fragment(frame.id, account, device, ciphertext, sent_at)
            for to, ciphertext in frame.recipients.items()
        }
    peer.sending = frame.id
    outgoing = Outgoing(room.id, device, frame.id, broadcast, directed, account, commit_epoch)
    return [Append(peer, outgoing)]


WELCOME_REFUSED = "a Welcome for key packages not handed out in this room"


def _welcome_resolved(
    room: RoomState, peer: Peer, welcome: ResolveWelcome, devices: dict[bytes, str] | None
) -> list[Action]:
    if peer.state is not State.ADMITTED and peer.state is not State.DRAINING:
        peer.sending = None
        return []
    client_id = welcome.client_id
    if devices is None:
        detail = "message not accepted; send again"
        return _answered(peer, frames.error("unavailable", detail, client_id))
    known = room.known_devices()
    to = {devices[ref] for ref in welcome.refs if ref in devices}
    if len(devices) < len(set(welcome.refs)) or not to or not to <= known:
        return _answered(peer, frames.error("welcome_refused", WELCOME_REFUSED, client_id))
    directed = dict.fromkeys(sorted(to), welcome.fragment)
    outgoing = Outgoing(room.id, peer.device_id, client_id, None, directed, peer.account_id)
    return [Append(peer, outgoing)]


#: What the relay reads of a broadcast (RFC 9420 §6): version 1 (mls10) and a
#: wire_format of PublicMessage (1), PrivateMessage (2) or Welcome (3). Anything
#: else is relayed as it is, unread.
_READ = (b"\x00\x01\x00\x01", b"\x00\x01\x00\x02", b"\x00\x01\x00\x03")


def _handshake(frame: SendFrame) -> bool:
    """An MLS Commit, Proposal or Welcome for the room (what an observer may send)."""
    if frame.ciphertext is None:
        return False
    header = _mls_header(frame.ciphertext)
    if isinstance(header, mls.WelcomeHeader):
        return True
    if isinstance(header, mls.PublicMessageHeader | mls.PrivateMessageHeader):
        return header.content_type in (mls.PROPOSAL, mls.COMMIT)
    return False


def _unpadded_b64(body: str) -> bytes:
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def _mls_header(ciphertext: str) -> mls.Header | None:
    """The clear header of a broadcast that is an MLS message the relay reads, else None."""
    body = ciphertext.rstrip("=")
    try:
        # The first 4 bytes (6 characters) say whether the rest is worth decoding.
        if _unpadded_b64(body[:8])[:4] not in _READ:
            return None
        return mls.parse(_unpadded_b64(body))
    except (mls.MlsFormatError, ValueError):
        return None


def _commit(header: mls.Header | None) -> tuple[bytes, int] | None:
    """The group id and epoch of a commit (Public or PrivateMessage), else None."""
    if isinstance(header, mls.PrivateMessageHeader | mls.PublicMessageHeader):
        return (header.group_id, header.epoch) if header.content_type == mls.COMMIT else None
    return None


def _commit_epoch(ciphertext: str) -> int | None:
    """The epoch of a broadcast that is an MLS commit, else None."""
    commit = _commit(_mls_header(ciphertext))
    return None if commit is None else commit[1]


def _answered(peer: Peer, frame: str) -> list[Action]:
    """The broker answered the frame in hand: its answer, then 1012 if the server drains."""
    peer.sending = None
    out = _to(peer, frame)
    if peer.state is State.DRAINING:
        out += _finish(peer, Close.SERVICE_RESTART)
    return out


# -- messages, live and replayed ---------------------------------------------------


def _deliver(room: RoomState, stored: Stored) -> list[Action]:
    seq = stored.seq
    recipients: dict[str, list[Peer]] = {}  # fragment -> the connections it goes to
    for peer in room.connections.values():
        state = peer.state
        if state is not State.ADMITTED and state is not State.DRAINING:
            continue
        fragment = stored.fragment_for(peer.device_id)
        if fragment is None:
            continue
        if peer.replay is not None:
            # The replay under way reads on past this seq, and sends it then.
            peer.live_high = max(peer.live_high, seq)
            continue
        seen = peer.live_seen
        if seq in seen or seq <= peer.replayed[1]:
            continue
        seen.add(seq)
        if len(seen) > LIVE_SEEN_MAX:
            floor = max(seen) - LIVE_SEEN_MAX // 2
            peer.live_seen = {s for s in seen if s > floor}
        to = recipients.get(fragment)
        if to is None:
            recipients[fragment] = [peer]
        else:
            to.append(peer)
    return [Send(tuple(to), frames.message(seq, fragment)) for fragment, to in recipients.items()]


def _resume(peer: Peer, after: int) -> list[Action]:
    if peer.state is not State.ADMITTED:
        return [Send((peer,), frames.error("not_admitted", "wait to be admitted"))]
    _stop_replay(peer)  # the newest resume is what the client wants now
    peer.replays += 1
    peer.replay = Replay(peer.replays, after)
    # From now on live messages wait for the replay, which reads on past them.
    peer.live_high = 0
    return [StartReplay(peer, peer.replays)]


def _current(peer: Peer, replay_id: int) -> Replay | None:
    replay = peer.replay
    return replay if replay is not None and replay.id == replay_id else None


def _stop_replay(peer: Peer) -> None:
    """Forget the replay under way; what it went through counts as replayed."""
    replay, peer.replay = peer.replay, None
    if replay is None or not replay.begun or replay.position <= replay.start:
        return
    lo, hi = peer.replayed
    start, position = replay.start, replay.position
    if start <= hi and position >= lo:  # overlaps: one interval
        peer.replayed = (min(lo, start), max(hi, position))
    else:
        peer.replayed = (start, position)


def _replay_next(peer: Peer, replay: Replay) -> list[Action]:
    if peer.state is State.CLOSED:
        return _replay_done(peer, replay)
    return [ReadPage(peer, replay.id, replay.position, REPLAY_PAGE)]


def _page_read(peer: Peer, replay: Replay, page: tuple[Stored, ...]) -> list[Action]:
    if page:
        replay.empty = 0
        replay.full_page = len(page) >= REPLAY_PAGE
        replay.pending = deque(page)
        return _replay_items(peer, replay)
    out: list[Action] = []
    if replay.expected <= replay.latest:  # nothing up to `latest` is there for it
        out += _to(peer, frames.replay_truncated(replay.latest + 1))
        replay.expected = replay.latest + 1
        replay.position = max(replay.position, replay.latest)
    # A live message seen meanwhile is in the store: read on to it, once more at most.
    if peer.live_high <= replay.position or replay.empty:
        return out + _replay_done(peer, replay)
    replay.empty += 1
    return out + _replay_next(peer, replay)


def _replay_items(peer: Peer, replay: Replay) -> list[Action]:
    """Go through the page in hand up to the next message to queue."""
    out: list[Action] = []
    lo, hi = peer.replayed
    pending = replay.pending
    while pending:
        if peer.state is State.CLOSED:
            return out + _replay_done(peer, replay)
        item = pending.popleft()
        if item.seq > replay.expected:  # before its admission, or dropped (caps, idle)
            out += _to(peer, frames.replay_truncated(item.seq))
        replay.expected = item.seq + 1
        fragment = item.fragment_for(peer.device_id)
        if fragment is None or item.seq in peer.live_seen or lo < item.seq <= hi:
            replay.position = item.seq
            continue
        out.append(SendPaced(peer, replay.id, item.seq, frames.message(item.seq, fragment)))
        return out
    if not replay.full_page and peer.live_high <= replay.position:
        return out + _replay_done(peer, replay)
    return out + _replay_next(peer, replay)


def _replay_done(peer: Peer, replay: Replay) -> list[Action]:
    latest = max(replay.latest, replay.position)
    _stop_replay(peer)
    return _to(peer, frames.resumed(latest))


# -- the clock ---------------------------------------------------------------------


def _arm(room: RoomState, now: Now) -> list[Action]:
    out: list[Action] = [CancelTimer(timer) for timer in room.timers]
    room.timers.clear()
    if room.ends_at is None:
        return out
    if room.ends_at - now.wall > ENDING_NOTICE:
        room.timers[Timer.ENDING] = room.ends_at - ENDING_NOTICE
    room.timers[Timer.END] = room.ends_at
    return out + [ArmTimer(timer, at) for timer, at in room.timers.items()]


def _ending(room: RoomState) -> list[Action]:
    if room.ends_at is None:
        return []
    return _broadcast(room, frames.room_ending(room.ends_at))


def _end(room: RoomState) -> list[Action]:
    # Each socket closes once what is queued for it is written: `ended` (and what
    # was sent before the end) reaches it, then 4010.
    out = _broadcast(room, frames.ROOM_ENDED)
    return out + [
        a for p in list(room.connections.values()) for a in _finish(p, Close.ENDED, "room ended")
    ]
