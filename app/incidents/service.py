"""The breach protocol (45 CFR 164.404): incidents and their notices.

An incident is the practice's record, not any one person's: what happened,
its times and who was affected are sealed under the system key (`details`,
`subjects`), so a dump shows no affected account id and no date; only the
status and severity are plain. Affected accounts are notified by
`notify()`: one notice each, sealed under the recipient's own key. Notifying
again sends a further notice (an update to the first) and keeps the first
`notified_at`, which is what `overdue` measures against `notify_by`.

`notify_by` is the discovery plus the shortest deadline among HIPAA's 60 days
and the state deadline of each affected account's jurisdiction
(`app.incidents.state_deadlines`), found when the incident is opened through
`account_jurisdiction`; the jurisdictions and the rule that set `notify_by`
are sealed with the details.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.jurisdiction import account_jurisdiction
from app.core import audit, webhooks
from app.core.clock import Clock
from app.core.codec import is_id, new_id
from app.core.context import Context
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.vault import SYSTEM_KEY_ID, Vault
from app.incidents import state_deadlines
from app.incidents.state_deadlines import HIPAA, Deadline
from app.models import Account, AccountStatus, Incident, IncidentStatus, NoticeKind, Severity
from app.notices import service as notices

#: 45 CFR 164.404(b): without unreasonable delay, at the latest 60 days after discovery.
NOTIFY_WITHIN = timedelta(days=HIPAA.days)
_ORDER = list(IncidentStatus)
_LOOKUP_CHUNK = 1000


class InvalidTransition(Conflict):
    code, title = "invalid_transition", "Invalid status transition"


@dataclass
class IncidentView:
    id: str
    summary: str
    discovered_at: datetime
    severity: Severity
    status: IncidentStatus
    notify_by: datetime
    notified_at: datetime | None
    affected_account_ids: list[str]
    created_at: str
    created_by: str
    #: `incident.overdue` was announced (once per incident).
    overdue_announced: bool = False
    #: The affected accounts' jurisdictions (ISO 3166-2), each once, in code order.
    jurisdictions: list[str] = field(default_factory=list)
    #: The deadline that set `notify_by`.
    notify_by_rule: Deadline = HIPAA

    def overdue(self, now: datetime) -> bool:
        return self.notified_at is None and now > self.notify_by


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i : i + _LOOKUP_CHUNK] for i in range(0, len(items), _LOOKUP_CHUNK)]


async def _sealed_details(
    session: AsyncSession, vault: Vault, row: Incident, v: IncidentView
) -> bytes:
    details: dict[str, object] = {
        "summary": v.summary,
        "discovered_at": v.discovered_at.isoformat(),
        "notify_by": v.notify_by.isoformat(),
        "notified_at": v.notified_at.isoformat() if v.notified_at else None,
        "created_at": v.created_at,
        "created_by": v.created_by,
        "jurisdictions": v.jurisdictions,
        "notify_by_rule": {
            "jurisdiction": v.notify_by_rule.jurisdiction,
            "days": v.notify_by_rule.days,
            "source": v.notify_by_rule.source,
        },
    }
    if v.overdue_announced:
        details["overdue_announced"] = True
    return await vault.seal_json(session, SYSTEM_KEY_ID, Incident.details, row.id, details)


async def _seal_details(
    session: AsyncSession, vault: Vault, row: Incident, v: IncidentView
) -> None:
    row.details = await _sealed_details(session, vault, row, v)


async def _open(session: AsyncSession, vault: Vault, row: Incident) -> IncidentView:
    data = await vault.open_json(session, SYSTEM_KEY_ID, Incident.details, row.id, row.details)
    subjects = await vault.open_json(
        session, SYSTEM_KEY_ID, Incident.subjects, row.id, row.subjects
    )
    notified_at = data["notified_at"]
    rule = data.get("notify_by_rule")
    return IncidentView(
        id=row.id,
        summary=data["summary"],
        discovered_at=datetime.fromisoformat(data["discovered_at"]),
        severity=row.severity,
        status=row.status,
        notify_by=datetime.fromisoformat(data["notify_by"]),
        notified_at=datetime.fromisoformat(notified_at) if notified_at else None,
        affected_account_ids=list(subjects["accounts"]),
        created_at=data["created_at"],
        created_by=data["created_by"],
        overdue_announced=bool(data.get("overdue_announced", False)),
        jurisdictions=list(data.get("jurisdictions", [])),
        notify_by_rule=(
            Deadline(rule["jurisdiction"], rule["days"], rule["source"]) if rule else HIPAA
        ),
    )


async def _load(session: AsyncSession, incident_id: str) -> Incident:
    row = await session.get(Incident, incident_id) if is_id(incident_id) else None
    if row is None:
        raise NotFound("No such incident.")
    return row


async def _accounts(session: AsyncSession, ids: Sequence[str]) -> dict[str, Account]:
    found: dict[str, Account] = {}
    for chunk in _chunks(ids):
        rows = (await session.execute(select(Account).where(Account.id.in_(chunk)))).scalars()
        found.update({account.id: account for account in rows})
    return found


async def jurisdictions_of(
    session: AsyncSession, ctx: Context, account_ids: Sequence[str]
) -> list[str]:
    """The distinct jurisdictions of the accounts, in code order (unknown ones add nothing)."""
    found = {await account_jurisdiction(session, ctx, account_id) for account_id in account_ids}
    return sorted(code for code in found if code is not None)


def deadline_for(
    discovered_at: datetime, jurisdictions: Sequence[str], ctx: Context
) -> tuple[datetime, Deadline]:
    """`notify_by` and the rule that sets it, for an incident affecting these jurisdictions."""
    table = state_deadlines.load(ctx.settings.breach_deadlines_file)
    rule = state_deadlines.shortest(jurisdictions, table)
    return state_deadlines.notify_by(discovered_at, rule), rule


async def create(
    session: AsyncSession,
    ctx: Context,
    *,
    summary: str,
    discovered_at: datetime,
    severity: Severity,
    affected_account_ids: Sequence[uuid.UUID],
    actor_id: str,
    actor_role: str,
) -> IncidentView:
    vault = ctx.vault
    now = ctx.clock.now()
    if discovered_at > now:
        raise ValidationFailed("discovered_at must not be in the future.")
    affected = list(dict.fromkeys(str(account_id) for account_id in affected_account_ids))
    known = await _accounts(session, affected)
    unknown = [account_id for account_id in affected if account_id not in known]
    if unknown:
        raise ValidationFailed(
            "affected_account_ids names accounts that do not exist.", unknown=unknown
        )
    jurisdictions = await jurisdictions_of(session, ctx, affected)
    notify_by, rule = deadline_for(discovered_at, jurisdictions, ctx)
    view = IncidentView(
        id=new_id(),
        summary=summary,
        discovered_at=discovered_at,
        severity=severity,
        status=IncidentStatus.assessing,
        notify_by=notify_by,
        notified_at=None,
        affected_account_ids=affected,
        created_at=now.isoformat(),
        created_by=actor_id,
        jurisdictions=jurisdictions,
        notify_by_rule=rule,
    )
    row = Incident(
        id=view.id,
        status=view.status,
        severity=view.severity,
        details=b"",
        subjects=await vault.seal_json(
            session, SYSTEM_KEY_ID, Incident.subjects, view.id, {"accounts": affected}
        ),
    )
    await _seal_details(session, vault, row, view)
    session.add(row)
    await session.flush()
    audit.record(
        session,
        "incident.create",
        actor_id=actor_id,
        actor_role=actor_role,
        target=view.id,
        details={"severity": severity.value, "affected": len(affected)},
    )
    _for_the_affected(session, "incident.create", view, actor_id, actor_role)
    return view


def _for_the_affected(
    session: AsyncSession, action: str, view: IncidentView, actor_id: str, actor_role: str
) -> None:
    """Whom it affected is each affected person's record: their access logs show each
    read or change of the incident."""
    audit.record_reads(
        session,
        action,
        view.affected_account_ids,
        actor_id=actor_id,
        actor_role=actor_role,
        details={"incident": view.id},
    )


async def get(
    session: AsyncSession, vault: Vault, incident_id: str, *, actor_id: str, actor_role: str
) -> IncidentView:
    view = await _open(session, vault, await _load(session, incident_id))
    audit.record(session, "incident.read", actor_id=actor_id, actor_role=actor_role, target=view.id)
    _for_the_affected(session, "incident.read", view, actor_id, actor_role)
    return view


async def list_all(
    session: AsyncSession,
    vault: Vault,
    *,
    actor_id: str,
    actor_role: str,
    shown: Callable[[list[IncidentView]], list[IncidentView]] = list,
) -> list[IncidentView]:
    """Every incident, most recently discovered first, or the part of them `shown` picks.

    Each incident answered is a read of its affected accounts' records; those
    `shown` leaves out are not read.
    """
    rows = (await session.execute(select(Incident))).scalars()
    views = [await _open(session, vault, row) for row in rows]
    views.sort(key=lambda v: (-v.discovered_at.timestamp(), v.id))
    views = shown(views)
    audit.record(session, "incident.list", actor_id=actor_id, actor_role=actor_role)
    for view in views:
        _for_the_affected(session, "incident.read", view, actor_id, actor_role)
    return views


async def set_status(
    session: AsyncSession,
    vault: Vault,
    incident_id: str,
    status: IncidentStatus,
    *,
    actor_id: str,
    actor_role: str,
) -> IncidentView:
    """Move the incident forward (any number of steps); never back, never in place."""
    row = await _load(session, incident_id)
    current = row.status
    if _ORDER.index(status) <= _ORDER.index(current):
        raise InvalidTransition(f"An incident cannot go from {current.value} to {status.value}.")
    # Compare-and-set: of two concurrent moves from the same status, one wins.
    moved = (
        await session.execute(
            update(Incident)
            .where(Incident.id == row.id, Incident.status == current)
            .values(status=status)
            .returning(Incident.id)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one_or_none()
    if moved is None:
        raise InvalidTransition("The incident's status changed meanwhile; reload and retry.")
    await session.refresh(row)
    audit.record(
        session,
        "incident.update",
        actor_id=actor_id,
        actor_role=actor_role,
        target=row.id,
        details={"from": current.value, "to": status.value},
    )
    view = await _open(session, vault, row)
    _for_the_affected(session, "incident.update", view, actor_id, actor_role)
    return view


async def notify(
    session: AsyncSession,
    vault: Vault,
    clock: Clock,
    incident_id: str,
    message: str,
    *,
    actor_id: str,
    actor_role: str,
) -> int:
    """One notice with `message` to each affected account; the number delivered."""
    row = await _load(session, incident_id)
    view = await _open(session, vault, row)
    recipients = await _accounts(session, view.affected_account_ids)
    delivered = 0
    for account_id in view.affected_account_ids:
        account = recipients.get(account_id)
        if account is None or account.status == AccountStatus.erased:
            # Erased since: no one to tell, nothing to seal a notice under. A
            # disabled account is told all the same (it may be enabled again).
            continue
        if not await notices.deliver(
            session, vault, clock, account, kind=NoticeKind.incident, ref=view.id, message=message
        ):
            continue
        delivered += 1
        audit.record(
            session,
            "notice.create",
            actor_id=actor_id,
            actor_role=actor_role,
            target=account_id,
            details={"kind": NoticeKind.incident.value, "incident": view.id},
        )
    if view.notified_at is None:
        view.notified_at = clock.now()
        await _seal_details(session, vault, row, view)
    await session.flush()
    audit.record(
        session,
        "incident.notify",
        actor_id=actor_id,
        actor_role=actor_role,
        target=view.id,
        details={"notified": delivered},
    )
    return delivered


async def announce_overdue(session: AsyncSession, vault: Vault, clock: Clock) -> int:
    """Announce `incident.overdue` for each incident past `notify_by` with no notice sent.

    Once per incident: the announcement is sealed into its details by a
    compare-and-set, so two instances scanning at once announce it once.
    The number announced.
    """
    now = clock.now()
    announced = 0
    rows = (
        await session.execute(select(Incident).where(Incident.status != IncidentStatus.closed))
    ).scalars()
    for row in list(rows):
        view = await _open(session, vault, row)
        if view.overdue_announced or not view.overdue(now):
            continue
        view.overdue_announced = True
        new = await _sealed_details(session, vault, row, view)
        won = (
            await session.execute(
                update(Incident)
                .where(Incident.id == row.id, Incident.details == row.details)
                .values(details=new)
                .returning(Incident.id)
                .execution_options(synchronize_session=False)
            )
        ).scalar_one_or_none()
        if won is None:
            continue
        webhooks.announce(
            session,
            "incident.overdue",
            now,
            incident_id=row.id,
            notify_by=view.notify_by.isoformat(),
        )
        announced += 1
    return announced
