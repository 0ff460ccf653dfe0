"""Stories of real sessions: end-to-end encryption, a group of four, resume and resend."""

from __future__ import annotations

import base64
import json
import logging
import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import text

from tests.fixtures.identity import device_body
from tests.fixtures.server import closed_with, open_socket, recv, recv_until
from tests.relay.conftest import Person, Practice


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text_: str) -> bytes:
    return base64.urlsafe_b64decode(text_ + "=" * (-len(text_) % 4))


class E2EDevice:
    """What a client app does on its device: a P-256 key pair, ECDH, AES-GCM."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.public = self.private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def key_with(self, peer_public: bytes, room_id: str) -> AESGCM:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), peer_public)
        shared = self.private.exchange(ec.ECDH(), peer)
        key = HKDF(hashes.SHA256(), 32, salt=None, info=room_id.encode()).derive(shared)
        return AESGCM(key)

    @staticmethod
    def seal(key: AESGCM, plaintext: str) -> str:
        nonce = os.urandom(12)
        return b64(nonce + key.encrypt(nonce, plaintext.encode(), None))

    @staticmethod
    def open(key: AESGCM, ciphertext: str) -> str:
        raw = unb64(ciphertext)
        return key.decrypt(raw[:12], raw[12:], None).decode()


async def test_two_clients_talk_end_to_end_and_the_server_keeps_nothing_readable(
    practice: Practice, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    counselor = await practice.counselor("Dr Secret Keeper")
    alice_dev, bob_dev = E2EDevice(), E2EDevice()
    alice = Person((await practice.client("Alice Marker")).user)
    bob = Person((await practice.client("Bob Marker")).user)
    for person, device in ((alice, alice_dev), (bob, bob_dev)):
        response = await practice.http.post(
            "/v1/devices",
            json=device_body(person.id, "e2e phone", b64(device.public)),
            headers=person.auth,
        )
        person.devices.insert(0, response.json()["device_id"])
    room = await practice.room(counselor, kind="group", waiting_room=False)
    for person in (alice, bob):
        await practice.invite(counselor, room["id"], person)

    alice_ws = await open_socket(practice.base, room["id"], await practice.token(alice, room["id"]))
    welcome = await recv(alice_ws)
    bob_entry = next(p for p in welcome["participants"] if p["account_id"] == bob.id)
    bob_key = next(d["public_key"] for d in bob_entry["devices"] if d["device_id"] == bob.device)
    bob_ws = await open_socket(practice.base, room["id"], await practice.token(bob, room["id"]))
    bob_welcome = await recv(bob_ws)
    alice_entry = next(p for p in bob_welcome["participants"] if p["account_id"] == alice.id)
    alice_key = next(
        d["public_key"] for d in alice_entry["devices"] if d["device_id"] == alice.device
    )

    secret = "I have never told anyone this-" + os.urandom(6).hex()
    key_ab = alice_dev.key_with(unb64(bob_key), room["id"])
    await alice_ws.send(
        json.dumps(
            {
                "type": "send",
                "id": "s1",
                "recipients": {bob.device: E2EDevice.seal(key_ab, secret)},
            }
        )
    )
    assert (await recv_until(alice_ws, "ack"))["id"] == "s1"
    message = await recv_until(bob_ws, "message")
    key_ba = bob_dev.key_with(unb64(alice_key), room["id"])
    assert E2EDevice.open(key_ba, message["ciphertext"]) == secret
    assert message["sender"]["device_id"] == alice.device

    reply = "Thank you for trusting me-" + os.urandom(6).hex()
    await bob_ws.send(
        json.dumps(
            {
                "type": "send",
                "id": "r1",
                "recipients": {alice.device: E2EDevice.seal(key_ba, reply)},
            }
        )
    )
    back = await recv_until(alice_ws, "message")
    assert E2EDevice.open(key_ab, back["ciphertext"]) == reply
    # The counselor's device was not a recipient of that pairwise message.
    host_ws = await open_socket(
        practice.base, room["id"], await practice.token(counselor, room["id"])
    )
    await recv(host_ws)
    await host_ws.send(json.dumps({"type": "resume", "after": 0}))
    resumed = await recv_until(host_ws, "resumed")
    assert resumed["seq"] == 2

    for ws in (alice_ws, bob_ws, host_ws):
        await ws.close()

    # Nothing the participants said or who they are is readable in the database.
    dump = b""
    async with practice.context.engine.connect() as conn:
        tables = [
            row[0]
            for row in await conn.execute(
                text(
                    "SELECT name FROM sqlite_master WHERE type='table'"
                    if conn.dialect.name == "sqlite"
                    else "SELECT tablename FROM pg_tables WHERE schemaname='public'"
                )
            )
        ]
        for table in tables:
            for row in await conn.execute(text(f'SELECT * FROM "{table}"')):
                dump += repr(tuple(row)).encode()
    logs = caplog.text.encode()
    for marker in (
        secret,
        reply,
        "Alice Marker",
        "Bob Marker",
        "Dr Secret Keeper",
        alice.user.email,
    ):
        assert marker.encode() not in dump, marker
        assert marker.encode() not in logs, marker
    for ciphertext in (message["ciphertext"], back["ciphertext"]):
        assert ciphertext.encode() not in logs


async def test_a_group_of_four(practice: Practice) -> None:
    counselor = await practice.counselor()
    members = [await practice.client(f"Member {i}") for i in range(3)]
    room = await practice.room(counselor, kind="group", waiting_room=False, max_participants=4)
    for member in members:
        await practice.invite(counselor, room["id"], member)
    fifth = await practice.client("Fifth")
    full = await practice.http.post(
        f"/v1/rooms/{room['id']}/participants",
        json={"account_id": fifth.id},
        headers=counselor.auth,
    )
    assert full.status_code == 409
    assert full.json()["code"] == "room_full"

    sockets = {}
    for person in (counselor, *members):
        ws = await open_socket(practice.base, room["id"], await practice.token(person, room["id"]))
        assert (await recv(ws))["state"] == "admitted"
        sockets[person.id] = ws
    for sender in (counselor, *members):
        await sockets[sender.id].send(
            json.dumps({"type": "send", "id": f"from-{sender.id}", "ciphertext": b64(b"hi")})
        )
        await recv_until(sockets[sender.id], "ack")
        for other in (counselor, *members):
            if other is sender:
                continue
            got = await recv_until(sockets[other.id], "message")
            assert got["sender"]["account_id"] == sender.id
    # Everything arrived live once: asking again on the same socket repeats nothing.
    first = sockets[members[0].id]
    await first.send(json.dumps({"type": "resume", "after": 0}))
    assert await recv_until(first, "resumed") == {"type": "resumed", "seq": 4}
    # A new socket of the same device replaces the first and replays it all.
    again = await open_socket(
        practice.base, room["id"], await practice.token(members[0], room["id"])
    )
    await recv(again)
    assert await closed_with(first) == 4011
    sockets[members[0].id] = again
    await again.send(json.dumps({"type": "resume", "after": 0}))
    seqs = []
    while True:
        frame = await recv(again)
        if frame["type"] == "resumed":
            break
        if frame["type"] == "message":
            seqs.append(frame["seq"])
    # Everything but its own message, in seq order.
    assert seqs == [1, 3, 4]
    assert frame["seq"] == 4

    removed = members[2]
    await practice.http.delete(
        f"/v1/rooms/{room['id']}/participants/{removed.id}", headers=counselor.auth
    )
    assert await closed_with(sockets[removed.id]) == 4003
    await practice.http.post(f"/v1/rooms/{room['id']}/end", headers=counselor.auth)
    for person in (counselor, *members[:2]):
        assert await closed_with(sockets[person.id]) == 4010


async def test_resend_is_idempotent_and_resume_fills_the_gap(practice: Practice) -> None:
    counselor = await practice.counselor()
    client = await practice.client()
    room = await practice.room(counselor, waiting_room=False)
    await practice.invite(counselor, room["id"], client)
    host = await open_socket(practice.base, room["id"], await practice.token(counselor, room["id"]))
    await recv(host)
    await host.send(json.dumps({"type": "send", "id": "one", "ciphertext": b64(b"1")}))
    assert (await recv_until(host, "ack"))["seq"] == 1
    await host.send(json.dumps({"type": "send", "id": "one", "ciphertext": b64(b"1")}))
    assert (await recv_until(host, "ack"))["seq"] == 1
    await host.send(json.dumps({"type": "send", "id": "two", "ciphertext": b64(b"2")}))
    assert (await recv_until(host, "ack"))["seq"] == 2

    # The client was offline for both; it joins, sees seq 2 in welcome, resumes.
    ws = await open_socket(practice.base, room["id"], await practice.token(client, room["id"]))
    welcome = await recv(ws)
    assert welcome["seq"] == 2
    await ws.send(json.dumps({"type": "resume", "after": 0}))
    first = await recv_until(ws, "message")
    second = await recv_until(ws, "message")
    done = await recv_until(ws, "resumed")
    assert [first["seq"], second["seq"], done["seq"]] == [1, 2, 2]
    assert [first["id"], second["id"]] == ["one", "two"]
    # Resuming again on the same socket never repeats a message it already got.
    await ws.send(json.dumps({"type": "resume", "after": 1}))
    assert await recv(ws) == {"type": "resumed", "seq": 2}
    await ws.close()
    await host.close()


async def test_pairwise_to_an_unknown_device_is_refused(practice: Practice) -> None:
    counselor = await practice.counselor()
    room = await practice.room(counselor)
    ws = await open_socket(practice.base, room["id"], await practice.token(counselor, room["id"]))
    await recv(ws)
    await ws.send(
        json.dumps({"type": "send", "id": "x", "recipients": {"not-a-device": b64(b"k")}})
    )
    error = await recv_until(ws, "error")
    assert error["code"] == "validation_error"
    assert error["id"] == "x"
    await ws.close()
