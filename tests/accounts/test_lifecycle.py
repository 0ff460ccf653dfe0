"""The account lifecycle on both databases: password change and reset, log-ins, admin actions."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.auth.devices import MAX_READ, UNKNOWN_DEVICE, device_label
from app.core.clock import FrozenClock
from app.core.context import Context
from app.models import PasswordReset, Role
from tests.fixtures.accounts import PASSWORD, User, login, make_account, register_client

NEW_PASSWORD = "seven purple otters juggle quietly"
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)


async def second_login(client: httpx.AsyncClient, user: User, agent: str = "") -> User:
    """Another log-in of the same person (another device)."""
    other = User(user.id, user.email, user.password, user.display_name, user.role)
    response = await client.post(
        "/v1/auth/token",
        data={"username": user.email, "password": user.password},
        headers={"User-Agent": agent} if agent else {},
    )
    assert response.status_code == 200, response.text
    other.access_token = response.json()["access_token"]
    other.refresh_token = response.json()["refresh_token"]
    return other


async def log_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/v1/auth/token", data={"username": email, "password": password})


async def dead(client: httpx.AsyncClient, user: User) -> bool:
    """Whether both of the log-in's tokens are refused."""
    me = await client.get("/v1/me", headers=user.auth)
    refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    return me.status_code == 401 and refreshed.status_code == 401


async def actions_in_access_log(client: httpx.AsyncClient, user: User) -> list[str]:
    fresh = await login(client, User(user.id, user.email, user.password, "", user.role))
    response = await client.get("/v1/me/access-log", headers=fresh.auth)
    assert response.status_code == 200, response.text
    return [entry["action"] for entry in response.json()]


# -- password change -------------------------------------------------------------------
async def test_wrong_current_password_changes_nothing(client: httpx.AsyncClient) -> None:
    user = await register_client(client)
    other = await second_login(client, user)
    refused = await client.put(
        "/v1/me/password",
        json={"current_password": "not my password at all", "new_password": NEW_PASSWORD},
        headers=user.auth,
    )
    assert refused.status_code == 401
    assert refused.json()["code"] == "invalid_credentials"
    assert (await log_in(client, user.email, PASSWORD)).status_code == 200
    assert (await log_in(client, user.email, NEW_PASSWORD)).status_code == 401
    assert (await client.get("/v1/me", headers=other.auth)).status_code == 200


async def test_wrong_current_passwords_are_throttled(
    client: httpx.AsyncClient, ctx: Context
) -> None:
    user = await register_client(client)
    body = {"current_password": "not my password at all", "new_password": NEW_PASSWORD}
    for _ in range(ctx.settings.login_max_failures_per_account):
        refused = await client.put("/v1/me/password", json=body, headers=user.auth)
        assert refused.status_code == 401
    throttled = await client.put(
        "/v1/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=user.auth,
    )
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0


async def test_weak_new_password_is_refused(client: httpx.AsyncClient) -> None:
    user = await register_client(client)
    weak = await client.put(
        "/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "password1234"},
        headers=user.auth,
    )
    assert weak.status_code == 422
    assert weak.json()["code"] == "weak_password"
    assert (await log_in(client, user.email, PASSWORD)).status_code == 200


async def test_changing_the_password_ends_every_other_login(client: httpx.AsyncClient) -> None:
    user = await register_client(client)
    other = await second_login(client, user)
    changed = await client.put(
        "/v1/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=user.auth,
    )
    assert changed.status_code == 204, changed.text
    assert await dead(client, other)
    assert (await client.get("/v1/me", headers=user.auth)).status_code == 200
    refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert refreshed.status_code == 200
    assert (await log_in(client, user.email, PASSWORD)).status_code == 401
    assert (await log_in(client, user.email, NEW_PASSWORD)).status_code == 200
    user.password = NEW_PASSWORD
    assert "account.password_change" in await actions_in_access_log(client, user)


# -- admin reset -----------------------------------------------------------------------
async def start_reset(client: httpx.AsyncClient, admin: User, account_id: str) -> str:
    response = await client.post(
        f"/v1/admin/accounts/{account_id}/password-reset", headers=admin.auth
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["reset_token"]
    return token


async def use_reset(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(
        "/v1/auth/password-reset", json={"reset_token": token, "new_password": NEW_PASSWORD}
    )


async def test_a_reset_sets_the_password_once_and_ends_every_login(
    client: httpx.AsyncClient, admin: User, counselor: User, clock: FrozenClock
) -> None:
    other = await second_login(client, counselor)
    started = await client.post(
        f"/v1/admin/accounts/{counselor.id}/password-reset", headers=admin.auth
    )
    assert started.status_code == 201
    token = started.json()["reset_token"]
    expires_at = datetime.fromisoformat(started.json()["expires_at"])
    assert expires_at == clock.now() + timedelta(minutes=30)
    used = await use_reset(client, token)
    assert used.status_code == 204, used.text
    assert await dead(client, counselor)
    assert await dead(client, other)
    assert (await log_in(client, counselor.email, PASSWORD)).status_code == 401
    assert (await log_in(client, counselor.email, NEW_PASSWORD)).status_code == 200
    again = await client.post(
        "/v1/auth/password-reset", json={"reset_token": token, "new_password": PASSWORD + "x"}
    )
    assert again.status_code == 400
    assert again.json()["code"] == "reset_token_invalid"
    counselor.password = NEW_PASSWORD
    log = await actions_in_access_log(client, counselor)
    assert "account.password_reset_start" in log
    assert "account.password_reset" in log


async def test_a_reset_token_expires_after_30_minutes(
    client: httpx.AsyncClient, admin: User, counselor: User, clock: FrozenClock
) -> None:
    token = await start_reset(client, admin, counselor.id)
    clock.advance(30 * 60)
    expired = await use_reset(client, token)
    assert expired.status_code == 400
    assert expired.json()["code"] == "reset_token_invalid"
    fresh = await start_reset(client, await login(client, admin), counselor.id)
    clock.advance(30 * 60 - 1)
    assert (await use_reset(client, fresh)).status_code == 204


async def test_a_new_reset_voids_the_earlier_token(
    client: httpx.AsyncClient, admin: User, counselor: User
) -> None:
    first = await start_reset(client, admin, counselor.id)
    second = await start_reset(client, admin, counselor.id)
    assert (await use_reset(client, first)).status_code == 400
    assert (await use_reset(client, second)).status_code == 204


async def test_a_weak_password_does_not_spend_the_reset(
    client: httpx.AsyncClient, admin: User, counselor: User
) -> None:
    token = await start_reset(client, admin, counselor.id)
    weak = await client.post(
        "/v1/auth/password-reset", json={"reset_token": token, "new_password": "password1234"}
    )
    assert weak.status_code == 422
    assert (await client.get("/v1/me", headers=counselor.auth)).status_code == 200
    assert (await use_reset(client, token)).status_code == 204


async def test_invalid_reset_tokens_are_throttled_per_address(
    client: httpx.AsyncClient, ctx: Context, admin: User, counselor: User
) -> None:
    token = await start_reset(client, admin, counselor.id)
    for n in range(ctx.settings.login_max_failures_per_address):
        assert (await use_reset(client, f"made-up-{n}")).status_code == 400
    throttled = await use_reset(client, token)
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0


async def test_only_an_admin_starts_a_reset(
    client: httpx.AsyncClient, counselor: User, client_user: User
) -> None:
    refused = await client.post(
        f"/v1/admin/accounts/{client_user.id}/password-reset", headers=counselor.auth
    )
    assert refused.status_code == 403


# -- own log-ins -----------------------------------------------------------------------
async def test_logins_show_device_coarse_times_and_the_current_one(
    client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    user = await register_client(client)
    clock.advance(60)
    phone = await second_login(client, user, SAFARI_IPHONE)
    laptop = await second_login(client, user, FIREFOX_LINUX)
    listed = await client.get("/v1/me/logins", headers=laptop.auth)
    assert listed.status_code == 200, listed.text
    logins = listed.json()
    assert len(logins) == 3
    devices = {item["device"]: item for item in logins}
    assert devices["Firefox on Linux"]["current"] is True
    assert devices["Safari on iOS"]["current"] is False
    assert [item["current"] for item in logins].count(True) == 1
    for item in logins:
        for field in ("created_at", "last_used_at"):
            assert item[field].endswith(":00:00Z"), item[field]
    del phone

    page = await client.get("/v1/me/logins", params={"limit": 2}, headers=laptop.auth)
    assert len(page.json()) == 2
    rest = await client.get(
        "/v1/me/logins",
        params={"limit": 2, "cursor": page.headers["x-next-cursor"]},
        headers=laptop.auth,
    )
    assert len(rest.json()) == 1
    assert {item["id"] for item in page.json() + rest.json()} == {item["id"] for item in logins}


async def test_ending_a_login_kills_its_tokens(client: httpx.AsyncClient) -> None:
    user = await register_client(client)
    phone = await second_login(client, user, SAFARI_IPHONE)
    listed = (await client.get("/v1/me/logins", headers=user.auth)).json()
    target = next(item["id"] for item in listed if item["device"] == "Safari on iOS")
    ended = await client.delete(f"/v1/me/logins/{target}", headers=user.auth)
    assert ended.status_code == 204
    assert await dead(client, phone)
    assert (await client.get("/v1/me", headers=user.auth)).status_code == 200
    after = (await client.get("/v1/me/logins", headers=user.auth)).json()
    assert [item["id"] for item in after] == [item["id"] for item in listed if item["id"] != target]
    again = await client.delete(f"/v1/me/logins/{target}", headers=user.auth)
    assert again.status_code == 404
    assert "auth.login_end" in await actions_in_access_log(client, user)


async def test_another_persons_login_is_not_found(client: httpx.AsyncClient) -> None:
    one = await register_client(client)
    other = await register_client(client)
    theirs = (await client.get("/v1/me/logins", headers=other.auth)).json()[0]["id"]
    refused = await client.delete(f"/v1/me/logins/{theirs}", headers=one.auth)
    assert refused.status_code == 404
    assert (await client.get("/v1/me", headers=other.auth)).status_code == 200


@pytest.mark.parametrize(
    ("agent", "label"),
    [
        (FIREFOX_LINUX, "Firefox on Linux"),
        (SAFARI_IPHONE, "Safari on iOS"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
            " Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            "Edge on Windows",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko)"
            " Chrome/131.0.0.0 Mobile Safari/537.36",
            "Chrome on Android",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like"
            " Gecko) Version/18.1 Safari/605.1.15",
            "Safari on macOS",
        ),
        ("curl/8.5.0", "curl"),
        ("", "unknown"),
        (None, "unknown"),
        ("something else entirely", "unknown"),
    ],
)
def test_device_labels(agent: str | None, label: str) -> None:
    assert device_label(agent) == label


@given(st.text(max_size=2 * MAX_READ))
def test_a_device_label_is_short_and_names_no_version(agent: str) -> None:
    label = device_label(agent)
    assert label == UNKNOWN_DEVICE or len(label) <= 40
    assert not any(char.isdigit() for char in label)
    assert device_label(agent[:MAX_READ]) == label


# -- admin: list -----------------------------------------------------------------------
async def test_admin_lists_accounts_with_pagination_and_filters(
    client: httpx.AsyncClient, ctx: Context, admin: User
) -> None:
    counselors = [await make_account(ctx, client, Role.counselor) for _ in range(3)]
    patient = await register_client(client)
    everyone = await client.get("/v1/admin/accounts", headers=admin.auth)
    assert everyone.status_code == 200
    ids = [item["id"] for item in everyone.json()]
    assert set(ids) == {admin.id, patient.id, *(c.id for c in counselors)}

    first = await client.get("/v1/admin/accounts", params={"limit": 2}, headers=admin.auth)
    assert len(first.json()) == 2
    seen = [item["id"] for item in first.json()]
    cursor = first.headers.get("x-next-cursor")
    while cursor:
        page = await client.get(
            "/v1/admin/accounts", params={"limit": 2, "cursor": cursor}, headers=admin.auth
        )
        seen += [item["id"] for item in page.json()]
        cursor = page.headers.get("x-next-cursor")
    assert seen == ids

    by_email = await client.get(
        "/v1/admin/accounts", params={"email": counselors[1].email}, headers=admin.auth
    )
    assert [(i["id"], i["email"]) for i in by_email.json()] == [
        (counselors[1].id, counselors[1].email)
    ]
    item = by_email.json()[0]
    assert (item["role"], item["status"], item["display_name"]) == (
        "counselor",
        "active",
        "Staff Person",
    )
    by_role = await client.get(
        "/v1/admin/accounts", params={"role": "counselor"}, headers=admin.auth
    )
    assert {i["id"] for i in by_role.json()} == {c.id for c in counselors}
    disabled = await client.post(
        f"/v1/admin/accounts/{counselors[0].id}/disable", headers=admin.auth
    )
    assert disabled.status_code == 200
    by_status = await client.get(
        "/v1/admin/accounts", params={"status": "disabled"}, headers=admin.auth
    )
    assert [i["id"] for i in by_status.json()] == [counselors[0].id]
    one = await client.get(f"/v1/admin/accounts/{patient.id}", headers=admin.auth)
    assert (one.json()["id"], one.json()["role"]) == (patient.id, "client")
    unknown = await client.get("/v1/admin/accounts/no-such-account", headers=admin.auth)
    assert unknown.status_code == 404


async def test_a_bad_filter_is_refused(client: httpx.AsyncClient, admin: User) -> None:
    for params in ({"role": "wizard"}, {"status": "sleeping"}, {"email": "not an email"}):
        refused = await client.get("/v1/admin/accounts", params=params, headers=admin.auth)
        assert refused.status_code == 422, params


async def test_only_an_admin_lists_accounts(
    client: httpx.AsyncClient, counselor: User, client_user: User
) -> None:
    for user in (counselor, client_user):
        assert (await client.get("/v1/admin/accounts", headers=user.auth)).status_code == 403
        one = await client.get(f"/v1/admin/accounts/{user.id}", headers=user.auth)
        assert one.status_code == 403
        disable = await client.post(f"/v1/admin/accounts/{user.id}/disable", headers=user.auth)
        assert disable.status_code == 403


# -- admin: disable, enable ------------------------------------------------------------
async def test_disabling_refuses_login_and_kills_tokens_until_enabled(
    client: httpx.AsyncClient, admin: User, counselor: User
) -> None:
    disabled = await client.post(f"/v1/admin/accounts/{counselor.id}/disable", headers=admin.auth)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["status"] == "disabled"
    assert await dead(client, counselor)
    refused = await log_in(client, counselor.email, PASSWORD)
    assert refused.status_code == 403
    assert refused.json()["code"] == "account_disabled"
    wrong = await log_in(client, counselor.email, "not the password at all")
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "invalid_credentials"

    enabled = await client.post(f"/v1/admin/accounts/{counselor.id}/enable", headers=admin.auth)
    assert enabled.status_code == 200
    assert enabled.json()["status"] == "active"
    assert await dead(client, counselor)
    log = await actions_in_access_log(client, counselor)
    assert {"account.disable", "account.enable", "auth.login_refused"} <= set(log)


async def test_the_last_admin_is_neither_disabled_nor_demoted(
    client: httpx.AsyncClient, ctx: Context, admin: User
) -> None:
    account = f"/v1/admin/accounts/{admin.id}"
    for refused in (
        await client.post(f"{account}/disable", headers=admin.auth),
        await client.put(f"{account}/role", json={"role": "counselor"}, headers=admin.auth),
    ):
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "last_admin"
    assert (await client.get("/v1/me", headers=admin.auth)).status_code == 200

    second = await make_account(ctx, client, Role.admin)
    disabled = await client.post(f"/v1/admin/accounts/{admin.id}/disable", headers=second.auth)
    assert disabled.status_code == 200
    last = await client.post(f"/v1/admin/accounts/{second.id}/disable", headers=second.auth)
    assert last.status_code == 409
    assert last.json()["code"] == "last_admin"


# -- admin: roles ----------------------------------------------------------------------
async def test_role_changes_between_counselor_and_admin(
    client: httpx.AsyncClient, admin: User, counselor: User
) -> None:
    promoted = await client.put(
        f"/v1/admin/accounts/{counselor.id}/role", json={"role": "admin"}, headers=admin.auth
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["role"] == "admin"
    assert await dead(client, counselor)
    await login(client, counselor)
    assert (await client.get("/v1/admin/accounts", headers=counselor.auth)).status_code == 200

    demoted = await client.put(
        f"/v1/admin/accounts/{admin.id}/role", json={"role": "counselor"}, headers=counselor.auth
    )
    assert demoted.status_code == 200
    assert await dead(client, admin)
    await login(client, admin)
    assert (await client.get("/v1/admin/accounts", headers=admin.auth)).status_code == 403
    assert "account.role_change" in await actions_in_access_log(client, admin)


async def test_a_clients_role_is_not_changed(
    client: httpx.AsyncClient, admin: User, client_user: User
) -> None:
    refused = await client.put(
        f"/v1/admin/accounts/{client_user.id}/role", json={"role": "counselor"}, headers=admin.auth
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "role_change_refused"
    assert (await client.get("/v1/me", headers=client_user.auth)).json()["role"] == "client"
    made_client = await client.put(
        f"/v1/admin/accounts/{admin.id}/role", json={"role": "client"}, headers=admin.auth
    )
    assert made_client.status_code == 422


async def test_the_export_holds_the_persons_logins(client: httpx.AsyncClient) -> None:
    user = await register_client(client)
    await second_login(client, user, FIREFOX_LINUX)
    export = await client.get("/v1/me/export", headers=user.auth)
    assert export.status_code == 200, export.text
    logins = export.json()["logins"]
    assert sorted(item["device"] for item in logins) == ["Firefox on Linux", "httpx"]
    assert [item["current"] for item in logins].count(True) == 1


async def test_erasure_deletes_the_persons_reset_tokens(
    client: httpx.AsyncClient, ctx: Context, admin: User
) -> None:
    leaving = await register_client(client)
    staying = await register_client(client)
    token = await start_reset(client, admin, leaving.id)
    await start_reset(client, admin, staying.id)
    erased = await client.delete("/v1/me", headers=leaving.auth)
    assert erased.status_code == 204, erased.text
    async with ctx.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(PasswordReset)) == 1
    assert (await use_reset(client, token)).status_code == 400


async def test_a_disabled_account_is_still_told_of_a_breach(
    client: httpx.AsyncClient, admin: User, client_user: User, clock: FrozenClock
) -> None:
    disabled = await client.post(f"/v1/admin/accounts/{client_user.id}/disable", headers=admin.auth)
    assert disabled.status_code == 200
    incident = await client.post(
        "/v1/incidents",
        json={
            "summary": "Laptop stolen",
            "discovered_at": clock.now().isoformat(),
            "severity": "high",
            "affected_account_ids": [client_user.id],
        },
        headers=admin.auth,
    )
    assert incident.status_code == 201, incident.text
    notified = await client.post(
        f"/v1/incidents/{incident.json()['id']}/notify",
        json={"message": "Your records may have been seen."},
        headers=admin.auth,
    )
    assert notified.status_code < 300, notified.text
    await client.post(f"/v1/admin/accounts/{client_user.id}/enable", headers=admin.auth)
    await login(client, client_user)
    notices = await client.get("/v1/me/notices", headers=client_user.auth)
    assert [n["message"] for n in notices.json()] == ["Your records may have been seen."]
