"""Safety check-ins and licensure, sealed; the rooms' `safety_checkin` setting

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 19:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rooms made before check-ins existed keep admitting as they did: `off`.
    with op.batch_alter_table("rooms") as batch:
        batch.add_column(
            sa.Column(
                "safety_checkin",
                sa.Enum(
                    "required",
                    "optional",
                    "off",
                    name="safetycheckinmode",
                    native_enum=False,
                    length=16,
                ),
                server_default="off",
                nullable=False,
            )
        )
    op.create_table(
        "safety_checkins",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_ix", sa.LargeBinary(length=32), nullable=False),
        sa.Column("checkin_ix", sa.LargeBinary(length=32), nullable=False),
        sa.Column("details", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_safety_checkins")),
        sa.UniqueConstraint("checkin_ix", name=op.f("uq_safety_checkins_checkin_ix")),
        sa.UniqueConstraint("owner_ix", name=op.f("uq_safety_checkins_owner_ix")),
    )
    op.create_table(
        "licensures",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_ix", sa.LargeBinary(length=32), nullable=False),
        sa.Column("details", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licensures")),
        sa.UniqueConstraint("owner_ix", name=op.f("uq_licensures_owner_ix")),
    )


def downgrade() -> None:
    op.drop_table("licensures")
    op.drop_table("safety_checkins")
    with op.batch_alter_table("rooms") as batch:
        batch.drop_column("safety_checkin")
