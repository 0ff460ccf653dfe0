"""Pure ASGI middleware: security headers, body and header limits, request ids, logs, metrics."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core import logging as logs
from app.core.errors import PROBLEM_JSON, HeadersTooLarge
from app.core.passwords import PasswordsBusy

access_log = logging.getLogger("confide.access")
# Label values come from this set only: a made-up method must not mint new series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_DEFAULT_HEADERS = {
    "strict-transport-security": "max-age=63072000; includeSubDomains",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
_API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _DEFAULT_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("content-security-policy", _API_CSP)
                # Nothing Confide answers may sit in a shared or browser cache:
                # most answers carry personal data under a bearer token.
                headers.setdefault("cache-control", "no-store")
                if "server" in headers:
                    del headers["server"]
            await send(message)

        await self.app(scope, receive, with_headers)


class _TooLarge(HTTPException):
    """Raised from `receive` once a streamed body passes the limit.

    An HTTPException so that FastAPI's body parsing passes it on to the 413
    problem handler: it turns any other exception there into a 400.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"Request bodies are limited to {max_bytes} bytes.")


class BodyLimit:
    """Refuse request bodies over the limit with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        await send_problem(
            send,
            413,
            "payload_too_large",
            "Payload too large",
            f"Request bodies are limited to {self.max_bytes} bytes.",
            [(b"connection", b"close")],
        )


async def send_problem(
    send: Send,
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: list[tuple[bytes, bytes]],
) -> None:
    """Answer a problem (RFC 9457) from ASGI middleware, where no exception handler runs."""
    body = json.dumps(
        {
            "type": f"https://confide.invalid/problems/{code}",
            "title": title,
            "status": status,
            "detail": detail,
            "code": code,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


#: The most a request's head may carry (request target and header fields), in
#: bytes: Node's default, twice nginx's per-line buffer. Confide's own clients
#: send a token of at most 4 KiB and a few short headers.
MAX_HEADER_BYTES = 16 * 1024


def header_bytes(scope: Scope) -> int:
    """The size of a request's head as sent: target, then `name: value` lines."""
    size = len(scope.get("raw_path") or scope.get("path", "").encode()) + len(
        scope.get("query_string", b"")
    )
    for name, value in scope.get("headers", ()):
        size += len(name) + len(value) + 4  # ": " and CRLF
    return size


#: The 431 problem for a request head past MAX_HEADER_BYTES (here, and from the server's
#: own bound while a head is read: `app.web.http_protocol`).
OVERSIZE_HEADERS_BODY = json.dumps(
    {
        "type": f"https://confide.invalid/problems/{HeadersTooLarge.code}",
        "title": HeadersTooLarge.title,
        "status": HeadersTooLarge.status,
        "detail": f"Request heads are limited to {MAX_HEADER_BYTES} bytes.",
        "code": HeadersTooLarge.code,
    }
).encode()


async def refuse_oversize_headers(scope: Scope, receive: Receive, send: Send) -> None:
    """431 problem for an HTTP request; the same answer, where the server can, for a socket.

    The server has parsed the whole head by now (uvicorn with httptools has no
    limit of its own): `confide serve` also bounds it while reading (see
    app/cli.py), this is the rule whatever the server and its parser.
    """
    body = OVERSIZE_HEADERS_BODY
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    if scope["type"] == "http":
        await send(
            {
                "type": "http.response.start",
                "status": 431,
                "headers": [*headers, (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    if (await receive())["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": 431, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:  # the server answers the handshake with 403
        await send({"type": "websocket.close", "code": 1008})


class HeaderLimit:
    """Refuse an HTTP request whose head is over MAX_HEADER_BYTES with 431."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and header_bytes(scope) > MAX_HEADER_BYTES:
            await refuse_oversize_headers(scope, receive, send)
            return
        await self.app(scope, receive, send)


class Metrics:
    """Request counts and latencies by route template (never by raw path: ids stay out).

    No `*_created` series: each would carry the exact time its label set was
    first seen, such as the moment of the first `DELETE /v1/me` (an erasure).
    The registry also serves the process's own series (`process_*`: CPU,
    memory, file descriptors; `python_gc_*`; `python_info`), and the relay's
    (`app.relay.metrics`).
    """

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.requests = Counter(
            "confide_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "confide_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
        )


class AccessMiddleware:
    """Outermost: a request id, the access line, and the request counters.

    Every request gets a fresh random id (never the client's own
    `x-request-id`: a client could plant a marker that links its requests),
    sent back as `x-request-id` and carried by every log line written while
    the request is served. The access line and the metrics name the route
    TEMPLATE (`/v1/rooms/{room_id}`), never the raw path or query string:
    those carry ids, or a token a client should not have put there. The
    client's address is on the line only when CONFIDE_LOG_CLIENT_ADDRESSES
    asks (its form comes from `app.state.client_addresses`).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, state: Any = None) -> None:
        self.app = app
        self.metrics = metrics
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = logs.new_id()
        # Not reset afterwards: the task serving this request ends with it, and
        # uvicorn's own line about an unhandled error still carries the id.
        logs.request_id.set(rid)
        status = 500
        start = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = rid
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.requests.labels(method, template, str(status)).inc()
            elapsed = time.perf_counter() - start
            self.metrics.latency.labels(method, template).observe(elapsed)
            addresses: logs.ClientAddresses | None = getattr(self.state, "client_addresses", None)
            fields: dict[str, Any] = {
                "kind": "http",
                "method": method,
                "route": template,
                "status": status,
                "duration_ms": round(elapsed * 1000, 1),
            }
            if addresses is not None:
                fields.update(addresses.field(scope.get("client")))
            sampler: logs.Sampler | None = getattr(self.state, "log_sampler", None)
            # A flood of bad tokens must not flood the log: 401 lines are sampled.
            suppressed = sampler.admit("http_401") if sampler and status == 401 else 0
            if suppressed is not None:
                if suppressed:
                    fields["suppressed"] = suppressed
                access_log.info("%s %s %s", method, template, status, extra=fields)


#: The requests that hash a password before anything else they do: a log-in and
#: a registration, the two anyone can send without an account.
HASHING_REQUESTS = frozenset({("POST", "/v1/auth/token"), ("POST", "/v1/accounts")})


class PasswordGate:
    """While every password-hashing place is taken, a log-in or registration is
    answered 503 `busy` (Retry-After) here, before routing, its body and its
    dependencies. In a flood of log-ins the refusals are most of the requests;
    answered at the door, they cost the event loop, which serves every other
    request too, little. The hasher's own bound (`PasswordHasher.reserve`)
    still refuses whatever gets past a place taken meanwhile."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"]) in HASHING_REQUESTS:
            ctx = getattr(self.state, "ctx", None)
            if ctx is not None and ctx.passwords.full:
                error = PasswordsBusy()
                await send_problem(
                    send,
                    error.status,
                    error.code,
                    error.title,
                    error.detail,
                    [(k.lower().encode(), v.encode()) for k, v in error.headers.items()],
                )
                return
        await self.app(scope, receive, send)
