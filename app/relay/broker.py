"""How messages, sequence numbers and replay cross instances.

The hub (connections on this instance) talks to a `Broker`: it appends a
message and gets its `seq`, asks for a replay, spends a room token's `jti`,
and publishes control events (presence, admission, removal, revocation, the
room's end). Every instance receives every published message and event and
delivers them to its own connections.

`InProcessBroker` serves the embedded default (one process). A Redis broker
implements the same interface for several instances; `seq` then comes from
one counter shared by all of them.

A message is stored as a JSON *fragment* without its `seq` and `type`
(`app.relay.frames`): a broadcast is serialized once, whatever the number of
recipients. The types both brokers share (`Outgoing`, `Stored`, the bounds and
the errors) live in `app.relay.store`, which imports neither broker.

Erasure (decision notes 0005 and 0006): `forget` rewrites what the broker
retains so that nothing names the erased person's account or devices. Each
retained message keeps its `seq`; one sent by those devices gets the sender
`ERASED_SENDER` (empty account and device ids), a directed message loses the
fragments addressed to them, and their resend records and presence go.

Admission points (decision note 0005): the broker keeps, per room, each
account's *admission point*, the room's latest `seq` when it was admitted.
A replay for that account starts after it, so a participant added or
admitted later never reads what was said before. `publish` records them from
the events that admit (`participant_added` admitted, `admitted`) and drops
them on `participant_removed`, before the event goes out; `admission` gives
the points, recording the room's latest seq for an admitted account that has
none yet (the room's creator, whose admission is no event).

Bounds (`ReplayLimits`): a room keeps at most `max_frames` messages and
`max_bytes` bytes of stored payload, dropping its oldest first; one sender
(account) may put at most `sender_max_bytes` into a room's store
(`QuotaExceeded` past it); a room with no message or admission for `idle_s`
loses its retained messages, resend records, quotas and admission points
(its `seq` stays, so that it never goes back). Retained messages are
contiguous in `seq` from the oldest one kept: every seq gets exactly one
entry, and only the oldest are ever dropped.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from app.core.broker_url import broker_kind
from app.core.events import Event
from app.relay.redis_broker import RedisBroker
from app.relay.store import (
    BrokerUnavailable,
    EventHandler,
    MessageHandler,
    Outgoing,
    QuotaExceeded,
    ReplayLimits,
    StaleEpoch,
    Stored,
    admission_change,
    forgotten,
)

# The interface's own types and errors, defined in app.relay.store.
__all__ = [
    "Broker",
    "BrokerUnavailable",
    "InProcessBroker",
    "Outgoing",
    "QuotaExceeded",
    "ReplayLimits",
    "StaleEpoch",
    "Stored",
    "create_broker",
]

log = logging.getLogger("confide.broker")


class Broker(Protocol):
    #: What carries the messages ("memory", "redis"): a label of the relay's metrics.
    kind: str

    async def start(self, on_message: MessageHandler, on_event: EventHandler) -> None: ...
    async def close(self) -> None: ...
    async def ready(self) -> bool: ...
    async def append(self, message: Outgoing) -> tuple[int, bool]:
        """Assign the next `seq`, retain and publish; (seq, False).

        A resend of the same (room, device, client id) returns the first
        send's (seq, True) and publishes nothing. A send past the sender's
        quota raises `QuotaExceeded` and takes no seq. The room's oldest
        messages are dropped past its caps.
        """
        ...

    async def latest_seq(self, room: str) -> int: ...
    async def mls_epoch(self, room: str) -> int | None:
        """The room's current MLS epoch: the one after its latest commit; None before any."""
        ...

    async def replay(self, room: str, after: int, limit: int | None = None) -> list[Stored]:
        """The retained messages with seq > `after`, in order, at most `limit` of them."""
        ...

    async def admission(self, room: str, accounts: Sequence[str]) -> dict[str, int]:
        """Each account's admission point in `room` (the latest seq when it was admitted).

        An account without one gets the room's latest seq now, recorded: call
        it only for accounts that are admitted.
        """
        ...

    async def spend_jti(self, jti: str, ttl_s: int, issued_at: float) -> bool:
        """True the first time a jti is spent; False ever after (until ttl).

        Also False for a token issued before the broker's memory of spent ids
        began (its epoch): it may have been spent before that memory was lost.
        """
        ...

    async def publish(self, event: Event) -> None:
        """Send `event` to every instance; an admission event first moves the point."""
        ...

    async def set_online(self, room: str, device: str, online: bool) -> None: ...
    async def online(self, room: str) -> set[str]:
        """Device ids with a live socket in the room, on any instance."""
        ...

    async def drop_room(self, room: str) -> None: ...
    async def has_room(self, room: str) -> bool:
        """Whether anything of the room is retained."""
        ...

    async def purge_expired(self) -> int:
        """Forget spent token ids past their TTL (how many were forgotten), and
        what idle rooms retain (Redis expires those by itself)."""
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


@dataclass
class _Room:
    """What the in-process broker keeps of one room, besides its seq."""

    retained: deque[Stored] = field(default_factory=deque)  # contiguous in seq
    sizes: deque[int] = field(default_factory=deque)  # stored size of each retained message
    total: int = 0
    sent: dict[tuple[str, str], int] = field(default_factory=dict)  # (device, client id) -> seq
    quota: dict[str, int] = field(default_factory=dict)  # sender -> bytes put in
    admitted: dict[str, int] = field(default_factory=dict)  # account -> admission point
    active: float = 0.0


class InProcessBroker:
    kind = "memory"

    def __init__(
        self, now: Callable[[], float] = time.time, *, limits: ReplayLimits | None = None
    ) -> None:
        self._now = now
        self.limits = limits or ReplayLimits()
        self.epoch = now()
        self._seq: dict[str, int] = {}
        self._epochs: dict[str, int] = {}
        self._rooms: dict[str, _Room] = {}
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

    def _room(self, room: str) -> _Room:
        state = self._rooms.get(room)
        if state is None:
            state = self._rooms[room] = _Room()
        state.active = self._now()
        return state

    async def append(self, message: Outgoing) -> tuple[int, bool]:
        existing = self._rooms.get(message.room)
        key = (message.sender_device, message.client_id)
        if existing is not None and (seen := existing.sent.get(key)) is not None:
            return seen, True
        size = len(message.payload()[1])
        limits = self.limits
        used = existing.quota.get(message.sender, 0) if existing is not None else 0
        epoch = self._epochs.get(message.room)
        if message.commit_epoch is not None and epoch is not None and message.commit_epoch != epoch:
            raise StaleEpoch(epoch)
        if used + size > limits.sender_max_bytes:
            raise QuotaExceeded(message.sender)
        # From here to the publication nothing awaits: the check above and the
        # move below are one step, whatever else the event loop runs.
        if message.commit_epoch is not None:
            self._epochs[message.room] = message.commit_epoch + 1
        state = self._room(message.room)
        seq = self._seq.get(message.room, 0) + 1
        self._seq[message.room] = seq
        state.sent[key] = seq
        state.quota[message.sender] = state.quota.get(message.sender, 0) + size
        directed = tuple(message.directed.items()) if message.directed is not None else None
        stored = Stored(seq, message.sender_device, message.broadcast, directed)
        state.retained.append(stored)
        state.sizes.append(size)
        state.total += size
        while len(state.retained) > 1 and (
            len(state.retained) > limits.max_frames or state.total > limits.max_bytes
        ):
            state.retained.popleft()
            state.total -= state.sizes.popleft()
        if self._on_message is not None:
            await self._on_message(message.room, stored)
        return seq, False

    async def latest_seq(self, room: str) -> int:
        return self._seq.get(room, 0)

    async def mls_epoch(self, room: str) -> int | None:
        return self._epochs.get(room)

    async def replay(self, room: str, after: int, limit: int | None = None) -> list[Stored]:
        state = self._rooms.get(room)
        if state is None or not state.retained:
            return []
        # Contiguous in seq: the first one after `after` is at a known index.
        skip = max(0, after + 1 - state.retained[0].seq)
        stop = None if limit is None else skip + limit
        return list(itertools.islice(state.retained, skip, stop))

    async def admission(self, room: str, accounts: Sequence[str]) -> dict[str, int]:
        latest = self._seq.get(room, 0)
        state = self._rooms.get(room)
        if state is not None and all(a in state.admitted for a in accounts):
            return {a: state.admitted[a] for a in accounts}
        state = self._room(room)
        return {a: state.admitted.setdefault(a, latest) for a in accounts}

    async def spend_jti(self, jti: str, ttl_s: int, issued_at: float) -> bool:
        if issued_at < self.epoch - 1:
            return False
        now = self._now()
        expires = self._spent.get(jti)
        if expires is not None and expires > now:
            return False
        self._spent[jti] = now + ttl_s
        return True

    async def publish(self, event: Event) -> None:
        change = admission_change(event)
        if change is not None:
            room, account, how = change
            if how == "drop":
                state = self._rooms.get(room)
                if state is not None:
                    state.admitted.pop(account, None)
            else:
                latest = self._seq.get(room, 0)
                admitted = self._room(room).admitted
                if how == "reset":
                    admitted[account] = latest
                else:
                    admitted.setdefault(account, latest)
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
        idle = [r for r, state in self._rooms.items() if state.active <= now - self.limits.idle_s]
        for room in idle:
            del self._rooms[room]  # its seq stays: a room's seq never goes back
        if idle:
            log.info("purge: %d idle rooms' ciphertexts", len(idle))
        return len(expired)

    async def has_room(self, room: str) -> bool:
        return room in self._rooms or room in self._seq

    async def drop_room(self, room: str) -> None:
        self._rooms.pop(room, None)
        self._seq.pop(room, None)
        self._epochs.pop(room, None)

    async def forget(self, account_id: str, devices: Sequence[str], rooms: Sequence[str]) -> None:
        gone, where = set(devices), set(rooms)
        if not gone or not where:
            return
        for room in where:
            state = self._rooms.get(room)
            if state is not None:
                state.retained = deque(forgotten(s, account_id, gone) for s in state.retained)
                for key in [k for k in state.sent if k[0] in gone]:
                    del state.sent[key]
                state.admitted.pop(account_id, None)
                state.quota.pop(account_id, None)
                for device in gone:
                    state.quota.pop(device, None)
            online = self._online.get(room)
            if online is not None:
                online -= gone
                if not online:
                    del self._online[room]


def create_broker(
    url: str,
    now: Callable[[], float] = time.time,
    *,
    prefix: str = "confide",
    limits: ReplayLimits | None = None,
    timeout_s: float = 2.0,
) -> Broker:
    """The broker `url` names; a Redis one gives every call `timeout_s` at most."""
    if broker_kind(url) == "memory":
        return InProcessBroker(now, limits=limits)
    return RedisBroker(url, prefix=prefix, now=now, limits=limits, timeout_s=timeout_s)
