from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.audit.schemas import AuditEntryOut, VerifyOut
from app.auth.dependencies import AdminAccount
from app.core.deps import ContextDep, SessionDep
from app.core.errors import Forbidden, Unauthorized, responses

router = APIRouter(tags=["audit"])


@router.get(
    "/v1/admin/audit",
    response_model=list[AuditEntryOut],
    responses=responses(Unauthorized, Forbidden),
    summary="Audit entries in seq order (admin)",
)
async def list_entries(
    admin: AdminAccount,
    session: SessionDep,
    ctx: ContextDep,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEntryOut]:
    entries = await ctx.audit.entries(session, after=after, limit=limit)
    return [
        AuditEntryOut(
            seq=e.seq,
            at=e.at,
            actor=e.actor_id,
            actor_role=e.actor_role,
            action=e.action,
            target=e.target,
            details=e.details,
            hash=e.hash,
            prev_hash=e.prev_hash,
        )
        for e in entries
    ]


@router.get(
    "/v1/admin/audit/verify",
    response_model=VerifyOut,
    responses=responses(Unauthorized, Forbidden),
    summary="Verify the hash chain (admin)",
)
async def verify(admin: AdminAccount, session: SessionDep, ctx: ContextDep) -> VerifyOut:
    result = await ctx.audit.verify(session)
    return VerifyOut(
        ok=result.ok, entries=result.entries, head=result.head, broken_seq=result.broken_seq
    )
