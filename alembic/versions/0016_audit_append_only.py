"""The audit log is append-only for every role but its owner (PostgreSQL)

Takes UPDATE, DELETE, TRUNCATE and TRIGGER on `audit_log` from PUBLIC and from
every role that holds them, except the table's owner: the role the server runs
as (docs/operations.md, "Two database roles") can then only SELECT and INSERT
there, so a compromised server cannot quietly edit or cut the chain. Nothing
else changes, and nothing on SQLite (one file, one role). The same fence runs
after every later upgrade (`app.core.migrations.apply_privileges`), which also
covers a restored database, whose dump carries no privileges. The statements
are written out here so that this revision does not change with that code.

Downgrade gives nothing back: which roles held which rights before is not
known, and no schema depends on them.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FENCED = "UPDATE, DELETE, TRUNCATE, TRIGGER"


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    grantees = connection.execute(
        text(
            "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
            "ELSE quote_ident(pg_get_userbyid(a.grantee)) END "
            "FROM pg_class c, aclexplode(c.relacl) a "
            "WHERE c.oid = to_regclass('audit_log') AND a.grantee <> c.relowner "
            "AND a.privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE', 'TRIGGER')"
        )
    ).scalars()
    for grantee in ["PUBLIC", *grantees]:
        op.execute(f"REVOKE {FENCED} ON audit_log FROM {grantee}")


def downgrade() -> None:
    pass
