"""Claiming MLS KeyPackages of a room's participants' devices.

An admitted participant of a room that has not ended claims, for each device
it names, one KeyPackage of that device: the device must be an active device
of an admitted participant of the room (the caller's own other devices
included: someone must add them to the group). One request hands out one
package per device, or none at all: if any device has nothing left, the
request is refused and nothing is taken.

Every package handed out leaves a `key_package_claims` row: the blind index
of (room, KeyPackageRef) and, sealed under the room's key, the device and
its owner. A Welcome names the refs of the packages it adds; the server can
route it to exactly those devices.

Claims are throttled per account (in process memory, like log-ins).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.codec import new_id
from app.core.context import Context
from app.core.errors import NotFound, RateLimited
from app.devices import key_packages
from app.devices.service import active_devices_of
from app.models import Account, KeyPackageClaim, Room
from app.rooms.errors import KeyPackagesExhausted, NotAdmitted, RoomEnded
from app.rooms.service import load_for


@dataclass(frozen=True)
class Claimed:
    device_id: str
    package: bytes
    ref: bytes
    last_resort: bool


def claim_index(ctx: Context, room_id: str, ref: bytes) -> bytes:
    return ctx.vault.index(f"{room_id}:{ref.hex()}", purpose="key_package.claim")


def _throttle(ctx: Context, account_id: str) -> None:
    key = f"key_package.claim:{account_id}"
    retry = ctx.claim_throttle.retry_after(key, ctx.settings.key_package_claims_per_window)
    if retry:
        raise RateLimited(retry, "Too many key package claims; try again later.")
    ctx.claim_throttle.fail(key)


async def claim(
    session: AsyncSession, ctx: Context, account: Account, room_id: str, device_ids: Sequence[str]
) -> list[Claimed]:
    _throttle(ctx, account.id)
    state, member = await load_for(session, ctx.vault, room_id, account.id)
    if state.status(ctx.clock.now()) == "ended":
        raise RoomEnded("This session has ended.")
    if not state.is_admitted(member):
        raise NotAdmitted("Only an admitted participant may claim key packages.")
    room_key = state.room.data_key_id
    if room_key is None:
        raise NotFound("No such room.")
    admitted = [m.account_id for m in state.members if state.is_admitted(m)]
    owner_of = {
        device.id: account_id
        for account_id, devices in (await active_devices_of(session, ctx.vault, admitted)).items()
        for device in devices
    }
    wanted = list(dict.fromkeys(device_ids))
    if any(device_id not in owner_of for device_id in wanted):
        raise NotFound("No such device in this room.")
    owners = {
        row.id: row
        for row in (
            await session.execute(
                select(Account).where(Account.id.in_({owner_of[d] for d in wanted}))
            )
        ).scalars()
    }
    # Write first (the claim rows, under random indexes): on SQLite the
    # transaction then holds the one write lock before it counts any stock.
    rows = []
    for device_id in wanted:
        row_id = new_id()
        details = await ctx.vault.seal_json(
            session,
            room_key,
            KeyPackageClaim.details,
            row_id,
            {"device": device_id, "account": owner_of[device_id]},
        )
        rows.append(
            KeyPackageClaim(id=row_id, room_id=room_id, ref_ix=os.urandom(32), details=details)
        )
    session.add_all(rows)
    await session.flush()
    claimed: list[Claimed] = []
    empty: list[str] = []
    # In one order, so two claims of the same devices wait for each other, not deadlock.
    for device_id, row in sorted(zip(wanted, rows, strict=True), key=lambda pair: pair[0]):
        taken = await key_packages.take(session, ctx.vault, owners[owner_of[device_id]], device_id)
        if taken is None:
            empty.append(device_id)
            continue
        row.ref_ix = claim_index(ctx, room_id, taken.ref)
        claimed.append(Claimed(device_id, taken.package, taken.ref, taken.last_resort))
    if empty:
        raise KeyPackagesExhausted(
            "A device has no key package left; nothing was claimed.", devices=sorted(empty)
        )
    await session.flush()
    order = {device_id: i for i, device_id in enumerate(wanted)}
    return sorted(claimed, key=lambda c: order[c.device_id])


async def devices_for_refs(
    session: AsyncSession, ctx: Context, room_id: str, refs: Sequence[bytes]
) -> dict[bytes, str]:
    """The device each ref was handed out for in this room (refs never claimed here are absent)."""
    by_ix = {claim_index(ctx, room_id, ref): ref for ref in refs}
    if not by_ix:
        return {}
    rows = (
        await session.execute(
            select(KeyPackageClaim).where(
                KeyPackageClaim.room_id == room_id, KeyPackageClaim.ref_ix.in_(list(by_ix))
            )
        )
    ).scalars()
    room = await session.get(Room, room_id)
    if room is None or room.data_key_id is None:
        return {}
    out: dict[bytes, str] = {}
    for row in rows:
        details = await ctx.vault.open_json(
            session, room.data_key_id, KeyPackageClaim.details, row.id, row.details
        )
        out[by_ix[row.ref_ix]] = details["device"]
    return out
