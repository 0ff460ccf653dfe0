"""room invitations and care relationships

Decision note 0008. A host's invitation of a client waits, in
`room_invitations`, for the client's acceptance; the acceptance records the
care relationship as a blind index of the pair in `care_relationships`.
Neither table holds an account id, a name or a time in clear. Existing
memberships get no care relationship: the direct additions they came from
are what this revision stops trusting.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "care_relationships",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("pair_ix", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_care_relationships")),
        sa.UniqueConstraint("pair_ix", name=op.f("uq_care_relationships_pair_ix")),
    )
    op.create_table(
        "room_invitations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("room_id", sa.String(length=36), nullable=False),
        sa.Column("invitee_ix", sa.LargeBinary(length=32), nullable=False),
        sa.Column("details", sa.LargeBinary(), nullable=False),
        sa.Column("room_details", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["room_id"],
            ["rooms.id"],
            name=op.f("fk_room_invitations_room_id_rooms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_room_invitations")),
        sa.UniqueConstraint("invitee_ix", name=op.f("uq_room_invitations_invitee_ix")),
    )
    with op.batch_alter_table("room_invitations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_room_invitations_room_id"), ["room_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("room_invitations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_room_invitations_room_id"))
    op.drop_table("room_invitations")
    op.drop_table("care_relationships")
