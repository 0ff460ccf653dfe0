from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from app.auth.dependencies import AdminPrincipal, CurrentPrincipal
from app.core.context import Context
from app.core.errors import Forbidden, NotFound, Unauthorized
from app.rights import service
from app.rights.errors import (
    DisagreementNotAllowed,
    ExtensionNotAllowed,
    InvalidTransition,
    ReasonRequired,
)
from app.rights.rules import RightsKind, RightsState
from app.rights.schemas import (
    ExtendRightsRequest,
    FileDisagreement,
    FileRightsRequest,
    MoveRightsRequest,
    RightsRequestOut,
    rights_request_out,
)
from app.web.deps import ContextDep, SessionDep
from app.web.errors import responses
from app.web.pagination import PageDep, micros, paged

router = APIRouter(tags=["rights"])
MINE = "/v1/me/rights-requests"
ADMIN = "/v1/admin/rights-requests"


def _out(view: service.RequestView, ctx: Context) -> RightsRequestOut:
    return rights_request_out(view, ctx.clock.now())


def _newest_first(view: service.RequestView) -> tuple[int, str]:
    return (-micros(view.received_at), view.id)


@router.post(
    MINE,
    status_code=status.HTTP_201_CREATED,
    response_model=RightsRequestOut,
    responses=responses(Unauthorized, Forbidden),
    summary="File a rights request (clients)",
    description=(
        "Starts the request's clock: `due_at` = `received_at` + 30 days for `access`, 60 for"
        " `amendment` and `accounting`, none for `restriction`. Only clients file (403)."
    ),
)
async def file(
    body: FileRightsRequest, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> RightsRequestOut:
    view = await service.file(session, ctx, principal, body.kind, body.details)
    return _out(view, ctx)


@router.get(
    MINE,
    response_model=list[RightsRequestOut],
    responses=paged(responses(Unauthorized)),
    summary="The caller's own rights requests, newest first",
    description="Each with its `due_at` and `overdue`. Paginated.",
)
async def mine(
    principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep, page: PageDep
) -> list[RightsRequestOut]:
    scope = ("rights-requests", principal.id)
    page.position(scope)  # a bad cursor is refused before the read is recorded
    found = page.take(await service.mine(session, ctx, principal), _newest_first, scope)
    return [_out(view, ctx) for view in found]


@router.get(
    MINE + "/{request_id}",
    response_model=RightsRequestOut,
    responses=responses(Unauthorized, NotFound),
    summary="One of the caller's own rights requests",
    description="Another person's request is 404, like one that does not exist.",
)
async def mine_one(
    request_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> RightsRequestOut:
    return _out(await service.mine_one(session, ctx, principal, request_id), ctx)


@router.post(
    MINE + "/{request_id}/disagreement",
    response_model=RightsRequestOut,
    responses=responses(Unauthorized, NotFound, DisagreementNotAllowed),
    summary="File a statement of disagreement with a denied amendment (clients)",
    description=(
        "Once per request, and only for an `amendment` request that was denied"
        " (409 `disagreement_not_allowed` otherwise). It stays with the request (164.526(d))."
    ),
)
async def disagree(
    request_id: str,
    body: FileDisagreement,
    principal: CurrentPrincipal,
    session: SessionDep,
    ctx: ContextDep,
) -> RightsRequestOut:
    view = await service.disagree(session, ctx, principal, request_id, body.statement)
    return _out(view, ctx)


@router.get(
    ADMIN,
    response_model=list[RightsRequestOut],
    responses=paged(responses(Unauthorized, Forbidden)),
    summary="Every client's rights requests, newest first (admin)",
    description="Filtered by `kind`, `state` and `overdue` when given. Paginated.",
)
async def list_all(
    admin: AdminPrincipal,
    session: SessionDep,
    ctx: ContextDep,
    page: PageDep,
    kind: Annotated[RightsKind | None, Query(description="Only this kind.")] = None,
    state: Annotated[RightsState | None, Query(description="Only this state.")] = None,
    overdue: Annotated[bool | None, Query(description="Only overdue ones, or only not.")] = None,
) -> list[RightsRequestOut]:
    scope = ("rights-requests-admin", admin.id)
    page.position(scope)
    views = await service.list_all(
        session,
        ctx,
        admin,
        kind=kind,
        state=state,
        overdue=overdue,
        shown=lambda views: page.take(views, _newest_first, scope),
    )
    return [_out(view, ctx) for view in views]


@router.get(
    ADMIN + "/{request_id}",
    response_model=RightsRequestOut,
    responses=responses(Unauthorized, Forbidden, NotFound),
    summary="One rights request (admin)",
    description="Reading it is recorded in the client's access log.",
)
async def get(
    request_id: str, admin: AdminPrincipal, session: SessionDep, ctx: ContextDep
) -> RightsRequestOut:
    return _out(await service.get(session, ctx, admin, request_id), ctx)


@router.patch(
    ADMIN + "/{request_id}",
    response_model=RightsRequestOut,
    responses=responses(Unauthorized, Forbidden, NotFound, InvalidTransition, ReasonRequired),
    summary="Move a rights request one step forward (admin)",
    description=(
        "received → in_review → granted | denied → closed, one step at a time; a"
        " backward, skipped or repeated move is 409 `invalid_transition` and changes"
        " nothing. Denying needs `reason` (422 `reason_required`)."
    ),
)
async def move(
    request_id: str,
    body: MoveRightsRequest,
    admin: AdminPrincipal,
    session: SessionDep,
    ctx: ContextDep,
) -> RightsRequestOut:
    view = await service.move(session, ctx, admin, request_id, body.state, body.reason)
    return _out(view, ctx)


@router.post(
    ADMIN + "/{request_id}/extension",
    response_model=RightsRequestOut,
    responses=responses(Unauthorized, Forbidden, NotFound, ExtensionNotAllowed),
    summary="Extend a rights request's deadline by 30 days, once (admin)",
    description=(
        "For `access`, `amendment` and `accounting`, once, while the request is undecided"
        " and its first period has not passed; otherwise 409 `extension_not_allowed`."
    ),
)
async def extend(
    request_id: str,
    body: ExtendRightsRequest,
    admin: AdminPrincipal,
    session: SessionDep,
    ctx: ContextDep,
) -> RightsRequestOut:
    return _out(await service.extend(session, ctx, admin, request_id, body.reason), ctx)
