"""Rotating the signing key while serving: the new key signs, every token signed
before keeps working until it expires, the JWKS publishes both keys until the
old one's last token has expired, and audit checkpoints signed by the old key
keep verifying.

Through the ASGI app (SQLite and PostgreSQL, the test's clock), and against a
real `confide serve` with the real `confide keys rotate-signing` command.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from app.core.clock import FrozenClock
from app.core.context import Context
from app.core.keys import signing_key_name
from app.core.tokens import (
    MAX_TOKEN_TTL,
    RELOAD_INTERVAL_SECONDS,
    RETIREMENT_GRACE_SECONDS,
    generate_signing_key_pem,
    load_signing_key,
)
from tests.fixtures.accounts import login, register_client
from tests.fixtures.processes import Backend, Server, new_user, run_cli, running_server


def kid_of(token: str) -> str:
    head = token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]
    return kid


async def published(client: httpx.AsyncClient) -> list[str]:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return [key["kid"] for key in response.json()["keys"]]


async def me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})


async def test_a_token_signed_before_a_rotation_works_until_it_expires(
    client: httpx.AsyncClient, ctx: Context, clock: FrozenClock
) -> None:
    user = await register_client(client)
    before = user.access_token
    (old_kid,) = await published(client)
    assert kid_of(before) == old_kid
    checkpoint = ctx.tokens.sign_checkpoint(seq=1, head="ab" * 32)

    # `confide keys rotate-signing`, as another process would run it, then wait for the
    # running app to re-read its keys.
    new = ctx.keys.source.add_signing_key(int(clock.time()))
    clock.advance(new.active_from - clock.time() + 1)
    await asyncio.sleep(RELOAD_INTERVAL_SECONDS + 0.1)

    after = (await login(client, user)).access_token
    assert kid_of(after) == new.kid
    assert await published(client) == [new.kid, old_kid]
    assert (await me(client, before)).status_code == 200
    assert (await me(client, after)).status_code == 200

    # The old token lives its whole life out, and not a second more.
    issued_at = json.loads(base64.urlsafe_b64decode(before.split(".")[1] + "=="))["iat"]
    clock.advance(issued_at + ctx.settings.access_token_ttl - 1 - clock.time())
    assert (await me(client, before)).status_code == 200
    clock.advance(1)
    expired = await me(client, before)
    assert (expired.status_code, expired.json()["code"]) == (401, "token_expired")

    # Once the new key has signed for longer than any token lives, the old one is retired:
    # gone from the JWKS and from token verification; its checkpoints still verify.
    assert RETIREMENT_GRACE_SECONDS > MAX_TOKEN_TTL >= ctx.settings.access_token_ttl
    clock.advance(new.active_from + RETIREMENT_GRACE_SECONDS - clock.time())
    assert await published(client) == [new.kid]
    assert ctx.tokens.verify_checkpoint(checkpoint.token).kid == old_kid
    latest = (await login(client, user)).access_token
    assert (await me(client, latest)).status_code == 200


# -- the real command line, against a real server ----------------------------------------


def jwks_kids(server: Server) -> list[str]:
    response = server.http.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return [key["kid"] for key in response.json()["keys"]]


def eventually(check: Callable[[], bool], within: float = 30.0) -> None:
    """Polls `check` until it holds: the server re-reads its keys every
    RELOAD_INTERVAL_SECONDS, and a loaded machine may take longer to get there."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "the server did not re-read its keys in time"
        time.sleep(RELOAD_INTERVAL_SECONDS / 4)


def rotate(server: Server, *args: str) -> str:
    result = server.cli("keys", "rotate-signing", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"new signing key (\S+) in ", result.stdout)
    assert found, result.stdout
    return found.group(1)


def test_keys_rotate_signing_while_serving(tmp_path: Path) -> None:
    backend = Backend("sqlite", tmp_path / "data")
    with running_server(backend, tmp_path / "logs") as server:
        email, password, name = new_user("rotate")
        server.register(email, password, name)
        before = server.login(email, password)
        (old_kid,) = jwks_kids(server)
        assert kid_of(before["access_token"]) == old_kid

        new_kid = rotate(server)
        assert new_kid != old_kid
        # No restart: the server re-reads its keys.
        eventually(lambda: jwks_kids(server) == [new_kid, old_kid])

        after = server.login(email, password)
        assert kid_of(after["access_token"]) == new_kid
        assert jwks_kids(server) == [new_kid, old_kid]
        assert server.me(before["access_token"])["email"] == email
        assert server.me(after["access_token"])["email"] == email
        # A refresh token from before the rotation rotates into a new-key access token.
        refreshed = server.http.post(
            "/v1/auth/refresh", json={"refresh_token": before["refresh_token"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        assert kid_of(refreshed.json()["access_token"]) == new_kid

        listed = server.cli("keys", "list-signing")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0].split()[:2] == ["verifying", old_kid]
        assert "its tokens verify until" in lines[0]
        assert lines[1].split()[:2] == ["signing", new_kid]
        keys = backend.data_dir / "keys" / "signing"
        assert len(list(keys.glob("signing-*.pem"))) == 2
        assert "signing keys not re-read" not in server.logs()


def production_env(signing: Path) -> dict[str, str]:
    return {
        "CONFIDE_ENV": "production",
        "CONFIDE_MASTER_KEYS": "k1:" + secrets.token_urlsafe(32),
        "CONFIDE_INDEX_KEY": secrets.token_urlsafe(32),
        "CONFIDE_SIGNING_KEY_FILE": str(signing),
        "CONFIDE_WEBAUTHN_RP_ID": "localhost",
        "CONFIDE_WEBAUTHN_ORIGINS": "http://localhost:8000",
    }


def test_production_key_directory_with_a_prepublished_key(tmp_path: Path) -> None:
    """CONFIDE_SIGNING_KEY_FILE naming a directory; `--activate-in` publishes the new key
    first (time to copy it to every instance) and signs with it only later."""
    directory = tmp_path / "signing"
    directory.mkdir(mode=0o700)
    pem = generate_signing_key_pem()
    first = directory / signing_key_name(int(time.time()) - 3600)
    first.write_bytes(pem)
    first.chmod(0o600)
    old_kid = load_signing_key(pem).kid
    backend = Backend("sqlite", tmp_path / "data")
    with running_server(backend, tmp_path / "logs", **production_env(directory)) as server:
        email, password, name = new_user("prod")
        server.register(email, password, name)
        before = server.login(email, password)["access_token"]

        delay = 12
        new_kid = rotate(server, "--activate-in", str(delay))
        rotated_at = time.monotonic()
        # Published and verifying, not yet signing.
        eventually(lambda: jwks_kids(server) == [old_kid, new_kid], within=delay / 2)
        assert kid_of(server.login(email, password)["access_token"]) == old_kid
        assert time.monotonic() - rotated_at < delay

        eventually(lambda: jwks_kids(server) == [new_kid, old_kid], within=delay + 30)
        after = server.login(email, password)["access_token"]
        assert kid_of(after) == new_kid
        assert jwks_kids(server) == [new_kid, old_kid]
        for token in (before, after):
            assert server.me(token)["email"] == email
        assert not (backend.data_dir / "keys").exists()


def test_rotate_signing_refuses_a_single_key_file(tmp_path: Path) -> None:
    signing = tmp_path / "signing_key.pem"
    signing.write_bytes(generate_signing_key_pem())
    env: dict[str, Any] = Backend("sqlite", tmp_path / "data").env(**production_env(signing))

    result = run_cli(env, "keys", "rotate-signing")
    assert result.returncode == 2
    assert "names one file" in result.stderr
    assert "Rotating the signing key" in result.stderr
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".pem"] == ["signing_key.pem"]
