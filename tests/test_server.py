"""End to end against the real `confide` command: a server subprocess and the CLI.

Each server runs `confide serve` on a free port with a fresh CONFIDE_DATA_DIR,
on the embedded default (SQLite in the data dir) or on a fresh PostgreSQL
database, and is always stopped by its fixture.
"""

from __future__ import annotations

import json
import re
import secrets
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.tokens import generate_signing_key_pem
from tests.fixtures.processes import (
    CLI_TIMEOUT_S,
    CONFIDE,
    DEV_KEY_WARNING,
    Backend,
    Server,
    backend_for,
    free_port,
    marker,
    new_user,
    running_server,
)

# -- fixtures ------------------------------------------------------------------------

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="module", params=BACKENDS)
def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server per backend for the tests that only add to its state."""
    root = tmp_path_factory.mktemp(f"shared-{request.param}")
    with (
        backend_for(str(request.param), root / "data") as backend,
        running_server(backend, root / "logs") as server,
    ):
        yield server


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend_for(str(request.param), tmp_path / "data") as found:
        yield found


@pytest.fixture
def server(backend: Backend, tmp_path: Path) -> Iterator[Server]:
    with running_server(backend, tmp_path / "logs") as started:
        yield started


# -- 1. the README flow ----------------------------------------------------------------


def test_readme_flow(shared_server: Server) -> None:
    server = shared_server
    email, password, name = new_user("readme")
    created = server.register(email, password, name)
    tokens = server.login(email, password)
    me = server.me(tokens["access_token"])
    assert me["id"] == created["id"]
    assert me["email"] == email
    assert me["display_name"] == name
    assert me["role"] == "client"

    docs = server.http.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    openapi = server.http.get("/openapi.json")
    assert openapi.status_code == 200
    assert "/v1/accounts" in openapi.json()["paths"]

    for response in (
        docs,
        openapi,
        server.http.get("/healthz"),
        server.http.get("/v1/me"),  # an error answer too
        server.get("/v1/me", tokens["access_token"]),
    ):
        assert "server" not in response.headers, response.url

    keys = server.backend.data_dir / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) & 0o077 == 0
    (signing_key,) = (keys / "signing").glob("signing-*.pem")  # named by its start time
    assert stat.S_IMODE((keys / "signing").stat().st_mode) & 0o077 == 0
    for path in (keys / "master_keys", keys / "index_key", signing_key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    assert DEV_KEY_WARNING in server.stderr()


# -- 2. production refuses generated keys -------------------------------------------


def test_production_without_keys_refuses_to_start(tmp_path: Path) -> None:
    backend = Backend("sqlite", tmp_path / "data")
    # It exits (the timeout would raise), rather than serving: no wall-clock bound,
    # which a loaded machine would break.
    result = subprocess.run(
        [str(CONFIDE), "serve", "--host", "127.0.0.1", "--port", str(free_port())],
        env=backend.env(CONFIDE_ENV="production"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert result.returncode != 0
    assert "CONFIDE_MASTER_KEYS" in result.stderr
    assert DEV_KEY_WARNING not in result.stderr + result.stdout
    assert not (backend.data_dir / "keys").exists()
    assert not backend.sqlite_path.exists()


def test_production_without_a_passkey_domain_refuses_to_start(tmp_path: Path) -> None:
    signing = tmp_path / "signing_key.pem"
    signing.write_bytes(generate_signing_key_pem())
    signing.chmod(0o600)
    backend = Backend("sqlite", tmp_path / "data")
    result = subprocess.run(
        [str(CONFIDE), "serve", "--host", "127.0.0.1", "--port", str(free_port())],
        env=backend.env(
            CONFIDE_ENV="production",
            CONFIDE_MASTER_KEYS="k1:" + secrets.token_urlsafe(32),
            CONFIDE_INDEX_KEY=secrets.token_urlsafe(32),
            CONFIDE_SIGNING_KEY_FILE=str(signing),
        ),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        "confide: CONFIDE_ENV=production requires CONFIDE_WEBAUTHN_RP_ID and"
        " CONFIDE_WEBAUTHN_ORIGINS (passkeys)"
    )
    assert not backend.sqlite_path.exists()


def test_production_with_configured_keys_serves(tmp_path: Path) -> None:
    """What docker-compose.yml configures: keys from the environment and a PEM file."""
    signing = tmp_path / "signing_key.pem"
    signing.write_bytes(generate_signing_key_pem())
    signing.chmod(0o600)
    backend = Backend("sqlite", tmp_path / "data")
    env = {
        "CONFIDE_ENV": "production",
        "CONFIDE_MASTER_KEYS": "k1:" + secrets.token_urlsafe(32),
        "CONFIDE_INDEX_KEY": secrets.token_urlsafe(32),
        "CONFIDE_SIGNING_KEY_FILE": str(signing),
        "CONFIDE_WEBAUTHN_RP_ID": "localhost",
        "CONFIDE_WEBAUTHN_ORIGINS": "http://localhost:8000",
    }
    with running_server(backend, tmp_path / "logs", **env) as server:
        email, password, name = new_user("prod")
        server.register(email, password, name)
        assert server.me(server.login(email, password)["access_token"])["email"] == email
        assert not (backend.data_dir / "keys").exists()
        assert "development keys" not in server.logs().lower()
        # Neither metrics setting: nothing serves /metrics, and the start says so.
        assert server.http.get("/metrics").status_code == 404
        warned = [line for line in server.stderr().splitlines() if "CONFIDE_METRICS_TOKEN" in line]
        assert len(warned) == 1
        assert json.loads(warned[0])["level"] == "WARNING"


# -- 3. the first admin, from the command line --------------------------------------------


def test_admin_create_from_the_command_line(shared_server: Server) -> None:
    server = shared_server
    email, password, _ = new_user("admin")
    result = server.cli(
        "admin", "create", "--email", email, "--password-stdin", stdin=password + "\n"
    )
    assert result.returncode == 0, result.stderr
    admin_id = result.stdout.strip()
    assert str(uuid.UUID(admin_id)) == admin_id
    assert password not in result.stdout + result.stderr

    token = server.login(email, password)["access_token"]
    me = server.me(token)
    assert (me["id"], me["email"], me["role"]) == (admin_id, email, "admin")

    response = server.get("/v1/admin/audit?limit=1000", token)
    assert response.status_code == 200, response.text
    entries = response.json()
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    created = [e for e in entries if e["action"] == "account.create" and e["target"] == admin_id]
    assert created, entries
    assert any(e["action"] == "auth.login" and e["target"] == admin_id for e in entries)

    weak = server.cli(
        "admin", "create", "--email", new_user("weak")[0], "--password-stdin", stdin="password\n"
    )
    assert weak.returncode != 0
    assert "weak_password" in weak.stderr


# -- 4. the audit chain: intact, edited, deleted ---------------------------------------------


def test_audit_verify_detects_tampering(server: Server, backend: Backend) -> None:
    email, password, _ = new_user("auditor")
    created = server.cli("admin", "create", "--email", email, "--password-stdin", stdin=password)
    assert created.returncode == 0, created.stderr
    admin_token = server.login(email, password)["access_token"]
    client = new_user("client")
    server.register(*client)
    server.me(server.login(client[0], client[1])["access_token"])

    intact = server.cli("audit", "verify")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "intact" in intact.stdout

    def api_verify() -> dict[str, Any]:
        response = server.get("/v1/admin/audit/verify", admin_token)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    assert api_verify()["ok"] is True

    (original,) = backend.query("SELECT payload FROM audit_log WHERE seq = ?", 2)
    backend.query("UPDATE audit_log SET payload = ? WHERE seq = ?", b"\x00" * 40, 2)
    edited = server.cli("audit", "verify")
    assert edited.returncode == 1, edited.stdout + edited.stderr
    assert "seq 2" in edited.stdout
    body = api_verify()
    assert body["ok"] is False
    assert body["broken_seq"] == 2

    backend.query("UPDATE audit_log SET payload = ? WHERE seq = ?", original[0], 2)
    assert server.cli("audit", "verify").returncode == 0
    assert api_verify()["ok"] is True

    backend.query("DELETE FROM audit_log WHERE seq = ?", 2)
    deleted = server.cli("audit", "verify")
    assert deleted.returncode == 1
    assert "seq 2" in deleted.stdout
    body = api_verify()
    assert (body["ok"], body["broken_seq"]) == (False, 2)


# -- 5. master key rotation under a running server --------------------------------------------


def newest_kid(backend: Backend) -> str:
    entries = (backend.data_dir / "keys" / "master_keys").read_text().strip().split(",")
    return entries[-1].split(":", 1)[0].strip()


def rotate(server: Server) -> int:
    result = server.cli("keys", "rotate")
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"re-wrapped (\d+) data keys", result.stdout)
    assert found, result.stdout
    return int(found.group(1))


def test_keys_rotate_while_serving(server: Server, backend: Backend) -> None:
    first_kid = newest_kid(backend)
    users = [new_user("before")]
    server.register(*users[0])
    # An account whose data key the server never saw: made by the CLI, so the
    # server must unwrap it after the rotation with the new master key.
    staff = new_user("staff")
    made = server.cli(
        "admin",
        "create",
        "--email",
        staff[0],
        "--display-name",
        staff[2],
        "--password-stdin",
        stdin=staff[1],
    )
    assert made.returncode == 0, made.stderr

    assert rotate(server) >= 1
    assert newest_kid(backend) != first_kid
    # Before anything else makes the server read the key file again: the
    # staff key is now wrapped under a master key the server has not loaded.
    me = server.me(server.login(staff[0], staff[1])["access_token"])
    assert (me["email"], me["display_name"]) == (staff[0], staff[2])
    users.append(new_user("after"))
    server.register(*users[-1])

    def check_everyone() -> None:
        for email, password, name in [*users, staff]:
            me = server.me(server.login(email, password)["access_token"])
            assert (me["email"], me["display_name"]) == (email, name)
        kids = {kid for (kid,) in backend.query("SELECT master_kid FROM data_keys")}
        assert kids == {newest_kid(backend)}

    check_everyone()

    second_kid = newest_kid(backend)
    rows = len(backend.query("SELECT id FROM data_keys"))
    assert rotate(server) == rows
    assert newest_kid(backend) != second_kid
    keyring = (backend.data_dir / "keys" / "master_keys").read_text().strip().split(",")
    assert len(keyring) == 3
    users.append(new_user("later"))
    server.register(*users[-1])
    check_everyone()


# -- 6. what a copy of the database and the log would show ------------------------------------


def test_database_dump_and_log_hold_no_plaintext(server: Server, backend: Backend) -> None:
    secrets_: dict[str, str] = {}
    for who in ("alice", "bob"):
        tag = uuid.uuid4().hex[:12]
        email = f"Dump.{who.title()}-{tag}@Example.org"
        name = f"{who.title()} Dumpname {marker('')}"
        password = f"lantern {marker('')} quietly"
        server.register(email, password, name)
        first = server.login(email.lower(), password)
        second = server.http.post(
            "/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        assert second.status_code == 200, second.text
        me = server.me(second.json()["access_token"])
        assert me["display_name"] == name
        wrong = f"wrong {marker('')} guess"
        refused = server.http.post("/v1/auth/token", data={"username": email, "password": wrong})
        assert refused.status_code == 401
        secrets_ |= {
            f"{who} email tag": tag,
            f"{who} email": email,
            f"{who} email lowercase": email.lower(),
            f"{who} email as returned": me["email"],
            f"{who} name": name,
            f"{who} password": password,
            f"{who} wrong password": wrong,
            f"{who} access token": first["access_token"],
            f"{who} refresh token": first["refresh_token"],
            f"{who} second access token": second.json()["access_token"],
            f"{who} second refresh token": second.json()["refresh_token"],
        }

    server.stop()  # checkpoints SQLite's write-ahead log into the file
    stored = backend.stored_bytes()
    log = server.logs()
    assert b"$argon2id$" in stored  # the dump holds the accounts, just nothing in clear
    assert "Application startup complete" in log  # the log was captured
    for label, value in secrets_.items():
        encoded = value.encode()
        assert encoded not in stored, f"{label} is stored in clear"
        assert encoded.hex().encode() not in stored, f"{label} is stored in clear (hex)"
        assert value not in log, f"{label} appears in the server log"
