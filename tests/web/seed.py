"""A practice for the browser story, seeded over REST on a running server: an
admin (from the command line), the published consent documents, a counselor, a
client, and a room starting now that the counselor invited the client to by email."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tests.fixtures.processes import Server, new_user

CONSENTS = {"informed_consent": "Informed consent", "telehealth": "Online sessions"}


@dataclass(frozen=True)
class Seed:
    base_url: str
    counselor_email: str
    counselor_password: str
    counselor_name: str
    client_email: str
    client_password: str
    client_name: str
    room_id: str
    room_title: str

    def env(self) -> dict[str, str]:
        """What clients/web/test/story.ts reads."""
        return {
            "CONFIDE_BASE_URL": self.base_url,
            "CONFIDE_COUNSELOR_EMAIL": self.counselor_email,
            "CONFIDE_COUNSELOR_PASSWORD": self.counselor_password,
            "CONFIDE_COUNSELOR_NAME": self.counselor_name,
            "CONFIDE_CLIENT_EMAIL": self.client_email,
            "CONFIDE_CLIENT_PASSWORD": self.client_password,
            "CONFIDE_CLIENT_NAME": self.client_name,
            "CONFIDE_ROOM_TITLE": self.room_title,
        }


def iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def seed(server: Server) -> Seed:
    admin_email, admin_password, _ = new_user("admin")
    created = server.cli(
        "admin", "create", "--email", admin_email, "--password-stdin", stdin=admin_password
    )
    assert created.returncode == 0, created.stderr
    admin = bearer(server.login(admin_email, admin_password)["access_token"])
    for kind, title in CONSENTS.items():
        body = {"kind": kind, "locale": "en", "title": title, "body": f"The {title.lower()} text."}
        published = server.http.post("/v1/consent-documents", json=body, headers=admin)
        assert published.status_code == 201, published.text

    counselor_email, counselor_password, counselor_name = new_user("counselor")
    account = {"email": counselor_email, "password": counselor_password}
    made = server.http.post(
        "/v1/admin/accounts",
        json={**account, "display_name": counselor_name, "role": "counselor"},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    client_email, client_password, client_name = new_user("client")
    server.register(client_email, client_password, client_name)

    host = bearer(server.login(counselor_email, counselor_password)["access_token"])
    now = datetime.now(UTC)
    title = f"Session {secrets.token_hex(4)}"
    room = server.http.post(
        "/v1/rooms",
        json={
            "title": title,
            "kind": "individual",
            "starts_at": iso(now),
            "ends_at": iso(now + timedelta(hours=1)),
        },
        headers=host,
    )
    assert room.status_code == 201, room.text
    room_id: str = room.json()["id"]
    invited = server.http.post(
        f"/v1/rooms/{room_id}/participants", json={"email": client_email}, headers=host
    )
    assert invited.status_code == 202, invited.text
    return Seed(
        base_url=f"http://127.0.0.1:{server.port}",
        counselor_email=counselor_email,
        counselor_password=counselor_password,
        counselor_name=counselor_name,
        client_email=client_email,
        client_password=client_password,
        client_name=client_name,
        room_id=room_id,
        room_title=title,
    )
