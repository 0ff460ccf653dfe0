"""Live sockets on this instance: queues, tasks, timers and the broker.

The rules are in `app.relay.room`, without I/O: `handle(room, event, now)`
returns the actions that follow from one input. The hub feeds it every input
(a frame a socket read, a message or event from the broker, the broker's
answer to an action, a timer, the clock) and carries out what comes back, in
order. It holds, for each room with a socket on this instance, the room's
state (`RoomState`), filled from the database when a socket joins and kept
current by events from whichever instance made a change; and for each socket
a `Connection`.

Each connection has a bounded queue drained by its own writer task: fan-out
never awaits a slow socket. With the server's frame sink (`app.relay.wsproto`)
a frame is written to the transport at once while nothing is queued and the
transport is not paused, and a frame for several sockets is encoded once; it
is queued only while the transport is paused. A queue that fills closes its
socket with 1013 (the client resumes with a new token); memory never grows
with a slow reader.

A replay (`resume`) runs in a task of its own, so the socket keeps reading
(its sends are acked meanwhile). It is paced: each replayed message waits
until the replay's half of the queue has room (`Connection.send_paced`), so a
backlog of any length the room still keeps reaches a device that reads, in
order, without tripping the limit.

Time: `now` is the context's clock (`Clock.now()`, which tests freeze and
move) for messages and a room's schedule, and the monotonic clock for rate
limits and idle sockets. The room's end is armed on the event loop; `tick`,
run periodically, also fires what the clock has reached, and closes idle
sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, assert_never

from starlette.websockets import WebSocket, WebSocketDisconnect

from app.core.clock import Clock
from app.core.close_codes import Close
from app.core.events import AccountErased, Event
from app.relay import frames
from app.relay.broker import Broker
from app.relay.metrics import RelayMetrics, utf8_length
from app.relay.protocol import State
from app.relay.room import (
    Aborted,
    Action,
    Announce,
    AnnounceFailed,
    Append,
    Appended,
    AppendRefused,
    ArmTimer,
    CancelTimer,
    CloseAfter,
    CloseAll,
    CloseNow,
    Dispose,
    Drain,
    Grant,
    Granted,
    Input,
    Joined,
    JoinFailed,
    Left,
    Load,
    MessageStored,
    Now,
    Opening,
    Overflowed,
    PageRead,
    Participant,
    Peer,
    PeerGone,
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
    Tick,
    Timer,
    TimerFired,
    WelcomeResolved,
    handle,
    target,
)
from app.relay.store import BrokerUnavailable, QuotaExceeded, StaleEpoch, Stored
from app.relay.wsproto import FrameSink, sink_of, text_frame

__all__ = ["Connection", "Grant", "Hub", "Participant"]

log = logging.getLogger("confide.relay")

#: A connection's send queue holds at most this many frames and bytes; past
#: either, the consumer is too slow and its socket is closed (1013).
QUEUE_FRAMES = 1024
QUEUE_BYTES = 4 * 1024 * 1024
#: A replay fills at most half the queue, then waits until the writer has
#: brought it down to a quarter; the other half stays free for live frames.
REPLAY_HIGH_FRAMES, REPLAY_HIGH_BYTES = QUEUE_FRAMES // 2, QUEUE_BYTES // 2
REPLAY_LOW_FRAMES, REPLAY_LOW_BYTES = QUEUE_FRAMES // 4, QUEUE_BYTES // 4


#: What `Connection.send` did with a frame.
FULL, QUEUED, WRITTEN = 0, 1, 2


class Connection:
    """One socket: its send queue and writer. What the room knows of it is `peer`.

    With the server's frame sink (`app.relay.wsproto`), a frame is written to the
    transport at once while nothing is queued and the transport is not paused;
    it is queued only while the transport is paused (its buffer over the
    high-water mark), and the writer task drains the queue once it resumes.
    Without the sink, every frame is queued and the writer sends it through
    ASGI.
    """

    __slots__ = (
        "_space",
        "_wake",
        "close_code",
        "close_reason",
        "peak",
        "peer",
        "queue",
        "queued_bytes",
        "reader",
        "replay",
        "sink",
        "ws",
    )

    def __init__(self, ws: WebSocket, grant: Grant, rate_per_s: int) -> None:
        self.peer = Peer.from_grant(uuid.uuid4().hex, grant, rate_per_s)
        self.ws = ws
        self.sink: FrameSink | None = sink_of(ws.scope)
        # Bounded by send() (frames and bytes), so that the closing sentinel
        # always fits behind what is already queued. A deque and one waiter:
        # an asyncio.Queue costs several deques per socket.
        self.queue: deque[str | None] = deque()
        self._wake: asyncio.Future[None] | None = None
        self.queued_bytes = 0
        self._space: asyncio.Future[None] | None = None
        #: The code the writer closes the socket with, once it is to close.
        self.close_code: Close | None = None
        self.close_reason = ""
        self.reader: asyncio.Task[None] | None = None
        self.replay: asyncio.Task[None] | None = None
        #: The deepest the queue has been, in frames.
        self.peak = 0

    @property
    def id(self) -> str:
        return self.peer.id

    @property
    def room_id(self) -> str:
        return self.peer.room_id

    @property
    def account_id(self) -> str:
        return self.peer.account_id

    @property
    def device_id(self) -> str:
        return self.peer.device_id

    @property
    def role(self) -> str:
        return self.peer.role

    def send(self, frame: str) -> int:
        """Write or queue `frame`: `WRITTEN`, `QUEUED`, or `FULL` when the queue is
        full (the consumer is too slow)."""
        if self.close_code is not None:
            return QUEUED  # closing: nothing more is written
        if self.sink is not None and not self.queue and self.sink.ready():
            self.sink.write_frame(text_frame(frame.encode()))
            return WRITTEN
        depth = len(self.queue)
        if self.queued_bytes + len(frame) > QUEUE_BYTES or depth >= QUEUE_FRAMES:
            return FULL
        self.queued_bytes += len(frame)
        self._put(frame)
        if depth >= self.peak:
            self.peak = depth + 1
        return QUEUED

    def _put(self, item: str | None) -> None:
        self.queue.append(item)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _filled(self) -> None:
        """Return once something is queued."""
        while not self.queue:
            self._wake = asyncio.get_running_loop().create_future()
            try:
                await self._wake
            finally:
                self._wake = None

    async def send_paced(self, frame: str) -> int:
        """Send a replayed frame; first wait while the replay's half of the queue is full."""
        while (
            self.close_code is None
            and self.queue
            and (
                len(self.queue) >= REPLAY_HIGH_FRAMES
                or self.queued_bytes + len(frame) > REPLAY_HIGH_BYTES
            )
        ):
            self._space = asyncio.get_running_loop().create_future()
            try:
                await self._space
            finally:
                self._space = None
        return self.send(frame)

    def _made_space(self, *, closing: bool = False) -> None:
        space = self._space
        if space is None or space.done():
            return
        if closing or (
            len(self.queue) <= REPLAY_LOW_FRAMES and self.queued_bytes <= REPLAY_LOW_BYTES
        ):
            space.set_result(None)

    def finish(self, code: Close, reason: str = "") -> None:
        """Close after what is already queued (acks of in-flight sends) is written."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, reason
        self._put(None)
        self._made_space(closing=True)

    def close(self, code: Close, reason: str = "") -> None:
        """Close now: what is queued is dropped."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, reason
        # Drop what is queued: a closing socket owes nothing more.
        self.queue.clear()
        self.queued_bytes = 0
        self._put(None)
        self._made_space(closing=True)

    async def writer(self, metrics: RelayMetrics) -> bool:
        """Write what is queued until the close; False if the peer was gone first.

        A frame leaves the queue only when it is written, or handed to the ASGI
        send: while the transport is paused it stays queued, so a frame sent
        meanwhile queues behind it, never overtakes it.
        """
        frames_out, bytes_out = metrics.frames_out, metrics.bytes_out
        sink, queue = self.sink, self.queue
        try:
            while True:
                if not queue:
                    await self._filled()
                frame = queue[0]
                if frame is None:
                    break
                if sink is not None and sink.open():
                    if not sink.ready():
                        await sink.wait_writable()
                        continue
                    queue.popleft()
                    self.queued_bytes -= len(frame)
                    self._made_space()
                    data = frame.encode()
                    sink.write_frame(text_frame(data))
                    frames_out[frames.kind(frame)].inc()
                    bytes_out.inc(len(data))
                    continue
                # No sink, or the socket is closing: the ASGI send (which raises
                # once the peer is gone).
                queue.popleft()
                self.queued_bytes -= len(frame)
                self._made_space()
                await self.ws.send_text(frame)
                frames_out[frames.kind(frame)].inc()
                bytes_out.inc(utf8_length(frame))
        except Exception:  # the peer is gone: nothing more can be sent
            self._made_space(closing=True)
            return False
        with contextlib.suppress(Exception):
            await self.ws.close(self.close_code or Close.NORMAL, self.close_reason[:120])
        return True


EventHook = Callable[[Event], Awaitable[None]]
#: The device each of a Welcome's KeyPackageRefs was handed out for in a room.
WelcomeDevices = Callable[[str, Sequence[bytes]], Awaitable[dict[bytes, str]]]
_Pending = Coroutine[Any, Any, list[Action]]


class Hub:
    def __init__(
        self,
        broker: Broker,
        clock: Clock,
        *,
        rate_per_s: int,
        idle_timeout: float,
        sweep_interval: float | None = None,
        on_event: EventHook | None = None,
        welcome_devices: WelcomeDevices | None = None,
        metrics: RelayMetrics | None = None,
    ) -> None:
        self.broker = broker
        self.metrics = metrics or RelayMetrics()
        self.metrics.watch(lambda: len(self._connections), lambda: len(self.rooms), self.queue_max)
        kind = broker.kind
        self._rtt_append = self.metrics.timer(kind, "append")
        self._rtt_replay = self.metrics.timer(kind, "replay")
        self._rtt_join = self.metrics.timer(kind, "join")
        self._rtt_presence = self.metrics.timer(kind, "presence")
        self.rtt_spend = self.metrics.timer(kind, "spend")
        #: For a Welcome: the device each of its refs was handed out for in the room
        #: (one database query per Welcome; no other message reads the database).
        self._welcome_devices = welcome_devices
        #: Called first with every event (the application's own handling, such
        #: as forgetting a destroyed data key); a failure there is logged and
        #: never stops the hub's handling.
        self._event_hook = on_event
        self.clock = clock
        self.rate_per_s = rate_per_s
        self.idle_timeout = idle_timeout
        #: How often `tick` runs: a quarter of the idle timeout, from 0.5 to 30 s, unless set.
        self.sweep_interval = sweep_interval or max(0.5, min(30.0, idle_timeout / 4))
        self.rooms: dict[str, RoomState] = {}
        self._connections: dict[str, Connection] = {}  # peer id -> its socket
        self._timers: dict[RoomState, dict[Timer, asyncio.TimerHandle]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._empty = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.broker.start(self.on_message, self.on_event)
        self._sweeper = asyncio.create_task(self._sweep())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    def queue_max(self) -> tuple[int, int]:
        """The deepest send queue now on this instance, in frames and in bytes."""
        conns = self._connections.values()
        return (
            max((len(c.queue) for c in conns), default=0),
            max((c.queued_bytes for c in conns), default=0),
        )

    def now(self) -> Now:
        return Now(self.clock.now(), time.monotonic())

    def _feed(self, room: RoomState, event: Input) -> list[Action]:
        return handle(room, event, self.now())

    # -- the clock ----------------------------------------------------------------
    async def _sweep(self) -> None:
        """One timer for every socket's idle time, not a timeout around every receive."""
        while True:
            await asyncio.sleep(self.sweep_interval)
            self.tick()

    def tick(self) -> None:
        """Close sockets silent for the idle timeout (1001); fire the rooms' timers that
        the clock has reached (the event loop's timers fire on their own)."""
        for room in list(self.rooms.values()):
            self._apply(room, self._feed(room, Tick()))

    def _fire(self, room: RoomState, timer: Timer, at: datetime) -> None:
        self._timers.get(room, {}).pop(timer, None)
        self._apply(room, self._feed(room, TimerFired(timer, at)))

    # -- the whole instance -------------------------------------------------------
    def close_all(self, code: Close, reason: str) -> None:
        for room in list(self.rooms.values()):
            self._apply(room, self._feed(room, CloseAll(code, reason)))

    async def drain(self, grace_s: float = 10.0) -> None:
        """Stop reading, let in-flight sends be acked, then close every socket (1012)."""
        self._empty.clear()
        for room in list(self.rooms.values()):
            self._apply(room, self._feed(room, Drain()))
        if self.rooms:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), grace_s)

    # -- one socket ---------------------------------------------------------------
    def join(self, grant: Grant) -> RoomState:
        """The live room for a granted socket (created, or refreshed from the grant)."""
        room = self.rooms.get(grant.room_id)
        if room is None:
            room = self.rooms[grant.room_id] = RoomState(grant.room_id, self.idle_timeout)
        self._apply(room, self._feed(room, Granted(grant)))
        return room

    async def run(self, conn: Connection, room: RoomState) -> None:
        """Serve `conn` in `room` until it closes."""
        peer = conn.peer
        self._connections[peer.id] = conn
        try:
            await self._serve(room, conn)
        finally:
            del self._connections[peer.id]
            self.metrics.queue_peak.observe(conn.peak)
            await self._do(room, self._feed(room, Left(peer)))

    async def _serve(self, room: RoomState, conn: Connection) -> None:
        peer = conn.peer
        writer = asyncio.create_task(self._write(room, conn))
        try:
            await self._do(room, self._feed(room, Opening(peer)))
        except BaseException:
            writer.cancel()  # joining failed unexpectedly: nothing is written
            raise
        reader = conn.reader = asyncio.create_task(self._read(room, conn))
        try:
            await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if reader.done():
                # The peer left, or the server is draining: flush, then close.
                self._apply(room, self._feed(room, ReaderDone(peer)))
            else:
                self._apply(room, self._feed(room, Aborted(peer)))
                reader.cancel()
            if conn.replay is not None:
                conn.replay.cancel()
            try:
                await asyncio.wait_for(writer, 5)
            except (TimeoutError, Exception):
                writer.cancel()

    async def _write(self, room: RoomState, conn: Connection) -> None:
        if not await conn.writer(self.metrics):
            self._apply(room, self._feed(room, PeerGone(conn.peer)))

    async def _read(self, room: RoomState, conn: Connection) -> None:
        peer = conn.peer
        frames_in, bytes_in = self.metrics.frames_in, self.metrics.bytes_in
        while peer.state is State.WAITING or peer.state is State.ADMITTED:
            try:
                message = await conn.ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                self._apply(room, self._feed(room, Aborted(peer)))
                return
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            bytes_in.inc(len(message.get("bytes") or b"") if text is None else utf8_length(text))
            actions = self._feed(room, Received(peer, text))
            frames_in[peer.read].inc()
            await self._do(room, actions)

    async def _replay(self, room: RoomState, conn: Connection, replay: int) -> None:
        peer = conn.peer
        try:
            points = await self.broker.admission(room.id, [peer.account_id])
            latest = await self.broker.latest_seq(room.id)
            begun = ReplayBegun(peer, replay, points[peer.account_id], latest)
            await self._do(room, self._feed(room, begun))
        except BrokerUnavailable:
            self._apply(room, self._feed(room, ReplayFailed(peer, replay, broken=False)))
        except Exception:
            log.exception("replay failed")
            self._apply(room, self._feed(room, ReplayFailed(peer, replay, broken=True)))

    # -- from the broker ----------------------------------------------------------
    async def on_message(self, room_id: str, stored: Stored) -> None:
        room = self.rooms.get(room_id)
        if room is not None:
            self._apply(room, self._feed(room, MessageStored(stored)))

    async def on_event(self, event: Event) -> None:
        if self._event_hook is not None:
            try:
                await self._event_hook(event)
            except Exception:
                log.exception("event hook failed for %s", type(event).__name__)
        if isinstance(event, AccountErased):
            await self._forget(event)
            return
        room_id = target(event)
        if room_id is None:
            rooms = list(self.rooms.values())
        else:
            room = self.rooms.get(room_id)
            rooms = [] if room is None else [room]
        for room in rooms:
            self._apply(room, self._feed(room, event))

    async def _forget(self, event: AccountErased) -> None:
        """An erasure: the broker's replay store forgets the person (decision note 0005).

        Every instance hears the event, after the account's `AccountClosed` and
        `DeviceRevoked`, and asks the broker; the first does the work, and the
        others find nothing left to do.
        """
        try:
            await self.broker.forget(event.account, event.devices, event.rooms)
        except Exception:
            log.exception("erasure: the broker could not forget an erased account")

    # -- carrying out actions -----------------------------------------------------
    async def _do(self, room: RoomState, actions: Sequence[Action]) -> None:
        """Carry out `actions` in order, waiting for the broker and for room in queues;
        what follows from an answer comes before the actions after it."""
        todo = deque(actions)
        while todo:
            pending = self._act(room, todo.popleft())
            if pending is not None:
                todo.extendleft(reversed(await pending))

    def _apply(self, room: RoomState, actions: Sequence[Action]) -> None:
        """Carry out `actions` that need no waiting, now. (Only a socket's own tasks are
        answered with broker calls; should one come here, the rest runs in a task.)"""
        for i, action in enumerate(actions):
            if type(action) is Send:  # most of them, on the fan-out path
                self._send(room, action)
                continue
            pending = self._act(room, action)
            if pending is not None:
                self._spawn(self._then(room, pending, list(actions[i + 1 :])))
                return

    async def _then(self, room: RoomState, pending: _Pending, rest: list[Action]) -> None:
        await self._do(room, [*(await pending), *rest])

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send(self, room: RoomState, action: Send) -> None:
        frame, connections = action.frame, self._connections
        queued = written = 0
        # Encoded once for every socket it is written to at once.
        data: bytes | None = None
        wire = b""
        for peer in action.to:
            conn = connections.get(peer.id)
            if conn is None:
                continue
            sink = conn.sink
            if sink is not None and not conn.queue and conn.close_code is None and sink.ready():
                if data is None:
                    data = frame.encode()
                    wire = text_frame(data)
                sink.write_frame(wire)
                written += 1
            elif conn.send(frame):
                queued += 1
            else:
                self._apply(room, self._feed(room, Overflowed(peer)))
        if written:
            assert data is not None
            self.metrics.frames_out[frames.kind(frame)].inc(written)
            self.metrics.bytes_out.inc(written * len(data))
        if (queued or written) and frame.startswith(frames.MESSAGE_HEAD):
            self.metrics.live.inc(queued + written)

    def _act(self, room: RoomState, action: Action) -> _Pending | None:
        """Do `action`; for one that waits on the broker or a queue, the coroutine that
        does it and returns what follows."""
        match action:
            case Send():
                self._send(room, action)
            case CloseNow(peer=peer, code=code, reason=reason):
                conn = self._connections.get(peer.id)
                if conn is not None:
                    conn.close(code, reason)
            case CloseAfter(peer=peer, code=code, reason=reason):
                conn = self._connections.get(peer.id)
                if conn is not None:
                    conn.finish(code, reason)
            case StartReplay(peer=peer, replay=replay):
                conn = self._connections.get(peer.id)
                if conn is not None:
                    if conn.replay is not None:
                        conn.replay.cancel()  # the newest resume is what the client wants now
                    conn.replay = asyncio.create_task(self._replay(room, conn, replay))
            case ArmTimer(timer=timer, at=at):
                handles = self._timers.setdefault(room, {})
                previous = handles.pop(timer, None)
                if previous is not None:
                    previous.cancel()
                delay = max(0.0, (at - self.clock.now()).total_seconds())
                loop = asyncio.get_running_loop()
                handles[timer] = loop.call_later(delay, self._fire, room, timer, at)
            case CancelTimer(timer=timer):
                handle_ = self._timers.get(room, {}).pop(timer, None)
                if handle_ is not None:
                    handle_.cancel()
            case Dispose():
                for handle_ in self._timers.pop(room, {}).values():
                    handle_.cancel()
                if self.rooms.get(room.id) is room:
                    del self.rooms[room.id]
                    if not self.rooms:
                        self._empty.set()
            case Load():
                return self._load(room, action)
            case Announce():
                return self._announce(room, action)
            case Append():
                return self._append(room, action)
            case ResolveWelcome():
                return self._resolve_welcome(room, action)
            case ReadPage():
                return self._read_page(room, action)
            case SendPaced():
                return self._send_paced(room, action)
            case _:
                assert_never(action)
        return None

    async def _load(self, room: RoomState, action: Load) -> list[Action]:
        started = time.perf_counter()
        try:
            online = await self.broker.online(room.id)
            latest = await self.broker.latest_seq(room.id)
            # Admitted participants without an admission point get one now (the
            # room's creator, whose admission was no event): before any message
            # they could be sent, since a sender joins before it sends.
            if action.admitted:
                await self.broker.admission(room.id, action.admitted)
        except BrokerUnavailable:
            return self._feed(room, JoinFailed(action.peer))
        self._rtt_join.observe(time.perf_counter() - started)
        return self._feed(room, Joined(action.peer, frozenset(online), latest))

    async def _announce(self, room: RoomState, action: Announce) -> list[Action]:
        started = time.perf_counter()
        try:
            await self.broker.set_online(room.id, action.peer.device_id, action.online)
            await self.broker.publish(action.presence)
        except BrokerUnavailable:
            if action.online:
                return self._feed(room, AnnounceFailed(action.peer))
            return []
        self._rtt_presence.observe(time.perf_counter() - started)
        return []

    async def _append(self, room: RoomState, action: Append) -> list[Action]:
        peer, client_id = action.peer, action.message.client_id
        started = time.perf_counter()
        try:
            seq, _ = await self.broker.append(action.message)
        except BrokerUnavailable:
            return self._feed(room, AppendRefused(peer, client_id, "unavailable"))
        except QuotaExceeded:
            self._rtt_append.observe(time.perf_counter() - started)
            return self._feed(room, AppendRefused(peer, client_id, "quota"))
        except StaleEpoch as stale:
            self._rtt_append.observe(time.perf_counter() - started)
            return self._feed(room, AppendRefused(peer, client_id, "stale_epoch", stale.epoch))
        self._rtt_append.observe(time.perf_counter() - started)
        return self._feed(room, Appended(peer, client_id, seq))

    async def _resolve_welcome(self, room: RoomState, action: ResolveWelcome) -> list[Action]:
        devices: dict[bytes, str] | None = None
        if self._welcome_devices is not None:
            try:
                devices = await self._welcome_devices(room.id, action.refs)
            except Exception:
                log.exception("the devices of a Welcome could not be read")
        return self._feed(room, WelcomeResolved(action.peer, action, devices))

    async def _read_page(self, room: RoomState, action: ReadPage) -> list[Action]:
        started = time.perf_counter()
        page = await self.broker.replay(room.id, action.after, action.limit)
        self._rtt_replay.observe(time.perf_counter() - started)
        return self._feed(room, PageRead(action.peer, action.replay, tuple(page)))

    async def _send_paced(self, room: RoomState, action: SendPaced) -> list[Action]:
        peer = action.peer
        conn = self._connections.get(peer.id)
        if conn is not None:
            sent = await conn.send_paced(action.frame)
            if sent:
                self.metrics.replayed.inc()
                if sent == WRITTEN:
                    self.metrics.frames_out[frames.kind(action.frame)].inc()
                    self.metrics.bytes_out.inc(utf8_length(action.frame))
            else:
                self._apply(room, self._feed(room, Overflowed(peer)))
        return self._feed(room, Queued(peer, action.replay, action.seq))
