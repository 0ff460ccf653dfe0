"""MLS KeyPackages: a device's uploads and stock, and claims by a room's participants."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from app.core import mls
from app.core.config import Settings
from app.core.context import Context
from app.models import KeyPackage, KeyPackageClaim
from app.rooms import key_packages as room_key_packages
from tests.devices.test_devices import add_device, b64, unb64
from tests.fixtures.accounts import User, register_client
from tests.fixtures.mls import header, key_package, key_package_body, private_message
from tests.fixtures.rooms import add_and_accept

VECTORS = {
    v["name"]: v
    for v in json.loads(
        (Path(__file__).parent.parent / "vectors" / "mls_vectors.json").read_text()
    )["vectors"]
}
CLAIMS_PER_WINDOW = 12


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=SecretStr(database_url),
        key_package_claims_per_window=CLAIMS_PER_WINDOW,
    )


def packages(n: int, who: str = "device") -> list[bytes]:
    return [key_package(2, f"{who}-{i}-{os.urandom(4).hex()}".encode()) for i in range(n)]


async def upload(
    client: httpx.AsyncClient,
    user: User,
    device_id: str,
    items: list[bytes],
    last_resort: bytes | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {"key_packages": [b64(p) for p in items]}
    if last_resort is not None:
        body["last_resort"] = b64(last_resort)
    return await client.post(f"/v1/devices/{device_id}/key-packages", json=body, headers=user.auth)


async def stock(client: httpx.AsyncClient, user: User, device_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/devices/{device_id}/key-packages", headers=user.auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def claim(
    client: httpx.AsyncClient, user: User, room_id: str, device_ids: list[str]
) -> httpx.Response:
    return await client.post(
        f"/v1/rooms/{room_id}/key-packages/claim",
        json={"device_ids": device_ids},
        headers=user.auth,
    )


async def room_with(
    client: httpx.AsyncClient, host: User, guests: list[User], *, admit: bool = True
) -> str:
    response = await client.post(
        "/v1/rooms", json={"title": "Session", "kind": "group"}, headers=host.auth
    )
    assert response.status_code == 201, response.text
    room_id: str = response.json()["id"]
    for guest in guests:
        await add_and_accept(client, room_id, host.auth, guest.auth, account_id=guest.id)
        if admit:
            admitted = await client.post(
                f"/v1/rooms/{room_id}/participants/{guest.id}/admit", headers=host.auth
            )
            assert admitted.status_code in (200, 204), admitted.text
    return room_id


async def rows(ctx: Context, model: Any) -> int:
    async with ctx.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def ref_of(package: bytes) -> bytes:
    return mls.key_package_ref(package[4:])


async def test_upload_stock_and_claim(
    ctx: Context, client: httpx.AsyncClient, counselor: User, client_user: User
) -> None:
    device = (await add_device(client, client_user))["device_id"]
    assert await stock(client, client_user, device) == {"count": 0, "last_resort": False}
    mine = packages(3, "client")
    last = key_package(2, b"client-last")
    response = await upload(client, client_user, device, mine, last)
    assert response.status_code == 200, response.text
    assert response.json() == {"count": 3, "last_resort": True}
    room_id = await room_with(client, counselor, [client_user])

    handed: list[bytes] = []
    for left in (2, 1, 0):
        response = await claim(client, counselor, room_id, [device])
        assert response.status_code == 200, response.text
        (got,) = response.json()["key_packages"]
        assert got["device_id"] == device
        assert got["last_resort"] is False
        handed.append(unb64(got["key_package"]))
        assert (await stock(client, client_user, device))["count"] == left
    assert sorted(handed) == sorted(mine)  # each once, newest first
    assert handed == mine[::-1]

    # Then the last-resort package, every time, and it stays.
    for _ in range(2):
        response = await claim(client, counselor, room_id, [device])
        assert response.status_code == 200, response.text
        (got,) = response.json()["key_packages"]
        assert got["last_resort"] is True
        assert unb64(got["key_package"]) == last
    assert await stock(client, client_user, device) == {"count": 0, "last_resort": True}

    # Every ref handed out leads back to the device, in this room only.
    async with ctx.sessionmaker() as session:
        refs = [ref_of(p) for p in [*handed, last]] + [os.urandom(32)]
        routed = await room_key_packages.devices_for_refs(session, ctx, room_id, refs)
        assert routed == dict.fromkeys(refs[:-1], device)
        other = await room_with(client, counselor, [])
        assert await room_key_packages.devices_for_refs(session, ctx, other, refs) == {}
    assert await rows(ctx, KeyPackageClaim) == 5
    assert await rows(ctx, KeyPackage) == 1


async def test_real_ts_mls_packages_and_a_welcome_routed_by_their_refs(
    ctx: Context, client: httpx.AsyncClient, counselor: User, client_user: User
) -> None:
    bob = bytes.fromhex(VECTORS["key_package_bob"]["message"])
    carol = bytes.fromhex(VECTORS["key_package_carol"]["message"])
    phone = (await add_device(client, client_user))["device_id"]
    laptop = (await add_device(client, client_user))["device_id"]
    assert (await upload(client, client_user, phone, [bob])).status_code == 200
    assert (await upload(client, client_user, laptop, [carol])).status_code == 200
    room_id = await room_with(client, counselor, [client_user])
    response = await claim(client, counselor, room_id, [laptop, phone])
    assert response.status_code == 200, response.text
    got = response.json()["key_packages"]
    assert [g["device_id"] for g in got] == [laptop, phone]
    assert [unb64(g["key_package"]) for g in got] == [carol, bob]
    welcome = mls.parse(bytes.fromhex(VECTORS["welcome_bob_carol"]["message"]))
    assert isinstance(welcome, mls.WelcomeHeader)
    async with ctx.sessionmaker() as session:
        routed = await room_key_packages.devices_for_refs(
            session, ctx, room_id, welcome.new_members
        )
    assert routed == dict(zip(welcome.new_members, [phone, laptop], strict=True))


async def test_concurrent_claims_hand_each_package_out_once(
    ctx: Context, client: httpx.AsyncClient, counselor: User, client_user: User
) -> None:
    others = [await register_client(client) for _ in range(3)]
    device = (await add_device(client, client_user))["device_id"]
    mine = packages(8, "client")
    last = key_package(2, b"client-last")
    assert (await upload(client, client_user, device, mine, last)).status_code == 200
    room_id = await room_with(client, counselor, [client_user, *others])
    claimers = [counselor, *others] * 3  # 12 claims at once
    answers = await asyncio.gather(*(claim(client, who, room_id, [device]) for who in claimers))
    assert [a.status_code for a in answers] == [200] * len(claimers), [a.text for a in answers]
    got = [a.json()["key_packages"][0] for a in answers]
    fresh = Counter(unb64(g["key_package"]) for g in got if not g["last_resort"])
    assert sorted(fresh) == sorted(mine)
    assert set(fresh.values()) == {1}
    assert [unb64(g["key_package"]) for g in got if g["last_resort"]] == [last] * 4
    assert await stock(client, client_user, device) == {"count": 0, "last_resort": True}


async def test_concurrent_uploads_and_claims_lose_nothing(
    ctx: Context, client: httpx.AsyncClient, counselor: User, client_user: User
) -> None:
    device = (await add_device(client, client_user))["device_id"]
    room_id = await room_with(client, counselor, [client_user])
    batches = [packages(3, f"batch{i}") for i in range(4)]
    assert (await upload(client, client_user, device, batches[0])).status_code == 200
    tasks = [upload(client, client_user, device, batch) for batch in batches[1:]]
    tasks += [claim(client, counselor, room_id, [device]) for _ in range(5)]
    answers = await asyncio.gather(*tasks)
    assert [a.status_code for a in answers] == [200] * len(tasks), [a.text for a in answers]
    claimed = [unb64(a.json()["key_packages"][0]["key_package"]) for a in answers[3:]]
    assert len(set(claimed)) == 5
    left = (await stock(client, client_user, device))["count"]
    assert left == 12 - 5
    rest = [await claim(client, counselor, room_id, [device]) for _ in range(left)]
    everything = claimed + [unb64(r.json()["key_packages"][0]["key_package"]) for r in rest]
    assert sorted(everything) == sorted(p for batch in batches for p in batch)


async def test_a_claim_is_all_or_nothing(
    ctx: Context, client: httpx.AsyncClient, counselor: User, client_user: User
) -> None:
    full = (await add_device(client, client_user))["device_id"]
    empty = (await add_device(client, client_user))["device_id"]
    assert (await upload(client, client_user, full, packages(2))).status_code == 200
    room_id = await room_with(client, counselor, [client_user])
    response = await claim(client, counselor, room_id, [full, empty])
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "key_packages_exhausted"
    assert response.json()["devices"] == [empty]
    assert await stock(client, client_user, full) == {"count": 2, "last_resort": False}
    assert await rows(ctx, KeyPackageClaim) == 0
    # A device named twice gets one package.
    response = await claim(client, counselor, room_id, [full, full])
    assert response.status_code == 200, response.text
    assert len(response.json()["key_packages"]) == 1


async def test_who_may_claim_and_whose_devices(
    ctx: Context, client: httpx.AsyncClient, counselor: User, client_user: User
) -> None:
    waiting = await register_client(client)
    stranger = await register_client(client)
    device = (await add_device(client, client_user))["device_id"]
    waiting_device = (await add_device(client, waiting))["device_id"]
    stranger_device = (await add_device(client, stranger))["device_id"]
    for who, d in ((client_user, device), (waiting, waiting_device), (stranger, stranger_device)):
        assert (
            await upload(client, who, d, packages(2), key_package(2, b"last"))
        ).status_code == 200
    room_id = await room_with(client, counselor, [client_user])
    await add_and_accept(client, room_id, counselor.auth, waiting.auth, account_id=waiting.id)

    # Not in the room, or no such room: 404, the same answer.
    for room in (room_id, "00000000-0000-4000-8000-000000000000", "nope"):
        response = await claim(client, stranger, room, [device])
        assert response.status_code == 404, response.text
    # In the waiting room: 403.
    response = await claim(client, waiting, room_id, [device])
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "not_admitted"
    # Devices of someone outside the room, of someone not admitted, unknown: 404.
    for d in (stranger_device, waiting_device, "x" * 40, "00000000-0000-4000-8000-000000000000"):
        response = await claim(client, counselor, room_id, [d])
        assert response.status_code == 404, response.text
    # A revoked device: 404, and its packages are gone.
    assert (
        await client.delete(f"/v1/devices/{device}", headers=client_user.auth)
    ).status_code == 204
    response = await claim(client, counselor, room_id, [device])
    assert response.status_code == 404, response.text
    assert await rows(ctx, KeyPackage) == 3 * 3 - 3
    for who, d in ((client_user, waiting_device), (stranger, device), (client_user, "nope")):
        assert (await upload(client, who, d, packages(1))).status_code == 404
        response = await client.get(f"/v1/devices/{d}/key-packages", headers=who.auth)
        assert response.status_code == 404
    assert (await client.get(f"/v1/devices/{device}/key-packages")).status_code == 401
    assert await rows(ctx, KeyPackageClaim) == 0


async def test_claims_are_rate_limited(
    ctx: Context, client: httpx.AsyncClient, counselor: User, client_user: User
) -> None:
    device = (await add_device(client, client_user))["device_id"]
    assert (
        await upload(client, client_user, device, [], key_package(2, b"last"))
    ).status_code == 200
    room_id = await room_with(client, counselor, [client_user])
    for _ in range(CLAIMS_PER_WINDOW):
        assert (await claim(client, counselor, room_id, [device])).status_code == 200
    response = await claim(client, counselor, room_id, [device])
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1
    # Per account: another participant may still claim.
    assert (await claim(client, client_user, room_id, [device])).status_code == 200
    ctx.clock.advance(ctx.settings.key_package_claim_window_s + 1)  # type: ignore[attr-defined]
    assert (await claim(client, counselor, room_id, [device])).status_code == 200


def _bad_packages() -> list[tuple[str, str]]:
    suite1 = key_package(1, b"x25519")
    return [
        ("not base64!", "base64url"),
        (b64(b"\x00\x01\x00\x05"), "truncated"),
        (b64(key_package(2, b"a") + b"\x00"), "trailing_bytes"),
        (b64(header(5)[:2] + b"\x00\x09" + key_package_body(2, b"a")), "unknown_wire_format"),
        (b64(private_message(b"g", 0, 1, [b"", b"", b""])), "wire_format"),
        (b64(suite1), "cipher_suite"),
    ]


@pytest.mark.parametrize(("bad", "reason"), _bad_packages())
async def test_bad_packages_are_refused_and_nothing_changes(
    ctx: Context, client: httpx.AsyncClient, client_user: User, bad: str, reason: str
) -> None:
    device = (await add_device(client, client_user))["device_id"]
    assert (await upload(client, client_user, device, packages(2))).status_code == 200
    body = {"key_packages": [b64(p) for p in packages(2)] + [bad]}
    response = await client.post(
        f"/v1/devices/{device}/key-packages", json=body, headers=client_user.auth
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "key_package_invalid"
    assert problem["reason"] == reason
    assert problem["index"] == 2
    response = await client.post(
        f"/v1/devices/{device}/key-packages",
        json={"key_packages": [], "last_resort": bad},
        headers=client_user.auth,
    )
    assert response.status_code == 422, response.text
    assert response.json()["last_resort"] is True
    assert await stock(client, client_user, device) == {"count": 2, "last_resort": False}
    assert await rows(ctx, KeyPackage) == 2


async def test_a_device_holds_a_bounded_stock(
    ctx: Context, client: httpx.AsyncClient, client_user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.devices import key_packages

    monkeypatch.setattr(key_packages, "MAX_STOCK", 5)
    device = (await add_device(client, client_user))["device_id"]
    assert (await upload(client, client_user, device, packages(4))).status_code == 200
    response = await upload(client, client_user, device, packages(2))
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "too_many_key_packages"
    assert await stock(client, client_user, device) == {"count": 4, "last_resort": False}
    response = await client.post(
        f"/v1/devices/{device}/key-packages",
        json={"key_packages": [b64(p) for p in packages(101)]},
        headers=client_user.auth,
    )
    assert response.status_code == 422
    # Longer than 8 KiB: refused by the request's schema.
    response = await upload(client, client_user, device, [key_package(2, b"a" * 9000)])
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert await stock(client, client_user, device) == {"count": 4, "last_resort": False}
    from app.devices.key_packages import KeyPackageInvalid, check

    with pytest.raises(KeyPackageInvalid) as caught:
        check(b64(key_package(2, b"a" * 8200)), index=0)
    assert caught.value.extra == {"reason": "too_large", "index": 0}


async def test_erasure_deletes_the_packages_of_every_device(
    ctx: Context, client: httpx.AsyncClient, counselor: User, client_user: User
) -> None:
    phone = (await add_device(client, client_user))["device_id"]
    laptop = (await add_device(client, client_user))["device_id"]
    kept = (await add_device(client, counselor))["device_id"]
    for device in (phone, laptop):
        response = await upload(client, client_user, device, packages(2), key_package(2, b"l"))
        assert response.status_code == 200
    assert (await upload(client, counselor, kept, packages(1))).status_code == 200
    assert (await client.delete("/v1/me", headers=client_user.auth)).status_code in (200, 204)
    assert await rows(ctx, KeyPackage) == 1
    assert await stock(client, counselor, kept) == {"count": 1, "last_resort": False}
