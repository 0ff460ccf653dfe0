"""Rights requests (45 CFR 164.522 to 164.528), and the account's jurisdiction for breach clocks

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 19:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rights_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("client_ix", sa.LargeBinary(length=32), nullable=False),
        sa.Column("owner", sa.LargeBinary(), nullable=False),
        sa.Column("details", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rights_requests")),
        sa.UniqueConstraint("client_ix", name=op.f("uq_rights_requests_client_ix")),
    )
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("jurisdiction", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("jurisdiction")
    op.drop_table("rights_requests")
