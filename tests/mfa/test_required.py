"""MFA required: a counselor without a factor reaches only enrolment until they enrol one."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from app.core.clock import FrozenClock
from app.core.config import Settings
from tests.fixtures.accounts import User
from tests.mfa.helpers import enrol_totp


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=SecretStr(database_url),
        webhook_worker=False,
        mfa_required=True,
    )


def test_production_requires_mfa_by_default() -> None:
    production = {"env": "production", "password_memory_kib": 19_456, "password_time_cost": 2}
    assert Settings(**production).requires_mfa  # type: ignore[arg-type]  # kwargs from a dict
    assert not Settings().requires_mfa
    assert not Settings(**production, mfa_required=False).requires_mfa  # type: ignore[arg-type]


async def test_a_counselor_without_a_factor_must_enrol_first(
    client: httpx.AsyncClient, clock: FrozenClock, counselor: User
) -> None:
    rooms = await client.get("/v1/rooms", headers=counselor.auth)
    assert rooms.status_code == 403
    assert rooms.json()["code"] == "mfa_enrolment_required"
    token = await client.post(
        "/v1/rooms/0f6c5e1a-3f5b-4b6e-9d7a-2c1e8b4a9f30/token",
        json={"device_id": "0f6c5e1a-3f5b-4b6e-9d7a-2c1e8b4a9f31"},
        headers=counselor.auth,
    )
    assert token.status_code == 403
    assert token.json()["code"] == "mfa_enrolment_required"
    # Who am I, and enrolment, stay open.
    assert (await client.get("/v1/me", headers=counselor.auth)).status_code == 200
    assert (await client.get("/v1/me/factors", headers=counselor.auth)).status_code == 200

    await enrol_totp(client, counselor, clock)
    assert (await client.get("/v1/rooms", headers=counselor.auth)).status_code == 200


async def test_a_client_is_not_asked_to_enrol(client: httpx.AsyncClient, client_user: User) -> None:
    assert (await client.get("/v1/rooms", headers=client_user.auth)).status_code == 200
