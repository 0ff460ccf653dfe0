"""An account's second factors as stored: found by slot index, sealed under its key.

The ceremonies that create and use them are `app.mfa`'s; log-in, the
enrolment rule, step-up, export and erasure need only to read and delete
them, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.context import Context
from app.core.slots import Slots
from app.models import Account, AuthFactor, Role

SLOTS = Slots(AuthFactor.owner_ix, "auth_factor.owner.slot")

TOTP = "totp"
WEBAUTHN = "webauthn"
RECOVERY = "recovery_codes"
#: What a log-in's second step or a step-up may use, per kind of factor.
METHODS = {TOTP: "totp", WEBAUTHN: "webauthn", RECOVERY: "recovery_code"}


@dataclass
class Factor:
    """One factor as the account's key opens it; `data` is the whole sealed record."""

    row: AuthFactor
    data: dict[str, Any]

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def kind(self) -> str:
        return str(self.data["kind"])

    @property
    def confirmed(self) -> bool:
        return bool(self.data.get("confirmed"))

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.data["created_at"])


async def seal(session: AsyncSession, ctx: Context, account: Account, factor: Factor) -> None:
    assert account.data_key_id is not None
    factor.row.details = await ctx.vault.seal_json(
        session, account.data_key_id, AuthFactor.details, factor.row.id, factor.data
    )


async def factors_of(session: AsyncSession, ctx: Context, account: Account) -> list[Factor]:
    """Every factor row of the account (confirmed or not, recovery codes included)."""
    if account.data_key_id is None:
        return []
    out = []
    for row in await SLOTS.rows(session, ctx.vault, account.id):
        data = await ctx.vault.open_json(
            session, account.data_key_id, AuthFactor.details, row.id, row.details
        )
        out.append(Factor(row, data))
    return out


def methods(factors: list[Factor]) -> list[str]:
    """The second-step methods the account has, in a stable order."""
    kinds = {f.kind for f in factors if f.confirmed and f.kind != RECOVERY}
    if not kinds:
        return []
    if any(f.kind == RECOVERY and f.data.get("codes") for f in factors):
        kinds.add(RECOVERY)
    return [METHODS[kind] for kind in (TOTP, WEBAUTHN, RECOVERY) if kind in kinds]


async def has_factor(session: AsyncSession, ctx: Context, account: Account) -> bool:
    """Whether the account has a confirmed second factor."""
    return any(f.confirmed and f.kind != RECOVERY for f in await factors_of(session, ctx, account))


def must_enrol_role(ctx: Context, account: Account) -> bool:
    """Whether the account's role needs a second factor under the settings."""
    return ctx.settings.requires_mfa and account.role in (Role.counselor, Role.admin)


async def remove_all(session: AsyncSession, ctx: Context, account: Account) -> int:
    """Delete every factor row of the account (erasure)."""
    return await SLOTS.remove_all(session, ctx.vault, account.id)
