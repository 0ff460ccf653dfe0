"""A client's rights requests (45 CFR 164.522 to 164.528), with their clocks.

A request is the client's record: sealed under the client's own data key and
found through `client_ix`, a slot index of the client (`app.core.slots`), so
a dump shows neither whose it is, its kind, its state nor any time. Admins
list every request: `owner`, the client's id sealed under the system key,
says whose key opens the rest. Erasure deletes the rows and shreds the key.

The clock and the order of states are `app.rights.rules`. An admin moves a
request one step forward at a time; a denial carries a written reason, and
the client may answer the denial of an amendment with one statement of
disagreement, which stays with the request (164.526(d)). Each change is a
compare-and-set on the sealed details: of two concurrent changes one wins,
the other is refused as a conflict.

Every read and change is audited with the client as its target, so the
client's access log shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import Principal
from app.core import audit
from app.core.codec import is_id, new_id
from app.core.context import Context
from app.core.encryption import DecryptionError
from app.core.errors import Forbidden, NotFound
from app.core.slots import Slots
from app.core.vault import SYSTEM_KEY_ID, DataKeyDestroyed, Vault
from app.models import Account, RightsRequest, Role
from app.models.account import find_active
from app.rights import rules
from app.rights.errors import (
    DisagreementNotAllowed,
    ExtensionNotAllowed,
    InvalidTransition,
    ReasonRequired,
)
from app.rights.rules import RightsKind, RightsState

SLOTS = Slots(RightsRequest.client_ix, "rights_request.client.slot")
_NOT_FOUND = "No such rights request."


@dataclass(frozen=True)
class Step:
    state: RightsState
    at: datetime
    by: str
    reason: str | None = None


@dataclass(frozen=True)
class Written:
    """A written reason or statement, when, and by whom."""

    text: str
    at: datetime
    by: str


@dataclass
class RequestView:
    id: str
    account_id: str
    kind: RightsKind
    text: str
    state: RightsState
    received_at: datetime
    history: list[Step] = field(default_factory=list)
    extension: Written | None = None
    denial: Written | None = None
    disagreement: Written | None = None

    @property
    def due_at(self) -> datetime | None:
        return rules.due_at(self.kind, self.received_at, extended=self.extension is not None)

    def overdue(self, now: datetime) -> bool:
        return rules.is_overdue(
            self.kind, self.state, self.received_at, extended=self.extension is not None, now=now
        )


def _written_json(value: Written | None) -> dict[str, str] | None:
    if value is None:
        return None
    return {"text": value.text, "at": value.at.isoformat(), "by": value.by}


def _written(value: dict[str, str] | None) -> Written | None:
    if value is None:
        return None
    return Written(value["text"], datetime.fromisoformat(value["at"]), value["by"])


def _details(view: RequestView) -> dict[str, Any]:
    return {
        "client": view.account_id,
        "kind": view.kind.value,
        "text": view.text,
        "state": view.state.value,
        "received_at": view.received_at.isoformat(),
        "history": [
            {"state": s.state.value, "at": s.at.isoformat(), "by": s.by, "reason": s.reason}
            for s in view.history
        ],
        "extension": _written_json(view.extension),
        "denial": _written_json(view.denial),
        "disagreement": _written_json(view.disagreement),
    }


def _view(row_id: str, data: dict[str, Any]) -> RequestView:
    return RequestView(
        id=row_id,
        account_id=data["client"],
        kind=RightsKind(data["kind"]),
        text=data["text"],
        state=RightsState(data["state"]),
        received_at=datetime.fromisoformat(data["received_at"]),
        history=[
            Step(RightsState(s["state"]), datetime.fromisoformat(s["at"]), s["by"], s["reason"])
            for s in data["history"]
        ],
        extension=_written(data["extension"]),
        denial=_written(data["denial"]),
        disagreement=_written(data["disagreement"]),
    )


async def _seal(session: AsyncSession, vault: Vault, key_id: str, view: RequestView) -> bytes:
    return await vault.seal_json(session, key_id, RightsRequest.details, view.id, _details(view))


async def _owner(session: AsyncSession, vault: Vault, row: RightsRequest) -> Account | None:
    """The client whose request it is, while they are active (None once erased)."""
    data = await vault.open_json(session, SYSTEM_KEY_ID, RightsRequest.owner, row.id, row.owner)
    account = await find_active(session, str(data["client"]))
    return account if account is not None and account.data_key_id is not None else None


async def _open(
    session: AsyncSession, vault: Vault, account: Account, row: RightsRequest
) -> RequestView | None:
    if account.data_key_id is None:
        return None
    try:
        data = await vault.open_json(
            session, account.data_key_id, RightsRequest.details, row.id, row.details
        )
    except (DataKeyDestroyed, DecryptionError):
        return None
    return _view(row.id, data)


@dataclass
class _Loaded:
    row: RightsRequest
    account: Account
    view: RequestView


async def _load(session: AsyncSession, vault: Vault, request_id: str) -> _Loaded:
    row = await session.get(RightsRequest, request_id) if is_id(request_id) else None
    account = await _owner(session, vault, row) if row is not None else None
    view = await _open(session, vault, account, row) if row and account else None
    if row is None or account is None or view is None:
        raise NotFound(_NOT_FOUND)
    return _Loaded(row, account, view)


def _require_client(principal: Principal) -> None:
    if principal.account.role != Role.client:
        raise Forbidden("Rights requests are filed by clients about their own records.")


def _audit(
    session: AsyncSession,
    action: str,
    actor: Principal,
    view: RequestView,
    **details: str,
) -> None:
    audit.record(
        session,
        action,
        actor_id=actor.id,
        actor_role=actor.role,
        target=view.account_id,
        details={"request": view.id, "kind": view.kind.value, **details},
    )


# -- the client --------------------------------------------------------------------
async def file(
    session: AsyncSession, ctx: Context, principal: Principal, kind: RightsKind, text: str
) -> RequestView:
    """The caller (a client) files a request; its clock starts now."""
    _require_client(principal)
    account = principal.account
    key_id = account.data_key_id
    if key_id is None:
        raise NotFound("No such account.")
    now = ctx.clock.now()
    view = RequestView(
        id=new_id(),
        account_id=account.id,
        kind=kind,
        text=text,
        state=RightsState.received,
        received_at=now,
        history=[Step(RightsState.received, now, account.id)],
    )
    row = RightsRequest(
        id=view.id,
        owner=await ctx.vault.seal_json(
            session, SYSTEM_KEY_ID, RightsRequest.owner, view.id, {"client": account.id}
        ),
        details=await _seal(session, ctx.vault, key_id, view),
    )
    await SLOTS.add(session, ctx.vault, account.id, row)
    _audit(session, "rights_request.create", principal, view)
    return view


async def mine(session: AsyncSession, ctx: Context, principal: Principal) -> list[RequestView]:
    """The caller's own requests (every one), in slot order."""
    found: list[RequestView] = []
    for row in await SLOTS.rows(session, ctx.vault, principal.id):
        view = await _open(session, ctx.vault, principal.account, row)
        if view is not None:
            found.append(view)
    audit.record(
        session,
        "rights_request.read",
        actor_id=principal.id,
        actor_role=principal.role,
        target=principal.id,
    )
    return found


async def mine_one(
    session: AsyncSession, ctx: Context, principal: Principal, request_id: str
) -> RequestView:
    """One of the caller's own requests; another person's is not found."""
    loaded = await _load(session, ctx.vault, request_id)
    if loaded.account.id != principal.id:
        raise NotFound(_NOT_FOUND)
    _audit(session, "rights_request.read", principal, loaded.view)
    return loaded.view


async def _write(session: AsyncSession, ctx: Context, loaded: _Loaded) -> None:
    """Store the changed view in place of the details it was opened from, or refuse."""
    key_id = loaded.account.data_key_id
    assert key_id is not None
    new = await _seal(session, ctx.vault, key_id, loaded.view)
    won = (
        await session.execute(
            update(RightsRequest)
            .where(RightsRequest.id == loaded.row.id, RightsRequest.details == loaded.row.details)
            .values(details=new)
            .returning(RightsRequest.id)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one_or_none()
    if won is None:
        raise InvalidTransition("The request changed meanwhile; reload and retry.")


async def disagree(
    session: AsyncSession, ctx: Context, principal: Principal, request_id: str, statement: str
) -> RequestView:
    """The client's statement of disagreement with the denial of their amendment."""
    loaded = await _load(session, ctx.vault, request_id)
    view = loaded.view
    if loaded.account.id != principal.id:
        raise NotFound(_NOT_FOUND)
    if view.kind != RightsKind.amendment or view.denial is None:
        raise DisagreementNotAllowed("Only a denied amendment request takes a statement.")
    if view.disagreement is not None:
        raise DisagreementNotAllowed("A statement of disagreement has been filed already.")
    view.disagreement = Written(statement, ctx.clock.now(), principal.id)
    await _write(session, ctx, loaded)
    _audit(session, "rights_request.disagreement", principal, view)
    return view


# -- the practice ------------------------------------------------------------------
async def list_all(
    session: AsyncSession,
    ctx: Context,
    admin: Principal,
    *,
    kind: RightsKind | None = None,
    state: RightsState | None = None,
    overdue: bool | None = None,
    shown: Callable[[list[RequestView]], list[RequestView]] = list,
) -> list[RequestView]:
    """Every active client's request that matches the filters, or the part `shown` picks.

    Each request answered is a read of its client's record; those left out are not.
    """
    now = ctx.clock.now()
    views: list[RequestView] = []
    for row in (await session.execute(select(RightsRequest))).scalars():
        account = await _owner(session, ctx.vault, row)
        view = await _open(session, ctx.vault, account, row) if account is not None else None
        if view is None:
            continue
        if kind is not None and view.kind != kind:
            continue
        if state is not None and view.state != state:
            continue
        if overdue is not None and view.overdue(now) != overdue:
            continue
        views.append(view)
    views = shown(views)
    audit.record(session, "rights_request.list", actor_id=admin.id, actor_role=admin.role)
    for view in views:
        _audit(session, "rights_request.read", admin, view)
    return views


async def get(
    session: AsyncSession, ctx: Context, admin: Principal, request_id: str
) -> RequestView:
    loaded = await _load(session, ctx.vault, request_id)
    _audit(session, "rights_request.read", admin, loaded.view)
    return loaded.view


async def move(
    session: AsyncSession,
    ctx: Context,
    admin: Principal,
    request_id: str,
    to: RightsState,
    reason: str | None,
) -> RequestView:
    """Move the request one step forward; a denial needs its written reason."""
    loaded = await _load(session, ctx.vault, request_id)
    view = loaded.view
    current = view.state
    if not rules.may_move(current, to):
        raise InvalidTransition(
            f"A request cannot go from {current.value} to {to.value}.",
            allowed=sorted(s.value for s in rules.NEXT[current]),
        )
    if to == RightsState.denied and reason is None:
        raise ReasonRequired("A denial needs its written reason.")
    now = ctx.clock.now()
    view.state = to
    view.history.append(Step(to, now, admin.id, reason))
    if to == RightsState.denied:
        assert reason is not None
        view.denial = Written(reason, now, admin.id)
    await _write(session, ctx, loaded)
    _audit(session, "rights_request.update", admin, view, **{"from": current.value, "to": to.value})
    return view


async def extend(
    session: AsyncSession, ctx: Context, admin: Principal, request_id: str, reason: str
) -> RequestView:
    """Take the rule's one extension, with its written reason."""
    loaded = await _load(session, ctx.vault, request_id)
    view = loaded.view
    now = ctx.clock.now()
    refusal = rules.extension_refusal(
        view.kind, view.state, view.received_at, extended=view.extension is not None, now=now
    )
    if refusal is not None:
        raise ExtensionNotAllowed(refusal)
    view.extension = Written(reason, now, admin.id)
    await _write(session, ctx, loaded)
    _audit(session, "rights_request.extend", admin, view)
    return view


# -- erasure -----------------------------------------------------------------------
async def forget(session: AsyncSession, vault: Vault, account_id: str) -> None:
    """Delete every request of the client (erasure)."""
    await SLOTS.remove_all(session, vault, account_id)
