"""The delivery worker: one per `confide serve` process, several instances safely.

Each tick it takes every enabled endpoint in turn and sends its pending
deliveries oldest first, one at a time: a delivery that fails waits for its
retry and holds back the endpoint's later ones, so a receiver sees one
endpoint's events in the order they were committed.

Who may send:
- PostgreSQL: the delivery row is claimed with `SELECT ... FOR UPDATE SKIP
  LOCKED` and held for the attempt; an instance that finds an older row of
  the endpoint locked claims nothing (`service.head`). The lock dies with
  the connection, so a crashed instance leaves nothing claimed.
- SQLite (one host): only the process that holds an exclusive `flock` on
  `<database>.webhooks.lock` sends; the operating system releases it when
  the process dies.

Before sending, it announces what only the clock decides: `incident.overdue`
and `room.ended` for a room that reached its `ends_at` (each once, by a
compare-and-set in the same transaction as the outbox rows).

An attempt is a POST of the stored body with the Standard Webhooks headers
(`webhook-id` the same on every attempt, a fresh `webhook-timestamp`, a fresh
signature), no redirect followed, `CONFIDE_WEBHOOK_TIMEOUT_S` at most. A 2xx
answer delivers it; anything else (another status, a redirect, a timeout, a
refused connection) schedules the next attempt after
`min(max, base * 2^(attempts - 1))` seconds times a random factor in
[0.5, 1] (jitter), until the event is `CONFIDE_WEBHOOK_MAX_AGE_S` old: then it is
marked failed and the next one goes.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from app.core.context import Context
from app.core.db import is_sqlite
from app.core.errors import is_unavailable
from app.incidents import service as incidents
from app.models import DeliveryState
from app.rooms import service as rooms
from app.webhooks import service
from app.webhooks.service import Attempt, DeliveryView, EndpointView
from app.webhooks.signing import headers

log = logging.getLogger("confide.webhooks")

#: Deliveries one endpoint may send in one tick, before the next endpoint's turn.
BATCH = 50


def backoff(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds before the next attempt, after `attempts` failed ones (>= 1)."""
    exponent = min(attempts - 1, 60)
    return min(cap, base * 2.0**exponent) * rng.uniform(0.5, 1.0)


def sqlite_lock_path(database_url: str) -> Path | None:
    """`<database file>.webhooks.lock` for a SQLite file URL."""
    _, _, path = database_url.partition(":///")
    if not path or path.startswith(":memory:"):
        return None
    return Path(path.split("?", 1)[0] + ".webhooks.lock")


class Deliverer:
    def __init__(
        self,
        ctx: Context,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        on_backlog: Callable[[int], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self._on_backlog = on_backlog
        self.rng = random.Random()  # noqa: S311 (jitter, not a secret)
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=ctx.settings.webhook_timeout_s,
            transport=transport,
            headers={"user-agent": "Confide-Webhooks"},
        )
        url = ctx.settings.resolved_database_url
        self._sqlite = is_sqlite(url)
        self._lock_path = sqlite_lock_path(url) if self._sqlite else None
        self._lock_fd: int | None = None
        #: Per room not yet ended: its sealed details when last opened, and their `ends_at`.
        self._room_ends: rooms.EndsSeen = {}

    async def close(self) -> None:
        await self._client.aclose()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _may_send(self) -> bool:
        if not self._sqlite:
            return True
        if self._lock_fd is not None:
            return True
        if self._lock_path is None:
            return True
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    async def run(self) -> None:
        paused = False
        while True:
            try:
                await self.tick()
            except Exception as error:  # retried at the next tick
                if not is_unavailable(error):
                    log.exception("webhook delivery failed")
                elif not paused:
                    # Once per outage: the refused requests already say so, one line each.
                    log.info("webhook delivery paused: a dependency is unavailable")
                    paused = True
            else:
                if paused:
                    log.info("webhook delivery resumed")
                    paused = False
            await asyncio.sleep(self.ctx.settings.webhook_poll_s)

    async def tick(self) -> int:
        """One pass over every enabled endpoint; the number of attempts made."""
        if not self._may_send():
            return 0
        async with self.ctx.transaction() as session:
            endpoints = await service.enabled_endpoints(session)
        if not endpoints:
            self._report(0)
            return 0
        async with self.ctx.transaction() as session:
            await incidents.announce_overdue(session, self.ctx.vault, self.ctx.clock)
        async with self.ctx.transaction() as session:
            await rooms.announce_ends(
                session,
                self.ctx.vault,
                self.ctx.clock,
                self._room_ends,
                max_age=timedelta(seconds=self.ctx.settings.webhook_max_age_s),
            )
        attempts = 0
        for endpoint_id in endpoints:
            for _ in range(BATCH):
                outcome = await self._send_head(endpoint_id)
                if outcome is None:
                    break
                attempts += 1
                if not outcome:
                    break
        if self._on_backlog is not None:
            async with self.ctx.transaction() as session:
                self._report(await service.backlog(session))
        return attempts

    def _report(self, backlog: int) -> None:
        if self._on_backlog is not None:
            self._on_backlog(backlog)

    async def _send_head(self, endpoint_id: str) -> bool | None:
        """Attempt the endpoint's oldest due delivery: None if none was, else delivered."""
        ctx = self.ctx
        async with ctx.transaction() as session:
            claimed = await service.head(session, ctx.vault, endpoint_id)
            if claimed is None:
                return None
            delivery, endpoint = claimed
            now = ctx.clock.now()
            if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
                return None
            if self._sqlite:
                # A SQLite read snapshot must not span the request: the flock
                # already makes this process the only sender.
                await session.commit()
            attempt = await self._post(endpoint, delivery)
            self._after(delivery, attempt)
            await service.record_attempt(session, ctx.vault, delivery)
        if delivery.state == DeliveryState.failed:
            log.warning(
                "webhook delivery failed for good after %d attempts", len(delivery.attempts)
            )
        return delivery.state == DeliveryState.delivered

    async def _post(self, endpoint: EndpointView, delivery: DeliveryView) -> Attempt:
        body = delivery.body.encode()
        now = self.ctx.clock.now()
        sent = headers(endpoint.secret, delivery.id, int(now.timestamp()), body)
        try:
            response = await self._client.post(endpoint.url, content=body, headers=sent)
        except httpx.TimeoutException:
            return Attempt(now, None, "timeout")
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, UnicodeError):
            return Attempt(now, None, "connection_failed")
        code = response.status_code
        if 200 <= code < 300:
            return Attempt(now, code, None)
        return Attempt(now, code, "redirect" if 300 <= code < 400 else "status")

    def _after(self, delivery: DeliveryView, attempt: Attempt) -> None:
        settings = self.ctx.settings
        delivery.attempts.append(attempt)
        if attempt.error is None:
            delivery.state, delivery.next_attempt_at = DeliveryState.delivered, None
            return
        delay = backoff(
            len(delivery.attempts),
            settings.webhook_backoff_base_s,
            settings.webhook_backoff_max_s,
            self.rng,
        )
        following: datetime = attempt.at + timedelta(seconds=delay)
        if following - delivery.created_at > timedelta(seconds=settings.webhook_max_age_s):
            delivery.state, delivery.next_attempt_at = DeliveryState.failed, None
        else:
            delivery.next_attempt_at = following
