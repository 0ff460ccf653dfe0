"""docs/asyncapi.yaml: the room socket's AsyncAPI document, served at /asyncapi.yaml.

It parses as AsyncAPI 3.0.0; it names every frame type the server builds, every
error code the socket sends and every close code; and the frames of a real socket
session (both directions) validate against its message schemas.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator
from referencing import Registry
from referencing.jsonschema import DRAFT7
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from app.core import mls
from app.core.clock import FrozenClock
from app.core.close_codes import Close
from app.ops.endpoints import ASYNCAPI
from app.relay import frames, protocol
from tests.fixtures.mls import welcome
from tests.fixtures.server import open_socket, recv
from tests.fixtures.services import unavailable
from tests.relay.conftest import Practice
from tests.relay.test_mls_epoch import b64, commit

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "asyncapi.yaml"
PARSER = ROOT / "tools" / "asyncapi"
BASE = "urn:confide:asyncapi"


@cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    return loaded


def resolve(ref: str) -> dict[str, Any]:
    node: Any = document()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node


def messages(action: str) -> list[tuple[str, dict[str, Any]]]:
    """(payload schema name, payload schema) of each message of the operation that
    `action`s (receive: what clients send; send: what the server sends)."""
    (operation,) = [o for o in document()["operations"].values() if o["action"] == action]
    assert resolve(operation["channel"]["$ref"]) is document()["channels"]["room"]
    out = []
    for ref in operation["messages"]:
        message = resolve(resolve(ref["$ref"])["$ref"])
        name = message["payload"]["$ref"]
        out.append((name, resolve(name)))
    return out


@cache
def validator(schema_ref: str) -> Draft7Validator:
    registry: Registry[Any] = Registry().with_resource(BASE, DRAFT7.create_resource(document()))
    return Draft7Validator({"$ref": BASE + schema_ref}, registry=registry)


def matching(action: str, frame: dict[str, Any]) -> list[str]:
    return [name for name, _ in messages(action) if validator(name).is_valid(frame)]


def check(action: str, frame: dict[str, Any]) -> None:
    found = matching(action, frame)
    assert len(found) == 1, (frame, found)


def types_of(action: str) -> set[str]:
    return {schema["properties"]["type"]["const"] for _, schema in messages(action)}


def test_the_document_is_asyncapi_3_for_the_room_socket() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    channel = doc["channels"]["room"]
    assert channel["address"] == "/v1/rooms/{room_id}/ws"
    assert set(channel["parameters"]) == {"room_id"}
    assert "confide.v1" in doc["info"]["description"]
    assert "bearer.<room token>" in doc["info"]["description"]
    for ref in re.findall(r"\$ref: '([^']+)'", DOC.read_text(encoding="utf-8")):
        resolve(ref)  # every reference leads somewhere
    for _, schema in messages("receive") + messages("send"):
        Draft7Validator.check_schema(schema)
    assert document() == yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))
    assert DOC.read_bytes() == ASYNCAPI.read_bytes(), "app/ops/asyncapi.yaml is a copy"


def test_every_frame_type_the_server_builds_is_described() -> None:
    source = Path(frames.__file__).read_text(encoding="utf-8")
    built = set(re.findall(r'"type":\s*"([a-z_]+)"', source))
    built |= set(re.findall(r'\\"type\\":\\"([a-z_]+)\\"', source))
    assert {"welcome", "ack", "message", "error", "pong", "device", "room"} <= built
    assert built == types_of("send")
    assert types_of("receive") == {"auth", "send", "resume", "ping"}


def _socket_error_codes() -> set[str]:
    relay = Path(frames.__file__).parent
    text = "".join(p.read_text(encoding="utf-8") for p in relay.glob("*.py"))
    codes = set(re.findall(r'frames\.error\(\s*"([a-z_]+)"', text))
    codes |= set(re.findall(r'FrameError\(\s*"([a-z_]+)"', text))
    return codes


def test_every_socket_error_code_is_described() -> None:
    described = {item["const"] for item in resolve("#/components/schemas/SocketErrorCode")["oneOf"]}
    codes = _socket_error_codes()
    assert {"stale_epoch", "wrong_group", "welcome_refused", "quota_exceeded"} <= codes
    assert codes <= described
    assert described == codes
    for code in sorted(described):
        epoch = 3 if code == "stale_epoch" else None
        check("send", json.loads(frames.error(code, "why", "c1", epoch=epoch)))
        check("send", json.loads(frames.error(code, "why", epoch=epoch)))
    assert not matching("send", json.loads(frames.error("stale_epoch", "no epoch")))
    assert not matching("send", json.loads(frames.error("not_a_code", "x")))


def test_every_close_code_is_described() -> None:
    described = {item["const"] for item in resolve("#/components/schemas/CloseCode")["oneOf"]}
    assert described == {code.value for code in Close}


def test_what_the_schemas_refuse() -> None:
    assert not matching("send", {"type": "ack", "id": "c", "seq": 1, "extra": 1})
    assert not matching("send", {"type": "room", "event": "ending"})  # ending needs ends_at
    assert not matching("send", {"type": "nonsense"})
    assert not matching(
        "receive", {"type": "send", "id": "c", "ciphertext": "AQ", "recipients": {}}
    )
    assert not matching("receive", {"type": "send", "id": "", "ciphertext": "AQ"})
    assert not matching("receive", {"type": "resume", "after": -1})
    assert matching("receive", {"type": "send", "id": "c", "ciphertext": "AQ"}) == [
        "#/components/schemas/SendBroadcastFrame"
    ]
    assert matching("receive", {"type": "send", "id": "c", "recipients": {"d": "AQ"}}) == [
        "#/components/schemas/SendDirectedFrame"
    ]


async def test_the_document_is_served(practice: Practice) -> None:
    response = await practice.http.get("/asyncapi.yaml")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/yaml")
    assert response.content == DOC.read_bytes()


async def test_the_document_is_served_as_json_and_linked_from_openapi(
    practice: Practice, tmp_path: Path
) -> None:
    response = await practice.http.get("/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == document()
    openapi = (await practice.http.get("/openapi.json")).json()
    assert "[/asyncapi.json](/asyncapi.json)" in openapi["info"]["description"]
    assert {"/asyncapi.json", "/asyncapi.yaml"} <= set(openapi["paths"])
    # The official parser (tools/asyncapi, as `python3 dev.py test` runs it) takes it.
    served = tmp_path / "asyncapi.json"
    served.write_bytes(response.content)
    assert_valid_asyncapi(served)


def assert_valid_asyncapi(path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        unavailable("node", FileNotFoundError("node (Node 20+) is not on PATH"))
        return
    if not (PARSER / "node_modules" / "@asyncapi" / "parser").is_dir():
        # Not a service: `python3 dev.py test` installs it before pytest runs.
        pytest.fail(f"{PARSER}/node_modules is missing: `python3 dev.py test` runs `npm ci` there")
    checked = subprocess.run(
        [node, "validate.mjs", str(path)], cwd=PARSER, capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{path}: valid AsyncAPI 3.0.0" in checked.stdout


def test_the_parser_refuses_a_broken_document(tmp_path: Path) -> None:
    broken = json.loads(json.dumps(document()))
    del broken["channels"]["room"]["address"]
    broken["operations"]["receiveClientFrames"]["action"] = "sideways"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(AssertionError, match="error"):
        assert_valid_asyncapi(path)


class Recorder:
    """A socket whose every frame, both ways, is kept for validation."""

    def __init__(self, ws: ClientConnection, sent: list[dict[str, Any]]) -> None:
        self.ws = ws
        self.sent = sent
        self.received: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any]) -> None:
        self.sent.append(frame)
        await self.ws.send(json.dumps(frame))

    async def closed(self) -> int | None:
        """Keep every frame until the server closes the socket; its close code."""
        try:
            while True:
                self.received.append(json.loads(await asyncio.wait_for(self.ws.recv(), 8)))
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None

    async def until(self, kind: str, **match: Any) -> dict[str, Any]:
        while True:
            frame = await recv(self.ws)
            self.received.append(frame)
            if frame.get("type") == kind and all(frame.get(k) == v for k, v in match.items()):
                return frame


async def test_a_real_session_speaks_only_what_the_document_describes(
    practice: Practice,
) -> None:
    clock = practice.context.clock
    assert isinstance(clock, FrozenClock)
    counselor = await practice.counselor()
    client = await practice.client()
    room = await practice.room(counselor)  # with a waiting room
    room_id = room["id"]
    await practice.invite(counselor, room_id, client)
    sent: list[dict[str, Any]] = []

    host = Recorder(
        await open_socket(practice.base, room_id, await practice.token(counselor, room_id)), sent
    )
    await host.until("welcome")
    await host.send({"type": "send", "id": "before", "ciphertext": "AQID"})
    await host.until("ack", id="before")

    # The client authenticates by its first frame, and waits.
    token = await practice.token(client, room_id)
    guest = Recorder(await open_socket(practice.base, room_id, token, via="frame"), sent)
    sent.append({"type": "auth", "token": token})
    assert (await guest.until("welcome"))["state"] == "waiting"
    await host.until("presence", event="waiting")
    await guest.send({"type": "send", "id": "early", "ciphertext": "AQID"})
    await guest.until("error", code="not_admitted")
    await practice.admit(counselor, room_id, client)
    await guest.until("presence", event="admitted")
    checkin = {
        "location": {"address": "12 Elm St, Denver", "jurisdiction": "US-CO"},
        "emergency_contact": {"name": "Sam", "phone": "+13035550142"},
        "callback_phone": "+13035550199",
    }
    recorded = await practice.http.put(
        f"/v1/rooms/{room_id}/checkin", json=checkin, headers=client.auth
    )
    assert recorded.status_code == 200, recorded.text
    await host.until("checkin", account_id=client.id)

    # Messages, broadcast and directed; a resume from before the admission.
    await guest.send({"type": "resume", "after": 0})
    assert (await guest.until("replay_truncated"))["earliest"] == 2
    await guest.until("resumed")
    await host.send({"type": "send", "id": "m1", "ciphertext": "BAUG"})
    await host.until("ack", id="m1")
    await guest.until("message", id="m1")
    await guest.send({"type": "send", "id": "d1", "recipients": {counselor.device: "BwgJ"}})
    await guest.until("ack", id="d1")
    await host.until("message", id="d1")
    await host.send({"type": "ping"})
    await host.until("pong")

    # Refusals that keep the socket open.
    # (sent as they are, not recorded: the document refuses them too)
    await host.ws.send(json.dumps({"type": "nope", "id": "x"}))
    assert not matching("receive", {"type": "nope", "id": "x"})
    await host.until("error", code="validation_error")
    big = b64(os.urandom(64 * 1024 + 1))
    await host.ws.send(json.dumps({"type": "send", "id": "big", "ciphertext": big}))
    await host.until("error", code="payload_too_large")
    group = mls.room_group_id(room_id)
    await host.send({"type": "send", "id": "c0", "ciphertext": commit(0, group=group)})
    await host.until("ack", id="c0")
    await guest.until("message", id="c0")
    await guest.send({"type": "send", "id": "c0b", "ciphertext": commit(0, group=group)})
    assert (await guest.until("error", code="stale_epoch"))["epoch"] == 1
    await guest.send({"type": "send", "id": "g", "ciphertext": commit(1, group=b"x" * 32)})
    await guest.until("error", code="wrong_group")
    stray = welcome(2, [os.urandom(32)], b"info")
    await guest.send({"type": "send", "id": "w", "ciphertext": b64(stray)})
    await guest.until("error", code="welcome_refused")

    # Key changes and the room's events.
    tablet = await practice.add_device(client, "tablet")
    await host.until("device", event="added")
    gone = await practice.http.delete(f"/v1/devices/{tablet}", headers=client.auth)
    assert gone.status_code == 204
    await host.until("device", event="revoked")
    for action in ("lock", "unlock"):
        done = await practice.http.post(f"/v1/rooms/{room_id}/{action}", headers=counselor.auth)
        assert done.status_code < 300, done.text
    await guest.until("room", event="unlocked")
    ends = (clock.now() + timedelta(minutes=3)).isoformat()
    moved = await practice.http.patch(
        f"/v1/rooms/{room_id}", json={"ends_at": ends}, headers=counselor.auth
    )
    assert moved.status_code == 200, moved.text
    await guest.until("room", event="ending")
    await guest.ws.close()
    await host.until("presence", event="offline")
    ended = await practice.http.post(f"/v1/rooms/{room_id}/end", headers=counselor.auth)
    assert ended.status_code == 200, ended.text
    assert await host.closed() == Close.ENDED
    assert host.received[-1] == {"type": "room", "event": "ended"}

    received = host.received + guest.received
    seen = {f["type"] for f in received}
    assert seen == types_of("send"), seen
    for frame in received:
        check("send", frame)
    for frame in sent:
        check("receive", frame)
    codes = {f["code"] for f in received if f["type"] == "error"}
    assert {"stale_epoch", "wrong_group", "welcome_refused", "not_admitted"} <= codes
    assert {"validation_error", "payload_too_large"} <= codes
    assert {f["event"] for f in received if f["type"] == "room"} >= {"locked", "ending"}


# -- the document against the relay's own frame models ----------------------------------

_PRINTABLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
# Python's `re.search` lets `$` match before a final newline, unlike the ECMA-262
# patterns JSON Schema specifies (and pydantic's): no id ends with one here.
_ID_CHARS = st.one_of(_PRINTABLE, st.sampled_from([" ", "\t", "é", "\x7f"]))
_good_ids = st.text(_PRINTABLE, min_size=1, max_size=8)
_ids = st.one_of(_good_ids, st.text(_ID_CHARS, max_size=70), st.integers(), st.none())
_good_ciphertexts = st.text(st.sampled_from("AQIDBwgJ-_azAZ09"), min_size=2, max_size=12)
_ciphertexts = st.one_of(
    _good_ciphertexts, st.text(st.sampled_from("AQID-_=+/ \n"), max_size=12), st.none()
)


@st.composite
def client_frames(draw: st.DrawFn) -> dict[str, Any]:
    """JSON objects near the client frames: right and wrong types, fields and values."""
    kind = draw(st.sampled_from(["auth", "send", "resume", "ping", "pong", "message"]))
    frame: dict[str, Any] = {"type": kind}
    fields: dict[str, st.SearchStrategy[Any]] = {
        "token": st.one_of(st.text(min_size=1, max_size=8), st.sampled_from(["", "t" * 4097, 7])),
        "id": _ids,
        "ciphertext": _ciphertexts,
        "recipients": st.one_of(
            st.dictionaries(_good_ids, _good_ciphertexts, min_size=1, max_size=3),
            st.dictionaries(_ids.filter(lambda i: isinstance(i, str)), _ciphertexts, max_size=3),
        ),
        "after": st.one_of(
            st.integers(min_value=0, max_value=2**63 - 1),
            st.sampled_from([-1, 2**63, 2**64, True, False, "7", None]),
        ),
        "extra": st.integers(),
    }
    likely = {
        "auth": ["token"],
        "send": ["id", "ciphertext"] if draw(st.booleans()) else ["id", "recipients"],
        "resume": ["after"],
    }.get(kind, [])
    for name, strategy in fields.items():
        odds = 9 if name in likely else 1  # in ten
        if draw(st.integers(0, 9)) < odds:
            frame[name] = draw(strategy)
    return frame


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(client_frames())
@example({"type": "send", "id": "x", "ciphertext": None, "recipients": {"d": "AQ"}})
@example({"type": "send", "id": "x", "ciphertext": "AQ", "recipients": None})
@example({"type": "send", "id": "x", "ciphertext": None})
@example({"type": "resume", "after": True})
@example({"type": "ping", "id": "x"})
def test_the_document_accepts_what_the_relay_accepts(frame: dict[str, Any]) -> None:
    """Every frame the relay's parser accepts is described, by the one message of its type;
    every frame the document refuses, the relay refuses. What the document accepts and
    the relay refuses is refused for a rule on the ciphertext's bytes the schema names
    in words only (exact padding, a possible length, not empty once decoded).

    (One more the schema cannot say: JSON Schema counts 1.0 as an integer, and the
    relay wants `after` written as one, 1, as every JSON encoder writes it.)"""
    found = matching("receive", frame)
    try:
        parsed = protocol.parse_client_frame(json.dumps(frame))
    except protocol.FrameError as error:
        refused = error.detail
    else:
        assert len(found) == 1, (frame, found)
        assert resolve(found[0])["properties"]["type"]["const"] == parsed.type
        return
    assert not found or "ciphertext" in refused, (frame, found, refused)
