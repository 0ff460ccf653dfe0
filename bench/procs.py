"""Processes the benchmark runs and measures: `confide serve`, the baseline, Redis.

CPU time and memory are read from /proc, never from inside the measured
process: utime + stime of `/proc/<pid>/stat` (all threads, in clock ticks)
and VmRSS of `/proc/<pid>/status`.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_S = 60.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process `pid` (every thread), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        data = handle.read()
    # The command name is in parentheses and may hold spaces: split after the last ")".
    fields = data[data.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    """The child processes of `pid` (the workers of `confide serve --workers N`)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


def connections_by_remote_port(pid: int) -> dict[int, int]:
    """The established TCP connections of process `pid`, counted by remote port.

    The process's socket inodes (/proc/<pid>/fd) matched with the kernel's
    table (/proc/net/tcp and tcp6): so `{6379: 2, 5432: 11}` is what it holds
    open to Redis and PostgreSQL, whoever else uses them.
    """
    inodes = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    counts: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "01" and fields[9] in inodes:
                port = int(fields[2].rsplit(":", 1)[1], 16)
                counts[port] = counts.get(port, 0) + 1
    return counts


def readable(pid: int) -> bool:
    """Whether this process can read the CPU time of `pid` (e.g. a Redis server's)."""
    try:
        cpu_seconds(pid)
    except (OSError, ValueError, IndexError):
        return False
    return True


def rss_bytes(pid: int) -> int:
    """Resident set size (VmRSS) of the process `pid`, in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def named_cpu_seconds(name: str) -> dict[int, float]:
    """CPU seconds (user + system) of each running process whose command is `name`
    (e.g. PostgreSQL's backends, `postgres`), by pid."""
    seconds: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm_end = stat.rfind(")")
        if stat[stat.find("(") + 1 : comm_end] != name:
            continue
        fields = stat[comm_end + 2 :].split()
        seconds[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    return seconds


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """The CPU seconds `after`'s processes spent since `before` (a process that started
    meanwhile counts whole; one that exited meanwhile is not counted: a lower bound)."""
    return sum(spent - before.get(pid, 0.0) for pid, spent in after.items())


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values[:8]) - idle) / tick, sum(values[:8]) / tick


def raise_open_files() -> int:
    """Raise this process's soft open-file limit to the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def settle(pids: list[int], *, idle_cores: float = 0.05, timeout_s: float = 60.0) -> None:
    """Wait until the processes are quiet (e.g. sockets of the last run have all left)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = sum(cpu_seconds(pid) for pid in pids)
        await asyncio.sleep(0.3)
        if sum(cpu_seconds(pid) for pid in pids) - before <= idle_cores * 0.3:
            return


def confide_command() -> list[str]:
    script = Path(sys.executable).parent / "confide"
    if script.exists():
        return [str(script)]
    found = shutil.which("confide")
    return [found] if found else [sys.executable, "-m", "app.cli"]


def run_cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [*confide_command(), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"confide {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass
class Process:
    """A server subprocess: started, waited for, measured, stopped."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return [*self.command, "--host", "127.0.0.1", "--port", str(self.port)]

    async def start(self) -> Process:
        self._spawn()
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log()}")
            if await self._ready():
                return self
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start in {START_TIMEOUT_S}s: {self.log()}")

    def _spawn(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log = (self.log_dir / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(
            self.argv(),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def _ready(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        return True

    def log(self) -> str:
        path = self.log_dir / f"{self.name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def pids(self) -> list[int]:
        """This process and its children (a supervisor's workers)."""
        return [self.pid, *children(self.pid)]

    def cpu(self) -> float:
        """CPU time of the process and of its running children, summed."""
        total = 0.0
        for pid in self.pids():
            try:
                total += cpu_seconds(pid)
            except OSError:  # a child gone between the listing and the read
                continue
        return total

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class ConfideServer(Process):
    """`confide serve` as deployed: uvicorn as app/cli.py configures it.

    With `workers` > 1 it is ready once every worker has started and /healthz answers.
    """

    workers: int = 1
    _log_at: int = 0  # where this start's lines begin in the (appended) log

    def _spawn(self) -> None:
        path = self.log_dir / f"{self.name}.log"
        self._log_at = path.stat().st_size if path.exists() else 0
        super()._spawn()

    def argv(self) -> list[str]:
        return [*super().argv(), "--workers", str(self.workers)]

    async def _ready(self) -> bool:
        if self.workers > 1 and len(children(self.pid)) < self.workers:
            return False
        try:
            async with httpx.AsyncClient(timeout=1) as http:
                response = await http.get(f"{self.http_base}/healthz")
        except httpx.TransportError:
            return False
        if response.status_code != 200:
            return False
        if self.workers > 1:
            with (self.log_dir / f"{self.name}.log").open("rb") as handle:
                handle.seek(self._log_at)
                started = handle.read().count(b"Application startup complete")
            return started >= self.workers
        return True


def confide_server(
    name: str, env: dict[str, str], log_dir: Path, *, workers: int = 1
) -> ConfideServer:
    return ConfideServer(name, [*confide_command(), "serve"], env, log_dir, workers=workers)


def bench_env() -> dict[str, str]:
    """This environment, with the project root importable (for `python -m bench.*`)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def baseline_server(log_dir: Path) -> Process:
    return Process("baseline", [sys.executable, "-m", "bench.baseline"], bench_env(), log_dir)
