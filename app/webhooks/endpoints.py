from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.auth.dependencies import AdminPrincipal, StepUpAdmin
from app.auth.service import Principal
from app.core import audit
from app.core.errors import Forbidden, NotFound, StepUpRequired, Unauthorized, ValidationFailed
from app.web.deps import ContextDep, SessionDep
from app.web.errors import responses
from app.web.pagination import PageDep, micros, paged
from app.webhooks import service
from app.webhooks.schemas import (
    AttemptOut,
    CreateWebhook,
    DeliveryOut,
    PatchWebhook,
    SecretOut,
    WebhookCreatedOut,
    WebhookOut,
)

router = APIRouter(tags=["webhooks"])
WEBHOOK = "/v1/admin/webhooks/{webhook_id}"


def _actor(admin: Principal) -> tuple[str, str]:
    return admin.id, admin.role


def _out(view: service.EndpointView) -> WebhookOut:
    return WebhookOut(
        id=view.id,
        url=view.url,
        events=view.events,
        enabled=view.enabled,
        created_at=view.created_at,
        updated_at=view.updated_at,
    )


@router.post(
    "/v1/admin/webhooks",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreatedOut,
    responses=responses(StepUpRequired, Unauthorized, Forbidden, ValidationFailed),
    summary="Add a webhook endpoint (admin)",
    description="The answer holds the signing secret; it is never shown again (rotate it instead).",
)
async def create(
    body: CreateWebhook, admin: StepUpAdmin, session: SessionDep, ctx: ContextDep
) -> WebhookCreatedOut:
    view = await service.create(
        session, ctx, url=body.url, events=body.events, enabled=body.enabled, actor=_actor(admin)
    )
    return WebhookCreatedOut(**_out(view).model_dump(), secret=view.secret)


@router.get(
    "/v1/admin/webhooks",
    response_model=list[WebhookOut],
    responses=paged(responses(Unauthorized, Forbidden)),
    summary="Every webhook endpoint, oldest first (admin)",
    description="Without their secrets. Paginated.",
)
async def list_webhooks(
    admin: AdminPrincipal, session: SessionDep, ctx: ContextDep, page: PageDep
) -> list[WebhookOut]:
    views = page.take(
        await service.list_all(session, ctx),
        lambda view: (micros(view.created_at), view.id),
        ("webhooks", admin.id),
    )
    return [_out(view) for view in views]


@router.get(
    WEBHOOK,
    response_model=WebhookOut,
    responses=responses(Unauthorized, Forbidden, NotFound),
    summary="One webhook endpoint (admin)",
    description="Its URL, events and enabled flag; the secret is never shown again.",
)
async def get(
    webhook_id: str, admin: AdminPrincipal, session: SessionDep, ctx: ContextDep
) -> WebhookOut:
    return _out(await service.get(session, ctx, webhook_id))


@router.patch(
    WEBHOOK,
    response_model=WebhookOut,
    responses=responses(StepUpRequired, Unauthorized, Forbidden, NotFound, ValidationFailed),
    summary="Change a webhook endpoint's URL, events or enabled flag (admin)",
    description="A disabled endpoint gets no new events; what already waits is sent once enabled.",
)
async def patch(
    webhook_id: str,
    body: PatchWebhook,
    admin: StepUpAdmin,
    session: SessionDep,
    ctx: ContextDep,
) -> WebhookOut:
    view = await service.patch(
        session,
        ctx,
        webhook_id,
        url=body.url,
        events=body.events,
        enabled=body.enabled,
        actor=_actor(admin),
    )
    return _out(view)


@router.delete(
    WEBHOOK,
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(StepUpRequired, Unauthorized, Forbidden, NotFound),
    summary="Delete a webhook endpoint and what waits for it (admin)",
    description="Events not yet delivered to it are dropped; its delivery log goes with it.",
)
async def delete(
    webhook_id: str, admin: StepUpAdmin, session: SessionDep, ctx: ContextDep
) -> Response:
    await service.remove(session, ctx, webhook_id, actor=_actor(admin))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    f"{WEBHOOK}/rotate-secret",
    response_model=SecretOut,
    responses=responses(StepUpRequired, Unauthorized, Forbidden, NotFound),
    summary="Replace a webhook endpoint's signing secret (admin)",
    description="Every attempt from now on, retries included, is signed with the new secret.",
)
async def rotate_secret(
    webhook_id: str, admin: StepUpAdmin, session: SessionDep, ctx: ContextDep
) -> SecretOut:
    return SecretOut(
        secret=await service.rotate_secret(session, ctx, webhook_id, actor=_actor(admin))
    )


@router.get(
    f"{WEBHOOK}/deliveries",
    response_model=list[DeliveryOut],
    responses=paged(responses(Unauthorized, Forbidden, NotFound, ValidationFailed)),
    summary="The endpoint's delivery log, newest first (admin)",
    description="Each event's attempts with their status codes, its state and its next retry. "
    "Paginated.",
)
async def deliveries(
    webhook_id: str, admin: AdminPrincipal, session: SessionDep, ctx: ContextDep, page: PageDep
) -> list[DeliveryOut]:
    scope = ("webhook-deliveries", admin.id, webhook_id)
    after = page.position(scope)
    before = None if after is None else int(after[0])
    views, more = await service.deliveries(
        session, ctx, webhook_id, limit=page.limit, before=before
    )
    if more and views:
        page.next_after(scope, (views[-1].seq,))
    audit.record(
        session,
        "webhook.deliveries_read",
        actor_id=admin.id,
        actor_role=admin.role,
        target=webhook_id,
        details={"count": len(views)},
    )
    return [
        DeliveryOut(
            id=v.id,
            type=v.type,
            state=v.state.value,
            created_at=v.created_at,
            next_attempt_at=v.next_attempt_at,
            attempts=[
                AttemptOut(at=a.at, status_code=a.status_code, error=a.error) for a in v.attempts
            ],
        )
        for v in views
    ]
