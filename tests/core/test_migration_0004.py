"""Revision 0004 moves rows stored by 0003 into unlinkable storage, on both databases.

Rows are written as revision 0003 stored them (format 1 fields with the key
id in clear, per-person blind indexes, plain times, account ids on devices
and refresh tokens, an audit chain over them); after the upgrade, the
services read every one of them back, an old refresh token still works, the
chain verifies (with an `audit.rechained` entry naming the old head), and no
data key id or account id is left outside its own row.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts import service as accounts
from app.audit.service import GENESIS, chain_hash
from app.auth import service as auth
from app.consent import service as consent
from app.context import build_context
from app.core import encryption
from app.core.clock import FrozenClock
from app.core.config import Settings
from app.core.db import create_engine
from app.core.migrations import upgrade_on
from app.devices import service as devices
from app.models import Account
from app.notices import service as notices
from app.rooms import service as rooms
from tests.fixtures.services import create_pg_database, drop_pg_database, pg_url, unavailable

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def _frame(*parts: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def seal_v1(key: bytes, key_id: str, plain: str, table: str, column: str, row_id: str) -> bytes:
    """A field exactly as format 1 stored it (the key id in clear)."""
    aad = _frame(
        b"confide/field",
        b"\x01",
        key_id.encode(),
        table.encode(),
        column.encode(),
        row_id.encode(),
    )
    nonce = os.urandom(12)
    body = AESGCM(key).encrypt(nonce, plain.encode(), aad)
    return b"\x01" + bytes([len(key_id)]) + key_id.encode() + nonce + body


@pytest.fixture(params=["sqlite", "postgresql"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    try:
        name = await create_pg_database()
    except (OSError, TimeoutError) as error:
        unavailable("PostgreSQL", error)
        raise
    yield pg_url(name)
    await drop_pg_database(name)


class Old:
    """Writes rows the way revision 0003's code did."""

    def __init__(self, settings: Settings) -> None:
        from app.core.keys import load_keys

        material = load_keys(settings)
        self.keyring, self.index_key = material.keyring, material.index_key
        self.data: dict[str, bytes] = {}
        self.rows: list[tuple[str, dict[str, Any]]] = []

    def key(self, key_id: str) -> bytes:
        if key_id not in self.data:
            self.data[key_id] = encryption.generate_key()
            self.insert(
                "data_keys",
                id=key_id,
                master_kid=self.keyring.current_kid,
                wrapped=encryption.wrap_data_key(self.keyring, key_id, self.data[key_id]),
                created_at=NOW,
            )
        return self.data[key_id]

    def seal(self, key_id: str, value: Any, table: str, column: str, row_id: str) -> bytes:
        plain = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        return seal_v1(self.key(key_id), key_id, plain, table, column, row_id)

    def ix(self, value: str, purpose: str) -> bytes:
        return encryption.blind_index(self.index_key, value, purpose=purpose)

    def insert(self, table: str, **values: Any) -> None:
        self.rows.append((table, values))


def _old_story(old: Old) -> dict[str, str]:
    ids = {
        "client": "11111111-1111-4111-8111-111111111111",
        "client_key": "21111111-1111-4111-8111-111111111111",
        "room": "31111111-1111-4111-8111-111111111111",
        "room_key": "41111111-1111-4111-8111-111111111111",
        "device": "51111111-1111-4111-8111-111111111111",
        "doc": "61111111-1111-4111-8111-111111111111",
        "family": "71111111-1111-4111-8111-111111111111",
        "refresh": "refresh-token-of-the-old-login",
    }
    c, ck = ids["client"], ids["client_key"]
    old.key("system")
    old.key(ck)
    old.insert(
        "accounts",
        id=c,
        role="client",
        status="active",
        email_ix=old.ix("ada@example.org", "account.email"),
        email=old.seal(ck, "ada@example.org", "accounts", "email", c),
        display_name=old.seal(ck, "Ada Old", "accounts", "display_name", c),
        password_hash="$argon2id$v=19$m=19456,t=2,p=1$old",
        data_key_id=ck,
        created_at=NOW,
    )
    room_details = {
        "title": "Old session",
        "starts_at": None,
        "ends_at": None,
        "ended_at": None,
        "created_at": NOW.isoformat(),
    }
    rid, rk = ids["room"], ids["room_key"]
    old.insert(
        "rooms",
        id=rid,
        kind="individual",
        data_key_id=rk,
        details=old.seal(rk, room_details, "rooms", "details", rid),
        max_participants=2,
        waiting_room=False,
        locked=False,
        ended=False,
    )
    member = {"account": c, "role": "host", "admitted": True}
    old.insert(
        "room_members",
        id="m1",
        room_id=rid,
        member_ix=old.ix(f"{rid}:{c}", "room.member"),
        details=old.seal(rk, member, "room_members", "details", "m1"),
    )
    old.insert(
        "account_rooms",
        id="ar1",
        owner_ix=old.ix(c, "account.rooms"),
        room_ix=old.ix(f"{c}:{rid}", "account.room"),
        room=old.seal(ck, rid, "account_rooms", "room", "ar1"),
    )
    old.insert(
        "consent_documents",
        id=ids["doc"],
        kind="informed_consent",
        locale="en",
        version=1,
        title="Consent",
        body="Terms.",
        sha256=hashlib.sha256(b"Terms.").digest(),
        published_at=NOW,
    )
    accepted = {"document_id": ids["doc"], "sha256": "00", "accepted_at": NOW.isoformat()}
    old.insert(
        "consent_acceptances",
        id="ca1",
        owner_ix=old.ix(c, "consent.owner"),
        acceptance_ix=old.ix(f"{c}:{ids['doc']}", "consent.acceptance"),
        details=old.seal(ck, accepted, "consent_acceptances", "details", "ca1"),
    )
    old.insert(
        "devices",
        id=ids["device"],
        account_id=c,
        label=old.seal(ck, "Old phone", "devices", "label", ids["device"]),
        public_key=b"\x04" + bytes(64),
        created_at=NOW,
        revoked_at=None,
    )
    old.insert(
        "refresh_tokens",
        id="rt1",
        family_id=ids["family"],
        account_id=c,
        token_hash=hashlib.sha256(ids["refresh"].encode()).digest(),
        family_started_at=NOW,
        created_at=NOW,
        spent_at=None,
        revoked_at=None,
    )
    notice = {
        "kind": "incident",
        "ref": "i1",
        "message": "Old notice",
        "created_at": NOW.isoformat(),
        "visible_from": None,
    }
    old.insert(
        "notices",
        id="n1",
        recipient_ix=old.ix(c, "notice.recipient"),
        details=old.seal(ck, notice, "notices", "details", "n1"),
    )
    prev = GENESIS
    for seq, action in ((1, "account.create"), (2, "room.create")):
        target = c if action == "account.create" else rid
        payload_value = {
            "at": NOW.isoformat(),
            "action": action,
            "actor": c,
            "actor_role": "client",
            "target": target,
            "details": {},
        }
        payload = old.seal("system", payload_value, "audit_log", "payload", str(seq))
        target_ix = old.ix(target, "audit.target")
        digest = chain_hash(prev, seq, target_ix, payload)
        old.insert(
            "audit_log", seq=seq, target_ix=target_ix, payload=payload, prev_hash=prev, hash=digest
        )
        prev = digest
    return ids


async def _write(engine: AsyncEngine, rows: list[tuple[str, dict[str, Any]]]) -> None:
    async with engine.begin() as conn:
        for table, values in rows:
            columns = ", ".join(values)
            marks = ", ".join(f":{name}" for name in values)
            await conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({marks})"), values)


async def test_rows_of_0003_are_readable_and_unlinkable_after_0004(
    url: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=SecretStr(url))
    old = Old(settings)
    ids = _old_story(old)
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(upgrade_on, "0003")
    await _write(engine, old.rows)
    async with engine.begin() as conn:
        await conn.run_sync(upgrade_on, "head", (old.keyring, old.index_key))

    # Nothing outside the account's own row names its data key or its id.
    async with engine.connect() as conn:
        for table in (
            "rooms",
            "room_members",
            "account_rooms",
            "consent_acceptances",
            "devices",
            "login_families",
            "refresh_tokens",
            "notices",
            "audit_log",
        ):
            for row in (await conn.execute(text(f"SELECT * FROM {table}"))).all():
                for value in row:
                    raw = value if isinstance(value, bytes) else str(value).encode()
                    assert ids["client_key"].encode() not in raw, table
                    assert ids["client"].encode() not in raw, table
    await engine.dispose()

    ctx = build_context(settings, FrozenClock(NOW + timedelta(minutes=1)))
    try:
        async with ctx.transaction() as session:
            account = await session.get(Account, ids["client"])
            assert account is not None
            view = await accounts.view(session, ctx.vault, account)
            assert (view.email, view.display_name, view.created_at) == (
                "ada@example.org",
                "Ada Old",
                NOW,
            )
            [state] = await rooms.list_rooms(session, ctx, account)
            assert state.title == "Old session"
            assert [m.account_id for m in state.members] == [ids["client"]]
            [device] = await devices.list_active(session, ctx.vault, account)
            assert (device.id, device.label, device.public_key) == (
                ids["device"],
                "Old phone",
                b"\x04" + bytes(64),
            )
            [acceptance] = await consent.acceptances(session, ctx.vault, account)
            assert acceptance.document_id == ids["doc"]
            [notice] = await notices.notices_for(session, ctx.vault, ctx.clock, account)
            assert notice.message == "Old notice"
            entries = await ctx.audit.entries_about(session, ids["client"])
            assert [e.action for e in entries] == ["account.create"]
        async with ctx.transaction() as session:
            pair = await auth.refresh(session, ctx, ids["refresh"])
            assert pair.refresh_token
        async with ctx.transaction() as session:
            verified = await ctx.audit.verify(session)
            assert verified.ok, verified
            last = await ctx.audit.entries(session, after=2, limit=10)
            assert last[0].action == "audit.rechained"
            assert last[0].details["entries"] == 2
    finally:
        await ctx.close()
