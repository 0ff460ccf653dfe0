"""The latest MLS GroupInfo of a room, for a device that rejoins by external commit.

The participant that committed last uploads the GroupInfo of the epoch its
commit began: the server reads its clear group id and epoch (`app.core.mls`)
and keeps it only if the group is the room's and the epoch is the room's
current one as the relay knows it (the epoch after the latest commit it
relayed; 0 before any). One row per room, replaced on upload, sealed under
the room's data key; retention deletes it with the room's relay state.
Uploads are throttled per account (in process memory, like KeyPackage claims).
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import mls
from app.core.context import Context
from app.core.errors import NotFound, RateLimited, ValidationFailed
from app.models import Account, RoomGroupInfo
from app.rooms.errors import NotAdmitted, RoomEnded, StaleEpoch, WrongGroup
from app.rooms.service import RoomState, load_for

#: At most this many bytes of GroupInfo.
MAX_GROUP_INFO = 64 * 1024


def throttle(ctx: Context, account_id: str) -> None:
    """Count one upload by the account; RateLimited past its share of the window."""
    key = f"group_info.upload:{account_id}"
    limit = ctx.settings.group_info_uploads_per_window
    retry = ctx.group_info_throttle.retry_after(key, limit)
    if retry:
        raise RateLimited(retry, "Too many GroupInfo uploads; try again later.")
    ctx.group_info_throttle.fail(key)


async def _admitted(
    session: AsyncSession, ctx: Context, account: Account, room_id: str
) -> tuple[RoomState, str]:
    """The room and its data key, for an admitted participant."""
    state, member = await load_for(session, ctx.vault, room_id, account.id)
    if not state.is_admitted(member):
        raise NotAdmitted("Only an admitted participant may use the room's GroupInfo.")
    if state.room.data_key_id is None:
        raise NotFound("No such room.")
    return state, state.room.data_key_id


async def put(
    session: AsyncSession,
    ctx: Context,
    account: Account,
    room_id: str,
    group_info: bytes,
    epoch: int | None,
) -> None:
    """Keep `group_info` as the room's; `epoch` is the room's current epoch (None: no commit)."""
    state, key = await _admitted(session, ctx, account, room_id)
    if state.status(ctx.clock.now()) == "ended":
        raise RoomEnded("This session has ended.")
    if len(group_info) > MAX_GROUP_INFO:
        raise ValidationFailed("The GroupInfo is too large.")
    try:
        header = mls.parse(group_info)
    except mls.MlsFormatError as error:
        raise ValidationFailed(f"Not a GroupInfo: {error.reason}.") from None
    if not isinstance(header, mls.GroupInfoHeader):
        raise ValidationFailed("Not a GroupInfo (wire_format 4).")
    if header.group_id != mls.room_group_id(room_id):
        raise WrongGroup("The GroupInfo is for another MLS group than this room's.")
    current = 0 if epoch is None else epoch
    if header.epoch != current:
        raise StaleEpoch("The GroupInfo is for another epoch than the room's.", epoch=current)
    sealed = await ctx.vault.seal(session, key, RoomGroupInfo.group_info, room_id, group_info.hex())
    row = await session.get(RoomGroupInfo, room_id)
    if row is None:
        session.add(RoomGroupInfo(room_id=room_id, group_info=sealed))
    else:
        row.group_info = sealed


async def get(session: AsyncSession, ctx: Context, account: Account, room_id: str) -> bytes:
    _, key = await _admitted(session, ctx, account, room_id)
    row = await session.get(RoomGroupInfo, room_id)
    if row is None:
        raise NotFound("This room has no GroupInfo yet.")
    text = await ctx.vault.open(session, key, RoomGroupInfo.group_info, room_id, row.group_info)
    return bytes.fromhex(text)


async def forget(session: AsyncSession, room_ids: list[str]) -> None:
    """Delete the GroupInfo of rooms whose relay state is dropped."""
    if room_ids:
        await session.execute(delete(RoomGroupInfo).where(RoomGroupInfo.room_id.in_(room_ids)))
