"""Retention: what Confide deletes, and when.

- Ciphertexts of ended rooms: kept for replay until the room's end plus
  `CONFIDE_RETENTION_ENDED_ROOM_S` (default 1 hour, at most 24 hours), then the
  room's whole replay store (messages, seq, resend ids) is deleted from the broker.
- Refresh tokens: a spent token must outlive its use, or a replay of it could
  not be recognised (and its family revoked). So a family's rows are deleted
  together, `CONFIDE_RETENTION_DEAD_TOKENS_S` after the family died (revoked,
  idle past the timeout, or past its maximum lifetime).
- Webhook delivery logs: each endpoint keeps its newest 1000 finished
  deliveries (delivered or failed); what still waits is never deleted.
- Password reset tokens: deleted once they expire (30 minutes after the reset
  started), if no newer reset or use deleted them first.
- Idempotency keys: the stored answer of a write sent with an `Idempotency-Key`
  is deleted `CONFIDE_IDEMPOTENCY_TTL_S` (default 24 hours) after the write.
- Spent room-token ids live in the broker with a TTL of the token's remaining
  lifetime plus a minute: Redis expires them itself; the in-process broker
  drops them here.

One job does all of it: periodically inside `confide serve`, and on demand
as `confide purge`. It is idempotent, so several instances may run it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from app.accounts import lifecycle
from app.auth import service as auth
from app.core.context import Context
from app.idempotency import service as idempotency
from app.relay.broker import Broker
from app.rooms import group_info
from app.rooms import service as rooms_service
from app.webhooks import service as webhooks

log = logging.getLogger("confide.retention")


@dataclass(frozen=True)
class Purged:
    rooms: int
    refresh_tokens: int
    spent_token_ids: int
    webhook_deliveries: int = 0
    password_resets: int = 0
    idempotency_keys: int = 0


async def purge(ctx: Context, broker: Broker) -> Purged:
    now = ctx.clock.now()
    room_cutoff = now - timedelta(seconds=ctx.settings.retention_ended_room_s)
    token_cutoff = now - timedelta(seconds=ctx.settings.retention_dead_tokens_s)
    async with ctx.transaction() as session:
        rooms = await rooms_service.ended_before(session, ctx.vault, room_cutoff)
        deleted = await auth.purge_dead_logins(session, ctx, token_cutoff)
        await group_info.forget(session, rooms)
        deliveries = await webhooks.prune_log(session)
        resets = await lifecycle.purge_expired_resets(session, ctx)
        keys = await idempotency.purge_expired(session, ctx)
    for room_id in rooms:
        await broker.drop_room(room_id)
    spent = await broker.purge_expired()
    log.info(
        "purge: %d rooms' ciphertexts, %d refresh tokens, %d spent token ids,"
        " %d webhook deliveries, %d password resets, %d idempotency keys",
        len(rooms),
        deleted,
        spent,
        deliveries,
        resets,
        keys,
    )
    return Purged(len(rooms), deleted, spent, deliveries, resets, keys)
