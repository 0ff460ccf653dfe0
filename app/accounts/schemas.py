from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import EmailStr, Field, StringConstraints, WithJsonSchema

from app.accounts.jurisdiction import PATTERN as JURISDICTION_PATTERN
from app.accounts.passwords import MIN_LENGTH
from app.core.passwords import MAX_LENGTH
from app.core.schemas import Clean, RequestModel, ResponseModel, with_example
from app.models import AccountStatus, Role

Email = Annotated[EmailStr, StringConstraints(max_length=320), Clean]
DisplayName = Annotated[str, StringConstraints(min_length=1, max_length=200), Clean]
# Validated up to longer than the rule allows, so that the rule answers
# (weak_password), not the schema; documented as the rule has it (12 to 256).
Password = Annotated[
    str,
    StringConstraints(min_length=1, max_length=1024),
    Clean,
    WithJsonSchema({"type": "string", "minLength": MIN_LENGTH, "maxLength": MAX_LENGTH}),
]


class RegisterClient(RequestModel):
    email: Email = Field(examples=["ada@example.org"])
    password: Password = Field(examples=["four random words here"])
    display_name: DisplayName = Field(examples=["Ada"])


class CreateAccount(RegisterClient):
    role: Role = Field(strict=False, examples=["counselor"])


class AccountOut(ResponseModel):
    model_config = with_example(
        {
            "id": "0b8e3a52-5d3e-4c1a-9a53-3f0d2f7c9e11",
            "email": "ada@example.org",
            "display_name": "Ada",
            "role": "client",
            "created_at": "2026-11-01T10:00:00Z",
        }
    )

    id: str
    email: str
    display_name: str
    role: Role
    created_at: datetime


class ChangePassword(RequestModel):
    current_password: Password = Field(examples=["the password of today"])
    new_password: Password = Field(examples=["four other random words"])


class UseReset(RequestModel):
    reset_token: Annotated[str, StringConstraints(min_length=1, max_length=256), Clean] = Field(
        examples=["Hq3vW0p9rJm2c7xZ1yB8tK5nL4aE6sD0fG2hJ9kQ3wU"]
    )
    new_password: Password = Field(examples=["four other random words"])


class ResetOut(ResponseModel):
    model_config = with_example(
        {
            "reset_token": "Hq3vW0p9rJm2c7xZ1yB8tK5nL4aE6sD0fG2hJ9kQ3wU",
            "expires_at": "2026-11-01T10:30:00Z",
        }
    )

    reset_token: str = Field(description="shown once; single use")
    expires_at: datetime


class LoginOut(ResponseModel):
    model_config = with_example(
        {
            "id": "7d1f0c2e-3b4a-4c5d-8e6f-9a0b1c2d3e4f",
            "device": "Firefox on Linux",
            "created_at": "2026-11-01T10:00:00Z",
            "last_used_at": "2026-11-01T11:00:00Z",
            "current": True,
        }
    )

    id: str
    device: str = Field(description='a coarse label from the User-Agent at log-in, or "unknown"')
    created_at: datetime = Field(description="truncated to the hour")
    last_used_at: datetime = Field(description="truncated to the hour")
    current: bool = Field(description="the log-in of the access token that asked")


class AdminAccountOut(ResponseModel):
    model_config = with_example(
        {
            "id": "0b8e3a52-5d3e-4c1a-9a53-3f0d2f7c9e11",
            "email": "ada@example.org",
            "display_name": "Ada",
            "role": "counselor",
            "status": "active",
            "created_at": "2026-11-01T10:00:00Z",
        }
    )

    id: str
    email: str | None = Field(description="null once the account is erased")
    display_name: str | None = Field(description="null once the account is erased")
    role: Role
    status: AccountStatus
    created_at: datetime | None = Field(description="null once the account is erased")


class SetRole(RequestModel):
    role: Literal["counselor", "admin"] = Field(examples=["admin"])


Jurisdiction = Annotated[str, StringConstraints(pattern=JURISDICTION_PATTERN)]


class SetJurisdiction(RequestModel):
    jurisdiction: Jurisdiction | None = Field(
        description=(
            "Where the caller lives: an ISO 3166-2 code, upper case (`US-CO`); null clears it."
        ),
        examples=["US-CO"],
    )


class JurisdictionOut(ResponseModel):
    model_config = with_example({"jurisdiction": "US-CO"})

    jurisdiction: str | None = Field(
        description="The caller's ISO 3166-2 jurisdiction, or null when not set."
    )
