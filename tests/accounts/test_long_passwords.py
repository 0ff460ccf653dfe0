"""Passwords of 73 to 256 characters: the guessability check scores the first 72.

zxcvbn raises past 72 characters (its `max_length`); that became a 500 on
registration, on admin account creation and in `confide admin create`.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest

from tests.fixtures.accounts import User, login, unique_email
from tests.fixtures.processes import Backend, run_cli


def long_password(length: int) -> str:
    """Random words, then random letters: strong, and exactly `length` characters."""
    words = " ".join(["staple", "horse", "orbit", "velvet", "canyon"])
    tail = "".join(secrets.choice("abcdefghijkmnopqrstuvwxyz") for _ in range(length))
    return (words + " " + tail)[:length]


LENGTHS = [72, 73, 100, 255, 256]


@pytest.mark.parametrize("length", LENGTHS)
async def test_a_long_password_registers_and_logs_in(
    client: httpx.AsyncClient, length: int
) -> None:
    password = long_password(length)
    email = unique_email()
    response = await client.post(
        "/v1/accounts", json={"email": email, "password": password, "display_name": "Long"}
    )
    assert response.status_code == 201, response.text
    user = await login(client, User(response.json()["id"], email, password, "Long", "client"))
    assert (await client.get("/v1/me", headers=user.auth)).status_code == 200


@pytest.mark.parametrize("length", [73, 256])
async def test_an_admin_creates_an_account_with_a_long_password(
    client: httpx.AsyncClient, admin: User, length: int
) -> None:
    body = {
        "email": unique_email("counselor"),
        "password": long_password(length),
        "display_name": "Dr Long",
        "role": "counselor",
    }
    response = await client.post("/v1/admin/accounts", json=body, headers=admin.auth)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "password",
    ["a" * 73, "password" * 20, "a" * 256, "x" * 257],
    ids=["aaa-73", "password-160", "aaa-256", "xxx-257"],
)
async def test_a_long_weak_password_is_still_refused(
    client: httpx.AsyncClient, password: str
) -> None:
    response = await client.post(
        "/v1/accounts",
        json={"email": unique_email(), "password": password, "display_name": "Weak"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "weak_password"


def test_confide_admin_create_takes_a_long_password(tmp_path: Path) -> None:
    env = Backend("sqlite", tmp_path / "data").env()
    created = run_cli(
        env,
        "admin",
        "create",
        "--email",
        unique_email("admin"),
        "--password-stdin",
        stdin=long_password(200) + "\n",
    )
    assert created.returncode == 0, created.stderr
    assert "Traceback" not in created.stderr
