"""TOTP enrolment, the two-step log-in, replay, recovery codes and throttling."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from app.core.clock import FrozenClock
from app.core.context import Context
from app.models import AuthFactor
from tests.fixtures.accounts import User
from tests.mfa.helpers import claims_of, complete, enrol_totp, password_step, totp_code


async def test_totp_enrolment_and_two_step_log_in(
    client: httpx.AsyncClient, clock: FrozenClock, client_user: User
) -> None:
    assert claims_of(client_user.access_token)["amr"] == ["pwd"]
    secret, confirmed = await enrol_totp(client, client_user, clock)
    assert len(confirmed["recovery_codes"]) == 10
    assert confirmed["factor"]["kind"] == "totp"
    assert confirmed["factor"]["confirmed"]
    claims = claims_of(client_user.access_token)
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    assert claims["auth_time"] == int(clock.time())

    listed = await client.get("/v1/me/factors", headers=client_user.auth)
    assert listed.json()["recovery_codes_remaining"] == 10
    assert [f["kind"] for f in listed.json()["factors"]] == ["totp"]

    clock.advance(60)
    challenge = await password_step(client, client_user)
    assert challenge["methods"] == ["totp", "recovery_code"]
    assert 0 < challenge["expires_in"] <= 300
    assert claims_of(challenge["mfa_token"])["aud"] == "confide-mfa"
    code = totp_code(secret, clock)
    done = await complete(client, challenge["mfa_token"], method="totp", code=code)
    assert done.status_code == 200, done.text
    assert claims_of(done.json()["access_token"])["amr"] == ["pwd", "otp", "mfa"]
    # The refreshed pair carries the log-in's amr forward.
    refreshed = await client.post(
        "/v1/auth/refresh", json={"refresh_token": done.json()["refresh_token"]}
    )
    assert claims_of(refreshed.json()["access_token"])["amr"] == ["pwd", "otp", "mfa"]

    # The mfa token was spent: even with the next right code, it opens nothing.
    clock.advance(30)
    again = await complete(
        client, challenge["mfa_token"], method="totp", code=totp_code(secret, clock)
    )
    assert again.status_code == 401
    assert again.json()["code"] == "token_invalid"
    # The same code, replayed in a new log-in, is refused.
    clock.advance(-30)
    replay = await complete(
        client, (await password_step(client, client_user))["mfa_token"], method="totp", code=code
    )
    assert replay.status_code == 401
    assert replay.json()["code"] == "invalid_mfa"


async def test_a_wrong_confirmation_code_changes_nothing(
    client: httpx.AsyncClient, clock: FrozenClock, client_user: User
) -> None:
    started = await client.post("/v1/me/factors/totp", json={}, headers=client_user.auth)
    wrong = await client.post(
        f"/v1/me/factors/totp/{started.json()['id']}/confirm",
        json={"code": "000000" if totp_code(started.json()["secret"], clock) != "000000" else "1"},
        headers=client_user.auth,
    )
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "invalid_mfa"
    # No factor confirmed: the password alone still logs in.
    response = await client.post(
        "/v1/auth/token", data={"username": client_user.email, "password": client_user.password}
    )
    assert response.status_code == 200


async def test_a_recovery_code_works_once_and_regenerating_voids_the_old_set(
    client: httpx.AsyncClient, clock: FrozenClock, client_user: User
) -> None:
    _secret, confirmed = await enrol_totp(client, client_user, clock)
    first, second = confirmed["recovery_codes"][:2]
    # Typed in upper case without dashes: the same code.
    typed = first.replace("-", "").upper()
    done = await complete(
        client,
        (await password_step(client, client_user))["mfa_token"],
        method="recovery_code",
        code=typed,
    )
    assert done.status_code == 200, done.text
    used = await complete(
        client,
        (await password_step(client, client_user))["mfa_token"],
        method="recovery_code",
        code=first,
    )
    assert used.status_code == 401
    assert used.json()["code"] == "invalid_mfa"
    listed = await client.get("/v1/me/factors", headers=client_user.auth)
    assert listed.json()["recovery_codes_remaining"] == 9

    fresh = await client.post("/v1/me/recovery-codes", headers=client_user.auth)
    assert fresh.status_code == 200, fresh.text
    assert len(set(fresh.json()["recovery_codes"])) == 10
    old = await complete(
        client,
        (await password_step(client, client_user))["mfa_token"],
        method="recovery_code",
        code=second,
    )
    assert old.status_code == 401
    new = await complete(
        client,
        (await password_step(client, client_user))["mfa_token"],
        method="recovery_code",
        code=fresh.json()["recovery_codes"][0],
    )
    assert new.status_code == 200


async def test_second_factor_attempts_are_throttled(
    client: httpx.AsyncClient, ctx: Context, clock: FrozenClock, client_user: User
) -> None:
    secret, _ = await enrol_totp(client, client_user, clock)
    clock.advance(60)
    mfa_token = (await password_step(client, client_user))["mfa_token"]
    right = totp_code(secret, clock)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(ctx.settings.login_max_failures_per_account):
        refused = await complete(client, mfa_token, method="totp", code=wrong)
        assert refused.status_code == 401
        assert refused.json()["code"] == "invalid_mfa"
    throttled = await complete(client, mfa_token, method="totp", code=right)
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    # Once the window has passed, the right code is accepted again.
    clock.advance(ctx.settings.login_window_s + 1)
    mfa_token = (await password_step(client, client_user))["mfa_token"]
    done = await complete(client, mfa_token, method="totp", code=totp_code(secret, clock))
    assert done.status_code == 200, done.text


async def test_enrolling_the_first_factor_ends_the_other_log_ins(
    client: httpx.AsyncClient, clock: FrozenClock, client_user: User
) -> None:
    other = await client.post(
        "/v1/auth/token", data={"username": client_user.email, "password": client_user.password}
    )
    other_auth = {"Authorization": f"Bearer {other.json()['access_token']}"}
    assert (await client.get("/v1/me", headers=other_auth)).status_code == 200
    await enrol_totp(client, client_user, clock)
    assert (await client.get("/v1/me", headers=other_auth)).status_code == 401
    assert (
        await client.post("/v1/auth/refresh", json={"refresh_token": other.json()["refresh_token"]})
    ).status_code == 401
    # The log-in that enrolled goes on, with its new token.
    assert (await client.get("/v1/me", headers=client_user.auth)).status_code == 200


async def test_a_second_factor_needs_a_step_up_and_deleting_one_too(
    client: httpx.AsyncClient, clock: FrozenClock, client_user: User
) -> None:
    secret, confirmed = await enrol_totp(client, client_user, clock)
    clock.advance(601)
    refused = await client.post("/v1/me/factors/totp", json={}, headers=client_user.auth)
    assert refused.status_code == 401
    assert refused.json()["code"] == "step_up_required"
    deleted = await client.delete(
        f"/v1/me/factors/{confirmed['factor']['id']}", headers=client_user.auth
    )
    assert deleted.status_code == 401
    stepped = await client.post(
        "/v1/auth/step-up",
        json={"method": "totp", "code": totp_code(secret, clock)},
        headers=client_user.auth,
    )
    assert stepped.status_code == 200, stepped.text
    auth = {"Authorization": f"Bearer {stepped.json()['access_token']}"}
    deleted = await client.delete(f"/v1/me/factors/{confirmed['factor']['id']}", headers=auth)
    assert deleted.status_code == 204
    listed = await client.get("/v1/me/factors", headers=auth)
    assert listed.json() == {"factors": [], "recovery_codes_remaining": 0}
    response = await client.post(
        "/v1/auth/token", data={"username": client_user.email, "password": client_user.password}
    )
    assert response.status_code == 200


async def test_erasure_deletes_the_factors(
    client: httpx.AsyncClient, ctx: Context, clock: FrozenClock, client_user: User
) -> None:
    await enrol_totp(client, client_user, clock)

    async def rows() -> int:
        async with ctx.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(AuthFactor)) or 0)

    assert await rows() == 2  # the TOTP factor and the recovery codes
    erased = await client.delete("/v1/me", headers=client_user.auth)
    assert erased.status_code == 204, erased.text
    assert await rows() == 0
