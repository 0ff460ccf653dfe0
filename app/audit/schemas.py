from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from app.core import examples
from app.core.schemas import ResponseModel, with_example

_HEAD = "5f1c0d9e3b7a4c2e8f6d1b0a9c8e7f6d5c4b3a29180f7e6d5c4b3a2918070605"
_JWS = (
    "eyJhbGciOiJFUzI1NiIsImtpZCI6Im5aU3ZOLXRhSF9YVHQ0Ui1oY2wwX2xLSHpxY0lHbm9BZ1g4dTN0VnRQTWsi"
    "LCJ0eXAiOiJjb25maWRlLWF1ZGl0LWNoZWNrcG9pbnQrand0In0.eyJpc3MiOiJjb25maWRlIiwiYXVkIjoiY29"
    "uZmlkZTphdWRpdC1jaGVja3BvaW50IiwianRpIjoiLi4uIiwiaWF0IjoxNzk1OTg0MDAwLCJzZXEiOjQyLCJoZW"
    "FkIjoiLi4uIn0.c2lnbmF0dXJl"
)
_CHECKPOINT_EXAMPLE: JsonDict = {
    "seq": 42,
    "head": _HEAD,
    "at": "2026-11-24T20:00:00Z",
    "kid": "nZSvN-taH_XTt4R-hcl0_lKHzqcIGnoAgX8u3tVtPMk",
    "jws": _JWS,
}


class AuditEntryOut(ResponseModel):
    model_config = with_example(
        {
            "seq": 42,
            "at": "2026-11-24T20:01:00Z",
            "actor": "5e0c3d7a-1f7e-4b53-8d0c-2a4f6b9e8d10",
            "actor_role": "counselor",
            "action": "room.participant_add",
            "target": "7d2c9a4e-6b1f-4e8a-9c3d-1f5e7a9b2c40",
            "details": {},
            "hash": examples.HASH_2,
            "prev_hash": examples.HASH_1,
        }
    )

    seq: int
    at: datetime
    actor: str | None
    actor_role: str | None
    action: str
    target: str | None
    details: dict[str, Any]
    hash: str
    prev_hash: str


class VerifyOut(ResponseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "ok": False,
                    "entries": 37,
                    "head": _HEAD,
                    "broken_seq": 38,
                    "reason": "missing",
                    "message": "audit log TRUNCATED at seq 38: entries from seq 38 on are"
                    " missing; the chain ends at seq 37 but the checkpoint of"
                    " 2026-11-24T20:00:00Z anchors seq 42",
                    "checkpoints": 12,
                    "anchored_seq": 35,
                }
            ]
        },
    )

    ok: bool
    entries: int
    head: str | None
    broken_seq: int | None = None
    reason: Literal["chain", "missing", "mismatch", "checkpoint_refused"] | None = Field(
        default=None,
        description=(
            "Why `ok` is false: `chain` (a link does not hold at `broken_seq`), `missing`"
            " (the chain is shorter than a checkpoint's seq; `broken_seq` is the first"
            " missing one), `mismatch` (a checkpointed seq holds another hash),"
            " `checkpoint_refused` (a line of the checkpoint file is not a valid checkpoint)."
        ),
    )
    message: str | None = Field(default=None, description="One line for people.")
    checkpoints: int | None = Field(
        default=None,
        description="With `checkpoints=true`: how many checkpoints were found to hold.",
    )
    anchored_seq: int | None = Field(
        default=None, description="The highest seq a holding checkpoint anchors."
    )


class CheckpointOut(ResponseModel):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_CHECKPOINT_EXAMPLE]}
    )

    seq: int = Field(description="The audit entry the checkpoint anchors.")
    head: str = Field(description="That entry's hash, hex.")
    at: datetime = Field(description="When the checkpoint was signed (`iat`).")
    kid: str = Field(description="The signing key, as published in `/.well-known/jwks.json`.")
    jws: str = Field(
        description=(
            "The signed checkpoint, compact JWS (ES256), `typ` `confide-audit-checkpoint+jwt`,"
            " `aud` `confide:audit-checkpoint`, claims `iss`, `aud`, `jti`, `iat`, `seq`, `head`."
        )
    )


class RefusedLineOut(ResponseModel):
    reason: str = Field(examples=["signature or claims refused: typ mismatch"])


class CheckpointsOut(ResponseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "file": "/var/lib/confide/audit-checkpoints.jsonl",
                    "interval_s": 300,
                    "checkpoints": [_CHECKPOINT_EXAMPLE],
                    "refused": [],
                }
            ]
        },
    )

    file: str = Field(description="This instance's checkpoint file.")
    interval_s: int = Field(description="How often the head is checkpointed when it moved.")
    checkpoints: list[CheckpointOut] = Field(
        description="The valid checkpoints among the file's last `limit` lines, oldest first."
    )
    refused: list[RefusedLineOut] = Field(
        description="Lines among them that are not valid checkpoints (each one is a finding)."
    )
