"""An admin disables an account: its live sockets close with 4012, here and on other instances."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.server import closed_with, open_socket, recv, recv_until
from tests.relay.cluster import cluster
from tests.relay.conftest import Practice

CROSS = 1.0  # seconds


async def test_disabling_closes_the_live_socket_with_4012(practice: Practice) -> None:
    counselor = await practice.counselor("Dr Disabled")
    client = await practice.client("Stays Client")
    room = await practice.room(counselor)
    room_id = room["id"]
    await practice.invite(counselor, room_id, client)
    host = await open_socket(practice.base, room_id, await practice.token(counselor, room_id))
    assert (await recv(host))["type"] == "welcome"
    guest = await open_socket(practice.base, room_id, await practice.token(client, room_id))
    assert (await recv(guest))["type"] == "welcome"
    spare = await practice.token(counselor, room_id)  # issued before the account is disabled

    disabled = await practice.http.post(
        f"/v1/admin/accounts/{counselor.id}/disable", headers=practice.admin.auth
    )
    assert disabled.status_code == 200, disabled.text

    assert await closed_with(host) == 4012
    await recv_until(guest, "presence", event="offline", account_id=counselor.id)
    late = await open_socket(practice.base, room_id, spare)
    assert await closed_with(late) == 4001
    refused = await practice.token_response(counselor, room_id)
    assert refused.status_code == 401

    enabled = await practice.http.post(
        f"/v1/admin/accounts/{counselor.id}/enable", headers=practice.admin.auth
    )
    assert enabled.status_code == 200
    back = await practice.http.post(
        "/v1/auth/token",
        data={"username": counselor.user.email, "password": counselor.user.password},
    )
    assert back.status_code == 200
    counselor.user.access_token = back.json()["access_token"]
    again = await open_socket(practice.base, room_id, await practice.token(counselor, room_id))
    assert (await recv(again))["type"] == "welcome"
    await again.close()
    await guest.close()


async def test_disabling_on_one_instance_closes_the_socket_on_the_other(
    tmp_path: Path, redis_url: str
) -> None:
    async with cluster(tmp_path, redis_url) as group:
        a, b = group.start("a"), group.start("b")
        on_a = await group.first_practice(a)
        on_b = await group.practice(b, on_a.admin, on_a.documents)
        counselor = await on_a.counselor()
        room = await on_a.room(counselor)
        host = await open_socket(on_b.base, room["id"], await on_b.token(counselor, room["id"]))
        await recv(host)
        disabled = await on_a.http.post(
            f"/v1/admin/accounts/{counselor.id}/disable", headers=on_a.admin.auth
        )
        assert disabled.status_code == 200, disabled.text
        assert await closed_with(host, timeout=CROSS + 1) == 4012
