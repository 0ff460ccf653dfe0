"""A practice on a running `confide serve`, set up over HTTP as its users would.

An admin (created with `confide admin create --password-stdin`) publishes the
consent documents and creates the counselors; clients register, accept every
document and add one device each; counselors create rooms (no waiting room,
so every member is admitted) and invite clients, who accept (a client who has
accepted one of a counselor's invitations is added directly after that). Room
tokens are then asked for with `POST /v1/rooms/{id}/token`, as a client app
does before each socket. Nothing is written to the database behind the server's back.

A room of `size` sockets is one counselor and `size - 1` distinct clients
(one device each). Clients and counselors are reused across rooms (a device
may be in many rooms at once); that keeps the number of accounts, and so of
argon2 hashes, small.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from app.keys.statements import device_statement
from bench.procs import run_cli

T = TypeVar("T")
RELOGIN_AFTER_S = 600.0  # access tokens live 15 minutes at most


@dataclass
class User:
    id: str
    email: str
    password: str
    device: str = ""
    access_token: str = ""
    logged_in_at: float = 0.0
    identity: ec.EllipticCurvePrivateKey | None = None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@dataclass
class Room:
    id: str
    members: list[User]  # the host first


@dataclass
class Practice:
    http: httpx.AsyncClient
    admin: User
    documents: list[str] = field(default_factory=list)
    counselors: list[User] = field(default_factory=list)
    clients: list[User] = field(default_factory=list)


def _password() -> str:
    return "bench " + secrets.token_hex(12)


def _email(kind: str) -> str:
    return f"{kind}-{secrets.token_hex(6)}@bench.example.org"


async def bounded(concurrency: int, jobs: Iterable[Callable[[], Awaitable[T]]]) -> list[T]:
    limit = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with limit:
            return await job()

    return list(await asyncio.gather(*(one(job) for job in jobs)))


def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
    body: dict[str, Any] = response.json()
    return body


async def login(http: httpx.AsyncClient, user: User) -> User:
    response = await http.post(
        "/v1/auth/token", data={"username": user.email, "password": user.password}
    )
    user.access_token = _ok(response)["access_token"]
    user.logged_in_at = time.monotonic()
    return user


async def fresh(http: httpx.AsyncClient, users: Iterable[User]) -> None:
    """Log in again whoever's access token is getting old."""
    stale = [u for u in users if time.monotonic() - u.logged_in_at > RELOGIN_AFTER_S]
    await bounded(8, [functools.partial(login, http, u) for u in stale])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _p256_point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def signed_device(user: User, label: str, public_key: bytes) -> dict[str, str]:
    """A registration body signed by the user's identity key (made on first use)."""
    first = user.identity is None
    if user.identity is None:
        user.identity = ec.generate_private_key(ec.SECP256R1())
    device_id = str(uuid.uuid4())
    signing_key = _p256_point(ec.generate_private_key(ec.SECP256R1()))
    statement = device_statement(user.id, device_id, signing_key, public_key)
    r, s = decode_dss_signature(user.identity.sign(statement, ec.ECDSA(hashes.SHA256())))
    body = {
        "device_id": device_id,
        "label": label,
        "public_key": _b64(public_key),
        "signing_key": _b64(signing_key),
        "signature": _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big")),
    }
    if first:
        body["identity_key"] = _b64(_p256_point(user.identity))
    return body


async def add_device(http: httpx.AsyncClient, user: User) -> None:
    body = _ok(
        await http.post(
            "/v1/devices", json=signed_device(user, "bench", os.urandom(65)), headers=user.auth
        ),
        201,
    )
    user.device = body["device_id"]


async def create_practice(
    http: httpx.AsyncClient, env: dict[str, str], *, counselors: int, clients: int
) -> Practice:
    email, password = _email("admin"), _password()
    admin_id = run_cli(
        env, "admin", "create", "--email", email, "--password-stdin", stdin=password + "\n"
    ).strip()
    admin = await login(http, User(admin_id, email, password))
    practice = Practice(http, admin)
    for kind in ("informed_consent", "telehealth", "group_agreement"):
        body = _ok(
            await http.post(
                "/v1/consent-documents",
                json={"kind": kind, "locale": "en", "title": kind, "body": f"The {kind} text."},
                headers=admin.auth,
            ),
            201,
        )
        practice.documents.append(body["id"])

    async def counselor() -> User:
        user = User("", _email("counselor"), _password())
        created = await http.post(
            "/v1/admin/accounts",
            json={
                "email": user.email,
                "password": user.password,
                "display_name": "Bench Counselor",
                "role": "counselor",
            },
            headers=admin.auth,
        )
        user.id = _ok(created, 201)["id"]
        await login(http, user)
        await add_device(http, user)
        return user

    async def client() -> User:
        user = User("", _email("client"), _password())
        created = await http.post(
            "/v1/accounts",
            json={"email": user.email, "password": user.password, "display_name": "Bench Client"},
        )
        user.id = _ok(created, 201)["id"]
        await login(http, user)
        for document in practice.documents:
            accepted = await http.post(
                "/v1/me/consents", json={"document_id": document}, headers=user.auth
            )
            _ok(accepted, 201)
        await add_device(http, user)
        return user

    practice.counselors = await bounded(8, [counselor] * counselors)
    practice.clients = await bounded(8, [client] * clients)
    return practice


async def create_rooms(
    practice: Practice, count: int, size: int, *, offset: int = 0, concurrency: int = 16
) -> list[Room]:
    """`count` rooms of `size` sockets: a counselor and `size - 1` distinct clients."""
    if size - 1 > len(practice.clients):
        raise ValueError(f"rooms of {size} need {size - 1} clients")
    http = practice.http

    async def room(number: int) -> Room:
        host = practice.counselors[number % len(practice.counselors)]
        guests = [
            practice.clients[(number * (size - 1) + k) % len(practice.clients)]
            for k in range(size - 1)
        ]
        created = await http.post(
            "/v1/rooms",
            json={
                "title": f"Bench {number}",
                "kind": "individual" if size == 2 else "group",
                "max_participants": size,
                "waiting_room": False,
            },
            headers=host.auth,
        )
        room_id = _ok(created, 201)["id"]
        for guest in guests:
            invited = await http.post(
                f"/v1/rooms/{room_id}/participants",
                json={"account_id": guest.id},
                headers=host.auth,
            )
            if invited.status_code == 202:  # not yet the host's client: they accept
                invitation = _ok(invited, 202)["invitation_id"]
                accepted = await http.post(
                    f"/v1/me/invitations/{invitation}/accept", headers=guest.auth
                )
                _ok(accepted)
            else:
                _ok(invited, 201)
        return Room(room_id, [host, *guests])

    numbers = range(offset, offset + count)
    return await bounded(concurrency, [functools.partial(room, n) for n in numbers])


async def issue_tokens(
    practice: Practice, rooms: list[Room], *, concurrency: int = 32
) -> list[list[str]]:
    """A fresh room token for every member of every room (tokens open one socket each)."""
    await fresh(practice.http, [*practice.counselors, *practice.clients])
    http = practice.http

    async def token(room_id: str, user: User) -> str:
        response = await http.post(
            f"/v1/rooms/{room_id}/token", json={"device_id": user.device}, headers=user.auth
        )
        value: str = _ok(response)["token"]
        return value

    jobs = [functools.partial(token, r.id, u) for r in rooms for u in r.members]
    flat = await bounded(concurrency, jobs)
    out: list[list[str]] = []
    at = 0
    for room in rooms:
        out.append(flat[at : at + len(room.members)])
        at += len(room.members)
    return out
