"""The person's own data: who touched it (the access log), all of it (the export), erasure,
and the withdrawal of a consent.

Access log: the audit entries whose target is the caller (the audit log
finds them through the blind index of the target), the caller's own actions
included: their reads are accesses to their record too. Reading the log is
itself audited (`access_log.read`); that entry is appended when the request
commits, after the list was read, so a response never contains its own read
and the next one shows it.

Export: every section decrypted, each shaped as its own endpoint answers it.
The export reads through the domains' services, which audit their reads as
usual (`consent.read`, `notice.read`, `disclosure.read`), then records
`account.export`.

Erasure (decision note 0006): the account's data key row is deleted, so
everything sealed under it (email, name, device labels, acceptances, the
list of rooms, notices, the client's accounting of disclosures, safety check-ins, a
counselor's licensure, rights requests, jurisdiction) can never be
opened again; the account row stays as a tombstone (id, role, creation time,
status `erased`) because audit entries and disclosures recorded by a
counselor name it by id. Every log-in family and every device row is
deleted, the person leaves every room, the rows sealed under their key are
deleted, every socket closes (4001), the relay's replay stores forget the
account and its devices (`account_erased`), and every instance forgets the
unwrapped key it may hold in memory (decision note 0007).

Withdrawal of a consent: the acceptance goes (`app.consent`), every socket
of the account closes (4003), and the account goes back to the waiting room
of each room that needs that kind of consent (`app.rooms`): its hosts'
devices then take its devices out of the room's encrypted group. It lives
here because it changes both domains, and rooms already ask consent.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import jurisdiction, lifecycle
from app.accounts import service as accounts
from app.accounts.errors import LastAdmin
from app.auth import factors
from app.auth.service import Principal, remove_families
from app.consent import service as consent
from app.core import audit
from app.core.codec import b64url_encode
from app.core.context import Context
from app.core.errors import Unauthorized
from app.core.events import AccountClosed, AccountErased, DataKeyDestroyed, emit
from app.devices import key_packages
from app.devices import service as devices
from app.disclosures import service as disclosures
from app.disclosures.schemas import DisclosureOut
from app.guardians import service as guardians
from app.guardians.schemas import GuardianshipOut
from app.guardians.views import link_out, minor_out
from app.keys import service as keys
from app.mfa import service as mfa
from app.mfa.schemas import FactorList, factor_out
from app.models import Account, Role
from app.notices import service as notices
from app.notices.schemas import notice_out
from app.privacy.schemas import AccessEntry, Actor, ConsentRecord, DeviceRecord, Export
from app.rights import service as rights
from app.rights.schemas import rights_request_out
from app.rooms import care, invitations
from app.rooms import service as rooms
from app.safety import rules as safety_rules
from app.safety import service as safety
from app.safety.schemas import CheckinOut, checkin_out


# -- consent -------------------------------------------------------------------------
async def withdraw_consent(
    session: AsyncSession, ctx: Context, principal: Principal, document_id: str
) -> None:
    """Withdraw the caller's acceptance of a document; out of the rooms that need it."""
    kind = await consent.withdraw(session, ctx.vault, principal.account, document_id)
    await rooms.back_to_waiting(session, ctx, principal.account, kind)


# -- access log ----------------------------------------------------------------------
async def _hidden_until(
    session: AsyncSession, ctx: Context, account: Account, entry: audit.Entry
) -> datetime | None:
    """When a withheld disclosure's trace may reach the person (164.528(a)(2))."""
    if entry.action != "disclosure.record" or not entry.details.get("withheld"):
        return None
    visible_from = entry.details.get("visible_from")
    if isinstance(visible_from, str):
        return datetime.fromisoformat(visible_from)
    return await disclosures.withheld_until(
        session, ctx, account, str(entry.details.get("disclosure"))
    )


async def _access_entries(
    session: AsyncSession, ctx: Context, account: Account
) -> list[tuple[int, AccessEntry]]:
    """The entries shown to the account, each with its audit seq (its place in the chain)."""
    now = ctx.clock.now()
    shown = []
    for entry in await ctx.audit.entries_about(session, account.id):
        hidden_until = await _hidden_until(session, ctx, account, entry)
        if hidden_until is not None and hidden_until > now:
            continue
        shown.append(
            (
                entry.seq,
                AccessEntry(
                    at=entry.at,
                    actor=Actor(account_id=entry.actor_id, role=entry.actor_role),
                    action=entry.action,
                ),
            )
        )
    return shown


async def access_log(
    session: AsyncSession, ctx: Context, principal: Principal
) -> list[tuple[int, AccessEntry]]:
    """Who read or changed the caller's records, oldest first (chain order), with each seq."""
    found = await _access_entries(session, ctx, principal.account)
    audit.record(
        session,
        "access_log.read",
        actor_id=principal.id,
        actor_role=principal.role,
        target=principal.id,
    )
    return found


# -- export --------------------------------------------------------------------------
async def _devices(session: AsyncSession, ctx: Context, account: Account) -> list[DeviceRecord]:
    return [
        DeviceRecord(
            device_id=device.id,
            label=device.label,
            public_key=b64url_encode(device.public_key),
            signing_key=b64url_encode(device.signing_key) if device.signing_key else None,
            signature=b64url_encode(device.signature) if device.signature else None,
            created_at=device.created_at,
            revoked_at=device.revoked_at,
        )
        for device in await devices.all_of(session, ctx.vault, account, active_only=False)
    ]


async def _consents(session: AsyncSession, ctx: Context, account: Account) -> list[ConsentRecord]:
    accepted = await consent.acceptances(session, ctx.vault, account)
    documents = await consent.documents_by_id(session, [a.document_id for a in accepted])
    out = []
    for acceptance in accepted:
        document = documents.get(acceptance.document_id)
        out.append(
            ConsentRecord(
                document_id=acceptance.document_id,
                sha256=acceptance.sha256,
                accepted_at=acceptance.accepted_at,
                kind=document.kind if document else None,
                locale=document.locale if document else None,
                version=document.version if document else None,
                title=document.title if document else None,
            )
        )
    return out


async def _checkins(session: AsyncSession, ctx: Context, account: Account) -> list[CheckinOut]:
    now = ctx.clock.now()
    found = await safety.all_of(session, ctx.vault, account)
    for each in found:
        safety.record_read(session, account, each, "export")
    return [
        checkin_out(each, valid=safety_rules.is_valid(each.recorded_at, now), licensed=None)
        for each in found
    ]


async def _guardianship(
    session: AsyncSession, ctx: Context, principal: Principal
) -> GuardianshipOut:
    found = await guardians.export(session, ctx, principal)
    return GuardianshipOut(
        minor=minor_out(found.minor),
        guardians=[link_out(each) for each in found.guardians],
        wards=[link_out(each) for each in found.wards],
    )


async def export(session: AsyncSession, ctx: Context, principal: Principal) -> Export:
    """Everything held about the caller, decrypted."""
    account = principal.account
    exported_at = ctx.clock.now()
    states = await rooms.list_rooms(session, ctx, account)
    for state in states:  # the rooms show the other participants
        rooms.record_on_room(session, "room.read", principal, state)
    accounting = (
        await disclosures.accounting(session, ctx, principal) if account.role == Role.client else []
    )
    second_factors, remaining = await mfa.list_factors(session, ctx, account)
    requests = await rights.mine(session, ctx, principal) if account.role == Role.client else []
    requests.sort(key=lambda view: (view.received_at, view.id), reverse=True)
    document = Export(
        exported_at=exported_at,
        account=await accounts.view(session, ctx.vault, account),
        devices=await _devices(session, ctx, account),
        rooms=[await rooms.view(session, ctx, state) for state in states],
        consents=await _consents(session, ctx, account),
        disclosures=[DisclosureOut.model_validate(view) for view in accounting],
        notices=[
            notice_out(n) for n in await notices.notices_for(session, ctx.vault, ctx.clock, account)
        ],
        access_log=[entry for _, entry in await _access_entries(session, ctx, account)],
        key_log=await keys.view(session, ctx.vault, ctx.tokens, account, 0),
        factors=FactorList(
            factors=[factor_out(f) for f in second_factors], recovery_codes_remaining=remaining
        ),
        logins=await lifecycle.my_logins(session, ctx, principal),
        checkins=await _checkins(session, ctx, account),
        licensure=await safety.licensure_of(session, ctx.vault, account),
        guardianship=await _guardianship(session, ctx, principal),
        jurisdiction=await jurisdiction.of_account(session, ctx.vault, account),
        rights_requests=[rights_request_out(view, exported_at) for view in requests],
    )
    audit.record(
        session,
        "account.export",
        actor_id=principal.id,
        actor_role=principal.role,
        target=principal.id,
    )
    return document


# -- erasure -------------------------------------------------------------------------
async def erase(session: AsyncSession, ctx: Context, principal: Principal) -> None:
    """Erase the caller's account: crypto-shred its records and end every way in."""
    account = principal.account
    await accounts.lock_for_erasure(session, account)
    # The person's rooms, listed while their key still opens the list.
    states = await rooms.list_rooms(session, ctx, account)
    key_id = account.data_key_id
    await accounts.tombstone(session, account)
    if account.role == Role.admin and not await accounts.active_admins(session):
        raise LastAdmin("The last active admin cannot erase their account.")

    # Sockets first, with 4001 (the code of every token the account still holds,
    # `Unauthorized`): the device revocations below would close them with 4003.
    emit(session, AccountClosed(account.id, Unauthorized.close_code, "erased"))
    # Everything that names the person goes now, not at the next purge: their
    # log-ins, devices (public keys included), memberships, and the rows
    # sealed under their key (which the key's destruction shreds anyway).
    sessions = await remove_families(session, ctx, account)
    await factors.remove_all(session, ctx, account)
    await lifecycle.forget_resets(session, ctx, account.id)
    removed = devices.Removed(active=[], every=[])
    if key_id is not None:
        # Other participants' apps stop encrypting to the devices, then see
        # the person leave each room.
        removed = await devices.revoke_all_for(session, ctx.vault, account)
        for device_id in removed.every:
            await key_packages.remove_all(session, ctx.vault, device_id)
        await keys.forget(session, ctx.vault, account.id)
        for state in states:
            await rooms.forget_member(session, ctx, state, account.id)
        await rooms.forget_rooms_of(session, ctx.vault, account.id)
        await consent.forget(session, ctx.vault, account.id)
        await notices.forget(session, ctx.vault, account.id)
        await disclosures.forget(session, ctx.vault, account.id)
        await rights.forget(session, ctx.vault, account.id)
        await invitations.forget(session, ctx.vault, account.id)
        await safety.forget(session, ctx.vault, account.id)
        await guardians.forget(session, ctx, account)
    await care.forget(session, ctx.vault, account.id)
    # The replay stores forget every device the person ever had (decision note 0005).
    emit(
        session,
        AccountErased(account.id, tuple(removed.every), tuple(s.room.id for s in states)),
    )
    destroyed = await accounts.shred(session, ctx.vault, account)
    if destroyed is not None:
        # Every instance drops its cached copy once this commits.
        emit(session, DataKeyDestroyed(destroyed))
    audit.record(
        session,
        "account.erase",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
        details={"devices": removed.active, "sessions": sessions},
    )
