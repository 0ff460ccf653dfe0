"""Two instances behind one database and one Redis (or Redis Cluster): everything
crosses within a second."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from app.core import mls
from tests.fixtures.mls import private_message
from tests.fixtures.server import closed_with, open_socket, recv, recv_until
from tests.relay.cluster import cluster

CROSS = 1.0  # seconds


async def test_participants_on_two_instances_share_one_room(tmp_path: Path, redis_url: str) -> None:
    async with cluster(tmp_path, redis_url) as group:
        a, b = group.start("a"), group.start("b")
        on_a = await group.first_practice(a)
        on_b = await group.practice(b, on_a.admin, on_a.documents)

        counselor = await on_a.counselor("Host On A")
        client = await on_b.client("Client On B")
        other = await on_b.client("Second Client")
        room = await on_a.room(counselor, kind="group")
        room_id = room["id"]
        await on_a.invite(counselor, room_id, client)
        await on_a.invite(counselor, room_id, other)

        host = await open_socket(on_a.base, room_id, await on_a.token(counselor, room_id))
        assert (await recv(host))["state"] == "admitted"
        token = await on_b.token(client, room_id)
        guest = await open_socket(on_b.base, room_id, token)
        assert (await recv(guest))["state"] == "waiting"
        # A room token's jti, spent on B, is refused on A.
        replay = await open_socket(on_a.base, room_id, token)
        assert await closed_with(replay) == 4001

        waiting = await recv_until(host, "presence", timeout=CROSS, event="waiting")
        assert waiting["account_id"] == client.id
        await on_b.admit(counselor, room_id, client)
        await recv_until(guest, "presence", timeout=CROSS, event="admitted", account_id=client.id)
        await recv_until(host, "presence", timeout=CROSS, event="admitted", account_id=client.id)

        await host.send(json.dumps({"type": "send", "id": "a1", "ciphertext": "AQID"}))
        assert (await recv_until(host, "ack", timeout=CROSS))["seq"] == 1
        got = await recv_until(guest, "message", timeout=CROSS)
        assert (got["seq"], got["ciphertext"]) == (1, "AQID")
        await guest.send(json.dumps({"type": "send", "id": "b1", "ciphertext": "BAUG"}))
        assert (await recv_until(guest, "ack", timeout=CROSS))["seq"] == 2
        assert (await recv_until(host, "message", timeout=CROSS))["seq"] == 2

        # Removal decided on B closes the socket on A.
        await on_b.admit(counselor, room_id, other)
        second = await open_socket(on_a.base, room_id, await on_a.token(other, room_id))
        await recv(second)
        removed = await on_b.http.delete(
            f"/v1/rooms/{room_id}/participants/{other.id}", headers=counselor.auth
        )
        assert removed.status_code == 204
        assert await closed_with(second, timeout=CROSS + 1) == 4003
        gone = await recv_until(guest, "presence", timeout=CROSS, event="removed")
        assert gone["account_id"] == other.id

        # A device revoked through A closes its socket on B and tells the host on A.
        revoked = await on_a.http.delete(f"/v1/devices/{client.device}", headers=client.auth)
        assert revoked.status_code == 204
        assert await closed_with(guest, timeout=CROSS + 1) == 4003
        told = await recv_until(host, "device", timeout=CROSS, event="revoked")
        assert told["device"]["device_id"] == client.device
        assert isinstance(told["device"]["signing_key"], str)

        # The end, decided on B, closes the host's socket on A.
        new_device = await on_b.add_device(client, "tablet")
        # Registered through B, told to the host on A with the device's keys.
        added = await recv_until(host, "device", timeout=CROSS, event="added")
        listed = await on_b.http.get("/v1/devices", headers=client.auth)
        (keys,) = [
            {k: d[k] for k in ("device_id", "public_key", "signing_key")}
            for d in listed.json()
            if d["device_id"] == new_device
        ]
        assert added["device"] == keys
        back = await open_socket(on_b.base, room_id, await on_b.token(client, room_id, new_device))
        assert (await recv(back))["state"] == "admitted"
        ended = await on_b.http.post(f"/v1/rooms/{room_id}/end", headers=counselor.auth)
        assert ended.status_code == 200
        assert await closed_with(host, timeout=CROSS + 1) == 4010
        assert await closed_with(back, timeout=CROSS + 1) == 4010


async def test_the_same_device_on_another_instance_replaces_the_first(
    tmp_path: Path, redis_url: str
) -> None:
    async with cluster(tmp_path, redis_url) as group:
        a, b = group.start("a"), group.start("b")
        on_a = await group.first_practice(a)
        on_b = await group.practice(b, on_a.admin, on_a.documents)
        counselor = await on_a.counselor()
        room = await on_a.room(counselor)
        first = await open_socket(on_a.base, room["id"], await on_a.token(counselor, room["id"]))
        await recv(first)
        second = await open_socket(on_b.base, room["id"], await on_b.token(counselor, room["id"]))
        await recv(second)
        assert await closed_with(first, timeout=CROSS + 1) == 4011
        await second.close()


async def test_a_consent_withdrawn_on_one_instance_sends_back_to_waiting_on_the_other(
    tmp_path: Path, redis_url: str
) -> None:
    async with cluster(tmp_path, redis_url) as group:
        a, b = group.start("a"), group.start("b")
        on_a = await group.first_practice(a)
        on_b = await group.practice(b, on_a.admin, on_a.documents)
        counselor = await on_a.counselor()
        client = await on_b.client()
        room = await on_a.room(counselor, waiting_room=True)
        room_id = room["id"]
        await on_a.invite(counselor, room_id, client)
        await on_a.admit(counselor, room_id, client)
        host = await open_socket(on_a.base, room_id, await on_a.token(counselor, room_id))
        await recv(host)
        guest = await open_socket(on_b.base, room_id, await on_b.token(client, room_id))
        assert (await recv(guest))["state"] == "admitted"

        document = on_a.documents["informed_consent"]
        withdrawn = await on_a.http.delete(f"/v1/me/consents/{document}", headers=client.auth)
        assert withdrawn.status_code == 204
        assert await closed_with(guest, timeout=CROSS + 1) == 4003
        await recv_until(host, "presence", timeout=CROSS, event="waiting", account_id=client.id)

        accepted = await on_b.http.post(
            "/v1/me/consents", json={"document_id": document}, headers=client.auth
        )
        assert accepted.status_code == 201
        back = await open_socket(on_b.base, room_id, await on_b.token(client, room_id))
        assert (await recv(back))["state"] == "waiting"
        await on_b.admit(counselor, room_id, client)
        await recv_until(back, "presence", timeout=CROSS, event="admitted", account_id=client.id)
        await host.send(json.dumps({"type": "send", "id": "h1", "ciphertext": "AQID"}))
        assert (await recv_until(back, "message", timeout=CROSS))["id"] == "h1"
        await host.close()
        await back.close()


def commit(room_id: str, epoch: int) -> str:
    """An MLS PrivateMessage of content type commit for the room's group (RFC 9420 §6)."""
    raw = private_message(mls.room_group_id(room_id), epoch, 3, [b"", b"sender", b"ciphertext"])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_concurrent_commits_on_two_instances_one_per_epoch(
    tmp_path: Path, redis_url: str
) -> None:
    async with cluster(tmp_path, redis_url) as group:
        a, b = group.start("a"), group.start("b")
        on_a = await group.first_practice(a)
        on_b = await group.practice(b, on_a.admin, on_a.documents)
        counselor = await on_a.counselor()
        client = await on_b.client()
        room = await on_a.room(counselor)
        room_id = room["id"]
        await on_a.invite(counselor, room_id, client)
        host = await open_socket(on_a.base, room_id, await on_a.token(counselor, room_id))
        assert (await recv(host))["state"] == "admitted"
        await on_b.admit(counselor, room_id, client)
        guest = await open_socket(on_b.base, room_id, await on_b.token(client, room_id))
        assert (await recv(guest))["type"] == "welcome"

        seen: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}

        async def read_until(who: str, kinds: tuple[str, ...], frame_id: str) -> dict[str, Any]:
            ws = host if who == "a" else guest
            while True:
                for frame in seen[who]:
                    if frame.get("type") in kinds and frame.get("id") == frame_id:
                        return frame
                seen[who].append(await recv(ws, 5))

        for epoch in range(3):
            await asyncio.gather(
                host.send(
                    json.dumps(
                        {"type": "send", "id": f"a{epoch}", "ciphertext": commit(room_id, epoch)}
                    )
                ),
                guest.send(
                    json.dumps(
                        {"type": "send", "id": f"b{epoch}", "ciphertext": commit(room_id, epoch)}
                    )
                ),
            )
            results = await asyncio.gather(
                read_until("a", ("ack", "error"), f"a{epoch}"),
                read_until("b", ("ack", "error"), f"b{epoch}"),
            )
            assert sorted(r["type"] for r in results) == ["ack", "error"], results
            (won,) = [r for r in results if r["type"] == "ack"]
            (lost,) = [r for r in results if r["type"] == "error"]
            assert (lost["code"], lost["epoch"]) == ("stale_epoch", epoch + 1)
            assert won["seq"] == epoch + 1
            # The winner's commit reaches the socket on the other instance.
            loser, winner_id = (
                ("b", f"a{epoch}") if lost["id"] == f"b{epoch}" else ("a", f"b{epoch}")
            )
            relayed = await read_until(loser, ("message",), winner_id)
            assert relayed["seq"] == won["seq"]
