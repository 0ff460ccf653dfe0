"""How messages, sequence numbers and replay cross instances.

The hub (connections on this instance) talks to a `Broker`: it appends a
message and gets its `seq`, asks for a replay, spends a room token's `jti`,
and publishes control events (presence, admission, removal, revocation, the
room's end). Every instance receives every published message and event and
delivers them to its own connections.

`InProcessBroker` serves the embedded default (one process). A Redis broker
implements the same interface for several instances; `seq` then comes from
one counter shared by all of them.

A message is stored as a JSON *fragment* without its `seq` and `type`:
`"id":…,"sender":…,"ciphertext":…,"sent_at":…}`; the frame a recipient gets
is `{"type":"message","seq":N,` + fragment, so a broadcast is serialized once,
whatever the number of recipients.

Erasure (decision notes 0005 and 0006): `forget` rewrites what the broker
retains so that nothing names the erased person's account or devices. Each
retained message keeps its `seq`; one sent by those devices gets the sender
`ERASED_SENDER` (empty account and device ids), a directed message loses the
fragments addressed to them, and their resend records and presence go.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol


@dataclass(frozen=True)
class Outgoing:
    room: str
    sender_device: str
    client_id: str
    broadcast: str | None  # fragment for every other device
    directed: dict[str, str] | None  # device id -> fragment


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


def message_frame(seq: int, fragment: str) -> str:
    return '{"type":"message","seq":' + str(seq) + "," + fragment


def sender_json(account_id: str, device_id: str) -> str:
    """The `"sender":{...}` member of a fragment, exactly as the hub writes it."""
    ids = json.dumps(
        {"account_id": account_id, "device_id": device_id},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return '"sender":' + ids


#: What replaces the sender of a retained message once its sender is erased.
ERASED_SENDER = sender_json("", "")


def forgotten(stored: Stored, account_id: str, devices: set[str]) -> Stored:
    """`stored` with nothing left that names `devices` or `account_id` as their sender."""
    sender = stored.sender_device
    erased = sender in devices
    old = sender_json(account_id, sender) if erased else ""
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
EventHandler = Callable[[dict[str, Any]], Awaitable[None]]


class BrokerUnavailable(Exception):
    """The broker cannot be reached: a send is refused, never silently dropped."""


class Broker(Protocol):
    async def start(self, on_message: MessageHandler, on_event: EventHandler) -> None: ...
    async def close(self) -> None: ...
    async def ready(self) -> bool: ...
    async def append(self, message: Outgoing) -> tuple[int, bool]:
        """Assign the next `seq`, retain and publish; (seq, False).

        A resend of the same (room, device, client id) returns the first
        send's (seq, True) and publishes nothing.
        """
        ...

    async def latest_seq(self, room: str) -> int: ...
    async def replay(self, room: str, after: int) -> list[Stored]: ...
    async def spend_jti(self, jti: str, ttl_s: int, issued_at: float) -> bool:
        """True the first time a jti is spent; False ever after (until ttl).

        Also False for a token issued before the broker's memory of spent ids
        began (its epoch): it may have been spent before that memory was lost.
        """
        ...

    async def publish(self, event: dict[str, Any]) -> None: ...
    async def set_online(self, room: str, device: str, online: bool) -> None: ...
    async def online(self, room: str) -> set[str]:
        """Device ids with a live socket in the room, on any instance."""
        ...

    async def drop_room(self, room: str) -> None: ...
    async def has_room(self, room: str) -> bool:
        """Whether anything of the room is retained."""
        ...

    async def purge_expired(self) -> int:
        """Forget spent token ids past their TTL; how many were forgotten."""
        ...

    async def forget(self, account_id: str, devices: Sequence[str], rooms: Sequence[str]) -> None:
        """Erasure: in `rooms`, leave nothing that names `account_id` or `devices`.

        Every retained message keeps its seq (replay stays contiguous): those
        sent by `devices` get the sender `ERASED_SENDER`, directed ones lose the
        fragments addressed to `devices`; the resend records of `devices` and
        their presence are deleted. Idempotent, and safe to run on several
        instances at once.
        """
        ...


class InProcessBroker:
    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self.epoch = now()
        self._seq: dict[str, int] = {}
        self._retained: dict[str, deque[Stored]] = {}
        self._sent: dict[tuple[str, str, str], int] = {}
        self._spent: dict[str, float] = {}
        self._online: dict[str, set[str]] = {}
        self._on_message: MessageHandler | None = None
        self._on_event: EventHandler | None = None

    async def start(self, on_message: MessageHandler, on_event: EventHandler) -> None:
        self._on_message, self._on_event = on_message, on_event

    async def close(self) -> None:
        self._on_message = self._on_event = None

    async def ready(self) -> bool:
        return True

    async def append(self, message: Outgoing) -> tuple[int, bool]:
        key = (message.room, message.sender_device, message.client_id)
        seen = self._sent.get(key)
        if seen is not None:
            return seen, True
        seq = self._seq.get(message.room, 0) + 1
        self._seq[message.room] = seq
        self._sent[key] = seq
        directed = tuple(message.directed.items()) if message.directed is not None else None
        stored = Stored(seq, message.sender_device, message.broadcast, directed)
        self._retained.setdefault(message.room, deque()).append(stored)
        if self._on_message is not None:
            await self._on_message(message.room, stored)
        return seq, False

    async def latest_seq(self, room: str) -> int:
        return self._seq.get(room, 0)

    async def replay(self, room: str, after: int) -> list[Stored]:
        retained = self._retained.get(room)
        if not retained:
            return []
        # Retained messages are in seq order: skip to the first one after `after`.
        return [stored for stored in retained if stored.seq > after]

    async def spend_jti(self, jti: str, ttl_s: int, issued_at: float) -> bool:
        if issued_at < self.epoch - 1:
            return False
        now = self._now()
        expires = self._spent.get(jti)
        if expires is not None and expires > now:
            return False
        self._spent[jti] = now + ttl_s
        return True

    async def publish(self, event: dict[str, Any]) -> None:
        if self._on_event is not None:
            await self._on_event(event)

    async def set_online(self, room: str, device: str, online: bool) -> None:
        devices = self._online.setdefault(room, set())
        if online:
            devices.add(device)
        else:
            devices.discard(device)
            if not devices:
                del self._online[room]

    async def online(self, room: str) -> set[str]:
        return set(self._online.get(room, ()))

    async def purge_expired(self) -> int:
        now = self._now()
        expired = [jti for jti, until in self._spent.items() if until <= now]
        for jti in expired:
            del self._spent[jti]
        return len(expired)

    async def has_room(self, room: str) -> bool:
        return room in self._retained or room in self._seq

    async def drop_room(self, room: str) -> None:
        self._retained.pop(room, None)
        self._seq.pop(room, None)
        for key in [k for k in self._sent if k[0] == room]:
            del self._sent[key]

    async def forget(self, account_id: str, devices: Sequence[str], rooms: Sequence[str]) -> None:
        gone, where = set(devices), set(rooms)
        if not gone or not where:
            return
        for room in where:
            retained = self._retained.get(room)
            if retained:
                self._retained[room] = deque(forgotten(s, account_id, gone) for s in retained)
            online = self._online.get(room)
            if online is not None:
                online -= gone
                if not online:
                    del self._online[room]
        for key in [k for k in self._sent if k[1] in gone and k[0] in where]:
            del self._sent[key]


def create_broker(
    url: str, now: Callable[[], float] = time.time, *, prefix: str = "confide"
) -> Broker:
    if url.startswith("memory://"):
        return InProcessBroker(now)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from app.relay.redis_broker import RedisBroker

        return RedisBroker(url, prefix=prefix, now=now)
    raise ValueError(f"unsupported broker URL scheme: {url.split(':', 1)[0]}")
