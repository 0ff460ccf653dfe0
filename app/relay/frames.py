"""Every frame the server sends on the room socket (PROTOCOL.md, "Server to client").

Frames are compact JSON text (no spaces), UTF-8, keys in the order the
contract lists them. The functions return the text to write; they never read
a clock or a socket.

A message is stored and fanned out as a *fragment*: the frame without its
`type` and `seq`, `"id":…,"sender":…,"ciphertext":…,"sent_at":…}`. The frame a
recipient gets is `{"type":"message","seq":N,` + fragment, so a broadcast is
serialized once, whatever the number of recipients, and the broker stores
the fragment without knowing the seq it will get.

Every frame starts with its `type` (`{"type":"message",…`), so `kind` tells it
from the first characters, without parsing: the relay counts frames by type
on the hot path.
"""

from __future__ import annotations

import json
from collections.abc import Container, Iterable
from datetime import datetime
from typing import Any, Literal, Protocol

# Built once: json.dumps with arguments builds a new encoder at every call.
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_ENCODE_ASCII = json.JSONEncoder(separators=(",", ":")).encode


def dumps(frame: Any) -> str:
    text: str = _ENCODE(frame)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate (a client's `"id":"\ud800"` echoed in an error)
            # cannot be sent as UTF-8 text; escaped, it is still valid JSON.
            text = _ENCODE_ASCII(frame)
    return text


#: The type of every frame built here, the most frequent first.
TYPES = (
    "message",
    "ack",
    "presence",
    "pong",
    "error",
    "welcome",
    "device",
    "room",
    "replay_truncated",
    "resumed",
    "checkin",
)
_HEAD = '{"type":"'
_TAILS = tuple((name, name + '"') for name in TYPES)
MESSAGE_HEAD = _HEAD + 'message"'


def kind(frame: str) -> str:
    """The `type` of a frame built here (one of `TYPES`), else "other"; never parses."""
    if frame.startswith(_HEAD):
        for name, tail in _TAILS:
            if frame.startswith(tail, 9):
                return name
    return "other"


def _time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# -- answers to the sender ---------------------------------------------------------


def ack(client_id: str, seq: int) -> str:
    return '{"type":"ack","id":' + _ENCODE_ASCII(client_id) + ',"seq":' + str(seq) + "}"


def error(code: str, detail: str, client_id: str | None = None, *, epoch: int | None = None) -> str:
    frame: dict[str, Any] = {"type": "error", "code": code, "detail": detail}
    if client_id is not None:
        frame["id"] = client_id
    if epoch is not None:
        frame["epoch"] = epoch
    return dumps(frame)


PONG = '{"type":"pong"}'


# -- messages and replay -----------------------------------------------------------


def fragment(client_id: str, account_id: str, device_id: str, ciphertext: str, sent_at: str) -> str:
    """A message without its `type` and `seq` (see the module's docstring)."""
    sender = {"account_id": account_id, "device_id": device_id}
    body = dumps({"id": client_id, "sender": sender, "ciphertext": ciphertext, "sent_at": sent_at})
    return body[1:]


def sent_at(moment: datetime) -> str:
    """A message's `sent_at`."""
    return _time(moment)


def sender_member(account_id: str, device_id: str) -> str:
    """The `"sender":{...}` member of a fragment, exactly as `fragment` writes it."""
    ids = json.dumps(
        {"account_id": account_id, "device_id": device_id},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return '"sender":' + ids


def message(seq: int, fragment: str) -> str:
    return '{"type":"message","seq":' + str(seq) + "," + fragment


def replay_truncated(earliest: int) -> str:
    return '{"type":"replay_truncated","earliest":' + str(earliest) + "}"


def resumed(seq: int) -> str:
    return dumps({"type": "resumed", "seq": seq})


# -- the room ----------------------------------------------------------------------

#: A device's public key and signing key (None: registered before devices were
#: signed), base64url.
DeviceKeys = tuple[str, str | None]


def _device(device_id: str, keys: DeviceKeys) -> dict[str, Any]:
    return {"device_id": device_id, "public_key": keys[0], "signing_key": keys[1]}


class Member(Protocol):
    """What `welcome` shows of one participant."""

    account_id: str
    display_name: str
    role: str
    admitted: bool
    devices: dict[str, DeviceKeys]  # device id -> its keys


def welcome(
    room_id: str,
    you: tuple[str, str, str],
    state: Literal["waiting", "admitted"],
    seq: int,
    members: Iterable[Member],
    online: Container[str],
) -> str:
    """The first frame: `you` is (account id, device id, role); `online` the device ids
    with a socket in the room."""
    account_id, device_id, role = you
    return dumps(
        {
            "type": "welcome",
            "room": room_id,
            "you": {"account_id": account_id, "device_id": device_id, "role": role},
            "state": state,
            "seq": seq,
            "participants": [
                {
                    "account_id": member.account_id,
                    "display_name": member.display_name,
                    "role": member.role,
                    "admitted": member.admitted,
                    "online": any(d in online for d in member.devices),
                    "devices": [_device(d, keys) for d, keys in member.devices.items()],
                }
                for member in members
            ],
        }
    )


def presence(
    event: Literal["online", "offline", "waiting", "admitted", "removed"],
    account_id: str,
    device_id: str | None = None,
    *,
    role: str | None = None,
) -> str:
    """`role` names a typed participant's role (supervisor, interpreter, guardian), so
    that their presence is always shown as such; hosts' and clients' frames have none."""
    frame: dict[str, Any] = {"type": "presence", "event": event, "account_id": account_id}
    if device_id is not None:
        frame["device_id"] = device_id
    if role is not None:
        frame["role"] = role
    return dumps(frame)


def device(
    event: Literal["added", "revoked"], account_id: str, device_id: str, keys: DeviceKeys
) -> str:
    return dumps(
        {
            "type": "device",
            "event": event,
            "account_id": account_id,
            "device": _device(device_id, keys),
        }
    )


def room_locked(locked: bool) -> str:
    return dumps({"type": "room", "event": "locked" if locked else "unlocked"})


def room_ending(ends_at: datetime) -> str:
    return dumps({"type": "room", "event": "ending", "ends_at": _time(ends_at)})


ROOM_ENDED = dumps({"type": "room", "event": "ended"})


def checkin(
    account_id: str,
    *,
    address: str,
    jurisdiction: str,
    contact_name: str,
    contact_phone: str,
    callback_phone: str,
    recorded_at: datetime | None,
    licensed: bool,
) -> str:
    """A client's safety check-in, for the room's hosts only."""
    return dumps(
        {
            "type": "checkin",
            "account_id": account_id,
            "location": {"address": address, "jurisdiction": jurisdiction},
            "emergency_contact": {"name": contact_name, "phone": contact_phone},
            "callback_phone": callback_phone,
            "jurisdiction": jurisdiction,
            "licensed": licensed,
            "jurisdiction_mismatch": not licensed,
            "recorded_at": _time(recorded_at) if recorded_at is not None else None,
        }
    )
