from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from app.auth.dependencies import CurrentPrincipal, StepUpPrincipal
from app.core.errors import Forbidden, NotFound, StepUpRequired, Unauthorized
from app.disclosures import service
from app.disclosures.schemas import DisclosureOut, RecordDisclosure
from app.web import idempotency
from app.web.deps import ContextDep, SessionDep
from app.web.errors import responses
from app.web.idempotency import IdempotencyDep
from app.web.pagination import PageDep, micros, paged

router = APIRouter(tags=["disclosures"])


def _disclosure(view: service.DisclosureView) -> DisclosureOut:
    return DisclosureOut(
        id=view.id,
        account_id=view.account_id,
        basis=view.basis,
        recipient=view.recipient,
        purpose=view.purpose,
        description=view.description,
        disclosed_at=view.disclosed_at,
        withhold_until=view.withhold_until,
        recorded_by=view.recorded_by,
        recorded_by_role=view.recorded_by_role,
        recorded_at=view.recorded_at,
    )


@router.post(
    "/v1/accounts/{account_id}/disclosures",
    status_code=status.HTTP_201_CREATED,
    response_model=DisclosureOut,
    responses=idempotency.replayed(
        responses(StepUpRequired, Unauthorized, Forbidden, NotFound, *idempotency.ERRORS), 201
    ),
    summary="Record a disclosure of a client's information (their counselor, or an admin)",
    description=(
        "The caller must be an admin or a counselor whom the client accepted (by"
        " accepting one of that counselor's room invitations); to any other counselor"
        " the client is not found. The client gets a notice,"
        " shown from `withhold_until` on when that lies in the future."
    ),
)
async def record(
    account_id: str,
    body: RecordDisclosure,
    principal: StepUpPrincipal,
    session: SessionDep,
    ctx: ContextDep,
    once: IdempotencyDep,
) -> JSONResponse:
    async def act() -> tuple[int, DisclosureOut]:
        view = await service.record(session, ctx, principal, account_id, body)
        return status.HTTP_201_CREATED, _disclosure(view)

    return await once.run(session, ctx, principal.account, act)


@router.get(
    "/v1/me/disclosures",
    response_model=list[DisclosureOut],
    responses=paged(responses(Unauthorized, Forbidden)),
    summary="The caller's accounting of disclosures (clients), oldest first",
    description=(
        "Disclosures whose `withhold_until` lies in the future are left out until then. Paginated."
    ),
)
async def my_disclosures(
    principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep, page: PageDep
) -> list[DisclosureOut]:
    scope = ("disclosures", principal.id)
    page.position(scope)  # a bad cursor is refused before the read is recorded
    found = page.take(
        await service.accounting(session, ctx, principal),
        lambda view: (micros(view.disclosed_at), micros(view.recorded_at), view.id),
        scope,
    )
    return [_disclosure(view) for view in found]
