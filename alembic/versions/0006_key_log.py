"""key log: identity keys and signed devices

Each account's key log (identity key set or reset, device added or revoked),
one sealed entry per row, found by the account's slot indexes. No account id,
no time in clear. Devices keep their table: a device's signing key and its
identity key's signature are sealed in its `details`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "key_log_entries",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("slot_ix", sa.LargeBinary(length=32), nullable=False),
        sa.Column("entry", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_log_entries")),
        sa.UniqueConstraint("slot_ix", name=op.f("uq_key_log_entries_slot_ix")),
    )


def downgrade() -> None:
    op.drop_table("key_log_entries")
