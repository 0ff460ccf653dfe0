"""The typed participants' share of the admission rule (`app.rooms.service.admit_device`).

- A supervisor is admitted only while every client of the room (role
  `participant`) has given this room's supervision consent
  (`SupervisionConsentRequired`).
- A client marked as a minor is admitted only with a linked guardian's current
  consent, or the practice's record that the minor consents for themselves
  (`GuardianConsentRequired`, from `app.guardians`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.context import Context
from app.guardians import service as guardians
from app.models import Account
from app.rooms.errors import GuardianConsentRequired, SupervisionConsentRequired


class Member(Protocol):
    @property
    def role(self) -> str: ...
    @property
    def extra(self) -> dict[str, Any]: ...


class RoomState(Protocol):
    @property
    def members(self) -> Sequence[Member]: ...


SUPERVISION_CONSENT = "supervision_consent"


def supervision_consented(state: RoomState) -> bool:
    """Has every client of the room given its supervision consent?"""
    return all(SUPERVISION_CONSENT in m.extra for m in state.members if m.role == "participant")


async def role_gate(
    session: AsyncSession, ctx: Context, account: Account, state: RoomState, member: Member
) -> None:
    if member.role == "supervisor" and not supervision_consented(state):
        raise SupervisionConsentRequired(
            "Every client of this room must consent to supervision first."
        )
    if member.role == "participant" and not await guardians.may_consent(
        session, ctx.vault, account
    ):
        raise GuardianConsentRequired(
            "A guardian's consent, or the practice's record of the minor's own, is needed."
        )
