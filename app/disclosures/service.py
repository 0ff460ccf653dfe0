"""The accounting of disclosures (45 CFR 164.528).

A disclosure is the client's information: it is sealed under the client's own
data key and found through `client_ix` (HMAC of the client's account id), so
a dump shows neither whose it is, what, to whom nor when. The counselor who
recorded it is kept as an id inside the sealed details: erasing the counselor
leaves the client's accounting readable; erasing the client shreds it.

Who may record one: an admin, or a counselor the client has accepted as
theirs (a care relationship, `app.rooms.care`: the client accepted one of the
counselor's invitations). Sharing a room is not enough: a co-host of the
client's room is not the client's counselor. To any other counselor the
client does not exist (404, as for an unknown account).

Withholding: a disclosure with `withhold_until` in the future is hidden from
the client's accounting until then. Its notice is created with it, carrying
the same time as `visible_from`, and `GET /v1/me/notices` shows it only from
then on: no background job and no state to flip later, and the notice can
neither be lost nor be sent twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as accounts
from app.auth.service import Principal
from app.core import audit
from app.core.codec import is_id, new_id
from app.core.context import Context
from app.core.errors import Forbidden, NotFound, ValidationFailed
from app.core.slots import Slots
from app.core.vault import Vault
from app.disclosures.schemas import RecordDisclosure
from app.models import Account, Disclosure, DisclosureBasis, NoticeKind, Role
from app.notices import service as notices
from app.rooms.care import has_care

_NO_SUCH_ACCOUNT = "No such account."


@dataclass(frozen=True)
class DisclosureView:
    id: str
    account_id: str
    basis: DisclosureBasis
    recipient: str
    purpose: str
    description: str
    disclosed_at: datetime
    withhold_until: datetime | None
    recorded_by: str
    recorded_by_role: str
    recorded_at: datetime

    def withheld(self, now: datetime) -> bool:
        return self.withhold_until is not None and self.withhold_until > now


SLOTS = Slots(Disclosure.client_ix, "disclosure.client.slot")


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def notice_message(view: DisclosureView) -> str:
    return (
        f"Information about you was disclosed to {view.recipient}"
        f" on {view.disclosed_at:%Y-%m-%d} (basis: {view.basis.value.replace('_', ' ')})."
        " See your accounting of disclosures for the details."
    )


async def record(
    session: AsyncSession,
    ctx: Context,
    principal: Principal,
    account_id: str,
    body: RecordDisclosure,
) -> DisclosureView:
    """Record a disclosure of the client `account_id`'s information."""
    if principal.account.role == Role.client:
        raise Forbidden("Only the client's counselor or an admin records a disclosure.")
    client = await accounts.get_active(session, account_id) if is_id(account_id) else None
    if client is None or client.role != Role.client or client.data_key_id is None:
        raise NotFound(_NO_SUCH_ACCOUNT)
    if principal.account.role != Role.admin and not await has_care(
        session, ctx.vault, principal.id, client.id
    ):
        raise NotFound(_NO_SUCH_ACCOUNT)
    now = ctx.clock.now()
    if body.disclosed_at > now:
        raise ValidationFailed("disclosed_at must not be in the future.")
    view = DisclosureView(
        id=new_id(),
        account_id=client.id,
        basis=body.basis,
        recipient=body.recipient,
        purpose=body.purpose,
        description=body.description,
        disclosed_at=body.disclosed_at,
        withhold_until=body.withhold_until,
        recorded_by=principal.id,
        recorded_by_role=principal.role,
        recorded_at=now,
    )
    details = {
        "client": view.account_id,
        "basis": view.basis.value,
        "recipient": view.recipient,
        "purpose": view.purpose,
        "description": view.description,
        "disclosed_at": view.disclosed_at.isoformat(),
        "withhold_until": view.withhold_until.isoformat() if view.withhold_until else None,
        "recorded_by": view.recorded_by,
        "recorded_by_role": view.recorded_by_role,
        "recorded_at": view.recorded_at.isoformat(),
    }
    await SLOTS.add(
        session,
        ctx.vault,
        client.id,
        Disclosure(
            id=view.id,
            details=await ctx.vault.seal_json(
                session, client.data_key_id, Disclosure.details, view.id, details
            ),
        ),
    )
    await notices.deliver(
        session,
        ctx.vault,
        ctx.clock,
        client,
        kind=NoticeKind.disclosure,
        ref=view.id,
        message=notice_message(view),
        visible_from=view.withhold_until,
    )
    await session.flush()
    audit.record(
        session,
        "disclosure.record",
        actor_id=principal.id,
        actor_role=principal.role,
        target=client.id,
        details={
            "disclosure": view.id,
            "basis": view.basis.value,
            "withheld": view.withheld(now),
            # Until then no trace of it reaches the client (their access log hides it).
            "visible_from": (
                view.withhold_until.isoformat()
                if view.withhold_until is not None and view.withheld(now)
                else None
            ),
        },
    )
    return view


async def _open(
    session: AsyncSession, vault: Vault, key_id: str, row: Disclosure
) -> DisclosureView:
    data = await vault.open_json(session, key_id, Disclosure.details, row.id, row.details)
    return DisclosureView(
        id=row.id,
        account_id=data["client"],
        basis=DisclosureBasis(data["basis"]),
        recipient=data["recipient"],
        purpose=data["purpose"],
        description=data["description"],
        disclosed_at=datetime.fromisoformat(data["disclosed_at"]),
        withhold_until=_time(data["withhold_until"]),
        recorded_by=data["recorded_by"],
        recorded_by_role=data["recorded_by_role"],
        recorded_at=datetime.fromisoformat(data["recorded_at"]),
    )


async def forget(session: AsyncSession, vault: Vault, account_id: str) -> None:
    """Delete the client's accounting of disclosures (erasure)."""
    await SLOTS.remove_all(session, vault, account_id)


async def withheld_until(
    session: AsyncSession, ctx: Context, client: Account, disclosure_id: str
) -> datetime | None:
    """When the client may learn of this disclosure (None: now); far future if unreadable."""
    key_id = client.data_key_id
    row = await session.get(Disclosure, disclosure_id) if is_id(disclosure_id) else None
    if row is None or key_id is None:
        return datetime.max.replace(tzinfo=UTC)
    return (await _open(session, ctx.vault, key_id, row)).withhold_until


async def accounting(
    session: AsyncSession, ctx: Context, principal: Principal
) -> list[DisclosureView]:
    """The client's own accounting, oldest disclosure first, less what is still withheld."""
    if principal.account.role != Role.client:
        raise Forbidden("The accounting of disclosures is the client's.")
    now = ctx.clock.now()
    found: list[DisclosureView] = []
    key_id = principal.account.data_key_id
    if key_id is not None:
        for row in await SLOTS.rows(session, ctx.vault, principal.id):
            view = await _open(session, ctx.vault, key_id, row)
            if not view.withheld(now):
                found.append(view)
    audit.record(
        session,
        "disclosure.read",
        actor_id=principal.id,
        actor_role=principal.role,
        target=principal.id,
    )
    return sorted(found, key=lambda d: (d.disclosed_at, d.recorded_at, d.id))
