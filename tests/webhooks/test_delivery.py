"""Signed webhooks end to end: a real `confide serve`, a real receiver process.

The receiver (`receiver.py`, its own process) verifies every signature with
an independent Standard Webhooks implementation. It is down (connection
refused) while a session happens and while the server restarts; when it
comes up, every event arrives, signed, at least once, each under the one
`webhook-id` it had from the start, in the order the changes were committed.
Backoff is shortened by settings, so the test never waits for real backoff.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.fixtures.identity import account_of, device_body
from tests.fixtures.processes import Backend, Server, backend_for, free_port, run_cli

RECEIVER = Path(__file__).with_name("receiver.py")
FAST = {
    "CONFIDE_WEBHOOK_POLL_S": "0.1",
    "CONFIDE_WEBHOOK_BACKOFF_BASE_S": "0.1",
    "CONFIDE_WEBHOOK_BACKOFF_MAX_S": "0.5",
}
#: What a payload may hold: ids and times, nothing else.
ALLOWED_DATA = {"room_id", "account_id", "invitation_id", "incident_id", "notify_by", "at"}


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend_for(str(request.param), tmp_path / "data") as found:
        yield found


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Practice:
    def __init__(self, server: Server) -> None:
        self.server = server

    def call(self, method: str, path: str, token: str, **kwargs: Any) -> Any:
        response = self.server.http.request(
            method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs
        )
        assert response.status_code < 300, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    def admin(self) -> str:
        email, password = f"admin-{uuid.uuid4().hex[:8]}@example.org", "admin passphrase 1234"
        created = run_cli(
            self.server.env, "admin", "create", "--email", email, "--password-stdin",
            stdin=password + "\n",
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        token: str = self.server.login(email, password)["access_token"]
        return token

    def person(self, admin: str, role: str) -> tuple[str, str]:
        email = f"{role}-{uuid.uuid4().hex[:8]}@example.org"
        password = f"lantern quietly {uuid.uuid4().hex[:8]}"
        body = {"email": email, "password": password, "display_name": f"{role} person"}
        if role == "client":
            account = self.server.register(email, password, body["display_name"])
        else:
            account = self.call("POST", "/v1/admin/accounts", admin, json={**body, "role": role})
        return account["id"], self.server.login(email, password)["access_token"]

    def device(self, token: str) -> str:
        key = base64.urlsafe_b64encode(uuid.uuid4().bytes * 4).rstrip(b"=").decode()
        body = device_body(account_of(token), "Phone", key)
        device: dict[str, str] = self.call("POST", "/v1/devices", token, json=body)
        return device["device_id"]

    @contextmanager
    def socket(self, room_id: str, token: str, device: str) -> Iterator[ClientConnection]:
        issued = self.call("POST", f"/v1/rooms/{room_id}/token", token, json={"device_id": device})
        subprotocols = ["confide.v1", f"bearer.{issued['token']}"]
        with connect(issued["ws_url"], subprotocols=subprotocols) as ws:  # type: ignore[arg-type]
            assert json.loads(ws.recv(timeout=5))["type"] == "welcome"
            yield ws


def deliveries(practice: Practice, admin: str, hook: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = practice.call(
        "GET", f"/v1/admin/webhooks/{hook}/deliveries?limit=100", admin
    )
    return items[::-1]  # oldest first


def start_receiver(port: int, secret: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(RECEIVER), str(port), secret, str(log)],
        stdin=subprocess.DEVNULL,
    )


def test_every_event_arrives_signed_once_the_receiver_is_back_after_a_restart(
    backend: Backend, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "received.jsonl"
    server = Server(backend, tmp_path / "logs", backend.env(**FAST)).start()
    receiver: subprocess.Popen[bytes] | None = None
    try:
        practice = Practice(server)
        admin = practice.admin()
        hook = practice.call(
            "POST",
            "/v1/admin/webhooks",
            admin,
            json={"url": f"http://127.0.0.1:{port}/hook"},
        )
        assert hook["secret"].startswith("whsec_")
        assert hook["events"] == []
        assert "secret" not in practice.call("GET", f"/v1/admin/webhooks/{hook['id']}", admin)

        documents = [
            practice.call(
                "POST",
                "/v1/consent-documents",
                admin,
                json={"kind": kind, "locale": "en", "title": kind, "body": f"The {kind} terms."},
            )["id"]
            for kind in ("informed_consent", "telehealth")
        ]
        counselor_id, counselor = practice.person(admin, "counselor")
        client_id, client = practice.person(admin, "client")
        for document_id in documents:
            practice.call("POST", "/v1/me/consents", client, json={"document_id": document_id})
        counselor_device, client_device = practice.device(counselor), practice.device(client)
        now = datetime.now(UTC)
        room = practice.call(
            "POST",
            "/v1/rooms",
            counselor,
            json={
                "title": "Private title",
                "kind": "individual",
                "starts_at": now.isoformat(),
                "ends_at": (now + timedelta(hours=1)).isoformat(),
                "waiting_room": True,
            },
        )
        room_id = room["id"]
        invited = practice.call(
            "POST", f"/v1/rooms/{room_id}/participants", counselor, json={"account_id": client_id}
        )
        practice.call("POST", f"/v1/me/invitations/{invited['invitation_id']}/accept", client)
        with practice.socket(room_id, counselor, counselor_device):
            with practice.socket(room_id, client, client_device):
                practice.call(
                    "POST", f"/v1/rooms/{room_id}/participants/{client_id}/admit", counselor
                )
            wait_for(
                "the client's leave", lambda: len(deliveries(practice, admin, hook["id"])) == 5
            )
        wait_for("the host's leave", lambda: len(deliveries(practice, admin, hook["id"])) == 6)
        incident = practice.call(
            "POST",
            "/v1/incidents",
            admin,
            json={
                "summary": "A laptop was stolen.",
                "discovered_at": (now - timedelta(days=61)).isoformat(),
                "severity": "high",
                "affected_account_ids": [client_id],
            },
        )
        wait_for("incident.overdue", lambda: len(deliveries(practice, admin, hook["id"])) == 7)
        # The receiver is down: the oldest event has been tried, refused, and is retried.
        head = wait_for(
            "retries",
            lambda: [d for d in deliveries(practice, admin, hook["id"]) if len(d["attempts"]) > 2],
        )[0]
        assert head["state"] == "pending"
        assert head["next_attempt_at"] is not None
        assert {a["error"] for a in head["attempts"]} == {"connection_failed"}
        before_restart = deliveries(practice, admin, hook["id"])
        assert all(d["state"] == "pending" for d in before_restart)

        server.stop()
        server = Server(backend, tmp_path / "logs-2", backend.env(**FAST)).start()
        practice = Practice(server)
        practice.call("POST", f"/v1/rooms/{room_id}/end", counselor)
        wait_for("room.ended", lambda: len(deliveries(practice, admin, hook["id"])) == 8)

        receiver = start_receiver(port, hook["secret"], log)
        wait_for(
            "every delivery",
            lambda: all(d["state"] == "delivered" for d in deliveries(practice, admin, hook["id"])),
            timeout=60,
        )
        final = deliveries(practice, admin, hook["id"])
    finally:
        server.stop()
        if receiver is not None:
            receiver.terminate()
            receiver.wait(timeout=10)

    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines
    assert all(line["valid"] for line in lines)
    first_seen: dict[str, dict[str, Any]] = {}
    for line in lines:
        body = json.loads(line["body"])
        if line["id"] in first_seen:
            assert first_seen[line["id"]] == body  # a repeat is the same event
        else:
            first_seen[line["id"]] = body
    # Every event of the log, exactly these, in commit order, each under its first id.
    assert list(first_seen) == [d["id"] for d in final]
    assert [d["id"] for d in final] == [d["id"] for d in before_restart] + [final[-1]["id"]]
    events = list(first_seen.values())
    assert [(e["type"], e["data"].get("account_id")) for e in events] == [
        ("invitation.accepted", client_id),
        ("room.started", None),
        ("participant.waiting", client_id),
        ("participant.admitted", client_id),
        ("participant.left", client_id),
        ("participant.left", counselor_id),
        ("incident.overdue", None),
        ("room.ended", None),
    ]
    for event in events:
        assert set(event["data"]) <= ALLOWED_DATA
        assert event["data"]["at"] == event["timestamp"]
        if event["type"] == "incident.overdue":
            assert event["data"]["incident_id"] == incident["id"]
        else:
            assert event["data"]["room_id"] == room_id
    assert events[0]["data"]["invitation_id"] == invited["invitation_id"]
    # The first events were refused while the receiver was down, then delivered.
    assert len(final[0]["attempts"]) > 2
    assert final[0]["attempts"][-1]["status_code"] == 204
    assert all(d["next_attempt_at"] is None for d in final)
