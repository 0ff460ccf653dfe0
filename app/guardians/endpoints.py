from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.auth.dependencies import AdminPrincipal, CurrentPrincipal, StepUpAdmin
from app.core.errors import Forbidden, NotFound, StepUpRequired, Unauthorized, ValidationFailed
from app.guardians import service
from app.guardians.schemas import GuardiansOut, LinkGuardian, LinkOut, MinorOut, SetMinor
from app.guardians.views import link_out, minor_out
from app.web.deps import ContextDep, SessionDep
from app.web.errors import responses
from app.web.pagination import PageDep, micros, paged

router = APIRouter(tags=["guardians"])
MINOR = "/v1/admin/accounts/{minor_id}"


@router.put(
    MINOR + "/minor",
    response_model=MinorOut,
    responses=responses(StepUpRequired, Unauthorized, Forbidden, NotFound, ValidationFailed),
    summary="Mark a client as a minor, and whether they consent for themselves (admin)",
)
async def set_minor(
    minor_id: str, body: SetMinor, admin: StepUpAdmin, session: SessionDep, ctx: ContextDep
) -> MinorOut:
    """A minor's room tokens need a linked guardian's current consent, unless `self_consent`
    records that the minor consents for themselves under the applicable law (`basis`, required
    when `allowed`). Sealed under the minor's key; audited on the minor's access log.
    """
    status_ = await service.set_minor(
        session,
        ctx,
        admin,
        minor_id,
        minor=body.minor,
        self_consent_allowed=body.self_consent.allowed,
        basis=body.self_consent.basis,
    )
    out = minor_out(status_)
    assert out is not None
    return out


@router.post(
    MINOR + "/guardians",
    status_code=status.HTTP_201_CREATED,
    response_model=LinkOut,
    responses=responses(
        StepUpRequired,
        Unauthorized,
        Forbidden,
        NotFound,
        service.NotAMinorsGuardian,
        service.AlreadyLinked,
    ),
    summary="Link a guardian to a minor client (admin)",
)
async def link(
    minor_id: str, body: LinkGuardian, admin: StepUpAdmin, session: SessionDep, ctx: ContextDep
) -> LinkOut:
    """The guardian (any other client or counselor account) may then give or withdraw consent
    for the minor's care and be a participant of the minor's rooms with role `guardian`.
    """
    return link_out(await service.link(session, ctx, admin, minor_id, body.guardian_account_id))


@router.get(
    MINOR + "/guardians",
    response_model=GuardiansOut,
    responses=responses(Unauthorized, Forbidden, NotFound),
    summary="A client's minor status and guardians (admin)",
)
async def guardians(
    minor_id: str, admin: AdminPrincipal, session: SessionDep, ctx: ContextDep
) -> GuardiansOut:
    """The minor status as the practice recorded it, and each linked guardian with whether their
    consent for the minor's care is current. Audited on the minor's access log.
    """
    status_, links = await service.guardians_of(session, ctx, admin, minor_id)
    return GuardiansOut(minor=minor_out(status_), guardians=[link_out(each) for each in links])


@router.delete(
    MINOR + "/guardians/{guardian_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(StepUpRequired, Unauthorized, Forbidden, NotFound),
    summary="Unlink a guardian (admin)",
)
async def unlink(
    minor_id: str, guardian_id: str, admin: StepUpAdmin, session: SessionDep, ctx: ContextDep
) -> Response:
    """Both sides of the link go; the guardian's consent with them."""
    await service.unlink(session, ctx, admin, minor_id, guardian_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/v1/me/wards",
    response_model=list[LinkOut],
    responses=paged(responses(Unauthorized)),
    summary="The minors the caller is a guardian of, with the caller's consent for each",
    description="Oldest link first; paginated.",
)
async def my_wards(
    principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep, page: PageDep
) -> list[LinkOut]:
    found = page.take(
        sorted(await service.wards(session, ctx, principal), key=lambda w: (w.linked_at, w.other)),
        lambda each: (micros(each.linked_at), each.other),
        ("wards", principal.id),
    )
    return [link_out(each) for each in found]


@router.put(
    "/v1/me/wards/{minor_id}/consent",
    response_model=LinkOut,
    responses=responses(Unauthorized, NotFound),
    summary="Give consent, as guardian, for the minor's care",
)
async def give_consent(
    minor_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> LinkOut:
    """The minor's room tokens are issued again. Giving it again keeps the first `consent_given_at`.
    Not the caller's ward: 404.
    """
    return link_out(await service.set_consent(session, ctx, principal, minor_id, give=True))


@router.delete(
    "/v1/me/wards/{minor_id}/consent",
    response_model=LinkOut,
    responses=responses(Unauthorized, NotFound),
    summary="Withdraw consent, as guardian, for the minor's care",
)
async def withdraw_consent(
    minor_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> LinkOut:
    """Without another guardian's current consent (and unless the minor consents for
    themselves), the minor's room tokens are refused with `guardian_consent_required` and the
    minor's live sockets close with 4003.
    """
    return link_out(await service.set_consent(session, ctx, principal, minor_id, give=False))
