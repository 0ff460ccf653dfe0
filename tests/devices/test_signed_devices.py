"""Devices signed by the account's identity key, and the identity key's reset."""

from __future__ import annotations

import os
import uuid
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from app.keys.statements import device_statement, verify
from tests.fixtures.accounts import User, register_client
from tests.fixtures.identity import b64, device_body, identity_of, new_device, point, sign


async def post(client: httpx.AsyncClient, user: User, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/devices", json=body, headers=user.auth)


async def listed(client: httpx.AsyncClient, user: User) -> list[dict[str, Any]]:
    response = await client.get("/v1/devices", headers=user.auth)
    assert response.status_code == 200
    body: list[dict[str, Any]] = response.json()
    return body


def test_the_device_statement_is_the_documented_byte_string() -> None:
    account = "0b8e3a52-5d3e-4c1a-9a53-3f0d2f7c9e11"
    device = "5e0c3d7a-1f7e-4b53-8d0c-2a4f6b9e8d10"
    signing_key, public_key = b"\x04" + b"\x01" * 64, b"\xaa\xbb"
    assert device_statement(account, device, signing_key, public_key) == (
        b"\x00\x00\x00\x11confide device v1"
        + b"\x00\x00\x00\x24" + account.encode()
        + b"\x00\x00\x00\x24" + device.encode()
        + b"\x00\x00\x00\x41" + signing_key
        + b"\x00\x00\x00\x02" + public_key
    )  # fmt: skip


def test_verify_takes_r_and_s_and_refuses_anything_else() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    signature = sign(key, b"message")
    assert verify(point(key), b"message", signature)
    assert not verify(point(key), b"messagE", signature)
    assert not verify(point(key), b"message", signature[:63])
    assert not verify(point(key), b"message", bytes(64))
    assert not verify(b"\x04" + bytes(64), b"message", signature)


async def test_the_first_device_brings_the_identity_key_and_both_are_answered(
    client: httpx.AsyncClient, client_user: User
) -> None:
    body = device_body(client_user.id, "phone", b64(os.urandom(65)))
    assert "identity_key" in body
    response = await post(client, client_user, body)
    assert response.status_code == 201, response.text
    device = response.json()
    assert device["device_id"] == body["device_id"]
    assert device["signing_key"] == body["signing_key"]
    assert device["signature"] == body["signature"]
    assert await listed(client, client_user) == [device]


@pytest.mark.parametrize(
    "case", ["wrong-key", "other-account", "other-public-key", "other-device-id", "garbage"]
)
async def test_a_device_not_signed_by_the_identity_key_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, client_user: User, case: str
) -> None:
    identity = identity_of(client_user.id)
    body = device_body(client_user.id, "phone", b64(os.urandom(65)), first=True)
    if case == "wrong-key":
        forged = new_device(
            client_user.id, body["public_key"], ec.generate_private_key(ec.SECP256R1())
        )
        body |= {k: forged[k] for k in ("device_id", "signing_key", "signature")}
    elif case == "other-account":
        forged = new_device(str(uuid.uuid4()), body["public_key"], identity)
        body |= {k: forged[k] for k in ("signing_key", "signature")}
    elif case == "other-public-key":
        body["public_key"] = b64(os.urandom(65))
    elif case == "other-device-id":
        body["device_id"] = str(uuid.uuid4())
    else:
        body["signature"] = b64(os.urandom(64))
    response = await post(client, client_user, body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "bad_device_signature"
    assert await listed(client, client_user) == []
    # Nothing was set either: the identity key can still come with a first device.
    ok = await post(client, client_user, device_body(client_user.id, "phone", "AQID", first=True))
    assert ok.status_code == 201, ok.text


async def test_later_devices_are_checked_against_the_stored_identity_key(
    client: httpx.AsyncClient, client_user: User
) -> None:
    first = await post(client, client_user, device_body(client_user.id, "a", "AQID"))
    assert first.status_code == 201
    second = await post(client, client_user, device_body(client_user.id, "b", "AQID"))
    assert second.status_code == 201, second.text

    intruder = ec.generate_private_key(ec.SECP256R1())
    forged = device_body(client_user.id, "c", "AQID", first=False, identity=intruder)
    refused = await post(client, client_user, forged)
    assert refused.status_code == 422
    assert refused.json()["code"] == "bad_device_signature"

    swapped = device_body(client_user.id, "d", "AQID", first=True, identity=intruder)
    conflict = await post(client, client_user, swapped)
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "identity_key_exists"
    assert sorted(d["label"] for d in await listed(client, client_user)) == ["a", "b"]


async def test_a_first_device_without_the_identity_key_is_refused(
    client: httpx.AsyncClient, client_user: User
) -> None:
    response = await post(
        client, client_user, device_body(client_user.id, "a", "AQID", first=False)
    )
    assert response.status_code == 422
    assert response.json()["code"] == "identity_key_required"
    assert await listed(client, client_user) == []


@pytest.mark.parametrize("field", ["identity_key", "signing_key"])
async def test_keys_must_be_p256_points(
    client: httpx.AsyncClient, client_user: User, field: str
) -> None:
    body = device_body(client_user.id, "a", "AQID", first=True)
    for bad in (b64(b"\x04" + bytes(64)), b64(os.urandom(33)), b64(b"\x04" + os.urandom(64))):
        response = await post(client, client_user, {**body, field: bad})
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"
    assert await listed(client, client_user) == []


async def test_a_taken_device_id_is_refused(client: httpx.AsyncClient, client_user: User) -> None:
    body = device_body(client_user.id, "a", "AQID")
    assert (await post(client, client_user, body)).status_code == 201
    other = await register_client(client)
    again = device_body(other.id, "b", "AQID")
    signed = new_device(other.id, "AQID", device_id=body["device_id"])
    response = await post(client, other, {**again, **signed})
    assert response.status_code == 409
    assert response.json()["code"] == "device_id_taken"
    assert await listed(client, other) == []


async def test_a_reset_revokes_every_device_and_the_new_key_signs_from_then_on(
    client: httpx.AsyncClient, client_user: User
) -> None:
    for label in ("a", "b"):
        response = await post(client, client_user, device_body(client_user.id, label, "AQID"))
        assert response.status_code == 201
    new_identity = identity_of(client_user.id, generation=1)
    device = {"label": "new phone", **new_device(client_user.id, "AQID", new_identity)}
    body = {"identity_key": b64(point(new_identity)), "device": device}
    reset = await client.post("/v1/me/identity/reset", json=body, headers=client_user.auth)
    assert reset.status_code == 201, reset.text
    assert reset.json()["device_id"] == device["device_id"]
    assert [d["label"] for d in await listed(client, client_user)] == ["new phone"]

    old = await post(client, client_user, device_body(client_user.id, "old", "AQID", first=False))
    assert old.status_code == 422
    assert old.json()["code"] == "bad_device_signature"
    later = device_body(client_user.id, "later", "AQID", first=False, identity=new_identity)
    assert (await post(client, client_user, later)).status_code == 201


async def test_a_reset_must_be_signed_by_the_new_key_and_needs_an_old_one(
    client: httpx.AsyncClient, client_user: User
) -> None:
    new_identity = identity_of(client_user.id, generation=1)
    device = {"label": "new", **new_device(client_user.id, "AQID", new_identity)}
    body = {"identity_key": b64(point(new_identity)), "device": device}
    none_yet = await client.post("/v1/me/identity/reset", json=body, headers=client_user.auth)
    assert none_yet.status_code == 409
    assert none_yet.json()["code"] == "identity_key_missing"

    first = await post(client, client_user, device_body(client_user.id, "a", "AQID"))
    assert first.status_code == 201
    signed_by_old = {"label": "new", **new_device(client_user.id, "AQID")}
    bad = {"identity_key": b64(point(new_identity)), "device": signed_by_old}
    refused = await client.post("/v1/me/identity/reset", json=bad, headers=client_user.auth)
    assert refused.status_code == 422
    assert refused.json()["code"] == "bad_device_signature"
    assert [d["label"] for d in await listed(client, client_user)] == ["a"]
