"""Enrolment and log-in steps the second-factor tests share."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pyotp

from app.core.clock import FrozenClock
from tests.fixtures.accounts import User
from tests.fixtures.authenticator import SoftAuthenticator


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    value = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert isinstance(value, dict)
    return value


def totp_code(secret: str, clock: FrozenClock) -> str:
    return pyotp.TOTP(secret).at(clock.time())


async def enrol_totp(
    client: httpx.AsyncClient, user: User, clock: FrozenClock
) -> tuple[str, dict[str, Any]]:
    """Enrol a TOTP factor; the secret and the confirmation's answer (user's token updated)."""
    started = await client.post("/v1/me/factors/totp", json={"label": "Phone"}, headers=user.auth)
    assert started.status_code == 201, started.text
    body = started.json()
    uri = urlparse(body["provisioning_uri"])
    query = parse_qs(uri.query)
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert query["secret"] == [body["secret"]]
    assert query["issuer"] == ["Confide"]
    assert user.email in uri.path.replace("%40", "@")
    confirmed = await client.post(
        f"/v1/me/factors/totp/{body['id']}/confirm",
        json={"code": totp_code(body["secret"], clock)},
        headers=user.auth,
    )
    assert confirmed.status_code == 200, confirmed.text
    user.access_token = confirmed.json()["access_token"]
    return str(body["secret"]), confirmed.json()


async def enrol_passkey(
    client: httpx.AsyncClient, user: User, authenticator: SoftAuthenticator
) -> dict[str, Any]:
    options = await client.post("/v1/me/factors/webauthn/options", headers=user.auth)
    assert options.status_code == 200, options.text
    credential = authenticator.create(options.json()["options"])
    registered = await client.post(
        "/v1/me/factors/webauthn",
        json={
            "credential": credential,
            "challenge_token": options.json()["challenge_token"],
            "label": "Laptop",
        },
        headers=user.auth,
    )
    assert registered.status_code == 201, registered.text
    user.access_token = registered.json()["access_token"]
    body: dict[str, Any] = registered.json()
    return body


async def password_step(client: httpx.AsyncClient, user: User) -> dict[str, Any]:
    """The password log-in of an account with a factor: 401 `mfa_required`."""
    response = await client.post(
        "/v1/auth/token", data={"username": user.email, "password": user.password}
    )
    assert response.status_code == 401, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == "mfa_required"
    return body


async def complete(client: httpx.AsyncClient, mfa_token: str, **attempt: Any) -> httpx.Response:
    return await client.post("/v1/auth/mfa", json={"mfa_token": mfa_token, **attempt})
