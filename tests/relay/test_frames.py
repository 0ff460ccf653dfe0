"""Every server frame, byte for byte as clients read it (PROTOCOL.md, "Server to client")."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from app.relay import frames
from app.relay.store import ERASED_SENDER

WHEN = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)


@dataclass
class Member:
    account_id: str
    display_name: str
    role: str
    admitted: bool
    devices: dict[str, tuple[str, str | None]] = field(default_factory=dict)


def test_welcome() -> None:
    members = [
        Member("a1", "Zoë", "host", True, {"d1": ("K1", "S1"), "d2": ("K2", None)}),
        Member("a2", "", "participant", False),
    ]
    wire = frames.welcome("r1", ("a1", "d1", "host"), "admitted", 7, members, {"d2"})
    assert wire == (
        '{"type":"welcome","room":"r1",'
        '"you":{"account_id":"a1","device_id":"d1","role":"host"},'
        '"state":"admitted","seq":7,"participants":['
        '{"account_id":"a1","display_name":"Zoë","role":"host","admitted":true,"online":true,'
        '"devices":[{"device_id":"d1","public_key":"K1","signing_key":"S1"},'
        '{"device_id":"d2","public_key":"K2","signing_key":null}]},'
        '{"account_id":"a2","display_name":"","role":"participant","admitted":false,'
        '"online":false,"devices":[]}]}'
    )


def test_message_from_its_fragment() -> None:
    fragment = frames.fragment("c1", "a1", "d1", "AQID", frames.sent_at(WHEN))
    assert fragment == (
        '"id":"c1","sender":{"account_id":"a1","device_id":"d1"},'
        '"ciphertext":"AQID","sent_at":"2026-11-24T20:00:00Z"}'
    )
    assert frames.message(12, fragment) == '{"type":"message","seq":12,' + fragment
    assert frames.sender_member("a1", "d1") in fragment
    assert ERASED_SENDER == '"sender":{"account_id":"","device_id":""}'


def test_answers_to_the_sender() -> None:
    assert frames.ack("c1", 3) == '{"type":"ack","id":"c1","seq":3}'
    assert frames.error("rate_limited", "slow down") == (
        '{"type":"error","code":"rate_limited","detail":"slow down"}'
    )
    assert frames.error("not_admitted", "wait to be admitted", "c1") == (
        '{"type":"error","code":"not_admitted","detail":"wait to be admitted","id":"c1"}'
    )
    assert frames.PONG == '{"type":"pong"}'


def test_replay_frames() -> None:
    assert frames.replay_truncated(5) == '{"type":"replay_truncated","earliest":5}'
    assert frames.resumed(9) == '{"type":"resumed","seq":9}'


def test_presence_and_devices() -> None:
    assert frames.presence("online", "a1", "d1") == (
        '{"type":"presence","event":"online","account_id":"a1","device_id":"d1"}'
    )
    assert frames.presence("removed", "a1") == (
        '{"type":"presence","event":"removed","account_id":"a1"}'
    )
    assert frames.device("revoked", "a1", "d1", ("K1", "S1")) == (
        '{"type":"device","event":"revoked","account_id":"a1",'
        '"device":{"device_id":"d1","public_key":"K1","signing_key":"S1"}}'
    )
    assert frames.device("added", "a1", "d1", ("K1", None)) == (
        '{"type":"device","event":"added","account_id":"a1",'
        '"device":{"device_id":"d1","public_key":"K1","signing_key":null}}'
    )


def test_room_frames() -> None:
    assert frames.room_locked(True) == '{"type":"room","event":"locked"}'
    assert frames.room_locked(False) == '{"type":"room","event":"unlocked"}'
    assert frames.room_ending(WHEN) == (
        '{"type":"room","event":"ending","ends_at":"2026-11-24T20:00:00Z"}'
    )
    assert frames.ROOM_ENDED == '{"type":"room","event":"ended"}'


texts = st.text(st.characters(codec=None), max_size=20)


@given(texts, texts, texts)
def test_every_frame_is_json_in_utf8_whatever_the_ids(a: str, b: str, c: str) -> None:
    fragment = frames.fragment(a, b, c, "AQID", "T")
    wires = [
        frames.message(1, fragment),
        frames.ack(a, 1),
        frames.error("validation_error", b, c),
        frames.presence("online", a, b),
        frames.device("added", a, b, (c, a)),
        frames.welcome(a, (a, b, c), "waiting", 0, [Member(a, b, c, True, {a: (b, c)})], {a}),
    ]
    for wire in wires:
        wire.encode("utf-8")
        assert isinstance(json.loads(wire), dict)


# -- a frame's type, read without parsing (the relay counts frames by it) ----------------

_ids = st.text(min_size=1, max_size=12)


@given(
    client_id=_ids,
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    detail=st.text(max_size=20),
    account=_ids,
    device=_ids,
    name=st.text(max_size=12),
)
def test_kind_is_the_type_of_every_frame_built(
    client_id: str, seq: int, detail: str, account: str, device: str, name: str
) -> None:
    fragment = frames.fragment(client_id, account, device, "AQID", frames.sent_at(WHEN))
    members = [Member(account, name, "host", True, {device: ("K", None)})]
    built = [
        frames.ack(client_id, seq),
        frames.error("validation_error", detail, client_id, epoch=seq),
        frames.PONG,
        frames.message(seq, fragment),
        frames.replay_truncated(seq),
        frames.resumed(seq),
        frames.welcome("r", (account, device, "host"), "waiting", seq, members, set()),
        frames.presence("online", account, device),
        frames.device("added", account, device, ("K", "S")),
        frames.room_locked(True),
        frames.room_ending(WHEN),
        frames.ROOM_ENDED,
        frames.checkin(
            account,
            address=name,
            jurisdiction="US-CO",
            contact_name=name,
            contact_phone="+13035550142",
            callback_phone="+13035550199",
            recorded_at=WHEN,
            licensed=False,
        ),
    ]
    for frame in built:
        assert frames.kind(frame) == json.loads(frame)["type"]
        assert frames.kind(frame) in frames.TYPES
    assert {frames.kind(frame) for frame in built} == set(frames.TYPES)
    assert frames.message(seq, fragment).startswith(frames.MESSAGE_HEAD)
    assert not frames.ack(client_id, seq).startswith(frames.MESSAGE_HEAD)


@given(st.text(max_size=40))
def test_kind_of_any_other_text_is_other_or_its_real_type(text: str) -> None:
    found = frames.kind(text)
    assert found in (*frames.TYPES, "other")
    if found != "other":
        assert text.startswith('{"type":"' + found + '"')
    assert frames.kind('{"type":"messages"}') == "other"
    assert frames.kind('{ "type":"ack"}') == "other"
