"""No input gives a server error: schemathesis against a live `confide serve`, as each role.

One server on PostgreSQL (the production database, and the stricter one),
with a practice in it: an admin, a counselor and a client, each logged in,
the consent documents published and accepted, a device each, a room with
both in it, a disclosure, an incident and its notice. Stateful testing then
has something to follow (schemathesis infers the links from the responses:
a room's `id` into `/v1/rooms/{room_id}`, and so on).

Schemathesis runs as its command does (`schemathesis run`: explicit
examples, boundary values, random inputs, then call sequences), once per
role with that role's access token, with the one check that matters here:
`not_a_server_error`. The budget is small and the generation deterministic
(same inputs every run), so that the whole run takes a couple of minutes on
two cores and a failure reproduces. tests/fuzz_hooks.py adds times at the
edges of the calendar to what it generates. Three operations end the caller's
own login (`POST /v1/auth/logout`, `DELETE /v1/me`, and `DELETE
/v1/me/logins/{login_id}`, which follows the current log-in's id from `GET
/v1/me/logins`): they run last, in a run of their own, with an account made
for it.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.identity import account_of, device_body
from tests.fixtures.processes import Server, backend_for, new_user, running_server

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
ROOT = Path(__file__).resolve().parent.parent
MAX_EXAMPLES = 25
RUN_TIMEOUT_S = 600
#: Operations that end the caller's login: fuzzed last, on their own.
ENDS_THE_LOGIN = ("POST /v1/auth/logout", "DELETE /v1/me", "DELETE /v1/me/logins/{login_id}")


@dataclass
class FuzzPractice:
    server: Server
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def post(self, path: str, token: str, body: Mapping[str, object]) -> dict[str, object]:
        response = self.server.http.post(
            path, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code in (200, 201, 202), response.text
        answer: dict[str, object] = response.json()
        return answer


def _device(practice: FuzzPractice, token: str) -> str:
    key = base64.urlsafe_b64encode(os.urandom(65)).rstrip(b"=").decode()
    device = practice.post("/v1/devices", token, device_body(account_of(token), "phone", key))
    return str(device["device_id"])


def _login(server: Server, email: str, password: str) -> str:
    return str(server.login(email, password)["access_token"])


def _admin(server: Server) -> str:
    email, password, _ = new_user("admin")
    created = server.cli("admin", "create", "--email", email, "--password-stdin", stdin=password)
    assert created.returncode == 0, created.stderr
    return _login(server, email, password)


def _counselor(practice: FuzzPractice, admin: str) -> tuple[str, str]:
    email, password, name = new_user("counselor")
    body = {"email": email, "password": password, "display_name": name, "role": "counselor"}
    created = practice.post("/v1/admin/accounts", admin, body)
    return str(created["id"]), _login(practice.server, email, password)


def _client(practice: FuzzPractice, documents: list[str]) -> tuple[str, str]:
    email, password, name = new_user("client")
    created = practice.server.register(email, password, name)
    token = _login(practice.server, email, password)
    for document in documents:
        practice.post("/v1/me/consents", token, {"document_id": document})
    return str(created["id"]), token


@pytest.fixture(scope="module")
def practice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzPractice]:
    root = tmp_path_factory.mktemp("fuzz")
    with (
        backend_for("postgresql", root / "data") as backend,
        # The fuzzer sends wrong passwords and codes by the hundred (log-in, second factors,
        # step-up, password change), all from one address: throttling them is tested
        # elsewhere, and here it would answer the practice's own log-ins 429.
        running_server(
            backend,
            root / "logs",
            CONFIDE_LOGIN_MAX_FAILURES_PER_ADDRESS="1000000",
            CONFIDE_LOGIN_MAX_FAILURES_PER_ACCOUNT="1000000",
        ) as server,
    ):
        practice = FuzzPractice(server)
        admin = _admin(server)
        documents = [
            str(
                practice.post(
                    "/v1/consent-documents",
                    admin,
                    {"kind": kind, "locale": "en", "title": kind, "body": f"The {kind} text."},
                )["id"]
            )
            for kind in ("informed_consent", "telehealth", "group_agreement")
        ]
        counselor_id, counselor = _counselor(practice, admin)
        client_id, client = _client(practice, documents)
        for token in (counselor, client):
            _device(practice, token)
        room = practice.post("/v1/rooms", counselor, {"title": "Session", "kind": "group"})
        invited = practice.post(
            f"/v1/rooms/{room['id']}/participants", counselor, {"account_id": client_id}
        )
        # The client accepts the invitation (and becomes the counselor's client).
        practice.post(f"/v1/me/invitations/{invited['invitation_id']}/accept", client, {})
        practice.post(
            f"/v1/accounts/{client_id}/disclosures",
            counselor,
            {
                "basis": "client_authorized",
                "recipient": "Dr B",
                "purpose": "referral",
                "description": "session notes",
                "disclosed_at": "2026-01-05T10:00:00Z",
            },
        )
        incident = practice.post(
            "/v1/incidents",
            admin,
            {
                "summary": "a lost laptop",
                "discovered_at": "2026-01-05T10:00:00Z",
                "severity": "low",
                "affected_account_ids": [client_id, counselor_id],
            },
        )
        practice.post(f"/v1/incidents/{incident['id']}/notify", admin, {"message": "We are sorry."})
        practice.tokens = {"admin": admin, "counselor": counselor, "client": client}
        yield practice


def schemathesis_run(practice: FuzzPractice, token: str, *filters: str) -> None:
    """Run `schemathesis run` against the server as `token`'s holder; fail on any finding."""
    report = practice.server.log_dir / f"schemathesis-{time.monotonic_ns()}"
    command = [
        str(SCHEMATHESIS),
        "--no-color",
        "run",
        f"{practice.base}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        # One worker: CPython 3.11's parser is not safe in threads (hypothesis
        # parses lambdas' sources: "AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--header",
        f"Authorization: Bearer {token}",
        "--report-dir",
        str(report),
        "--report",
        "ndjson",
        "--warnings",
        "off",
        *filters,
    ]
    report.mkdir(parents=True)
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        command,
        cwd=report,  # its own files (.schemathesis/) stay out of the work tree
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    (report / "output.txt").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, (
        f"schemathesis found server errors (exit {result.returncode}):\n"
        f"{result.stdout[-20000:]}\n{result.stderr[-5000:]}"
    )


def _not(*names: str) -> list[str]:
    return [arg for name in names for arg in ("--exclude-name", name)]


def _only(*names: str) -> list[str]:
    return [arg for name in names for arg in ("--include-name", name)]


@pytest.mark.parametrize("role", ["client", "counselor", "admin"])
def test_no_operation_answers_a_server_error(practice: FuzzPractice, role: str) -> None:
    schemathesis_run(practice, practice.tokens[role], *_not(*ENDS_THE_LOGIN))
    assert "Traceback" not in practice.server.logs()


def test_ending_the_login_answers_no_server_error(practice: FuzzPractice) -> None:
    email, password, name = new_user("leaving")
    practice.server.register(email, password, name)
    token = _login(practice.server, email, password)
    schemathesis_run(practice, token, *_only(*ENDS_THE_LOGIN))
    assert "Traceback" not in practice.server.logs()
