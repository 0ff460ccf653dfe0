from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.consent.service import ConsentGate, consent_gate
from app.core.clock import FrozenClock
from app.core.close_codes import Close
from app.core.context import Context
from app.core.events import AccountClosed, Event
from app.models import Account
from tests.fixtures.accounts import User, register_client
from tests.fixtures.dump import column_bytes

Doc = dict[str, Any]


async def publish(
    client: httpx.AsyncClient,
    admin: User,
    kind: str = "informed_consent",
    locale: str = "en",
    *,
    title: str = "Informed consent",
    body: str = "What you say stays here, except when someone is in danger.",
) -> Doc:
    response = await client.post(
        "/v1/consent-documents",
        json={"kind": kind, "locale": locale, "title": title, "body": body},
        headers=admin.auth,
    )
    assert response.status_code == 201, response.text
    document: Doc = response.json()
    return document


async def listing(client: httpx.AsyncClient, **params: str) -> list[Doc]:
    response = await client.get("/v1/consent-documents", params=params)
    assert response.status_code == 200, response.text
    documents: list[Doc] = response.json()
    return documents


async def accept(client: httpx.AsyncClient, user: User, document_id: str) -> httpx.Response:
    return await client.post(
        "/v1/me/consents", json={"document_id": document_id}, headers=user.auth
    )


async def my_consents(client: httpx.AsyncClient, user: User) -> list[Doc]:
    response = await client.get("/v1/me/consents", headers=user.auth)
    assert response.status_code == 200, response.text
    found: list[Doc] = response.json()
    return found


async def gate(ctx: Context, user: User, *, group: bool, locale: str = "en") -> ConsentGate:
    async with ctx.transaction() as session:
        account = await session.get(Account, user.id)
        assert account is not None
        return await consent_gate(session, ctx.vault, account, group=group, locale=locale)


async def missing(ctx: Context, user: User, *, group: bool, locale: str = "en") -> list[str]:
    return (await gate(ctx, user, group=group, locale=locale)).missing


# -- publishing -----------------------------------------------------------------
async def test_admin_publishes_new_versions_per_kind_and_locale(
    client: httpx.AsyncClient, admin: User, clock: FrozenClock
) -> None:
    body = "Einwilligung – was Sie sagen, bleibt hier. Ünïcödé ✓"
    first = await publish(client, admin, locale="de", body=body)
    assert first["version"] == 1
    assert first["kind"] == "informed_consent"
    assert first["locale"] == "de"
    assert first["body"] == body
    assert first["sha256"] == hashlib.sha256(body.encode("utf-8")).hexdigest()
    assert datetime.fromisoformat(first["published_at"]) == clock.now()
    uuid.UUID(first["id"])

    second = await publish(client, admin, locale="de", body="v2")
    assert second["version"] == 2
    assert second["id"] != first["id"]
    assert second["sha256"] == hashlib.sha256(b"v2").hexdigest()
    # Versions count per (kind, locale).
    assert (await publish(client, admin, locale="en"))["version"] == 1
    assert (await publish(client, admin, "telehealth", "de"))["version"] == 1
    # Tags differing only in case are one locale, stored in canonical case.
    third = await publish(client, admin, locale="de-ch")
    assert third["locale"] == "de-CH"
    assert (await publish(client, admin, locale="de-CH"))["version"] == 2


async def test_only_an_admin_publishes(
    client: httpx.AsyncClient, client_user: User, counselor: User
) -> None:
    body = {"kind": "telehealth", "locale": "en", "title": "T", "body": "B"}
    for user in (client_user, counselor):
        refused = await client.post("/v1/consent-documents", json=body, headers=user.auth)
        assert refused.status_code == 403
        assert refused.json()["code"] == "forbidden"
    anonymous = await client.post("/v1/consent-documents", json=body)
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "token_invalid"
    assert await listing(client) == []


async def test_concurrent_publications_get_distinct_versions(
    client: httpx.AsyncClient, admin: User
) -> None:
    results = await asyncio.gather(
        *(publish(client, admin, body=f"text {n}") for n in range(5)),
    )
    assert sorted(doc["version"] for doc in results) == [1, 2, 3, 4, 5]
    (current,) = await listing(client)
    assert current["version"] == 5


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "telehealth", "locale": "en", "title": "T", "body": "B", "extra": 1},
        {"kind": "marketing", "locale": "en", "title": "T", "body": "B"},
        {"kind": 1, "locale": "en", "title": "T", "body": "B"},
        {"kind": "telehealth", "locale": "en", "title": "T", "body": "nul\x00byte"},
        {"kind": "telehealth", "locale": "en", "title": "nul\x00", "body": "B"},
        {"kind": "telehealth", "locale": "en", "title": "T", "body": "\ud800"},
        {"kind": "telehealth", "locale": "en", "title": "", "body": "B"},
        {"kind": "telehealth", "locale": "en", "title": "x" * 201, "body": "B"},
        {"kind": "telehealth", "locale": "en", "title": "T", "body": ""},
        {"kind": "telehealth", "locale": "en", "title": "T", "body": "x" * 100_001},
        {"kind": "telehealth", "locale": "EN", "title": "T", "body": "B"},
        {"kind": "telehealth", "locale": "english", "title": "T", "body": "B"},
        {"kind": "telehealth", "locale": "en_US", "title": "T", "body": "B"},
        {"kind": "telehealth", "locale": "en-" + "a" * 40, "title": "T", "body": "B"},
        {"kind": "telehealth", "locale": "en\x00", "title": "T", "body": "B"},
        {"kind": "telehealth", "title": "T", "body": "B"},
        [],
        "text",
    ],
)
async def test_bad_publications_get_422_and_change_nothing(
    client: httpx.AsyncClient, admin: User, body: object
) -> None:
    response = await client.post(
        "/v1/consent-documents",
        content=json.dumps(body),
        headers={**admin.auth, "content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert "nul" not in response.text
    assert await listing(client, locale="en") == []


async def test_a_body_over_the_request_limit_is_413(client: httpx.AsyncClient, admin: User) -> None:
    body = {"kind": "telehealth", "locale": "en", "title": "T", "body": "x" * (1024 * 1024)}
    response = await client.post("/v1/consent-documents", json=body, headers=admin.auth)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert await listing(client) == []


# -- reading --------------------------------------------------------------------
async def test_listing_shows_current_versions_with_english_fallback(
    client: httpx.AsyncClient, admin: User
) -> None:
    await publish(client, admin, "informed_consent", "en", body="informed en 1")
    informed_en = await publish(client, admin, "informed_consent", "en", body="informed en 2")
    telehealth_en = await publish(client, admin, "telehealth", "en")
    informed_de = await publish(client, admin, "informed_consent", "de")
    informed_de_at = await publish(client, admin, "informed_consent", "de-AT")

    # Anyone may read; only the newest version of each kind; kinds in enum order.
    assert await listing(client) == [informed_en, telehealth_en]
    assert await listing(client, locale="en") == [informed_en, telehealth_en]
    # German where there is German, English per kind where there is not.
    assert await listing(client, locale="de") == [informed_de, telehealth_en]
    # de-CH falls back to de, then en; case does not matter.
    assert await listing(client, locale="de-CH") == [informed_de, telehealth_en]
    assert await listing(client, locale="de-ch") == [informed_de, telehealth_en]
    assert await listing(client, locale="de-AT") == [informed_de_at, telehealth_en]
    assert await listing(client, locale="fr") == [informed_en, telehealth_en]
    # One kind only.
    assert await listing(client, kind="telehealth", locale="de") == [telehealth_en]
    assert await listing(client, kind="informed_consent", locale="de") == [informed_de]
    assert await listing(client, kind="group_agreement") == []


async def test_a_kind_only_published_in_another_language_is_not_listed_for_english(
    client: httpx.AsyncClient, admin: User
) -> None:
    group_fr = await publish(client, admin, "group_agreement", "fr")
    assert await listing(client) == []
    assert await listing(client, locale="fr-CA") == [group_fr]


@pytest.mark.parametrize(
    "params",
    [{"kind": "marketing"}, {"locale": "EN"}, {"locale": "x" * 36}, {"locale": "en\x00"}],
)
async def test_listing_refuses_bad_queries(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get("/v1/consent-documents", params=params)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


# -- accepting and withdrawing ------------------------------------------------------
async def test_client_accepts_a_document_and_sees_it_listed(
    client: httpx.AsyncClient, admin: User, client_user: User, clock: FrozenClock
) -> None:
    document = await publish(client, admin)
    response = await accept(client, client_user, document["id"])
    assert response.status_code == 201, response.text
    acceptance = response.json()
    assert acceptance["document_id"] == document["id"]
    assert acceptance["sha256"] == document["sha256"]
    assert datetime.fromisoformat(acceptance["accepted_at"]) == clock.now()
    assert await my_consents(client, client_user) == [acceptance]

    other = await register_client(client)
    assert await my_consents(client, other) == []


async def test_accepting_again_returns_the_original_acceptance(
    client: httpx.AsyncClient, admin: User, client_user: User, clock: FrozenClock
) -> None:
    document = await publish(client, admin)
    first = (await accept(client, client_user, document["id"])).json()
    clock.advance(60)
    again = await accept(client, client_user, document["id"].upper())
    assert again.status_code == 201
    assert again.json() == first
    assert await my_consents(client, client_user) == [first]


async def test_concurrent_acceptances_of_one_document_record_one(
    client: httpx.AsyncClient, admin: User, client_user: User
) -> None:
    document = await publish(client, admin)
    responses = await asyncio.gather(
        *(accept(client, client_user, document["id"]) for _ in range(4))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["accepted_at"] for r in responses}) == 1
    assert len(await my_consents(client, client_user)) == 1


async def test_accepting_needs_a_bearer_token(client: httpx.AsyncClient, admin: User) -> None:
    document = await publish(client, admin)
    response = await client.post("/v1/me/consents", json={"document_id": document["id"]})
    assert response.status_code == 401
    assert (await client.get("/v1/me/consents")).status_code == 401
    assert (await client.delete(f"/v1/me/consents/{document['id']}")).status_code == 401


async def test_unknown_or_malformed_document_ids_are_refused(
    client: httpx.AsyncClient, admin: User, client_user: User
) -> None:
    await publish(client, admin)
    unknown = await accept(client, client_user, str(uuid.uuid4()))
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "not_found"
    for bad in ("not-a-uuid", "", "x" * 5000, "nul\x00"):
        malformed = await accept(client, client_user, bad)
        assert malformed.status_code == 422, malformed.text
        assert malformed.json()["code"] == "validation_error"
    for body in ({"document_id": 5}, {"document_id": None}, {}, {"document_id": "", "x": 1}):
        response = await client.post("/v1/me/consents", json=body, headers=client_user.auth)
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"
    assert await my_consents(client, client_user) == []


async def test_client_withdraws_consent(
    ctx: Context, client: httpx.AsyncClient, admin: User, client_user: User
) -> None:
    events: list[Event] = []

    async def record(event: Event) -> None:
        events.append(event)

    ctx.publisher = record
    informed = await publish(client, admin)
    telehealth = await publish(client, admin, "telehealth")
    await accept(client, client_user, informed["id"])
    kept = (await accept(client, client_user, telehealth["id"])).json()

    response = await client.delete(f"/v1/me/consents/{informed['id']}", headers=client_user.auth)
    assert response.status_code == 204
    assert response.content == b""
    assert await my_consents(client, client_user) == [kept]
    assert events == [AccountClosed(client_user.id, Close(4003), "consent_withdrawn")]

    again = await client.delete(f"/v1/me/consents/{informed['id']}", headers=client_user.auth)
    assert again.status_code == 404
    assert again.json()["code"] == "not_found"
    for other in (str(uuid.uuid4()), "not-a-uuid"):
        refused = await client.delete(f"/v1/me/consents/{other}", headers=client_user.auth)
        assert refused.status_code == 404
        assert refused.json()["code"] == "not_found"
    assert len(events) == 1

    # Another person cannot withdraw someone else's acceptance.
    stranger = await register_client(client)
    refused = await client.delete(f"/v1/me/consents/{telehealth['id']}", headers=stranger.auth)
    assert refused.status_code == 404
    assert await my_consents(client, client_user) == [kept]

    # Accepting again after withdrawing works.
    assert (await accept(client, client_user, informed["id"])).status_code == 201
    assert len(await my_consents(client, client_user)) == 2


async def test_publishing_accepting_and_withdrawing_are_audited(
    ctx: Context, client: httpx.AsyncClient, admin: User, client_user: User
) -> None:
    document = await publish(client, admin)
    await accept(client, client_user, document["id"])
    await client.delete(f"/v1/me/consents/{document['id']}", headers=client_user.auth)
    async with ctx.transaction() as session:
        entries = await ctx.audit.entries(session, after=0, limit=1000)
        verification = await ctx.audit.verify(session)
    assert verification.ok
    by_action = {entry.action: entry for entry in entries}
    published = by_action["consent_document.publish"]
    assert (published.actor_id, published.target) == (admin.id, document["id"])
    for action in ("consent.accept", "consent.withdraw"):
        entry = by_action[action]
        assert (entry.actor_id, entry.target) == (client_user.id, client_user.id)
        assert entry.details["document_id"] == document["id"]


# -- what room tokens will require -----------------------------------------------------
async def test_what_is_not_published_cannot_be_consented_to(
    ctx: Context, client: httpx.AsyncClient, admin: User, client_user: User
) -> None:
    # Nothing published is not "nothing to accept": the gate stays shut.
    assert await gate(ctx, client_user, group=False) == ConsentGate(
        ["informed_consent", "telehealth"], []
    )
    assert await gate(ctx, client_user, group=True) == ConsentGate(
        ["informed_consent", "telehealth", "group_agreement"], []
    )
    informed = await publish(client, admin, "informed_consent")
    assert await gate(ctx, client_user, group=False) == ConsentGate(
        ["telehealth"], [informed["id"]]
    )
    await accept(client, client_user, informed["id"])
    telehealth = await publish(client, admin, "telehealth")
    assert await gate(ctx, client_user, group=False) == ConsentGate([], [telehealth["id"]])
    assert await gate(ctx, client_user, group=True) == ConsentGate(
        ["group_agreement"], [telehealth["id"]]
    )


async def test_missing_documents_follow_acceptances_versions_and_withdrawal(
    ctx: Context, client: httpx.AsyncClient, admin: User, client_user: User
) -> None:
    informed = await publish(client, admin, "informed_consent")
    telehealth = await publish(client, admin, "telehealth")
    group = await publish(client, admin, "group_agreement")
    assert await missing(ctx, client_user, group=False) == [informed["id"], telehealth["id"]]
    assert await missing(ctx, client_user, group=True) == [
        informed["id"],
        telehealth["id"],
        group["id"],
    ]

    await accept(client, client_user, informed["id"])
    assert await missing(ctx, client_user, group=False) == [telehealth["id"]]
    await accept(client, client_user, telehealth["id"])
    assert await missing(ctx, client_user, group=False) == []
    assert await missing(ctx, client_user, group=True) == [group["id"]]
    await accept(client, client_user, group["id"])
    assert await missing(ctx, client_user, group=True) == []

    # A new version must be accepted: the old acceptance no longer counts.
    informed_v2 = await publish(client, admin, "informed_consent", body="new terms")
    assert await missing(ctx, client_user, group=False) == [informed_v2["id"]]
    assert await missing(ctx, client_user, group=True) == [informed_v2["id"]]
    await accept(client, client_user, informed_v2["id"])
    assert await missing(ctx, client_user, group=True) == []

    # Withdrawing brings it back.
    response = await client.delete(f"/v1/me/consents/{group['id']}", headers=client_user.auth)
    assert response.status_code == 204
    assert await missing(ctx, client_user, group=False) == []
    assert await missing(ctx, client_user, group=True) == [group["id"]]

    # Each person's acceptances are their own.
    other = await register_client(client)
    assert await missing(ctx, other, group=False) == [informed_v2["id"], telehealth["id"]]


async def test_missing_documents_in_a_locale_and_acceptance_in_any_locale(
    ctx: Context, client: httpx.AsyncClient, admin: User, client_user: User
) -> None:
    informed_en = await publish(client, admin, "informed_consent", "en")
    informed_de = await publish(client, admin, "informed_consent", "de")
    telehealth_en = await publish(client, admin, "telehealth", "en")
    telehealth_fr = await publish(client, admin, "telehealth", "fr")
    assert await missing(ctx, client_user, group=False, locale="de-CH") == [
        informed_de["id"],
        telehealth_en["id"],
    ]
    assert await missing(ctx, client_user, group=False, locale="fr") == [
        informed_en["id"],
        telehealth_fr["id"],
    ]
    assert await missing(ctx, client_user, group=False, locale="not a tag") == [
        informed_en["id"],
        telehealth_en["id"],
    ]
    # The German text satisfies the kind, whatever locale is asked later.
    await accept(client, client_user, informed_de["id"])
    await accept(client, client_user, telehealth_fr["id"])
    assert await missing(ctx, client_user, group=False, locale="en") == []
    # A new English version does not void the current German acceptance...
    await publish(client, admin, "informed_consent", "en", body="en v2")
    assert await missing(ctx, client_user, group=False, locale="en") == []
    # ...but a new German one does.
    informed_de_v2 = await publish(client, admin, "informed_consent", "de", body="de v2")
    assert await missing(ctx, client_user, group=False, locale="de") == [informed_de_v2["id"]]


# -- the dump promise -----------------------------------------------------------------


async def test_a_dump_of_acceptances_shows_neither_who_nor_what(
    ctx: Context, client: httpx.AsyncClient, admin: User, client_user: User
) -> None:
    documents = [await publish(client, admin, kind) for kind in ("informed_consent", "telehealth")]
    for document in documents:
        assert (await accept(client, client_user, document["id"])).status_code == 201
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM consent_acceptances"))).all()
    assert len(rows) == 2
    secrets = [client_user.id, client_user.email]
    for document in documents:
        secrets += [document["id"], document["sha256"]]
    needles: list[bytes] = []
    for secret in secrets:
        needles += [secret.encode(), secret.replace("-", "").encode()]
    needles += [uuid.UUID(client_user.id).bytes]
    needles += [bytes.fromhex(document["sha256"]) for document in documents]
    for row in rows:
        dump = b"|".join(column_bytes(value) for value in row)
        for needle in needles:
            assert needle not in dump
