from __future__ import annotations

from fastapi import APIRouter

from app.auth.dependencies import CurrentPrincipal
from app.core.errors import Unauthorized
from app.notices import service
from app.notices.schemas import NoticeOut, notice_out
from app.web.deps import ContextDep, SessionDep
from app.web.errors import responses
from app.web.pagination import PageDep, micros, paged

router = APIRouter(tags=["notices"])


@router.get(
    "/v1/me/notices",
    response_model=list[NoticeOut],
    responses=paged(responses(Unauthorized)),
    summary="Notices addressed to the caller, newest first",
    description="Breach notices and other notices to the caller. Paginated.",
)
async def my_notices(
    principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep, page: PageDep
) -> list[NoticeOut]:
    found = page.take(
        await service.notices_for(session, ctx.vault, ctx.clock, principal.account),
        lambda notice: (micros(notice.created_at), notice.id),
        ("notices", principal.id),
        descending=True,
    )
    return [notice_out(notice) for notice in found]
