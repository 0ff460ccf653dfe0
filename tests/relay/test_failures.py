"""Nothing is lost when an instance, Redis or PostgreSQL fails: each failure, for real."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection

from tests.fixtures.postgres_server import PrivatePostgres
from tests.fixtures.redis_server import PrivateRedis, shared_redis
from tests.fixtures.server import open_socket, recv, recv_until
from tests.relay.cluster import Cluster, cluster
from tests.relay.conftest import Person, Practice


class Listener:
    """A client that records every message it receives, with its seq."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.ws: ClientConnection | None = None
        self.task: asyncio.Task[int | None] | None = None

    def attach(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.task = asyncio.create_task(self._run(ws))

    async def _run(self, ws: ClientConnection) -> int | None:
        try:
            async for raw in ws:
                frame = json.loads(raw)
                if frame["type"] == "message":
                    self.seqs.append(frame["seq"])
        except Exception:  # the socket died: the test reconnects
            pass
        return ws.close_code

    @property
    def last(self) -> int:
        return self.seqs[-1] if self.seqs else 0


async def setup_room(group: Cluster) -> tuple[Practice, Practice, Person, Person, str]:
    a, b = group.servers
    on_a = await group.first_practice(a)
    on_b = await group.practice(b, on_a.admin, on_a.documents)
    counselor = await on_a.counselor()
    client = await on_a.client()
    room = await on_a.room(counselor, waiting_room=False)
    await on_a.invite(counselor, room["id"], client)
    return on_a, on_b, counselor, client, room["id"]


async def send_acked(ws: ClientConnection, cid: str) -> int:
    await ws.send(json.dumps({"type": "send", "id": cid, "ciphertext": "AAECAw"}))
    ack = await recv_until(ws, "ack", id=cid)
    seq: int = ack["seq"]
    return seq


async def test_kill_9_an_instance_and_its_clients_lose_nothing(tmp_path: Path) -> None:
    async with cluster(tmp_path, await shared_redis()) as group:
        group.start("a")
        doomed = group.start("b")
        on_a, on_b, counselor, client, room_id = await setup_room(group)
        host = await open_socket(on_a.base, room_id, await on_a.token(counselor, room_id))
        await recv(host)
        listener = Listener()
        ws = await open_socket(on_b.base, room_id, await on_b.token(client, room_id))
        await recv(ws)
        listener.attach(ws)

        sent = [await send_acked(host, f"m{i}") for i in range(10)]
        group.kill(doomed)
        # The conversation goes on while the client is away.
        sent += [await send_acked(host, f"m{i}") for i in range(10, 20)]
        assert listener.task is not None
        await asyncio.wait_for(listener.task, 10)

        again = await open_socket(on_a.base, room_id, await on_a.token(client, room_id))
        await recv(again)
        await again.send(json.dumps({"type": "resume", "after": listener.last}))
        while True:
            frame = await recv(again)
            if frame["type"] == "message":
                listener.seqs.append(frame["seq"])
            elif frame["type"] == "resumed":
                break
        sent += [await send_acked(host, f"m{i}") for i in range(20, 25)]
        for _ in range(5):
            listener.seqs.append((await recv_until(again, "message"))["seq"])
        assert sent == list(range(1, 26))
        assert listener.seqs == sent  # every message, once, in order
        await again.close()
        await host.close()


async def test_sigterm_drains_then_clients_resume_elsewhere(tmp_path: Path) -> None:
    async with cluster(tmp_path, await shared_redis()) as group:
        leaving = group.start("a")
        group.start("b")
        on_a, on_b, counselor, client, room_id = await setup_room(group)
        host = await open_socket(on_b.base, room_id, await on_b.token(counselor, room_id))
        await recv(host)
        ws = await open_socket(on_a.base, room_id, await on_a.token(client, room_id))
        await recv(ws)
        for i in range(30):
            await ws.send(json.dumps({"type": "send", "id": f"c{i}", "ciphertext": "AQ"}))
        assert leaving.proc is not None
        leaving.proc.send_signal(signal.SIGTERM)
        acked: dict[str, int] = {}
        try:
            async for raw in ws:
                frame = json.loads(raw)
                if frame["type"] == "ack":
                    acked[frame["id"]] = frame["seq"]
        except Exception:
            pass
        assert ws.close_code == 1012
        # Sends the server read before draining were acked, and none twice.
        assert len(set(acked.values())) == len(acked)
        # The client moves to B and resends what was not acked: idempotent, nothing doubled.
        moved = await open_socket(on_b.base, room_id, await on_b.token(client, room_id))
        await recv(moved)
        for i in range(30):
            seq = await send_acked(moved, f"c{i}")
            if f"c{i}" in acked:
                assert seq == acked[f"c{i}"]
        await host.send(json.dumps({"type": "resume", "after": 0}))
        seqs = []
        while True:
            frame = await recv(host)
            if frame["type"] == "message":
                seqs.append(frame["seq"])
            elif frame["type"] == "resumed":
                break
        assert sorted(set(seqs)) == list(range(1, 31))
        await moved.close()
        await host.close()


async def test_redis_stops_for_a_while(tmp_path: Path, private_redis: PrivateRedis) -> None:
    async with cluster(tmp_path, private_redis.url) as group:
        server = group.start("a")
        group.start("b")
        on_a, _, counselor, client, room_id = await setup_room(group)
        host = await open_socket(on_a.base, room_id, await on_a.token(counselor, room_id))
        await recv(host)
        ws = await open_socket(on_a.base, room_id, await on_a.token(client, room_id))
        await recv(ws)
        assert await send_acked(host, "before") == 1
        await recv_until(ws, "message")

        private_redis.stop()
        ready = await on_a.http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["broker"] == "unavailable"
        await host.send(json.dumps({"type": "send", "id": "during", "ciphertext": "AQ"}))
        refused = await recv_until(host, "error", timeout=10)
        assert (refused["code"], refused["id"]) == ("unavailable", "during")

        await private_redis.start()
        async with asyncio.timeout(20):
            while (await on_a.http.get("/readyz")).status_code != 200:
                await asyncio.sleep(0.2)
        # Without restarting Confide: the refused message goes through now.
        assert await send_acked(host, "during") == 2
        got = await recv_until(ws, "message", timeout=10)
        assert (got["seq"], got["id"]) == (2, "during")
        assert server.proc is not None
        assert server.proc.poll() is None
        await ws.close()
        await host.close()


async def test_postgresql_restart_costs_no_request(
    tmp_path: Path, private_postgres: PrivatePostgres
) -> None:
    async with cluster(tmp_path, await shared_redis(), database_url=private_postgres.url) as group:
        server = group.start("a")
        base = group.base(server)
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for i in range(3):
                body = {
                    "email": f"pg{i}@example.org",
                    "password": "pg restart passphrase",
                    "display_name": "P",
                }
                assert (await http.post("/v1/accounts", json=body)).status_code == 201
            private_postgres.stop()
            assert (await http.get("/readyz")).status_code == 503
            private_postgres.start()
            # The pool's connections all died with the old server; pre-ping
            # replaces them, so no request fails once PostgreSQL is back.
            assert (await http.get("/readyz")).status_code == 200
            for i in range(3, 13):
                body = {
                    "email": f"pg{i}@example.org",
                    "password": "pg restart passphrase",
                    "display_name": "P",
                }
                response = await http.post("/v1/accounts", json=body)
                assert response.status_code == 201, response.text
                token = await http.post(
                    "/v1/auth/token", data={"username": body["email"], "password": body["password"]}
                )
                assert token.status_code == 200
