"""`confide demo`: on a running development server it makes a practice the README's
web-client walk-through logs in to; production refuses it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from app.cli import cmd_demo
from app.core.config import Settings
from tests.fixtures.processes import backend_for, run_cli, running_server


def _logins(output: str) -> dict[str, tuple[str, str]]:
    found = re.findall(r"^  (counselor|client) +(\S+@example\.org) +password: (\S+)$", output, re.M)
    return {role: (email, password) for role, email, password in found}


def test_demo_makes_a_practice_the_web_client_can_use(tmp_path: Path) -> None:
    with (
        backend_for("sqlite", tmp_path / "data") as backend,
        running_server(backend, tmp_path / "logs") as server,
    ):
        base = f"http://127.0.0.1:{server.port}"
        first = server.cli("demo", "--url", base)
        assert first.returncode == 0, first.stderr
        assert f"{base}/app/" in first.stdout
        logins = _logins(first.stdout)
        assert set(logins) == {"counselor", "client"}

        client = server.login(*logins["client"])["access_token"]
        invitations = server.get("/v1/me/invitations", client).json()
        assert len(invitations) == 1
        documents = server.http.get("/v1/consent-documents").json()
        assert {d["kind"] for d in documents} == {"informed_consent", "telehealth"}
        counselor = server.login(*logins["counselor"])["access_token"]
        assert server.me(counselor)["role"] == "counselor"
        (room,) = server.get("/v1/rooms", counselor).json()
        assert room["id"] == invitations[0]["room_id"]
        assert room["status"] == "open"

        # A second run makes new people and a new room, and publishes nothing again.
        second = server.cli("demo", "--url", base)
        assert second.returncode == 0, second.stderr
        assert _logins(second.stdout)["client"] != logins["client"]
        again = server.http.get("/v1/consent-documents").json()
        assert sorted(d["id"] for d in again) == sorted(d["id"] for d in documents)


def test_demo_without_a_server_says_so_without_a_traceback(tmp_path: Path) -> None:
    with backend_for("sqlite", tmp_path / "data") as backend:
        done = run_cli(backend.env(), "demo", "--url", "http://127.0.0.1:9")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("confide demo: no Confide server answers at http://127.0.0.1:9")


def test_production_refuses_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(env="production", password_memory_kib=19_456, password_time_cost=2)
    code = cmd_demo(settings, argparse.Namespace(url="http://127.0.0.1:9"))
    assert code == 2
    assert "development only" in capsys.readouterr().err
