"""Key logs for their accounts and their contacts.

`GET /v1/accounts/{account_id}/key-log`: an account's key log, for itself
and its contacts; `GET /v1/me/key-changes`: the contacts' key changes.

A contact is an account that shares a room with the caller. Anyone else,
like an unknown account, gets 404: the answer does not say whether the
account exists.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from app.accounts import service as accounts
from app.auth.dependencies import CurrentPrincipal
from app.core.codec import is_id
from app.core.errors import NotFound, Unauthorized
from app.core.schemas import UtcDatetime
from app.keys import service as keys
from app.keys.schemas import KeyChangeOut, KeyLogOut
from app.models import Account, AccountStatus
from app.rooms import service as rooms
from app.web.deps import ContextDep, SessionDep
from app.web.errors import responses
from app.web.pagination import PageDep, micros, paged

router = APIRouter(tags=["keys"])


@router.get(
    "/v1/accounts/{account_id}/key-log",
    response_model=KeyLogOut,
    responses=responses(Unauthorized, NotFound),
    summary="An account's key log after seq `after`, and its signed head",
)
async def key_log(
    account_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    ctx: ContextDep,
    after: Annotated[int, Query(ge=0, le=2**53)] = 0,
) -> KeyLogOut:
    """The entries of the account's key log with `seq` greater than `after`, in order, and the
    server-signed head. Answered to the account itself and to accounts that share a room with it;
    anyone else gets 404.
    """
    caller = principal.account
    target = await accounts.get_active(session, account_id) if is_id(account_id) else None
    if target is None:
        raise NotFound("No such account.")
    if target.id != caller.id:
        states = await rooms.list_rooms(session, ctx, caller)
        if not any(state.member(target.id) is not None for state in states):
            raise NotFound("No such account.")
    return await keys.view(session, ctx.vault, ctx.tokens, target, after)


@router.get(
    "/v1/me/key-changes",
    response_model=list[KeyChangeOut],
    responses=paged(responses(Unauthorized)),
    summary="Key changes of the accounts that share a room with the caller, oldest first",
    description=(
        "By time, then account, then seq; with `after`, only those written at or after it."
        " Paginated."
    ),
)
async def key_changes(
    principal: CurrentPrincipal,
    session: SessionDep,
    ctx: ContextDep,
    page: PageDep,
    after: Annotated[UtcDatetime | None, Query()] = None,
) -> list[KeyChangeOut]:
    scope = ("key changes", principal.id)
    page.position(scope)  # a bad cursor is refused before any work
    caller = principal.account
    states = await rooms.list_rooms(session, ctx, caller)
    contact_ids = sorted({m.account_id for state in states for m in state.members} - {caller.id})
    if not contact_ids:
        return []
    contacts = list(
        (
            await session.execute(
                select(Account).where(
                    Account.id.in_(contact_ids), Account.status == AccountStatus.active
                )
            )
        ).scalars()
    )
    return page.take(
        await keys.changes_of(session, ctx.vault, contacts, after),
        lambda change: (micros(change.at), change.account_id, change.seq),
        scope,
    )
