"""unlinkable storage: sealed fields name no key, slot indexes, sealed times

Decision note 0007. Every sealed field is re-sealed in format 2 (no key id in
clear, a derived key per field); every per-person blind index becomes a slot
index; plain times are sealed; devices and log-ins no longer carry account
ids; the audit chain is rebuilt over the re-sealed entries, and an entry
`audit.rechained` records the old head.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 11:00:00
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import context, op

import app.models.base
from app.core import encryption

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SYSTEM = "system"
GENESIS = b"\x00" * 32
# The purposes of the slot indexes, as `app.core.slots.Slots` users name them.
ROOMS_SLOT = "account.rooms.slot"
CONSENT_SLOT = "consent.owner.slot"
DISCLOSURE_SLOT = "disclosure.client.slot"
NOTICE_SLOT = "notice.recipient.slot"
AUDIT_SLOT = "audit.target.slot"
DEVICE_SLOT = "device.owner.slot"
LOGIN_SLOT = "login.owner.slot"

UTC_DT = app.models.base.UTCDateTime()


class _Keys:
    """Data keys and the index key, loaded only when there are rows to convert."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn
        self._loaded: tuple[encryption.Keyring, bytes] | None = None
        self._data: dict[str, bytes] = {}

    def _ring(self) -> tuple[encryption.Keyring, bytes]:
        if self._loaded is None:
            given = context.config.attributes.get("confide.keys")
            if given is None:
                from app.core.config import get_settings
                from app.core.keys import load_keys

                material = load_keys(get_settings())
                given = (material.keyring, material.index_key)
            self._loaded = given
        return self._loaded

    def data_key(self, key_id: str) -> bytes | None:
        if key_id not in self._data:
            row = self._conn.execute(
                sa.text("SELECT wrapped FROM data_keys WHERE id = :id"), {"id": key_id}
            ).first()
            if row is None:
                return None  # destroyed: what it sealed is shredded
            self._data[key_id] = encryption.unwrap_data_key(self._ring()[0], key_id, row[0])
        return self._data[key_id]

    def index(self, value: str, purpose: str) -> bytes:
        return encryption.blind_index(self._ring()[1], value, purpose=purpose)

    def slot(self, purpose: str, owner: str, slot: int) -> bytes:
        return self.index(f"{owner}:{slot}", purpose)

    def reseal_v1(self, blob: bytes, table: str, column: str, row_id: str) -> tuple[bytes, str] | None:
        """(the field in format 2, its key id); None when its key is destroyed."""
        if not blob:
            return None
        key_id = encryption.sealed_key_id_v1(blob)
        key = self.data_key(key_id)
        if key is None:
            return None
        plain = encryption.open_sealed_v1(key, blob, table=table, column=column, row_id=row_id)
        return encryption.seal(key, key_id, plain, table=table, column=column, row_id=row_id), key_id

    def seal(self, key_id: str, plain: str, table: str, column: str, row_id: str) -> bytes:
        key = self.data_key(key_id)
        assert key is not None
        return encryption.seal(
            key, key_id, plain.encode(), table=table, column=column, row_id=row_id
        )

    def open_v1(self, blob: bytes, table: str, column: str, row_id: str) -> Any:
        key_id = encryption.sealed_key_id_v1(blob)
        key = self.data_key(key_id)
        if key is None:
            return None
        return json.loads(
            encryption.open_sealed_v1(key, blob, table=table, column=column, row_id=row_id)
        )


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _when(value: Any) -> str:
    """A stored time as ISO 8601 in UTC (SQLite returns text, PostgreSQL datetimes)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _rows(conn: sa.Connection, sql: str) -> list[sa.Row[Any]]:
    return list(conn.execute(sa.text(sql)))


def _slot_column(table: str, column: str, old_index: str | None) -> None:
    """A plain blind-index column becomes a unique slot index."""
    with op.batch_alter_table(table) as batch:
        if old_index is not None:
            batch.drop_index(old_index)
        batch.create_unique_constraint(f"uq_{table}_{column}", [column])


def _owners(conn: sa.Connection) -> dict[str, str]:
    """data key id -> account id."""
    return {
        r[0]: r[1]
        for r in _rows(conn, "SELECT data_key_id, id FROM accounts WHERE data_key_id IS NOT NULL")
    }


def _sqlite() -> bool:
    return bool(op.get_bind().dialect.name == "sqlite")


def _drop_column(table: str, column: str) -> None:
    # SQLite: a native ALTER, never a batch copy. Copying a table means
    # dropping the old one, and with foreign keys on, that drop runs the
    # ON DELETE actions of every child row (SET NULL, CASCADE).
    if _sqlite():
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    else:
        op.drop_column(table, column)


def upgrade() -> None:
    conn = op.get_bind()
    keys = _Keys(conn)
    owners = _owners(conn)

    # Read, then drop, the tables that hang on accounts, before accounts change.
    devices = _rows(
        conn,
        "SELECT id, account_id, label, public_key, created_at, revoked_at FROM devices"
        " ORDER BY created_at, id",
    )
    tokens = _rows(
        conn,
        "SELECT id, family_id, account_id, token_hash, family_started_at, created_at,"
        " spent_at, revoked_at FROM refresh_tokens ORDER BY created_at, id",
    )
    op.drop_table("devices")
    op.drop_table("refresh_tokens")

    # -- accounts: sealed creation time; fields re-sealed -----------------------------
    accounts = _rows(conn, "SELECT id, data_key_id, email, display_name, created_at FROM accounts")
    if _sqlite():
        op.execute("ALTER TABLE accounts ADD COLUMN created BLOB NOT NULL DEFAULT x''")
    else:
        op.add_column("accounts", sa.Column("created", sa.LargeBinary(), nullable=True))
    for account_id, key_id, email, name, created_at in accounts:
        values: dict[str, Any] = {"id": account_id, "email": b"", "name": b"", "created": b""}
        if key_id is not None and keys.data_key(key_id) is not None:
            for field, blob in (("email", email), ("display_name", name)):
                done = keys.reseal_v1(blob, "accounts", field, account_id)
                values["email" if field == "email" else "name"] = done[0] if done else b""
            values["created"] = keys.seal(
                key_id, _when(created_at), "accounts", "created", account_id
            )
        conn.execute(
            sa.text(
                "UPDATE accounts SET email = :email, display_name = :name, created = :created"
                " WHERE id = :id"
            ),
            values,
        )
    if not _sqlite():
        op.alter_column("accounts", "created", existing_type=sa.LargeBinary(), nullable=False)
    _drop_column("accounts", "created_at")
    _drop_column("data_keys", "created_at")

    # -- rooms and memberships ---------------------------------------------------------
    for room_id, blob in _rows(conn, "SELECT id, details FROM rooms"):
        done = keys.reseal_v1(blob, "rooms", "details", room_id)
        conn.execute(
            sa.text("UPDATE rooms SET details = :d WHERE id = :id"),
            {"d": done[0] if done else b"", "id": room_id},
        )
    for row_id, blob in _rows(conn, "SELECT id, details FROM room_members"):
        done = keys.reseal_v1(blob, "room_members", "details", row_id)
        if done is None:
            conn.execute(sa.text("DELETE FROM room_members WHERE id = :id"), {"id": row_id})
        else:
            conn.execute(
                sa.text("UPDATE room_members SET details = :d WHERE id = :id"),
                {"d": done[0], "id": row_id},
            )

    # Each owner's rows take slots 0..n-1 (under a temporary random index first,
    # so that no value collides while the column changes meaning).
    def to_slots(table: str, column: str, purpose: str, blob_column: str) -> None:
        counts: dict[str, int] = {}
        for row_id, blob in _rows(conn, f"SELECT id, {blob_column} FROM {table} ORDER BY id"):
            done = keys.reseal_v1(blob, table, blob_column, row_id)
            owner = owners.get(done[1]) if done is not None else None
            if done is None or owner is None:
                conn.execute(sa.text(f"DELETE FROM {table} WHERE id = :id"), {"id": row_id})
                continue
            slot = counts.get(owner, 0)
            counts[owner] = slot + 1
            conn.execute(
                sa.text(f"UPDATE {table} SET {blob_column} = :b, {column} = :ix WHERE id = :id"),
                {"b": done[0], "ix": keys.slot(purpose, owner, slot), "id": row_id},
            )

    to_slots("account_rooms", "owner_ix", ROOMS_SLOT, "room")
    _slot_column("account_rooms", "owner_ix", "ix_account_rooms_owner_ix")
    to_slots("consent_acceptances", "owner_ix", CONSENT_SLOT, "details")
    _slot_column("consent_acceptances", "owner_ix", "ix_consent_acceptances_owner_ix")
    to_slots("disclosures", "client_ix", DISCLOSURE_SLOT, "details")
    _slot_column("disclosures", "client_ix", "ix_disclosures_client_ix")
    to_slots("notices", "recipient_ix", NOTICE_SLOT, "details")
    _slot_column("notices", "recipient_ix", "ix_notices_recipient_ix")

    for incident_id, details, subjects in _rows(
        conn, "SELECT id, details, subjects FROM incidents"
    ):
        d = keys.reseal_v1(details, "incidents", "details", incident_id)
        s = keys.reseal_v1(subjects, "incidents", "subjects", incident_id)
        assert d is not None and s is not None
        conn.execute(
            sa.text("UPDATE incidents SET details = :d, subjects = :s WHERE id = :id"),
            {"d": d[0], "s": s[0], "id": incident_id},
        )

    # -- devices: no account id, sealed key and times ------------------------------------
    _create_devices()
    device_counts: dict[str, int] = {}
    for device_id, account_id, label, public_key, created_at, revoked_at in devices:
        key_id = next((k for k, a in owners.items() if a == account_id), None)
        done = keys.reseal_v1(label, "devices", "label", device_id) if key_id else None
        if key_id is None or done is None:
            continue  # the owner was erased: the device goes with them
        slot = device_counts.get(account_id, 0)
        device_counts[account_id] = slot + 1
        details = _json(
            {
                "public_key": base64.urlsafe_b64encode(bytes(public_key)).rstrip(b"=").decode(),
                "created_at": _when(created_at),
                "revoked_at": _when(revoked_at) if revoked_at is not None else None,
            }
        )
        conn.execute(
            sa.text(
                "INSERT INTO devices (id, owner_ix, slot_ix, revoked, label, details)"
                " VALUES (:id, :owner, :slot, :revoked, :label, :details)"
            ),
            {
                "id": device_id,
                "owner": keys.index(f"{account_id}:{device_id}", "device.owner"),
                "slot": keys.slot(DEVICE_SLOT, account_id, slot),
                "revoked": revoked_at is not None,
                "label": done[0],
                "details": keys.seal(key_id, details, "devices", "details", device_id),
            },
        )

    # -- log-ins: families with no account id, sealed times --------------------------------
    _create_logins()
    families: dict[str, dict[str, Any]] = {}
    for _id, family_id, account_id, _hash, started, created, _spent, revoked in tokens:
        family = families.setdefault(
            family_id,
            {"account": account_id, "started_at": _when(started), "last_at": _when(created)},
        )
        family["last_at"] = max(family["last_at"], _when(created))
        if revoked is not None:
            family["revoked_at"] = min(family.get("revoked_at") or _when(revoked), _when(revoked))
    login_counts: dict[str, int] = {}
    active = {a for a in owners.values()}
    for family_id, family in families.items():
        owner = family["account"]
        if owner not in active:
            continue
        slot = login_counts.get(owner, 0)
        login_counts[owner] = slot + 1
        family.setdefault("revoked_at", None)
        conn.execute(
            sa.text(
                "INSERT INTO login_families (id, slot_ix, revoked, details)"
                " VALUES (:id, :slot, :revoked, :details)"
            ),
            {
                "id": family_id,
                "slot": keys.slot(LOGIN_SLOT, owner, slot),
                "revoked": family["revoked_at"] is not None,
                "details": keys.seal(SYSTEM, _json(family), "login_families", "details", family_id),
            },
        )
    for token_id, family_id, account_id, token_hash, _s, created, spent, _r in tokens:
        if account_id not in active:
            continue
        conn.execute(
            sa.text(
                "INSERT INTO refresh_tokens (id, family_id, token_hash, spent, details)"
                " VALUES (:id, :family, :hash, :spent, :details)"
            ),
            {
                "id": token_id,
                "family": family_id,
                "hash": token_hash,
                "spent": spent is not None,
                "details": keys.seal(
                    SYSTEM,
                    _json({"created_at": _when(created)}),
                    "refresh_tokens",
                    "details",
                    token_id,
                ),
            },
        )

    # -- the audit log: re-sealed, target slots, the chain rebuilt ------------------------
    entries = _rows(conn, "SELECT seq, payload, hash FROM audit_log ORDER BY seq")
    if entries:
        _rechain(conn, keys, entries)
    _slot_column("audit_log", "target_ix", "ix_audit_log_target_ix")


def _chain_hash(prev: bytes, seq: int, target_ix: bytes | None, payload: bytes) -> bytes:
    content = json.dumps(
        {
            "seq": seq,
            "target_ix": target_ix.hex() if target_ix is not None else None,
            "payload": base64.b64encode(payload).decode(),
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    return hashlib.sha256(prev + content).digest()


def _rechain(conn: sa.Connection, keys: _Keys, entries: list[sa.Row[Any]]) -> None:
    old_head = bytes(entries[-1][2]).hex()
    # Free every target index first: the new values must not meet old ones.
    conn.execute(sa.text("UPDATE audit_log SET target_ix = NULL"))
    counts: dict[str, int] = {}
    prev = GENESIS
    last = None
    for seq, blob, _hash in entries:
        data = keys.open_v1(blob, "audit_log", "payload", str(seq))
        payload = keys.seal(SYSTEM, _json(data), "audit_log", "payload", str(seq))
        target_ix = None
        if data.get("target") is not None:
            slot = counts.get(data["target"], 0)
            counts[data["target"]] = slot + 1
            target_ix = keys.slot(AUDIT_SLOT, data["target"], slot)
        digest = _chain_hash(prev, seq, target_ix, payload)
        conn.execute(
            sa.text(
                "UPDATE audit_log SET payload = :p, target_ix = :t, prev_hash = :prev, hash = :h"
                " WHERE seq = :seq"
            ),
            {"p": payload, "t": target_ix, "prev": prev, "h": digest, "seq": seq},
        )
        prev = digest
        last = seq
    assert last is not None
    seq = last + 1
    payload = keys.seal(
        SYSTEM,
        _json(
            {
                "at": datetime.now(UTC).isoformat(),
                "action": "audit.rechained",
                "actor": None,
                "actor_role": None,
                "target": None,
                "details": {"previous_head": old_head, "entries": len(entries)},
            }
        ),
        "audit_log",
        "payload",
        str(seq),
    )
    conn.execute(
        sa.text(
            "INSERT INTO audit_log (seq, target_ix, payload, prev_hash, hash)"
            " VALUES (:seq, NULL, :p, :prev, :h)"
        ),
        {"seq": seq, "p": payload, "prev": prev, "h": _chain_hash(prev, seq, None, payload)},
    )


def _create_devices() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_ix", sa.LargeBinary(length=32), nullable=False),
        sa.Column("slot_ix", sa.LargeBinary(length=32), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("label", sa.LargeBinary(), nullable=False),
        sa.Column("details", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("owner_ix", name=op.f("uq_devices_owner_ix")),
        sa.UniqueConstraint("slot_ix", name=op.f("uq_devices_slot_ix")),
    )


def _create_logins() -> None:
    op.create_table(
        "login_families",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("slot_ix", sa.LargeBinary(length=32), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("details", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_families")),
        sa.UniqueConstraint("slot_ix", name=op.f("uq_login_families_slot_ix")),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("family_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("spent", sa.Boolean(), nullable=False),
        sa.Column("details", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["login_families.id"],
            name=op.f("fk_refresh_tokens_family_id_login_families"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_refresh_tokens_token_hash")),
    )
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.create_index(batch.f("ix_refresh_tokens_family_id"), ["family_id"], unique=False)


def downgrade() -> None:
    """The schema of 0003. Rows cannot go back (they were re-sealed): refused if any."""
    conn = op.get_bind()
    for table in ("accounts", "audit_log", "devices", "login_families"):
        if conn.execute(sa.text(f"SELECT 1 FROM {table} LIMIT 1")).first() is not None:
            raise RuntimeError(
                "0004 cannot be undone on a database with rows: its fields were re-sealed"
            )
    op.drop_table("refresh_tokens")
    op.drop_table("login_families")
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("family_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("family_started_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("spent_at", app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_refresh_tokens_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_refresh_tokens_token_hash")),
    )
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.create_index(batch.f("ix_refresh_tokens_account_id"), ["account_id"], unique=False)
        batch.create_index(batch.f("ix_refresh_tokens_family_id"), ["family_id"], unique=False)
    op.drop_table("devices")
    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("label", sa.LargeBinary(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(length=4096), nullable=False),
        sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_devices_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
    )
    with op.batch_alter_table("devices") as batch:
        batch.create_index(batch.f("ix_devices_account_id"), ["account_id"], unique=False)
    for table, column in (
        ("audit_log", "target_ix"),
        ("notices", "recipient_ix"),
        ("disclosures", "client_ix"),
        ("consent_acceptances", "owner_ix"),
        ("account_rooms", "owner_ix"),
    ):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"uq_{table}_{column}", type_="unique")
            batch.create_index(f"ix_{table}_{column}", [column], unique=False)
    with op.batch_alter_table("data_keys") as batch:
        batch.add_column(
            sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False)
        )
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False)
        )
        batch.drop_column("created")

