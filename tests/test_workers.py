"""`confide serve --workers N`: N processes on one port, sharing Redis and PostgreSQL.

A real `confide serve` subprocess with two workers: both serve HTTP and room
sockets (which process holds a connection is read from /proc), a message
crosses from a socket on one worker to a socket on the other, a worker
killed is replaced, and SIGTERM
closes the open sockets with 1012 and ends every process with exit code 0.
What cannot work with several processes refuses to start with one line.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from bench.practice import create_practice, create_rooms, issue_tokens
from tests.fixtures.processes import (
    CLI_TIMEOUT_S,
    CONFIDE,
    Backend,
    Server,
    backend_for,
    free_port,
    run_async,
    running_server,
)
from tests.fixtures.redis_server import delete_prefix, shared_redis, unique_prefix
from tests.fixtures.server import closed_with, open_socket, recv_until

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="reads which process holds a socket from /proc"
)


@pytest.fixture
def redis_env() -> Iterator[dict[str, str]]:
    url = run_async(shared_redis())
    prefix = unique_prefix()
    yield {"CONFIDE_BROKER_URL": url, "CONFIDE_BROKER_PREFIX": prefix}
    run_async(delete_prefix(url, prefix))


@pytest.fixture
def workers(redis_env: dict[str, str], tmp_path: Path) -> Iterator[Server]:
    with (
        backend_for("postgresql", tmp_path / "data") as backend,
        running_server(backend, tmp_path / "logs", CONFIDE_WORKERS="2", **redis_env) as server,
    ):
        yield server


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return sorted(int(child) for child in text.split())


def holder(server_port: int, client_port: int, pids: list[int]) -> int:
    """Which of `pids` holds the server's end of the connection from `client_port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (
                int(local.rsplit(":", 1)[1], 16) == server_port
                and int(remote.rsplit(":", 1)[1], 16) == client_port
            ):
                inodes.add(f"socket:[{fields[9]}]")
    assert inodes, f"no server end for client port {client_port}"
    for pid in pids:
        fds = Path(f"/proc/{pid}/fd")
        for fd in fds.iterdir():
            try:
                if os.readlink(fd) in inodes:
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def http_holders(server: Server, pids: list[int], connections: int) -> set[int]:
    """Open `connections` keep-alive HTTP connections at once, each answered; their holders."""
    socks = [
        socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(connections)
    ]
    try:
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        for sock in socks:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 "), "healthz answered"
        return {holder(server.port, sock.getsockname()[1], pids) for sock in socks}
    finally:
        for sock in socks:
            sock.close()


def test_two_workers_serve_and_relay_across_processes_then_stop_cleanly(workers: Server) -> None:
    assert workers.proc is not None
    parent = workers.proc.pid
    pids = children(parent)
    assert len(pids) == 2, pids
    wait_started(workers, 2)

    # HTTP: connections are answered by both processes.
    seen: set[int] = set()
    for _ in range(10):
        seen |= http_holders(workers, pids, 16)
        if seen == set(pids):
            break
    assert seen == set(pids)

    # A worker that dies is replaced, and the new one serves (a room socket below is on it).
    os.kill(pids[0], signal.SIGKILL)
    for _ in range(300):
        now = children(parent)
        if len(now) == 2 and pids[0] not in now:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"no worker replaced the one killed: {children(parent)}")
    assert pids[1] in now
    pids = now
    wait_started(workers, 3)

    base = f"http://127.0.0.1:{workers.port}"

    async def scenario() -> list[int | None]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            practice = await create_practice(http, workers.env, counselors=1, clients=1)
            rooms = await create_rooms(practice, 1, 2)
            for _ in range(20):
                host_token, guest_token = (await issue_tokens(practice, rooms))[0]
                host = await open_socket(base, rooms[0].id, host_token)
                guest = await open_socket(base, rooms[0].id, guest_token)
                await recv_until(host, "welcome", 15)
                await recv_until(guest, "welcome", 15)
                held = {holder(workers.port, ws.local_address[1], pids) for ws in (host, guest)}
                if held == set(pids):
                    break
                await host.close()
                await guest.close()
            else:
                pytest.fail("every room socket pair landed on one worker")
            await crosses(host, guest)
            await crosses(guest, host)
            # SIGTERM to the parent: each worker drains its sockets (1012), then exits.
            os.kill(parent, signal.SIGTERM)
            return list(await asyncio.gather(closed_with(host, 30), closed_with(guest, 30)))

    codes = run_async(scenario())
    assert codes == [1012, 1012]
    assert workers.proc.wait(timeout=60) == 0, workers.stderr()
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        ), f"worker {pid} still runs"


def wait_started(server: Server, count: int) -> None:
    """Until `count` workers in all have finished their application startup."""
    for _ in range(600):
        if server.stderr().count("Application startup complete") >= count:
            return
        time.sleep(0.1)
    pytest.fail(f"{count} worker startups expected:\n{server.stderr()}")


async def crosses(sender: ClientConnection, recipient: ClientConnection) -> None:
    message_id = secrets.token_hex(8)
    ciphertext = base64.urlsafe_b64encode(secrets.token_bytes(24)).decode()
    await sender.send(f'{{"type":"send","id":"{message_id}","ciphertext":"{ciphertext}"}}')
    await recv_until(sender, "ack", 15, id=message_id)
    delivered = await recv_until(recipient, "message", 15, id=message_id)
    assert delivered["ciphertext"] == ciphertext


# -- what refuses to start --------------------------------------------------------------


def serve(backend: Backend, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`confide serve` that is expected to refuse (the timeout would raise if it served)."""
    return subprocess.run(
        [str(CONFIDE), "serve", "--host", "127.0.0.1", "--port", str(free_port()), *args],
        env=backend.env(**env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def refused_with_one_line(result: subprocess.CompletedProcess[str], backend: Backend) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("confide: ")
    assert "Traceback" not in result.stderr
    assert not backend.data_dir.exists()  # refused before keys, database or anything else
    return lines[0]


def test_several_workers_with_the_in_process_broker_refuse(tmp_path: Path) -> None:
    backend = Backend("sqlite", tmp_path / "data")
    line = refused_with_one_line(serve(backend, "--workers", "2"), backend)
    assert "CONFIDE_BROKER_URL" in line
    line = refused_with_one_line(serve(backend, CONFIDE_WORKERS="3"), backend)
    assert "3 workers" in line
    assert "CONFIDE_BROKER_URL" in line


def test_several_workers_on_sqlite_refuse(tmp_path: Path) -> None:
    backend = Backend("sqlite", tmp_path / "data")
    result = serve(backend, "--workers", "2", CONFIDE_BROKER_URL="redis://127.0.0.1:6379/0")
    assert "CONFIDE_DATABASE_URL" in refused_with_one_line(result, backend)


def test_several_workers_with_a_metrics_listener_refuse(tmp_path: Path) -> None:
    backend = Backend("sqlite", tmp_path / "data", pg_name="not_opened")
    result = serve(
        backend,
        "--workers",
        "2",
        CONFIDE_BROKER_URL="redis://127.0.0.1:6379/0",
        CONFIDE_METRICS_ADDR=f"127.0.0.1:{free_port()}",
    )
    assert "CONFIDE_METRICS_ADDR" in refused_with_one_line(result, backend)


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", "65", ""])
def test_a_bad_worker_count_refuses(tmp_path: Path, value: str) -> None:
    backend = Backend("sqlite", tmp_path / "data")
    line = refused_with_one_line(serve(backend, "--workers", value), backend)
    assert "--workers" in line


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_a_bad_workers_setting_refuses(tmp_path: Path, value: str) -> None:
    backend = Backend("sqlite", tmp_path / "data")
    line = refused_with_one_line(serve(backend, CONFIDE_WORKERS=value), backend)
    assert line.startswith("confide: CONFIDE_WORKERS: ")
