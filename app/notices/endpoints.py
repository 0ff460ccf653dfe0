from __future__ import annotations

from fastapi import APIRouter

from app.auth.dependencies import CurrentAccount
from app.core.deps import ContextDep, SessionDep
from app.core.errors import Unauthorized, responses
from app.models import NoticeKind
from app.notices import service
from app.notices.schemas import NoticeOut

router = APIRouter(tags=["notices"])


def _notice(notice: service.NoticeView) -> NoticeOut:
    return NoticeOut(
        id=notice.id,
        kind=notice.kind,
        message=notice.message,
        created_at=notice.created_at,
        incident_id=notice.ref if notice.kind == NoticeKind.incident else None,
        disclosure_id=notice.ref if notice.kind == NoticeKind.disclosure else None,
    )


@router.get(
    "/v1/me/notices",
    response_model=list[NoticeOut],
    responses=responses(Unauthorized),
    summary="Notices addressed to the caller, newest first",
)
async def my_notices(
    principal: CurrentAccount, session: SessionDep, ctx: ContextDep
) -> list[NoticeOut]:
    found = await service.notices_for(session, ctx.vault, ctx.clock, principal.account)
    return [_notice(notice) for notice in found]
