"""GET /v1/me/export: everything held about the caller, decrypted, in one document."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

import httpx

from app.core.clock import FrozenClock
from app.core.context import Context
from app.keys.log import LogState
from tests.fixtures.accounts import User, register_client
from tests.keys.test_key_log_api import checked
from tests.privacy.helpers import (
    Json,
    accept,
    access_log,
    add_device,
    audit_entries,
    disclosure,
    get_json,
    publish,
    record_disclosure,
    share_a_room,
)


async def export(client: httpx.AsyncClient, user: User) -> Json:
    response = await client.get("/v1/me/export", headers=user.auth)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"] == 'attachment; filename="confide-export.json"'
    document: Json = response.json()
    return document


async def test_the_export_holds_every_record_decrypted_and_matches_each_endpoint(
    client: httpx.AsyncClient, counselor: User, admin: User, clock: FrozenClock, ctx: Context
) -> None:
    person = await register_client(client, display_name="Zoë Ångström")
    phone = await add_device(client, person, "Zoë's phone ✓")
    clock.advance(5)
    laptop = await add_device(client, person, "Old laptop")
    revoked = await client.delete(f"/v1/devices/{laptop['device_id']}", headers=person.auth)
    assert revoked.status_code == 204

    text = "What you tell your counselor stays confidential, except …"
    document = await publish(client, admin, "informed_consent", text)
    accepted = await accept(client, person, document["id"])

    starts = clock.now() + timedelta(days=1)
    room_id = await share_a_room(
        client,
        counselor,
        person,
        title="Grief work, session 3",
        starts_at=starts.isoformat(),
        ends_at=(starts + timedelta(hours=1)).isoformat(),
    )
    shown = await record_disclosure(
        client, admin, person.id, disclosure(clock, recipient="Dr Émile Zola, ER")
    )
    withheld = await record_disclosure(
        client,
        admin,
        person.id,
        disclosure(
            clock,
            recipient="Detective on the case",
            basis="law_enforcement",
            withhold_until=(clock.now() + timedelta(days=30)).isoformat(),
        ),
    )

    checked_in = await client.put(
        f"/v1/rooms/{room_id}/checkin",
        json={
            "location": {"address": "Rue de Rivoli 1, Paris", "jurisdiction": "FR-75C"},
            "emergency_contact": {"name": "Émile", "phone": "+33 1 23 45 67 89"},
            "callback_phone": "+33 6 12 34 56 78",
        },
        headers=person.auth,
    )
    assert checked_in.status_code == 200, checked_in.text

    filed = await client.post(
        "/v1/me/rights-requests",
        json={"kind": "amendment", "details": "Correct my first session's date ✓"},
        headers=person.auth,
    )
    assert filed.status_code == 201, filed.text
    placed = await client.put(
        "/v1/me/jurisdiction", json={"jurisdiction": "US-CO"}, headers=person.auth
    )
    assert placed.status_code == 200, placed.text

    # What each endpoint answers, then the export.
    me = await get_json(client, person, "/v1/me")
    checkin = await get_json(client, person, f"/v1/rooms/{room_id}/checkin")
    requests = await get_json(client, person, "/v1/me/rights-requests")
    place = await get_json(client, person, "/v1/me/jurisdiction")
    devices = await get_json(client, person, "/v1/devices")
    rooms = await get_json(client, person, "/v1/rooms")
    consents = await get_json(client, person, "/v1/me/consents")
    disclosures = await get_json(client, person, "/v1/me/disclosures")
    notices = await get_json(client, person, "/v1/me/notices")
    logins = await get_json(client, person, "/v1/me/logins")
    log = await access_log(client, person)
    clock.advance(60)
    found = await export(client, person)

    assert list(found) == [
        "exported_at",
        "account",
        "devices",
        "rooms",
        "consents",
        "disclosures",
        "notices",
        "access_log",
        "key_log",
        "factors",
        "logins",
        "checkins",
        "licensure",
        "guardianship",
        "jurisdiction",
        "rights_requests",
    ]
    assert found["factors"] == {"factors": [], "recovery_codes_remaining": 0}
    assert found["logins"] == logins
    assert datetime.fromisoformat(found["exported_at"]) == clock.now()
    assert found["checkins"] == [checkin]
    assert checkin["emergency_contact"]["name"] == "Émile"
    assert found["licensure"] == []
    assert found["guardianship"] == {"minor": None, "guardians": [], "wards": []}

    assert found["account"] == me
    assert found["account"]["email"] == person.email
    assert found["account"]["display_name"] == "Zoë Ångström"

    # Every device, the revoked one too; the active ones as GET /v1/devices shows them.
    assert [d["device_id"] for d in found["devices"]] == [phone["device_id"], laptop["device_id"]]
    assert [d["label"] for d in found["devices"]] == ["Zoë's phone ✓", "Old laptop"]
    assert found["devices"][0]["revoked_at"] is None
    assert datetime.fromisoformat(found["devices"][1]["revoked_at"]) == clock.now() - timedelta(
        seconds=60
    )
    active = [{k: v for k, v in d.items() if k != "revoked_at"} for d in found["devices"][:1]]
    assert active == devices == [phone]

    assert found["rooms"] == rooms
    (room,) = found["rooms"]
    assert room["id"] == room_id
    assert room["title"] == "Grief work, session 3"
    assert datetime.fromisoformat(room["starts_at"]) == starts
    assert datetime.fromisoformat(room["ends_at"]) == starts + timedelta(hours=1)
    assert {p["display_name"] for p in room["participants"]} == {
        "Counselor Person",
        "Zoë Ångström",
    }

    (consent,) = found["consents"]
    assert {k: consent[k] for k in ("document_id", "sha256", "accepted_at")} == consents[0]
    assert consents == [accepted]
    assert consent["sha256"] == hashlib.sha256(text.encode()).hexdigest() == document["sha256"]
    assert (consent["kind"], consent["locale"], consent["version"], consent["title"]) == (
        "informed_consent",
        "en",
        1,
        "The informed_consent",
    )

    assert found["disclosures"] == disclosures == [shown]
    assert found["disclosures"][0]["description"] == shown["description"]
    assert withheld["id"] not in json.dumps(found)
    assert "Detective on the case" not in json.dumps(found)

    assert found["rights_requests"] == requests == [filed.json()]
    assert found["rights_requests"][0]["details"] == "Correct my first session's date ✓"
    assert found["jurisdiction"] == place["jurisdiction"] == "US-CO"

    assert found["notices"] == notices
    (notice,) = found["notices"]
    assert notice["disclosure_id"] == shown["id"]
    assert "Dr Émile Zola, ER" in notice["message"]

    # The access log as GET /v1/me/access-log had it, plus the reads made since.
    assert found["access_log"][: len(log)] == log
    since = [e["action"] for e in found["access_log"][len(log) :]]
    assert since == ["access_log.read"]
    after = await access_log(client, person)
    assert after[: len(found["access_log"])] == found["access_log"]
    assert [e["action"] for e in after[len(found["access_log"]) :]] == [
        "disclosure.read",
        "rights_request.read",
        "consent.read",
        "notice.read",
        "checkin.read",
        "account.export",
    ]

    # The caller's own key log, entries as served and the signed head.
    served = await get_json(client, person, f"/v1/accounts/{person.id}/key-log")
    assert found["key_log"]["account_id"] == person.id
    assert found["key_log"]["entries"] == served["entries"]
    assert [e["kind"] for e in served["entries"]] == [
        "identity_set",
        "device_added",
        "device_added",
        "device_revoked",
    ]
    assert {k: found["key_log"]["head"][k] for k in ("seq", "hash")} == {
        k: served["head"][k] for k in ("seq", "hash")
    }
    state = checked(ctx, LogState(person.id), found["key_log"])
    assert list(state.devices) == [phone["device_id"]]

    exports = [e for e in await audit_entries(client, admin) if e["action"] == "account.export"]
    assert [(e["actor"], e["actor_role"], e["target"]) for e in exports] == [
        (person.id, "client", person.id)
    ]


async def test_a_counselors_export_has_their_rooms_and_no_accounting(
    client: httpx.AsyncClient, counselor: User
) -> None:
    person = await register_client(client)
    room_id = await share_a_room(client, counselor, person, title="Intake")
    found = await export(client, counselor)
    assert found["account"]["id"] == counselor.id
    assert found["account"]["role"] == "counselor"
    assert [r["id"] for r in found["rooms"]] == [room_id]
    assert found["disclosures"] == []
    assert found["consents"] == []
    assert found["notices"] == []
    assert found["devices"] == []
    assert found["key_log"] == {"account_id": counselor.id, "entries": [], "head": None}


async def test_an_export_shows_only_the_callers_own_records(
    client: httpx.AsyncClient, counselor: User, admin: User, clock: FrozenClock
) -> None:
    person = await register_client(client, display_name="Person One")
    other = await register_client(client, display_name="Person Two")
    await add_device(client, other, "Their tablet")
    await share_a_room(client, counselor, other, title="Their session")
    await record_disclosure(client, admin, other.id, disclosure(clock, recipient="Their recipient"))
    text = json.dumps(await export(client, person), ensure_ascii=False)
    for needle in (other.id, other.email, "Person Two", "Their tablet", "Their session"):
        assert needle not in text
    assert "Their recipient" not in text


async def test_anonymous_callers_get_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/me/export")
    assert response.status_code == 401
    assert response.json()["code"] == "token_invalid"
    assert "content-disposition" not in response.headers
