"""A flood of correct log-ins, and what it does to another endpoint (`--only floods`).

One `confide serve` at the production argon2 cost. First `GET /v1/me` (a
bearer token checked, one account read) is timed alone for `duration`
seconds, at one request every `PROBE_INTERVAL_S`; then the same while
`flooders` clients post correct log-ins back to back. The log-ins beyond
`CONFIDE_PASSWORD_CONCURRENCY` + `CONFIDE_PASSWORD_QUEUE` are answered 503
`busy`; the target is that the other endpoint's p99 stays within 2 x its idle
p99. RSS: after start, its peak (VmHWM) and after the flood.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from bench.procs import Process, bench_env, machine_cpu, rss_bytes

PROBE_INTERVAL_S = 0.02
#: The target: the other endpoint's p99 during the flood / its p99 alone.
TARGET_P99_RATIO = 2.0


@dataclass
class FloodResult:
    flooders: int
    seconds: float
    logins: dict[str, int]
    busy_p99_ms: float | None
    ok_p99_ms: float | None
    idle_p50_ms: float
    idle_p99_ms: float
    flood_p50_ms: float
    flood_p99_ms: float
    probes_idle: int
    probes_flood: int
    rss_start_mb: float
    rss_peak_mb: float
    rss_after_mb: float
    #: CPU of the server's event loop (its main thread) and of its other threads
    #: (hashing), in cores, during the flood; and the whole machine's busy share.
    loop_cpu: float = 0.0
    threads_cpu: float = 0.0
    machine_busy: float = 0.0
    probe_errors: dict[str, int] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def thread_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of the process's main thread, and of all its other threads."""
    tick = os.sysconf("SC_CLK_TCK")
    main = others = 0.0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a thread that ended
        seconds = (int(fields[11]) + int(fields[12])) / tick
        if int(task) == pid:
            main += seconds
        else:
            others += seconds
    return main, others


def peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


async def probe(
    http: httpx.AsyncClient, token: str, until: float, errors: Counter[str]
) -> list[float]:
    """GET /v1/me every PROBE_INTERVAL_S until `until`: each answer's seconds."""
    timings: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            response = await http.get("/v1/me", headers=headers)
        except httpx.TransportError as error:
            errors[type(error).__name__] += 1
            continue
        elapsed = time.perf_counter() - started
        if response.status_code == 200:
            timings.append(elapsed)
        else:
            errors[str(response.status_code)] += 1
        await asyncio.sleep(max(0.0, PROBE_INTERVAL_S - elapsed))
    return timings


async def login_flood(server: Process, *, flooders: int, duration: float) -> FloodResult:
    email = f"flood-{secrets.token_hex(6)}@example.org"
    password = f"correct horse battery staple {secrets.token_hex(4)}"
    limits = httpx.Limits(max_connections=flooders + 8, max_keepalive_connections=flooders + 8)
    async with httpx.AsyncClient(base_url=server.http_base, timeout=60, limits=limits) as http:
        body = {"email": email, "password": password, "display_name": "Flood"}
        response = await http.post("/v1/accounts", json=body)
        response.raise_for_status()
        form = {"username": email, "password": password}
        response = await http.post("/v1/auth/token", data=form)
        response.raise_for_status()
        token = response.json()["access_token"]
        rss_start = rss_bytes(server.pid)
        errors: Counter[str] = Counter()
        idle = await probe(http, token, time.monotonic() + duration, errors)

        # The flooders run in a process of their own: in this one, their
        # requests would delay the probe's on the client side, not the server.
        began = time.monotonic()
        (main0, others0), (busy0, all0) = thread_cpu(server.pid), machine_cpu()
        flood = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.floods",
            server.http_base,
            email,
            password,
            str(flooders),
            str(duration),
            stdout=asyncio.subprocess.PIPE,
            env=bench_env(),
            preexec_fn=lambda: os.nice(19),
        )
        assert flood.stdout is not None
        await flood.stdout.readline()  # "ready": the flooders start now
        during = await probe(http, token, time.monotonic() + duration, errors)
        out, _ = await flood.communicate()
        flooded = json.loads(out)
        ok: list[float] = flooded["ok"]
        busy: list[float] = flooded["busy"]
        outcomes: dict[str, int] = flooded["outcomes"]
        seconds = time.monotonic() - began
        (main1, others1), (busy1, all1) = thread_cpu(server.pid), machine_cpu()
        await asyncio.sleep(2.0)  # the burst's trim runs on a hashing thread
        return FloodResult(
            flooders=flooders,
            seconds=seconds,
            logins=outcomes,
            busy_p99_ms=percentile(busy, 0.99) * 1000 if busy else None,
            ok_p99_ms=percentile(ok, 0.99) * 1000 if ok else None,
            idle_p50_ms=percentile(idle, 0.5) * 1000,
            idle_p99_ms=percentile(idle, 0.99) * 1000,
            flood_p50_ms=percentile(during, 0.5) * 1000,
            flood_p99_ms=percentile(during, 0.99) * 1000,
            probes_idle=len(idle),
            probes_flood=len(during),
            rss_start_mb=rss_start / 2**20,
            rss_peak_mb=peak_rss(server.pid) / 2**20,
            rss_after_mb=rss_bytes(server.pid) / 2**20,
            probe_errors=dict(errors),
            loop_cpu=(main1 - main0) / seconds,
            threads_cpu=(others1 - others0) / seconds,
            machine_busy=(busy1 - busy0) / max(1e-9, all1 - all0),
        )


def report_lines(result: FloodResult) -> list[str]:
    logins = ", ".join(f"{v} {k}" for k, v in sorted(result.logins.items()))
    busy = "-" if result.busy_p99_ms is None else f"{result.busy_p99_ms:.0f}"
    ok = "-" if result.ok_p99_ms is None else f"{result.ok_p99_ms:.0f}"
    return [
        "",
        f"Log-in flood: {result.flooders} clients for {result.seconds:.1f} s: {logins}; "
        f"p99 of a log-in served {ok} ms, refused {busy} ms. RSS {result.rss_start_mb:.0f} MB "
        f"at start, peak {result.rss_peak_mb:.0f} MB, {result.rss_after_mb:.0f} MB after. "
        f"During the flood the event loop used {result.loop_cpu:.0%} of a core, the hashing "
        f"threads {result.threads_cpu:.0%}; the machine was {result.machine_busy:.0%} busy.",
        "",
        "| GET /v1/me | requests | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
        f"| alone | {result.probes_idle} | {result.idle_p50_ms:.1f} | {result.idle_p99_ms:.1f} |",
        f"| during the flood | {result.probes_flood} | {result.flood_p50_ms:.1f} "
        f"| {result.flood_p99_ms:.1f} |",
    ]


async def flood(base: str, email: str, password: str, flooders: int, duration: float) -> None:
    """`flooders` clients posting correct log-ins back to back for `duration` seconds;
    prints each outcome's count and the served and refused ones' seconds, as JSON."""
    outcomes: Counter[str] = Counter()
    ok: list[float] = []
    busy: list[float] = []
    form = {"username": email, "password": password}
    limits = httpx.Limits(max_connections=flooders, max_keepalive_connections=flooders)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        print("ready", flush=True)
        until = time.monotonic() + duration

        async def flooder() -> None:
            while time.monotonic() < until:
                started = time.perf_counter()
                try:
                    response = await http.post("/v1/auth/token", data=form)
                except httpx.TransportError as error:
                    outcomes[type(error).__name__] += 1
                    continue
                elapsed = time.perf_counter() - started
                if response.status_code == 200:
                    ok.append(elapsed)
                    outcomes["200"] += 1
                elif response.status_code == 503:
                    busy.append(elapsed)
                    outcomes[f"503 {response.json().get('code')}"] += 1
                    # What a client does: wait as told (here at most 1 s).
                    await asyncio.sleep(min(1.0, float(response.headers.get("Retry-After", 1))))
                else:
                    outcomes[str(response.status_code)] += 1

        await asyncio.gather(*(flooder() for _ in range(flooders)))
    print(json.dumps({"outcomes": dict(outcomes), "ok": ok, "busy": busy}))


if __name__ == "__main__":
    base, email, password, count, seconds = sys.argv[1:6]
    asyncio.run(flood(base, email, password, int(count), float(seconds)))
