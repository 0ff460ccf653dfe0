"""A practice for the browser story, seeded on a running server as the README's
walk-through does it: an admin (from the command line), then `app.demo` over REST
(the consent documents, a counselor, a client, and a room starting now that the
counselor invited the client to by email)."""

from __future__ import annotations

from dataclasses import dataclass

from app import demo
from tests.fixtures.processes import Server

CONSENTS = {kind: title for kind, (title, _) in demo.DOCUMENTS.items()}


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


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def seed(server: Server) -> Seed:
    tag = demo.new_tag()
    admin = demo.admin_login(tag)
    created = server.cli(
        "admin", "create", "--email", admin.email, "--password-stdin", stdin=admin.password
    )
    assert created.returncode == 0, created.stderr
    made = demo.seed(server.http, admin, tag)
    return Seed(
        base_url=made.base_url,
        counselor_email=made.counselor.email,
        counselor_password=made.counselor.password,
        counselor_name=made.counselor.display_name,
        client_email=made.client.email,
        client_password=made.client.password,
        client_name=made.client.display_name,
        room_id=made.room_id,
        room_title=made.room_title,
    )
