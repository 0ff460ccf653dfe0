"""/metrics: private, served one of two ways, or not at all.

- `CONFIDE_METRICS_TOKEN`: on the main listener, only to `Authorization:
  Bearer <token>` (compared in constant time); anything else is a 401 problem.
- `CONFIDE_METRICS_ADDR` (host:port): on a listener of its own that `confide
  serve` starts beside the main one, for the internal network; the main
  listener then has no /metrics at all. With the token set too, that listener
  asks for it as well.
- Neither: no /metrics anywhere (404), in development too.

Labels are bounded: method (a fixed set), route template, status. No id, no
raw path, and no counter of single domain acts (an erasure, a disclosure, an
incident): only HTTP requests by route template.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Iterable, Iterator
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import SecretStr

from app.core.errors import Unauthorized
from app.web.errors import install_error_handlers, responses
from app.web.middleware import Metrics, SecurityHeaders

router = APIRouter(tags=["operations"])


def check_token(request: Request) -> None:
    expected: SecretStr | None = request.app.state.metrics_token
    if expected is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), expected.get_secret_value().encode()
    ):
        raise Unauthorized("/metrics needs the metrics bearer token.")


@router.get(
    "/metrics",
    summary="Prometheus metrics (bearer CONFIDE_METRICS_TOKEN)",
    response_class=Response,
    responses=responses(Unauthorized),
)
async def metrics(request: Request) -> Response:
    check_token(request)
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI, metrics: Metrics, token: SecretStr | None) -> None:
    """Serve /metrics on `app`, behind `token` when there is one."""
    app.state.metrics = metrics
    app.state.metrics_token = token
    app.include_router(router)


def create_metrics_app(metrics: Metrics, token: SecretStr | None) -> FastAPI:
    """The separate listener's app: /metrics and nothing else."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    install(app, metrics, token)
    app.add_middleware(SecurityHeaders)
    return app


class MetricsServer(uvicorn.Server):
    """The metrics listener, run beside the main server, which handles the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def webhook_backlog_gauge(metrics: Metrics) -> Gauge:
    """`confide_webhook_backlog`: deliveries waiting in the outbox (set by the worker)."""
    return Gauge(
        "confide_webhook_backlog",
        "Webhook deliveries waiting in the outbox",
        registry=metrics.registry,
    )


class RuntimeCollector(Collector):
    """What a leak would show, read at each scrape: the event loop's tasks
    (`confide_asyncio_tasks`) and the database pool's connections in use and
    idle (`confide_db_pool_connections{state}`). `app.state.ctx` is read
    lazily: before start-up there is nothing to report."""

    def __init__(self, state: Any) -> None:
        self._state = state

    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            tasks = GaugeMetricFamily(
                "confide_asyncio_tasks", "asyncio tasks alive on this process's event loop"
            )
            tasks.add_metric([], len(asyncio.all_tasks(loop)))
            yield tasks
        ctx = getattr(self._state, "ctx", None)
        pool = getattr(getattr(ctx, "engine", None), "pool", None)
        checked_out = getattr(pool, "checkedout", None)
        checked_in = getattr(pool, "checkedin", None)
        if callable(checked_out) and callable(checked_in):
            connections = GaugeMetricFamily(
                "confide_db_pool_connections",
                "Database connections of this process's pool, in use or idle",
                labels=["state"],
            )
            connections.add_metric(["in_use"], float(checked_out()))
            connections.add_metric(["idle"], float(checked_in()))
            yield connections


def runtime_collector(metrics: Metrics, state: Any) -> None:
    """Register `RuntimeCollector` for the app whose `state` it reads."""
    metrics.registry.register(RuntimeCollector(state))
