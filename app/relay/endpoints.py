"""The room socket: handshake, Origin check and authentication, then the hub takes over.

The `Origin` header, when present, is the server's own origin (a page it
serves) or one of `CONFIDE_ALLOWED_ORIGINS`. Authentication is a room token,
given either as the subprotocol `bearer.<token>` beside `confide.v1`, or in
a first `auth` frame within 5 seconds. Never in the query string: URLs end up in logs. The token is
checked (signature, audience, the path's room), the database is asked once,
in a short transaction, whether the room-token rule (`rooms.admit_device`:
the account, the log-in, the room, the membership, the device, the consent)
still admits it, and then its `jti` is spent. A refusal closes the socket
with the close code and reason its error carries (`ConfideError.close_code`).
A database or broker that cannot be reached closes the socket with 1013 (try
again later) and leaves the token unspent. Nothing on the socket afterwards
touches the database.

Logging: every line written for a socket carries its connection id
(`conn_id`, random, tied to no device, account or room), and the socket ends
with one access line by route template (`/v1/rooms/{room_id}/ws`), its close
code and duration. No line names the room, the account or the device: with
an address, a token or a time beside it, that would say who met whom.

Metrics (`app.relay.metrics`): every socket's close code, every refusal's
code, the `auth` frame, and the broker's round trip to spend the `jti`.

Floods: before anything else, one client address may open
`CONFIDE_WS_HANDSHAKE_BURST` sockets at once and
`CONFIDE_WS_HANDSHAKE_RATE_PER_S` a second after that; an upgrade past them
is refused with HTTP 429 `rate_limited` and Retry-After, before its token is
looked at. A token is refused on its own (size, shape, signature, audience,
expiry) before the database or the broker is asked anything. The lines
about refused sockets are sampled (`app.core.logging.Sampler`); the metrics
count every refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from fastapi import APIRouter, WebSocket
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send

from app.core import audit, webhooks
from app.core import logging as logs
from app.core.buckets import TokenBuckets
from app.core.close_codes import Close
from app.core.context import Context
from app.core.errors import ConfideError, RateLimited, is_unavailable
from app.core.tokens import ROOM_AUDIENCE, ROOM_TYP, TokenError
from app.relay import frames
from app.relay import protocol as p
from app.relay.broker import BrokerUnavailable
from app.relay.hub import Connection, Grant, Hub, Participant
from app.relay.metrics import RelayMetrics, utf8_length
from app.rooms import checkins
from app.rooms import service as rooms
from app.web.errors import problem_response

log = logging.getLogger("confide.relay")
access_log = logging.getLogger("confide.access")
router = APIRouter()
ROOM_SOCKET = "/v1/rooms/{room_id}/ws"
_CLOSE_INTERNAL_ERROR = 1011  # what the access line says when serving the socket raised


class Refused(Exception):
    """The socket is refused before the hub takes it: its close code and reason, and
    the stable code of why (the reason itself when that is a code; `metrics.REFUSALS`)."""

    def __init__(self, code: Close, reason: str, why: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.why = why or reason

    @classmethod
    def by(cls, error: ConfideError) -> Refused:
        """The refusal `error` carries: its close code, and its close reason or else
        its problem code (what the room-token endpoint answers for the same error)."""
        return cls(error.close_code, error.close_reason or error.code)


async def authorize(ctx: Context, hub: Hub, room_id: str, token: str) -> Grant:
    try:
        claims = ctx.tokens.verify(token, audience=ROOM_AUDIENCE, typ=ROOM_TYP)
    except TokenError as error:
        raise Refused(Close.TOKEN, error.code) from None
    if claims.get("room") != room_id or not all(
        isinstance(claims.get(name), str) for name in ("device", "sid")
    ):
        raise Refused(Close.TOKEN, "token_invalid")
    try:
        return await _admit(ctx, hub, room_id, claims)
    except ConfideError as error:
        raise Refused.by(error) from None
    except BrokerUnavailable as error:
        log.warning("broker unavailable: %s", type(error).__name__)
        raise Refused(Close.TRY_AGAIN, "unavailable") from None
    except Refused:
        raise
    except Exception as error:
        if not is_unavailable(error):
            raise
        # One line, no traceback: the database is away, not a bug.
        log.warning("database unavailable: %s", type(error).__name__)
        raise Refused(Close.TRY_AGAIN, "unavailable") from None


async def _spend(ctx: Context, hub: Hub, claims: dict[str, Any]) -> None:
    ttl = max(1, int(claims["exp"] - ctx.clock.time()) + 60)
    started = time.perf_counter()
    spent = await hub.broker.spend_jti(str(claims["jti"]), ttl, float(claims["iat"]))
    hub.rtt_spend.observe(time.perf_counter() - started)
    if not spent:
        raise Refused(Close.TOKEN, "token_spent")


async def _admit(ctx: Context, hub: Hub, room_id: str, claims: dict[str, Any]) -> Grant:
    """Admit the token's holder by the room-token rule; spend its `jti` last.

    The token is spent only once every check that can fail for a reason the
    client did not cause (the database, the broker away) has passed, inside
    the transaction: a refusal after the spend rolls back the `room.join`.
    """
    account_id, device_id, login_id = (str(claims[name]) for name in ("sub", "device", "sid"))
    async with ctx.transaction() as session:
        admission = await rooms.admit_device(
            session,
            ctx,
            account_id=account_id,
            login_id=login_id,
            room_id=room_id,
            device_id=device_id,
            with_seats=True,
        )
        assert admission.seats is not None
        role = admission.member.role
        # A host is shown each client's check-in: read before the token is spent.
        greeting = await _checkins_for_host(ctx, session, admission) if role == rooms.HOST else ()
        await _spend(ctx, hub, claims)
        if admission.admitted:
            await rooms.mark_started(session, ctx, admission.state)
        else:
            webhooks.announce(
                session,
                "participant.waiting",
                admission.at,
                room_id=room_id,
                account_id=account_id,
            )
        audit.record(
            session,
            "room.join",
            actor_id=account_id,
            actor_role=role,
            target=account_id,
            details={"room": room_id, "device": device_id},
        )
        # The welcome shows every other participant's name and keys: their logs say so.
        audit.record_reads(
            session,
            "room.join",
            [seat.account_id for seat in admission.seats],
            actor_id=account_id,
            actor_role=role,
            details={"room": room_id},
        )
    return Grant(
        room_id=room_id,
        account_id=account_id,
        device_id=device_id,
        role=role,
        login_id=login_id,
        admitted=admission.admitted,
        ends_at=admission.state.ends_at,
        locked=admission.state.room.locked,
        participants={
            seat.account_id: Participant(
                seat.account_id, seat.role, seat.display_name, seat.admitted, dict(seat.devices)
            )
            for seat in admission.seats
        },
        greeting=greeting,
    )


async def _checkins_for_host(
    ctx: Context, session: AsyncSession, admission: rooms.Admission
) -> tuple[str, ...]:
    """A joining host's `checkin` frames: each client's check-in that still admits them."""
    shown = await checkins.for_hosts(
        session, ctx, admission.state, admission.account, "socket", only_valid=True
    )
    return tuple(
        frames.checkin(
            each.checkin.account_id,
            address=each.checkin.address,
            jurisdiction=each.checkin.jurisdiction,
            contact_name=each.checkin.contact_name,
            contact_phone=each.checkin.contact_phone,
            callback_phone=each.checkin.callback_phone,
            recorded_at=each.checkin.recorded_at,
            licensed=bool(each.licensed),
        )
        for each in shown
    )


async def _first_frame_token(ws: WebSocket, timeout_s: float, metrics: RelayMetrics) -> str:
    try:
        message = await asyncio.wait_for(ws.receive(), timeout_s)
    except TimeoutError:
        detail = f"no auth frame within {timeout_s:g} seconds"
        raise Refused(Close.TOKEN, detail, "auth_timeout") from None
    if message["type"] == "websocket.disconnect":
        raise Refused(Close.NORMAL, "gone")
    text = message.get("text")
    if text is None:
        metrics.frames_in["binary"].inc()
        metrics.bytes_in.inc(len(message.get("bytes") or b""))
        raise Refused(Close.POLICY, "binary frames are not allowed", "binary_frame")
    metrics.bytes_in.inc(utf8_length(text))
    try:
        frame = p.parse_client_frame(text)
    except p.FrameError:
        metrics.frames_in["invalid"].inc()
        raise Refused(Close.TOKEN, "the first frame must be auth", "auth_frame_required") from None
    metrics.frames_in[frame.type].inc()
    if not isinstance(frame, p.AuthFrame):
        raise Refused(Close.TOKEN, "the first frame must be auth", "auth_frame_required")
    return frame.token


class _RoomSocketApp:
    """The room socket's route, as a plain ASGI app: no dependency injection, exit
    stacks or exception-handling wrappers whose frames would live as long as each
    socket and sit in the path of every frame sent through ASGI."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await room_socket(WebSocket(scope, receive, send), scope["path_params"]["room_id"])


router.routes.append(WebSocketRoute(ROOM_SOCKET, _RoomSocketApp(), name="room_socket"))


async def _over_rate(ws: WebSocket) -> bool:
    """Refuse the upgrade with 429 when the client's address is over its handshake rate."""
    handshakes: TokenBuckets | None = getattr(ws.app.state, "handshakes", None)
    if handshakes is None:
        return False
    client = ws.scope.get("client")
    wait = handshakes.retry_after(client[0] if client else "unknown")
    if not wait:
        return False
    error = RateLimited(wait, "Too many socket handshakes from this address; try again later.")
    response = problem_response(error.status, error.code, error.title, error.detail, error.headers)
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(response)
    else:  # a server without the extension: its own refusal (403)
        await ws.close(Close.TRY_AGAIN, error.code)
    return True


async def room_socket(ws: WebSocket, room_id: str) -> None:
    # Not reset afterwards: the task serving this socket ends with it.
    logs.connection_id.set(logs.new_id())
    started = time.perf_counter()
    code = _CLOSE_INTERNAL_ERROR
    # Lines about refusals are sampled: None leaves the access line out, a number
    # says how many were left out before it.
    written: int | None = 0
    hub: Hub | None = getattr(ws.app.state, "hub", None)
    try:
        if await _over_rate(ws):
            code = RateLimited.status
            if hub is not None:
                hub.metrics.refused("handshake_rate")
            written = _sample(ws)
        else:
            code, written = await _serve_socket(ws, room_id)
    finally:
        if hub is not None and code != RateLimited.status:
            hub.metrics.closed(code)
        addresses: logs.ClientAddresses | None = getattr(ws.app.state, "client_addresses", None)
        fields: dict[str, object] = {
            "kind": "websocket",
            "route": ROOM_SOCKET,
            "code": code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        }
        if addresses is not None:
            fields.update(addresses.field(ws.scope.get("client")))
        if written is not None:
            if written:
                fields["suppressed"] = written
            access_log.info("WEBSOCKET %s %s", ROOM_SOCKET, code, extra=fields)


def _sample(ws: WebSocket) -> int | None:
    """The sampler's answer for one refused socket's lines (None: leave them out)."""
    sampler: logs.Sampler | None = getattr(ws.app.state, "log_sampler", None)
    return sampler.admit("socket_refused") if sampler is not None else 0


async def _serve_socket(ws: WebSocket, room_id: str) -> tuple[int, int | None]:
    """Serve one socket: its close code, and the sampler's word on the lines about
    a refusal (None: left out; else how many were left out before them)."""
    ctx: Context = ws.app.state.ctx
    hub: Hub = ws.app.state.hub
    offered: list[str] = list(ws.scope.get("subprotocols") or [])
    speaks_v1, token = p.bearer_from_subprotocols(offered)
    await ws.accept(subprotocol=p.SUBPROTOCOL if speaks_v1 else None)
    try:
        origin = ws.headers.get("origin")
        if (
            origin is not None
            and origin not in ctx.settings.allowed_origins
            and not p.same_origin(origin, ws.url.scheme, ws.headers.get("host"))
        ):
            raise Refused(Close.FORBIDDEN, "origin not allowed", "origin_refused")
        if not speaks_v1:
            raise Refused(
                Close.PROTOCOL_ERROR, "subprotocol confide.v1 required", "subprotocol_required"
            )
        if b"token" in ws.scope.get("query_string", b""):
            raise Refused(Close.TOKEN, "tokens are never accepted in the URL", "token_in_url")
        if token is None:
            token = await _first_frame_token(ws, ctx.settings.ws_auth_timeout, hub.metrics)
        grant = await authorize(ctx, hub, room_id, token)
    except Refused as refused:
        hub.metrics.refused(refused.why)
        written = _sample(ws)
        if written is not None:
            log.info("socket refused: %s (%s)", refused.code, refused.reason)
        with contextlib.suppress(Exception):
            await ws.close(refused.code, refused.reason)
        return refused.code, written
    except Exception:
        # A bug: the client still gets a close frame, the log the traceback.
        with contextlib.suppress(Exception):
            await ws.close(_CLOSE_INTERNAL_ERROR, "internal error")
        raise
    conn = Connection(ws, grant, ctx.settings.ws_rate_per_s)
    room = hub.join(grant)
    # Only the connection lives on: the grant's copy of the participants is not
    # kept for the socket's whole life.
    del grant
    log.info("socket open: %s", conn.peer.joins_as.value)
    try:
        await hub.run(conn, room)
    finally:
        await _record_leave(ctx, conn)
    return conn.close_code or Close.NORMAL, 0


async def _record_leave(ctx: Context, conn: Connection) -> None:
    with contextlib.suppress(Exception):
        async with ctx.transaction() as session:
            webhooks.announce(
                session,
                "participant.left",
                ctx.clock.now(),
                room_id=conn.room_id,
                account_id=conn.account_id,
            )
            audit.record(
                session,
                "room.leave",
                actor_id=conn.account_id,
                actor_role=conn.role,
                target=conn.account_id,
                details={"room": conn.room_id, "device": conn.device_id},
            )
