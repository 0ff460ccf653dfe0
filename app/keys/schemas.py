"""Key-log answers."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from app.core import examples
from app.core.schemas import ResponseModel, with_example


class KeyLogEntryOut(ResponseModel):
    seq: int
    kind: str = Field(description="identity_set, identity_reset, device_added or device_revoked")
    device_id: str | None
    identity_key: str | None = Field(description="base64url P-256 point (identity entries)")
    signing_key: str | None = Field(description="base64url P-256 point (device_added)")
    public_key: str | None = Field(description="base64url, the device's public_key (device_added)")
    signature: str | None = Field(description="base64url r || s (device_added)")
    prev_hash: str = Field(description="64 hex digits")
    hash: str = Field(description="64 hex digits")


class SignedHead(ResponseModel):
    seq: int
    hash: str = Field(description="64 hex digits")
    jws: str = Field(description="compact JWS, typ confide-key-log-head+jwt")


class KeyLogOut(ResponseModel):
    model_config = with_example(examples.KEY_LOG)

    account_id: str
    entries: list[KeyLogEntryOut]
    head: SignedHead | None = Field(description="null while the log is empty")


class KeyChangeOut(ResponseModel):
    model_config = with_example(
        {
            "account_id": "5e0c3d7a-1f7e-4b53-8d0c-2a4f6b9e8d10",
            "seq": 3,
            "kind": "device_added",
            "device_id": "2f6a8c1e-4b3d-4a5f-8e7c-9d0b1a2c3e4f",
            "at": "2026-11-21T08:30:00Z",
        }
    )

    account_id: str
    seq: int = Field(description="the entry's seq in the account's key log")
    kind: str = Field(description="identity_set, identity_reset, device_added or device_revoked")
    device_id: str | None
    at: datetime
