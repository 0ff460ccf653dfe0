"""Benchmarks of the room socket against the floor: `python -m bench.run`.

One command sets everything up and measures, on the same load:
- the relay (`confide serve`, PostgreSQL, in-process broker) and the baseline
  (`bench.baseline`, a bare websockets relay) in a closed loop (every socket
  sends, `--window` messages in flight each) and an open loop (`--rate`
  messages per second in total, one sender per room);
- memory per idle connection: server RSS before and after `--idle-sockets`
  idle authenticated sockets (and the same for the baseline);
- room tokens issued per second from one process (`--token-concurrency`
  concurrent `POST /v1/rooms/{id}/token`);
- the cost of Redis: the same loads with `CONFIDE_BROKER_URL=redis://` on
  one instance, and on two instances sharing Redis (in every room socket 0,
  the sender, on the first instance and the others on the second);
- room tokens per second from `confide serve --workers 2` (Redis broker),
  beside one process with the same broker, requests and concurrency;
- with `--profile`, py-spy profiles of token issuance, of the relay under the
  closed loop, and of the relay + Redis under the closed loop.

- a flood of correct log-ins at the production argon2 cost, and another
  endpoint's latency meanwhile (`bench.floods`).

`--only PARTS` measures some of these alone (tokens, idle, inprocess, redis,
workers, floods, profile).

See bench/README.md for the method and the results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from app.core.tokens import generate_signing_key_pem
from bench import load as loadgen
from bench import practice as pr
from bench.floods import TARGET_P99_RATIO as TARGET_FLOOD_P99_RATIO
from bench.floods import FloodResult, login_flood
from bench.floods import report_lines as flood_report_lines
from bench.procs import (
    Process,
    baseline_server,
    bench_env,
    confide_server,
    cpu_between,
    cpu_seconds,
    machine_cpu,
    named_cpu_seconds,
    own_cpu_seconds,
    raise_open_files,
    readable,
    rss_bytes,
    settle,
)
from bench.profile import as_markdown, summarize_file

# Targets: each a ratio (or a count) measured side by side in one run.
TARGET_REDIS_CPU_RATIO = 0.8  # relay + Redis deliveries per CPU-s / in-process
TARGET_REDIS_UNAVAILABLE = 0  # relay + Redis closed loop: sends refused `unavailable`
TARGET_TWO_RELAYS_CPU_RATIO = 0.7  # 2 relays + Redis (CPU summed) / in-process
TARGET_REDIS_P99_RATIO = 1.5  # relay + Redis p99 at --rate / in-process p99
TARGET_CPU_RATIO = 1.0  # in-process deliveries per CPU-s / baseline
TARGET_P99_RATIO = 1.5  # in-process p99 at --rate / baseline p99
TARGET_IDLE_KB = 25.0
TARGET_TOKENS_PER_S = 500.0
TARGET_WORKERS_TOKENS_RATIO = 1.7  # --workers 2 / one process
TOKEN_WORKERS = 2

#: What `--only` selects from; profile runs only when named (or with --profile).
PARTS = ("tokens", "idle", "inprocess", "redis", "workers", "floods", "profile")


@dataclass
class Options:
    rooms: int = 100
    participants: int = 4
    window: int = 2
    rate: float = 2000.0
    duration: float = 20.0
    warmup: float = 3.0
    idle_sockets: int = 5000
    idle_room_size: int = 2
    token_concurrency: int = 32
    flood_clients: int = 100
    #: floods: the server's CONFIDE_PASSWORD_CONCURRENCY (unset: its default, 2 x cores).
    password_concurrency: int | None = None
    procs: int = 1
    payload: int = 256
    redis: bool = True
    profile: bool = False
    reuse_servers: bool = False
    pg_dsn: str = "postgresql://postgres@127.0.0.1:5432"
    redis_url: str = "redis://127.0.0.1:6379/0"
    workdir: Path | None = None
    json_out: Path | None = None
    quiet: bool = False
    only: str = ",".join(p for p in PARTS if p != "profile")

    @property
    def parts(self) -> frozenset[str]:
        chosen = {part.strip() for part in self.only.split(",") if part.strip()}
        if self.profile:
            chosen.add("profile")
        if not self.redis:
            chosen -= {"redis", "workers"}
        return frozenset(chosen)


@dataclass
class LoadResult:
    name: str
    target: str
    mode: str
    broker: str
    instances: int
    sockets: int
    senders: int
    duration_s: float
    sent: int
    delivered: int
    deliveries_per_s: float
    server_cpu_s: float
    server_util: float
    deliveries_per_cpu_s: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    max_lag_ms: float
    load_util: float
    redis_cpu_s: float | None
    lost: int
    retries: int
    errors: dict[str, int]
    unexpected_closes: dict[str, int]
    #: The worst latency in each 100 ms of the window (ms), to tell stalls from queueing.
    worst_ms_per_100ms: list[float] = field(default_factory=list)


@dataclass
class IdleResult:
    target: str
    sockets: int
    rss_before_mb: float
    rss_after_mb: float
    kb_per_socket: float
    connect_s: float


@dataclass
class TokenResult:
    broker: str
    workers: int
    tokens: int
    concurrency: int
    seconds: float
    tokens_per_s: float
    server_util: float
    client_util: float
    #: PostgreSQL's backends, in cores (what the server's queries cost it); backends
    #: that exited during the measurement are not counted (a lower bound).
    postgres_util: float = 0.0
    #: The whole machine's busy share, of all its cores (1.0: every core busy).
    machine_busy: float = 0.0


@dataclass
class Results:
    date: str
    machine: str
    command: str
    options: dict[str, Any]
    loads: list[LoadResult] = field(default_factory=list)
    idle: list[IdleResult] = field(default_factory=list)
    tokens: TokenResult | None = None
    #: The same requests on one process, then on --workers 2, both with Redis.
    tokens_one: TokenResult | None = None
    tokens_workers: TokenResult | None = None
    profile_relay: str | None = None
    profile_redis: str | None = None
    profile_tokens: str | None = None
    floods: FloodResult | None = None
    targets: list[dict[str, Any]] = field(default_factory=list)


def log(options: Options, message: str) -> None:
    if not options.quiet:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as handle:
        memory = f"{int(handle.readline().split()[1]) / 1024 / 1024:.0f} GiB RAM"
    return f"{os.cpu_count()} cores, {model}, {memory}, Linux {os.uname().release}"


# -- the load ------------------------------------------------------------------------


Spec = list[list[dict[str, str]]]


def relay_spec(rooms: list[pr.Room], tokens: list[list[str]], bases: Sequence[str]) -> Spec:
    """Socket 0 of each room on bases[0], the others on bases[-1]."""
    return [
        [
            {"url": f"{bases[0] if k == 0 else bases[-1]}/v1/rooms/{room.id}/ws", "token": token}
            for k, token in enumerate(room_tokens)
        ]
        for room, room_tokens in zip(rooms, tokens, strict=True)
    ]


def baseline_spec(base: str, rooms: int, size: int, tag: str) -> Spec:
    return [
        [{"url": f"{base}/v1/rooms/{tag}{r}/ws", "token": f"{tag}{r}-{k}"} for k in range(size)]
        for r in range(rooms)
    ]


class LoadProcess:
    """One `python -m bench.load` child, spoken to in JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, config: dict[str, Any], log_path: Path) -> LoadProcess:
        with log_path.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.load",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=bench_env(),
                limit=1 << 24,
            )
        self = cls(proc)
        await self.send(config)
        return self

    async def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        await self.proc.stdin.drain()

    async def receive(self, wait_s: float = 600.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), wait_s)
        if not line:
            await self.proc.wait()
            raise RuntimeError(f"load generator exited with {self.proc.returncode}")
        data: dict[str, Any] = json.loads(line)
        return data

    async def finish(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


@contextlib.asynccontextmanager
async def generators(
    spec: Spec, config: dict[str, Any], procs: int, log_path: Path
) -> AsyncIterator[tuple[list[LoadProcess], list[dict[str, Any]]]]:
    """Start the generators (rooms dealt round-robin) and wait until all are connected."""
    parts = [spec[i::procs] for i in range(procs)]
    started = [
        await LoadProcess.start({**config, "rooms": part}, log_path) for part in parts if part
    ]
    try:
        ready = [await g.receive() for g in started]
        yield started, ready
    finally:
        for generator in started:
            await generator.finish()


async def redis_pid(url: str) -> int | None:
    client = aioredis.Redis.from_url(url)
    try:
        info = await client.info("server")
        pid = int(info["process_id"])
    except Exception:
        return None
    finally:
        await client.aclose()
    return pid if readable(pid) else None


async def run_load(
    options: Options,
    *,
    name: str,
    target: str,
    mode: str,
    broker: str,
    servers: list[Process],
    spec: Spec,
    workdir: Path,
    redis: int | None = None,
    profile_out: Path | None = None,
) -> LoadResult:
    pids = [s.pid for s in servers]
    await settle(pids)
    config: dict[str, Any] = {
        "mode": mode,
        "window": options.window,
        "rate": options.rate,
        "senders_per_room": 0 if mode == "closed" else 1,
        "payload_bytes": options.payload,
    }
    sockets = sum(len(room) for room in spec)
    log(options, f"{name}: connecting {sockets} sockets")
    async with generators(spec, config, options.procs, workdir / "load.log") as (gens, ready):
        connected = sum(r["connected"] for r in ready)
        if connected != sockets:
            failures: Counter[str] = Counter()
            for r in ready:
                failures.update(r["failures"])
            raise RuntimeError(f"{name}: {connected}/{sockets} sockets connected: {failures}")
        start_ns = time.monotonic_ns() + int(options.warmup * 1e9)
        end_ns = start_ns + int(options.duration * 1e9)
        for g in gens:
            await g.send({"start_ns": start_ns, "end_ns": end_ns})
        spy: asyncio.subprocess.Process | None = None
        await asyncio.sleep(max(0.0, (start_ns - time.monotonic_ns()) / 1e9))
        cpu0 = [cpu_seconds(pid) for pid in pids]
        redis0 = cpu_seconds(redis) if redis else 0.0
        if profile_out is not None:
            spy = await start_profiler(pids[0], options.duration, profile_out)
        await asyncio.sleep(max(0.0, (end_ns - time.monotonic_ns()) / 1e9))
        cpu = sum(cpu_seconds(pid) - before for pid, before in zip(pids, cpu0, strict=True))
        redis_cpu = cpu_seconds(redis) - redis0 if redis else None
        results = [await g.receive() for g in gens]
        if spy is not None:
            await asyncio.wait_for(spy.wait(), 60)
    hist = loadgen.merge([{int(k): v for k, v in r["hist"].items()} for r in results])
    delivered = sum(r["delivered"] for r in results)
    errors: Counter[str] = Counter()
    closes: Counter[str] = Counter()
    for r in results:
        errors.update(r["errors"])
        closes.update(r["unexpected_closes"])
    duration = options.duration
    result = LoadResult(
        name=name,
        target=target,
        mode=mode,
        broker=broker,
        instances=len(servers),
        sockets=sockets,
        senders=sum(r["senders"] for r in results),
        duration_s=duration,
        sent=sum(r["sent"] for r in results),
        delivered=delivered,
        deliveries_per_s=delivered / duration,
        server_cpu_s=cpu,
        server_util=cpu / duration,
        deliveries_per_cpu_s=delivered / cpu if cpu > 0 else math.inf,
        p50_ms=loadgen.percentile_ms(hist, 0.50),
        p99_ms=loadgen.percentile_ms(hist, 0.99),
        max_ms=loadgen.percentile_ms(hist, 1.0),
        max_lag_ms=max(r["max_lag_ms"] for r in results),
        load_util=sum(r["load_cpu_s"] for r in results) / duration,
        redis_cpu_s=redis_cpu,
        lost=sum(r["lost"] for r in results),
        retries=sum(r["retries"] for r in results),
        errors=dict(errors),
        unexpected_closes=dict(closes),
        worst_ms_per_100ms=[
            max(w) for w in zip(*(r["worst_ms_per_100ms"] for r in results), strict=False)
        ],
    )
    log(
        options,
        f"{name}: {result.deliveries_per_s:.0f} deliveries/s, "
        f"{result.deliveries_per_cpu_s:.0f}/CPU-s, p50 {result.p50_ms} ms, p99 {result.p99_ms} ms",
    )
    return result


async def start_profiler(pid: int, duration: float, out: Path) -> asyncio.subprocess.Process:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return await asyncio.create_subprocess_exec(
        spy,
        "record",
        "--pid",
        str(pid),
        "--rate",
        "200",
        # Only the thread holding the GIL: the event loop's Python work, not
        # idle worker threads (which py-spy may count as running).
        "--gil",
        "--duration",
        str(max(1, int(duration))),
        "--format",
        "raw",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def prime_epoch(practice: pr.Practice, room: pr.Room, server: Process) -> None:
    """Spend one token, so that Redis starts remembering spent ids.

    The Redis broker refuses tokens issued more than a second before the first
    spend under its key prefix (its "epoch": ids spent before it may have been
    forgotten). A new prefix starts with no epoch, so tokens issued before the
    first socket opened would be refused once (4001 token_spent).
    """
    tokens = await pr.issue_tokens(practice, [room])
    with contextlib.suppress(Exception):
        async with connect(
            f"{server.ws_base}/v1/rooms/{room.id}/ws",
            subprotocols=[Subprotocol("confide.v1"), Subprotocol("bearer." + tokens[0][0])],
            proxy=None,
        ) as ws:
            await ws.recv()


def profile_text(out: Path) -> str | None:
    if not out.exists():
        return None
    samples, by_self, by_total = summarize_file(out)
    return f"({out})\n\n" + as_markdown(samples, by_self, by_total)


# -- memory and tokens -----------------------------------------------------------------


async def idle_memory(
    options: Options, target: str, server: Process, spec: Spec, warm: Spec, workdir: Path
) -> IdleResult:
    config = {"mode": "idle", "connect_concurrency": 64}
    # Warm up first (code paths, pools, caches), so the "before" reading is a running server.
    async with generators(warm, config, 1, workdir / "load.log") as (gens, _):
        await gens[0].send({"close": True})
        await gens[0].receive()
    await settle([server.pid])
    before = rss_bytes(server.pid)
    sockets = sum(len(room) for room in spec)
    log(options, f"idle {target}: opening {sockets} sockets")
    async with generators(spec, config, 1, workdir / "load.log") as (gens, ready):
        connected = ready[0]["connected"]
        if connected != sockets:
            raise RuntimeError(f"idle {target}: {connected}/{sockets} connected: {ready[0]}")
        await settle([server.pid])
        await asyncio.sleep(1.0)
        after = rss_bytes(server.pid)
        await gens[0].send({"close": True})
        await gens[0].receive()
    result = IdleResult(
        target=target,
        sockets=connected,
        rss_before_mb=before / 2**20,
        rss_after_mb=after / 2**20,
        kb_per_socket=(after - before) / 1024 / connected,
        connect_s=float(ready[0]["connect_s"]),
    )
    log(options, f"idle {target}: {result.kb_per_socket:.1f} KB per socket")
    await settle([server.pid])
    return result


async def token_rate(
    options: Options,
    practice: pr.Practice,
    server: Process,
    rooms: list[pr.Room],
    *,
    broker: str = "memory",
    workers: int = 1,
) -> tuple[TokenResult, list[list[str]]]:
    """Room tokens for every member of `rooms`, `--token-concurrency` at a time.

    The server's CPU is that of the process and its workers, summed."""
    await pr.fresh(practice.http, [*practice.counselors, *practice.clients])
    await settle(server.pids())
    cpu0, own0, began = server.cpu(), own_cpu_seconds(), time.monotonic()
    pg0, (busy0, all0) = named_cpu_seconds("postgres"), machine_cpu()
    tokens = await pr.issue_tokens(practice, rooms, concurrency=options.token_concurrency)
    seconds = time.monotonic() - began
    pg1, (busy1, all1) = named_cpu_seconds("postgres"), machine_cpu()
    count = sum(len(t) for t in tokens)
    result = TokenResult(
        broker=broker,
        workers=workers,
        tokens=count,
        concurrency=options.token_concurrency,
        seconds=seconds,
        tokens_per_s=count / seconds,
        server_util=(server.cpu() - cpu0) / seconds,
        client_util=(own_cpu_seconds() - own0) / seconds,
        postgres_util=cpu_between(pg0, pg1) / seconds,
        machine_busy=(busy1 - busy0) / max(1e-9, all1 - all0),
    )
    log(options, f"tokens ({broker}, {workers} process(es)): {result.tokens_per_s:.0f}/s")
    return result, tokens


# -- the run ---------------------------------------------------------------------------


async def create_database(dsn: str) -> str:
    name = f"confide_bench_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(f"{dsn}/postgres", timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_database(dsn: str, name: str) -> None:
    conn = await asyncpg.connect(f"{dsn}/postgres", timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def delete_prefix(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(f"{prefix}:*", count=1000)]
        for at in range(0, len(keys), 1000):
            await client.delete(*keys[at : at + 1000])
    finally:
        await client.aclose()


def server_env(pg_dsn: str, workdir: Path, database: str, prefix: str) -> dict[str, str]:
    signing = workdir / "signing_key.pem"
    if not signing.exists():
        signing.write_bytes(generate_signing_key_pem())
        signing.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFIDE_")}
    url = pg_dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    env.update(
        {
            "CONFIDE_DATA_DIR": str(workdir / "data"),
            "CONFIDE_DATABASE_URL": f"{url}/{database}",
            "CONFIDE_MASTER_KEYS": "k1:" + secrets.token_urlsafe(32),
            "CONFIDE_INDEX_KEY": secrets.token_urlsafe(32),
            "CONFIDE_SIGNING_KEY_FILE": str(signing),
            # Tokens are issued a few seconds before their sockets open.
            "CONFIDE_ROOM_TOKEN_TTL": "900",
            # The closed loop sends as fast as the server acks: the limiter still
            # runs for every frame, it is just set where it never refuses.
            "CONFIDE_WS_RATE_PER_S": "10000",
            # Every socket comes from this machine's one address: the handshake
            # limit still runs for each, set where it never refuses.
            "CONFIDE_WS_HANDSHAKE_RATE_PER_S": "10000",
            "CONFIDE_WS_HANDSHAKE_BURST": "100000",
            "CONFIDE_BROKER_URL": "memory://",
            "CONFIDE_BROKER_PREFIX": prefix,
        }
    )
    return env


def start_run(options: Any, command: str, name: str) -> tuple[Path, dict[str, Any]]:
    """A run's work directory (`options.workdir`, or a new one) and what its results
    begin with: when, on what machine, by which command, with which options."""
    raise_open_files()
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix=f"confide-{name}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    header = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "command": command,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
    }
    return workdir, header


async def run(options: Options, command: str) -> Results:
    workdir, header = start_run(options, command, "bench")
    results = Results(**header)
    log(options, f"work directory {workdir}")
    database = await create_database(options.pg_dsn)
    prefix = f"confide-bench-{secrets.token_hex(6)}"
    env = server_env(options.pg_dsn, workdir, database, prefix)
    running: list[Process] = []

    async def start(process: Process) -> Process:
        running.append(process)
        await process.start()
        return process

    def stop(process: Process) -> None:
        process.stop()
        running.remove(process)

    parts = options.parts
    try:
        baseline = await start(baseline_server(workdir)) if parts & {"idle", "inprocess"} else None
        relay = await start(confide_server("relay-memory", env, workdir))
        async with httpx.AsyncClient(
            base_url=relay.http_base,
            timeout=60,
            limits=httpx.Limits(max_connections=max(64, options.token_concurrency)),
        ) as http:
            size = options.participants
            log(options, "setting up the practice")
            practice = await pr.create_practice(
                http,
                env,
                counselors=2,
                clients=max(size - 1, options.idle_room_size - 1, 4),
            )
            loaded = bool(parts & {"inprocess", "redis", "profile"})
            load_rooms = await pr.create_rooms(practice, options.rooms, size) if loaded else []
            idle_count = math.ceil(options.idle_sockets / options.idle_room_size)
            warm = min(50, max(2, options.idle_sockets // 10))
            warm_count = max(1, math.ceil(warm / options.idle_room_size))
            idle_rooms = (
                await pr.create_rooms(
                    practice, idle_count + warm_count, options.idle_room_size, offset=options.rooms
                )
                if parts & {"tokens", "idle", "workers", "profile"}
                else []
            )
            log(options, f"{len(load_rooms)} load rooms, {len(idle_rooms)} idle rooms")

            # Room tokens per second, then memory per idle socket.
            idle_tokens: list[list[str]] = []
            if "tokens" in parts:
                results.tokens, idle_tokens = await token_rate(options, practice, relay, idle_rooms)
            elif "idle" in parts:
                idle_tokens = await pr.issue_tokens(practice, idle_rooms)
            if "idle" in parts:
                assert baseline is not None
                spec = relay_spec(idle_rooms, idle_tokens, [relay.ws_base])
                results.idle.append(
                    await idle_memory(
                        options, "relay", relay, spec[warm_count:], spec[:warm_count], workdir
                    )
                )
                size_i = options.idle_room_size
                results.idle.append(
                    await idle_memory(
                        options,
                        "baseline",
                        baseline,
                        baseline_spec(baseline.ws_base, idle_count, size_i, "idle"),
                        baseline_spec(baseline.ws_base, warm_count, size_i, "warm"),
                        workdir,
                    )
                )
            if "profile" in parts:
                out = workdir / "profile-tokens.txt"
                log(options, "profiling room token issuance")
                profiled = idle_rooms[: max(1, 500 // options.idle_room_size)]
                spy = await start_profiler(relay.pid, 4, out)
                await pr.issue_tokens(practice, profiled, concurrency=options.token_concurrency)
                await asyncio.wait_for(spy.wait(), 60)
                results.profile_tokens = profile_text(out)
            kept: dict[tuple[str, int], list[Process]] = {}
            kept_baseline: list[Process] = []
            if options.reuse_servers:
                kept[("memory://", 1)] = [relay]
                if baseline is not None:
                    kept_baseline.append(baseline)
            else:
                stop(relay)
                if baseline is not None:
                    stop(baseline)

            if "workers" in parts:
                # The same requests, at the same concurrency, on one process and then
                # on --workers 2, both on Redis (what several processes need), each
                # a fresh server.
                redis_env = {**env, "CONFIDE_BROKER_URL": options.redis_url}
                for count in (1, TOKEN_WORKERS):
                    server = await start(
                        confide_server(f"tokens-{count}w", redis_env, workdir, workers=count)
                    )
                    http.base_url = httpx.URL(server.http_base)
                    try:
                        measured, _ = await token_rate(
                            options, practice, server, idle_rooms, broker="redis", workers=count
                        )
                    finally:
                        stop(server)
                    if count == 1:
                        results.tokens_one = measured
                    else:
                        results.tokens_workers = measured

            primed: set[str] = set()

            @contextlib.asynccontextmanager
            async def relays(broker_url: str, count: int) -> AsyncIterator[list[Process]]:
                """Fresh instances for each load: no history or memory from the last one
                (unless --reuse-servers, which keeps them while the broker stays the same)."""
                group = kept.pop((broker_url, count), None)
                if group is None:
                    # A kept smaller group of the same broker is reused and grown.
                    group = next((g for (u, _), g in kept.items() if u == broker_url), [])
                    for server in [s for g in kept.values() for s in g if s not in group]:
                        stop(server)
                    kept.clear()
                    broker_env = {**env, "CONFIDE_BROKER_URL": broker_url}
                    group = group + [
                        await start(confide_server(f"relay-{i}", broker_env, workdir))
                        for i in range(len(group), count)
                    ]
                http.base_url = httpx.URL(group[0].http_base)
                try:
                    if not broker_url.startswith("memory:") and broker_url not in primed:
                        await prime_epoch(practice, load_rooms[0], group[0])
                        primed.add(broker_url)
                    yield group
                finally:
                    if options.reuse_servers:
                        kept[(broker_url, count)] = group
                    else:
                        for server in group:
                            stop(server)

            async def relay_load(
                name: str, mode: str, broker_url: str, count: int, **kw: Any
            ) -> LoadResult:
                async with relays(broker_url, count) as servers:
                    tokens = await pr.issue_tokens(practice, load_rooms)
                    return await run_load(
                        options,
                        name=name,
                        target="relay",
                        mode=mode,
                        broker=broker_url.split(":", 1)[0],
                        servers=servers,
                        spec=relay_spec(load_rooms, tokens, [s.ws_base for s in servers]),
                        workdir=workdir,
                        **kw,
                    )

            async def baseline_load(name: str, mode: str) -> LoadResult:
                server = (
                    kept_baseline[0] if kept_baseline else await start(baseline_server(workdir))
                )
                try:
                    return await run_load(
                        options,
                        name=name,
                        target="baseline",
                        mode=mode,
                        broker="-",
                        servers=[server],
                        spec=baseline_spec(server.ws_base, options.rooms, size, mode),
                        workdir=workdir,
                    )
                finally:
                    if options.reuse_servers:
                        kept_baseline[:] = [server]
                    else:
                        stop(server)

            loads = results.loads
            memory = "memory://"
            if "inprocess" in parts:
                loads.append(await baseline_load("baseline, closed loop", "closed"))
                loads.append(await relay_load("relay, closed loop", "closed", memory, 1))
                loads.append(await baseline_load("baseline, open loop", "open"))
                loads.append(await relay_load("relay, open loop", "open", memory, 1))
            if "profile" in parts:
                out = workdir / "profile-relay.txt"
                log(options, "profiling the relay under the closed loop")
                await relay_load("profile", "closed", memory, 1, profile_out=out)
                results.profile_relay = profile_text(out)
            url = options.redis_url
            pid = await redis_pid(url) if options.redis else None
            if "redis" in parts:
                loads.append(
                    await relay_load("relay + Redis, closed loop", "closed", url, 1, redis=pid)
                )
                loads.append(
                    await relay_load("relay + Redis, open loop", "open", url, 1, redis=pid)
                )
                loads.append(
                    await relay_load("2 relays + Redis, closed loop", "closed", url, 2, redis=pid)
                )
                loads.append(
                    await relay_load("2 relays + Redis, open loop", "open", url, 2, redis=pid)
                )
            if "profile" in parts and options.redis:
                out = workdir / "profile-redis.txt"
                log(options, "profiling the relay + Redis under the closed loop")
                await relay_load("profile, Redis", "closed", url, 1, profile_out=out, redis=pid)
                results.profile_redis = profile_text(out)
            if "floods" in parts:
                log(options, f"log-in flood: {options.flood_clients} clients")
                flood_env = dict(env)
                if options.password_concurrency is not None:
                    concurrency = str(options.password_concurrency)
                    flood_env["CONFIDE_PASSWORD_CONCURRENCY"] = concurrency
                server = await start(confide_server("floods", flood_env, workdir))
                try:
                    results.floods = await login_flood(
                        server, flooders=options.flood_clients, duration=options.duration
                    )
                finally:
                    stop(server)
    finally:
        for process in list(running):
            process.stop()
        with contextlib.suppress(Exception):
            await delete_prefix(options.redis_url, prefix)
        with contextlib.suppress(Exception):
            await drop_database(options.pg_dsn, database)
    results.targets = targets(results)
    if options.json_out is not None:
        options.json_out.write_text(json.dumps(asdict(results), indent=2) + "\n")
    return results


# -- the report ------------------------------------------------------------------------


def _find(results: Results, name: str) -> LoadResult | None:
    return next((r for r in results.loads if r.name == name), None)


def _target(name: str, value: str, met: bool) -> dict[str, Any]:
    return {"target": name, "value": value, "met": met}


def _cpu_ratio(name: str, a: LoadResult | None, b: LoadResult | None, least: float) -> list[Any]:
    """a's deliveries per server CPU-s over b's, at least `least`."""
    if a is None or b is None:
        return []
    ratio = a.deliveries_per_cpu_s / b.deliveries_per_cpu_s
    value = f"{ratio:.2f} x ({a.deliveries_per_cpu_s:,.0f} / {b.deliveries_per_cpu_s:,.0f})"
    return [_target(f"{name} >= {least} x", value, ratio >= least)]


def _p99_ratio(name: str, a: LoadResult | None, b: LoadResult | None, most: float) -> list[Any]:
    """a's p99 over b's, at most `most`."""
    if a is None or b is None or not a.p99_ms or not b.p99_ms:
        return []
    ratio = a.p99_ms / b.p99_ms
    value = f"{ratio:.2f} x ({a.p99_ms:.2f} / {b.p99_ms:.2f} ms)"
    return [_target(f"{name} <= {most} x", value, ratio <= most)]


def targets(results: Results) -> list[dict[str, Any]]:
    """The targets whose figures this run measured, each a ratio (or a count) of this run."""
    rate = f"{float(results.options['rate']):,.0f} msg/s"
    relay_c, base_c = _find(results, "relay, closed loop"), _find(results, "baseline, closed loop")
    relay_o, base_o = _find(results, "relay, open loop"), _find(results, "baseline, open loop")
    redis_c, redis_o = (
        _find(results, "relay + Redis, closed loop"),
        _find(results, "relay + Redis, open loop"),
    )
    two_c = _find(results, "2 relays + Redis, closed loop")
    out: list[dict[str, Any]] = []
    out += _cpu_ratio(
        "relay + Redis, deliveries per server CPU-s / in-process relay's",
        redis_c,
        relay_c,
        TARGET_REDIS_CPU_RATIO,
    )
    if redis_c is not None:
        refused = redis_c.errors.get("unavailable", 0)
        out.append(
            _target(
                f"relay + Redis, closed loop, sends refused `unavailable` = "
                f"{TARGET_REDIS_UNAVAILABLE}",
                str(refused),
                refused <= TARGET_REDIS_UNAVAILABLE,
            )
        )
    out += _cpu_ratio(
        "2 relays + Redis, deliveries per server CPU-s (both summed) / in-process relay's",
        two_c,
        relay_c,
        TARGET_TWO_RELAYS_CPU_RATIO,
    )
    out += _p99_ratio(
        f"relay + Redis, p99 at {rate} / in-process relay's",
        redis_o,
        relay_o,
        TARGET_REDIS_P99_RATIO,
    )
    out += _cpu_ratio(
        "in-process relay, deliveries per server CPU-s / baseline's",
        relay_c,
        base_c,
        TARGET_CPU_RATIO,
    )
    out += _p99_ratio(
        f"in-process relay, p99 at {rate} / baseline's", relay_o, base_o, TARGET_P99_RATIO
    )
    idle = next((i for i in results.idle if i.target == "relay"), None)
    if idle:
        out.append(
            _target(
                f"memory per idle authenticated socket <= {TARGET_IDLE_KB:.0f} KB",
                f"{idle.kb_per_socket:.1f} KB at {idle.sockets} sockets",
                idle.kb_per_socket <= TARGET_IDLE_KB,
            )
        )
    if results.tokens:
        concurrency = results.tokens.concurrency
        out.append(
            _target(
                f"room tokens/s, one process, {concurrency} concurrent >= "
                f"{TARGET_TOKENS_PER_S:.0f}/s",
                f"{results.tokens.tokens_per_s:.0f}/s",
                results.tokens.tokens_per_s >= TARGET_TOKENS_PER_S,
            )
        )
    one, several = results.tokens_one, results.tokens_workers
    if one and several:
        ratio = several.tokens_per_s / one.tokens_per_s
        out.append(
            _target(
                f"room tokens/s with --workers {several.workers} / one process >= "
                f"{TARGET_WORKERS_TOKENS_RATIO} x",
                f"{ratio:.2f} x ({several.tokens_per_s:.0f} / {one.tokens_per_s:.0f}/s)",
                ratio >= TARGET_WORKERS_TOKENS_RATIO,
            )
        )
    flood = results.floods
    if flood is not None:
        ratio = flood.flood_p99_ms / flood.idle_p99_ms
        out.append(
            _target(
                f"GET /v1/me p99 during a log-in flood / alone <= {TARGET_FLOOD_P99_RATIO} x",
                f"{ratio:.2f} x ({flood.flood_p99_ms:.1f} / {flood.idle_p99_ms:.1f} ms)",
                ratio <= TARGET_FLOOD_P99_RATIO,
            )
        )
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(results: Results) -> str:
    lines = [
        f"Date: {results.date}  ",
        f"Machine: {results.machine}  ",
        f"Command: `{results.command}`",
        "",
        "| scenario | sockets (senders) | deliveries/s | server CPU | deliveries / server CPU-s "
        "| p50 ms | p99 ms | max ms | load CPU | Redis CPU | refused, resent / lost |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results.loads:
        problems = ", ".join(
            [f"{v} {k}" for k, v in r.errors.items()]
            + [f"{v} closed {k}" for k, v in r.unexpected_closes.items()]
        )
        refused = f"{problems}, {r.retries} resent" if problems else "0"
        redis = "-" if r.redis_cpu_s is None else f"{r.redis_cpu_s / r.duration_s:.0%}"
        lines.append(
            f"| {r.name} | {r.sockets} ({r.senders}) | {r.deliveries_per_s:,.0f} "
            f"| {r.server_util:.0%} | {r.deliveries_per_cpu_s:,.0f} | {_ms(r.p50_ms)} "
            f"| {_ms(r.p99_ms)} | {_ms(r.max_ms)} | {r.load_util:.0%} | {redis} "
            f"| {refused} / {r.lost} |"
        )
    lines += ["", "| idle sockets | RSS before MB | RSS after MB | KB per socket | connect s |"]
    lines += ["|---|---:|---:|---:|---:|"]
    for i in results.idle:
        lines.append(
            f"| {i.target}: {i.sockets} | {i.rss_before_mb:.1f} | {i.rss_after_mb:.1f} "
            f"| {i.kb_per_socket:.1f} | {i.connect_s:.1f} |"
        )
    for label, t in (
        ("Room tokens", results.tokens),
        ("Room tokens, Redis broker, one process", results.tokens_one),
        (f"Room tokens, Redis broker, --workers {TOKEN_WORKERS}", results.tokens_workers),
    ):
        if t is None:
            continue
        processes = "one process" if t.workers == 1 else f"{t.workers} worker processes"
        lines += [
            "",
            f"{label}: {t.tokens} in {t.seconds:.1f} s = **{t.tokens_per_s:.0f}/s** "
            f"({t.concurrency} concurrent requests, {processes}, {t.broker} broker; server "
            f"CPU {t.server_util:.0%}, client CPU {t.client_util:.0%}, PostgreSQL CPU "
            f"{t.postgres_util:.0%}; the machine's {os.cpu_count()} cores "
            f"{t.machine_busy:.0%} busy).",
        ]
    if results.floods is not None:
        lines += flood_report_lines(results.floods)
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for target in results.targets:
        met = "yes" if target["met"] else "NO"
        lines.append(f"| {target['target']} | {target['value']} | {met} |")
    if results.profile_relay:
        lines += ["", "Profile of the relay, closed loop:", "", results.profile_relay]
    if results.profile_redis:
        lines += ["", "Profile of the relay + Redis, closed loop:", "", results.profile_redis]
    if results.profile_tokens:
        lines += ["", "Profile of room token issuance:", "", results.profile_tokens]
    return "\n".join(lines)


def parse(argv: Sequence[str] | None) -> Options:
    defaults = Options()
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add = parser.add_argument
    add("--rooms", type=int, default=defaults.rooms, help="rooms under load")
    add("--participants", type=int, default=defaults.participants, help="sockets per room")
    add("--window", type=int, default=defaults.window, help="closed loop: sends in flight")
    add("--rate", type=float, default=defaults.rate, help="open loop: messages/s in total")
    add("--duration", type=float, default=defaults.duration, help="measured seconds per load")
    add("--warmup", type=float, default=defaults.warmup, help="unmeasured seconds first")
    add("--idle-sockets", type=int, default=defaults.idle_sockets)
    add("--idle-room-size", type=int, default=defaults.idle_room_size)
    add("--token-concurrency", type=int, default=defaults.token_concurrency)
    add("--flood-clients", type=int, default=defaults.flood_clients, help="floods: log-in clients")
    add(
        "--password-concurrency",
        type=int,
        default=None,
        help="floods: the server's CONFIDE_PASSWORD_CONCURRENCY (default: its own, 2 x cores)",
    )
    add("--procs", type=int, default=defaults.procs, help="load generator processes")
    add("--payload", type=int, default=defaults.payload, help="ciphertext bytes")
    add(
        "--only",
        default=defaults.only,
        metavar="PARTS",
        help=f"measure only these parts, a comma list of {', '.join(PARTS)} "
        "(default: all but profile)",
    )
    add(
        "--no-redis",
        dest="redis",
        action="store_false",
        help="skip whatever needs Redis (the redis and workers parts)",
    )
    add(
        "--profile",
        action="store_true",
        help="also the profile part: py-spy profiles of tokens, the relay and the relay + Redis",
    )
    add(
        "--reuse-servers",
        action="store_true",
        help="quick runs: one server per broker setting, not a fresh one per load",
    )
    add("--pg-dsn", default=defaults.pg_dsn, help="PostgreSQL server (a database is created)")
    add("--redis-url", default=defaults.redis_url)
    add("--workdir", type=Path, help="keys, logs and the profile (default: a temp dir)")
    add("--json", dest="json_out", type=Path, help="write the results as JSON here")
    add("--quiet", action="store_true")
    args = parser.parse_args(argv)
    unknown = sorted({p.strip() for p in args.only.split(",")} - set(PARTS) - {""})
    if unknown or not args.only.strip(" ,"):
        parser.error(f"--only: {', '.join(unknown) or 'nothing'} is not one of {', '.join(PARTS)}")
    return Options(**vars(args))


def main(argv: Sequence[str] | None = None) -> Results:
    options = parse(argv)
    command = "python -m bench.run " + " ".join(sys.argv[1:] if argv is None else argv)
    results = asyncio.run(run(options, command.strip()))
    print(report(results))
    return results


if __name__ == "__main__":
    main()
