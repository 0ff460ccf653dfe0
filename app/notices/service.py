"""Notices: what the practice tells one account (a breach notice, a disclosure).

A notice row holds only `recipient_ix` (HMAC of the recipient's account id)
and its details sealed under the recipient's own data key, so erasing the
recipient shreds their notices and a dump shows neither who nor what.

A notice may carry `visible_from`: it is stored now but shown from then on
(the notice of a disclosure whose accounting is withheld, see
`app.disclosures.service`). Its `created_at` as shown is the moment it became
visible, so that "newest first" is the order in which the recipient got them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.core import audit
from app.core.clock import Clock
from app.core.codec import new_id
from app.core.slots import Slots
from app.core.vault import Vault
from app.models import Account, Notice, NoticeKind


@dataclass(frozen=True)
class NoticeView:
    id: str
    kind: NoticeKind
    ref: str
    message: str
    created_at: datetime


SLOTS = Slots(Notice.recipient_ix, "notice.recipient.slot")


async def deliver(
    session: AsyncSession,
    vault: Vault,
    clock: Clock,
    recipient: Account,
    *,
    kind: NoticeKind,
    ref: str,
    message: str,
    visible_from: datetime | None = None,
) -> bool:
    """Store a notice for `recipient`; False when it can no longer be sealed (erased)."""
    if recipient.data_key_id is None:
        return False
    notice_id = new_id()
    now = clock.now()
    details = {
        "kind": kind.value,
        "ref": ref,
        "message": message,
        "created_at": now.isoformat(),
        "visible_from": visible_from.isoformat()
        if visible_from is not None and visible_from > now
        else None,
    }
    await SLOTS.add(
        session,
        vault,
        recipient.id,
        Notice(
            id=notice_id,
            details=await vault.seal_json(
                session, recipient.data_key_id, Notice.details, notice_id, details
            ),
        ),
    )
    return True


async def notices_for(
    session: AsyncSession, vault: Vault, clock: Clock, account: Account
) -> list[NoticeView]:
    """The account's visible notices, newest first."""
    now = clock.now()
    out: list[NoticeView] = []
    key_id = account.data_key_id
    if key_id is not None:
        for row in await SLOTS.rows(session, vault, account.id):
            data = await vault.open_json(session, key_id, Notice.details, row.id, row.details)
            shown = datetime.fromisoformat(data["visible_from"] or data["created_at"])
            if shown > now:
                continue
            out.append(
                NoticeView(row.id, NoticeKind(data["kind"]), data["ref"], data["message"], shown)
            )
    audit.record(
        session,
        "notice.read",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
    )
    return sorted(out, key=lambda n: (n.created_at, n.id), reverse=True)


async def forget(session: AsyncSession, vault: Vault, account_id: str) -> None:
    """Delete every notice of the account (erasure)."""
    await SLOTS.remove_all(session, vault, account_id)
