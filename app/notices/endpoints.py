from __future__ import annotations

from fastapi import APIRouter

from app.auth.dependencies import CurrentPrincipal
from app.core.errors import Unauthorized
from app.notices import service
from app.notices.schemas import NoticeOut, notice_out
from app.web.deps import ContextDep, SessionDep
from app.web.errors import responses

router = APIRouter(tags=["notices"])


@router.get(
    "/v1/me/notices",
    response_model=list[NoticeOut],
    responses=responses(Unauthorized),
    summary="Notices addressed to the caller, newest first",
)
async def my_notices(
    principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> list[NoticeOut]:
    found = await service.notices_for(session, ctx.vault, ctx.clock, principal.account)
    return [notice_out(notice) for notice in found]
