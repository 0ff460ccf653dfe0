from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.accounts.errors import LastAdmin
from app.auth.dependencies import CurrentPrincipal, StepUpPrincipal
from app.core.errors import NotFound, StepUpRequired, Unauthorized
from app.privacy import service
from app.privacy.schemas import AccessEntry, Export
from app.web.deps import ContextDep, SessionDep
from app.web.errors import responses
from app.web.pagination import PageDep, paged

router = APIRouter(tags=["privacy"])
#: Listed with the rest of consent; here because withdrawal also changes rooms.
consent_router = APIRouter(tags=["consent"])

EXPORT_FILENAME = "confide-export.json"


@router.get(
    "/v1/me/access-log",
    response_model=list[AccessEntry],
    responses=paged(responses(Unauthorized)),
    summary="Who read or changed the caller's records, and when (oldest first)",
    description=(
        "Every audit entry whose target is the caller, the caller's own reads and"
        " changes included. Reading the log is itself recorded (`access_log.read`),"
        " after the answer is read: a response never lists its own read, the next one does."
        " Paginated."
    ),
)
async def access_log(
    principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep, page: PageDep
) -> list[AccessEntry]:
    scope = ("access log", principal.id)
    page.position(scope)  # a bad cursor is refused before the read is recorded
    found = page.take(await service.access_log(session, ctx, principal), lambda e: (e[0],), scope)
    return [entry for _, entry in found]


@router.get(
    "/v1/me/export",
    response_model=Export,
    responses=responses(Unauthorized, StepUpRequired),
    summary="Everything held about the caller, decrypted, as one JSON document",
    description=(
        "Sent as an attachment (`confide-export.json`). Each section is shaped as its"
        " own endpoint answers it; `devices` also lists revoked devices. Needs a recent"
        " authentication (401 `step_up_required`: `POST /v1/auth/step-up`)."
    ),
)
async def export(
    principal: StepUpPrincipal, session: SessionDep, ctx: ContextDep, response: Response
) -> Export:
    document = await service.export(session, ctx, principal)
    response.headers["Content-Disposition"] = f'attachment; filename="{EXPORT_FILENAME}"'
    return document


@router.delete(
    "/v1/me",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(StepUpRequired, Unauthorized, LastAdmin),
    summary="Erase the caller's account",
    description=(
        "The account's data key is destroyed, so every record sealed under it becomes"
        " unreadable; the account can no longer log in, every token it holds answers"
        " 401, and its live sockets close with 4001. The last active admin cannot"
        " erase their account (409 `last_admin`)."
    ),
)
async def erase(principal: StepUpPrincipal, session: SessionDep, ctx: ContextDep) -> None:
    await service.erase(session, ctx, principal)


@consent_router.delete(
    "/v1/me/consents/{document_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(Unauthorized, NotFound),
    summary="Withdraw an acceptance",
    description=(
        "No new room tokens until the document is accepted again; the caller's"
        " live room sockets close with 4003. In every room not ended that needs"
        " a document of this kind, a participant admitted goes back to the waiting"
        " room (the others get `presence` `waiting`); the host admits them again"
        " once they have accepted it again."
    ),
)
async def withdraw_consent(
    document_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> None:
    await service.withdraw_consent(session, ctx, principal, document_id)
