"""MLS key packages per device, and the refs handed out in each room

A device's KeyPackages wait in `key_packages` under slot indexes of the
device (no device id, no account id), sealed under the owner's data key.
Every package handed out in a room leaves a `key_package_claims` row: a
blind index of (room, KeyPackageRef) and the device, sealed under the room's
key, so that a Welcome can be routed to the devices its refs name.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "key_packages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("slot_ix", sa.LargeBinary(length=32), nullable=False),
        sa.Column("package", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_packages")),
        sa.UniqueConstraint("slot_ix", name=op.f("uq_key_packages_slot_ix")),
    )
    op.create_table(
        "key_package_claims",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("room_id", sa.String(length=36), nullable=False),
        sa.Column("ref_ix", sa.LargeBinary(length=32), nullable=False),
        sa.Column("details", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["room_id"],
            ["rooms.id"],
            name=op.f("fk_key_package_claims_room_id_rooms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_package_claims")),
    )
    with op.batch_alter_table("key_package_claims", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_key_package_claims_ref_ix"), ["ref_ix"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_key_package_claims_room_id"), ["room_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("key_package_claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_key_package_claims_room_id"))
        batch_op.drop_index(batch_op.f("ix_key_package_claims_ref_ix"))
    op.drop_table("key_package_claims")
    op.drop_table("key_packages")
