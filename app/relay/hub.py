"""Live sockets on this instance: bounded queues, fan-out, back-pressure, events.

The hub holds, for each room with a socket on this instance, what the socket
needs to route without asking the database: the participants, their roles,
admission and devices. It is filled from the database once when a socket
joins, then kept current by events (admission, removal, revocation, the end),
which arrive through the broker from whichever instance made the change.
Messages need no database query at all.

Each connection has a bounded queue drained by its own writer task: fan-out
never awaits a slow socket. A queue that fills closes its socket with 1013
(the client resumes with a new token); memory never grows with a slow reader.

A replay (`resume`) is not fan-out: it is paced. It reads the broker a page
at a time and fills at most half the queue, waiting for the writer to bring
it down before it queues more, so a backlog of any length the room still
keeps reaches a device that reads, in order, without tripping the limit.
Live messages for the device are dropped while its replay runs (the replay
reads on until it has passed every one of them), and the socket keeps
reading: its sends are acked meanwhile. A replay starts after the device's
account's admission point (decision note 0005): nothing said in the room
before the account was admitted is replayed to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from app.core.clock import Clock
from app.relay import protocol as p
from app.relay.broker import (
    Broker,
    BrokerUnavailable,
    Outgoing,
    QuotaExceeded,
    Stored,
    message_frame,
)

log = logging.getLogger("confide.relay")

#: A connection's send queue holds at most this many frames and bytes; past
#: either, the consumer is too slow and its socket is closed (1013).
QUEUE_FRAMES = 1024
QUEUE_BYTES = 4 * 1024 * 1024
#: A replay fills at most half the queue, then waits until the writer has
#: brought it down to a quarter; the other half stays free for live frames.
REPLAY_HIGH_FRAMES, REPLAY_HIGH_BYTES = QUEUE_FRAMES // 2, QUEUE_BYTES // 2
REPLAY_LOW_FRAMES, REPLAY_LOW_BYTES = QUEUE_FRAMES // 4, QUEUE_BYTES // 4
#: Messages read from the broker at a time by a replay.
REPLAY_PAGE = 64
ENDING_NOTICE = timedelta(minutes=5)
_LIVE_SEEN_MAX = 10_000


@dataclass
class Participant:
    account_id: str
    role: str
    display_name: str
    admitted: bool
    devices: dict[str, str] = field(default_factory=dict)  # device id -> public key


@dataclass
class Grant:
    """What the database said when the socket joined."""

    room_id: str
    account_id: str
    device_id: str
    role: str
    session_id: str
    admitted: bool
    ends_at: datetime | None
    locked: bool
    participants: dict[str, Participant]


class Connection:
    def __init__(self, ws: WebSocket, grant: Grant, rate_per_s: int) -> None:
        self.id = uuid.uuid4().hex
        self.ws = ws
        self.room_id = grant.room_id
        self.account_id = grant.account_id
        self.device_id = grant.device_id
        self.role = grant.role
        self.session_id = grant.session_id
        self.admitted = grant.admitted
        # Bounded by send() (frames and bytes), so that the closing sentinel
        # always fits behind what is already queued. A deque and one waiter:
        # an asyncio.Queue costs several deques per socket.
        self.queue: deque[str | None] = deque()
        self._wake: asyncio.Future[None] | None = None
        self.queued_bytes = 0
        self.busy = False
        self.draining = False
        self.reader: asyncio.Task[None] | None = None
        self.last_active = 0.0
        self.bucket = p.TokenBucket(rate=rate_per_s, burst=2 * rate_per_s)
        self.close_code: int | None = None
        self.close_reason = ""
        self.resuming = False
        self.replay: asyncio.Task[None] | None = None
        self._space: asyncio.Future[None] | None = None
        #: The highest seq dropped from live delivery while a replay ran.
        self.live_high = 0
        #: (lo, hi]: the seqs that replays on this socket have gone through.
        self.replayed = (0, 0)
        self.live_seen: set[int] = set()

    def send(self, frame: str) -> None:
        if self.close_code is not None:
            return
        if self.queued_bytes + len(frame) > QUEUE_BYTES or len(self.queue) >= QUEUE_FRAMES:
            self.close(p.CLOSE_TRY_AGAIN, "consumer too slow")
            return
        self.queued_bytes += len(frame)
        self._put(frame)

    def _put(self, item: str | None) -> None:
        self.queue.append(item)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _get(self) -> str | None:
        while not self.queue:
            self._wake = asyncio.get_running_loop().create_future()
            try:
                await self._wake
            finally:
                self._wake = None
        return self.queue.popleft()

    async def send_paced(self, frame: str) -> None:
        """Queue a replayed frame; first wait while the replay's half of the queue is full."""
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
        self.send(frame)

    def _made_space(self, *, closing: bool = False) -> None:
        space = self._space
        if space is None or space.done():
            return
        if closing or (
            len(self.queue) <= REPLAY_LOW_FRAMES and self.queued_bytes <= REPLAY_LOW_BYTES
        ):
            space.set_result(None)

    def deliver(self, seq: int, frame: str) -> None:
        if self.resuming:
            # The replay under way reads on past this seq, and sends it then.
            self.live_high = max(self.live_high, seq)
            return
        if seq in self.live_seen or seq <= self.replayed[1]:
            return
        self.live_seen.add(seq)
        if len(self.live_seen) > _LIVE_SEEN_MAX:
            floor = max(self.live_seen) - _LIVE_SEEN_MAX // 2
            self.live_seen = {s for s in self.live_seen if s > floor}
        self.send(frame)

    def finish(self, code: int, reason: str = "") -> None:
        """Close after what is already queued (acks of in-flight sends) is written."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, reason
        self._put(None)
        self._made_space(closing=True)

    def close(self, code: int, reason: str = "") -> None:
        """Close now: what is queued is dropped."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, reason
        # Drop what is queued: a closing socket owes nothing more.
        self.queue.clear()
        self.queued_bytes = 0
        self._put(None)
        self._made_space(closing=True)

    async def writer(self) -> None:
        try:
            while True:
                frame = await self._get()
                if frame is None:
                    break
                self.queued_bytes -= len(frame)
                self._made_space()
                await self.ws.send_text(frame)
        except Exception:  # the peer is gone: nothing more can be sent
            self.close_code = self.close_code or p.CLOSE_GOING_AWAY
            self._made_space(closing=True)
            return
        with contextlib.suppress(Exception):
            await self.ws.close(self.close_code or p.CLOSE_NORMAL, self.close_reason[:120])


@dataclass
class LiveRoom:
    id: str
    ends_at: datetime | None
    locked: bool
    participants: dict[str, Participant]
    connections: dict[str, Connection] = field(default_factory=dict)
    timers: list[asyncio.TimerHandle] = field(default_factory=list)

    def devices(self) -> dict[str, str]:
        """Device id -> account id of every participant's active device."""
        return {d: a.account_id for a in self.participants.values() for d in a.devices}


EventHook = Callable[[dict[str, Any]], Awaitable[None]]


class Hub:
    def __init__(
        self,
        broker: Broker,
        clock: Clock,
        *,
        rate_per_s: int,
        idle_timeout: float,
        on_event: EventHook | None = None,
    ) -> None:
        self.broker = broker
        #: Called first with every event (the application's own handling, such
        #: as forgetting a destroyed data key); a failure there is logged and
        #: never stops the hub's handling.
        self._event_hook = on_event
        self.clock = clock
        self.rate_per_s = rate_per_s
        self.idle_timeout = idle_timeout
        self.rooms: dict[str, LiveRoom] = {}
        self._empty = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.broker.start(self.on_message, self.on_event)
        self._sweeper = asyncio.create_task(self._sweep_idle())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep_idle(self) -> None:
        """Close sockets silent for the idle timeout: one timer for all of them,
        not a timeout around every receive."""
        loop = asyncio.get_running_loop()
        period = max(0.5, min(30.0, self.idle_timeout / 4))
        while True:
            await asyncio.sleep(period)
            deadline = loop.time() - self.idle_timeout
            for conn in self.connections():
                if conn.last_active < deadline:
                    conn.close(p.CLOSE_GOING_AWAY, "idle timeout")
                    if conn.reader is not None:
                        conn.reader.cancel()

    def connections(self) -> list[Connection]:
        return [c for room in self.rooms.values() for c in room.connections.values()]

    def close_all(self, code: int, reason: str) -> None:
        for conn in self.connections():
            conn.close(code, reason)

    async def drain(self, grace_s: float = 10.0) -> None:
        """Stop reading, let in-flight sends be acked, then close every socket (1012)."""
        self._empty.clear()
        for conn in self.connections():
            conn.draining = True
            if not conn.busy and conn.reader is not None:
                conn.reader.cancel()
        if self.rooms:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), grace_s)

    # -- joining and leaving -------------------------------------------------
    def _room_for(self, grant: Grant) -> LiveRoom:
        room = self.rooms.get(grant.room_id)
        if room is None:
            room = LiveRoom(grant.room_id, grant.ends_at, grant.locked, grant.participants)
            self.rooms[grant.room_id] = room
            self._arm(room)
        else:
            # The database is the truth at join time: refresh what events keep current.
            room.participants = grant.participants
            room.locked = grant.locked
            if room.ends_at != grant.ends_at:
                room.ends_at = grant.ends_at
                self._arm(room)
        return room

    def join(self, grant: Grant) -> LiveRoom:
        """The live room for a granted socket (created, or refreshed from the grant)."""
        return self._room_for(grant)

    async def run(self, conn: Connection, room: LiveRoom) -> None:
        try:
            online = await self.broker.online(room.id)
            latest = await self.broker.latest_seq(room.id)
            # Admitted participants without an admission point get one now (the
            # room's creator, whose admission was no event): before any message
            # they could be sent, since a sender joins before it sends.
            admitted = [a for a, part in room.participants.items() if part.admitted]
            if admitted:
                await self.broker.admission(room.id, admitted)
        except BrokerUnavailable:
            conn.close(p.CLOSE_TRY_AGAIN, "broker unavailable")
            await conn.writer()
            await self._leave(room, conn)
            return
        previous = room.connections.get(conn.device_id)
        if previous is not None:
            previous.close(p.CLOSE_REPLACED, "replaced by a new connection")
        room.connections[conn.device_id] = conn
        conn.send(self._welcome(room, conn, online | {conn.device_id}, latest))
        if room.ends_at is not None and room.ends_at - self.clock.now() <= ENDING_NOTICE:
            conn.send(
                p.dumps(
                    {
                        "type": "room",
                        "event": "ending",
                        "ends_at": room.ends_at.isoformat().replace("+00:00", "Z"),
                    }
                )
            )
        writer = asyncio.create_task(conn.writer())
        try:
            await self.broker.set_online(room.id, conn.device_id, True)
            await self.broker.publish(
                {
                    "kind": "presence",
                    "room": room.id,
                    "event": "online" if conn.admitted else "waiting",
                    "account": conn.account_id,
                    "device": conn.device_id,
                    "conn": conn.id,
                }
            )
        except BrokerUnavailable:
            conn.close(p.CLOSE_TRY_AGAIN, "broker unavailable")
        reader = conn.reader = asyncio.create_task(self._read(conn))
        try:
            await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if reader.done():
                # The peer left, or the server is draining: flush, then close.
                conn.finish(p.CLOSE_SERVICE_RESTART if conn.draining else p.CLOSE_NORMAL)
            else:
                conn.close(conn.close_code or p.CLOSE_NORMAL)
                reader.cancel()
            if conn.replay is not None:
                conn.replay.cancel()
            try:
                await asyncio.wait_for(writer, 5)
            except (TimeoutError, Exception):
                writer.cancel()
            await self._leave(room, conn)

    async def _leave(self, room: LiveRoom, conn: Connection) -> None:
        if room.connections.get(conn.device_id) is conn:
            del room.connections[conn.device_id]
            with contextlib.suppress(BrokerUnavailable):
                await self.broker.set_online(room.id, conn.device_id, False)
                await self.broker.publish(
                    {
                        "kind": "presence",
                        "room": room.id,
                        "event": "offline",
                        "account": conn.account_id,
                        "device": conn.device_id,
                        "conn": conn.id,
                    }
                )
        if not room.connections and self.rooms.get(room.id) is room:
            for timer in room.timers:
                timer.cancel()
            del self.rooms[room.id]
            if not self.rooms:
                self._empty.set()

    def _welcome(self, room: LiveRoom, conn: Connection, online: set[str], latest: int) -> str:
        return p.dumps(
            {
                "type": "welcome",
                "room": room.id,
                "you": {
                    "account_id": conn.account_id,
                    "device_id": conn.device_id,
                    "role": conn.role,
                },
                "state": "admitted" if conn.admitted else "waiting",
                "seq": latest,
                "participants": [
                    {
                        "account_id": part.account_id,
                        "display_name": part.display_name,
                        "role": part.role,
                        "admitted": part.admitted,
                        "online": any(d in online for d in part.devices),
                        "devices": [
                            {"device_id": d, "public_key": key} for d, key in part.devices.items()
                        ],
                    }
                    for part in room.participants.values()
                ],
            }
        )

    # -- reading -------------------------------------------------------------
    async def _read(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        conn.last_active = loop.time()
        while conn.close_code is None and not conn.draining:
            conn.busy = False
            try:
                message = await conn.ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                conn.close(p.CLOSE_NORMAL)
                return
            if message["type"] == "websocket.disconnect":
                return
            conn.busy = True
            conn.last_active = loop.time()
            text = message.get("text")
            if text is None:
                conn.close(p.CLOSE_POLICY, "binary frames are not allowed")
                return
            if not conn.bucket.allow(loop.time()):
                if conn.bucket.strikes > p.MAX_STRIKES:
                    conn.close(p.CLOSE_POLICY, "rate limit exceeded")
                    return
                conn.send(p.error_frame("rate_limited", "slow down"))
                continue
            try:
                frame = p.parse_client_frame(text)
            except p.FrameError as error:
                conn.send(p.error_frame(error.code, error.detail, error.frame_id))
                continue
            if isinstance(frame, p.SendFrame):
                await self._send(conn, frame)
            elif isinstance(frame, p.PingFrame):
                conn.send('{"type":"pong"}')
            elif isinstance(frame, p.ResumeFrame):
                await self._resume(conn, frame.after)
            else:
                conn.send(p.error_frame("validation_error", "already authenticated"))

    async def _send(self, conn: Connection, frame: p.SendFrame) -> None:
        if not conn.admitted:
            conn.send(p.error_frame("not_admitted", "wait to be admitted", frame.id))
            return
        room = self.rooms[conn.room_id]
        sender = {"account_id": conn.account_id, "device_id": conn.device_id}
        sent_at = self.clock.now().isoformat().replace("+00:00", "Z")
        broadcast: str | None = None
        directed: dict[str, str] | None = None
        if frame.ciphertext is not None:
            broadcast = _fragment(frame.id, sender, frame.ciphertext, sent_at)
        else:
            assert frame.recipients is not None
            known = room.devices()
            unknown = [d for d in frame.recipients if d not in known]
            if unknown:
                conn.send(p.error_frame("validation_error", "unknown recipient device", frame.id))
                return
            directed = {
                device: _fragment(frame.id, sender, ciphertext, sent_at)
                for device, ciphertext in frame.recipients.items()
            }
        try:
            seq, _ = await self.broker.append(
                Outgoing(
                    conn.room_id, conn.device_id, frame.id, broadcast, directed, conn.account_id
                )
            )
        except BrokerUnavailable:
            conn.send(p.error_frame("unavailable", "message not accepted; send again", frame.id))
            return
        except QuotaExceeded:
            conn.send(
                p.error_frame(
                    "quota_exceeded", "your share of this room's replay store is used", frame.id
                )
            )
            return
        conn.send(p.ack_frame(frame.id, seq))

    async def _resume(self, conn: Connection, after: int) -> None:
        """Start the replay (in a task of its own: the socket keeps reading meanwhile)."""
        if not conn.admitted:
            conn.send(p.error_frame("not_admitted", "wait to be admitted"))
            return
        previous = conn.replay
        if previous is not None and not previous.done():
            previous.cancel()  # the newest resume is what the client wants now
            await asyncio.wait([previous])
        # From now on live messages wait for the replay, which reads on past them.
        conn.resuming, conn.live_high = True, 0
        conn.replay = asyncio.create_task(self._replay(conn, after))

    async def _replay(self, conn: Connection, after: int) -> None:
        try:
            await self._replay_pages(conn, after)
        except BrokerUnavailable:
            conn.send(p.error_frame("unavailable", "replay not available; resume again"))
        except Exception:
            log.exception("replay failed")
            conn.close(p.CLOSE_TRY_AGAIN, "replay failed; resume again")
        finally:
            conn.resuming = False

    async def _replay_pages(self, conn: Connection, after: int) -> None:
        room_id = conn.room_id
        points = await self.broker.admission(room_id, [conn.account_id])
        latest = await self.broker.latest_seq(room_id)
        # Nothing from before the account's admission point is replayed to it.
        start = position = max(after, points[conn.account_id])
        expected = after + 1  # the next seq the client asks for
        lo, hi = conn.replayed  # what an earlier replay on this socket went through
        empty = 0
        try:
            while conn.close_code is None:
                page = await self.broker.replay(room_id, position, REPLAY_PAGE)
                if not page:
                    if expected <= latest:  # nothing up to `latest` is there for it
                        conn.send(_truncated(latest + 1))
                        expected, position = latest + 1, max(position, latest)
                    # A live message seen meanwhile is in the store: read on to it.
                    if conn.live_high <= position or empty:
                        break
                    empty += 1
                    continue
                empty = 0
                for item in page:
                    if item.seq > expected:  # before its admission, or dropped (caps, idle)
                        conn.send(_truncated(item.seq))
                    position, expected = item.seq, item.seq + 1
                    fragment = item.fragment_for(conn.device_id)
                    if fragment is None or item.seq in conn.live_seen or lo < item.seq <= hi:
                        continue
                    await conn.send_paced(message_frame(item.seq, fragment))
                if len(page) < REPLAY_PAGE and conn.live_high <= position:
                    break
        finally:
            if position > start:
                if start <= hi and position >= lo:  # overlaps: one interval
                    conn.replayed = (min(lo, start), max(hi, position))
                else:
                    conn.replayed = (start, position)
        conn.resuming = False
        conn.send(p.dumps({"type": "resumed", "seq": max(latest, position)}))

    # -- from the broker -----------------------------------------------------
    async def on_message(self, room_id: str, stored: Stored) -> None:
        room = self.rooms.get(room_id)
        if room is None:
            return
        frame_cache: dict[str, str] = {}
        for conn in list(room.connections.values()):
            if not conn.admitted:
                continue
            fragment = stored.fragment_for(conn.device_id)
            if fragment is None:
                continue
            frame = frame_cache.get(fragment)
            if frame is None:
                frame = frame_cache[fragment] = message_frame(stored.seq, fragment)
            conn.deliver(stored.seq, frame)

    async def on_event(self, event: dict[str, Any]) -> None:
        if self._event_hook is not None:
            try:
                await self._event_hook(event)
            except Exception:
                log.exception("event hook failed for %s", event.get("kind"))
        if event.get("kind") == "account_erased":
            await self._forget(event)
            return
        handler = getattr(self, "_on_" + str(event.get("kind")), None)
        if handler is not None:
            handler(event)

    async def _forget(self, event: dict[str, Any]) -> None:
        """An erasure: the broker's replay store forgets the person (decision note 0005).

        Every instance hears the event, after the account's `account_closed` and
        `device_revoked`, and asks the broker; the first does the work, and the
        others find nothing left to do.
        """
        try:
            await self.broker.forget(
                str(event["account"]),
                [str(d) for d in event.get("devices", ())],
                [str(r) for r in event.get("rooms", ())],
            )
        except Exception:
            log.exception("erasure: the broker could not forget an erased account")

    def _broadcast(self, room: LiveRoom, frame: str, *, admitted_only: bool = False) -> None:
        for conn in list(room.connections.values()):
            if conn.admitted or not admitted_only:
                conn.send(frame)

    def _presence(self, room: LiveRoom, event: str, account: str, device: str | None) -> str:
        frame: dict[str, Any] = {"type": "presence", "event": event, "account_id": account}
        if device is not None:
            frame["device_id"] = device
        return p.dumps(frame)

    def _on_presence(self, event: dict[str, Any]) -> None:
        room = self.rooms.get(event["room"])
        if room is None:
            return
        if event["event"] in ("online", "waiting"):
            existing = room.connections.get(event["device"])
            if existing is not None and existing.id != event["conn"]:
                # The same device joined again, here or on another instance.
                existing.close(p.CLOSE_REPLACED, "replaced by a new connection")
        frame = self._presence(room, event["event"], event["account"], event["device"])
        for conn in list(room.connections.values()):
            if conn.id != event["conn"]:
                conn.send(frame)

    def _on_admitted(self, event: dict[str, Any]) -> None:
        room = self.rooms.get(event["room"])
        if room is None:
            return
        part = room.participants.get(event["account"])
        if part is not None:
            part.admitted = True
        for conn in room.connections.values():
            if conn.account_id == event["account"]:
                conn.admitted = True
        self._broadcast(room, self._presence(room, "admitted", event["account"], None))

    def _on_participant_added(self, event: dict[str, Any]) -> None:
        room = self.rooms.get(event["room"])
        if room is None:
            return
        room.participants[event["account"]] = Participant(
            event["account"],
            event["role"],
            event.get("display_name", ""),
            bool(event.get("admitted")),
            dict(event.get("devices", {})),
        )

    def _on_participant_removed(self, event: dict[str, Any]) -> None:
        room = self.rooms.get(event["room"])
        if room is None:
            return
        room.participants.pop(event["account"], None)
        for conn in list(room.connections.values()):
            if conn.account_id == event["account"]:
                conn.close(p.CLOSE_FORBIDDEN, "removed from the room")
        self._broadcast(room, self._presence(room, "removed", event["account"], None))

    def _on_device_added(self, event: dict[str, Any]) -> None:
        frame = p.dumps(
            {
                "type": "device",
                "event": "added",
                "account_id": event["account"],
                "device": {"device_id": event["device"], "public_key": event["public_key"]},
            }
        )
        for room in self.rooms.values():
            part = room.participants.get(event["account"])
            if part is not None:
                part.devices[event["device"]] = event["public_key"]
                self._broadcast(room, frame, admitted_only=True)

    def _on_device_revoked(self, event: dict[str, Any]) -> None:
        for room in self.rooms.values():
            part = room.participants.get(event["account"])
            if part is None:
                continue
            key = part.devices.pop(event["device"], "")
            conn = room.connections.get(event["device"])
            if conn is not None:
                conn.close(p.CLOSE_FORBIDDEN, "device revoked")
            frame = p.dumps(
                {
                    "type": "device",
                    "event": "revoked",
                    "account_id": event["account"],
                    "device": {"device_id": event["device"], "public_key": key},
                }
            )
            self._broadcast(room, frame, admitted_only=True)

    def _on_account_closed(self, event: dict[str, Any]) -> None:
        for conn in self.connections():
            if conn.account_id == event["account"]:
                conn.close(int(event.get("code", p.CLOSE_FORBIDDEN)), str(event.get("reason", "")))

    def _on_session_revoked(self, event: dict[str, Any]) -> None:
        for conn in self.connections():
            if conn.session_id == event["sid"]:
                conn.close(p.CLOSE_TOKEN, "logged out")

    def _on_room_locked(self, event: dict[str, Any]) -> None:
        self._room_flag(event["room"], locked=True)

    def _on_room_unlocked(self, event: dict[str, Any]) -> None:
        self._room_flag(event["room"], locked=False)

    def _room_flag(self, room_id: str, *, locked: bool) -> None:
        room = self.rooms.get(room_id)
        if room is not None:
            room.locked = locked
            self._broadcast(
                room, p.dumps({"type": "room", "event": "locked" if locked else "unlocked"})
            )

    def _on_room_schedule(self, event: dict[str, Any]) -> None:
        room = self.rooms.get(event["room"])
        if room is None:
            return
        ends_at = event.get("ends_at")
        room.ends_at = datetime.fromisoformat(ends_at) if ends_at else None
        self._arm(room)
        if room.ends_at is not None and room.ends_at - self.clock.now() <= ENDING_NOTICE:
            self._ending(room)

    def _on_room_ended(self, event: dict[str, Any]) -> None:
        room = self.rooms.get(event["room"])
        if room is not None:
            self._end(room)

    # -- the clock -----------------------------------------------------------
    def _arm(self, room: LiveRoom) -> None:
        for timer in room.timers:
            timer.cancel()
        room.timers = []
        if room.ends_at is None:
            return
        loop = asyncio.get_running_loop()
        until_end = (room.ends_at - self.clock.now()).total_seconds()
        until_notice = until_end - ENDING_NOTICE.total_seconds()
        if until_notice > 0:
            room.timers.append(loop.call_later(until_notice, self._ending, room))
        room.timers.append(loop.call_later(max(0.0, until_end), self._end, room))

    def _ending(self, room: LiveRoom) -> None:
        if room.ends_at is not None:
            frame = p.dumps(
                {
                    "type": "room",
                    "event": "ending",
                    "ends_at": room.ends_at.isoformat().replace("+00:00", "Z"),
                }
            )
            self._broadcast(room, frame)

    def _end(self, room: LiveRoom) -> None:
        self._broadcast(room, p.dumps({"type": "room", "event": "ended"}))
        for conn in list(room.connections.values()):
            conn.close(p.CLOSE_ENDED, "room ended")


def _truncated(earliest: int) -> str:
    return '{"type":"replay_truncated","earliest":' + str(earliest) + "}"


def _fragment(client_id: str, sender: dict[str, str], ciphertext: str, sent_at: str) -> str:
    body = p.dumps(
        {"id": client_id, "sender": sender, "ciphertext": ciphertext, "sent_at": sent_at}
    )
    return body[1:]
