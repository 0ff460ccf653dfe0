"""Consent: published documents and each person's acceptances.

Documents are public texts, stored plain and never changed: publishing a new
text of a kind and locale adds the next version. An acceptance must not show
in a dump who accepted what, so its row holds only blind indexes (of the
owner, and of owner and document together, which also makes acceptance
unique per person and document) and the details (document id, its sha256,
when) sealed under the person's own data key.

Which document is current:
- For reading (the list clients show), per kind, the newest version in the
  first locale of the lookup chain that has one: the tag asked, then shorter
  prefixes of it, then English (`de-CH` → `de-CH`, `de`, `en`).
- For room tokens (`consent_gate`), a kind is satisfied by accepting the
  newest version in any locale: a person who read the German text has
  consented even if the English one is what the server would show first.
  An acceptance of an older version stops counting once a newer version of
  that kind and locale is published. A kind the room needs of which nothing
  is published yet is not satisfied by anything: no client gets a token.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.consent.errors import ConsentRequired
from app.consent.schemas import canonical_locale
from app.core import audit
from app.core.clock import Clock
from app.core.codec import canonical_uuid, new_id
from app.core.errors import Conflict, NotFound
from app.core.events import AccountClosed, emit
from app.core.slots import Slots
from app.core.vault import DataKeyDestroyed, Vault
from app.models import Account, ConsentAcceptance, ConsentDocument, ConsentKind

FALLBACK_LOCALE = "en"
#: What every client must have accepted; a group room adds GROUP_KIND.
REQUIRED_KINDS = (ConsentKind.informed_consent, ConsentKind.telehealth)
GROUP_KIND = ConsentKind.group_agreement
#: Admins publishing the same kind and locale at once race for the next
#: version on the unique (kind, locale, version): a loser takes the one after.
_PUBLISH_ATTEMPTS = 5
_NOT_ACCEPTED = "You have not accepted this document."


@dataclass(frozen=True)
class Acceptance:
    document_id: str
    sha256: str
    accepted_at: datetime


def locale_chain(locale: str) -> list[str]:
    """Locales to try, best first (RFC 4647 §3.4 lookup), always ending in English.

    An unusable tag falls back to English alone rather than failing.
    """
    try:
        tag = canonical_locale(locale)
    except ValueError:
        return [FALLBACK_LOCALE]
    parts = tag.split("-")
    chain = ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
    if FALLBACK_LOCALE not in chain:
        chain.append(FALLBACK_LOCALE)
    return chain


SLOTS = Slots(ConsentAcceptance.owner_ix, "consent.owner.slot")


def _acceptance_index(vault: Vault, account_id: str, document_id: str) -> bytes:
    return vault.index(f"{account_id}:{document_id}", purpose="consent.acceptance")


def _data_key(account: Account) -> str:
    if account.data_key_id is None:
        raise DataKeyDestroyed(account.id)
    return account.data_key_id


async def _insert_unless_taken(
    session: AsyncSession,
    entity: type[ConsentDocument | ConsentAcceptance],
    unique: list[str],
    **values: Any,
) -> bool:
    """INSERT … ON CONFLICT (unique) DO NOTHING: False when a concurrent writer won.

    Not a plain INSERT: its unique violation would abort the PostgreSQL
    transaction. Nor one inside a savepoint: the pysqlite driver (legacy
    transaction mode) commits when it releases an outermost savepoint. On
    SQLite this INSERT is the statement that takes the write lock, so a loser
    waits for the winner's commit and then sees its row; on PostgreSQL (read
    committed) a loser waits on the unique index, then sees the row.
    """
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(entity)
        .values(**values)
        .on_conflict_do_nothing(index_elements=unique)
        .returning(entity.id)
    )
    return (await session.execute(statement)).first() is not None


# -- documents -----------------------------------------------------------------
async def publish(
    session: AsyncSession,
    clock: Clock,
    *,
    kind: ConsentKind,
    locale: str,
    title: str,
    body: str,
    actor_id: str,
    actor_role: str,
) -> ConsentDocument:
    """Publish the next version of (kind, locale)."""
    locale = canonical_locale(locale)
    digest = hashlib.sha256(body.encode("utf-8")).digest()
    for _ in range(_PUBLISH_ATTEMPTS):
        latest = (
            await session.execute(
                select(func.max(ConsentDocument.version)).where(
                    ConsentDocument.kind == kind, ConsentDocument.locale == locale
                )
            )
        ).scalar_one()
        document_id = new_id()
        version = (latest or 0) + 1
        inserted = await _insert_unless_taken(
            session,
            ConsentDocument,
            ["kind", "locale", "version"],
            id=document_id,
            kind=kind,
            locale=locale,
            version=version,
            title=title,
            body=body,
            sha256=digest,
            published_at=clock.now(),
        )
        if not inserted:
            continue
        document = await session.get(ConsentDocument, document_id)
        assert document is not None
        audit.record(
            session,
            "consent_document.publish",
            actor_id=actor_id,
            actor_role=actor_role,
            target=document.id,
            details={"kind": kind.value, "locale": locale, "version": version},
        )
        return document
    raise Conflict("Another version of this document was published at the same time; retry.")


async def _newest(
    session: AsyncSession, kinds: Sequence[ConsentKind], locales: Sequence[str] | None
) -> list[ConsentDocument]:
    """The newest version of each (kind, locale), for the kinds (and locales) given."""
    where = [ConsentDocument.kind.in_(kinds)]
    if locales is not None:
        where.append(ConsentDocument.locale.in_(locales))
    newest = (
        select(
            ConsentDocument.kind,
            ConsentDocument.locale,
            func.max(ConsentDocument.version).label("version"),
        )
        .where(*where)
        .group_by(ConsentDocument.kind, ConsentDocument.locale)
        .subquery()
    )
    rows = await session.execute(
        select(ConsentDocument)
        .join(
            newest,
            and_(
                ConsentDocument.kind == newest.c.kind,
                ConsentDocument.locale == newest.c.locale,
                ConsentDocument.version == newest.c.version,
            ),
        )
        .order_by(ConsentDocument.kind, ConsentDocument.locale)
    )
    return list(rows.scalars())


def _pick(documents: Sequence[ConsentDocument], chain: Sequence[str]) -> ConsentDocument | None:
    """The document in the best locale of the chain, if any."""
    by_locale = {document.locale: document for document in documents}
    return next((by_locale[locale] for locale in chain if locale in by_locale), None)


async def current_documents(
    session: AsyncSession, *, locale: str = FALLBACK_LOCALE, kind: ConsentKind | None = None
) -> list[ConsentDocument]:
    """The current document of each kind (or of `kind`) in `locale`, else English.

    A kind with nothing in the locale chain is left out.
    """
    kinds = [kind] if kind is not None else list(ConsentKind)
    chain = locale_chain(locale)
    newest = await _newest(session, kinds, chain)
    out = []
    for each in kinds:
        picked = _pick([d for d in newest if d.kind == each], chain)
        if picked is not None:
            out.append(picked)
    return out


async def documents_by_id(session: AsyncSession, ids: Sequence[str]) -> dict[str, ConsentDocument]:
    """The documents of these ids that exist."""
    found = await session.execute(select(ConsentDocument).where(ConsentDocument.id.in_(ids)))
    return {document.id: document for document in found.scalars()}


# -- acceptances -----------------------------------------------------------------
async def _find(session: AsyncSession, acceptance_ix: bytes) -> ConsentAcceptance | None:
    return (
        await session.execute(
            select(ConsentAcceptance).where(ConsentAcceptance.acceptance_ix == acceptance_ix)
        )
    ).scalar_one_or_none()


async def _open(
    session: AsyncSession, vault: Vault, account: Account, row: ConsentAcceptance
) -> Acceptance:
    data = await vault.open_json(
        session, _data_key(account), ConsentAcceptance.details, row.id, row.details
    )
    return Acceptance(
        document_id=str(data["document_id"]),
        sha256=str(data["sha256"]),
        accepted_at=datetime.fromisoformat(str(data["accepted_at"])),
    )


async def accept(
    session: AsyncSession, vault: Vault, clock: Clock, account: Account, document_id: str
) -> Acceptance:
    """Record that `account` accepts the document; accepting again returns the first acceptance."""
    canonical = canonical_uuid(document_id)
    document = await session.get(ConsentDocument, canonical) if canonical else None
    if document is None:
        raise NotFound("No such consent document.")
    acceptance_ix = _acceptance_index(vault, account.id, document.id)
    existing = await _find(session, acceptance_ix)
    if existing is not None:
        return await _open(session, vault, account, existing)

    row_id = new_id()
    accepted = Acceptance(document.id, document.sha256.hex(), clock.now())
    details = {
        "document_id": accepted.document_id,
        "sha256": accepted.sha256,
        "accepted_at": accepted.accepted_at.isoformat(),
    }
    inserted = await _insert_unless_taken(
        session,
        ConsentAcceptance,
        ["acceptance_ix"],
        id=row_id,
        owner_ix=os.urandom(32),  # until it takes its slot, below
        acceptance_ix=acceptance_ix,
        details=await vault.seal_json(
            session, _data_key(account), ConsentAcceptance.details, row_id, details
        ),
    )
    if not inserted:
        # The same person accepted the same document in a concurrent request.
        existing = await _find(session, acceptance_ix)
        if existing is None:
            raise Conflict("The acceptance could not be recorded; retry.")
        return await _open(session, vault, account, existing)
    row = await _find(session, acceptance_ix)
    assert row is not None
    await SLOTS.place(session, vault, account.id, row)
    audit.record(
        session,
        "consent.accept",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
        details={
            "document_id": document.id,
            "kind": document.kind.value,
            "locale": document.locale,
            "version": document.version,
        },
    )
    return accepted


async def acceptances(session: AsyncSession, vault: Vault, account: Account) -> list[Acceptance]:
    """The account's acceptances, oldest first."""
    rows = await SLOTS.rows(session, vault, account.id) if account.data_key_id else []
    opened = [await _open(session, vault, account, row) for row in rows]
    audit.record(
        session,
        "consent.read",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
    )
    return sorted(opened, key=lambda a: (a.accepted_at, a.document_id))


async def withdraw(
    session: AsyncSession, vault: Vault, account: Account, document_id: str
) -> ConsentKind | None:
    """Withdraw an acceptance; the account's live sockets close (4003).

    Returns the kind of the document withdrawn (None for a document no longer
    on record), so that the caller can take the account out of the rooms that
    need it (`app.privacy.service.withdraw_consent`).
    """
    canonical = canonical_uuid(document_id)
    if canonical is None:
        raise NotFound(_NOT_ACCEPTED)
    row = await _find(session, _acceptance_index(vault, account.id, canonical))
    if row is None:
        raise NotFound(_NOT_ACCEPTED)
    await SLOTS.remove(session, vault, account.id, row)
    # Simplest safe rule: any withdrawal closes the account's sockets, with the
    # code a join without this consent gets; a room that still has every
    # consent it needs issues a new token at once.
    emit(session, AccountClosed(account.id, ConsentRequired.close_code, "consent_withdrawn"))
    audit.record(
        session,
        "consent.withdraw",
        actor_id=account.id,
        actor_role=account.role.value,
        target=account.id,
        details={"document_id": canonical},
    )
    document = await session.get(ConsentDocument, canonical)
    return None if document is None else document.kind


async def forget(session: AsyncSession, vault: Vault, account_id: str) -> None:
    """Delete every acceptance of the account (erasure)."""
    await SLOTS.remove_all(session, vault, account_id)


def required_kinds(*, group: bool) -> list[ConsentKind]:
    """The kinds of consent a client needs for a room: every room needs
    `informed_consent` and `telehealth`, a group room `group_agreement` too."""
    return [*REQUIRED_KINDS, GROUP_KIND] if group else list(REQUIRED_KINDS)


@dataclass(frozen=True)
class ConsentGate:
    """What stands between a client and a room token, as far as consent goes."""

    #: Kinds the room needs of which the practice has published no document yet.
    unpublished: list[str]
    #: Ids of the current documents the client still has to accept.
    missing: list[str]


async def consent_gate(
    session: AsyncSession, vault: Vault, account: Account, *, group: bool, locale: str = "en"
) -> ConsentGate:
    """The consent a room token for `account` waits for.

    Required: `informed_consent` and `telehealth`, plus `group_agreement` when
    `group`. A kind with no published document cannot be consented to, so it
    is not "nothing to accept": it is listed in `unpublished`, and no client
    gets a token until the practice publishes it. A kind is satisfied by an
    acceptance of the newest version of that kind in any locale; an
    acceptance of an older version no longer counts once a newer one is
    published. For an unsatisfied kind, the id in `missing` is the one to
    show: the current document in `locale`, else English (else the first
    locale that has one). Whether the caller needs consent at all (hosts do
    not) is the caller's decision.
    """
    kinds = required_kinds(group=group)
    newest = await _newest(session, kinds, None)
    published = {d.kind for d in newest}
    unpublished = [kind.value for kind in kinds if kind not in published]
    if not newest:
        return ConsentGate(unpublished, [])
    by_index = {_acceptance_index(vault, account.id, d.id): d for d in newest}
    accepted = (
        await session.execute(
            select(ConsentAcceptance.acceptance_ix).where(
                ConsentAcceptance.acceptance_ix.in_(list(by_index))
            )
        )
    ).scalars()
    satisfied = {by_index[ix].kind for ix in accepted}
    chain = locale_chain(locale)
    missing = []
    for kind in kinds:
        candidates = [d for d in newest if d.kind == kind]
        if not candidates or kind in satisfied:
            continue
        picked = _pick(candidates, chain) or candidates[0]
        missing.append(picked.id)
    return ConsentGate(unpublished, missing)
