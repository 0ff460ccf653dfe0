"""Passkeys: a real registration and assertion made by a software authenticator."""

from __future__ import annotations

from typing import Any

import httpx

from app.core.clock import FrozenClock
from tests.fixtures.accounts import User
from tests.fixtures.authenticator import SoftAuthenticator, b64url
from tests.mfa.helpers import claims_of, complete, enrol_passkey, password_step


async def _login_options(client: httpx.AsyncClient, mfa_token: str) -> dict[str, Any]:
    response = await client.post("/v1/auth/mfa/webauthn/options", json={"mfa_token": mfa_token})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_passkey_registration_and_log_in(
    client: httpx.AsyncClient, clock: FrozenClock, client_user: User
) -> None:
    authenticator = SoftAuthenticator()
    registered = await enrol_passkey(client, client_user, authenticator)
    assert registered["factor"]["kind"] == "webauthn"
    assert registered["factor"]["label"] == "Laptop"
    assert len(registered["recovery_codes"]) == 10
    assert claims_of(client_user.access_token)["amr"] == ["pwd", "hwk", "mfa"]

    challenge = await password_step(client, client_user)
    assert challenge["methods"] == ["webauthn", "recovery_code"]
    options = await _login_options(client, challenge["mfa_token"])
    request_options = options["options"]
    assert request_options["rpId"] == "localhost"
    assert request_options["userVerification"] == "preferred"
    assert [c["id"] for c in request_options["allowCredentials"]] == [
        b64url(authenticator.credential_id)
    ]
    assertion = authenticator.get(request_options)
    done = await complete(
        client,
        challenge["mfa_token"],
        method="webauthn",
        credential=assertion,
        challenge_token=options["challenge_token"],
    )
    assert done.status_code == 200, done.text
    assert claims_of(done.json()["access_token"])["amr"] == ["pwd", "hwk", "mfa"]


async def test_a_wrong_origin_or_another_challenge_is_refused(
    client: httpx.AsyncClient, client_user: User
) -> None:
    authenticator = SoftAuthenticator()
    # Registration from another origin: refused, nothing stored.
    options = await client.post("/v1/me/factors/webauthn/options", headers=client_user.auth)
    foreign = authenticator.create(options.json()["options"], origin="https://evil.example")
    refused = await client.post(
        "/v1/me/factors/webauthn",
        json={"credential": foreign, "challenge_token": options.json()["challenge_token"]},
        headers=client_user.auth,
    )
    assert refused.status_code == 401
    assert refused.json()["code"] == "invalid_mfa"
    listed = await client.get("/v1/me/factors", headers=client_user.auth)
    assert listed.json()["factors"] == []

    await enrol_passkey(client, client_user, authenticator)
    mfa_token = (await password_step(client, client_user))["mfa_token"]

    first = await _login_options(client, mfa_token)
    wrong_origin = authenticator.get(first["options"], origin="https://evil.example")
    response = await complete(
        client,
        mfa_token,
        method="webauthn",
        credential=wrong_origin,
        challenge_token=first["challenge_token"],
    )
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_mfa"

    # An assertion over one challenge, sent with another challenge's token.
    one = await _login_options(client, mfa_token)
    other = await _login_options(client, mfa_token)
    crossed = authenticator.get(one["options"])
    response = await complete(
        client,
        mfa_token,
        method="webauthn",
        credential=crossed,
        challenge_token=other["challenge_token"],
    )
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_mfa"

    # A challenge token is single use: the right assertion with a spent one is refused.
    again = await complete(
        client,
        mfa_token,
        method="webauthn",
        credential=authenticator.get(one["options"]),
        challenge_token=one["challenge_token"],
    )
    assert again.status_code == 200, again.text
    replay = await complete(
        client,
        (await password_step(client, client_user))["mfa_token"],
        method="webauthn",
        credential=authenticator.get(one["options"]),
        challenge_token=one["challenge_token"],
    )
    assert replay.status_code == 401
