"""Guardians of minor clients, and the consent a minor's care needs.

An admin marks a client account as a minor (`set_minor`), with whether the
practice records the minor as consenting for themselves under the applicable
law and on what basis, and links guardians to the minor (`link`). A linked
guardian gives or withdraws consent for the minor's care (`set_consent`). A
minor's room token is refused (`GuardianConsentRequired`, in `app.rooms`)
unless a linked guardian's consent is current or the practice's self-consent
record allows it (`may_consent`).

Storage: `minor_profiles` (a blind index of the account, its status sealed
under the minor's key); each link is two rows that share no value:
`guardian_links` (the minor's slot index, {guardian, linked_at, consent}
sealed under the minor's key) and `ward_links` (the guardian's slot index,
{minor, linked_at} sealed under the guardian's key). A dump shows neither who
is a minor nor who is whose guardian. Erasure of either person removes both
rows of each of their links (`forget`, while the person's key still opens them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import Principal
from app.core import audit
from app.core.close_codes import Close
from app.core.codec import is_id, new_id
from app.core.context import Context
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.events import AccountClosed, emit
from app.core.slots import Slots
from app.core.vault import Vault
from app.models import Account, AccountStatus, GuardianLink, MinorProfile, Role, WardLink

MINOR_PURPOSE = "account.minor"
GUARDIANS = Slots(GuardianLink.owner_ix, "guardian.minor.slot")
WARDS = Slots(WardLink.owner_ix, "guardian.ward.slot")


class AlreadyLinked(Conflict):
    code, title = "already_linked", "Already this minor's guardian"


class NotAMinorsGuardian(ValidationFailed):
    code, title = "invalid_guardian", "Not an account that may be a guardian of this account"


@dataclass(frozen=True)
class MinorStatus:
    minor: bool
    self_consent_allowed: bool
    self_consent_basis: str | None
    set_at: datetime


@dataclass(frozen=True)
class Link:
    """One guardianship, as either side sees it: `other` is the other person."""

    other: str
    linked_at: datetime
    consent_given_at: datetime | None


@dataclass
class _GuardianRow:
    row: GuardianLink
    guardian: str
    linked_at: str
    consent: dict[str, Any] | None


def _minor_ix(vault: Vault, account_id: str) -> bytes:
    return vault.index(account_id, purpose=MINOR_PURPOSE)


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


async def _active(session: AsyncSession, account_id: str) -> Account:
    account = await session.get(Account, account_id) if is_id(account_id) else None
    if account is None or account.status != AccountStatus.active or account.data_key_id is None:
        raise NotFound("No such account.")
    return account


async def _profile(
    session: AsyncSession, vault: Vault, account: Account
) -> tuple[MinorProfile | None, dict[str, Any] | None]:
    row = (
        await session.execute(
            select(MinorProfile).where(MinorProfile.account_ix == _minor_ix(vault, account.id))
        )
    ).scalar_one_or_none()
    if row is None or account.data_key_id is None:
        return None, None
    data = await vault.open_json(
        session, account.data_key_id, MinorProfile.details, row.id, row.details
    )
    return row, data


def _status(data: dict[str, Any]) -> MinorStatus:
    consent = data.get("self_consent") or {}
    at = _time(data.get("set_at"))
    assert at is not None
    return MinorStatus(
        minor=bool(data.get("minor")),
        self_consent_allowed=bool(consent.get("allowed")),
        self_consent_basis=consent.get("basis"),
        set_at=at,
    )


async def minor_status(session: AsyncSession, vault: Vault, account: Account) -> MinorStatus | None:
    _, data = await _profile(session, vault, account)
    return None if data is None else _status(data)


async def _guardian_rows(session: AsyncSession, vault: Vault, minor: Account) -> list[_GuardianRow]:
    key_id = minor.data_key_id
    if key_id is None:
        return []
    out = []
    for row in await GUARDIANS.rows(session, vault, minor.id):
        data = await vault.open_json(session, key_id, GuardianLink.details, row.id, row.details)
        out.append(_GuardianRow(row, data["guardian"], data["linked_at"], data.get("consent")))
    return out


async def _ward_rows(
    session: AsyncSession, vault: Vault, guardian: Account
) -> list[tuple[WardLink, str, str]]:
    key_id = guardian.data_key_id
    if key_id is None:
        return []
    out = []
    for row in await WARDS.rows(session, vault, guardian.id):
        data = await vault.open_json(session, key_id, WardLink.details, row.id, row.details)
        out.append((row, str(data["minor"]), str(data["linked_at"])))
    return out


async def _seal_guardian_row(
    session: AsyncSession, vault: Vault, minor: Account, g: _GuardianRow
) -> None:
    assert minor.data_key_id is not None
    g.row.details = await vault.seal_json(
        session,
        minor.data_key_id,
        GuardianLink.details,
        g.row.id,
        {"guardian": g.guardian, "linked_at": g.linked_at, "consent": g.consent},
    )


# -- the rule ---------------------------------------------------------------------


async def may_consent(session: AsyncSession, vault: Vault, account: Account) -> bool:
    """May this account's care go ahead: not a minor, a minor whom the practice
    records as consenting for themselves, or a minor with a guardian's current consent."""
    _, data = await _profile(session, vault, account)
    if data is None:
        return True
    status = _status(data)
    if not status.minor or status.self_consent_allowed:
        return True
    return any(g.consent is not None for g in await _guardian_rows(session, vault, account))


async def is_guardian_of(
    session: AsyncSession, vault: Vault, guardian: Account, minor_id: str
) -> bool:
    return any(minor == minor_id for _, minor, _ in await _ward_rows(session, vault, guardian))


# -- admins -----------------------------------------------------------------------


async def set_minor(
    session: AsyncSession,
    ctx: Context,
    admin: Principal,
    minor_id: str,
    *,
    minor: bool,
    self_consent_allowed: bool,
    basis: str | None,
) -> MinorStatus:
    account = await _active(session, minor_id)
    if account.role != Role.client:
        raise ValidationFailed("Only a client account can be marked as a minor.")
    if minor and self_consent_allowed and not basis:
        raise ValidationFailed("self_consent.basis is required when self-consent is allowed.")
    assert account.data_key_id is not None
    now = ctx.clock.now()
    data = {
        "minor": minor,
        "self_consent": {"allowed": self_consent_allowed, "basis": basis} if minor else None,
        "set_at": now.isoformat(),
    }
    row, _ = await _profile(session, ctx.vault, account)
    if row is None:
        row = MinorProfile(id=new_id(), account_ix=_minor_ix(ctx.vault, account.id), details=b"")
        session.add(row)
    row.details = await ctx.vault.seal_json(
        session, account.data_key_id, MinorProfile.details, row.id, data
    )
    await session.flush()
    audit.record(
        session,
        "account.minor_set",
        actor_id=admin.id,
        actor_role=admin.role,
        target=account.id,
        details={"minor": minor, "self_consent": self_consent_allowed},
    )
    if minor and not await may_consent(session, ctx.vault, account):
        emit(session, AccountClosed(account.id, Close.FORBIDDEN, "guardian_consent_required"))
    return _status(data)


async def link(
    session: AsyncSession, ctx: Context, admin: Principal, minor_id: str, guardian_id: str
) -> Link:
    minor = await _active(session, minor_id)
    if minor.role != Role.client:
        raise NotFound("No such account.")
    try:
        guardian = await _active(session, guardian_id)
    except NotFound:
        raise NotAMinorsGuardian("guardian_account_id names no active account.") from None
    if guardian.id == minor.id or guardian.role == Role.admin:
        raise NotAMinorsGuardian("A guardian is another client or counselor account.")
    if any(g.guardian == guardian.id for g in await _guardian_rows(session, ctx.vault, minor)):
        raise AlreadyLinked("This account is already the minor's guardian.")
    assert minor.data_key_id is not None
    assert guardian.data_key_id is not None
    now = ctx.clock.now().isoformat()
    g_id, w_id = new_id(), new_id()
    g_row = GuardianLink(
        id=g_id,
        details=await ctx.vault.seal_json(
            session,
            minor.data_key_id,
            GuardianLink.details,
            g_id,
            {"guardian": guardian.id, "linked_at": now, "consent": None},
        ),
    )
    w_row = WardLink(
        id=w_id,
        details=await ctx.vault.seal_json(
            session,
            guardian.data_key_id,
            WardLink.details,
            w_id,
            {"minor": minor.id, "linked_at": now},
        ),
    )
    await GUARDIANS.add(session, ctx.vault, minor.id, g_row)
    await WARDS.add(session, ctx.vault, guardian.id, w_row)
    for target in (minor.id, guardian.id):
        audit.record(
            session,
            "guardian.link",
            actor_id=admin.id,
            actor_role=admin.role,
            target=target,
        )
    return Link(guardian.id, datetime.fromisoformat(now), None)


async def unlink(
    session: AsyncSession, ctx: Context, admin: Principal, minor_id: str, guardian_id: str
) -> None:
    minor = await _active(session, minor_id)
    found = next(
        (g for g in await _guardian_rows(session, ctx.vault, minor) if g.guardian == guardian_id),
        None,
    )
    if found is None:
        raise NotFound("No such guardian.")
    await _remove_pair(session, ctx, minor.id, found, guardian_id)
    for target in (minor.id, guardian_id):
        audit.record(
            session, "guardian.unlink", actor_id=admin.id, actor_role=admin.role, target=target
        )
    if not await may_consent(session, ctx.vault, minor):
        emit(session, AccountClosed(minor.id, Close.FORBIDDEN, "guardian_consent_required"))


async def _remove_pair(
    session: AsyncSession, ctx: Context, minor_id: str, g: _GuardianRow, guardian_id: str
) -> None:
    await GUARDIANS.remove(session, ctx.vault, minor_id, g.row)
    guardian = await session.get(Account, guardian_id)
    if guardian is not None:
        for row, minor, _ in await _ward_rows(session, ctx.vault, guardian):
            if minor == minor_id:
                await WARDS.remove(session, ctx.vault, guardian_id, row)


async def guardians_of(
    session: AsyncSession, ctx: Context, admin: Principal, minor_id: str
) -> tuple[MinorStatus | None, list[Link]]:
    minor = await _active(session, minor_id)
    links = [_link(g) for g in await _guardian_rows(session, ctx.vault, minor)]
    audit.record(
        session, "guardian.read", actor_id=admin.id, actor_role=admin.role, target=minor.id
    )
    return await minor_status(session, ctx.vault, minor), links


def _link(g: _GuardianRow) -> Link:
    at = _time(g.linked_at)
    assert at is not None
    return Link(g.guardian, at, _time((g.consent or {}).get("given_at")))


# -- guardians --------------------------------------------------------------------


async def wards(session: AsyncSession, ctx: Context, principal: Principal) -> list[Link]:
    """The caller's wards, each with the caller's consent for them."""
    out = []
    for _, minor_id, linked_at in await _ward_rows(session, ctx.vault, principal.account):
        minor = await session.get(Account, minor_id)
        given = None
        if minor is not None and minor.status == AccountStatus.active:
            for g in await _guardian_rows(session, ctx.vault, minor):
                if g.guardian == principal.id:
                    given = _time((g.consent or {}).get("given_at"))
        at = _time(linked_at)
        assert at is not None
        out.append(Link(minor_id, at, given))
    return out


async def set_consent(
    session: AsyncSession, ctx: Context, principal: Principal, minor_id: str, *, give: bool
) -> Link:
    """Give (or withdraw) the caller's consent, as a guardian, for the minor's care.

    Not the caller's ward: 404, as for an id that does not exist. Withdrawing the
    last current consent of a minor who does not consent for themselves closes
    the minor's sockets (4003 `guardian_consent_required`).
    """
    if not is_id(minor_id) or not await is_guardian_of(
        session, ctx.vault, principal.account, minor_id
    ):
        raise NotFound("No such ward.")
    minor = await _active(session, minor_id)
    found = next(
        g for g in await _guardian_rows(session, ctx.vault, minor) if g.guardian == principal.id
    )
    now = ctx.clock.now()
    if give and found.consent is None:
        found.consent = {"given_at": now.isoformat()}
    elif not give:
        found.consent = None
    await _seal_guardian_row(session, ctx.vault, minor, found)
    await session.flush()
    action = "guardian.consent_give" if give else "guardian.consent_withdraw"
    for target in (minor.id, principal.id):
        audit.record(
            session, action, actor_id=principal.id, actor_role=principal.role, target=target
        )
    if not give and not await may_consent(session, ctx.vault, minor):
        emit(session, AccountClosed(minor.id, Close.FORBIDDEN, "guardian_consent_required"))
    link = _link(found)  # the guardian's view: the other person is the minor
    return Link(minor.id, link.linked_at, link.consent_given_at)


# -- the person's own data -----------------------------------------------------------


@dataclass(frozen=True)
class Guardianship:
    minor: MinorStatus | None
    guardians: list[Link]
    wards: list[Link]


async def export(session: AsyncSession, ctx: Context, principal: Principal) -> Guardianship:
    account = principal.account
    return Guardianship(
        minor=await minor_status(session, ctx.vault, account),
        guardians=[_link(g) for g in await _guardian_rows(session, ctx.vault, account)],
        wards=await wards(session, ctx, principal),
    )


async def forget(session: AsyncSession, ctx: Context, account: Account) -> None:
    """Erasure: the account's minor profile, and both rows of each of its links
    (found through the account's own rows, so call it while its key still opens them)."""
    profile, _ = await _profile(session, ctx.vault, account)
    if profile is not None:
        await session.delete(profile)
    for g in await _guardian_rows(session, ctx.vault, account):
        await _remove_pair(session, ctx, account.id, g, g.guardian)
    for _row, minor_id, _ in await _ward_rows(session, ctx.vault, account):
        minor = await session.get(Account, minor_id)
        if minor is None or minor.data_key_id is None:
            continue
        for g in await _guardian_rows(session, ctx.vault, minor):
            if g.guardian == account.id:
                await GUARDIANS.remove(session, ctx.vault, minor_id, g.row)
    await WARDS.remove_all(session, ctx.vault, account.id)
    await GUARDIANS.remove_all(session, ctx.vault, account.id)
    await session.flush()
