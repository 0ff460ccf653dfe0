"""The attacker's test: from a dump alone, nobody is linked to a session or a record.

A practice of 21 people runs a story (consents, devices and key changes, their MLS
KeyPackages, claims of them in rooms, 10 rooms, individual
and group, invitations accepted, declined and left pending, decoy invitations,
admissions, room tokens, refreshes, disclosures with their notices, rights
requests moved, extended, denied and disagreed with, jurisdictions, an
incident with its notices, counselors' licensure, clients' safety check-ins in
rooms that require them, read by their hosts, one erasure, password changes and resets,
log-ins ended, an account disabled and enabled, a role changed) on SQLite and on PostgreSQL. Then
a linker reads every table as a thief would (SQLite: the file, in rowid
order; PostgreSQL: every row with its physical position and the transaction
ids `xmin`/`xmax` that the data files hold) and tries everything it can:
- every value of every column against every value of every other column,
  and every value as a substring of every other (an id inside a blob);
- byte prefixes of sealed values (a key id or any shared header);
- plain times, equal to the second;
- rows written by one transaction (PostgreSQL `xmin`, and `xmax` = `xmin`);
- row order: the i-th row of one table against the i-th of every other.

It must recover no membership or invitation pair (an account beside a room
it is in or invited to) and no owner of a personal record (a device, log-in,
acceptance, notice, disclosure, membership, list-of-rooms, invitation, care
relationship, key-log row, MLS KeyPackage or KeyPackage claim row, webhook delivery,
password reset, safety check-in, licensure, rights request or stored idempotent answer
beside its account), and its
guesses from row order must do no better than chance (decision note 0007).
"""

from __future__ import annotations

import random
import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import httpx
from sqlalchemy import text

from app.core.clock import FrozenClock
from app.core.codec import b64url_encode
from app.core.context import Context
from app.models import Base, Role
from tests.fixtures.accounts import User, login, make_account, register_client
from tests.fixtures.authenticator import SoftAuthenticator
from tests.fixtures.dump import column_bytes
from tests.fixtures.identity import b64, device_body, identity_of, new_device, point
from tests.fixtures.mls import key_package
from tests.mfa.helpers import enrol_passkey, enrol_totp

SEED = 20261201
PERSONAL = {
    "devices",
    "login_families",
    "refresh_tokens",
    "consent_acceptances",
    "notices",
    "disclosures",
    "account_rooms",
    "room_members",
    "room_invitations",
    "care_relationships",
    "key_packages",
    "key_package_claims",
    "key_log_entries",
    "webhook_deliveries",
    "auth_factors",
    "password_resets",
    "safety_checkins",
    "licensures",
    "minor_profiles",
    "guardian_links",
    "ward_links",
    "rights_requests",
    "idempotency_keys",
}


@dataclass(frozen=True)
class Row:
    table: str
    rank: int
    cells: dict[str, bytes]
    xmin: str | None = None
    xmax: str | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.table, self.rank)


@dataclass
class Truth:
    accounts: set[str] = field(default_factory=set)
    rooms: set[str] = field(default_factory=set)
    members: set[tuple[str, str]] = field(default_factory=set)
    invited: set[tuple[str, str]] = field(default_factory=set)  # pending invitations
    #: People whose link the dump must not show: guardian and minor, supervisor and client.
    pairs: set[tuple[str, str]] = field(default_factory=set)


# -- the story -------------------------------------------------------------------------


async def _call(
    http: httpx.AsyncClient, method: str, path: str, user: User, key: str = "", **kwargs: Any
) -> Any:
    """The call's answer; with `key`, sent twice with that `Idempotency-Key` (a retry)."""
    headers = {**user.auth, "Idempotency-Key": key} if key else user.auth
    response = await http.request(method, path, headers=headers, **kwargs)
    assert response.status_code < 300, f"{method} {path}: {response.text}"
    if key:
        again = await http.request(method, path, headers=headers, **kwargs)
        assert again.headers.get("idempotent-replayed") == "true", again.text
        assert again.json() == response.json()
    return response.json() if response.content else None


async def _story(ctx: Context, http: httpx.AsyncClient) -> Truth:
    rng = random.Random(SEED)
    truth = Truth()
    admin = await make_account(ctx, http, Role.admin, display_name="Admin Ada")
    # Every event of the story waits in the outbox for this endpoint (nothing listens).
    await _call(
        http, "POST", "/v1/admin/webhooks", admin, json={"url": "https://hooks.example.org/in"}
    )
    documents = {}
    for kind in ("informed_consent", "telehealth", "group_agreement"):
        doc = await _call(
            http,
            "POST",
            "/v1/consent-documents",
            admin,
            json={"kind": kind, "locale": "en", "title": kind, "body": f"The {kind} terms."},
        )
        documents[kind] = doc["id"]
    people: list[tuple[str, int]] = [("counselor", i) for i in range(4)]
    people += [("client", i) for i in range(16)]
    rng.shuffle(people)  # accounts are created in an order unrelated to the rooms
    counselors: list[User] = []
    clients: list[User] = []
    for role, i in people:
        if role == "counselor":
            counselors.append(await make_account(ctx, http, Role.counselor, display_name=f"Dr {i}"))
        else:
            clients.append(await register_client(http, display_name=f"Client {i}"))
    truth.accounts = {u.id for u in [admin, *counselors, *clients]}
    devices: dict[str, str] = {}
    for user in rng.sample([*counselors, *clients], k=len(counselors) + len(clients)):
        key = f"{rng.getrandbits(256):064x}"
        device = await _call(
            http, "POST", "/v1/devices", user, json=device_body(user.id, "Phone", key)
        )
        devices[user.id] = device["device_id"]
    # Every kind of key-log entry: a device added and revoked, an identity key reset.
    for user in rng.sample([*counselors, *clients], k=3):
        key = f"{rng.getrandbits(256):064x}"
        tablet = await _call(
            http, "POST", "/v1/devices", user, json=device_body(user.id, "Tablet", key)
        )
        await _call(http, "DELETE", f"/v1/devices/{tablet['device_id']}", user)
    for user in rng.sample(clients, k=2):
        identity = identity_of(user.id, generation=1)
        key = f"{rng.getrandbits(256):064x}"
        device = {"label": "New phone", **new_device(user.id, key, identity)}
        reset = {"identity_key": b64(point(identity)), "device": device}
        new = await _call(http, "POST", "/v1/me/identity/reset", user, json=reset)
        devices[user.id] = new["device_id"]
    for user in rng.sample(clients, k=len(clients)):
        for document_id in documents.values():
            await _call(http, "POST", "/v1/me/consents", user, json={"document_id": document_id})

    now = ctx.clock.now()
    pool = clients[:]
    rng.shuffle(pool)
    rooms: list[tuple[str, User, list[User]]] = []
    for n in range(10):
        host = counselors[n % len(counselors)]
        kind = "group" if n % 3 == 2 else "individual"
        size = 3 if kind == "group" else 1
        guests = [pool.pop() if pool else rng.choice(clients) for _ in range(size)]
        guests = list({g.id: g for g in guests}.values())
        room = await _call(
            http,
            "POST",
            "/v1/rooms",
            host,
            key=f"room-{n}",
            json={
                "title": f"Session {n}",
                "kind": kind,
                "starts_at": (now + timedelta(minutes=5)).isoformat(),
                "ends_at": (now + timedelta(minutes=55 + n)).isoformat(),
                "waiting_room": n % 2 == 0,
                "safety_checkin": ("required", "optional", "off")[n % 3],
            },
        )
        rooms.append((room["id"], host, guests))
        truth.rooms.add(room["id"])
        truth.members.add((host.id, room["id"]))
    # Participants are added in an order that interleaves the rooms.
    adds = [(room_id, host, guest) for room_id, host, guests in rooms for guest in guests]
    rng.shuffle(adds)
    for room_id, host, guest in adds:
        # The host invites; the guest accepts (a client already the host's is added at once).
        added = await _call(
            http,
            "POST",
            f"/v1/rooms/{room_id}/participants",
            host,
            key=f"add-{guest.id}",
            json={"account_id": guest.id},
        )
        if "invitation_id" in added:
            await _call(http, "POST", f"/v1/me/invitations/{added['invitation_id']}/accept", guest)
        truth.members.add((guest.id, room_id))
        if rng.random() < 0.5:
            await _call(http, "POST", f"/v1/rooms/{room_id}/participants/{guest.id}/admit", host)
    # Invitations left pending, one declined, and decoys (no one's address, an admin's).
    groups = [(room_id, host, guests) for room_id, host, guests in rooms if len(guests) > 1]
    for room_id, host, guests in rng.sample(groups, k=2):
        outsiders = [c for c in clients if c not in guests]
        for n, invitee in enumerate(rng.sample(outsiders, k=2)):
            invited = await _call(
                http,
                "POST",
                f"/v1/rooms/{room_id}/participants",
                host,
                json={"email": invitee.email},
            )
            if "invitation_id" not in invited:  # already this host's client: added
                truth.members.add((invitee.id, room_id))
            elif n == 0:
                truth.invited.add((invitee.id, room_id))
            else:
                path = f"/v1/me/invitations/{invited['invitation_id']}/decline"
                await _call(http, "POST", path, invitee)
        for email in ("nobody@example.org", admin.email):
            await _call(
                http, "POST", f"/v1/rooms/{room_id}/participants", host, json={"email": email}
            )
    assert truth.invited, "the story leaves an invitation pending"
    # Licensure of three counselors; check-ins by most clients, read by the hosts.
    jurisdictions = ["US-CO", "US-NY", "US-FL", "CA-ON"]
    for counselor in rng.sample(counselors, k=3):
        await _call(
            http,
            "PUT",
            f"/v1/admin/accounts/{counselor.id}/licensure",
            admin,
            json={"jurisdictions": rng.sample(jurisdictions, k=2)},
        )
    checkins = [(room_id, guest) for room_id, _host, guests in rooms for guest in guests]
    checked_in: set[tuple[str, str]] = set()
    for room_id, guest in rng.sample(checkins, k=len(checkins)):
        if rng.random() < 0.8:
            checked_in.add((room_id, guest.id))
            await _call(
                http,
                "PUT",
                f"/v1/rooms/{room_id}/checkin",
                guest,
                json={
                    "location": {
                        "address": f"{rng.randrange(1, 999)} Main St",
                        "jurisdiction": rng.choice(jurisdictions),
                    },
                    "emergency_contact": {"name": "Kin", "phone": "+1 303 555 0100"},
                    "callback_phone": f"+1 303 555 {rng.randrange(1000, 9999)}",
                },
            )
    for room_id, host, _guests in rng.sample(rooms, k=len(rooms)):
        await _call(http, "GET", f"/v1/rooms/{room_id}/checkins", host)
    for n, (room_id, host, guests) in enumerate(rooms):
        for user in [host, *guests]:
            # A required check-in gates a client's token (a host's never).
            gated = n % 3 == 0 and user is not host and (room_id, user.id) not in checked_in
            if rng.random() < 0.6 and not gated:
                await _call(
                    http,
                    "POST",
                    f"/v1/rooms/{room_id}/token",
                    user,
                    json={"device_id": devices[user.id]},
                )
    # MLS KeyPackages: every device keeps a few and a last-resort one (whose
    # credential names its account); each host claims those of the admitted
    # participants of its rooms.
    for user in rng.sample([*counselors, *clients], k=len(counselors) + len(clients)):
        credential = user.id.encode()
        await _call(
            http,
            "POST",
            f"/v1/devices/{devices[user.id]}/key-packages",
            user,
            json={
                "key_packages": [b64url_encode(key_package(2, credential)) for _ in range(3)],
                "last_resort": b64url_encode(key_package(2, credential + b"/last")),
            },
        )
    for room_id, host, _guests in rng.sample(rooms, k=len(rooms)):
        room = await _call(http, "GET", f"/v1/rooms/{room_id}", host)
        others = [
            p["account_id"]
            for p in room["participants"]
            if p["admitted"] and p["account_id"] != host.id
        ]
        if others:
            await _call(
                http,
                "POST",
                f"/v1/rooms/{room_id}/key-packages/claim",
                host,
                json={"device_ids": [devices[a] for a in others]},
            )
    await _typed_participants(http, rng, truth, admin, counselors, clients, rooms, devices)
    for user in rng.sample(clients, k=6):
        refreshed = await http.post("/v1/auth/refresh", json={"refresh_token": user.refresh_token})
        assert refreshed.status_code == 200, refreshed.text
    for _room_id, host, guests in rng.sample(rooms, k=3):
        await _call(
            http,
            "POST",
            f"/v1/accounts/{guests[0].id}/disclosures",
            host,
            json={
                "basis": "imminent_harm",
                "recipient": "County crisis team",
                "purpose": "Safety",
                "description": "A plan was described.",
                "disclosed_at": now.isoformat(),
            },
        )
    # Rights requests of every kind, filed in an order unrelated to the accounts'; the
    # practice reviews, extends, grants and denies some; a denied amendment is disputed.
    kinds = ["access", "amendment", "restriction", "accounting"]
    filed: list[tuple[User, dict[str, Any]]] = []
    for n, user in enumerate(rng.sample(clients, k=8)):
        body = {"kind": kinds[n % 4], "details": f"Request {n}"}
        filed.append((user, await _call(http, "POST", "/v1/me/rights-requests", user, json=body)))
    path = "/v1/admin/rights-requests"
    for user, request in rng.sample(filed, k=6):
        rid = request["id"]
        await _call(http, "PATCH", f"{path}/{rid}", admin, json={"state": "in_review"})
        if request["kind"] != "restriction":
            await _call(http, "POST", f"{path}/{rid}/extension", admin, json={"reason": "Busy"})
        if request["kind"] == "amendment":
            move = {"state": "denied", "reason": "Accurate"}
            await _call(http, "PATCH", f"{path}/{rid}", admin, json=move)
            statement = {"statement": "I disagree"}
            await _call(
                http, "POST", f"/v1/me/rights-requests/{rid}/disagreement", user, json=statement
            )
        elif rng.random() < 0.5:
            await _call(http, "PATCH", f"{path}/{rid}", admin, json={"state": "granted"})
    await _call(http, "GET", path, admin)
    for user in rng.sample(clients, k=6):
        place = {"jurisdiction": rng.choice(["US-CO", "US-FL", "US-VT"])}
        await _call(http, "PUT", "/v1/me/jurisdiction", user, json=place)
    affected = rng.sample(clients, k=4)
    incident = await _call(
        http,
        "POST",
        "/v1/incidents",
        admin,
        json={
            "summary": "Laptop stolen",
            "discovered_at": now.isoformat(),
            "severity": "high",
            "affected_account_ids": [u.id for u in affected],
        },
    )
    await _call(
        http, "POST", f"/v1/incidents/{incident['id']}/notify", admin, json={"message": "Sorry."}
    )
    for user in affected:
        await _call(http, "GET", "/v1/me/notices", user)
    # Second factors: a counselor's TOTP, clients' passkeys (one of them is erased below).
    await enrol_totp(http, counselors[0], cast(FrozenClock, ctx.clock))
    for user in clients[:3]:
        await enrol_passkey(http, user, SoftAuthenticator())
    erased = next(g for _, _, guests in rooms for g in guests if g not in affected)
    await _call(http, "DELETE", "/v1/me", erased)
    await _lifecycle(http, admin, counselors, affected)
    return truth


async def _lifecycle(
    http: httpx.AsyncClient, admin: User, counselors: list[User], clients: list[User]
) -> None:
    """Password changes and resets, log-ins ended, an account disabled and enabled, a role
    changed back and forth; one reset is left pending."""
    changer, ender = clients[:2]
    await login(http, User(changer.id, changer.email, changer.password, "", "client"))
    new_password = "seven purple otters juggle quietly"
    await _call(
        http,
        "PUT",
        "/v1/me/password",
        changer,
        json={"current_password": changer.password, "new_password": new_password},
    )
    second = await login(http, User(ender.id, ender.email, ender.password, "", "client"))
    logins = await _call(http, "GET", "/v1/me/logins", second)
    other = next(item["id"] for item in logins if not item["current"])
    await _call(http, "DELETE", f"/v1/me/logins/{other}", second)
    pending, reset, moved = counselors[:3]
    await _call(http, "POST", f"/v1/admin/accounts/{pending.id}/password-reset", admin)
    used = await _call(http, "POST", f"/v1/admin/accounts/{reset.id}/password-reset", admin)
    spent = await http.post(
        "/v1/auth/password-reset",
        json={"reset_token": used["reset_token"], "new_password": new_password},
    )
    assert spent.status_code == 204, spent.text
    await _call(http, "POST", f"/v1/admin/accounts/{reset.id}/disable", admin)
    await _call(http, "POST", f"/v1/admin/accounts/{reset.id}/enable", admin)
    for role in ("admin", "counselor"):
        await _call(http, "PUT", f"/v1/admin/accounts/{moved.id}/role", admin, json={"role": role})
    await _call(http, "GET", "/v1/admin/accounts", admin)


async def _typed_participants(
    http: httpx.AsyncClient,
    rng: random.Random,
    truth: Truth,
    admin: User,
    counselors: list[User],
    clients: list[User],
    rooms: list[tuple[str, User, list[User]]],
    devices: dict[str, str],
) -> None:
    """A supervisor behind its clients' consent, an interpreter, guardians of minors."""
    by_id = {c.id: c for c in clients}
    groups = [(room_id, host) for room_id, host, guests in rooms if len(guests) > 1]
    sup_room, sup_host = groups[0]
    supervisor = next(c for c in counselors if c is not sup_host)
    invited = await _call(
        http,
        "POST",
        f"/v1/rooms/{sup_room}/participants",
        sup_host,
        json={"account_id": supervisor.id, "role": "supervisor", "consent_note": "Agreed."},
    )
    await _call(http, "POST", f"/v1/me/invitations/{invited['invitation_id']}/accept", supervisor)
    truth.members.add((supervisor.id, sup_room))
    room = await _call(http, "GET", f"/v1/rooms/{sup_room}", sup_host)
    for p in room["participants"]:
        if p["role"] == "participant":
            client = by_id[p["account_id"]]
            await _call(http, "PUT", f"/v1/rooms/{sup_room}/supervision-consent", client)
            truth.pairs.add((supervisor.id, client.id))
    await _call(
        http,
        "POST",
        f"/v1/rooms/{sup_room}/token",
        supervisor,
        json={"device_id": devices[supervisor.id]},
    )
    int_room, int_host = groups[-1]
    interpreter = next(
        c
        for c in rng.sample(clients, k=len(clients))
        if (c.id, int_room) not in truth.members | truth.invited
    )
    invited = await _call(
        http,
        "POST",
        f"/v1/rooms/{int_room}/participants",
        int_host,
        json={
            "account_id": interpreter.id,
            "role": "interpreter",
            "consent_note": "Agreed.",
            "qualification": {"qualified": True, "basis": "Certified"},
        },
    )
    await _call(http, "POST", f"/v1/me/invitations/{invited['invitation_id']}/accept", interpreter)
    truth.members.add((interpreter.id, int_room))
    chosen = rng.sample(clients, k=4)
    for minor, guardian in (chosen[:2], chosen[2:]):
        await _call(
            http, "PUT", f"/v1/admin/accounts/{minor.id}/minor", admin, json={"minor": True}
        )
        await _call(
            http,
            "POST",
            f"/v1/admin/accounts/{minor.id}/guardians",
            admin,
            json={"guardian_account_id": guardian.id},
        )
        await _call(http, "PUT", f"/v1/me/wards/{minor.id}/consent", guardian)
        truth.pairs.add((guardian.id, minor.id))


# -- the dump --------------------------------------------------------------------------


async def _dump(ctx: Context) -> list[Row]:
    tables = [t.name for t in Base.metadata.sorted_tables]
    rows: list[Row] = []
    if ctx.engine.dialect.name == "sqlite":
        path = ctx.settings.resolved_database_url.split("///", 1)[1]
        with sqlite3.connect(path) as db:
            for table in tables:
                cursor = db.execute(f'SELECT * FROM "{table}" ORDER BY rowid')
                names = [d[0] for d in cursor.description]
                for rank, values in enumerate(cursor.fetchall()):
                    cells = {n: column_bytes(v) for n, v in zip(names, values, strict=True)}
                    rows.append(Row(table, rank, cells))
        return rows
    async with ctx.engine.connect() as conn:
        for table in tables:
            result = await conn.execute(
                text(f'SELECT xmin::text, xmax::text, * FROM "{table}" ORDER BY ctid')
            )
            names = list(result.keys())[2:]
            for rank, values in enumerate(result.all()):
                cells = {n: column_bytes(v) for n, v in zip(names, values[2:], strict=True)}
                rows.append(Row(table, rank, cells, str(values[0]), str(values[1])))
    return rows


# -- the linker ------------------------------------------------------------------------


class Links:
    """Union-find over rows: two rows in one set are linked for certain."""

    def __init__(self, rows: Iterable[Row]) -> None:
        self.parent = {row.key: row.key for row in rows}

    def find(self, key: tuple[str, int]) -> tuple[str, int]:
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def join(self, a: tuple[str, int], b: tuple[str, int]) -> None:
        self.parent[self.find(a)] = self.find(b)


#: The audit chain's own links: each entry names the one before it. They give
#: the order of the entries (which `seq` states anyway), not who; followed
#: transitively they would merge every transaction into one set.
CHAIN = {("audit_log", "prev_hash"), ("audit_log", "hash")}


def _informative(rows: list[Row]) -> dict[tuple[str, str], set[bytes]]:
    """Per column, the values worth joining on: long enough, and not shared by most rows."""
    values: dict[tuple[str, str], list[bytes]] = defaultdict(list)
    for row in rows:
        for column, value in row.cells.items():
            if (row.table, column) not in CHAIN:
                values[(row.table, column)].append(value)
    out: dict[tuple[str, str], set[bytes]] = {}
    for place, seen in values.items():
        counts: dict[bytes, int] = defaultdict(int)
        for value in seen:
            counts[value] += 1
        out[place] = {
            v for v, c in counts.items() if len(v) >= 8 and (c == 1 or c <= len(seen) // 2)
        }
    return out


def _time(value: bytes) -> datetime | None:
    try:
        return datetime.fromisoformat(value.decode())
    except (UnicodeDecodeError, ValueError):
        return None


def link(rows: list[Row]) -> Links:
    links = Links(rows)
    useful = _informative(rows)
    by_value: dict[bytes, list[Row]] = defaultdict(list)
    for row in rows:
        for column, value in row.cells.items():
            if value in useful.get((row.table, column), set()):
                by_value[value].append(row)
            else:
                continue
            # Prefix of a sealed value (a clear key id would be shared by all of one owner's).
            if len(value) > 40:
                by_value[b"prefix:" + value[:12]].append(row)
            when = _time(value)
            if when is not None:
                by_value[b"time:" + when.replace(microsecond=0).isoformat().encode()].append(row)
        if row.xmin is not None:
            by_value[b"tx:" + row.xmin.encode()].append(row)
        if row.xmax not in (None, "0"):
            by_value[b"tx:" + str(row.xmax).encode()].append(row)
    for group in by_value.values():
        for other in group[1:]:
            links.join(group[0].key, other.key)
    # Substrings: an id (or any long value) inside another cell.
    needles = {v for values in useful.values() for v in values if 16 <= len(v) <= 64}
    for row in rows:
        for value in row.cells.values():
            for needle in needles:
                if needle != value and needle in value:
                    for owner in by_value.get(needle, []):
                        links.join(row.key, owner.key)
    return links


def _rows_naming(rows: list[Row], wanted: set[str]) -> dict[str, list[Row]]:
    found: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        for value in row.cells.values():
            for ident in wanted:
                if ident.encode() in value:
                    found[ident].append(row)
    return found


def _check(rows: list[Row], truth: Truth) -> None:
    links = link(rows)
    accounts = {row.cells["id"].decode(): row for row in rows if row.table == "accounts"}
    assert set(accounts) == truth.accounts
    # An account id appears nowhere but in its own row.
    named = _rows_naming(rows, truth.accounts)
    for account_id, where in named.items():
        assert {r.key for r in where} == {accounts[account_id].key}, (
            f"an account id is stored outside its row: {[r.table for r in where]}"
        )
    # No plain time but the publication of the (public) consent documents.
    for row in rows:
        for column, value in row.cells.items():
            if _time(value) is not None:
                assert (row.table, column) == ("consent_documents", "published_at"), (
                    f"{row.table}.{column} holds a time in clear"
                )
    # No membership pair (nor invitation): an account's row is never linked to a row
    # naming its room.
    rooms = _rows_naming(rows, truth.rooms)
    for account_id, room_id in truth.members | truth.invited:
        mine = links.find(accounts[account_id].key)
        assert all(links.find(r.key) != mine for r in rooms.get(room_id, [])), (
            f"a dump links a member to room ({account_id}, {room_id})"
        )
    # No guardian beside their ward, no supervisor beside the clients they observe: two
    # account rows in one set only in the set of all live accounts (the data keys' common
    # header joins them all, which tells nothing about any pair).
    sets: dict[tuple[str, int], int] = defaultdict(int)
    for account_row in accounts.values():
        sets[links.find(account_row.key)] += 1
    everyone = max(sets, key=lambda root: sets[root])
    assert sets[everyone] >= len(accounts) - 2  # all but the erased account (and the admin)
    for first, second in truth.pairs:
        root = links.find(accounts[first].key)
        assert root != links.find(accounts[second].key) or root == everyone, (
            "a dump links a guardian to a minor, or a supervisor to a client"
        )
    # No owner: an account's row is never linked to a personal record.
    for row in rows:
        if row.table in PERSONAL:
            assert all(links.find(row.key) != links.find(a.key) for a in accounts.values()), (
                f"a {row.table} row is linked to an account"
            )
    # Row order: pairing the i-th row of the accounts with the i-th row of a
    # table naming rooms (by relative position) guesses no better than chance.
    room_rows = [r for r in rows if r.table in ("rooms", "room_members")]
    ordered_accounts = [r for r in rows if r.table == "accounts"]
    hits = guesses = 0
    for table in ("rooms", "room_members"):
        in_table = [r for r in room_rows if r.table == table]
        for i, account_row in enumerate(ordered_accounts):
            position = round(i * (len(in_table) - 1) / max(1, len(ordered_accounts) - 1))
            room_id = (
                in_table[position].cells.get("room_id") or in_table[position].cells["id"]
            ).decode()
            guesses += 1
            hits += (account_row.cells["id"].decode(), room_id) in truth.members
    chance = len(truth.members) / (len(truth.accounts) * len(truth.rooms))
    assert hits / guesses <= max(3 * chance, 0.2), (hits, guesses, chance)


async def test_a_dump_links_nobody_to_a_session_or_a_record(
    ctx: Context, client: httpx.AsyncClient
) -> None:
    truth = await _story(ctx, client)
    rows = await _dump(ctx)
    assert {r.table for r in rows} >= PERSONAL | {"accounts", "rooms", "audit_log"}
    assert {r.table for r in rows} >= {"webhook_endpoints"}
    assert truth.pairs
    _check(rows, truth)


def test_the_linker_finds_the_links_a_naive_schema_would_leave() -> None:
    """The linker itself can fail: on rows shaped like the old storage it finds the links."""
    account, room = "0d9ae6f2-2d3f-4a55-9a0a-1c4b8f0a7e11", "6b0c1f0e-8c11-4d8e-a2a1-0f2f5d0b9c3a"
    key_id = b"\x01\x24" + b"5f3c2a1e-9d8b-4c7a-b6e5-d4c3b2a1f0e9"
    truth = Truth({account}, {room}, {(account, room)})
    rows = [
        Row("accounts", 0, {"id": account.encode(), "data_key_id": key_id[2:]}),
        Row("rooms", 0, {"id": room.encode(), "details": b"\x01" + bytes(60)}),
        # A sealed membership whose clear key id names its owner's data key.
        Row("account_rooms", 0, {"owner_ix": bytes(range(32)), "room": key_id + bytes(40)}),
        Row("room_members", 0, {"room_id": room.encode(), "details": key_id + bytes(41)}),
    ]
    links = link(rows)
    assert links.find(("account_rooms", 0)) == links.find(("room_members", 0))
    try:
        _check(rows, truth)
    except AssertionError:
        return
    raise AssertionError("the linker missed a key id in clear")
