"""The backup runbook (docs/operations.md), for real, on SQLite and PostgreSQL.

A server runs and makes records (accounts, a room, an invitation accepted, a
disclosure, audit entries); `confide backup --keys` runs while it serves;
`confide restore --keys` puts the backup into a fresh database and a fresh
data dir; `confide audit verify` holds; a server on the restored copy logs the
client in and `GET /v1/me/export` opens the sealed records. Restores that
must not happen (no keys, the wrong keys, a damaged file, a database that is
not empty) are refused and write nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.ops.backup import BackupError, Manifest
from tests.fixtures.processes import (
    Backend,
    Server,
    backend_for,
    new_user,
    run_cli,
    running_server,
)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _make_records(server: Server) -> dict[str, Any]:
    """An admin, a counselor, a client in the counselor's room, and a disclosure."""
    admin_email, admin_password, _ = new_user("admin")
    created = server.cli(
        "admin", "create", "--email", admin_email, "--password-stdin", stdin=admin_password
    )
    assert created.returncode == 0, created.stderr
    admin = server.login(admin_email, admin_password)["access_token"]

    counselor_email, counselor_password, counselor_name = new_user("counselor")
    made = server.http.post(
        "/v1/admin/accounts",
        headers=_auth(admin),
        json={
            "email": counselor_email,
            "password": counselor_password,
            "display_name": counselor_name,
            "role": "counselor",
        },
    )
    assert made.status_code == 201, made.text
    counselor = server.login(counselor_email, counselor_password)["access_token"]

    client_email, client_password, client_name = new_user("client")
    client_id = server.register(client_email, client_password, client_name)["id"]
    client = server.login(client_email, client_password)["access_token"]

    start = datetime.now(UTC) + timedelta(days=1)
    title = f"Backup session {client_id[:8]}"
    room = server.http.post(
        "/v1/rooms",
        headers=_auth(counselor),
        json={
            "title": title,
            "kind": "individual",
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=1)).isoformat(),
        },
    )
    assert room.status_code == 201, room.text
    room_id = room.json()["id"]
    invited = server.http.post(
        f"/v1/rooms/{room_id}/participants", headers=_auth(counselor), json={"email": client_email}
    )
    assert invited.status_code == 202, invited.text
    pending = server.get("/v1/me/invitations", client).json()
    accepted = server.http.post(
        f"/v1/me/invitations/{pending[0]['id']}/accept", headers=_auth(client)
    )
    assert accepted.status_code == 200, accepted.text

    recipient = f"County services {client_id[:8]}"
    disclosed = server.http.post(
        f"/v1/accounts/{client_id}/disclosures",
        headers=_auth(counselor),
        json={
            "basis": "mandated_report",
            "recipient": recipient,
            "purpose": "a mandated report",
            "description": "the report as filed",
            "disclosed_at": datetime.now(UTC).isoformat(),
        },
    )
    assert disclosed.status_code == 201, disclosed.text
    export = server.get("/v1/me/export", client)
    assert export.status_code == 200, export.text
    return {
        "client_email": client_email,
        "client_password": client_password,
        "client_name": client_name,
        "room_id": room_id,
        "title": title,
        "recipient": recipient,
        "export": export.json(),
    }


def _audit_entries(backend: Backend) -> int:
    verified = run_cli(backend.env(), "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    found = re.search(r"audit log intact: (\d+) entries", verified.stdout)
    assert found is not None, verified.stdout
    return int(found.group(1))


def _database_is_empty(backend: Backend) -> bool:
    if backend.pg_name is None:
        return not backend.sqlite_path.exists()
    rows = backend.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    return bool(rows[0][0] == 0)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_backup_and_restore_as_the_runbook_says(kind: str, tmp_path: Path) -> None:
    backup_dir = tmp_path / "backups" / "confide-db"
    keys_dir = tmp_path / "vault" / "confide-keys"
    with backend_for(kind, tmp_path / "data") as source:
        with running_server(source, tmp_path / "logs-1") as server:
            records = _make_records(server)
            entries = _audit_entries(source)  # nothing writes until the backup is made
            # Online: the server keeps serving while the backup runs.
            done = server.cli("backup", str(backup_dir), "--keys", str(keys_dir))
            assert done.returncode == 0, done.stderr
            assert server.http.get("/readyz").status_code == 200
            later = server.http.post(
                "/v1/auth/token",
                data={"username": records["client_email"], "password": "not the password"},
            )
            assert later.status_code == 401  # audited after the backup: not in it
        assert _audit_entries(source) == entries + 1
        checkpoints_copy = tmp_path / "shipped-checkpoints.jsonl"
        checkpoints_copy.write_bytes((source.data_dir / "audit-checkpoints.jsonl").read_bytes())

    manifest = json.loads((backup_dir / "manifest.json").read_text())
    assert manifest["database"] == kind
    assert manifest["schema_revision"]
    assert manifest["master_key_ids"]
    dump = backup_dir / manifest["file"]
    assert dump.stat().st_mode & 0o077 == 0
    assert {p.name for p in keys_dir.iterdir()} == {"master_keys", "index_key", "signing"}
    assert list((keys_dir / "signing").glob("signing-*.pem"))
    # The database backup alone names no one: its personal fields are sealed.
    raw = dump.read_bytes()
    for secret in (records["client_email"], records["client_name"], records["title"]):
        assert secret.encode() not in raw

    with backend_for(kind, tmp_path / "restored") as target:
        env = target.env()
        # Without the keys, and with other keys, nothing is restored.
        refused = run_cli(env, "restore", str(backup_dir))
        assert refused.returncode == 1
        assert "no master keys" in refused.stderr
        other_keys = tmp_path / "other-keys"
        with backend_for("sqlite", tmp_path / "other") as other:
            assert run_cli(other.env(), "migrate").returncode == 0
            assert run_cli(other.env(), "backup", str(tmp_path / "o"), "--keys", str(other_keys))
        wrong = run_cli(env, "restore", str(backup_dir), "--keys", str(other_keys))
        assert wrong.returncode == 1
        assert "master key" in wrong.stderr
        assert _database_is_empty(target)
        assert not (target.data_dir / "keys").exists()

        restored = run_cli(env, "restore", str(backup_dir), "--keys", str(keys_dir))
        assert restored.returncode == 0, restored.stderr
        assert f"open all {manifest['data_keys']} data keys" in restored.stdout
        assert _audit_entries(target) == entries
        # The checkpoints shipped off the system: those up to the backup hold, the one the
        # source server signed on shutdown (after the refused log-in) anchors the lost entry.
        anchored = run_cli(env, "audit", "verify", "--checkpoints", str(checkpoints_copy))
        assert anchored.returncode == 1
        assert (
            f"audit log TRUNCATED at seq {entries + 1}: entries from seq {entries + 1} on are "
            f"missing; the chain ends at seq {entries}"
        ) in anchored.stdout

        again = run_cli(env, "restore", str(backup_dir), "--keys", str(keys_dir))
        assert again.returncode == 1
        assert "fresh data dir" in again.stderr or "empty database" in again.stderr

        with running_server(target, tmp_path / "logs-2") as server:
            client = server.login(records["client_email"], records["client_password"])
            export = server.get("/v1/me/export", client["access_token"])
            assert export.status_code == 200, export.text
            body = export.json()
            before = records["export"]
            assert body["account"]["email"] == records["client_email"]
            assert body["account"]["display_name"] == records["client_name"]
            assert [room["title"] for room in body["rooms"]] == [records["title"]]
            assert [d["recipient"] for d in body["disclosures"]] == [records["recipient"]]
            assert body["disclosures"] == before["disclosures"]
        # The log-in and the export are new entries on the restored chain.
        assert _audit_entries(target) > entries


def test_restore_refuses_a_damaged_backup(tmp_path: Path) -> None:
    with backend_for("sqlite", tmp_path / "data") as source:
        assert run_cli(source.env(), "migrate").returncode == 0
        done = run_cli(
            source.env(), "backup", str(tmp_path / "db"), "--keys", str(tmp_path / "keys")
        )
        assert done.returncode == 0, done.stderr
    dump = tmp_path / "db" / "confide.db"
    data = bytearray(dump.read_bytes())
    data[-1] ^= 1
    dump.write_bytes(bytes(data))
    with backend_for("sqlite", tmp_path / "restored") as target:
        refused = run_cli(
            target.env(), "restore", str(tmp_path / "db"), "--keys", str(tmp_path / "keys")
        )
        assert refused.returncode == 1
        assert "damaged" in refused.stderr
        assert _database_is_empty(target)
        assert not (target.data_dir / "keys").exists()


def test_a_schema_this_release_does_not_know_is_one_clear_line(tmp_path: Path) -> None:
    with backend_for("sqlite", tmp_path / "data") as backend:
        assert run_cli(backend.env(), "migrate").returncode == 0
        backend.query("UPDATE alembic_version SET version_num = '0999'")
        refused = run_cli(backend.env(), "migrate")
        assert refused.returncode == 2
        lines = [line for line in refused.stderr.splitlines() if line.startswith("confide:")]
        assert len(lines) == 1
        assert "'0999'" in lines[0]
        assert "alembic downgrade" in lines[0]
        assert "Traceback" not in refused.stderr


def test_backup_refuses_a_directory_in_use_and_keys_beside_the_database(tmp_path: Path) -> None:
    with backend_for("sqlite", tmp_path / "data") as source:
        env = source.env()
        assert run_cli(env, "migrate").returncode == 0
        same = run_cli(env, "backup", str(tmp_path / "b"), "--keys", str(tmp_path / "b"))
        assert same.returncode == 1
        assert "another directory" in same.stderr
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "x").write_text("x")
        full = run_cli(env, "backup", str(tmp_path / "full"))
        assert full.returncode == 1
        assert "not an empty directory" in full.stderr
        assert (tmp_path / "full" / "x").read_text() == "x"
        assert not (tmp_path / "b").exists()


def test_production_keys_come_from_their_files_not_the_data_dir(tmp_path: Path) -> None:
    """With keys configured, a restore leaves them out of the data dir and uses the files."""
    with backend_for("sqlite", tmp_path / "data") as source:
        assert run_cli(source.env(), "migrate").returncode == 0
        made = run_cli(
            source.env(), "backup", str(tmp_path / "db"), "--keys", str(tmp_path / "keys")
        )
        assert made.returncode == 0, made.stderr
    keys = tmp_path / "keys"
    configured = {
        "CONFIDE_MASTER_KEYS_FILE": str(keys / "master_keys"),
        "CONFIDE_INDEX_KEY_FILE": str(keys / "index_key"),
        "CONFIDE_SIGNING_KEY_FILE": str(keys / "signing"),
    }
    with backend_for("sqlite", tmp_path / "restored") as target:
        env = target.env(**configured)
        refused = run_cli(env, "restore", str(tmp_path / "db"), "--keys", str(keys))
        assert refused.returncode == 1
        assert "CONFIDE_SIGNING_KEY_FILE configured: keys do not go into the" in refused.stderr
        assert _database_is_empty(target)
        restored = run_cli(env, "restore", str(tmp_path / "db"))
        assert restored.returncode == 0, restored.stderr
        assert not (target.data_dir / "keys").exists()
        verified = run_cli(env, "audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr


def test_restore_refuses_a_keys_directory_with_a_bad_index_key(tmp_path: Path) -> None:
    with backend_for("sqlite", tmp_path / "data") as source:
        assert run_cli(source.env(), "migrate").returncode == 0
        made = run_cli(
            source.env(), "backup", str(tmp_path / "db"), "--keys", str(tmp_path / "keys")
        )
        assert made.returncode == 0, made.stderr
    (tmp_path / "keys" / "index_key").write_text("not-a-key\n")
    with backend_for("sqlite", tmp_path / "restored") as target:
        refused = run_cli(
            target.env(), "restore", str(tmp_path / "db"), "--keys", str(tmp_path / "keys")
        )
        assert refused.returncode == 1
        assert "index_key is not a 32-byte base64url key" in refused.stderr
        assert _database_is_empty(target)
        assert not (target.data_dir / "keys").exists()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
manifests = st.fixed_dictionaries(
    {
        "format": st.just(1),
        "database": st.sampled_from(["sqlite", "postgresql"]),
        "file": st.sampled_from(["confide.db", "confide.pgdump"]),
        "sha256": st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
        "schema_revision": st.none() | st.text(max_size=8),
        "master_key_ids": st.lists(st.text(max_size=8), max_size=3),
        "key_checks": st.lists(st.lists(st.text(max_size=8), min_size=2, max_size=2), max_size=3),
        "data_keys": st.integers(min_value=0, max_value=10**6),
        "created_at": st.text(max_size=30),
    }
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(manifest=manifests)
def test_a_manifest_reads_back_as_written(tmp_path: Path, manifest: dict[str, Any]) -> None:
    written = Manifest(**{k: v for k, v in manifest.items() if k != "format"})
    (tmp_path / "manifest.json").write_text(written.to_json())
    assert Manifest.read(tmp_path) == written


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    document=json_values
    | manifests.flatmap(
        lambda m: st.sampled_from(sorted(m)).flatmap(
            lambda key: json_values.map(lambda value: {**m, key: value})
        )
    )
)
def test_any_manifest_is_read_or_refused_with_one_line(tmp_path: Path, document: object) -> None:
    """A damaged or hand-edited manifest is a BackupError, never another exception."""
    (tmp_path / "manifest.json").write_text(json.dumps(document))
    try:
        Manifest.read(tmp_path)
        refused = ""
    except BackupError as error:
        refused = str(error)
    assert "\n" not in refused


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_restore_that_fails_midway_leaves_nothing_behind(kind: str, tmp_path: Path) -> None:
    """A dump that its manifest vouches for but the database tool refuses: no keys are left
    in the data dir and the database stays empty, so the restore can be run again."""
    with backend_for(kind, tmp_path / "data") as source:
        assert run_cli(source.env(), "migrate").returncode == 0
        made = run_cli(
            source.env(), "backup", str(tmp_path / "db"), "--keys", str(tmp_path / "keys")
        )
        assert made.returncode == 0, made.stderr
    manifest_path = tmp_path / "db" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    dump = tmp_path / "db" / manifest["file"]
    garbled = dump.read_bytes()[:64] + b"\0" * 4096
    dump.write_bytes(garbled)
    manifest["sha256"] = hashlib.sha256(garbled).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    with backend_for(kind, tmp_path / "restored") as target:
        refused = run_cli(
            target.env(), "restore", str(tmp_path / "db"), "--keys", str(tmp_path / "keys")
        )
        assert refused.returncode == 1
        assert refused.stderr.startswith("confide restore: ")
        assert "Traceback" not in refused.stderr
        assert _database_is_empty(target)
        assert not (target.data_dir / "keys").exists()
