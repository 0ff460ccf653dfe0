"""Second factors (TOTP secrets, passkeys, recovery codes), sealed under the account's key

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 19:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auth_factors",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_ix", sa.LargeBinary(length=32), nullable=False),
        sa.Column("details", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_factors")),
        sa.UniqueConstraint("owner_ix", name=op.f("uq_auth_factors_owner_ix")),
    )


def downgrade() -> None:
    op.drop_table("auth_factors")
