from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from app.core.schemas import Clean, RequestModel, ResponseModel, with_example

Id = Annotated[str, StringConstraints(min_length=1, max_length=64), Clean]
Basis = Annotated[str, StringConstraints(min_length=1, max_length=500), Clean]


class LinkGuardian(RequestModel):
    guardian_account_id: Id = Field(examples=["5e0c3d7a-1f7e-4b53-8d0c-2a4f6b9e8d10"])


class SelfConsent(RequestModel):
    allowed: bool
    basis: Basis | None = Field(
        default=None,
        description="the law under which the minor consents for themselves (required when allowed)",
        examples=["Colo. Rev. Stat. 27-65-104: minors 12 and older may consent to psychotherapy"],
    )

    @model_validator(mode="after")
    def _basis(self) -> SelfConsent:
        if self.allowed and self.basis is None:
            raise ValueError("basis is required when allowed is true")
        return self


class SetMinor(RequestModel):
    minor: bool
    self_consent: SelfConsent = Field(default_factory=lambda: SelfConsent(allowed=False))


class SelfConsentOut(ResponseModel):
    allowed: bool
    basis: str | None


class MinorOut(ResponseModel):
    model_config = with_example(
        {
            "minor": True,
            "self_consent": {"allowed": False, "basis": None},
            "set_at": "2026-11-20T12:00:00Z",
        }
    )

    minor: bool
    self_consent: SelfConsentOut | None
    set_at: datetime


class LinkOut(ResponseModel):
    """One guardianship: `account_id` is the other person (the guardian, or the ward)."""

    model_config = with_example(
        {
            "account_id": "5e0c3d7a-1f7e-4b53-8d0c-2a4f6b9e8d10",
            "linked_at": "2026-11-20T12:00:00Z",
            "consent_given_at": "2026-11-21T09:30:00Z",
        }
    )

    account_id: str
    linked_at: datetime
    consent_given_at: datetime | None = Field(
        description="when the guardian's current consent for the minor's care was given; null: none"
    )


class GuardiansOut(ResponseModel):
    model_config = with_example(
        {
            "minor": {
                "minor": True,
                "self_consent": {"allowed": False, "basis": None},
                "set_at": "2026-11-20T12:00:00Z",
            },
            "guardians": [
                {
                    "account_id": "5e0c3d7a-1f7e-4b53-8d0c-2a4f6b9e8d10",
                    "linked_at": "2026-11-20T12:00:00Z",
                    "consent_given_at": "2026-11-21T09:30:00Z",
                }
            ],
        }
    )

    minor: MinorOut | None
    guardians: list[LinkOut]


class GuardianshipOut(ResponseModel):
    """The export's section: the caller's minor status, guardians and wards."""

    minor: MinorOut | None
    guardians: list[LinkOut]
    wards: list[LinkOut]
