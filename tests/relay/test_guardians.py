"""A minor's room token needs a guardian's current consent, or the minor's own recorded one.

On a real server, SQLite and PostgreSQL: the admin marks a client as a minor
and links a guardian; the guardian's consent opens the minor's token, its
withdrawal closes the minor's socket; the practice's self-consent record
(with its legal basis) is the alternative; the guardian joins the minor's
room as `guardian`; both people's exports show the link and the roles;
erasure of either removes both sides of the link.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from app.models import GuardianLink, MinorProfile, WardLink
from tests.fixtures.server import closed_with, open_socket, recv
from tests.relay.conftest import Person, Practice
from tests.relay.test_roles import typed_invite

BASIS = "Colo. Rev. Stat. 27-65-103: a minor of 15 may consent to mental health services"


async def mark_minor(practice: Practice, minor: Person, **self_consent: Any) -> Any:
    response = await practice.http.put(
        f"/v1/admin/accounts/{minor.id}/minor",
        json={"minor": True, "self_consent": {"allowed": False, **self_consent}},
        headers=practice.admin.auth,
    )
    assert response.status_code == 200, response.text
    return response.json()


async def link(practice: Practice, minor: Person, guardian: Person) -> None:
    response = await practice.http.post(
        f"/v1/admin/accounts/{minor.id}/guardians",
        json={"guardian_account_id": guardian.id},
        headers=practice.admin.auth,
    )
    assert response.status_code == 201, response.text
    assert response.json()["consent_given_at"] is None


async def consent(practice: Practice, guardian: Person, minor: Person, *, give: bool) -> Any:
    method = practice.http.put if give else practice.http.delete
    response = await method(f"/v1/me/wards/{minor.id}/consent", headers=guardian.auth)
    assert response.status_code == 200, response.text
    return response.json()


async def minor_room(practice: Practice) -> tuple[Person, Person, Person, str]:
    counselor = await practice.counselor()
    minor = await practice.client("Minor")
    guardian = await practice.client("Guardian")
    room = await practice.room(counselor, waiting_room=False, max_participants=4)
    room_id: str = room["id"]
    await practice.invite(counselor, room_id, minor)
    return counselor, minor, guardian, room_id


async def test_a_minors_token_needs_the_guardians_current_consent(practice: Practice) -> None:
    counselor, minor, guardian, room_id = await minor_room(practice)
    assert (await practice.token_response(minor, room_id)).status_code == 200
    await mark_minor(practice, minor)
    await link(practice, minor, guardian)

    refused = await practice.token_response(minor, room_id)
    assert (refused.status_code, refused.json()["code"]) == (403, "guardian_consent_required")
    # Someone who is not the minor's guardian cannot consent: 404, as for no one.
    stranger = await practice.client("Stranger")
    response = await practice.http.put(f"/v1/me/wards/{minor.id}/consent", headers=stranger.auth)
    assert response.status_code == 404
    assert (await practice.token_response(minor, room_id)).status_code == 403

    given = await consent(practice, guardian, minor, give=True)
    assert given["account_id"] == minor.id
    assert given["consent_given_at"] is not None
    wards = await practice.http.get("/v1/me/wards", headers=guardian.auth)
    assert [w["account_id"] for w in wards.json()] == [minor.id]
    ws = await open_socket(practice.base, room_id, await practice.token(minor, room_id))
    assert (await recv(ws))["type"] == "welcome"

    await consent(practice, guardian, minor, give=False)
    assert await closed_with(ws) == 4003
    refused = await practice.token_response(minor, room_id)
    assert refused.json()["code"] == "guardian_consent_required"
    # The host is no minor: untouched.
    assert (await practice.token_response(counselor, room_id)).status_code == 200


async def test_the_practice_may_record_that_the_minor_consents_for_themselves(
    practice: Practice,
) -> None:
    _, minor, _, room_id = await minor_room(practice)
    await mark_minor(practice, minor)
    assert (await practice.token_response(minor, room_id)).status_code == 403
    # Allowed without its basis: refused, nothing changed.
    response = await practice.http.put(
        f"/v1/admin/accounts/{minor.id}/minor",
        json={"minor": True, "self_consent": {"allowed": True}},
        headers=practice.admin.auth,
    )
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")
    assert (await practice.token_response(minor, room_id)).status_code == 403

    marked = await mark_minor(practice, minor, allowed=True, basis=BASIS)
    assert marked["self_consent"] == {"allowed": True, "basis": BASIS}
    assert (await practice.token_response(minor, room_id)).status_code == 200
    # Only admins mark minors.
    response = await practice.http.put(
        f"/v1/admin/accounts/{minor.id}/minor", json={"minor": False}, headers=minor.auth
    )
    assert response.status_code == 403


async def test_the_guardian_joins_as_guardian_and_both_exports_show_the_link(
    practice: Practice,
) -> None:
    counselor, minor, guardian, room_id = await minor_room(practice)
    await mark_minor(practice, minor)
    await link(practice, minor, guardian)
    await consent(practice, guardian, minor, give=True)
    await typed_invite(practice, counselor, room_id, guardian, role="guardian")
    ws = await open_socket(practice.base, room_id, await practice.token(guardian, room_id))
    welcome = await recv(ws)
    assert welcome["you"]["role"] == "guardian"
    await ws.close()

    mine = (await practice.http.get("/v1/me/export", headers=minor.auth)).json()
    assert mine["guardianship"]["minor"]["minor"] is True
    assert [g["account_id"] for g in mine["guardianship"]["guardians"]] == [guardian.id]
    assert mine["guardianship"]["guardians"][0]["consent_given_at"] is not None
    roles = {p["account_id"]: p["role"] for p in mine["rooms"][0]["participants"]}
    assert roles == {counselor.id: "host", minor.id: "participant", guardian.id: "guardian"}
    theirs = (await practice.http.get("/v1/me/export", headers=guardian.auth)).json()
    assert [w["account_id"] for w in theirs["guardianship"]["wards"]] == [minor.id]
    assert theirs["guardianship"]["minor"] is None
    assert {p["role"] for p in theirs["rooms"][0]["participants"]} >= {"guardian"}

    # The minor's access log shows the link, the consent and the marking.
    log = (await practice.http.get("/v1/me/access-log", headers=minor.auth)).json()
    actions = {entry["action"] for entry in log}
    assert {"account.minor_set", "guardian.link", "guardian.consent_give"} <= actions


async def test_a_guardian_invitation_of_someone_elses_guardian_is_a_decoy(
    practice: Practice,
) -> None:
    counselor, _minor, guardian, room_id = await minor_room(practice)
    added = await practice.http.post(
        f"/v1/rooms/{room_id}/participants",
        json={"account_id": guardian.id, "role": "guardian"},
        headers=counselor.auth,
    )
    assert added.status_code == 202
    assert (await practice.http.get("/v1/me/invitations", headers=guardian.auth)).json() == []


async def _rows(practice: Practice) -> tuple[int, int, int]:
    async with practice.context.transaction() as session:
        counts = [
            await session.scalar(select(func.count()).select_from(model))
            for model in (MinorProfile, GuardianLink, WardLink)
        ]
    return counts[0] or 0, counts[1] or 0, counts[2] or 0


async def test_erasing_the_guardian_or_the_minor_removes_both_sides(practice: Practice) -> None:
    _, minor, guardian, _ = await minor_room(practice)
    other = await practice.client("Other guardian")
    await mark_minor(practice, minor)
    await link(practice, minor, guardian)
    await link(practice, minor, other)
    assert await _rows(practice) == (1, 2, 2)

    erased = await practice.http.delete("/v1/me", headers=guardian.auth)
    assert erased.status_code == 204, erased.text
    assert await _rows(practice) == (1, 1, 1)
    listed = await practice.http.get(
        f"/v1/admin/accounts/{minor.id}/guardians", headers=practice.admin.auth
    )
    assert [g["account_id"] for g in listed.json()["guardians"]] == [other.id]

    erased = await practice.http.delete("/v1/me", headers=minor.auth)
    assert erased.status_code == 204, erased.text
    assert await _rows(practice) == (0, 0, 0)
    assert (await practice.http.get("/v1/me/wards", headers=other.auth)).json() == []
