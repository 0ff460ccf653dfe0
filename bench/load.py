"""The load generator: room sockets that send, receive and time messages.

It runs in its own process (`python -m bench.load`, started by `bench.run`),
never in the server's: the server's CPU time is then its own. It speaks JSON
lines: the run's configuration arrives on standard input, the generator
connects every socket and prints `{"event": "ready", ...}`, then it is told
the measurement window (`{"start_ns": ..., "end_ns": ...}`, CLOCK_MONOTONIC,
which every process on the machine shares), starts sending at once (what
comes before `start_ns` is warm-up), stops at `end_ns`, drains, closes and
prints `{"event": "result", ...}`. In `idle` mode it only connects, reports
ready, and closes when told `{"close": true}`.

Modes
- `closed`: every sender keeps `window` messages in flight; a message leaves
  the window when its `ack` and every recipient's `message` have arrived
  (so the server's queues stay bounded and no socket is closed for falling
  behind).
- `open`: `rate` messages per second in total, spread evenly over the
  senders, whatever the server does (a late sender catches up, it does not
  skip; `max_lag_ms` says how late the generator itself was).
- `idle`: sockets that only stay open.

A message refused with `error` `unavailable` ("send again", PROTOCOL.md) is
sent again with the same id after 50 ms, as a client would; its latency
still counts from the first attempt.

Latency: the sender writes `time.monotonic_ns()` into the first 8 bytes of the
ciphertext just before sending; a recipient subtracts it from its own clock
on arrival. Samples go into a log-scale histogram (1.1 % wide buckets), which
processes merge by adding counts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

SUBPROTOCOL = "confide.v1"
HIST_SCALE = 64  # buckets per doubling: each bucket is 2**(1/64) = 1.1 % wide
_MESSAGE = '{"type":"message"'
_ACK = '{"type":"ack"'
_ERROR = '{"type":"error"'
_CIPHERTEXT = '"ciphertext":"'
_ID = '"id":"'
RETRY_DELAY_S = 0.05  # before sending again a message refused as `unavailable`
STAMP_BYTES = 9  # 8-byte timestamp + 1 byte: a multiple of 3, so 12 base64 characters


def bucket(latency_ns: int) -> int:
    return int(math.log2(max(latency_ns, 1)) * HIST_SCALE)


def bucket_ns(index: int) -> float:
    return float(2 ** ((index + 0.5) / HIST_SCALE))


def merge(hists: list[dict[int, int]]) -> dict[int, int]:
    total: Counter[int] = Counter()
    for hist in hists:
        total.update(hist)
    return dict(total)


def percentile_ms(hist: dict[int, int], q: float) -> float | None:
    """The q-quantile (0 < q <= 1) of a histogram, in milliseconds."""
    count = sum(hist.values())
    if count == 0:
        return None
    rank = max(1, math.ceil(q * count))
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen >= rank:
            return bucket_ns(index) / 1e6
    return bucket_ns(max(hist)) / 1e6


def stamp(now_ns: int, tail: str) -> str:
    head = base64.urlsafe_b64encode(now_ns.to_bytes(8, "big") + b"\0").decode("ascii")
    return head + tail


def read_stamp(text: str, at: int) -> int:
    raw = base64.urlsafe_b64decode(text[at : at + 12])
    return int.from_bytes(raw[:8], "big")


@dataclass(eq=False)
class Sock:
    index: int
    room: int
    url: str
    token: str
    sender: bool
    ws: ClientConnection | None = None
    recipients: int = 0
    window: asyncio.Semaphore | None = None
    count: int = 0
    #: Message ids are `<tag><count>`; the tag is new in every run, because a
    #: device resending an id it used before is acked, not delivered again.
    tag: str = ""


@dataclass(eq=False)
class Pending:
    remaining: int
    sock: Sock
    frame: str


@dataclass
class State:
    mode: str
    start_ns: int = 0
    end_ns: int = 0
    stopping: bool = False
    sent: int = 0
    delivered: int = 0
    acked: int = 0
    max_lag_ns: int = 0
    retries: int = 0
    hist: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    unexpected_closes: Counter[str] = field(default_factory=Counter)
    pending: dict[str, Pending] = field(default_factory=dict)
    #: The worst latency (ns) in each 100 ms of the window: stalls show up here.
    worst: dict[int, int] = field(default_factory=dict)
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def complete(self, message_id: str) -> None:
        entry = self.pending.get(message_id)
        if entry is None:
            return
        entry.remaining -= 1
        if entry.remaining == 0:
            del self.pending[message_id]
            if entry.sock.window is not None:
                entry.sock.window.release()
            if self.stopping and not self.pending:
                self.drained.set()

    def refused(self, text: str) -> None:
        """An `error` frame: counted; `unavailable` means "send again", so the generator does."""
        error = json.loads(text)
        code = str(error.get("code"))
        self.errors[code] += 1
        entry = self.pending.get(str(error.get("id")))
        if code == "unavailable" and entry is not None and entry.sock.ws is not None:
            self.retries += 1
            ws, frame = entry.sock.ws, entry.frame
            asyncio.get_running_loop().call_later(
                RETRY_DELAY_S, lambda: self.tasks.add(asyncio.create_task(_resend(ws, frame)))
            )


async def _resend(ws: ClientConnection, frame: str) -> None:
    with contextlib.suppress(ConnectionClosed):
        await ws.send(frame)


def _frame_id(text: str, start: int) -> str:
    at = text.find(_ID, start) + len(_ID)
    return text[at : text.find('"', at)]


async def read(sock: Sock, state: State) -> None:
    assert sock.ws is not None
    track = state.mode == "closed"
    try:
        async for data in sock.ws:
            text = data if isinstance(data, str) else data.decode()
            if text.startswith(_MESSAGE):
                now = time.monotonic_ns()
                at = text.find(_CIPHERTEXT) + len(_CIPHERTEXT)
                if state.start_ns <= now < state.end_ns:
                    state.delivered += 1
                    latency = now - read_stamp(text, at)
                    state.hist[int(math.log2(max(latency, 1)) * HIST_SCALE)] += 1
                    slot = (now - state.start_ns) // 100_000_000
                    if latency > state.worst.get(slot, 0):
                        state.worst[slot] = latency
                if track:
                    state.complete(_frame_id(text, 17))
            elif text.startswith(_ACK):
                now = time.monotonic_ns()
                if state.start_ns <= now < state.end_ns:
                    state.acked += 1
                state.complete(_frame_id(text, 12))
            elif text.startswith(_ERROR):
                state.refused(text)
    except ConnectionClosed:
        pass
    if not state.stopping:
        code = sock.ws.close_code
        state.unexpected_closes[str(code)] += 1


async def closed_sender(sock: Sock, state: State, tail: str) -> None:
    assert sock.ws is not None
    assert sock.window is not None
    ws, window, prefix = sock.ws, sock.window, '{"type":"send","id":"' + sock.tag
    while not state.stopping:
        await window.acquire()
        sock.count += 1
        message_id = sock.tag + str(sock.count)
        now = time.monotonic_ns()
        if state.start_ns <= now < state.end_ns:
            state.sent += 1
        frame = prefix + str(sock.count) + '","ciphertext":"' + stamp(now, tail) + '"}'
        state.pending[message_id] = Pending(sock.recipients + 1, sock, frame)
        try:
            await ws.send(frame)
        except ConnectionClosed:
            return


async def open_sender(sock: Sock, state: State, tail: str, first_ns: int, interval_ns: int) -> None:
    assert sock.ws is not None
    ws, prefix = sock.ws, '{"type":"send","id":"' + sock.tag
    due = first_ns
    while not state.stopping:
        now = time.monotonic_ns()
        if due > now:
            await asyncio.sleep((due - now) / 1e9)
            now = time.monotonic_ns()
        state.max_lag_ns = max(state.max_lag_ns, now - due)
        sock.count += 1
        if state.start_ns <= now < state.end_ns:
            state.sent += 1
        frame = prefix + str(sock.count) + '","ciphertext":"' + stamp(now, tail) + '"}'
        # Kept until acked, to be sent again if refused as `unavailable`.
        state.pending[sock.tag + str(sock.count)] = Pending(1, sock, frame)
        try:
            await ws.send(frame)
        except ConnectionClosed:
            return
        due += interval_ns


async def open_socket(sock: Sock, limit: asyncio.Semaphore, failures: Counter[str]) -> None:
    async with limit:
        try:
            ws = await connect(
                sock.url,
                subprotocols=[Subprotocol(SUBPROTOCOL), Subprotocol("bearer." + sock.token)],
                compression=None,
                proxy=None,
                ping_interval=None,
                open_timeout=120,
                close_timeout=5,
                max_size=1 << 20,
                max_queue=256,
            )
        except Exception as error:
            failures[f"{type(error).__name__}: {error}"[:120]] += 1
            return
        try:
            welcome = await asyncio.wait_for(ws.recv(), 60)
        except (ConnectionClosed, TimeoutError) as error:
            failures[f"no welcome: {type(error).__name__}: {error}"[:120]] += 1
            await ws.close()
            return
        if not isinstance(welcome, str) or '"state":"admitted"' not in welcome:
            failures["welcome is not admitted"] += 1
            await ws.close()
            return
        sock.ws = ws


async def close_all(socks: list[Sock], concurrency: int = 256) -> None:
    limit = asyncio.Semaphore(concurrency)

    async def close(ws: ClientConnection) -> None:
        async with limit:
            with contextlib.suppress(Exception):
                await ws.close()

    await asyncio.gather(*(close(s.ws) for s in socks if s.ws is not None))


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def next_line() -> dict[str, Any]:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        raise SystemExit("standard input closed")
    data: dict[str, Any] = json.loads(line)
    return data


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main() -> None:
    config = await next_line()
    mode: str = config["mode"]
    senders_per_room: int = int(config.get("senders_per_room", 0)) or 1 << 30
    socks: list[Sock] = []
    run_tag = os.urandom(4).hex()
    for room_index, room in enumerate(config["rooms"]):
        for position, spec in enumerate(room):
            socks.append(
                Sock(
                    len(socks),
                    room_index,
                    spec["url"],
                    spec["token"],
                    sender=mode != "idle" and position < senders_per_room,
                    tag=f"{run_tag}.{len(socks)}.",
                )
            )
    failures: Counter[str] = Counter()
    limit = asyncio.Semaphore(int(config.get("connect_concurrency", 64)))
    began = time.monotonic()
    await asyncio.gather(*(open_socket(s, limit, failures) for s in socks))
    connect_s = time.monotonic() - began
    live = [s for s in socks if s.ws is not None]
    per_room = Counter(s.room for s in live)
    state = State(mode)
    window = int(config.get("window", 1))
    for sock in live:
        sock.recipients = per_room[sock.room] - 1
        if mode == "closed":
            sock.window = asyncio.Semaphore(window)
    readers = [asyncio.create_task(read(s, state)) for s in live]
    emit(
        {
            "event": "ready",
            "connected": len(live),
            "failed": sum(failures.values()),
            "failures": dict(failures.most_common(5)),
            "connect_s": connect_s,
        }
    )
    command = await next_line()
    if mode == "idle":
        state.stopping = True
        await close_all(live)
        await asyncio.gather(*readers, return_exceptions=True)
        emit({"event": "result", "unexpected_closes": dict(state.unexpected_closes)})
        return
    state.start_ns, state.end_ns = int(command["start_ns"]), int(command["end_ns"])
    payload = int(config.get("payload_bytes", 256))
    tail = base64.urlsafe_b64encode(os.urandom(max(1, payload - STAMP_BYTES))).decode()
    tail = tail.rstrip("=")
    senders = [s for s in live if s.sender and s.recipients > 0]
    tasks: list[asyncio.Task[None]] = []
    if mode == "closed":
        tasks = [asyncio.create_task(closed_sender(s, state, tail)) for s in senders]
    elif senders:
        rate = float(config["rate"])
        interval_ns = int(len(senders) * 1e9 / rate)
        now = time.monotonic_ns()
        tasks = [
            asyncio.create_task(
                open_sender(s, state, tail, now + i * interval_ns // len(senders), interval_ns)
            )
            for i, s in enumerate(senders)
        ]
    cpu_start = 0.0
    await asyncio.sleep(max(0.0, (state.start_ns - time.monotonic_ns()) / 1e9))
    cpu_start = own_cpu()
    await asyncio.sleep(max(0.0, (state.end_ns - time.monotonic_ns()) / 1e9))
    cpu_used = own_cpu() - cpu_start
    state.stopping = True
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if state.pending:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.drained.wait(), float(config.get("drain_s", 5.0)))
    await asyncio.sleep(0.2 if mode == "closed" else 0.5)
    lost = len(state.pending)
    await close_all(live)
    await asyncio.gather(*readers, return_exceptions=True)
    emit(
        {
            "event": "result",
            "sent": state.sent,
            "acked": state.acked,
            "delivered": state.delivered,
            "hist": {str(k): v for k, v in state.hist.items()},
            "errors": dict(state.errors),
            "unexpected_closes": dict(state.unexpected_closes),
            "lost": lost,
            "retries": state.retries,
            "max_lag_ms": state.max_lag_ns / 1e6,
            "worst_ms_per_100ms": [
                round(state.worst.get(i, 0) / 1e6, 2)
                for i in range((state.end_ns - state.start_ns) // 100_000_000)
            ],
            "senders": len(senders),
            "load_cpu_s": cpu_used,
        }
    )


def run() -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


if __name__ == "__main__":
    run()
