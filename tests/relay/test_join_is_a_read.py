"""Joining a room by socket shows the others' names and keys: their access logs say so."""

from __future__ import annotations

from tests.fixtures.server import open_socket, recv
from tests.relay.conftest import Practice


async def test_a_join_shows_in_the_access_log_of_everyone_it_showed(
    practice: Practice,
) -> None:
    counselor = await practice.counselor("Dr Present")
    client = await practice.client("Joining Client")
    outsider = await practice.client("Someone Else")
    room = await practice.room(counselor, waiting_room=False)
    await practice.invite(counselor, room["id"], client)

    guest = await open_socket(practice.base, room["id"], await practice.token(client, room["id"]))
    welcome = await recv(guest)
    assert welcome["type"] == "welcome"
    assert counselor.id in [p["account_id"] for p in welcome["participants"]]
    await guest.close()

    async def joins_seen_by(person_auth: dict[str, str]) -> list[tuple[str, str]]:
        response = await practice.http.get("/v1/me/access-log", headers=person_auth)
        assert response.status_code == 200, response.text
        return [
            (e["actor"]["account_id"], e["action"])
            for e in response.json()
            if e["action"] == "room.join"
        ]

    assert await joins_seen_by(counselor.auth) == [(client.id, "room.join")]
    assert await joins_seen_by(outsider.auth) == []
