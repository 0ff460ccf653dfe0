"""DELETE /v1/me: the account's data key is destroyed, and with it every record it sealed."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import InstrumentedAttribute

from app.auth import service as auth
from app.context import build_context
from app.core import encryption, events
from app.core.clock import FrozenClock
from app.core.config import Settings
from app.core.context import Context
from app.core.vault import DataKeyDestroyed
from app.devices import service as devices
from app.models import (
    Account,
    AccountRoom,
    AccountStatus,
    CareRelationship,
    ConsentAcceptance,
    DataKey,
    Device,
    Disclosure,
    LoginFamily,
    Notice,
    Role,
)
from app.rooms import invitations
from tests.fixtures.accounts import PASSWORD, User, login, make_account, register_client
from tests.privacy.helpers import (
    accept,
    access_log,
    add_device,
    audit_entries,
    disclosure,
    get_json,
    publish,
    record_disclosure,
    share_a_room,
)

#: Every encrypted column that holds a person's records, and the table's id column.
SEALED: list[InstrumentedAttribute[Any]] = [
    Account.email,
    Account.display_name,
    Device.label,
    ConsentAcceptance.details,
    AccountRoom.room,
    Disclosure.details,
    Notice.details,
]


@dataclass(frozen=True)
class Sealed:
    attr: InstrumentedAttribute[Any]
    row_id: str
    blob: bytes

    @property
    def where(self) -> str:
        return f"{self.attr.class_.__tablename__}.{self.attr.key}"


async def data_key_of(ctx: Context, account_id: str) -> str:
    async with ctx.sessionmaker() as session:
        key_id = await session.scalar(select(Account.data_key_id).where(Account.id == account_id))
    assert key_id is not None
    return key_id


async def sealed_under(ctx: Context, key_id: str) -> list[Sealed]:
    """A copy of every ciphertext in the database that opens as `key_id`'s record.

    A sealed field names no key (decision note 0007): the server finds a
    person's records through their slots; this test simply tries them all.
    """
    found = []
    async with ctx.engine.connect() as conn:
        rows = [
            (attr, row_id, bytes(blob))
            for attr in SEALED
            for row_id, blob in await conn.execute(
                select(attr.class_.__table__.c.id, attr.class_.__table__.c[attr.key])
            )
        ]
    async with ctx.sessionmaker() as session:
        for attr, row_id, blob in rows:
            try:
                await ctx.vault.open(session, key_id, attr, row_id, blob)
            except encryption.DecryptionError:
                continue
            found.append(Sealed(attr, row_id, blob))
    return found


async def erase(client: httpx.AsyncClient, user: User) -> httpx.Response:
    return await client.delete("/v1/me", headers=user.auth)


async def a_full_client(
    client: httpx.AsyncClient, counselor: User, admin: User, clock: FrozenClock
) -> tuple[User, str]:
    person = await register_client(client, display_name="Erin Erasable")
    await add_device(client, person, "Erin's phone")
    document = await publish(client, admin, "telehealth", "Online sessions carry risks.")
    await accept(client, person, document["id"])
    room_id = await share_a_room(client, counselor, person, title="Erin and counselor")
    await record_disclosure(client, counselor, person.id, disclosure(clock, recipient="Dr Who"))
    return person, room_id


async def test_erasure_shreds_every_record_sealed_under_the_account_key(
    ctx: Context,
    settings: Settings,
    client: httpx.AsyncClient,
    counselor: User,
    admin: User,
    clock: FrozenClock,
) -> None:
    person, room_id = await a_full_client(client, counselor, admin, clock)
    key_id = await data_key_of(ctx, person.id)
    before = await sealed_under(ctx, key_id)
    assert {s.where for s in before} == {
        "accounts.email",
        "accounts.display_name",
        "devices.label",
        "consent_acceptances.details",
        "account_rooms.room",
        "disclosures.details",
        "notices.details",
    }
    async with ctx.sessionmaker() as session:
        for sealed in before:
            await ctx.vault.open(session, key_id, sealed.attr, sealed.row_id, sealed.blob)
    counselor_key = await data_key_of(ctx, counselor.id)
    devices_before = await get_json(client, person, "/v1/devices")
    # A second counselor's invitation, still pending.
    other = await make_account(ctx, client, Role.counselor)
    other_room = await client.post(
        "/v1/rooms", json={"title": "Another", "kind": "individual"}, headers=other.auth
    )
    invited = await client.post(
        f"/v1/rooms/{other_room.json()['id']}/participants",
        json={"account_id": person.id},
        headers=other.auth,
    )
    assert invited.status_code == 202
    async with ctx.sessionmaker() as session:
        assert await invitations.SLOTS.count(session, ctx.vault, person.id) >= 1
        assert await session.scalar(select(func.count()).select_from(CareRelationship)) == 1

    response = await erase(client, person)
    assert response.status_code == 204, response.text
    assert response.content == b""

    # Neither this server's vault nor a new one (no cache, same keys) opens any of them.
    fresh = build_context(settings, clock)
    try:
        for vault_ctx in (ctx, fresh):
            async with vault_ctx.sessionmaker() as session:
                for sealed in before:  # as a backup copy would still hold them
                    with pytest.raises(DataKeyDestroyed):
                        await vault_ctx.vault.open(
                            session, key_id, sealed.attr, sealed.row_id, sealed.blob
                        )
                # Everyone else's records still open.
                others = await sealed_under(vault_ctx, counselor_key)
                assert others
                for sealed in others:
                    await vault_ctx.vault.open(
                        session, counselor_key, sealed.attr, sealed.row_id, sealed.blob
                    )
    finally:
        await fresh.close()

    async with ctx.sessionmaker() as session:
        assert await session.get(DataKey, key_id) is None
        account = await session.get(Account, person.id)
        assert account is not None
        assert account.status == AccountStatus.erased
        assert account.data_key_id is None
        assert account.email == b""
        assert account.display_name == b""
        assert not account.password_hash.startswith("$argon2")
        assert account.email_ix != ctx.vault.email_index(person.email)
        # Not only unreadable: gone at once, public keys and log-ins included.
        for sealed in before:
            model: Any = sealed.attr.class_
            if model is not Account:
                assert await session.get(model, sealed.row_id) is None, sealed.where
        for device in devices_before:
            assert await session.get(Device, device["device_id"]) is None
        assert await auth.SLOTS.count(session, ctx.vault, person.id) == 0
        assert await devices.SLOTS.count(session, ctx.vault, person.id) == 0
        assert (await session.execute(select(LoginFamily.id))).all()  # others' stay
        assert await invitations.SLOTS.count(session, ctx.vault, person.id) == 0
        assert await session.scalar(select(func.count()).select_from(CareRelationship)) == 0

    # The counselor still sees the room; the erased participant has left it.
    room = await get_json(client, counselor, f"/v1/rooms/{room_id}")
    names = {p["account_id"]: p["display_name"] for p in room["participants"]}
    assert names == {counselor.id: "Counselor Person"}


async def test_the_erased_account_cannot_log_in_and_every_token_answers_401(
    client: httpx.AsyncClient,
) -> None:
    person = await register_client(client)
    old_access, old_refresh = person.access_token, person.refresh_token
    second = await login(client, User(person.id, person.email, PASSWORD, "", "client"))
    assert (await erase(client, person)).status_code == 204

    wrong = await client.post(
        "/v1/auth/token", data={"username": person.email, "password": PASSWORD}
    )
    unknown = await client.post(
        "/v1/auth/token", data={"username": "nobody-" + person.email, "password": PASSWORD}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["code"] == "invalid_credentials"

    for access in (old_access, second.access_token):
        auth = {"Authorization": f"Bearer {access}"}
        for method, path in (
            ("GET", "/v1/me"),
            ("GET", "/v1/me/export"),
            ("GET", "/v1/me/access-log"),
            ("GET", "/v1/devices"),
            ("DELETE", "/v1/me"),
        ):
            response = await client.request(method, path, headers=auth)
            assert response.status_code == 401, (method, path)
            assert response.json()["code"] == "token_invalid"
    for refresh in (old_refresh, second.refresh_token):
        refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": refresh})
        assert refreshed.status_code == 401


async def test_the_email_can_register_again_as_a_new_account(client: httpx.AsyncClient) -> None:
    person = await register_client(client, display_name="First Life")
    assert (await erase(client, person)).status_code == 204
    again = await register_client(client, email=person.email, display_name="Second Life")
    assert again.id != person.id
    me = await get_json(client, again, "/v1/me")
    assert (me["email"], me["display_name"]) == (person.email, "Second Life")
    # The new account's log knows nothing of the old one.
    assert {e["actor"]["account_id"] for e in await access_log(client, again)} == {again.id}


async def test_the_audit_chain_survives_and_keeps_only_ids(
    client: httpx.AsyncClient, counselor: User, admin: User, clock: FrozenClock
) -> None:
    person, _ = await a_full_client(client, counselor, admin, clock)
    await get_json(client, person, "/v1/me/export")
    devices = await get_json(client, person, "/v1/devices")
    assert (await erase(client, person)).status_code == 204

    verified = await get_json(client, admin, "/v1/admin/audit/verify")
    assert verified["ok"] is True
    entries = await audit_entries(client, admin)
    # The entries up to the verification, then its own `audit.verify` entry.
    assert len(entries) == verified["entries"] + 1
    assert entries[-1]["action"] == "audit.verify"
    about = [e for e in entries if e["target"] == person.id]
    actions = [e["action"] for e in about]
    assert actions[:2] == ["account.create", "auth.login"]
    assert {"room.participant_add", "disclosure.record", "account.export"} <= set(actions)
    assert actions[-1] == "account.erase"
    erased = about[-1]
    assert (erased["actor"], erased["actor_role"]) == (person.id, "client")
    assert erased["details"] == {"devices": [devices[0]["device_id"]], "sessions": 1}
    text = json.dumps(about, ensure_ascii=False)
    for needle in (person.email, "Erin", "Erin's phone", "Erin and counselor", "Dr Who"):
        assert needle not in text


async def test_a_counselors_erasure_leaves_the_disclosures_they_recorded(
    ctx: Context, client: httpx.AsyncClient, client_user: User, clock: FrozenClock
) -> None:
    counselor = await make_account(ctx, client, Role.counselor, display_name="Dr Leaving")
    room_id = await share_a_room(client, counselor, client_user)
    made = await record_disclosure(client, counselor, client_user.id, disclosure(clock))
    assert (await erase(client, counselor)).status_code == 204

    (found,) = await get_json(client, client_user, "/v1/me/disclosures")
    assert found == made
    assert found["recorded_by"] == counselor.id
    assert found["recorded_by_role"] == "counselor"
    (notice,) = await get_json(client, client_user, "/v1/me/notices")
    assert notice["disclosure_id"] == made["id"]
    # The client's room remains; its erased host has left it.
    room = await get_json(client, client_user, f"/v1/rooms/{room_id}")
    assert {p["account_id"]: p["display_name"] for p in room["participants"]} == {
        client_user.id: "Client Person",
    }


async def test_the_last_active_admin_cannot_erase_their_account(
    ctx: Context, client: httpx.AsyncClient, admin: User
) -> None:
    refused = await erase(client, admin)
    assert refused.status_code == 409
    assert refused.json()["code"] == "last_admin"
    assert (await get_json(client, admin, "/v1/me"))["id"] == admin.id
    async with ctx.sessionmaker() as session:
        account = await session.get(Account, admin.id)
        assert account is not None
        assert account.data_key_id is not None
        assert account.status == AccountStatus.active

    other = await make_account(ctx, client, Role.admin)
    assert (await erase(client, admin)).status_code == 204
    last = await erase(client, other)
    assert last.status_code == 409
    assert last.json()["code"] == "last_admin"


async def test_two_admins_erasing_at_once_leave_one(
    ctx: Context, client: httpx.AsyncClient, admin: User
) -> None:
    other = await make_account(ctx, client, Role.admin)
    first, second = await asyncio.gather(erase(client, admin), erase(client, other))
    assert sorted([first.status_code, second.status_code]) == [204, 409]
    async with ctx.sessionmaker() as session:
        active = (
            await session.execute(
                select(Account.id).where(
                    Account.role == Role.admin, Account.status == AccountStatus.active
                )
            )
        ).scalars()
        assert len(list(active)) == 1


async def test_every_instance_forgets_a_destroyed_key(
    ctx: Context, client: httpx.AsyncClient
) -> None:
    """An erasure on another instance reaches this one as an event: its cached key goes."""
    person = await register_client(client)
    key_id = await data_key_of(ctx, person.id)
    async with ctx.sessionmaker() as session:
        account = await session.get(Account, person.id)
        assert account is not None
        assert await ctx.vault.open(session, key_id, Account.email, account.id, account.email)
        # Destroyed elsewhere: this instance still holds the unwrapped key in memory.
        await session.execute(delete(DataKey).where(DataKey.id == key_id))
        await session.commit()
        assert await ctx.vault.open(session, key_id, Account.email, account.id, account.email)
        assert ctx.publisher is not None
        await ctx.publisher(events.DataKeyDestroyed(key_id))
        with pytest.raises(DataKeyDestroyed):
            await ctx.vault.open(session, key_id, Account.email, account.id, account.email)
