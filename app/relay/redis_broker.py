"""The broker for several instances: Redis.

- `seq` per room is one Redis counter, so it is strictly increasing and the
  same for every recipient whichever instance accepted the message.
- A send is one Lua script, atomic in Redis: check the (device, client id)
  idempotency hash, take the next seq, append the ciphertext fragment to the
  room's stream under the entry id `<seq>-0`, and publish it. One round trip,
  and no interleaving can give two messages the same seq or a resend a new one.
- Replay reads the room's stream from `(<after>-0`: ciphertexts are kept in
  Redis (decision note 0005), never in the database, and the whole room's
  keys are deleted once its retention has passed.
- Every instance subscribes to one message channel and one event channel and
  delivers to its own sockets; the instance that accepted a message gets it
  back the same way, so every socket sees messages in seq order.
- Pub/sub loses what is published while Redis is down; seq and replay let
  clients find and fill any gap. Redis errors become `BrokerUnavailable`: a
  send is refused with an error frame, never silently dropped.
- Spent room-token ids are keys with a TTL, in `JTI_SHARDS` shards (one hash
  tag each), and each shard has an epoch key: the time from which Redis
  remembers its ids. A Redis (or a cluster node) that lost its memory also
  forgot the shard's spent ids, gets a new epoch with them, and refuses
  tokens issued before it. No key or value outside a room's own keys names
  an account or a device.
- Redis Cluster (`redis+cluster://`, decision note 0010): every key of a room
  carries the hash tag `{<room>}`, so each script touches one slot; the
  spend script touches one shard's two keys; the instances' heartbeats share
  the tag `{instance}` (read together by `online`). Pub/sub is classic: a
  cluster delivers every publication to subscribers on any node, so each
  instance subscribes on one node (the next one after a failure). What
  concerns a room is published from its slot's node (by a script on its
  keys), so a room's messages and events keep one order.
- Bounds (decision note 0005): the send script also counts the sender's
  bytes in the room (`:quota`, refusing past `sender_max_bytes`) and the
  stream's (`:bytes`), and trims the oldest entries past the room's caps in
  frames and bytes (`XTRIM MINID`, so the stream stays contiguous in seq).
  Every write gives the room's content keys (`log`, `sent`, `bytes`,
  `quota`, `admit`) the idle TTL again, so Redis itself deletes what an idle
  room retains; `seq` has no TTL and never goes back.
- MLS epochs: a message that is an MLS commit carries its epoch; the send
  script accepts it only if the room's `:epoch` (no TTL, like `seq`) is that
  epoch or unset, and sets it to the next one in the same step, so of two
  commits for one epoch exactly one is stored.
- Admission points are a hash per room (`:admit`, account -> seq), set or
  dropped by the same script that publishes the admitting event.
- Erasure (`forget`) rewrites a room's stream. An entry cannot be changed in
  place, nor added again below the stream's top id, so the stream is copied,
  rewritten, into a temporary key of the same room (batches of
  `FORGET_BATCH` entries, each one script), and one last script copies what
  was appended meanwhile and renames the copy over the stream: a reader sees
  the old stream or the new one, never a mix, and every seq stays. A first
  read-only pass finds whether anything names the person at all, so the
  instances that come after the first find nothing to do. The resend records
  (`HSCAN` by the device's field prefix) and presence of the devices go too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from app.core import events
from app.core.broker_url import ClusterAddress, parse_cluster_url
from app.relay.frames import sender_member
from app.relay.redis_pipe import (
    Pipe,
    PipeError,
    ReplyError,
    Script,
    Subscription,
    parse_address,
)
from app.relay.store import (
    ERASED_SENDER,
    BrokerUnavailable,
    EventHandler,
    MessageHandler,
    Outgoing,
    QuotaExceeded,
    ReplayLimits,
    StaleEpoch,
    Stored,
    admission_change,
)

log = logging.getLogger("confide.broker")

#: What Redis, or a cluster client that finds no node for a slot, raises; and
#: the pipelined connection's errors.
_REDIS_ERRORS = (RedisError, RedisClusterException, PipeError, ReplyError)

# KEYS: seq, sent, log, bytes, quota, admit, epoch. ARGV: the resend field,
# device, kind, payload, channel, room, sender (account), max frames, max
# bytes, the sender's quota, idle TTL (ms), the epoch of an MLS commit and the
# next one (both '' for any other message). {seq, 0}; a resend: {its seq, 1};
# past the sender's quota: {0, 2}; a commit for another epoch than the
# room's: {the room's epoch, 3}.
_APPEND = """
local seen = redis.call('HGET', KEYS[2], ARGV[1])
if seen then return {tonumber(seen), 1} end
if ARGV[12] ~= '' then
  local epoch = redis.call('GET', KEYS[7])
  if epoch and epoch ~= ARGV[12] then return {epoch, 3} end
end
local size = string.len(ARGV[4])
local used = tonumber(redis.call('HGET', KEYS[5], ARGV[7]) or '0')
if used + size > tonumber(ARGV[10]) then return {0, 2} end
if ARGV[12] ~= '' then redis.call('SET', KEYS[7], ARGV[13]) end
local seq = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], seq)
redis.call('HINCRBY', KEYS[5], ARGV[7], size)
redis.call('XADD', KEYS[3], seq .. '-0', 'd', ARGV[2], 'k', ARGV[3], 'p', ARGV[4])
local total = redis.call('INCRBY', KEYS[4], size)
local count = redis.call('XLEN', KEYS[3])
local max_frames, max_bytes = tonumber(ARGV[8]), tonumber(ARGV[9])
if count > max_frames or total > max_bytes then
  -- Drop the oldest entries (never the one just added) until both caps hold,
  -- reading few at a time: at a cap, one send usually drops one entry.
  local from, drop = '-', nil
  local batch = math.max(1, math.min(64, count - max_frames))
  while count > 1 and (count > max_frames or total > max_bytes) do
    local entries = redis.call('XRANGE', KEYS[3], from, '+', 'COUNT', batch)
    batch = math.min(64, batch * 2)
    if #entries == 0 then break end
    for _, entry in ipairs(entries) do
      if count <= 1 or (count <= max_frames and total <= max_bytes) then break end
      local fields = entry[2]
      for i = 1, #fields, 2 do
        if fields[i] == 'p' then total = total - string.len(fields[i + 1]) end
      end
      count = count - 1
      drop = entry[1]
    end
    if drop then from = '(' .. drop end
  end
  if drop then
    local top = tonumber(string.match(drop, '^(%d+)'))
    redis.call('XTRIM', KEYS[3], 'MINID', string.format('%d-0', top + 1))
  end
  if total < 0 then total = 0 end
  redis.call('SET', KEYS[4], total)
end
for i = 2, 6 do redis.call('PEXPIRE', KEYS[i], ARGV[11]) end
local nl = '\\n'
local head = ARGV[6] .. nl .. seq .. nl .. ARGV[2]
redis.call('PUBLISH', ARGV[5], head .. nl .. ARGV[3] .. nl .. ARGV[4])
return {seq, 0}
"""

# KEYS: seq, admit. ARGV: idle TTL (ms), then account ids. Each account's
# admission point; one without a point gets the latest seq, recorded.
_ADMISSION = """
local latest = redis.call('GET', KEYS[1]) or '0'
local points, added = {}, false
for i = 2, #ARGV do
  local point = redis.call('HGET', KEYS[2], ARGV[i])
  if not point then
    point = latest
    redis.call('HSET', KEYS[2], ARGV[i], latest)
    added = true
  end
  points[i - 1] = tonumber(point)
end
if added then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end
return points
"""

# KEYS: seq, admit. ARGV: how (first, reset, drop), account, idle TTL (ms),
# channel, event. Moves the point, then publishes the event that moved it.
_PUBLISH_ADMISSION = """
if ARGV[1] == 'drop' then
  redis.call('HDEL', KEYS[2], ARGV[2])
else
  local latest = redis.call('GET', KEYS[1]) or '0'
  if ARGV[1] == 'reset' then
    redis.call('HSET', KEYS[2], ARGV[2], latest)
  else
    redis.call('HSETNX', KEYS[2], ARGV[2], latest)
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return redis.call('PUBLISH', ARGV[4], ARGV[5])
"""

# KEYS: a room's seq (only to run on the room's node). ARGV: channel, event.
_PUBLISH_IN_ROOM = """
return redis.call('PUBLISH', ARGV[1], ARGV[2])
"""

# KEYS: a shard's epoch, the spent id (same shard). ARGV: now, issued at, TTL.
# The epoch is set when an instance (re)subscribes, long before any token of
# its is spent, and read in the same script as the spend; a Redis that
# restarted empty gets a new epoch at the latest with its next spend, so no
# stale value is ever used.
_SPEND = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local epoch = tonumber(redis.call('GET', KEYS[1]))
if tonumber(ARGV[2]) < epoch - 1 then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then return 1 end
return 0
"""

# Erasure. Every script below gets, from ARGV[n] on: the erased sender's
# replacement, then (device id, its `"sender":{...}` member) pairs.
_REWRITE = """
local function erased_devices(from)
  local devices = {}
  for i = from + 1, #ARGV, 2 do devices[ARGV[i]] = ARGV[i + 1] end
  return ARGV[from], devices
end

local function swap(text, old, new)
  local i, j = string.find(text, old, 1, true)
  if not i then return text end
  return string.sub(text, 1, i - 1) .. new .. string.sub(text, j + 1)
end

-- An entry's fields without the erased devices: d, k, p, and whether any changed.
local function rewrite(fields, erased, devices)
  local f = {}
  for i = 1, #fields, 2 do f[fields[i]] = fields[i + 1] end
  local d, k, p = f['d'], f['k'], f['p']
  local old = devices[d]
  if k == 'b' then
    if not old then return d, k, p, false end
    return '', k, swap(p, old, erased), true
  end
  local named = old ~= nil
  if not named then
    for device in pairs(devices) do
      if string.find(p, '"' .. device .. '"', 1, true) then named = true; break end
    end
  end
  if not named then return d, k, p, false end
  local changed = old ~= nil
  local kept = {}
  for device, fragment in pairs(cjson.decode(p)) do
    if devices[device] then
      changed = true
    elseif old then
      kept[device] = swap(fragment, old, erased)
    else
      kept[device] = fragment
    end
  end
  if not changed then return d, k, p, false end
  if old then d = '' end
  return d, k, cjson.encode(kept), true
end
"""

# KEYS: the stream. ARGV: after, count, then the erased devices. Read only:
# {last id read, entries read, 1 if an entry names an erased device}.
_FORGET_LOOK = (
    _REWRITE
    + """
local erased, devices = erased_devices(3)
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
local last = ARGV[1]
for _, entry in ipairs(entries) do
  local _, _, _, changed = rewrite(entry[2], erased, devices)
  if changed then return {entry[1], #entries, 1} end
  last = entry[1]
end
return {last, #entries, 0}
"""
)

# KEYS: the stream, the copy. ARGV: after, count, the copy's TTL (ms), then the
# erased devices. {last id copied, entries copied, 1 if any was rewritten}.
_FORGET_COPY = (
    _REWRITE
    + """
local erased, devices = erased_devices(4)
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
local last, any = ARGV[1], 0
for _, entry in ipairs(entries) do
  local d, k, p, changed = rewrite(entry[2], erased, devices)
  if changed then any = 1 end
  redis.call('XADD', KEYS[2], entry[1], 'd', d, 'k', k, 'p', p)
  last = entry[1]
end
if #entries > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return {last, #entries, any}
"""
)

# KEYS: the stream, the copy. ARGV: after, copied so far (0/1), rewritten so
# far (0/1), the stream's idle TTL (ms), then the erased devices. Copies the
# rest and puts the copy in the stream's place: 1; nothing to change (or the
# room was purged meanwhile): 0; the copy expired before it was finished: -1
# (start again).
_FORGET_SWAP = (
    _REWRITE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  return 0
end
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local erased, devices = erased_devices(5)
local any = ARGV[3] == '1'
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+')
for _, entry in ipairs(entries) do
  local d, k, p, changed = rewrite(entry[2], erased, devices)
  if changed then any = true end
  redis.call('XADD', KEYS[2], entry[1], 'd', d, 'k', k, 'p', p)
end
if not any or redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[2])
  return 0
end
redis.call('RENAME', KEYS[2], KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""
)

#: Stream entries per erasure script: each script stays short, whatever the stream's length.
FORGET_BATCH = 100
#: The rewritten copy of a stream disappears this long after its last batch (an
#: instance that died half-way leaves nothing behind for long).
FORGET_COPY_TTL_MS = 60_000

#: Every key of a room: `drop_room` deletes them all.
_ROOM_KEYS = ("seq", "sent", "log", "online", "admit", "quota", "bytes", "epoch")

HEARTBEAT_S = 5
INSTANCE_TTL_S = 15
#: Spent token ids are spread over this many hash tags (cluster slots).
JTI_SHARDS = 16


def _stored(seq: int, device: str, kind: str, payload: str) -> Stored:
    """A message as the stream or the channel holds it; ValueError if it is not one."""
    if kind == "b":
        return Stored(seq, device, payload, None)
    directed = json.loads(payload) if kind == "d" else None
    if not isinstance(directed, dict) or not all(
        isinstance(fragment, str) for fragment in directed.values()
    ):
        raise ValueError("not a stored message")
    return Stored(seq, device, None, tuple(directed.items()))


class RedisBroker:
    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "confide",
        now: Callable[[], float] = time.time,
        limits: ReplayLimits | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        self._url = url
        #: Every call's budget: to connect, to wait for a pooled connection, and for
        #: a reply (`CONFIDE_BROKER_TIMEOUT_S`); past it the call is BrokerUnavailable.
        self._timeout_s = timeout_s
        self._prefix = prefix
        self._now = now
        self.limits = limits or ReplayLimits()
        self._idle_ms = max(1, round(self.limits.idle_s * 1000))
        self._cluster: ClusterAddress | None = None
        self._redis: aioredis.Redis | RedisCluster
        if url.startswith(("redis+cluster://", "rediss+cluster://")):
            self._cluster = parse_cluster_url(url)
            # At most 256 connections to each node, like the single pool
            # below; past them a command fails (BrokerUnavailable).
            self._redis = RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in self._cluster.nodes],
                username=self._cluster.username,
                password=self._cluster.password,
                ssl=self._cluster.tls,
                max_connections=256,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                decode_responses=True,
            )
        else:
            # A blocking pool: past its size, a send waits its turn for a
            # connection instead of failing at once with "Too many connections".
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=256,
                timeout=timeout_s,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                health_check_interval=10,
                decode_responses=True,
            )
            self._redis = aioredis.Redis(connection_pool=pool)
        self._append = self._redis.register_script(_APPEND)
        self._spend = self._redis.register_script(_SPEND)
        self._admission = self._redis.register_script(_ADMISSION)
        self._publish_admission = self._redis.register_script(_PUBLISH_ADMISSION)
        self._publish_in_room = self._redis.register_script(_PUBLISH_IN_ROOM)
        self._forget_look = self._redis.register_script(_FORGET_LOOK)
        self._forget_copy = self._redis.register_script(_FORGET_COPY)
        self._forget_swap = self._redis.register_script(_FORGET_SWAP)
        #: One Redis (not a cluster, a URL without options): the commands of
        #: the hot path and the subscription go through one pipelined
        #: connection each (app.relay.redis_pipe); the rest through redis-py.
        address = None if self._cluster is not None else parse_address(url)
        self._pipe = (
            None if address is None else Pipe(address, timeout=timeout_s, connect_timeout=timeout_s)
        )
        self._registered = {
            _APPEND: self._append,
            _SPEND: self._spend,
            _ADMISSION: self._admission,
            _PUBLISH_ADMISSION: self._publish_admission,
            _PUBLISH_IN_ROOM: self._publish_in_room,
        }
        self._scripts = {source: Script(source) for source in self._registered}
        self.instance = uuid.uuid4().hex
        self._on_message: MessageHandler | None = None
        self._on_event: EventHandler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = False
        self._attempts = 0  # subscriptions tried: the next one takes the next node
        #: The cluster node this instance subscribes on (None: one Redis).
        self.subscribed_node: tuple[str, int] | None = None
        self._messages = f"{prefix}:messages"
        self._events = f"{prefix}:events"

    async def _eval(self, source: str, keys: list[str], args: list[Any]) -> Any:
        """Run one of the hot path's scripts: pipelined on one Redis, else through redis-py."""
        if self._pipe is not None:
            return await self._scripts[source](self._pipe, keys, args)
        return await self._registered[source](keys=keys, args=args)

    async def _command(self, *args: Any) -> Any:
        """One command of the hot path whose reply redis-py does not convert (GET, HSET, ...)."""
        if self._pipe is not None:
            return await self._pipe.execute(*args)
        return await self._redis.execute_command(*args)

    # -- keys -----------------------------------------------------------------
    def _k(self, room: str, what: str) -> str:
        return f"{self._prefix}:room:{{{room}}}:{what}"

    def _instance_key(self, instance: str) -> str:
        return f"{self._prefix}:{{instance}}:{instance}"

    def _jti_keys(self, jti: str) -> tuple[str, str]:
        """The epoch of `jti`'s shard and its spent key (one hash tag)."""
        shard = zlib.crc32(jti.encode()) % JTI_SHARDS
        return self._jti_epoch_key(shard), f"{self._prefix}:{{jti:{shard}}}:spent:{jti}"

    def _jti_epoch_key(self, shard: int) -> str:
        return f"{self._prefix}:{{jti:{shard}}}:epoch"

    # -- life -----------------------------------------------------------------
    async def start(self, on_message: MessageHandler, on_event: EventHandler) -> None:
        self._on_message, self._on_event = on_message, on_event
        ready = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._listen(ready)),
            asyncio.create_task(self._heartbeat()),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), 5)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            await self._redis.delete(self._instance_key(self.instance))
        if self._pipe is not None:
            self._pipe.close()
        await self._redis.aclose()
        if isinstance(self._redis, aioredis.Redis):
            await self._redis.connection_pool.disconnect()

    async def _heartbeat(self) -> None:
        while True:
            with contextlib.suppress(*_REDIS_ERRORS):
                await self._command(
                    "SET", self._instance_key(self.instance), "1", "EX", INSTANCE_TTL_S
                )
            await asyncio.sleep(HEARTBEAT_S)

    async def _listen(self, ready: asyncio.Event) -> None:
        """The instance's one subscription, opened again (with backoff) whenever it is lost."""
        backoff = 0.1
        while True:
            try:
                async with self._subscription() as messages:
                    now = repr(self._now())
                    for shard in range(JTI_SHARDS):
                        await self._command("SET", self._jti_epoch_key(shard), now, "NX")
                    self._subscribed = True
                    ready.set()
                    backoff = 0.1
                    async for channel, data in messages:
                        await self._dispatch(channel, data)
            except asyncio.CancelledError:
                raise
            except (*_REDIS_ERRORS, OSError) as error:
                log.warning(
                    "broker: Redis subscription lost (%s); reconnecting", type(error).__name__
                )
            except Exception:
                log.exception("broker: listener error")
            finally:
                self._subscribed = False
            await asyncio.sleep(backoff)
            backoff = min(2.0, backoff * 2)

    @contextlib.asynccontextmanager
    async def _subscription(self) -> AsyncIterator[AsyncIterator[tuple[str, str]]]:
        """A subscription to the instance's channels, and its messages in order.

        On one Redis it is a connection of its own (app.relay.redis_pipe), every
        message of a read handed on at once; on a cluster, redis-py's pub/sub on
        one node.
        """
        if self._pipe is not None:
            subscription = Subscription(
                self._pipe.address,
                [self._messages, self._events],
                timeout=self._timeout_s,
                connect_timeout=self._timeout_s,
            )
            try:
                await subscription.open()

                async def piped() -> AsyncIterator[tuple[str, str]]:
                    while True:
                        for item in await subscription.read():
                            yield item

                yield piped()
            finally:
                subscription.close()
            return
        node = await self._subscriber()
        pubsub = node.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._messages, self._events)

            async def polled() -> AsyncIterator[tuple[str, str]]:
                while True:
                    item = await pubsub.get_message(timeout=1.0)
                    if item is not None:
                        yield item["channel"], item["data"]

            yield polled()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            if node is not self._redis:
                with contextlib.suppress(Exception):
                    await node.aclose()

    async def _subscriber(self) -> aioredis.Redis:
        """The client to subscribe with: the one Redis, or one node of the cluster.

        A cluster delivers classic pub/sub to subscribers on every node, so any
        node will do; each new subscription takes the next one, so that a node
        that failed is not asked again and again.
        """
        if isinstance(self._redis, aioredis.Redis):
            return self._redis
        assert self._cluster is not None
        await self._redis.initialize()
        nodes = sorted({(n.host, int(n.port)) for n in self._redis.get_nodes()})
        nodes = nodes or list(self._cluster.nodes)
        self._attempts += 1
        host, port = nodes[self._attempts % len(nodes)]
        self.subscribed_node = (host, port)
        return aioredis.Redis(
            host=host,
            port=port,
            username=self._cluster.username,
            password=self._cluster.password,
            ssl=self._cluster.tls,
            socket_timeout=self._timeout_s,
            socket_connect_timeout=self._timeout_s,
            health_check_interval=10,
            decode_responses=True,
        )

    async def _dispatch(self, channel: str, data: str) -> None:
        """Hand one published item on; one that cannot be read is logged and dropped."""
        if channel == self._messages and self._on_message is not None:
            try:
                room, seq, device, kind, payload = data.split("\n", 4)
                stored = _stored(int(seq), device, kind, payload)
            except ValueError:
                log.warning("broker: dropped a malformed message")
                return
            await self._on_message(room, stored)
        elif channel == self._events and self._on_event is not None:
            try:
                event = events.decode(data)
            except events.EventError as error:
                log.warning("broker: dropped a malformed event (%s)", error)
                return
            await self._on_event(event)

    # -- the interface ----------------------------------------------------------
    async def ready(self) -> bool:
        """Redis answers and this instance hears the channels (else it would miss messages)."""
        try:
            if self._pipe is not None:
                return await self._pipe.execute("PING") == "PONG" and self._subscribed
            return bool(await self._redis.ping()) and self._subscribed
        except _REDIS_ERRORS:
            return False

    async def append(self, message: Outgoing) -> tuple[int, bool]:
        kind, payload = message.payload()
        limits = self.limits
        try:
            seq, outcome = await self._eval(
                _APPEND,
                [
                    self._k(message.room, what)
                    for what in ("seq", "sent", "log", "bytes", "quota", "admit", "epoch")
                ],
                [
                    f"{message.sender_device}:{message.client_id}",
                    message.sender_device,
                    kind,
                    payload,
                    self._messages,
                    message.room,
                    message.sender,
                    limits.max_frames,
                    limits.max_bytes,
                    limits.sender_max_bytes,
                    self._idle_ms,
                    "" if message.commit_epoch is None else str(message.commit_epoch),
                    "" if message.commit_epoch is None else str(message.commit_epoch + 1),
                ],
            )
        except _REDIS_ERRORS as error:
            raise BrokerUnavailable(str(error)) from None
        if int(outcome) == 2:
            raise QuotaExceeded(message.sender)
        if int(outcome) == 3:
            raise StaleEpoch(int(seq))
        return int(seq), bool(outcome)

    async def latest_seq(self, room: str) -> int:
        try:
            value = await self._command("GET", self._k(room, "seq"))
        except _REDIS_ERRORS as error:
            raise BrokerUnavailable(str(error)) from None
        return int(value or 0)

    async def mls_epoch(self, room: str) -> int | None:
        try:
            value = await self._command("GET", self._k(room, "epoch"))
        except _REDIS_ERRORS as error:
            raise BrokerUnavailable(str(error)) from None
        return None if value is None else int(value)

    async def replay(self, room: str, after: int, limit: int | None = None) -> list[Stored]:
        try:
            entries: list[tuple[str, dict[str, str]]] = await self._redis.xrange(  # type: ignore[assignment]
                self._k(room, "log"), min=f"({after}-0", count=limit
            )
        except _REDIS_ERRORS as error:
            raise BrokerUnavailable(str(error)) from None
        return [
            _stored(int(entry_id.split("-")[0]), fields["d"], fields["k"], fields["p"])
            for entry_id, fields in entries
        ]

    async def admission(self, room: str, accounts: Sequence[str]) -> dict[str, int]:
        if not accounts:
            return {}
        try:
            points = await self._eval(
                _ADMISSION,
                [self._k(room, "seq"), self._k(room, "admit")],
                [self._idle_ms, *accounts],
            )
        except _REDIS_ERRORS as error:
            raise BrokerUnavailable(str(error)) from None
        return {account: int(point) for account, point in zip(accounts, points, strict=True)}

    async def spend_jti(self, jti: str, ttl_s: int, issued_at: float) -> bool:
        try:
            spent = await self._eval(
                _SPEND,
                list(self._jti_keys(jti)),
                [repr(self._now()), repr(issued_at), max(1, ttl_s)],
            )
            return bool(spent)
        except _REDIS_ERRORS as error:
            raise BrokerUnavailable(str(error)) from None

    async def publish(self, event: events.Event) -> None:
        text = events.encode(event)
        change = admission_change(event)
        try:
            room = getattr(event, "room", None)
            if change is None and self._cluster is not None and isinstance(room, str):
                # From the room's node, in order with its messages.
                await self._eval(_PUBLISH_IN_ROOM, [self._k(room, "seq")], [self._events, text])
            elif change is None:
                await self._command("PUBLISH", self._events, text)
            else:
                room, account, how = change
                await self._eval(
                    _PUBLISH_ADMISSION,
                    [self._k(room, "seq"), self._k(room, "admit")],
                    [how, account, self._idle_ms, self._events, text],
                )
        except _REDIS_ERRORS as error:
            raise BrokerUnavailable(str(error)) from None

    async def set_online(self, room: str, device: str, online: bool) -> None:
        key = self._k(room, "online")
        try:
            if online:
                await self._command("HSET", key, device, self.instance)
            else:
                await self._command("HDEL", key, device)
        except _REDIS_ERRORS as error:
            raise BrokerUnavailable(str(error)) from None

    async def online(self, room: str) -> set[str]:
        try:
            devices: dict[str, str]
            if self._pipe is not None:
                flat = await self._pipe.execute("HGETALL", self._k(room, "online"))
                devices = dict(zip(flat[::2], flat[1::2], strict=True))
            else:
                devices = await self._redis.hgetall(self._k(room, "online"))  # type: ignore[assignment]
            instances = sorted(set(devices.values()))
            if not instances:
                return set()
            if self._pipe is not None:
                alive = await self._pipe.execute(
                    "MGET", *(self._instance_key(i) for i in instances)
                )
            else:
                alive = await self._redis.mget([self._instance_key(i) for i in instances])
        except _REDIS_ERRORS as error:
            raise BrokerUnavailable(str(error)) from None
        live = {i for i, flag in zip(instances, alive, strict=True) if flag}
        return {device for device, instance in devices.items() if instance in live}

    async def purge_expired(self) -> int:
        # Redis expires spent token ids (each key has its TTL) and idle rooms'
        # content (every write gives it the idle TTL again) itself.
        return 0

    async def has_room(self, room: str) -> bool:
        try:
            return bool(await self._redis.exists(self._k(room, "seq"), self._k(room, "log")))
        except _REDIS_ERRORS as error:
            raise BrokerUnavailable(str(error)) from None

    async def drop_room(self, room: str) -> None:
        try:
            await self._redis.delete(*(self._k(room, what) for what in _ROOM_KEYS))
        except _REDIS_ERRORS as error:
            raise BrokerUnavailable(str(error)) from None

    async def forget(self, account_id: str, devices: Sequence[str], rooms: Sequence[str]) -> None:
        if not devices:
            return
        erased: list[str] = [ERASED_SENDER]
        for device in devices:
            erased += [device, sender_member(account_id, device)]
        try:
            for room in dict.fromkeys(rooms):
                await self._forget_stream(room, erased)
                await self._forget_sent(room, devices)
                await self._redis.hdel(self._k(room, "online"), *devices)
                await self._redis.hdel(self._k(room, "admit"), account_id)
                await self._redis.hdel(self._k(room, "quota"), account_id, *devices)
        except _REDIS_ERRORS as error:
            raise BrokerUnavailable(str(error)) from None

    async def _names_erased(self, stream: str, erased: list[str]) -> bool:
        after = "0-0"
        while True:
            last, count, found = await self._forget_look(
                keys=[stream], args=[after, FORGET_BATCH, *erased]
            )
            if found:
                return True
            if int(count) < FORGET_BATCH:
                return False
            after = str(last)

    async def _forget_stream(self, room: str, erased: list[str]) -> None:
        stream = self._k(room, "log")
        for _ in range(3):
            if not await self._names_erased(stream, erased):
                return
            copy = self._k(room, f"log:forget:{uuid.uuid4().hex}")
            after, copied, changed = "0-0", False, False
            while True:
                last, count, any_changed = await self._forget_copy(
                    keys=[stream, copy], args=[after, FORGET_BATCH, FORGET_COPY_TTL_MS, *erased]
                )
                after = str(last)
                copied = copied or int(count) > 0
                changed = changed or bool(any_changed)
                if int(count) < FORGET_BATCH:
                    break
            swapped = await self._forget_swap(
                keys=[stream, copy],
                args=[after, int(copied), int(changed), self._idle_ms, *erased],
            )
            if int(swapped) >= 0:
                return
        raise BrokerUnavailable("erasure: the rewritten copy of a stream kept expiring")

    async def _forget_sent(self, room: str, devices: Sequence[str]) -> None:
        """Delete the resend records `<device>:<client id>` of `devices`."""
        sent = self._k(room, "sent")
        for device in devices:
            fields = [
                name
                async for name, _ in self._redis.hscan_iter(
                    sent, match=_glob_escape(device) + ":*", count=500
                )
            ]
            for start in range(0, len(fields), 500):
                await self._redis.hdel(sent, *fields[start : start + 500])


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
