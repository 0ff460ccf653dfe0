"""Guardians of minor clients: the minor's profile and both sides of each link, sealed

`minor_profiles` holds a blind index of the account and its sealed minor
status; `guardian_links` (the minor's side) and `ward_links` (the guardian's
side) hold a slot index and a sealed body each, sharing no value. Typed room
participants (supervisor, interpreter, guardian) and supervision consents
live inside the sealed `room_members.details` and need no column.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 19:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "minor_profiles",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_ix", sa.LargeBinary(length=32), nullable=False),
        sa.Column("details", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_minor_profiles")),
        sa.UniqueConstraint("account_ix", name=op.f("uq_minor_profiles_account_ix")),
    )
    for table in ("guardian_links", "ward_links"):
        op.create_table(
            table,
            sa.Column("id", sa.String(length=36), nullable=False),
            sa.Column("owner_ix", sa.LargeBinary(length=32), nullable=False),
            sa.Column("details", sa.LargeBinary(), nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
            sa.UniqueConstraint("owner_ix", name=op.f(f"uq_{table}_owner_ix")),
        )


def downgrade() -> None:
    op.drop_table("ward_links")
    op.drop_table("guardian_links")
    op.drop_table("minor_profiles")
