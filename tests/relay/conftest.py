"""A practice on a real server: staff, consent documents, clients with devices, rooms."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.context import Context
from app.main import create_app
from app.models import Role
from app.relay.hub import Hub
from app.relay.wsproto import WebSocketProtocol
from tests.fixtures.accounts import (
    PASSWORD,
    User,
    login,
    make_account,
    register_client,
    unique_email,
)
from tests.fixtures.identity import device_body
from tests.fixtures.rooms import add_and_accept
from tests.fixtures.server import serve


@dataclass
class Person:
    user: User
    devices: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.user.id

    @property
    def auth(self) -> dict[str, str]:
        return self.user.auth

    @property
    def device(self) -> str:
        return self.devices[0]


@dataclass
class Practice:
    base: str
    http: httpx.AsyncClient
    ctx: Context | None
    hub: Hub | None
    admin: User
    documents: dict[str, str]

    @property
    def context(self) -> Context:
        """The in-process server's context (not there for subprocess servers)."""
        assert self.ctx is not None
        return self.ctx

    @property
    def live_hub(self) -> Hub:
        assert self.hub is not None
        return self.hub

    async def add_device(self, person: Person, label: str = "phone") -> str:
        key = base64.urlsafe_b64encode(os.urandom(65)).rstrip(b"=").decode()
        response = await self.http.post(
            "/v1/devices", json=device_body(person.id, label, key), headers=person.auth
        )
        assert response.status_code == 201, response.text
        device_id: str = response.json()["device_id"]
        person.devices.append(device_id)
        return device_id

    async def counselor(self, name: str = "Counselor") -> Person:
        email = unique_email("counselor")
        created = await self.http.post(
            "/v1/admin/accounts",
            json={"email": email, "password": PASSWORD, "display_name": name, "role": "counselor"},
            headers=self.admin.auth,
        )
        assert created.status_code == 201, created.text
        user = User(created.json()["id"], email, PASSWORD, name, "counselor")
        person = Person(await login(self.http, user))
        await self.add_device(person)
        return person

    async def client(self, name: str = "Client", *, consent: bool = True) -> Person:
        person = Person(await register_client(self.http, display_name=name))
        if consent:
            for document_id in self.documents.values():
                accepted = await self.http.post(
                    "/v1/me/consents", json={"document_id": document_id}, headers=person.auth
                )
                assert accepted.status_code == 201, accepted.text
        await self.add_device(person)
        return person

    async def room(self, host: Person, **body: Any) -> dict[str, Any]:
        payload = {"title": "Session", "kind": "individual", **body}
        response = await self.http.post("/v1/rooms", json=payload, headers=host.auth)
        assert response.status_code == 201, response.text
        room: dict[str, Any] = response.json()
        return room

    async def invite(self, host: Person, room_id: str, guest: Person) -> None:
        """The host adds the guest; the guest accepts the invitation if it takes one."""
        await add_and_accept(self.http, room_id, host.auth, guest.auth, account_id=guest.id)

    async def admit(self, host: Person, room_id: str, guest: Person) -> None:
        response = await self.http.post(
            f"/v1/rooms/{room_id}/participants/{guest.id}/admit", headers=host.auth
        )
        assert response.status_code == 200, response.text

    async def token(self, person: Person, room_id: str, device: str | None = None) -> str:
        response = await self.token_response(person, room_id, device)
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    async def token_response(
        self, person: Person, room_id: str, device: str | None = None
    ) -> httpx.Response:
        return await self.http.post(
            f"/v1/rooms/{room_id}/token",
            json={"device_id": device or person.device},
            headers=person.auth,
        )


@asynccontextmanager
async def serve_as_deployed(app: FastAPI) -> AsyncIterator[str]:
    """Serve `app` with the WebSocket protocol `confide serve` runs (the frame sink);
    yields its base URL. (`serve` runs uvicorn's default protocol, without it.)"""
    async with serve(app, ws=WebSocketProtocol) as base:
        yield base


@pytest.fixture
async def live(ctx: Context) -> AsyncIterator[tuple[str, httpx.AsyncClient, FastAPI]]:
    app = create_app(context=ctx)
    async with (
        serve_as_deployed(app) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        yield base, http, app


@pytest.fixture
async def practice(ctx: Context, live: tuple[str, httpx.AsyncClient, FastAPI]) -> Practice:
    base, http, app = live
    admin = await make_account(ctx, http, Role.admin, display_name="Admin")
    documents = await publish_documents(http, admin)
    return Practice(base, http, ctx, app.state.hub, admin, documents)


async def publish_documents(http: httpx.AsyncClient, admin: User) -> dict[str, str]:
    documents = {}
    for kind in ("informed_consent", "telehealth", "group_agreement"):
        response = await http.post(
            "/v1/consent-documents",
            json={"kind": kind, "locale": "en", "title": kind, "body": f"The {kind} text."},
            headers=admin.auth,
        )
        assert response.status_code == 201, response.text
        documents[kind] = response.json()["id"]
    return documents
