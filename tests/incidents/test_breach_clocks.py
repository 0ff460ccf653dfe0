"""An incident's notify_by: the shortest of HIPAA's 60 days and the affected accounts' state
deadlines, from each account's jurisdiction; on SQLite and PostgreSQL.

This module's server runs with a practice's deadline file that shortens Florida's
deadline and adds New York's, over the shipped table.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from app.core.clock import FrozenClock
from app.core.config import Settings
from tests.fixtures.accounts import User, register_client

Json = dict[str, Any]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    table = tmp_path / "deadlines.json"
    table.write_text(
        json.dumps(
            [
                {"jurisdiction": "US-FL", "days": 20, "source": "Counsel's reading"},
                {"jurisdiction": "US-NY", "days": 10, "source": "Practice policy"},
            ]
        )
    )
    return Settings(
        data_dir=tmp_path / "data",
        database_url=SecretStr(database_url),
        webhook_worker=False,
        breach_deadlines_file=table,
    )


async def place(client: httpx.AsyncClient, user: User, jurisdiction: str | None) -> Json:
    response = await client.put(
        "/v1/me/jurisdiction", json={"jurisdiction": jurisdiction}, headers=user.auth
    )
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


async def open_incident(
    client: httpx.AsyncClient, admin: User, clock: FrozenClock, affected: list[str]
) -> tuple[datetime, Json]:
    discovered = clock.now() - timedelta(days=2)
    response = await client.post(
        "/v1/incidents",
        json={
            "summary": "A laptop with an export was stolen.",
            "discovered_at": discovered.isoformat(),
            "severity": "high",
            "affected_account_ids": affected,
        },
        headers=admin.auth,
    )
    assert response.status_code == 201, response.text
    made: Json = response.json()
    return discovered, made


async def test_an_incident_affecting_a_colorado_client_must_be_notified_in_30_days(
    client: httpx.AsyncClient, admin: User, client_user: User, clock: FrozenClock
) -> None:
    await place(client, client_user, "US-CO")
    discovered, made = await open_incident(client, admin, clock, [client_user.id])
    assert datetime.fromisoformat(made["notify_by"]) == discovered + timedelta(days=30)
    assert made["jurisdictions"] == ["US-CO"]
    assert made["notify_by_rule"] == {
        "jurisdiction": "US-CO",
        "days": 30,
        "source": "Colo. Rev. Stat. 6-1-716(2)",
    }
    again = await client.get(f"/v1/incidents/{made['id']}", headers=admin.auth)
    assert again.json() == made


async def test_an_incident_with_no_known_jurisdiction_keeps_hipaas_60_days(
    client: httpx.AsyncClient, admin: User, client_user: User, counselor: User, clock: FrozenClock
) -> None:
    other = await register_client(client)
    await place(client, other, "US-TX")  # not in the table
    discovered, made = await open_incident(
        client, admin, clock, [client_user.id, counselor.id, other.id]
    )
    assert datetime.fromisoformat(made["notify_by"]) == discovered + timedelta(days=60)
    assert made["jurisdictions"] == ["US-TX"]
    assert made["notify_by_rule"] == {
        "jurisdiction": None,
        "days": 60,
        "source": "45 CFR 164.404(b)",
    }


async def test_a_mix_of_jurisdictions_takes_the_shortest(
    client: httpx.AsyncClient, admin: User, client_user: User, clock: FrozenClock
) -> None:
    vermont, colorado, unknown = [await register_client(client) for _ in range(3)]
    await place(client, vermont, "US-VT")
    await place(client, colorado, "US-CO")
    await place(client, client_user, "US-VT")
    discovered, made = await open_incident(
        client, admin, clock, [vermont.id, client_user.id, unknown.id, colorado.id]
    )
    assert made["jurisdictions"] == ["US-CO", "US-VT"]
    assert made["notify_by_rule"]["jurisdiction"] == "US-CO"
    assert datetime.fromisoformat(made["notify_by"]) == discovered + timedelta(days=30)

    _, vermont_only = await open_incident(client, admin, clock, [vermont.id, unknown.id])
    assert vermont_only["notify_by_rule"]["days"] == 45
    assert vermont_only["notify_by_rule"]["source"] == "Vt. Stat. tit. 9, 2435(b)(1)"


async def test_the_practices_file_sets_the_deadline_of_its_jurisdictions(
    client: httpx.AsyncClient, admin: User, client_user: User, clock: FrozenClock
) -> None:
    florida = await register_client(client)
    await place(client, florida, "US-FL")
    await place(client, client_user, "US-NY")
    discovered, made = await open_incident(client, admin, clock, [florida.id])
    assert made["notify_by_rule"] == {
        "jurisdiction": "US-FL",
        "days": 20,
        "source": "Counsel's reading",
    }
    discovered, made = await open_incident(client, admin, clock, [florida.id, client_user.id])
    assert made["notify_by_rule"]["jurisdiction"] == "US-NY"
    assert datetime.fromisoformat(made["notify_by"]) == discovered + timedelta(days=10)


async def test_a_jurisdiction_is_set_read_and_cleared_by_its_owner_only(
    client: httpx.AsyncClient, client_user: User, admin: User, clock: FrozenClock
) -> None:
    first = await client.get("/v1/me/jurisdiction", headers=client_user.auth)
    assert first.json() == {"jurisdiction": None}
    assert await place(client, client_user, "US-CO") == {"jurisdiction": "US-CO"}
    mine = await client.get("/v1/me/jurisdiction", headers=client_user.auth)
    assert mine.json() == {"jurisdiction": "US-CO"}
    other = await client.get("/v1/me/jurisdiction", headers=admin.auth)
    assert other.json() == {"jurisdiction": None}
    assert await place(client, client_user, None) == {"jurisdiction": None}
    _, made = await open_incident(client, admin, clock, [client_user.id])
    assert made["jurisdictions"] == []
    log = await client.get("/v1/me/access-log", headers=client_user.auth)
    actions = [e["action"] for e in log.json()]
    assert actions.count("account.jurisdiction_update") == 2


@pytest.mark.parametrize(
    "body",
    [
        {"jurisdiction": "us-co"},
        {"jurisdiction": "Colorado"},
        {"jurisdiction": "USA-CO"},
        {"jurisdiction": "US-"},
        {"jurisdiction": "US-COLO"},
        {"jurisdiction": "US-CO\n"},
        {"jurisdiction": 7},
        {},
        {"jurisdiction": "US-CO", "more": 1},
    ],
)
async def test_a_bad_jurisdiction_changes_nothing(
    client: httpx.AsyncClient, client_user: User, body: Json
) -> None:
    await place(client, client_user, "US-WA")
    response = await client.put("/v1/me/jurisdiction", json=body, headers=client_user.auth)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    kept = await client.get("/v1/me/jurisdiction", headers=client_user.auth)
    assert kept.json() == {"jurisdiction": "US-WA"}
