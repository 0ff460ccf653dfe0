"""The latest MLS GroupInfo of each room, sealed under the room's key

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 14:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "room_group_infos",
        sa.Column("room_id", sa.String(length=36), nullable=False),
        sa.Column("group_info", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["room_id"],
            ["rooms.id"],
            name=op.f("fk_room_group_infos_room_id_rooms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("room_id", name=op.f("pk_room_group_infos")),
    )


def downgrade() -> None:
    op.drop_table("room_group_infos")
