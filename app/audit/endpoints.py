from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query

from app.audit.checkpoints import read_recent, verify_anchored
from app.audit.schemas import (
    AuditEntryOut,
    CheckpointOut,
    CheckpointsOut,
    RefusedLineOut,
    VerifyOut,
)
from app.auth.dependencies import AdminPrincipal
from app.core import audit
from app.core.errors import Forbidden, Unauthorized
from app.web.deps import ContextDep, SessionDep
from app.web.errors import responses
from app.web.pagination import PageDep, paged

router = APIRouter(tags=["audit"])

#: How many of the newest lines of the checkpoint file `verify?checkpoints=true` reads.
VERIFY_CHECKPOINT_LINES = 1000


@router.get(
    "/v1/admin/audit",
    response_model=list[AuditEntryOut],
    responses=paged(responses(Unauthorized, Forbidden)),
    summary="Audit entries in seq order (admin)",
    description=(
        "The entries with `seq` greater than `after` (or than the cursor's place), at most"
        " `limit`. Reading the log is itself recorded (`audit.read`, with the range read)."
    ),
)
async def list_entries(
    admin: AdminPrincipal,
    session: SessionDep,
    ctx: ContextDep,
    page: PageDep,
    after: Annotated[
        int, Query(ge=0, le=2**62, description="Entries after this seq (default 0).")
    ] = 0,
) -> list[AuditEntryOut]:
    scope = ("audit", admin.id)
    position = page.position(scope)
    if position is not None:
        after = max(after, *(int(p) for p in position))
    limit = page.limit
    entries = await ctx.audit.entries(session, after=after, limit=limit + 1)
    if len(entries) > limit:
        entries = entries[:limit]
        page.next_after(scope, (entries[-1].seq,))
    audit.record(
        session,
        "audit.read",
        actor_id=admin.id,
        actor_role=admin.role,
        details={
            "after": after,
            "limit": limit,
            "count": len(entries),
            "first_seq": entries[0].seq if entries else None,
            "last_seq": entries[-1].seq if entries else None,
        },
    )
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
    description=(
        "With `checkpoints=true`, also holds the chain against the valid checkpoints among"
        f" the last {VERIFY_CHECKPOINT_LINES} lines of this instance's checkpoint file:"
        " a chain shorter than a checkpoint's seq is `missing` from the first absent seq,"
        " another hash at a checkpointed seq is `mismatch`. `confide audit verify"
        " --checkpoints FILE` checks a whole file. Recorded as `audit.verify`."
    ),
)
async def verify(
    admin: AdminPrincipal,
    session: SessionDep,
    ctx: ContextDep,
    checkpoints: bool = False,
) -> VerifyOut:
    if not checkpoints:
        result = await ctx.audit.verify(session)
        out = VerifyOut(
            ok=result.ok, entries=result.entries, head=result.head, broken_seq=result.broken_seq
        )
    else:
        found, refused = await asyncio.to_thread(
            read_recent,
            ctx.settings.resolved_audit_checkpoint_file,
            ctx.tokens,
            VERIFY_CHECKPOINT_LINES,
        )
        anchored = await verify_anchored(session, ctx.audit, found)
        out = VerifyOut(
            ok=anchored.ok,
            entries=anchored.entries,
            head=anchored.head,
            broken_seq=anchored.broken_seq,
            reason=anchored.reason,
            message=anchored.message,
            checkpoints=anchored.checkpoints,
            anchored_seq=anchored.anchored_seq,
        )
        if refused and anchored.ok:
            out = out.model_copy(
                update={
                    "ok": False,
                    "reason": "checkpoint_refused",
                    "message": f"checkpoint REFUSED: {len(refused)} lines of the checkpoint"
                    f" file are not valid checkpoints, the first: {refused[0].reason}",
                }
            )
    audit.record(
        session,
        "audit.verify",
        actor_id=admin.id,
        actor_role=admin.role,
        details={
            "ok": out.ok,
            "entries": out.entries,
            "broken_seq": out.broken_seq,
            "checkpoints": checkpoints,
        },
    )
    return out


@router.get(
    "/v1/admin/audit/checkpoints",
    response_model=CheckpointsOut,
    responses=responses(Unauthorized, Forbidden),
    summary="Recent signed checkpoints of the audit chain's head (admin)",
    description=(
        "The checkpoints among the last `limit` lines of this instance's checkpoint file"
        " (`CONFIDE_AUDIT_CHECKPOINT_FILE`), each verified, in signed form with its decoded"
        " fields. Every instance writes its own file; checkpoints are never kept in the"
        " database. Recorded as `audit.checkpoints_read`."
    ),
)
async def list_checkpoints(
    admin: AdminPrincipal,
    session: SessionDep,
    ctx: ContextDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> CheckpointsOut:
    path = ctx.settings.resolved_audit_checkpoint_file
    found, refused = await asyncio.to_thread(read_recent, path, ctx.tokens, limit)
    audit.record(
        session,
        "audit.checkpoints_read",
        actor_id=admin.id,
        actor_role=admin.role,
        details={"limit": limit, "count": len(found), "refused": len(refused)},
    )
    return CheckpointsOut(
        file=str(path),
        interval_s=ctx.settings.audit_checkpoint_interval_s,
        checkpoints=[
            CheckpointOut(seq=c.seq, head=c.head, at=c.at, kid=c.kid, jws=c.jws) for c in found
        ],
        refused=[RefusedLineOut(reason=r.reason) for r in refused],
    )
