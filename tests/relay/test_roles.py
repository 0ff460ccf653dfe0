"""Typed participants on a real server and real sockets: supervisors and interpreters.

On SQLite and PostgreSQL, with the in-process broker and with Redis: a
supervisor is refused (token and socket) until every client of the room has
given its supervision consent, then admitted and shown as such to everyone,
and closed with 4013 when one client withdraws; an interpreter is named as
such in `welcome`, `presence` and the room view.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection

from app.core.config import Settings
from tests.fixtures.redis_server import delete_prefix, shared_redis, unique_prefix
from tests.fixtures.server import closed_with, open_socket, recv, recv_until
from tests.relay.conftest import Person, Practice

NOTE = "Told that a supervisor may observe this group; each client agreed."
QUALIFIED = {"qualified": True, "basis": "CCHI certified, Spanish"}


@pytest.fixture(params=["memory", "redis"])
async def settings(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str
) -> AsyncIterator[Settings]:
    base: dict[str, Any] = {"data_dir": tmp_path / "data", "database_url": SecretStr(database_url)}
    if request.param == "memory":
        yield Settings(**base)
        return
    url, prefix = await shared_redis(), unique_prefix()
    yield Settings(**base, broker_url=url, broker_prefix=prefix)
    await delete_prefix(url, prefix)


async def typed_invite(
    practice: Practice, host: Person, room_id: str, guest: Person, **body: Any
) -> None:
    """The host invites `guest` as a typed participant; the guest accepts."""
    added = await practice.http.post(
        f"/v1/rooms/{room_id}/participants",
        json={"account_id": guest.id, **body},
        headers=host.auth,
    )
    assert added.status_code == 202, added.text
    listed = await practice.http.get("/v1/me/invitations", headers=guest.auth)
    assert [each["role"] for each in listed.json()] == [body["role"]]
    invitation = added.json()["invitation_id"]
    accepted = await practice.http.post(
        f"/v1/me/invitations/{invitation}/accept", headers=guest.auth
    )
    assert accepted.status_code == 200, accepted.text


async def supervision(practice: Practice, client: Person, room_id: str, *, give: bool) -> None:
    method = practice.http.put if give else practice.http.delete
    response = await method(f"/v1/rooms/{room_id}/supervision-consent", headers=client.auth)
    assert response.status_code == 200, response.text
    mine = next(p for p in response.json()["participants"] if p["account_id"] == client.id)
    assert mine["supervision_consent"] is give


async def joined(practice: Practice, person: Person, room_id: str) -> tuple[ClientConnection, Any]:
    ws = await open_socket(practice.base, room_id, await practice.token(person, room_id))
    welcome = await recv(ws)
    assert welcome["type"] == "welcome"
    return ws, welcome


async def test_a_supervisor_waits_for_every_client_then_leaves_when_one_withdraws(
    practice: Practice,
) -> None:
    counselor = await practice.counselor("Dr. Host")
    supervisor = await practice.counselor("Dr. Supervisor")
    first, second = await practice.client("First"), await practice.client("Second")
    room_id = (await practice.room(counselor, kind="group", waiting_room=False))["id"]
    for client in (first, second):
        await practice.invite(counselor, room_id, client)
    await typed_invite(
        practice, counselor, room_id, supervisor, role="supervisor", consent_note=NOTE
    )

    refused = await practice.token_response(supervisor, room_id)
    assert (refused.status_code, refused.json()["code"]) == (403, "supervision_consent_required")
    await supervision(practice, first, room_id, give=True)
    refused = await practice.token_response(supervisor, room_id)
    assert (refused.status_code, refused.json()["code"]) == (403, "supervision_consent_required")
    await supervision(practice, second, room_id, give=True)

    host_ws, _ = await joined(practice, counselor, room_id)
    client_ws, _ = await joined(practice, first, room_id)
    sup_ws, welcome = await joined(practice, supervisor, room_id)
    assert welcome["you"]["role"] == "supervisor"
    roles = {p["account_id"]: p["role"] for p in welcome["participants"]}
    assert roles[supervisor.id] == "supervisor"
    assert roles[first.id] == "participant"
    for ws in (host_ws, client_ws):
        seen = await recv_until(ws, "presence", event="online", account_id=supervisor.id)
        assert seen["role"] == "supervisor"

    # An observer: no message of its own, and the room's messages reach it.
    await sup_ws.send(json.dumps({"type": "send", "id": "chat", "ciphertext": "AQID"}))
    assert (await recv_until(sup_ws, "error", id="chat"))["code"] == "observer_cannot_send"
    await host_ws.send(json.dumps({"type": "send", "id": "hello", "ciphertext": "AQID"}))
    assert (await recv_until(sup_ws, "message"))["id"] == "hello"

    # The room view records what the clients consented to.
    view = await practice.http.get(f"/v1/rooms/{room_id}", headers=first.auth)
    shown = next(p for p in view.json()["participants"] if p["account_id"] == supervisor.id)
    assert (shown["role"], shown["consent_note"]) == ("supervisor", NOTE)

    spare = await practice.token(supervisor, room_id)
    await supervision(practice, second, room_id, give=False)
    assert await closed_with(sup_ws) == 4013
    await recv_until(host_ws, "presence", event="offline", account_id=supervisor.id)
    # The token issued before the withdrawal no longer opens the socket.
    again = await open_socket(practice.base, room_id, spare)
    assert await closed_with(again) == 4003
    refused = await practice.token_response(supervisor, room_id)
    assert refused.json()["code"] == "supervision_consent_required"
    # Everyone else stays.
    await host_ws.send(json.dumps({"type": "send", "id": "still", "ciphertext": "AQID"}))
    assert (await recv_until(client_ws, "message", id="still"))["id"] == "still"
    for ws in (host_ws, client_ws):
        await ws.close()


async def test_a_new_client_without_consent_closes_the_supervisors_socket(
    practice: Practice,
) -> None:
    counselor = await practice.counselor()
    supervisor = await practice.counselor("Dr. Supervisor")
    first, late = await practice.client("First"), await practice.client("Late")
    room_id = (await practice.room(counselor, kind="group", waiting_room=False))["id"]
    await practice.invite(counselor, room_id, first)
    await typed_invite(
        practice, counselor, room_id, supervisor, role="supervisor", consent_note=NOTE
    )
    await supervision(practice, first, room_id, give=True)
    sup_ws, _ = await joined(practice, supervisor, room_id)

    await practice.invite(counselor, room_id, late)

    assert await closed_with(sup_ws) == 4013
    refused = await practice.token_response(supervisor, room_id)
    assert refused.json()["code"] == "supervision_consent_required"


async def test_only_clients_give_supervision_consent(practice: Practice) -> None:
    counselor = await practice.counselor()
    client = await practice.client()
    room_id = (await practice.room(counselor))["id"]
    await practice.invite(counselor, room_id, client)
    url = f"/v1/rooms/{room_id}/supervision-consent"
    response = await practice.http.put(url, headers=counselor.auth)
    assert (response.status_code, response.json()["code"]) == (403, "not_a_client")
    stranger = await practice.client("Stranger")
    response = await practice.http.put(url, headers=stranger.auth)
    assert response.status_code == 404


async def test_a_supervisor_invitation_of_a_client_is_a_decoy(practice: Practice) -> None:
    counselor = await practice.counselor()
    client = await practice.client()
    room_id = (await practice.room(counselor))["id"]
    added = await practice.http.post(
        f"/v1/rooms/{room_id}/participants",
        json={"account_id": client.id, "role": "supervisor", "consent_note": NOTE},
        headers=counselor.auth,
    )
    assert added.status_code == 202
    assert (await practice.http.get("/v1/me/invitations", headers=client.auth)).json() == []


async def test_an_interpreter_is_named_as_such_everywhere(practice: Practice) -> None:
    counselor = await practice.counselor()
    client = await practice.client("Client")
    interpreter = await practice.client("Interpreter")
    room_id = (await practice.room(counselor, kind="group", waiting_room=False))["id"]
    await practice.invite(counselor, room_id, client)
    url = f"/v1/rooms/{room_id}/participants"
    for qualification in (None, {"qualified": False, "basis": "none"}):
        body: dict[str, Any] = {"account_id": interpreter.id, "role": "interpreter"}
        body["consent_note"] = NOTE
        if qualification is not None:
            body["qualification"] = qualification
        refused = await practice.http.post(url, json=body, headers=counselor.auth)
        assert (refused.status_code, refused.json()["code"]) == (422, "interpreter_not_qualified")
    assert (await practice.http.get("/v1/me/invitations", headers=interpreter.auth)).json() == []
    await typed_invite(
        practice,
        counselor,
        room_id,
        interpreter,
        role="interpreter",
        qualification=QUALIFIED,
        consent_note=NOTE,
    )

    host_ws, _ = await joined(practice, counselor, room_id)
    ws, welcome = await joined(practice, interpreter, room_id)
    assert welcome["you"]["role"] == "interpreter"
    seen = await recv_until(host_ws, "presence", event="online", account_id=interpreter.id)
    assert seen["role"] == "interpreter"
    # A full participant: it speaks.
    await ws.send(json.dumps({"type": "send", "id": "hola", "ciphertext": "AQID"}))
    assert (await recv_until(host_ws, "message"))["id"] == "hola"

    view = await practice.http.get(f"/v1/rooms/{room_id}", headers=client.auth)
    shown = next(p for p in view.json()["participants"] if p["account_id"] == interpreter.id)
    assert shown["role"] == "interpreter"
    assert shown["qualification"] == QUALIFIED
    assert shown["consent_note"] == NOTE
    # Neither the interpreter nor the host is a client: no supervision consent of theirs.
    assert shown["supervision_consent"] is None
    for each in (host_ws, ws):
        await each.close()
