"""Churn: rooms whose participants join and leave for an hour, and what the server keeps.

    python -m bench.churn --minutes 60 --json /tmp/churn.json

`--rooms` rooms (200) of two participants, a counselor and a client, run on
`confide serve` as deployed (PostgreSQL, Redis as the broker). Every
participant, on its own phase, joins its room every `--period` seconds (30):
a room token (`POST /v1/rooms/{id}/token`), the socket, one message sent and
acknowledged, then it stays for half the period and leaves (close 1000). So
about half the sockets are open at any moment, and every one of them is new
each period.

Every `--sample` seconds (10) it reads what a leak would grow: the server's
RSS and open file descriptors (/proc), its asyncio tasks, database pool
connections, live hub rooms and open sockets (/metrics),
the server's connections to Redis and to PostgreSQL (its sockets in
/proc/net/tcp), the channels subscribed under the run's prefix, Redis's
memory, and PostgreSQL's backends on the run's database. Before the churn (everyone
set up, nobody in a room) and after it (everyone left, `--settle` seconds
later) it reads the same: the counts must come back to where they were.

The result: the RSS slope after `--warmup` minutes (a least-squares line
through the samples, KB per minute; about zero when nothing leaks), each
count's baseline, peak and end, the joins made, how long a join took
(token and handshake, p50/p95/max), and any failure by kind. See
bench/README.md for the recorded runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import secrets
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from bench import practice as pr
from bench.procs import (
    Process,
    confide_server,
    connections_by_remote_port,
    rss_bytes,
    settle,
)
from bench.run import create_database, delete_prefix, drop_database, server_env, start_run

METRICS_TOKEN = "churn-metrics-" + secrets.token_urlsafe(12)
#: What a leak would grow, and must come back to its baseline once everyone has left.
COUNTS = (
    "fds",
    "tasks",
    "pool_in_use",
    "pool_idle",
    "rooms_live",
    "sockets_open",
    "redis_connections",
    "redis_channels",
    "pg_connections",
    "pg_backends",
)


@dataclass
class Options:
    rooms: int = 200
    period: float = 30.0
    minutes: float = 30.0
    warmup: float = 5.0  # minutes before the RSS slope is measured
    sample: float = 10.0
    settle: float = 10.0
    counselors: int = 20
    clients: int = 100
    pg_dsn: str = "postgresql://postgres@127.0.0.1:5432"
    redis_url: str = "redis://127.0.0.1:6379/0"
    workdir: Path | None = None
    json_out: Path | None = None
    quiet: bool = False


@dataclass
class Sample:
    at_s: float
    rss_kb: float
    fds: int
    tasks: int
    pool_in_use: int
    pool_idle: int
    rooms_live: int
    sockets_open: int
    redis_connections: int
    redis_channels: int
    redis_used_kb: float
    pg_connections: int
    pg_backends: int
    joins: int


@dataclass
class Results:
    date: str
    machine: str
    command: str
    options: dict[str, Any]
    before: Sample | None = None
    after: Sample | None = None
    samples: list[Sample] = field(default_factory=list)
    joins: int = 0
    messages_acked: int = 0
    join_ms: dict[str, float] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    rss_slope_kb_per_min: float | None = None
    rss_after_warmup_kb: float | None = None
    rss_end_kb: float | None = None

    def returned(self) -> dict[str, tuple[int, int, int]]:
        """Each count: (before, peak during the churn, after everyone left)."""
        if self.before is None or self.after is None:
            return {}
        return {
            name: (
                getattr(self.before, name),
                max((getattr(s, name) for s in self.samples), default=0),
                getattr(self.after, name),
            )
            for name in COUNTS
        }


def log(options: Options, message: str) -> None:
    if not options.quiet:
        print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float | None:
    """The least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return None
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Churn:
    """The participants' shared state: counts, join times, and when to stop."""

    options: Options
    server: Process
    http: httpx.AsyncClient
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    joins: int = 0
    acked: int = 0
    join_s: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    async def participant(self, room: pr.Room, user: pr.User, phase: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), phase)
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                await self.join_once(room, user, started)
            except Exception as error:
                self.failures[f"{type(error).__name__}: {error}"[:100]] += 1
            left = started + self.options.period - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), max(0.0, left))

    async def join_once(self, room: pr.Room, user: pr.User, started: float) -> None:
        response = await self.http.post(
            f"/v1/rooms/{room.id}/token", json={"device_id": user.device}, headers=user.auth
        )
        if response.status_code != 200:
            self.failures[f"token {response.status_code} {response.text[:60]}"] += 1
            return
        token = response.json()["token"]
        async with connect(
            f"{self.server.ws_base}/v1/rooms/{room.id}/ws",
            subprotocols=[Subprotocol("confide.v1"), Subprotocol("bearer." + token)],
            proxy=None,
            compression=None,
            open_timeout=30,
            close_timeout=5,
        ) as ws:
            welcome = await asyncio.wait_for(ws.recv(), 30)
            if not isinstance(welcome, str) or '"state":"admitted"' not in welcome:
                self.failures["welcome is not admitted"] += 1
                return
            self.join_s.append(time.monotonic() - started)
            self.joins += 1
            message_id = secrets.token_hex(8)
            await ws.send(json.dumps({"type": "send", "id": message_id, "ciphertext": "AAAA" * 16}))
            acked = asyncio.get_running_loop().create_future()

            async def read() -> None:
                with contextlib.suppress(ConnectionClosed):
                    async for frame in ws:
                        if (
                            isinstance(frame, str)
                            and frame.startswith('{"type":"ack"')
                            and message_id in frame
                            and not acked.done()
                        ):
                            acked.set_result(None)

            reader = asyncio.create_task(read())
            try:
                await asyncio.wait_for(acked, 30)
                self.acked += 1
                stay = started + self.options.period / 2 - time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), max(0.0, stay))
            finally:
                await ws.close()
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            if ws.close_code not in (1000, None):
                self.failures[f"closed {ws.close_code}"] += 1

    async def relogin(self, users: list[pr.User]) -> None:
        """Access tokens live 15 minutes: log in again whoever's is getting old."""
        while not self.stop.is_set():
            await pr.fresh(self.http, users)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 30)


async def read_sample(
    server: Process,
    http: httpx.AsyncClient,
    redis: aioredis.Redis,
    pg: asyncpg.Connection,
    prefix: str,
    database: str,
    started: float,
    joins: int,
    redis_port: int,
    pg_port: int,
) -> Sample:
    scraped = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    scraped.raise_for_status()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(scraped.text):
        for sample in family.samples:
            state = sample.labels.get("state")
            values[sample.name + (f":{state}" if state else "")] = sample.value
    connections = connections_by_remote_port(server.pid)
    channels = await redis.pubsub_channels(f"{prefix}*")
    memory = await redis.info("memory")
    backends = await pg.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database
    )
    return Sample(
        at_s=round(time.monotonic() - started, 1),
        rss_kb=rss_bytes(server.pid) / 1024,
        fds=len(os.listdir(f"/proc/{server.pid}/fd")),
        tasks=int(values.get("confide_asyncio_tasks", -1)),
        pool_in_use=int(values.get("confide_db_pool_connections:in_use", -1)),
        pool_idle=int(values.get("confide_db_pool_connections:idle", -1)),
        rooms_live=int(values.get("confide_relay_rooms_live", -1)),
        sockets_open=int(values.get("confide_relay_sockets_open", -1)),
        redis_connections=connections.get(redis_port, 0),
        redis_channels=len(channels),
        redis_used_kb=float(memory["used_memory"]) / 1024,
        pg_connections=connections.get(pg_port, 0),
        pg_backends=int(backends),
        joins=joins,
    )


async def run(options: Options, command: str) -> Results:
    workdir, header = start_run(options, command, "churn")
    results = Results(**header)
    log(options, f"work directory {workdir}")
    database = await create_database(options.pg_dsn)
    prefix = f"confide-churn-{secrets.token_hex(6)}"
    env = server_env(options.pg_dsn, workdir, database, prefix)
    env.update({"CONFIDE_BROKER_URL": options.redis_url, "CONFIDE_METRICS_TOKEN": METRICS_TOKEN})
    server = confide_server("churn", env, workdir)
    redis = aioredis.Redis.from_url(options.redis_url, decode_responses=True)
    pg = await asyncpg.connect(f"{options.pg_dsn}/postgres", timeout=10)
    try:
        await server.start()
        async with httpx.AsyncClient(
            base_url=server.http_base, timeout=60, limits=httpx.Limits(max_connections=128)
        ) as http:
            log(options, "setting up the practice")
            practice = await pr.create_practice(
                http, env, counselors=options.counselors, clients=options.clients
            )
            rooms = await pr.create_rooms(practice, options.rooms, 2)
            churn = Churn(options, server, http)
            users = [*practice.counselors, *practice.clients]
            # One join each first (the Redis epoch, every room's first state), then the baseline.
            await pr.bounded(
                16, [functools.partial(churn.join_once, r, r.members[0], 0.0) for r in rooms]
            )
            await settle([server.pid])
            # Idle keep-alive connections of the set-up are closed by now (uvicorn's 5 s).
            await asyncio.sleep(options.settle)
            started = time.monotonic()

            async def sample() -> Sample:
                return await read_sample(
                    server,
                    http,
                    redis,
                    pg,
                    prefix,
                    database,
                    started,
                    churn.joins,
                    redis_port=urlsplit(options.redis_url).port or 6379,
                    pg_port=urlsplit(options.pg_dsn).port or 5432,
                )

            results.before = await sample()
            log(options, f"baseline {results.before}")
            churn.joins, churn.join_s, churn.acked = 0, [], 0
            churn.failures.clear()
            tasks = [
                asyncio.create_task(
                    churn.participant(room, user, random.uniform(0, options.period))
                )
                for room in rooms
                for user in room.members
            ]
            tasks.append(asyncio.create_task(churn.relogin(users)))
            deadline = started + options.minutes * 60
            while time.monotonic() < deadline:
                await asyncio.sleep(min(options.sample, max(0.0, deadline - time.monotonic())))
                results.samples.append(await sample())
                last = results.samples[-1]
                log(
                    options,
                    f"{last.at_s:7.0f} s  rss {last.rss_kb / 1024:7.1f} MB  fds {last.fds}"
                    f"  tasks {last.tasks}  sockets {last.sockets_open}  joins {last.joins}"
                    f"  failures {sum(churn.failures.values())}",
                )
            churn.stop.set()
            await asyncio.gather(*tasks)
            await asyncio.sleep(options.settle)
            results.after = await sample()
            log(options, f"after {results.after}")
            results.joins, results.messages_acked = churn.joins, churn.acked
            results.failures = dict(churn.failures)
            if churn.join_s:
                results.join_ms = {
                    "p50": round(percentile(churn.join_s, 0.5) * 1000, 1),
                    "p95": round(percentile(churn.join_s, 0.95) * 1000, 1),
                    "max": round(max(churn.join_s) * 1000, 1),
                }
            measured = [
                (s.at_s, s.rss_kb) for s in results.samples if s.at_s >= options.warmup * 60
            ]
            results.rss_slope_kb_per_min = slope_per_minute(measured)
            if measured:
                results.rss_after_warmup_kb = measured[0][1]
                results.rss_end_kb = measured[-1][1]
    finally:
        server.stop()
        await redis.aclose()
        with contextlib.suppress(Exception):
            await delete_prefix(options.redis_url, prefix)
        await pg.close()
        await drop_database(options.pg_dsn, database)
    return results


def report(results: Results) -> str:
    lines = [
        f"Churn run of {results.date} on {results.machine}",
        f"`{results.command}`",
        "",
        f"- joins: {results.joins}, messages acknowledged: {results.messages_acked},"
        f" join (token + handshake) ms: {results.join_ms}",
        f"- failures: {results.failures or 'none'}",
    ]
    if results.rss_slope_kb_per_min is not None:
        lines.append(
            f"- RSS after warm-up {results.rss_after_warmup_kb or 0:.0f} KB, at the end"
            f" {results.rss_end_kb or 0:.0f} KB; slope {results.rss_slope_kb_per_min:+.1f} KB/min"
        )
    lines += ["", "| count | before | peak during | after everyone left |", "|---|---|---|---|"]
    for name, (before, peak, after) in results.returned().items():
        lines.append(f"| {name} | {before} | {peak} | {after} |")
    return "\n".join(lines)


def parse(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.churn", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    defaults = Options()
    parser.add_argument("--rooms", type=int, default=defaults.rooms)
    parser.add_argument("--period", type=float, default=defaults.period, help="seconds")
    parser.add_argument("--minutes", type=float, default=defaults.minutes)
    parser.add_argument("--warmup", type=float, default=defaults.warmup, help="minutes")
    parser.add_argument("--sample", type=float, default=defaults.sample, help="seconds")
    parser.add_argument("--settle", type=float, default=defaults.settle, help="seconds")
    parser.add_argument("--counselors", type=int, default=defaults.counselors)
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--pg-dsn", default=defaults.pg_dsn)
    parser.add_argument("--redis-url", default=defaults.redis_url)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", dest="json_out", type=Path)
    parser.add_argument("--quiet", action="store_true")
    return Options(**vars(parser.parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> Results:
    options = parse(argv)
    command = "python -m bench.churn " + " ".join(argv if argv is not None else sys.argv[1:])
    results = asyncio.run(run(options, command.strip()))
    if options.json_out is not None:
        options.json_out.write_text(json.dumps(asdict(results), indent=2))
    if not options.quiet:
        print(report(results))
    return results


if __name__ == "__main__":
    main()
