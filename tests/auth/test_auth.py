from __future__ import annotations

import asyncio
import base64

import httpx
import pytest
from argon2 import PasswordHasher as Argon2

from app.core.clock import FrozenClock
from app.core.context import Context
from tests.fixtures.accounts import PASSWORD, User, register_client, unique_email


async def test_login_returns_a_bearer_pair(client: httpx.AsyncClient) -> None:
    user = await register_client(client)
    response = await client.post(
        "/v1/auth/token", data={"username": user.email, "password": user.password}
    )
    body = response.json()
    assert body["token_type"] == "bearer"
    assert 0 < body["expires_in"] <= 900
    assert body["refresh_token"]
    assert body["access_token"].count(".") == 2


async def test_unknown_email_and_wrong_password_get_the_same_answer(
    client: httpx.AsyncClient,
) -> None:
    user = await register_client(client)
    wrong_password = await client.post(
        "/v1/auth/token", data={"username": user.email, "password": "not the password at all"}
    )
    unknown_email = await client.post(
        "/v1/auth/token", data={"username": unique_email(), "password": "not the password at all"}
    )
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()
    assert wrong_password.json()["code"] == "invalid_credentials"


async def test_unknown_email_costs_a_password_hash(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown email runs the same argon2id verification as a wrong password.

    Counted, not timed: a wall-clock comparison is at the mercy of the machine's load.
    """
    user = await register_client(client)
    verified: list[str] = []
    real = Argon2.verify

    def counting(self: Argon2, hash_: str | bytes, password: str | bytes) -> bool:
        verified.append(str(hash_))
        return real(self, hash_, password)

    monkeypatch.setattr(Argon2, "verify", counting)
    for email in (user.email, unique_email()):
        response = await client.post(
            "/v1/auth/token", data={"username": email, "password": "x" * 14}
        )
        assert response.status_code == 401
    assert len(verified) == 2
    known, unknown = (h.split("$") for h in verified)
    # Both argon2id, with the same version and cost parameters: the same work.
    assert known[1:4] == unknown[1:4] == ["argon2id", "v=19", known[3]]
    assert known[3].startswith("m=")


async def test_email_log_in_ignores_case(client: httpx.AsyncClient) -> None:
    user = await register_client(client)
    response = await client.post(
        "/v1/auth/token", data={"username": user.email.upper(), "password": user.password}
    )
    assert response.status_code == 200


async def test_failed_logins_are_throttled_per_account(
    client: httpx.AsyncClient, ctx: Context, clock: FrozenClock
) -> None:
    user = await register_client(client)
    limit = ctx.settings.login_max_failures_per_account
    for _ in range(limit):
        bad = await client.post(
            "/v1/auth/token", data={"username": user.email, "password": "wrong password here"}
        )
        assert bad.status_code == 401
    throttled = await client.post(
        "/v1/auth/token", data={"username": user.email, "password": user.password}
    )
    assert throttled.status_code == 429
    assert throttled.json()["code"] == "rate_limited"
    assert 0 < int(throttled.headers["retry-after"]) <= ctx.settings.login_window_s + 1
    clock.advance(ctx.settings.login_window_s + 1)
    again = await client.post(
        "/v1/auth/token", data={"username": user.email, "password": user.password}
    )
    assert again.status_code == 200


async def test_failed_logins_are_throttled_per_address(
    client: httpx.AsyncClient, ctx: Context
) -> None:
    user = await register_client(client)
    for _ in range(ctx.settings.login_max_failures_per_address):
        await client.post(
            "/v1/auth/token", data={"username": unique_email(), "password": "wrong password"}
        )
    throttled = await client.post(
        "/v1/auth/token", data={"username": user.email, "password": user.password}
    )
    assert throttled.status_code == 429
    assert "retry-after" in throttled.headers


async def test_refresh_rotates_and_the_old_token_is_spent(client: httpx.AsyncClient) -> None:
    user = await register_client(client)
    first = await client.post("/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert first.status_code == 200
    pair = first.json()
    assert pair["refresh_token"] != user.refresh_token
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert me.status_code == 200
    second = await client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert second.status_code == 200


async def test_a_spent_refresh_token_revokes_its_family(client: httpx.AsyncClient) -> None:
    user = await register_client(client)
    stolen = user.refresh_token
    rotated = (await client.post("/v1/auth/refresh", json={"refresh_token": stolen})).json()
    replay = await client.post("/v1/auth/refresh", json={"refresh_token": stolen})
    assert replay.status_code == 401
    assert replay.json()["code"] == "refresh_reused"
    # The legitimate holder's newer token is dead too, and so is its access token.
    newer = await client.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert newer.status_code == 401
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {rotated['access_token']}"})
    assert me.status_code == 401
    # Another log-in of the same account is its own family and lives on.
    other = await client.post(
        "/v1/auth/token", data={"username": user.email, "password": user.password}
    )
    assert other.status_code == 200


async def test_refresh_token_dies_after_thirty_idle_minutes(
    client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    user = await register_client(client)
    clock.advance(29 * 60)
    alive = await client.post("/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert alive.status_code == 200
    clock.advance(30 * 60)
    dead = await client.post(
        "/v1/auth/refresh", json={"refresh_token": alive.json()["refresh_token"]}
    )
    assert dead.status_code == 401
    assert dead.json()["code"] == "token_expired"


async def test_unknown_refresh_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/auth/refresh", json={"refresh_token": "made-up"})
    assert response.status_code == 401
    assert response.json()["code"] == "token_invalid"


async def test_logout_ends_the_login(client: httpx.AsyncClient) -> None:
    user = await register_client(client)
    out = await client.post("/v1/auth/logout", headers=user.auth)
    assert out.status_code == 204
    me = await client.get("/v1/me", headers=user.auth)
    assert me.status_code == 401
    refresh = await client.post("/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert refresh.status_code == 401


async def test_access_token_expires(client: httpx.AsyncClient, clock: FrozenClock) -> None:
    user = await register_client(client)
    clock.advance(901)
    me = await client.get("/v1/me", headers=user.auth)
    assert me.status_code == 401
    assert me.json()["code"] == "token_expired"
    assert me.headers["www-authenticate"] == "Bearer"


async def test_concurrent_registrations_of_one_email_create_one_account(
    client: httpx.AsyncClient,
) -> None:
    email = unique_email()
    body = {"email": email, "password": PASSWORD, "display_name": "Racer"}
    answers = await asyncio.gather(*(client.post("/v1/accounts", json=body) for _ in range(4)))
    codes = sorted(a.status_code for a in answers)
    assert codes.count(201) == 1, [a.text for a in answers]
    assert all(code in (201, 409) for code in codes)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer ",
        "Bearer a.b.c",
        "Bearer " + "a" * 5000,
        "Basic dXNlcjpwYXNz",
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    ],
)
async def test_bad_bearer_tokens_get_401_problem(client: httpx.AsyncClient, header: str) -> None:
    response = await client.get("/v1/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "token_invalid"


async def test_room_audience_token_is_not_an_access_token(
    client: httpx.AsyncClient, ctx: Context, client_user: User
) -> None:
    from app.core.tokens import ROOM_AUDIENCE, ROOM_TYP

    forged = ctx.tokens.issue(
        audience=ROOM_AUDIENCE,
        typ=ROOM_TYP,
        subject=client_user.id,
        ttl=300,
        claims={"sid": "x", "role": "participant"},
    )
    response = await client.get("/v1/me", headers={"Authorization": f"Bearer {forged.token}"})
    assert response.status_code == 401


async def test_jwks_publishes_the_signing_key(client: httpx.AsyncClient, ctx: Context) -> None:
    jwks = (await client.get("/.well-known/jwks.json")).json()
    kids = {key["kid"] for key in jwks["keys"]}
    assert ctx.keys.signing_keys[0].kid in kids
    assert all(key["alg"] == "ES256" and "d" not in key for key in jwks["keys"])


async def test_the_high_s_twin_of_an_access_token_is_refused(client: httpx.AsyncClient) -> None:
    # ECDSA: (r, n - s) verifies whenever (r, s) does. We issue low s and refuse the twin,
    # so an access token has exactly one valid spelling.
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    user = await register_client(client)
    signing_input, _, signature = user.access_token.rpartition(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    s = int.from_bytes(raw[32:], "big")
    assert s <= n // 2
    twin_signature = raw[:32] + (n - s).to_bytes(32, "big")
    twin = f"{signing_input}.{base64.urlsafe_b64encode(twin_signature).rstrip(b'=').decode()}"
    assert (await client.get("/v1/me", headers=user.auth)).status_code == 200
    response = await client.get("/v1/me", headers={"Authorization": f"Bearer {twin}"})
    assert response.status_code == 401
    assert response.json()["code"] == "token_invalid"
