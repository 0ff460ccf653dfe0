from __future__ import annotations

from datetime import datetime
from typing import Any

from app.core.schemas import ResponseModel


class AuditEntryOut(ResponseModel):
    seq: int
    at: datetime
    actor: str | None
    actor_role: str | None
    action: str
    target: str | None
    details: dict[str, Any]
    hash: str
    prev_hash: str


class VerifyOut(ResponseModel):
    ok: bool
    entries: int
    head: str | None
    broken_seq: int | None = None
