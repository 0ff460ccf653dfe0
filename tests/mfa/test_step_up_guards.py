"""Every sensitive act asks for a recent authentication, and refuses a stale one changing nothing.

The list is the contract's (docs/PROTOCOL.md, "Second factors and step-up"): the OpenAPI
document must name exactly these operations with 401 `step_up_required`, and each refuses a
log-in older than `step_up_max_age` before it reads its body or its target.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.core.clock import FrozenClock
from app.core.context import Context
from tests.fixtures.accounts import User, login, register_client
from tests.mfa.helpers import enrol_totp, totp_code

ANY_ID = "0b8e3a52-5d3e-4c1a-9a53-3f0d2f7c9e11"

#: (method, path, who calls it): the acts the issue names, as the API spells them.
GUARDED: list[tuple[str, str, str]] = [
    ("get", "/v1/me/export", "client"),
    ("delete", "/v1/me", "client"),
    ("post", "/v1/accounts/{account_id}/disclosures", "admin"),
    ("post", "/v1/incidents/{incident_id}/notify", "admin"),
    ("post", "/v1/admin/accounts", "admin"),
    ("post", "/v1/admin/accounts/{account_id}/password-reset", "admin"),
    ("post", "/v1/admin/accounts/{account_id}/disable", "admin"),
    ("post", "/v1/admin/accounts/{account_id}/enable", "admin"),
    ("put", "/v1/admin/accounts/{account_id}/role", "admin"),
    ("put", "/v1/admin/accounts/{account_id}/licensure", "admin"),
    ("put", "/v1/admin/accounts/{minor_id}/minor", "admin"),
    ("post", "/v1/admin/accounts/{minor_id}/guardians", "admin"),
    ("delete", "/v1/admin/accounts/{minor_id}/guardians/{guardian_id}", "admin"),
    ("post", "/v1/admin/webhooks", "admin"),
    ("patch", "/v1/admin/webhooks/{webhook_id}", "admin"),
    ("delete", "/v1/admin/webhooks/{webhook_id}", "admin"),
    ("post", "/v1/admin/webhooks/{webhook_id}/rotate-secret", "admin"),
    ("post", "/v1/devices", "client"),
    ("delete", "/v1/devices/{device_id}", "client"),
    ("post", "/v1/me/identity/reset", "client"),
]


def _concrete(path: str) -> str:
    for name in (
        "account_id",
        "minor_id",
        "guardian_id",
        "incident_id",
        "webhook_id",
        "device_id",
        "factor_id",
    ):
        path = path.replace("{" + name + "}", ANY_ID)
    return path


async def test_the_openapi_document_names_exactly_the_guarded_operations(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    named = {
        (method, path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if "step_up_required" in operation["responses"].get("401", {}).get("description", "")
    }
    # Second factors ask for step-up only when the account has one (tests/mfa/test_totp.py):
    # adding another, removing a confirmed one, regenerating the recovery codes.
    conditional = {
        ("delete", "/v1/me/factors/{factor_id}"),
        ("post", "/v1/me/recovery-codes"),
        ("post", "/v1/me/factors/totp"),
        ("post", "/v1/me/factors/totp/{factor_id}/confirm"),
        ("post", "/v1/me/factors/webauthn/options"),
        ("post", "/v1/me/factors/webauthn"),
    }
    assert named - conditional == {(m, p) for m, p, _ in GUARDED}


@pytest.mark.parametrize(("method", "path", "who"), GUARDED)
async def test_a_stale_log_in_is_refused_before_anything_is_read(
    client: httpx.AsyncClient,
    ctx: Context,
    clock: FrozenClock,
    admin: User,
    client_user: User,
    method: str,
    path: str,
    who: str,
) -> None:
    caller = admin if who == "admin" else client_user
    max_age = ctx.settings.step_up_max_age
    clock.advance(max_age + 1)
    response = await client.request(method.upper(), _concrete(path), headers=caller.auth, json={})
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "step_up_required"
    assert response.json()["max_age"] == max_age
    assert "insufficient_user_authentication" in response.headers["WWW-Authenticate"]
    # Within the window the same call gets past the guard (to its own answer).
    fresh = await login(client, User(caller.id, caller.email, caller.password, "", who))
    answered = await client.request(method.upper(), _concrete(path), headers=fresh.auth, json={})
    assert answered.status_code != 401, answered.text


async def _status(client: httpx.AsyncClient, admin: User, account_id: str) -> Any:
    listed = await client.get(f"/v1/admin/accounts/{account_id}", headers=admin.auth)
    assert listed.status_code == 200, listed.text
    return listed.json()["status"]


async def test_refused_acts_change_nothing(
    client: httpx.AsyncClient, ctx: Context, clock: FrozenClock, admin: User
) -> None:
    person = await register_client(client)
    clock.advance(ctx.settings.step_up_max_age + 1)
    await login(client, admin)  # a fresh admin, to look
    stale_admin = User(admin.id, admin.email, admin.password, "", "admin")
    stale_admin.access_token = admin.access_token
    clock.advance(ctx.settings.step_up_max_age + 1)
    assert (await client.delete("/v1/me", headers=person.auth)).status_code == 401
    disabled = await client.post(
        f"/v1/admin/accounts/{person.id}/disable", headers=stale_admin.auth
    )
    assert disabled.status_code == 401
    fresh = await login(client, User(admin.id, admin.email, admin.password, "", "admin"))
    assert await _status(client, fresh, person.id) == "active"
    again = await login(client, person)
    assert (await client.get("/v1/me", headers=again.auth)).status_code == 200


async def test_an_admin_with_a_factor_steps_up_with_it_not_with_the_password(
    client: httpx.AsyncClient, ctx: Context, clock: FrozenClock, admin: User
) -> None:
    person = await register_client(client)
    secret, _ = await enrol_totp(client, admin, clock)
    clock.advance(ctx.settings.step_up_max_age + 1)
    path = f"/v1/admin/accounts/{person.id}/disable"
    assert (await client.post(path, headers=admin.auth)).json()["code"] == "step_up_required"
    by_password = await client.post(
        "/v1/auth/step-up",
        json={"method": "password", "password": admin.password},
        headers=admin.auth,
    )
    assert by_password.status_code == 401
    clock.advance(30)  # the next TOTP step: the enrolment's code is spent
    stepped = await client.post(
        "/v1/auth/step-up",
        json={"method": "totp", "code": totp_code(secret, clock)},
        headers=admin.auth,
    )
    assert stepped.status_code == 200, stepped.text
    fresh = {"Authorization": f"Bearer {stepped.json()['access_token']}"}
    done = await client.post(path, headers=fresh)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "disabled"
