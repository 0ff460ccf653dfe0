from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from app.auth.dependencies import AdminPrincipal, CurrentPrincipal
from app.consent import service
from app.consent.schemas import (
    LOCALE_MAX,
    LOCALE_PATTERN,
    AcceptanceOut,
    AcceptConsent,
    DocumentOut,
    PublishDocument,
)
from app.core.errors import Conflict, Forbidden, NotFound, Unauthorized
from app.models import ConsentDocument, ConsentKind
from app.web.deps import ContextDep, SessionDep
from app.web.errors import responses
from app.web.pagination import PageDep, micros, paged

router = APIRouter(tags=["consent"])


def _document(document: ConsentDocument) -> DocumentOut:
    return DocumentOut(
        id=document.id,
        kind=document.kind,
        locale=document.locale,
        version=document.version,
        title=document.title,
        body=document.body,
        sha256=document.sha256.hex(),
        published_at=document.published_at,
    )


def _acceptance(acceptance: service.Acceptance) -> AcceptanceOut:
    return AcceptanceOut(
        document_id=acceptance.document_id,
        sha256=acceptance.sha256,
        accepted_at=acceptance.accepted_at,
    )


@router.post(
    "/v1/consent-documents",
    status_code=status.HTTP_201_CREATED,
    response_model=DocumentOut,
    responses=responses(Unauthorized, Forbidden, Conflict),
    summary="Publish a new version of a consent document (admin)",
)
async def publish(
    body: PublishDocument, admin: AdminPrincipal, session: SessionDep, ctx: ContextDep
) -> DocumentOut:
    """Publishes a new immutable version of a consent document; clients must accept the new version
    before their next room token.
    """
    document = await service.publish(
        session,
        ctx.clock,
        kind=body.kind,
        locale=body.locale,
        title=body.title,
        body=body.body,
        actor_id=admin.id,
        actor_role=admin.role,
    )
    return _document(document)


@router.get(
    "/v1/consent-documents",
    response_model=list[DocumentOut],
    responses=responses(),
    summary="The current consent documents, in a locale or else English",
)
async def current(
    session: SessionDep,
    kind: Annotated[ConsentKind | None, Query(description="Only this kind.")] = None,
    locale: Annotated[
        str,
        Query(
            max_length=LOCALE_MAX,
            pattern=LOCALE_PATTERN,
            description=(
                "BCP 47 tag. Per kind, the newest version in this locale, else in"
                " its shorter prefixes (de-CH, then de), else in English."
            ),
        ),
    ] = service.FALLBACK_LOCALE,
) -> list[DocumentOut]:
    """The current version of each consent document kind (or of the one `kind` asked), in the locale
    asked, else English. Public: an app shows them before registration.
    """
    documents = await service.current_documents(session, locale=locale, kind=kind)
    return [_document(document) for document in documents]


@router.post(
    "/v1/me/consents",
    status_code=status.HTTP_201_CREATED,
    response_model=AcceptanceOut,
    responses=responses(Unauthorized, NotFound),
    summary="Accept a consent document",
    description=(
        "Idempotent: accepting a document already accepted answers 201 with the"
        " original acceptance (its first `accepted_at`)."
    ),
)
async def accept(
    body: AcceptConsent, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> AcceptanceOut:
    acceptance = await service.accept(
        session, ctx.vault, ctx.clock, principal.account, str(body.document_id)
    )
    return _acceptance(acceptance)


@router.get(
    "/v1/me/consents",
    response_model=list[AcceptanceOut],
    responses=paged(responses(Unauthorized)),
    summary="The caller's acceptances",
    description="Oldest first, withdrawn ones left out; paginated.",
)
async def list_acceptances(
    principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep, page: PageDep
) -> list[AcceptanceOut]:
    found = page.take(
        await service.acceptances(session, ctx.vault, principal.account),
        lambda acceptance: (micros(acceptance.accepted_at), acceptance.document_id),
        ("consents", principal.id),
    )
    return [_acceptance(acceptance) for acceptance in found]


# Withdrawal (DELETE /v1/me/consents/{document_id}) is in app.privacy: it also takes
# the person out of the rooms that need the consent, and rooms import consent.
