"""A room's core driven without sockets, without an event loop and without sleeping.

`World` plays the hub's part for `app.relay.room.handle`: it carries out the
actions against the real `InProcessBroker` (whose coroutines never wait, so
they are run to completion in place) and records what each connection would
have been sent. A replay's broker reads and paced sends wait in a queue of
their own (`World.replay_step` does one), so that tests choose how they
interleave with everything else. Time moves only when a test moves it.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from app.core.close_codes import MEANING, Close
from app.core.events import Event
from app.relay.broker import InProcessBroker
from app.relay.room import (
    Action,
    Announce,
    AnnounceFailed,
    Append,
    Appended,
    AppendRefused,
    ArmTimer,
    CancelTimer,
    CloseAfter,
    CloseNow,
    Dispose,
    Grant,
    Granted,
    Input,
    Joined,
    Left,
    Load,
    MessageStored,
    Now,
    Opening,
    PageRead,
    Participant,
    Peer,
    Queued,
    ReaderDone,
    ReadPage,
    Received,
    ReplayBegun,
    ReplayFailed,
    ResolveWelcome,
    RoomState,
    Send,
    SendPaced,
    StartReplay,
    Timer,
    TimerFired,
    WelcomeResolved,
    handle,
    target,
)
from app.relay.store import QuotaExceeded, StaleEpoch, Stored

T = TypeVar("T")
START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits (the in-process broker's) to its end."""
    try:
        work.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    work.close()
    raise AssertionError("the in-process broker waited")


@dataclass(eq=False)
class Socket:
    """What one connection was sent, as the client would read it."""

    peer: Peer
    room: RoomState
    frames: list[dict[str, Any]] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    code: Close | None = None  # the close code, once closed
    reason: str = ""
    left: bool = False

    @property
    def open(self) -> bool:
        return self.code is None

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]


class World:
    def __init__(self, *, idle_timeout_s: float = 300.0) -> None:
        self.wall = START
        self.mono = 1000.0
        self.idle_timeout_s = idle_timeout_s
        self.broker = InProcessBroker(lambda: self.wall.timestamp())
        run(self.broker.start(self.on_message, self.on_event))
        self.rooms: dict[str, RoomState] = {}
        self.sockets: dict[str, Socket] = {}  # peer id -> socket
        self.timers: dict[tuple[str, Timer], datetime] = {}
        #: Per connection, the replay's next broker read or paced send.
        self.replay_work: dict[str, deque[Action]] = {}
        #: Set to make the next broker call of a send or a replay fail.
        self.broker_down = False
        self.published: list[tuple[str, Stored]] = []
        #: (room id, KeyPackageRef) -> the device it was handed out for in that room.
        self.claims: dict[tuple[str, bytes], str] = {}
        self.closes: list[tuple[Peer, Close]] = []
        self.disposed: list[str] = []
        #: While a replay's paced send is delivered: that replay's id.
        self.pacing: int | None = None
        self._ids = 0

    # -- time ------------------------------------------------------------------------
    def now(self) -> Now:
        return Now(self.wall, self.mono)

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds

    # -- inputs ----------------------------------------------------------------------
    def feed(self, room: RoomState, event: Input) -> None:
        self.execute(room, handle(room, event, self.now()))

    def room(self, room_id: str) -> RoomState:
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = RoomState(room_id, self.idle_timeout_s)
        return room

    def join(
        self,
        room_id: str,
        account: str,
        device: str,
        participants: dict[str, Participant],
        *,
        role: str = "participant",
        session: str = "s",
        ends_at: datetime | None = None,
        locked: bool = False,
    ) -> Socket:
        """A socket granted as the database says (`participants`), then opened."""
        self._ids += 1
        admitted = participants[account].admitted
        grant = Grant(
            room_id, account, device, role, session, admitted, ends_at, locked, participants
        )
        peer = Peer.from_grant(f"c{self._ids}", grant, rate_per_s=100)
        room = self.room(room_id)
        socket = self.sockets[peer.id] = Socket(peer, room)
        self.feed(room, Granted(grant))
        self.feed(room, Opening(peer))
        return socket

    def say(self, socket: Socket, frame: dict[str, Any] | str | None) -> None:
        text = frame if frame is None or isinstance(frame, str) else json.dumps(frame)
        self.feed(socket.room, Received(socket.peer, text))

    def hang_up(self, socket: Socket) -> None:
        """The client closes its socket (or it is closed already): the connection ends."""
        self.feed(socket.room, ReaderDone(socket.peer))
        self.leave(socket)

    def leave(self, socket: Socket) -> None:
        if socket.left:
            return
        socket.left = True
        self.feed(socket.room, Left(socket.peer))

    def publish(self, event: Event) -> None:
        run(self.broker.publish(event))

    def fire(self, room_id: str, timer: Timer) -> None:
        """The event loop's timer goes off."""
        at = self.timers.pop((room_id, timer))
        self.feed(self.rooms[room_id], TimerFired(timer, at))

    def replay_step(self, socket: Socket) -> bool:
        """Carry out the next broker read or paced send of the socket's replay, if any."""
        work = self.replay_work.get(socket.peer.id)
        if not work:
            return False
        action = work.popleft()
        if self.broker_down and isinstance(action, StartReplay | ReadPage):
            self.broker_down = False
            work.clear()
            self.feed(socket.room, ReplayFailed(socket.peer, action.replay, broken=False))
            return True
        self.execute(socket.room, self._replay_io(socket.room, action))
        return True

    def replay_all(self, socket: Socket) -> None:
        while self.replay_step(socket):
            pass

    # -- from the broker ---------------------------------------------------------------
    async def on_message(self, room_id: str, stored: Stored) -> None:
        self.published.append((room_id, stored))
        room = self.rooms.get(room_id)
        if room is not None:
            self.feed(room, MessageStored(stored))

    async def on_event(self, event: Event) -> None:
        room_id = target(event)
        rooms = list(self.rooms.values()) if room_id is None else [self.rooms.get(room_id)]
        for room in rooms:
            if room is not None:
                self.feed(room, event)

    # -- carrying out actions ------------------------------------------------------------
    def execute(self, room: RoomState, actions: list[Action]) -> None:
        todo = deque(actions)
        while todo:
            action = todo.popleft()
            follow = self._act(room, action)
            todo.extendleft(reversed(follow))

    def _act(self, room: RoomState, action: Action) -> list[Action]:
        now = self.now()
        match action:
            case Send(to=to, frame=frame):
                for peer in to:
                    self.deliver(peer, frame)
            case (
                CloseNow(peer=peer, code=code, reason=reason)
                | CloseAfter(peer=peer, code=code, reason=reason)
            ):
                assert code in MEANING, code
                socket = self.sockets[peer.id]
                if socket.code is None:
                    socket.code, socket.reason = code, reason
                    self.closes.append((peer, code))
                self.replay_work.pop(peer.id, None)
            case ArmTimer(timer=timer, at=at):
                self.timers[(room.id, timer)] = at
            case CancelTimer(timer=timer):
                self.timers.pop((room.id, timer), None)
            case Dispose():
                if self.rooms.get(room.id) is room:
                    del self.rooms[room.id]
                    self.disposed.append(room.id)
            case Load(peer=peer, admitted=admitted):
                online = run(self.broker.online(room.id))
                latest = run(self.broker.latest_seq(room.id))
                if admitted:
                    run(self.broker.admission(room.id, admitted))
                return handle(room, Joined(peer, frozenset(online), latest), now)
            case Announce(peer=peer, presence=presence, online=online):
                if self.broker_down and online:
                    self.broker_down = False
                    return handle(room, AnnounceFailed(peer), now)
                run(self.broker.set_online(room.id, peer.device_id, online))
                run(self.broker.publish(presence))
            case Append(peer=peer, message=message):
                if self.broker_down:
                    self.broker_down = False
                    return handle(room, AppendRefused(peer, message.client_id, "unavailable"), now)
                try:
                    seq, _ = run(self.broker.append(message))
                except QuotaExceeded:
                    return handle(room, AppendRefused(peer, message.client_id, "quota"), now)
                except StaleEpoch as stale:
                    refused = AppendRefused(peer, message.client_id, "stale_epoch", stale.epoch)
                    return handle(room, refused, now)
                return handle(room, Appended(peer, message.client_id, seq), now)
            case ResolveWelcome(peer=peer, refs=refs):
                if self.broker_down:
                    self.broker_down = False
                    return handle(room, WelcomeResolved(peer, action, None), now)
                found = {r: self.claims[(room.id, r)] for r in refs if (room.id, r) in self.claims}
                return handle(room, WelcomeResolved(peer, action, found), now)
            case StartReplay(peer=peer):
                self.replay_work[peer.id] = deque([action])  # the earlier one's task is cancelled
            case ReadPage(peer=peer) | SendPaced(peer=peer):
                self.replay_work.setdefault(peer.id, deque()).append(action)
        return []

    def _replay_io(self, room: RoomState, action: Action) -> list[Action]:
        now = self.now()
        match action:
            case StartReplay(peer=peer, replay=replay):
                points = run(self.broker.admission(room.id, [peer.account_id]))
                latest = run(self.broker.latest_seq(room.id))
                self.on_replay_begun(peer, points[peer.account_id], latest)
                return handle(room, ReplayBegun(peer, replay, points[peer.account_id], latest), now)
            case ReadPage(peer=peer, replay=replay, after=after, limit=limit):
                page = run(self.broker.replay(room.id, after, limit))
                return handle(room, PageRead(peer, replay, tuple(page)), now)
            case SendPaced(peer=peer, replay=replay, seq=seq, frame=frame):
                self.pacing = replay
                try:
                    self.deliver(peer, frame)
                finally:
                    self.pacing = None
                return handle(room, Queued(peer, replay, seq), now)
        raise AssertionError(f"not a replay's work: {action}")

    def on_replay_begun(self, peer: Peer, point: int, latest: int) -> None:
        """A hook for tests: the admission point and latest seq a replay read."""

    def deliver(self, peer: Peer, frame: str) -> None:
        socket = self.sockets[peer.id]
        assert socket.open, f"{frame} sent to {peer.id} after its close {socket.code}"
        parsed = json.loads(frame)
        assert isinstance(parsed, dict)
        socket.raw.append(frame)
        socket.frames.append(parsed)
        self.on_frame(socket, parsed)

    def on_frame(self, socket: Socket, frame: dict[str, Any]) -> None:
        """A hook for tests: every frame as a connection gets it."""
