from __future__ import annotations

import httpx
import pytest

from tests.fixtures.accounts import PASSWORD, User, register_client, unique_email


async def test_client_registers_and_reads_own_account(client: httpx.AsyncClient) -> None:
    user = await register_client(client, display_name="Ada Lovelace")
    me = await client.get("/v1/me", headers=user.auth)
    assert me.status_code == 200
    body = me.json()
    assert body["id"] == user.id
    assert body["email"] == user.email
    assert body["display_name"] == "Ada Lovelace"
    assert body["role"] == "client"
    assert body["created_at"].endswith("Z") or body["created_at"].endswith("+00:00")
    assert me.headers["cache-control"] == "no-store"


async def test_registration_refuses_a_role(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/accounts",
        json={
            "email": unique_email(),
            "password": PASSWORD,
            "display_name": "Mallory",
            "role": "admin",
        },
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert response.headers["content-type"] == "application/problem+json"


async def test_duplicate_email_is_409_even_with_other_case(client: httpx.AsyncClient) -> None:
    user = await register_client(client)
    response = await client.post(
        "/v1/accounts",
        json={"email": user.email.upper(), "password": PASSWORD, "display_name": "Twin"},
    )
    assert response.status_code == 409
    assert response.json()["code"] == "email_taken"


@pytest.mark.parametrize(
    "password",
    ["short pass", "x" * 257, "password1234", "qwertyuiopasdf", "aaaaaaaaaaaaaaaa"],
)
async def test_weak_passwords_are_refused(client: httpx.AsyncClient, password: str) -> None:
    email = unique_email()
    response = await client.post(
        "/v1/accounts", json={"email": email, "password": password, "display_name": "Weak"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "weak_password"
    assert password not in response.text
    login = await client.post("/v1/auth/token", data={"username": email, "password": password})
    assert login.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": PASSWORD, "display_name": "X"},
        {"email": "a@example.org", "password": PASSWORD, "display_name": ""},
        {"email": "a@example.org", "password": PASSWORD, "display_name": "x" * 201},
        {"email": "a@example.org", "password": PASSWORD, "display_name": "nul\x00byte"},
        {"email": "a@example.org", "password": PASSWORD, "display_name": "\ud800"},
        {"email": "a@example.org", "password": PASSWORD, "display_name": 5},
        {"email": "a@example.org", "password": PASSWORD},
        [],
        "text",
    ],
)
async def test_bad_registration_bodies_get_422_and_change_nothing(
    client: httpx.AsyncClient, body: object
) -> None:
    import json

    raw = json.dumps(body)
    response = await client.post(
        "/v1/accounts", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    login = await client.post(
        "/v1/auth/token", data={"username": "a@example.org", "password": PASSWORD}
    )
    assert login.status_code == 401


async def test_admin_creates_counselor_and_client_cannot(
    client: httpx.AsyncClient, admin: User, client_user: User
) -> None:
    body = {
        "email": unique_email("counselor"),
        "password": PASSWORD,
        "display_name": "Dr Who",
        "role": "counselor",
    }
    created = await client.post("/v1/admin/accounts", json=body, headers=admin.auth)
    assert created.status_code == 201, created.text
    assert created.json()["role"] == "counselor"
    body["email"] = unique_email("counselor")
    refused = await client.post("/v1/admin/accounts", json=body, headers=client_user.auth)
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    anonymous = await client.post("/v1/admin/accounts", json=body)
    assert anonymous.status_code == 401
