from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from app.auth.dependencies import AdminPrincipal, StepUpAdmin
from app.core.context import Context
from app.core.errors import Forbidden, NotFound, StepUpRequired, Unauthorized
from app.incidents import service
from app.incidents.schemas import (
    CreateIncident,
    IncidentOut,
    NotifiedOut,
    NotifyByRule,
    NotifyIncident,
    PatchIncident,
)
from app.incidents.service import InvalidTransition
from app.web import idempotency
from app.web.deps import ContextDep, SessionDep
from app.web.errors import responses
from app.web.idempotency import IdempotencyDep
from app.web.pagination import PageDep, micros, paged

router = APIRouter(tags=["incidents"])
INCIDENT = "/v1/incidents/{incident_id}"


def _incident(view: service.IncidentView, ctx: Context) -> IncidentOut:
    return IncidentOut(
        id=view.id,
        summary=view.summary,
        discovered_at=view.discovered_at,
        severity=view.severity,
        status=view.status,
        notify_by=view.notify_by,
        notified_at=view.notified_at,
        overdue=view.overdue(ctx.clock.now()),
        affected_account_ids=view.affected_account_ids,
        jurisdictions=view.jurisdictions,
        notify_by_rule=NotifyByRule(
            jurisdiction=view.notify_by_rule.jurisdiction,
            days=view.notify_by_rule.days,
            source=view.notify_by_rule.source,
        ),
    )


@router.post(
    "/v1/incidents",
    status_code=status.HTTP_201_CREATED,
    response_model=IncidentOut,
    responses=idempotency.replayed(responses(Unauthorized, Forbidden, *idempotency.ERRORS), 201),
    summary="Open an incident (admin)",
    description=(
        "`status` starts at `assessing`; `notify_by` = `discovered_at` + the shortest deadline"
        " among HIPAA's 60 days and the state deadline of each affected account's jurisdiction"
        " (`notify_by_rule` names it)."
    ),
)
async def create(
    body: CreateIncident,
    admin: AdminPrincipal,
    session: SessionDep,
    ctx: ContextDep,
    once: IdempotencyDep,
) -> JSONResponse:
    async def act() -> tuple[int, IncidentOut]:
        view = await service.create(
            session,
            ctx,
            summary=body.summary,
            discovered_at=body.discovered_at,
            severity=body.severity,
            affected_account_ids=body.affected_account_ids,
            actor_id=admin.id,
            actor_role=admin.role,
        )
        return status.HTTP_201_CREATED, _incident(view, ctx)

    return await once.run(session, ctx, admin.account, act)


@router.get(
    "/v1/incidents",
    response_model=list[IncidentOut],
    responses=paged(responses(Unauthorized, Forbidden)),
    summary="Every incident, most recently discovered first (admin)",
    description="Each with `overdue` true when unnotified past `notify_by`. Paginated.",
)
async def list_incidents(
    admin: AdminPrincipal, session: SessionDep, ctx: ContextDep, page: PageDep
) -> list[IncidentOut]:
    scope = ("incidents", admin.id)
    page.position(scope)  # a bad cursor is refused before the read is recorded
    views = await service.list_all(
        session,
        ctx.vault,
        actor_id=admin.id,
        actor_role=admin.role,
        shown=lambda views: page.take(
            views, lambda view: (-micros(view.discovered_at), view.id), scope
        ),
    )
    return [_incident(view, ctx) for view in views]


@router.get(
    INCIDENT,
    response_model=IncidentOut,
    responses=responses(Unauthorized, Forbidden, NotFound),
    summary="One incident (admin)",
)
async def get(
    incident_id: str, admin: AdminPrincipal, session: SessionDep, ctx: ContextDep
) -> IncidentOut:
    """One incident, with `overdue` true when it is still unnotified past `notify_by`. Reading it is
    recorded for each affected account.
    """
    view = await service.get(
        session, ctx.vault, incident_id, actor_id=admin.id, actor_role=admin.role
    )
    return _incident(view, ctx)


@router.patch(
    INCIDENT,
    response_model=IncidentOut,
    responses=responses(Unauthorized, Forbidden, NotFound, InvalidTransition),
    summary="Move an incident's status forward (admin)",
)
async def patch(
    incident_id: str,
    body: PatchIncident,
    admin: AdminPrincipal,
    session: SessionDep,
    ctx: ContextDep,
) -> IncidentOut:
    """Moves the status forward only: `assessing`, `notifying`, `mitigated`, `closed`."""
    view = await service.set_status(
        session, ctx.vault, incident_id, body.status, actor_id=admin.id, actor_role=admin.role
    )
    return _incident(view, ctx)


@router.post(
    f"{INCIDENT}/notify",
    status_code=status.HTTP_201_CREATED,
    response_model=NotifiedOut,
    responses=responses(StepUpRequired, Unauthorized, Forbidden, NotFound),
    summary="Send a notice to each affected account (admin)",
    description=(
        "Each affected account gets one notice with `message`. Notifying again sends a"
        " further notice; `notified_at` stays the time of the first."
    ),
)
async def notify(
    incident_id: str,
    body: NotifyIncident,
    admin: StepUpAdmin,
    session: SessionDep,
    ctx: ContextDep,
) -> NotifiedOut:
    delivered = await service.notify(
        session,
        ctx.vault,
        ctx.clock,
        incident_id,
        body.message,
        actor_id=admin.id,
        actor_role=admin.role,
    )
    return NotifiedOut(notified=delivered)
