"""`confide demo`: a small practice on a running development server, to try the
web client at once.

It makes an admin (in the database, as `confide admin create` does), then,
over the server's own REST API: publishes the consent documents a room needs
(only the kinds not yet published), makes a counselor and a client, and a
room from now for an hour to which the counselor invites the client by
email. Passwords are random and printed once. Production refuses it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

#: The documents every client needs (PROTOCOL.md, Consent), with short demonstration texts.
DOCUMENTS = {
    "informed_consent": (
        "Informed consent (demonstration)",
        "What you say in a session stays between you and your counselor, with limits: "
        "danger to yourself or others, abuse of a child or a vulnerable adult, and court "
        "orders. This is a demonstration text, not a practice's document.",
    ),
    "telehealth": (
        "Online sessions (demonstration)",
        "Sessions take place over the internet, end-to-end encrypted. Find a private "
        "place, and agree with your counselor what to do if the call drops.",
    ),
}


class DemoError(Exception):
    """The server refused a step: the message says which, and why."""


@dataclass(frozen=True)
class Login:
    email: str
    password: str
    display_name: str


@dataclass(frozen=True)
class Demo:
    base_url: str
    counselor: Login
    client: Login
    room_id: str
    room_title: str

    def lines(self) -> list[str]:
        app = f"{self.base_url}/app/"
        return [
            f"A demonstration practice on {self.base_url} (development only):",
            f"  counselor  {self.counselor.email}  password: {self.counselor.password}",
            f"  client     {self.client.email}  password: {self.client.password}",
            f'  room       "{self.room_title}", from now for an hour; the client is invited',
            f"Open {app} in a window and log in as the counselor, then open it in a",
            "private window (or another browser profile: each keeps its own keys) and log in",
            "as the client: accept the consents and the invitation, enter the room, and let",
            "the counselor admit you.",
        ]


def _login(tag: str, role: str) -> Login:
    return Login(
        email=f"demo-{role}-{tag}@example.org",
        password=secrets.token_urlsafe(18),
        display_name=f"Demo {role.capitalize()} {tag}",
    )


def _iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _expect(response: httpx.Response, status: int, step: str) -> Any:
    if response.status_code != status:
        raise DemoError(f"{step}: {response.status_code} {response.text[:300]}")
    return response.json() if response.content else None


def _token(http: httpx.Client, who: Login, step: str) -> dict[str, str]:
    body = _expect(
        http.post("/v1/auth/token", data={"username": who.email, "password": who.password}),
        200,
        step,
    )
    return {"Authorization": f"Bearer {body['access_token']}"}


def seed(http: httpx.Client, admin: Login, tag: str) -> Demo:
    """The practice, made over REST by `admin` (who must exist already)."""
    as_admin = _token(http, admin, "log in as the demo admin")
    published = _expect(http.get("/v1/consent-documents"), 200, "read the consent documents")
    have = {document["kind"] for document in published}
    for kind, (title, text) in DOCUMENTS.items():
        if kind not in have:
            document = {"kind": kind, "locale": "en", "title": title, "body": text}
            response = http.post("/v1/consent-documents", json=document, headers=as_admin)
            _expect(response, 201, f"publish {kind}")

    counselor, client = _login(tag, "counselor"), _login(tag, "client")
    made = {
        "email": counselor.email,
        "password": counselor.password,
        "display_name": counselor.display_name,
        "role": "counselor",
    }
    _expect(http.post("/v1/admin/accounts", json=made, headers=as_admin), 201, "make the counselor")
    registered = {
        "email": client.email,
        "password": client.password,
        "display_name": client.display_name,
    }
    _expect(http.post("/v1/accounts", json=registered), 201, "register the client")

    as_counselor = _token(http, counselor, "log in as the counselor")
    now = datetime.now(UTC)
    title = f"Demo session {tag}"
    room = {
        "title": title,
        "kind": "individual",
        "starts_at": _iso(now),
        "ends_at": _iso(now + timedelta(hours=1)),
    }
    created = _expect(http.post("/v1/rooms", json=room, headers=as_counselor), 201, "make the room")
    invite = http.post(
        f"/v1/rooms/{created['id']}/participants",
        json={"email": client.email},
        headers=as_counselor,
    )
    _expect(invite, 202, "invite the client")
    return Demo(str(http.base_url).rstrip("/"), counselor, client, created["id"], title)


def new_tag() -> str:
    return secrets.token_hex(3)


def admin_login(tag: str) -> Login:
    return _login(tag, "admin")
