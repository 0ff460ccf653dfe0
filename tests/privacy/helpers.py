"""Shared steps of the privacy tests: rooms, disclosures, devices, consent, reads."""

from __future__ import annotations

import base64
import os
from datetime import timedelta
from typing import Any

import httpx

from app.core.clock import FrozenClock
from tests.fixtures.accounts import User
from tests.fixtures.identity import device_body
from tests.fixtures.rooms import add_and_accept

Json = dict[str, Any]


def random_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(65)).rstrip(b"=").decode()


async def add_device(client: httpx.AsyncClient, user: User, label: str) -> Json:
    response = await client.post(
        "/v1/devices", json=device_body(user.id, label, random_key()), headers=user.auth
    )
    assert response.status_code == 201, response.text
    device: Json = response.json()
    return device


async def share_a_room(
    client: httpx.AsyncClient, counselor: User, member: User, **room: Any
) -> str:
    body = {"title": "Weekly session", "kind": "individual", **room}
    created = await client.post("/v1/rooms", json=body, headers=counselor.auth)
    assert created.status_code == 201, created.text
    room_id: str = created.json()["id"]
    # The counselor invites, the member accepts (and becomes the counselor's client).
    await add_and_accept(client, room_id, counselor.auth, member.auth, account_id=member.id)
    return room_id


def disclosure(clock: FrozenClock, **overrides: Any) -> Json:
    body: Json = {
        "basis": "mandated_report",
        "recipient": "County child protective services",
        "purpose": "Mandated report of suspected neglect",
        "description": "Notes of the session of last week about the home situation",
        "disclosed_at": (clock.now() - timedelta(hours=2)).isoformat(),
    }
    body.update(overrides)
    return body


async def record_disclosure(
    client: httpx.AsyncClient, user: User, account_id: str, body: Json
) -> Json:
    response = await client.post(
        f"/v1/accounts/{account_id}/disclosures", json=body, headers=user.auth
    )
    assert response.status_code == 201, response.text
    made: Json = response.json()
    return made


async def publish(client: httpx.AsyncClient, admin: User, kind: str, body: str) -> Json:
    response = await client.post(
        "/v1/consent-documents",
        json={"kind": kind, "locale": "en", "title": f"The {kind}", "body": body},
        headers=admin.auth,
    )
    assert response.status_code == 201, response.text
    document: Json = response.json()
    return document


async def accept(client: httpx.AsyncClient, user: User, document_id: str) -> Json:
    response = await client.post(
        "/v1/me/consents", json={"document_id": document_id}, headers=user.auth
    )
    assert response.status_code == 201, response.text
    accepted: Json = response.json()
    return accepted


async def get_json(client: httpx.AsyncClient, user: User, path: str) -> Any:
    response = await client.get(path, headers=user.auth)
    assert response.status_code == 200, response.text
    return response.json()


async def access_log(client: httpx.AsyncClient, user: User) -> list[Json]:
    found: list[Json] = await get_json(client, user, "/v1/me/access-log")
    return found


async def audit_entries(client: httpx.AsyncClient, admin: User) -> list[Json]:
    entries: list[Json] = await get_json(client, admin, "/v1/admin/audit?limit=1000")
    return entries
