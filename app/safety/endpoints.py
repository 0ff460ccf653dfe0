from __future__ import annotations

from fastapi import APIRouter

from app.auth.dependencies import AdminPrincipal, StepUpAdmin
from app.core.errors import Forbidden, NotFound, StepUpRequired, Unauthorized, ValidationFailed
from app.safety import service
from app.safety.schemas import LicensureIn, LicensureOut
from app.web.deps import ContextDep, SessionDep
from app.web.errors import responses

router = APIRouter(tags=["safety"])
LICENSURE = "/v1/admin/accounts/{account_id}/licensure"


@router.put(
    LICENSURE,
    response_model=LicensureOut,
    responses=responses(StepUpRequired, Unauthorized, Forbidden, NotFound, ValidationFailed),
    summary="Record the jurisdictions a counselor is licensed for (admin)",
)
async def put_licensure(
    account_id: str, body: LicensureIn, admin: StepUpAdmin, session: SessionDep, ctx: ContextDep
) -> LicensureOut:
    """Replaces the counselor's licensed jurisdictions (ISO 3166-2 codes such as `US-CO`), sealed
    under the counselor's key. A client's check-in from a jurisdiction none of the room's hosts is
    licensed for shows `jurisdiction_mismatch` to the hosts, or refuses the client's room token
    when the practice says so (`CONFIDE_JURISDICTION_MISMATCH=refuse`). An account that is not a
    counselor is 422 `validation_error`; an unknown one 404.
    """
    stored = await service.write_licensure(session, ctx, admin, account_id, body.jurisdictions)
    return LicensureOut(account_id=account_id, jurisdictions=stored)


@router.get(
    LICENSURE,
    response_model=LicensureOut,
    responses=responses(Unauthorized, Forbidden, NotFound, ValidationFailed),
    summary="The jurisdictions a counselor is licensed for (admin)",
)
async def get_licensure(
    account_id: str, admin: AdminPrincipal, session: SessionDep, ctx: ContextDep
) -> LicensureOut:
    """The counselor's licensed jurisdictions, sorted; none recorded: an empty list."""
    found = await service.read_licensure(session, ctx, admin, account_id)
    return LicensureOut(account_id=account_id, jurisdictions=found)
