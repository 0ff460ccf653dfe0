"""REST: the safety check-in gating the room token, who reads it, licensure, the mismatch
policy, the access log, export and erasure. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.core.context import Context
from app.models import Role
from tests.fixtures.accounts import User, login, make_account, register_client
from tests.rooms.test_rooms import (
    accept,
    add_device,
    create_room,
    invite,
    publish_documents,
    room_token,
)

CHECKIN = {
    "location": {"address": "1600 Pennsylvania St, Denver", "jurisdiction": "US-CO"},
    "emergency_contact": {"name": "Sam Rivera", "phone": "+1 303 555 0142"},
    "callback_phone": "+1 303 555 0199",
}


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Settings:
    """The suite's settings; a test may add some with `indirect` parametrization."""
    extra: dict[str, Any] = getattr(request, "param", {})
    return Settings(
        data_dir=tmp_path / "data",
        database_url=SecretStr(database_url),
        webhook_worker=False,
        **extra,
    )


REFUSE = pytest.mark.parametrize("settings", [{"jurisdiction_mismatch": "refuse"}], indirect=True)


class Practice:
    def __init__(self, ctx: Context, http: httpx.AsyncClient, admin: User) -> None:
        self.ctx, self.http, self.admin = ctx, http, admin
        self.documents: dict[str, str] = {}

    async def client(self, name: str = "Client") -> tuple[User, str]:
        user = await register_client(self.http, display_name=name)
        for document_id in self.documents.values():
            await accept(self.http, user, document_id)
        return user, await add_device(self.http, user)

    async def counselor(self) -> tuple[User, str]:
        user = await make_account(self.ctx, self.http, Role.counselor, display_name="Dr Who")
        return user, await add_device(self.http, user)

    async def checkin(
        self, user: User, room_id: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        return await self.http.put(
            f"/v1/rooms/{room_id}/checkin", json=body or CHECKIN, headers=user.auth
        )

    async def licence(self, counselor: User, *jurisdictions: str) -> httpx.Response:
        return await self.http.put(
            f"/v1/admin/accounts/{counselor.id}/licensure",
            json={"jurisdictions": list(jurisdictions)},
            headers=self.admin.auth,
        )


@pytest.fixture
async def practice(ctx: Context, client: httpx.AsyncClient, admin: User) -> Practice:
    found = Practice(ctx, client, admin)
    found.documents = await publish_documents(client, admin)
    return found


async def one_to_one(practice: Practice, mode: str) -> tuple[User, str, User, str, str]:
    host, host_device = await practice.counselor()
    guest, guest_device = await practice.client()
    room = await create_room(practice.http, host, safety_checkin=mode, waiting_room=False)
    await invite(practice.http, host, room["id"], guest)
    return host, host_device, guest, guest_device, room["id"]


async def access_actions(http: httpx.AsyncClient, user: User) -> list[tuple[str | None, str]]:
    response = await http.get("/v1/me/access-log", headers=user.auth)
    assert response.status_code == 200, response.text
    return [(e["actor"]["account_id"], e["action"]) for e in response.json()]


# -- the gate --------------------------------------------------------------------------


async def test_a_required_check_in_gates_the_clients_token_not_the_hosts(
    practice: Practice,
) -> None:
    host, host_device, guest, guest_device, room_id = await one_to_one(practice, "required")

    refused = await room_token(practice.http, guest, room_id, guest_device)
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "safety_checkin_required"
    ice = await practice.http.get(f"/v1/rooms/{room_id}/ice-servers", headers=guest.auth)
    assert (ice.status_code, ice.json()["code"]) == (403, "safety_checkin_required")
    assert (await room_token(practice.http, host, room_id, host_device)).status_code == 200

    recorded = await practice.checkin(guest, room_id)
    assert recorded.status_code == 200, recorded.text
    body = recorded.json()
    assert body["location"] == CHECKIN["location"]
    assert body["emergency_contact"] == CHECKIN["emergency_contact"]
    assert body["callback_phone"] == CHECKIN["callback_phone"]
    assert (body["valid"], body["jurisdiction_licensed"]) == (True, None)
    issued = await room_token(practice.http, guest, room_id, guest_device)
    assert issued.status_code == 200, issued.text


@pytest.mark.parametrize("mode", ["optional", "off"])
async def test_optional_and_off_rooms_issue_tokens_without_a_check_in(
    practice: Practice, mode: str
) -> None:
    _, _, guest, guest_device, room_id = await one_to_one(practice, mode)
    room = await practice.http.get(f"/v1/rooms/{room_id}", headers=guest.auth)
    assert room.json()["safety_checkin"] == mode
    issued = await room_token(practice.http, guest, room_id, guest_device)
    assert issued.status_code == 200, issued.text


async def test_a_check_in_admits_for_24_hours_then_the_client_checks_in_again(
    practice: Practice, clock: FrozenClock
) -> None:
    _, _, guest, guest_device, room_id = await one_to_one(practice, "required")
    assert (await practice.checkin(guest, room_id)).status_code == 200

    clock.advance(24 * 3600 - 1)
    await login(practice.http, guest)
    assert (await room_token(practice.http, guest, room_id, guest_device)).status_code == 200
    clock.advance(1)
    await login(practice.http, guest)
    stale = await room_token(practice.http, guest, room_id, guest_device)
    assert (stale.status_code, stale.json()["code"]) == (403, "safety_checkin_required")
    own = await practice.http.get(f"/v1/rooms/{room_id}/checkin", headers=guest.auth)
    assert own.json()["valid"] is False

    assert (await practice.checkin(guest, room_id)).status_code == 200
    assert (await room_token(practice.http, guest, room_id, guest_device)).status_code == 200


async def test_the_setting_defaults_to_the_practices_and_the_host_changes_it(
    practice: Practice,
) -> None:
    host, _, guest, guest_device, room_id = await one_to_one(practice, "optional")
    plain = await create_room(practice.http, host)
    assert plain["safety_checkin"] == "off"  # development: off unless set

    patched = await practice.http.patch(
        f"/v1/rooms/{room_id}", json={"safety_checkin": "required"}, headers=host.auth
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["safety_checkin"] == "required"
    refused = await room_token(practice.http, guest, room_id, guest_device)
    assert refused.json()["code"] == "safety_checkin_required"

    bad = await practice.http.patch(
        f"/v1/rooms/{room_id}", json={"safety_checkin": "always"}, headers=host.auth
    )
    assert (bad.status_code, bad.json()["code"]) == (422, "validation_error")


def test_production_requires_a_check_in_unless_told_otherwise(tmp_path: Path) -> None:
    production: dict[str, Any] = {
        "env": "production",
        "password_memory_kib": 19456,
        "password_time_cost": 2,
    }
    assert Settings(data_dir=tmp_path).room_safety_checkin == "off"
    assert Settings(data_dir=tmp_path, **production).room_safety_checkin == "required"
    chosen = Settings(data_dir=tmp_path, safety_checkin_default="optional", **production)
    assert chosen.room_safety_checkin == "optional"
    assert Settings(data_dir=tmp_path, safety_checkin_default="").room_safety_checkin == "off"


# -- who records and reads -------------------------------------------------------------


async def test_the_host_reads_every_clients_check_in_another_client_does_not(
    practice: Practice,
) -> None:
    host, _ = await practice.counselor()
    first, _ = await practice.client("First")
    second, _ = await practice.client("Second")
    outsider, _ = await practice.client("Outsider")
    room = await create_room(practice.http, host, kind="group", safety_checkin="required")
    room_id = room["id"]
    for guest in (first, second):
        await invite(practice.http, host, room_id, guest)
    assert (await practice.checkin(first, room_id)).status_code == 200

    seen = await practice.http.get(f"/v1/rooms/{room_id}/checkins", headers=host.auth)
    assert seen.status_code == 200, seen.text
    [only] = seen.json()
    assert only["account_id"] == first.id
    assert only["location"] == CHECKIN["location"]
    assert only["emergency_contact"] == CHECKIN["emergency_contact"]

    for nosy, status, code in ((second, 403, "forbidden"), (outsider, 404, "not_found")):
        refused = await practice.http.get(f"/v1/rooms/{room_id}/checkins", headers=nosy.auth)
        assert (refused.status_code, refused.json()["code"]) == (status, code)
        assert "Sam Rivera" not in refused.text
    mine = await practice.http.get(f"/v1/rooms/{room_id}/checkin", headers=second.auth)
    assert (mine.status_code, mine.json()["code"]) == (404, "not_found")
    theirs = await practice.http.get(f"/v1/rooms/{room_id}/checkin", headers=first.auth)
    assert theirs.status_code == 200
    assert theirs.json()["jurisdiction_mismatch"] is None
    stranger = await practice.checkin(outsider, room_id)
    assert (stranger.status_code, stranger.json()["code"]) == (404, "not_found")


async def test_hosts_do_not_check_in(practice: Practice) -> None:
    host, _, _, _, room_id = await one_to_one(practice, "required")
    refused = await practice.checkin(host, room_id)
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")


async def test_the_host_can_still_read_it_after_the_session(practice: Practice) -> None:
    host, _, guest, _, room_id = await one_to_one(practice, "required")
    assert (await practice.checkin(guest, room_id)).status_code == 200
    ended = await practice.http.post(f"/v1/rooms/{room_id}/end", headers=host.auth)
    assert ended.status_code == 200
    seen = await practice.http.get(f"/v1/rooms/{room_id}/checkins", headers=host.auth)
    assert [c["account_id"] for c in seen.json()] == [guest.id]
    late = await practice.checkin(guest, room_id)
    assert (late.status_code, late.json()["code"]) == (409, "room_ended")


@pytest.mark.parametrize(
    "change",
    [
        {"location": {"address": "Home", "jurisdiction": "us-co"}},
        {"location": {"address": "Home", "jurisdiction": "USA-CO"}},
        {"location": {"address": "", "jurisdiction": "US-CO"}},
        {"location": {"address": "x" * 501, "jurisdiction": "US-CO"}},
        {"location": {"address": "Home\u0000", "jurisdiction": "US-CO"}},
        {"emergency_contact": {"name": "Sam", "phone": "call me"}},
        {"emergency_contact": {"name": "Sam", "phone": 3035550142}},
        {"callback_phone": "+1" + "5" * 20},
        {"extra": True},
    ],
)
async def test_bad_input_changes_nothing(practice: Practice, change: dict[str, Any]) -> None:
    _, _, guest, _, room_id = await one_to_one(practice, "required")
    refused = await practice.checkin(guest, room_id, {**CHECKIN, **change})
    assert (refused.status_code, refused.json()["code"]) == (422, "validation_error")
    own = await practice.http.get(f"/v1/rooms/{room_id}/checkin", headers=guest.auth)
    assert own.status_code == 404


async def test_each_read_shows_in_the_clients_access_log(practice: Practice) -> None:
    host, _, guest, _, room_id = await one_to_one(practice, "required")
    assert (await practice.checkin(guest, room_id)).status_code == 200
    before = await access_actions(practice.http, guest)
    assert (guest.id, "checkin.record") in before
    assert (host.id, "checkin.read") not in before

    await practice.http.get(f"/v1/rooms/{room_id}/checkins", headers=host.auth)
    await practice.http.get(f"/v1/rooms/{room_id}/checkin", headers=guest.auth)
    after = await access_actions(practice.http, guest)
    assert after.count((host.id, "checkin.read")) == 1
    assert after.count((guest.id, "checkin.read")) == 1


# -- licensure and the mismatch --------------------------------------------------------


async def test_admins_record_a_counselors_jurisdictions(practice: Practice) -> None:
    host, _ = await practice.counselor()
    guest, _ = await practice.client()
    recorded = await practice.licence(host, "US-NY", "US-CO", "US-CO")
    assert recorded.status_code == 200, recorded.text
    assert recorded.json() == {"account_id": host.id, "jurisdictions": ["US-CO", "US-NY"]}
    read = await practice.http.get(
        f"/v1/admin/accounts/{host.id}/licensure", headers=practice.admin.auth
    )
    assert read.json()["jurisdictions"] == ["US-CO", "US-NY"]
    assert (practice.admin.id, "licensure.update") in await access_actions(practice.http, host)

    path = f"/v1/admin/accounts/{host.id}/licensure"
    by_host = await practice.http.put(path, json={"jurisdictions": []}, headers=host.auth)
    assert by_host.status_code == 403
    for target, status in ((guest.id, 422), ("no-such-account", 404), ("a%00b", 404)):
        other = await practice.http.put(
            f"/v1/admin/accounts/{target}/licensure",
            json={"jurisdictions": ["US-CO"]},
            headers=practice.admin.auth,
        )
        assert other.status_code == status, other.text
    bad = await practice.http.put(
        path, json={"jurisdictions": ["Colorado"]}, headers=practice.admin.auth
    )
    assert bad.status_code == 422
    again = await practice.http.get(path, headers=practice.admin.auth)
    assert again.json()["jurisdictions"] == ["US-CO", "US-NY"]


async def test_warn_issues_the_token_and_shows_the_host_the_mismatch(
    practice: Practice,
) -> None:
    host, _, guest, guest_device, room_id = await one_to_one(practice, "required")
    assert (await practice.licence(host, "US-NY")).status_code == 200
    assert (await practice.checkin(guest, room_id)).status_code == 200
    assert (await room_token(practice.http, guest, room_id, guest_device)).status_code == 200
    [seen] = (await practice.http.get(f"/v1/rooms/{room_id}/checkins", headers=host.auth)).json()
    assert (seen["jurisdiction_licensed"], seen["jurisdiction_mismatch"]) == (False, True)

    assert (await practice.licence(host, "US-NY", "US-CO")).status_code == 200
    [seen] = (await practice.http.get(f"/v1/rooms/{room_id}/checkins", headers=host.auth)).json()
    assert (seen["jurisdiction_licensed"], seen["jurisdiction_mismatch"]) == (True, False)


@REFUSE
async def test_refuse_refuses_the_token_until_a_host_is_licensed(practice: Practice) -> None:
    host, _, guest, guest_device, room_id = await one_to_one(practice, "optional")
    # Without a check-in an optional room has no jurisdiction to hold against anyone.
    assert (await room_token(practice.http, guest, room_id, guest_device)).status_code == 200
    assert (await practice.checkin(guest, room_id)).status_code == 200
    refused = await room_token(practice.http, guest, room_id, guest_device)
    assert (refused.status_code, refused.json()["code"]) == (403, "jurisdiction_mismatch")

    assert (await practice.licence(host, "US-CO")).status_code == 200
    assert (await room_token(practice.http, guest, room_id, guest_device)).status_code == 200


# -- export and erasure ----------------------------------------------------------------


async def count(ctx: Context, table: str) -> int:
    async with ctx.engine.connect() as conn:
        return int((await conn.execute(text(f'SELECT COUNT(*) FROM "{table}"'))).scalar_one())


async def test_export_has_the_clients_check_ins_and_erasure_removes_them(
    practice: Practice,
) -> None:
    host, _, guest, _, room_id = await one_to_one(practice, "required")
    other_room = await create_room(practice.http, host, safety_checkin="optional")
    await invite(practice.http, host, other_room["id"], guest)
    assert (await practice.checkin(guest, room_id)).status_code == 200
    assert (await practice.checkin(guest, other_room["id"])).status_code == 200
    assert (await practice.checkin(guest, room_id)).status_code == 200  # replaces the first
    assert (await practice.licence(host, "US-CO")).status_code == 200

    export = (await practice.http.get("/v1/me/export", headers=guest.auth)).json()
    assert sorted(c["room_id"] for c in export["checkins"]) == sorted([room_id, other_room["id"]])
    assert export["checkins"][0]["emergency_contact"] == CHECKIN["emergency_contact"]
    staff = (await practice.http.get("/v1/me/export", headers=host.auth)).json()
    assert (staff["checkins"], staff["licensure"]) == ([], ["US-CO"])
    assert await count(practice.ctx, "safety_checkins") == 2

    assert (await practice.http.delete("/v1/me", headers=guest.auth)).status_code == 204
    assert await count(practice.ctx, "safety_checkins") == 0
    assert (await practice.http.delete("/v1/me", headers=host.auth)).status_code == 204
    assert await count(practice.ctx, "licensures") == 0


async def test_a_breach_takes_the_jurisdiction_of_the_latest_check_in_before_the_profiles(
    practice: Practice, clock: FrozenClock
) -> None:
    """Colorado's 30 days (C.R.S. 6-1-716) for a client who checked in from Denver, though their
    profile says New York (HIPAA's 60 days: no shorter state deadline is shipped for it)."""
    _, _, guest, _, room_id = await one_to_one(practice, "required")
    placed = await practice.http.put(
        "/v1/me/jurisdiction", json={"jurisdiction": "US-NY"}, headers=guest.auth
    )
    assert placed.status_code == 200, placed.text
    assert (await practice.checkin(guest, room_id)).status_code == 200
    discovered = clock.now()
    opened = await practice.http.post(
        "/v1/incidents",
        json={
            "summary": "A backup went missing.",
            "discovered_at": discovered.isoformat(),
            "severity": "high",
            "affected_account_ids": [guest.id],
        },
        headers=practice.admin.auth,
    )
    assert opened.status_code == 201, opened.text
    assert opened.json()["jurisdictions"] == ["US-CO"]
    assert datetime.fromisoformat(opened.json()["notify_by"]) == discovered + timedelta(days=30)
