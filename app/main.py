"""create_app(): the lifespan builds the context; routers; error handlers; middleware."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy.exc import IntegrityError
from starlette.types import Receive, Scope, Send

from app.accounts.admin import router as account_admin_router
from app.accounts.endpoints import router as accounts_router
from app.audit.checkpoints import CheckpointWriter, write_final, write_periodically
from app.audit.endpoints import router as audit_router
from app.auth.endpoints import router as auth_router
from app.consent.endpoints import router as consent_router
from app.context import build_context
from app.core.buckets import TokenBuckets
from app.core.clock import Clock, SystemClock
from app.core.close_codes import Close
from app.core.config import Settings, get_settings
from app.core.context import Context
from app.core.errors import is_unavailable
from app.core.events import DataKeyDestroyed, Event
from app.core.logging import ClientAddresses, Sampler
from app.core.logging import configure as configure_logging
from app.devices.endpoints import router as devices_router
from app.disclosures.endpoints import router as disclosures_router
from app.guardians.endpoints import router as guardians_router
from app.incidents import state_deadlines
from app.incidents.endpoints import router as incidents_router
from app.mfa.endpoints import router as mfa_router
from app.notices.endpoints import router as notices_router
from app.ops import docs as docs_pages
from app.ops import metrics as metrics_endpoint
from app.ops.endpoints import router as ops_router
from app.privacy.endpoints import consent_router as withdrawal_router
from app.privacy.endpoints import router as privacy_router
from app.relay.broker import Broker, BrokerUnavailable, ReplayLimits, create_broker
from app.relay.endpoints import router as relay_router
from app.relay.hub import Hub
from app.relay.metrics import RelayMetrics
from app.retention.service import purge
from app.rights.endpoints import router as rights_router
from app.rooms import key_packages as room_key_packages
from app.rooms.checkin_endpoints import router as checkins_router
from app.rooms.endpoints import router as rooms_router
from app.rooms.key_log import router as key_log_router
from app.safety.endpoints import router as licensure_router
from app.web import openapi
from app.web.errors import install_error_handlers
from app.web.middleware import (
    MAX_HEADER_BYTES,
    AccessMiddleware,
    BodyLimit,
    HeaderLimit,
    Metrics,
    PasswordGate,
    SecurityHeaders,
    header_bytes,
    refuse_oversize_headers,
)
from app.webclient import endpoints as webclient
from app.webhooks.endpoints import router as webhooks_router
from app.webhooks.worker import Deliverer

log = logging.getLogger("confide")

DESCRIPTION = """\
The teletherapy session backend that cannot read what it relays.

Authenticate with **Authorize** (OAuth2 password flow against `/v1/auth/token`).
Every error is RFC 9457 problem details (`application/problem+json`) with a stable `code`.

Lists that grow take `limit` and `cursor`; the next page's cursor comes in `X-Next-Cursor`
(and a `Link` with `rel="next"`).

The room socket (`/v1/rooms/{room_id}/ws`) is described by its AsyncAPI 3.0 document:
[/asyncapi.json](/asyncapi.json) (or [/asyncapi.yaml](/asyncapi.yaml)).
"""


async def prepare(ctx: Context) -> None:
    """Create what the first start needs (the system data key)."""
    try:
        async with ctx.transaction() as session:
            await ctx.vault.ensure_system_key(session)
    except IntegrityError:
        # Another instance created it at the same moment.
        pass


async def purge_periodically(ctx: Context, broker: Broker) -> None:
    while True:
        await asyncio.sleep(ctx.settings.purge_interval_s)
        try:
            await purge(ctx, broker)
        except Exception as error:  # a failed run is retried at the next interval
            if isinstance(error, BrokerUnavailable) or is_unavailable(error):
                log.warning("purge skipped, a dependency is unavailable: %s", type(error).__name__)
            else:
                log.exception("purge failed")


class Confide(FastAPI):
    """FastAPI, with room sockets routed straight to the router.

    The HTTP middleware (security headers, body limit, metrics, CORS) has
    nothing to do for a WebSocket, yet its frames would stay alive for the
    whole life of every socket: a few KB each, times thousands of sockets.
    The socket route checks the Origin itself.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            if header_bytes(scope) > MAX_HEADER_BYTES:
                await refuse_oversize_headers(scope, receive, send)
                return
            scope["app"] = self
            await self.router(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    context: Context | None = None,
) -> FastAPI:
    settings = settings or (context.settings if context else get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = context or build_context(settings, clock)
        state_deadlines.load(ctx.settings.breach_deadlines_file)  # a bad file refuses to start
        await prepare(ctx)
        broker = create_broker(
            ctx.settings.broker_url.get_secret_value(),
            ctx.clock.time,
            prefix=ctx.settings.broker_prefix,
            limits=ReplayLimits.from_settings(ctx.settings),
            timeout_s=ctx.settings.broker_timeout_s,
        )

        async def on_event(event: Event) -> None:
            if isinstance(event, DataKeyDestroyed):
                # An erasure on any instance: drop this instance's cached copy.
                ctx.vault.forget(event.key)

        async def welcome_devices(room_id: str, refs: Sequence[bytes]) -> dict[bytes, str]:
            async with ctx.transaction() as session:
                return await room_key_packages.devices_for_refs(session, ctx, room_id, refs)

        hub = Hub(
            broker,
            ctx.clock,
            rate_per_s=ctx.settings.ws_rate_per_s,
            idle_timeout=ctx.settings.ws_idle_timeout,
            sweep_interval=ctx.settings.ws_sweep_interval,
            on_event=on_event,
            welcome_devices=welcome_devices,
            metrics=app.state.relay_metrics,
        )
        await hub.start()
        ctx.publisher = broker.publish
        app.state.ctx = ctx
        app.state.client_addresses = ClientAddresses(
            settings.log_client_addresses, ctx.keys.index_key
        )
        app.state.hub = hub
        # Per client address, before any token work (app.relay.endpoints).
        app.state.handshakes = TokenBuckets(
            ctx.clock,
            rate_per_s=ctx.settings.ws_handshake_rate_per_s,
            burst=ctx.settings.ws_handshake_burst,
        )
        purging = asyncio.create_task(purge_periodically(ctx, broker))
        checkpoints = CheckpointWriter(
            ctx.tokens,
            ctx.sessionmaker,
            ctx.settings.resolved_audit_checkpoint_file,
            syslog=ctx.settings.audit_checkpoint_syslog,
        )
        checkpoints.load()
        app.state.checkpoints = checkpoints
        checkpointing = asyncio.create_task(
            write_periodically(checkpoints, ctx.settings.audit_checkpoint_interval_s)
        )
        deliverer = Deliverer(ctx, on_backlog=app.state.webhook_backlog.set)
        delivering = asyncio.create_task(deliverer.run()) if ctx.settings.webhook_worker else None
        # What start-up built lives as long as the process: keep it out of every
        # future collection, so GC pauses stay short under load.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            purging.cancel()
            checkpointing.cancel()
            if delivering is not None:
                delivering.cancel()
                await asyncio.wait([delivering])  # an attempt in progress is abandoned
            await deliverer.close()
            await asyncio.wait([checkpointing])  # a tick in progress ends first
            await hub.stop()
            hub.close_all(Close.SERVICE_RESTART, "server shutting down")
            await broker.close()
            ctx.publisher = None
            # Anchor the head the last requests left, before the database closes.
            await write_final(checkpoints)
            checkpoints.close()
            if context is None:
                await ctx.close()

    app = Confide(
        title="Confide",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        servers=openapi.SERVERS,
        license_info=openapi.LICENSE,
        generate_unique_id_function=openapi.operation_id,
    )
    openapi.install(app)
    app.state.metrics = Metrics()
    app.state.relay_metrics = RelayMetrics(app.state.metrics.registry)
    app.state.webhook_backlog = metrics_endpoint.webhook_backlog_gauge(app.state.metrics)
    metrics_endpoint.runtime_collector(app.state.metrics, app.state)
    app.state.client_addresses = None  # set by the lifespan (the keyed form needs the index key)
    app.state.handshakes = None  # set by the lifespan, on the context's clock
    # Lines about refusals (401s, refused sockets) are sampled: a flood of them
    # must not flood the log (app.core.logging.Sampler).
    app.state.log_sampler = Sampler((context.clock if context else clock or SystemClock()).time)
    install_error_handlers(app, unavailable=(BrokerUnavailable,))
    if settings.test_fault is not None:
        # Imported only here: a server without the setting never loads the faults.
        from app import faults

        faults.install(app, settings.test_fault)
    if settings.metrics_token is not None and settings.metrics_listener is None:
        # Otherwise /metrics is on its own listener (confide serve), or nowhere.
        metrics_endpoint.install(app, app.state.metrics, settings.metrics_token)
    for router in (
        ops_router,
        docs_pages.router,
        auth_router,
        mfa_router,
        accounts_router,
        account_admin_router,
        audit_router,
        devices_router,
        consent_router,
        withdrawal_router,
        rooms_router,
        checkins_router,
        guardians_router,
        key_log_router,
        disclosures_router,
        incidents_router,
        rights_router,
        notices_router,
        privacy_router,
        relay_router,
        webhooks_router,
        licensure_router,
    ):
        app.include_router(router)
    if settings.serves_web_client:
        webclient.install(app)

    # Innermost: a refusal still gets CORS, limits, security headers and its access line.
    app.add_middleware(PasswordGate, state=app.state)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.allowed_origins),
        allow_credentials=False,
        allow_methods=["GET", "POST", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        expose_headers=["Link", "X-Next-Cursor", "Retry-After", "Idempotent-Replayed"],
        max_age=600,
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(HeaderLimit)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AccessMiddleware, metrics=app.state.metrics, state=app.state)
    return app


def create_served_app() -> FastAPI:
    """For `uvicorn --factory app.main:create_served_app`: the JSON log first, then the app.

    uvicorn has set up its own plain-text logging by the time it calls the
    factory; this replaces it with Confide's (see app/core/logging.py), so a
    server started without `confide serve` logs the same way. Run
    `confide migrate` before; the metrics listener is `confide serve`'s only.
    """
    settings = get_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
