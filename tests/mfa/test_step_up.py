"""Step-up (RFC 9470): an act guarded by `StepUpPrincipal` (the export) after a stale log-in."""

from __future__ import annotations

import httpx

from app.core.clock import FrozenClock
from app.core.context import Context
from tests.fixtures.accounts import User
from tests.mfa.helpers import claims_of, enrol_totp, totp_code


def _assert_step_up_required(response: httpx.Response, max_age: int) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "step_up_required"
    assert response.json()["max_age"] == max_age
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="insufficient_user_authentication"' in challenge
    assert f"max_age={max_age}" in challenge


async def test_a_stale_password_log_in_steps_up_with_the_password(
    client: httpx.AsyncClient, ctx: Context, clock: FrozenClock, client_user: User
) -> None:
    max_age = ctx.settings.step_up_max_age
    assert (await client.get("/v1/me/export", headers=client_user.auth)).status_code == 200
    clock.advance(max_age + 1)
    _assert_step_up_required(await client.get("/v1/me/export", headers=client_user.auth), max_age)
    wrong = await client.post(
        "/v1/auth/step-up",
        json={"method": "password", "password": "not the password at all"},
        headers=client_user.auth,
    )
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "invalid_mfa"
    stepped = await client.post(
        "/v1/auth/step-up",
        json={"method": "password", "password": client_user.password},
        headers=client_user.auth,
    )
    assert stepped.status_code == 200, stepped.text
    assert claims_of(stepped.json()["access_token"])["auth_time"] == int(clock.time())
    fresh = {"Authorization": f"Bearer {stepped.json()['access_token']}"}
    assert (await client.get("/v1/me/export", headers=fresh)).status_code == 200


async def test_with_a_factor_the_step_up_needs_the_factor(
    client: httpx.AsyncClient, ctx: Context, clock: FrozenClock, client_user: User
) -> None:
    secret, _ = await enrol_totp(client, client_user, clock)
    max_age = ctx.settings.step_up_max_age
    clock.advance(max_age + 1)
    _assert_step_up_required(await client.get("/v1/me/export", headers=client_user.auth), max_age)
    password = await client.post(
        "/v1/auth/step-up",
        json={"method": "password", "password": client_user.password},
        headers=client_user.auth,
    )
    assert password.status_code == 401
    assert password.json()["code"] == "invalid_mfa"
    stepped = await client.post(
        "/v1/auth/step-up",
        json={"method": "totp", "code": totp_code(secret, clock)},
        headers=client_user.auth,
    )
    assert stepped.status_code == 200, stepped.text
    assert claims_of(stepped.json()["access_token"])["amr"] == ["pwd", "otp", "mfa"]
    fresh = {"Authorization": f"Bearer {stepped.json()['access_token']}"}
    exported = await client.get("/v1/me/export", headers=fresh)
    assert exported.status_code == 200
    # The export lists the factor, never its secret.
    assert exported.json()["factors"]["recovery_codes_remaining"] == 10
    assert [f["kind"] for f in exported.json()["factors"]["factors"]] == ["totp"]
    assert secret not in exported.text
    # The log-in's refreshed tokens carry the step-up's auth_time forward.
    assert claims_of(stepped.json()["access_token"])["auth_time"] == int(clock.time())
