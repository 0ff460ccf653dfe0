"""The storage promise, proved on a realistic story against the real server.

A practice runs a whole story with unique marker strings: an intake with
consents, a counselor's licensure, a scheduled session that requires a safety
check-in (address, emergency contact, phones) with messages, a disclosure, a rights request
extended, denied and disputed, the client's jurisdiction, an incident with
notices, an export. Then the SQLite file, or a `pg_dump` of PostgreSQL, and
the server's log are searched for every name, email, title, session time,
device label, check-in, disclosure, incident and notice text used: none is found.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from websockets.sync.client import connect

from tests.fixtures.authenticator import SoftAuthenticator, b64url
from tests.fixtures.identity import account_of, device_body
from tests.fixtures.processes import Backend, Server, backend_for, run_cli, running_server


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend_for(str(request.param), tmp_path / "data") as found:
        yield found


@pytest.fixture
def server(backend: Backend, tmp_path: Path) -> Iterator[Server]:
    with running_server(backend, tmp_path / "logs") as started:
        yield started


def mark(label: str) -> str:
    return f"{label}{uuid.uuid4().hex[:10]}"


class Story:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.http: httpx.Client = server.http
        self.markers: dict[str, str] = {}

    def keep(self, label: str, value: str) -> str:
        self.markers[label] = value
        return value

    def call(self, method: str, path: str, token: str, **kwargs: Any) -> Any:
        response = self.http.request(
            method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs
        )
        assert response.status_code < 300, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    def login(self, email: str, password: str) -> str:
        token: str = self.server.login(email, password)["access_token"]
        return token

    def person(self, label: str, token: str | None = None, role: str = "client") -> tuple[str, str]:
        email = self.keep(f"{label} email", f"{mark(label.title())}@Example.org")
        name = self.keep(f"{label} name", mark(f"{label.title()} Name "))
        password = self.keep(f"{label} password", mark("lantern quietly "))
        body = {"email": email, "password": password, "display_name": name}
        if role == "client":
            account = self.server.register(email, password, name)
        else:
            assert token is not None
            account = self.call("POST", "/v1/admin/accounts", token, json={**body, "role": role})
        access = self.login(email, password)
        self.keep(f"{label} access token", access)
        return account["id"], access

    def device(self, label: str, token: str) -> str:
        device_label = self.keep(f"{label} device label", mark("Kitchen iPad "))
        key = base64.urlsafe_b64encode(uuid.uuid4().bytes * 4).rstrip(b"=").decode()
        device: dict[str, str] = self.call(
            "POST", "/v1/devices", token, json=device_body(account_of(token), device_label, key)
        )
        return device["device_id"]


def test_a_whole_story_leaves_nothing_readable(server: Server, backend: Backend) -> None:
    story = Story(server)
    admin_email = story.keep("admin email", f"{mark('Admin')}@Example.org")
    admin_password = story.keep("admin password", mark("admin passphrase "))
    created = run_cli(
        server.env,
        "admin",
        "create",
        "--email",
        admin_email,
        "--password-stdin",
        stdin=admin_password + "\n",
    )
    assert created.returncode == 0, created.stderr
    admin = story.login(admin_email, admin_password)

    documents = []
    for kind in ("informed_consent", "telehealth"):
        doc = story.call(
            "POST",
            "/v1/consent-documents",
            admin,
            json={"kind": kind, "locale": "en", "title": kind, "body": f"The {kind} terms."},
        )
        documents.append(doc["id"])

    _, counselor = story.person("counselor", admin, role="counselor")
    client_id, client = story.person("client")
    for document_id in documents:  # the intake
        story.call("POST", "/v1/me/consents", client, json={"document_id": document_id})
    counselor_device = story.device("counselor", counselor)
    client_device = story.device("client", client)

    now = datetime.now(UTC).replace(microsecond=0)
    starts = now + timedelta(minutes=5)
    ends = starts + timedelta(minutes=50)
    story.keep("session start", starts.strftime("%Y-%m-%dT%H:%M"))
    story.keep("session end", ends.strftime("%Y-%m-%dT%H:%M"))
    title = story.keep("room title", mark("Grief counselling for "))
    room = story.call(
        "POST",
        "/v1/rooms",
        counselor,
        json={
            "title": title,
            "kind": "individual",
            "starts_at": starts.isoformat(),
            "ends_at": ends.isoformat(),
            "waiting_room": False,
            "safety_checkin": "required",
            "max_participants": 4,
        },
    )
    invited = story.call(
        "POST", f"/v1/rooms/{room['id']}/participants", counselor, json={"account_id": client_id}
    )
    story.call("POST", f"/v1/me/invitations/{invited['invitation_id']}/accept", client)
    story.call(
        "PUT",
        f"/v1/admin/accounts/{account_of(counselor)}/licensure",
        admin,
        json={"jurisdictions": ["US-CO", "US-NM"]},
    )
    story.call(
        "PUT",
        f"/v1/rooms/{room['id']}/checkin",
        client,
        json={
            "location": {
                "address": story.keep("check-in address", mark("Cabin on Elk Road ")),
                "jurisdiction": "US-CO",
            },
            "emergency_contact": {
                "name": story.keep("emergency contact", mark("Kin Name ")),
                "phone": story.keep("emergency phone", f"+1{uuid.uuid4().int % 10**10:010d}"),
            },
            "callback_phone": story.keep("callback phone", f"+1{uuid.uuid4().int % 10**10:010d}"),
        },
    )
    seen = story.call("GET", f"/v1/rooms/{room['id']}/checkins", counselor)
    assert seen[0]["emergency_contact"]["name"] == story.markers["emergency contact"]
    assert seen[0]["jurisdiction_licensed"] is True

    # Typed participants: the client is a minor who consents for themselves (and has a
    # guardian who consents too), a supervisor and an interpreter join the session.
    guardian_id, guardian = story.person("guardian")
    story.call(
        "PUT",
        f"/v1/admin/accounts/{client_id}/minor",
        admin,
        json={
            "minor": True,
            "self_consent": {
                "allowed": True,
                "basis": story.keep("self-consent basis", mark("State statute section ")),
            },
        },
    )
    story.call(
        "POST",
        f"/v1/admin/accounts/{client_id}/guardians",
        admin,
        json={"guardian_account_id": guardian_id},
    )
    story.call("PUT", f"/v1/me/wards/{client_id}/consent", guardian)
    _, supervisor = story.person("supervisor", admin, role="counselor")
    _, interpreter = story.person("interpreter")
    for who, body in (
        (
            supervisor,
            {
                "role": "supervisor",
                "consent_note": story.keep("supervision note", mark("Told about supervision ")),
            },
        ),
        (
            interpreter,
            {
                "role": "interpreter",
                "consent_note": story.keep("interpreter note", mark("Agreed to interpreter ")),
                "qualification": {
                    "qualified": True,
                    "basis": story.keep("interpreter basis", mark("CCHI certificate ")),
                },
            },
        ),
    ):
        typed = story.call(
            "POST",
            f"/v1/rooms/{room['id']}/participants",
            counselor,
            json={"account_id": account_of(who), **body},
        )
        story.call("POST", f"/v1/me/invitations/{typed['invitation_id']}/accept", who)
    story.call("PUT", f"/v1/rooms/{room['id']}/supervision-consent", client)
    supervisor_device = story.device("supervisor", supervisor)
    story.call(
        "POST", f"/v1/rooms/{room['id']}/token", supervisor, json={"device_id": supervisor_device}
    )

    def socket(token: str, device: str) -> Any:
        issued = story.call(
            "POST", f"/v1/rooms/{room['id']}/token", token, json={"device_id": device}
        )
        subprotocols = ["confide.v1", f"bearer.{issued['token']}"]
        return connect(issued["ws_url"], subprotocols=subprotocols)  # type: ignore[arg-type]

    said = story.keep("ciphertext", base64.urlsafe_b64encode(mark("sealed ").encode()).decode())
    with socket(counselor, counselor_device) as host_ws, socket(client, client_device) as client_ws:
        assert json.loads(host_ws.recv(timeout=5))["type"] == "welcome"
        assert json.loads(client_ws.recv(timeout=5))["type"] == "welcome"
        client_ws.send(json.dumps({"type": "send", "id": "s1", "ciphertext": said}))
        while json.loads(host_ws.recv(timeout=5))["type"] != "message":
            pass

    story.call(
        "POST",
        f"/v1/accounts/{client_id}/disclosures",
        counselor,
        json={
            "basis": "imminent_harm",
            "recipient": story.keep("disclosure recipient", mark("County crisis team ")),
            "purpose": story.keep("disclosure purpose", mark("Safety check for ")),
            "description": story.keep("disclosure text", mark("Client described a plan ")),
            "disclosed_at": now.isoformat(),
        },
    )
    request = story.call(
        "POST",
        "/v1/me/rights-requests",
        client,
        json={
            "kind": "amendment",
            "details": story.keep("rights request text", mark("Correct the date of ")),
        },
    )
    admin_path = f"/v1/admin/rights-requests/{request['id']}"
    story.call("PATCH", admin_path, admin, json={"state": "in_review"})
    story.call(
        "POST",
        f"{admin_path}/extension",
        admin,
        json={"reason": story.keep("extension reason", mark("Records archived at "))},
    )
    story.call(
        "PATCH",
        admin_path,
        admin,
        json={"state": "denied", "reason": story.keep("denial reason", mark("Accurate as "))},
    )
    story.call(
        "POST",
        f"/v1/me/rights-requests/{request['id']}/disagreement",
        client,
        json={"statement": story.keep("disagreement", mark("I disagree because "))},
    )
    story.call(
        "PUT",
        "/v1/me/jurisdiction",
        client,
        json={"jurisdiction": story.keep("client jurisdiction", "US-CO")},
    )
    incident = story.call(
        "POST",
        "/v1/incidents",
        admin,
        json={
            "summary": story.keep("incident text", mark("Laptop stolen from ")),
            "discovered_at": now.isoformat(),
            "severity": "high",
            "affected_account_ids": [client_id],
        },
    )
    story.call(
        "POST",
        f"/v1/incidents/{incident['id']}/notify",
        admin,
        json={"message": story.keep("notice text", mark("Your records may have been seen "))},
    )
    notices = story.call("GET", "/v1/me/notices", client)
    assert any(story.markers["notice text"] == n["message"] for n in notices)
    # The lifecycle: a reset token and the passwords set with it, a login's device label.
    reset = story.call("POST", f"/v1/admin/accounts/{account_of(counselor)}/password-reset", admin)
    story.keep("reset token", reset["reset_token"])
    used = story.http.post(
        "/v1/auth/password-reset",
        json={
            "reset_token": reset["reset_token"],
            "new_password": story.keep("reset password", mark("harbour slowly ")),
        },
    )
    assert used.status_code == 204, used.text
    story.call(
        "PUT",
        "/v1/me/password",
        client,
        json={
            "current_password": story.markers["client password"],
            "new_password": story.keep("changed password", mark("meadow gently ")),
        },
    )
    firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
    again = story.http.post(
        "/v1/auth/token",
        data={
            "username": story.markers["client email"],
            "password": story.markers["changed password"],
        },
        headers={"User-Agent": firefox},
    )
    assert again.status_code == 200, again.text
    logins = story.call("GET", "/v1/me/logins", client)
    assert story.keep("login device", "Firefox on Linux") in [item["device"] for item in logins]
    # Second factors: the TOTP secret, the recovery codes, a passkey and the labels.
    started = story.call(
        "POST",
        "/v1/me/factors/totp",
        client,
        json={"label": story.keep("totp label", mark("Pixel of "))},
    )
    story.keep("totp secret", started["secret"])
    confirmed = story.call(
        "POST",
        f"/v1/me/factors/totp/{started['id']}/confirm",
        client,
        json={"code": pyotp.TOTP(started["secret"]).now()},
    )
    for i, code in enumerate(confirmed["recovery_codes"]):
        story.keep(f"recovery code {i}", code)
    client = confirmed["access_token"]
    authenticator = SoftAuthenticator()
    story.keep("passkey id", b64url(authenticator.credential_id))
    options = story.call("POST", "/v1/me/factors/webauthn/options", client)
    registered = story.call(
        "POST",
        "/v1/me/factors/webauthn",
        client,
        json={
            "credential": authenticator.create(options["options"]),
            "challenge_token": options["challenge_token"],
            "label": story.keep("passkey label", mark("YubiKey of ")),
        },
    )
    client = registered["access_token"]
    export = story.call("GET", "/v1/me/export", client)
    assert export["account"]["email"].lower() == story.markers["client email"].lower()
    assert export["checkins"][0]["callback_phone"] == story.markers["callback phone"]
    assert export["rooms"][0]["title"] == title
    assert (
        export["guardianship"]["minor"]["self_consent"]["basis"]
        == (story.markers["self-consent basis"])
    )
    roles = {p["role"] for p in export["rooms"][0]["participants"]}
    assert roles == {"host", "participant", "supervisor", "interpreter"}
    assert export["rights_requests"][0]["disagreement"]["text"] == story.markers["disagreement"]
    assert incident["notify_by_rule"]["jurisdiction"] == "US-CO"

    server.stop()
    stored = backend.stored_bytes()
    log = server.logs()
    assert b"$argon2id$" in stored
    assert "Application startup complete" in log
    for label, value in story.markers.items():
        for variant in {value, value.lower()}:
            assert variant.encode() not in stored, f"{label} is stored in clear"
            assert variant.encode().hex().encode() not in stored, f"{label} is stored (hex)"
            assert variant not in log, f"{label} appears in the server log"
