"""The room socket's protocol, without I/O.

Everything the server decides about a frame from its bytes alone lives here:
parsing and validation of client frames into typed models, the size limits,
the rate limiter, and the states of a connection. The socket endpoint and the
hub do the I/O and call in here; this module never awaits, never touches the
database and never reads a clock of its own, so every rule is tested by
property tests. The frames the server sends are built in `app.relay.frames`;
what a room does with a frame, in `app.relay.room`.

Rules (PROTOCOL.md, "The room socket"), and why:
- Frames are JSON text, at most 256 KiB. Larger frames are refused by the
  server's WebSocket layer (close 1009) before they reach Python objects; the
  check is repeated here so a misconfigured server still refuses them.
- A text frame that is not JSON, not an object, has a missing or unknown
  `type`, or fails validation is answered with `error` `validation_error` and
  the socket stays open: a buggy client should learn what it did wrong.
  A ciphertext over 64 KiB decoded gets `payload_too_large` instead.
- A binary frame is a policy violation (close 1008): the protocol is JSON text
  only, and binary frames are the classic way to smuggle unparsed data.
- Ciphertext is base64url (padding accepted). The server checks its alphabet
  and size, never its content: it cannot read it and must not try. (The
  room core reads one clear field, the epoch of an MLS commit's header, to
  accept one commit per epoch: `app.relay.room`.)
- NaN and Infinity are not JSON; Python's parser accepts them, so they are
  refused explicitly. Duplicate keys are refused too: two parsers reading the
  same frame differently is how routing confusion starts.

A connection's states (`State`), and what moves it:
- `authenticating`: its token passed the handshake's checks, and the room is
  reading presence and the latest seq for its `welcome`. Events of the room do
  not reach it yet.
- `waiting` or `admitted`, with `welcome` (the state it names): a waiting
  connection gets presence and room events only, and its `send` and `resume`
  get `error` `not_admitted`; the account's admission moves it to `admitted`.
- `draining`: the server is stopping while the connection's frame in hand (a
  `send` the broker is storing) is not answered yet; it reads no more frames,
  gets its answer, then closes with 1012. A connection with nothing in hand
  goes from `waiting` or `admitted` straight to `closed` (1012).
- `closed`: the room decided to close it (with a code of
  `app.core.close_codes.Close`), or the peer left. Nothing more is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from app.core.codec import strict_json_loads

SUBPROTOCOL = "confide.v1"
BEARER_PREFIX = "bearer."
MAX_FRAME_BYTES = 256 * 1024
MAX_CIPHERTEXT_BYTES = 64 * 1024
MAX_RECIPIENTS = 256


#: What a frame the socket read turned out to be: a client frame type, or why it was
#: not one (`invalid`: refused by validation; `binary`; `rate_limited`: refused
#: unread; `unread`: the connection reads no more). A fixed set: the relay's
#: metrics count frames by it (`Peer.read`).
FrameRead = Literal["auth", "send", "resume", "ping", "invalid", "binary", "rate_limited", "unread"]


class State(Enum):
    """Where a connection is in its life (see the module's docstring)."""

    AUTHENTICATING = "authenticating"
    WAITING = "waiting"
    ADMITTED = "admitted"
    DRAINING = "draining"
    CLOSED = "closed"


# \Z, not $: `$` also matches before a trailing newline, which is not base64url.
_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}\Z")
# The longest base64 text that can decode to MAX_CIPHERTEXT_BYTES (plus padding).
_MAX_B64_CHARS = (MAX_CIPHERTEXT_BYTES + 2) // 3 * 4


class FrameError(Exception):
    """A frame the server refuses; `code` is the `error` frame's code."""

    def __init__(self, code: str, detail: str, frame_id: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.frame_id = frame_id


def decoded_length(text: str) -> int:
    """Length in bytes of the base64url `text`, or raise FrameError."""
    if len(text) > _MAX_B64_CHARS + 2:
        raise FrameError("payload_too_large", "ciphertext is over 64 KiB")
    if not _B64URL.match(text):
        raise FrameError("validation_error", "ciphertext must be base64url")
    if "=" in text and len(text) % 4:
        # Padding, when present, must be exact: a receiver's strict decoder
        # would refuse `AAAA==` after the server had acked it.
        raise FrameError("validation_error", "ciphertext has wrong base64 padding")
    unpadded = len(text.rstrip("="))
    if unpadded % 4 == 1:
        raise FrameError("validation_error", "ciphertext has an impossible base64 length")
    # The alphabet and length are checked: the decoded length follows from the
    # text's length alone, without decoding (every 4 characters carry 3 bytes).
    length = unpadded // 4 * 3 + max(0, unpadded % 4 - 1)
    if length > MAX_CIPHERTEXT_BYTES:
        raise FrameError("payload_too_large", "ciphertext is over 64 KiB")
    return length


MessageId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")
]
DeviceId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]
# No max_length here: decoded_length() refuses an over-long ciphertext with
# payload_too_large, as the contract says; a pydantic limit would answer
# validation_error first. The 256 KiB frame limit bounds the string anyway.
Ciphertext = Annotated[str, StringConstraints(min_length=1)]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class AuthFrame(_Frame):
    type: Literal["auth"]
    token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class SendFrame(_Frame):
    """Broadcast (`ciphertext`) or per-recipient (`recipients`): exactly one of the two."""

    type: Literal["send"]
    id: MessageId
    ciphertext: Ciphertext | None = None
    recipients: dict[DeviceId, Ciphertext] | None = Field(default=None, max_length=MAX_RECIPIENTS)


class ResumeFrame(_Frame):
    type: Literal["resume"]
    after: Annotated[int, Field(ge=0, le=2**63 - 1)]


class PingFrame(_Frame):
    type: Literal["ping"]


ClientFrame = AuthFrame | SendFrame | ResumeFrame | PingFrame
_MODELS: dict[str, type[_Frame]] = {
    "auth": AuthFrame,
    "send": SendFrame,
    "resume": ResumeFrame,
    "ping": PingFrame,
}


def parse_client_frame(text: str) -> ClientFrame:
    """Parse one text frame, or raise FrameError (never anything else)."""
    if len(text) > MAX_FRAME_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise FrameError("payload_too_large", "frame is over 256 KiB")
    try:
        data = strict_json_loads(text)
    except ValueError:
        raise FrameError("validation_error", "frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise FrameError("validation_error", "frame must be a JSON object")
    frame_id = data.get("id") if isinstance(data.get("id"), str) else None
    kind = data.get("type")
    model = _MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise FrameError("validation_error", "missing or unknown frame type", frame_id)
    try:
        frame = model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "frame"
        raise FrameError("validation_error", f"{where}: {first['msg']}", frame_id) from None
    if isinstance(frame, SendFrame):
        _check_send(frame)
    assert isinstance(frame, AuthFrame | SendFrame | ResumeFrame | PingFrame)
    return frame


def _check_send(frame: SendFrame) -> None:
    # Exactly one of the two, given: `"ciphertext": null` beside `recipients` is two.
    given = frame.model_fields_set & {"ciphertext", "recipients"}
    if len(given) != 1 or (frame.ciphertext is None) == (frame.recipients is None):
        raise FrameError(
            "validation_error", "send needs exactly one of ciphertext or recipients", frame.id
        )
    try:
        if frame.ciphertext is not None:
            if decoded_length(frame.ciphertext) == 0:
                raise FrameError("validation_error", "ciphertext is empty")
        else:
            assert frame.recipients is not None
            if not frame.recipients:
                raise FrameError("validation_error", "recipients is empty")
            for ciphertext in frame.recipients.values():
                if decoded_length(ciphertext) == 0:
                    raise FrameError("validation_error", "ciphertext is empty")
    except FrameError as error:
        raise FrameError(error.code, error.detail, frame.id) from None


def same_origin(origin: str, scheme: str, host: str | None) -> bool:
    """Whether `origin` is the server's own: the request's scheme and `Host`.

    A page the server itself serves (the reference web client at `/app/`)
    opens its socket from that origin; it needs no place in the allow-list.
    `scheme` is the socket's (`ws` or `wss`, as the server saw it); origins
    compare case-insensitively (RFC 6454 serializes them in lower case). A
    missing or empty `Host` matches nothing.
    """
    if not host:
        return False
    web = "https" if scheme in ("wss", "https") else "http"
    return origin.lower() == f"{web}://{host.lower()}"


def bearer_from_subprotocols(offered: list[str]) -> tuple[bool, str | None]:
    """(offers confide.v1, the room token of a `bearer.<token>` entry if any)."""
    token = None
    for entry in offered:
        if entry.startswith(BEARER_PREFIX) and token is None:
            token = entry[len(BEARER_PREFIX) :]
    return SUBPROTOCOL in offered, token


@dataclass
class TokenBucket:
    """Sustained `rate` per second with bursts of `burst`; time is passed in.

    `allow(now)` spends one token if there is one. `strikes` counts refusals
    in a row; the connection closes (1008) when abuse persists.
    """

    rate: float
    burst: float
    tokens: float = -1.0
    last: float = 0.0
    strikes: int = 0

    def allow(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.last = self.burst, now
        elapsed = max(0.0, now - self.last)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.strikes = 0
            return True
        self.strikes += 1
        return False


MAX_STRIKES = 50
