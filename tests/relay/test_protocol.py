"""The room socket's pure protocol: parsing, limits, the rate limiter, server frames.

Example tests pin each rule of PROTOCOL.md ("The room socket"); Hypothesis
properties check that no input, however malformed, gets anything but a typed
frame or a FrameError the hub can answer with, and that valid frames round-trip.
"""

from __future__ import annotations

import base64
import json
import random
from itertools import accumulate
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.relay import frames
from app.relay import protocol as p
from app.relay.protocol import (
    AuthFrame,
    ClientFrame,
    FrameError,
    PingFrame,
    ResumeFrame,
    SendFrame,
    TokenBucket,
)

FRAME_TYPES = (AuthFrame, SendFrame, ResumeFrame, PingFrame)
ERROR_CODES = {"validation_error", "payload_too_large"}
KIB = 1024


def b64(raw: bytes, *, padded: bool = False) -> str:
    text = base64.urlsafe_b64encode(raw).decode("ascii")
    return text if padded else text.rstrip("=")


def refused(text: str) -> FrameError:
    with pytest.raises(FrameError) as caught:
        p.parse_client_frame(text)
    return caught.value


def refused_obj(frame: Any) -> FrameError:
    return refused(json.dumps(frame))


def assert_answerable(error: FrameError) -> None:
    """What the hub sends back for `error` is valid JSON in valid UTF-8."""
    assert error.code in ERROR_CODES
    assert error.frame_id is None or isinstance(error.frame_id, str)
    wire = frames.error(error.code, error.detail, error.frame_id)
    wire.encode("utf-8")
    answer = json.loads(wire)
    assert answer["type"] == "error"
    assert answer["code"] == error.code
    # A split surrogate pair in the id reads back joined: JSON spells both the same.
    assert answer.get("id") == (None if error.frame_id is None else as_json_reads(error.frame_id))


# -- strategies ---------------------------------------------------------------

# Hypothesis leaves lone surrogates out of st.text() by default (and draws
# them rarely even when allowed); a client's `"\ud800"` escape puts one in a
# Python str, so these strategies draw them often.
any_char = st.one_of(
    st.characters(exclude_categories=()),
    st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "\x00"]),
)


def any_str(max_size: int | None = None) -> st.SearchStrategy[str]:
    return st.lists(any_char, max_size=max_size).map("".join)


def as_json_reads(text: str) -> str:
    """`text` as JSON gives it back: an escaped surrogate pair reads as one character."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


ids = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64)


@st.composite
def ciphertexts(draw: st.DrawFn, max_bytes: int = 512) -> str:
    raw = draw(st.binary(min_size=1, max_size=max_bytes))
    return b64(raw, padded=draw(st.booleans()))


@st.composite
def valid_frames(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["send-broadcast", "send-recipients", "resume", "ping", "auth"]))
    if kind == "send-broadcast":
        return {"type": "send", "id": draw(ids), "ciphertext": draw(ciphertexts())}
    if kind == "send-recipients":
        recipients = draw(st.dictionaries(ids, ciphertexts(64), min_size=1, max_size=8))
        return {"type": "send", "id": draw(ids), "recipients": recipients}
    if kind == "resume":
        return {"type": "resume", "after": draw(st.integers(0, 2**63 - 1))}
    if kind == "ping":
        return {"type": "ping"}
    token = draw(st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=300))
    return {"type": "auth", "token": token}


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**70)
    | st.floats()  # NaN and the infinities included: json.dumps writes them
    | any_str(20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_str(8), inner, max_size=4),
    max_leaves=12,
)
frame_types = st.sampled_from(["send", "resume", "ping", "auth"]) | any_str(8)
field_values = (
    json_values | ids | ciphertexts(32) | st.dictionaries(ids, ciphertexts(16), max_size=3)
)
frame_shaped = st.fixed_dictionaries(
    {"type": frame_types | json_values},
    optional={
        "id": ids | json_values,
        "ciphertext": field_values,
        "recipients": field_values,
        "after": st.integers(-5, 2**64) | json_values,
        "token": any_str(10) | json_values,
        "extra": json_values,
    },
)


@st.composite
def mangled(draw: st.DrawFn) -> str:
    """A valid frame's JSON with a few characters cut, replaced or added."""
    text = json.dumps(draw(valid_frames()), ensure_ascii=draw(st.booleans()))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 3))
        text = text[:at] + draw(any_str(3)) + text[at + cut :]
    return text


any_text = (
    any_str()
    | st.text()
    | st.text(st.sampled_from('{}[]",:0123456789.-eE \\ntrufalsNIy\x00\ud800'))
    | json_values.map(json.dumps)
    | frame_shaped.map(json.dumps)
    | frame_shaped.map(lambda frame: json.dumps(frame, ensure_ascii=False))
    | mangled()
)


# -- any text ----------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_text)
def test_any_text_gets_a_frame_or_an_answerable_frame_error(text: str) -> None:
    try:
        frame = p.parse_client_frame(text)
    except FrameError as error:
        assert_answerable(error)
    else:
        assert isinstance(frame, FRAME_TYPES)
        if isinstance(frame, SendFrame):
            texts = [frame.ciphertext] if frame.ciphertext is not None else []
            texts += list((frame.recipients or {}).values())
            assert texts
            assert all(1 <= p.decoded_length(c) <= p.MAX_CIPHERTEXT_BYTES for c in texts)


@settings(max_examples=200, deadline=None)
@given(valid_frames(), st.booleans())
def test_valid_frames_round_trip(frame: dict[str, Any], ascii_only: bool) -> None:
    parsed: ClientFrame = p.parse_client_frame(json.dumps(frame, ensure_ascii=ascii_only))
    assert parsed.model_dump(exclude_none=True) == frame


# -- examples: not a frame -----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "{",
        '{"type": "ping"',
        "{'type': 'ping'}",
        '{"type": "ping"} {"type": "ping"}',
        "\x00",
    ],
)
def test_text_that_is_not_json_is_a_validation_error(text: str) -> None:
    error = refused(text)
    assert error.code == "validation_error"
    assert error.frame_id is None


@pytest.mark.parametrize("text", ['[{"type": "ping"}]', "1", "1.5", '"ping"', "null", "true"])
def test_json_that_is_not_an_object_is_a_validation_error(text: str) -> None:
    assert refused(text).code == "validation_error"


@pytest.mark.parametrize(
    "frame",
    [
        {},
        {"id": "m1", "ciphertext": "AAAA"},
        {"type": "pong"},
        {"type": "welcome"},
        {"type": "PING"},
        {"type": ""},
        {"type": 1},
        {"type": None},
        {"type": ["ping"]},
        {"type": {"ping": True}},
    ],
)
def test_missing_unknown_or_non_string_type_is_a_validation_error(frame: dict[str, Any]) -> None:
    error = refused_obj(frame)
    assert error.code == "validation_error"
    assert error.frame_id == frame.get("id")


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "ping", "id": "m1"},
        {"type": "auth", "token": "t", "room": "r"},
        {"type": "resume", "after": 0, "limit": 10},
        {"type": "send", "id": "m1", "ciphertext": "AAAA", "to": "d1"},
    ],
)
def test_an_extra_field_is_a_validation_error(frame: dict[str, Any]) -> None:
    assert refused_obj(frame).code == "validation_error"


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "resume", "after": NaN}',
        '{"type": "resume", "after": Infinity}',
        '{"type": "resume", "after": -Infinity}',
        '{"type": "ping", "x": [NaN]}',
    ],
)
def test_nan_and_infinity_are_not_json(text: str) -> None:
    assert refused(text).code == "validation_error"


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "ping", "type": "ping"}',
        '{"type": "auth", "type": "ping", "token": "t"}',
        '{"type": "send", "id": "a", "id": "b", "ciphertext": "AAAA"}',
        '{"type": "send", "id": "m1", "recipients": {"d1": "AAAA", "d1": "BBBB"}}',
    ],
)
def test_duplicate_keys_are_a_validation_error(text: str) -> None:
    assert refused(text).code == "validation_error"


@pytest.mark.parametrize("opening", ["[", '{"a":', '{"type": "ping", "x": ['])
def test_deep_nesting_is_a_validation_error_not_a_recursion_error(opening: str) -> None:
    depth = min(100_000, (p.MAX_FRAME_BYTES - 32) // len(opening))
    assert refused(opening * depth).code == "validation_error"


def test_lone_surrogates_are_refused_and_the_answer_is_still_utf8() -> None:
    for text in [
        '{"type": "send", "id": "\\ud800", "ciphertext": "AAAA"}',
        '{"type": "send", "id": "\ud800", "ciphertext": "AAAA"}',
        '{"type": "auth", "token": "\\udfff"}',
        '{"type": "ping", "\\ud800": 1}',
        '{"type": "send", "id": "m1", "recipients": {"\\ud800": "AAAA"}}',
    ]:
        error = refused(text)
        assert error.code == "validation_error"
        assert_answerable(error)
    assert refused('{"type": "send", "id": "\\ud800", "ciphertext": "AAAA"}').frame_id == "\ud800"


# -- examples: frame size --------------------------------------------------------


def padded_ping(size: int) -> str:
    body = '{"type":"ping"}'
    return body + " " * (size - len(body))


def test_a_frame_of_exactly_256_kib_is_parsed() -> None:
    assert isinstance(p.parse_client_frame(padded_ping(p.MAX_FRAME_BYTES)), PingFrame)


def test_a_frame_over_256_kib_is_payload_too_large() -> None:
    assert refused(padded_ping(p.MAX_FRAME_BYTES + 1)).code == "payload_too_large"


def test_the_frame_limit_counts_utf8_bytes_not_characters() -> None:
    token = "€" * 100_000  # 100k characters, 300k bytes
    error = refused(json.dumps({"type": "auth", "token": token}, ensure_ascii=False))
    assert error.code == "payload_too_large"


# -- examples: send --------------------------------------------------------------


def test_broadcast_and_recipient_sends_are_parsed() -> None:
    frame = p.parse_client_frame('{"type":"send","id":"m-1","ciphertext":"aGk"}')
    assert frame == SendFrame(type="send", id="m-1", ciphertext="aGk")
    frame = p.parse_client_frame('{"type":"send","id":"m-2","recipients":{"d1":"aGk=","d2":"AA"}}')
    assert isinstance(frame, SendFrame)
    assert frame.ciphertext is None
    assert frame.recipients == {"d1": "aGk=", "d2": "AA"}


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "send", "id": "m1", "ciphertext": "AAAA", "recipients": {"d1": "AAAA"}},
        {"type": "send", "id": "m1"},
        {"type": "send", "id": "m1", "ciphertext": None, "recipients": None},
        {"type": "send", "id": "m1", "recipients": {}},
        {"type": "send", "id": "m1", "ciphertext": ""},
        {"type": "send", "id": "m1", "ciphertext": "=="},
        {"type": "send", "id": "m1", "recipients": {"d1": ""}},
        {"type": "send", "id": "m1", "recipients": {"d1": "AAAA", "d2": "A"}},
        {"type": "send", "id": "m1", "recipients": {"": "AAAA"}},
        {"type": "send", "id": "m1", "recipients": {"d 1": "AAAA"}},
        {"type": "send", "id": "m1", "recipients": ["d1", "AAAA"]},
        {"type": "send", "id": "m1", "recipients": {"d1": 1}},
        {"type": "send", "id": "m1", "ciphertext": 1234},
        {"type": "send", "id": "m1", "ciphertext": ["AAAA"]},
    ],
)
def test_malformed_sends_are_validation_errors_that_carry_the_id(frame: dict[str, Any]) -> None:
    error = refused_obj(frame)
    assert error.code == "validation_error"
    assert error.frame_id == "m1"


@pytest.mark.parametrize(
    "frame_id", ["", "x" * 65, "with space", "tab\t", "new\nline", "trailing\n", "é", "\x7f"]
)
def test_a_send_id_must_be_1_to_64_printable_ascii_characters(frame_id: str) -> None:
    error = refused_obj({"type": "send", "id": frame_id, "ciphertext": "AAAA"})
    assert error.code == "validation_error"
    assert error.frame_id == frame_id


@pytest.mark.parametrize("frame_id", ["x", "x" * 64, "!~", '"\\'])
def test_ids_of_1_to_64_printable_characters_are_accepted(frame_id: str) -> None:
    frame = p.parse_client_frame(json.dumps({"type": "send", "id": frame_id, "ciphertext": "AA"}))
    assert isinstance(frame, SendFrame)
    assert frame.id == frame_id


@pytest.mark.parametrize("frame_id", [None, 7, ["m1"], {"m": 1}])
def test_a_non_string_id_is_refused_and_not_echoed(frame_id: object) -> None:
    error = refused_obj({"type": "send", "id": frame_id, "ciphertext": "AAAA"})
    assert error.code == "validation_error"
    assert error.frame_id is None


@pytest.mark.parametrize(
    "ciphertext",
    [
        "AAAA+",
        "AA/A",
        "AA+A",
        "AA AA",
        "AAAA\n",
        "AAE=\n",
        "AAEC=\n",
        "\nAAAA",
        "AA=A",
        "A=AA",
        "AAAA===",
        "AAAA==",
        "AAE==",
        "AAAAA",
        "AAAA%3D",
        "ÀÁÂÃ",
        "AAAA\x00",
    ],
)
def test_a_ciphertext_that_is_not_base64url_is_a_validation_error(ciphertext: str) -> None:
    for frame in (
        {"type": "send", "id": "m1", "ciphertext": ciphertext},
        {"type": "send", "id": "m1", "recipients": {"d1": "AAAA", "d2": ciphertext}},
    ):
        error = refused_obj(frame)
        assert error.code == "validation_error"
        assert error.frame_id == "m1"


@pytest.mark.parametrize("padded", [False, True])
def test_a_ciphertext_of_exactly_64_kib_is_accepted(padded: bool) -> None:
    ciphertext = b64(bytes(64 * KIB), padded=padded)
    for text in (
        json.dumps({"type": "send", "id": "big", "ciphertext": ciphertext}),
        json.dumps({"type": "send", "id": "big", "recipients": {"d1": ciphertext}}),
    ):
        assert isinstance(p.parse_client_frame(text), SendFrame)


@pytest.mark.parametrize("size", [64 * KIB + 1, 64 * KIB + 2, 64 * KIB + 4, 100 * KIB, 190 * KIB])
@pytest.mark.parametrize("padded", [False, True])
def test_a_ciphertext_over_64_kib_is_payload_too_large_with_the_frame_id(
    size: int, padded: bool
) -> None:
    ciphertext = b64(bytes(size), padded=padded)
    for frame in (
        {"type": "send", "id": "big-1", "ciphertext": ciphertext},
        {"type": "send", "id": "big-1", "recipients": {"d1": "AAAA", "d2": ciphertext}},
    ):
        error = refused_obj(frame)
        assert error.code == "payload_too_large"
        assert error.frame_id == "big-1"


def test_256_recipients_are_accepted_and_257_refused() -> None:
    recipients = {f"d{i}": "AAAA" for i in range(256)}
    frame = p.parse_client_frame(json.dumps({"type": "send", "id": "m", "recipients": recipients}))
    assert isinstance(frame, SendFrame)
    assert frame.recipients is not None
    assert len(frame.recipients) == 256
    recipients["d256"] = "AAAA"
    error = refused_obj({"type": "send", "id": "m", "recipients": recipients})
    assert error.code == "validation_error"
    assert error.frame_id == "m"


# -- examples: resume, ping, auth --------------------------------------------------


@pytest.mark.parametrize("after", [0, 1, 41, 2**63 - 1])
def test_resume_accepts_non_negative_integers(after: int) -> None:
    assert p.parse_client_frame(json.dumps({"type": "resume", "after": after})) == ResumeFrame(
        type="resume", after=after
    )


@pytest.mark.parametrize(
    "after",
    ["-1", "-9223372036854775808", "true", "false", "null", "1.0", "0.5", "1e3", '"1"', "[1]",
     str(2**63), str(2**64), str(10**100), "1" * 5000],
)  # fmt: skip
def test_resume_refuses_anything_but_a_non_negative_int64(after: str) -> None:
    error = refused('{"type": "resume", "after": ' + after + "}")
    assert error.code == "validation_error"


def test_resume_needs_after() -> None:
    assert refused('{"type": "resume"}').code == "validation_error"


def test_ping_is_parsed() -> None:
    assert p.parse_client_frame('{"type":"ping"}') == PingFrame(type="ping")
    assert p.parse_client_frame(' \n{ "type" : "ping" }\t') == PingFrame(type="ping")


def test_auth_token_is_1_to_4096_characters() -> None:
    frame = p.parse_client_frame(json.dumps({"type": "auth", "token": "t" * 4096}))
    assert frame == AuthFrame(type="auth", token="t" * 4096)
    for token in ["", "t" * 4097]:
        assert refused_obj({"type": "auth", "token": token}).code == "validation_error"
    for bad in [None, 1, ["t"], {"t": 1}]:
        assert refused_obj({"type": "auth", "token": bad}).code == "validation_error"
    assert refused_obj({"type": "auth"}).code == "validation_error"


# -- decoded_length ----------------------------------------------------------------

payloads = st.binary(max_size=300) | st.builds(
    lambda n, seed: random.Random(seed).randbytes(n),
    st.integers(0, p.MAX_CIPHERTEXT_BYTES),
    st.integers(0, 2**32),
)


@settings(max_examples=150, deadline=None)
@given(payloads, st.booleans())
def test_decoded_length_is_the_length_of_the_bytes(raw: bytes, padded: bool) -> None:
    assert p.decoded_length(b64(raw, padded=padded)) == len(raw)


@settings(max_examples=30, deadline=None)
@given(
    st.builds(
        lambda n, seed: random.Random(seed).randbytes(n),
        st.integers(p.MAX_CIPHERTEXT_BYTES + 1, p.MAX_CIPHERTEXT_BYTES + 2048),
        st.integers(0, 2**32),
    ),
    st.booleans(),
)
def test_decoded_length_over_64_kib_is_payload_too_large(raw: bytes, padded: bool) -> None:
    with pytest.raises(FrameError) as caught:
        p.decoded_length(b64(raw, padded=padded))
    assert caught.value.code == "payload_too_large"


b64_alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(st.text(st.sampled_from(b64_alphabet), max_size=200), st.sampled_from(["", "=", "=="]))
def test_an_impossible_base64_length_is_refused(body: str, padding: str) -> None:
    text = body[: len(body) // 4 * 4] + "A"
    assert len(text) % 4 == 1
    with pytest.raises(FrameError) as caught:
        p.decoded_length(text + padding)
    assert caught.value.code == "validation_error"


def reference_length(text: str) -> int | None:
    """Strict RFC 4648 §5 with optional exact padding, None if not base64url."""
    pads = text.count("=")
    if pads and (pads > 2 or len(text) % 4 or not text.endswith("=" * pads)):
        return None
    unpadded = text.rstrip("=")
    if any(c not in b64_alphabet for c in unpadded) or len(unpadded) % 4 == 1:
        return None
    raw = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), altchars=b"-_", validate=True)
    return len(raw)


@settings(max_examples=400)
@given(any_str() | st.text(st.sampled_from(b64_alphabet + "=+/ \n\x00"), max_size=40))
def test_decoded_length_agrees_with_a_strict_decoder(text: str) -> None:
    expected = reference_length(text)
    if expected is None:
        with pytest.raises(FrameError) as caught:
            p.decoded_length(text)
        assert caught.value.code == "validation_error"
    else:
        assert p.decoded_length(text) == expected


# -- subprotocols ----------------------------------------------------------------


def test_bearer_from_subprotocols_finds_the_token_and_the_version() -> None:
    assert p.bearer_from_subprotocols(["confide.v1", "bearer.abc.def"]) == (True, "abc.def")
    assert p.bearer_from_subprotocols(["bearer.abc", "confide.v1"]) == (True, "abc")
    assert p.bearer_from_subprotocols(["bearer.abc"]) == (False, "abc")
    assert p.bearer_from_subprotocols(["confide.v1"]) == (True, None)
    assert p.bearer_from_subprotocols([]) == (False, None)
    assert p.bearer_from_subprotocols(["confide.v2", "Bearer.x", "bearer"]) == (False, None)
    assert p.bearer_from_subprotocols(["bearer.a", "bearer.b", "confide.v1"]) == (True, "a")


others = any_str(12).filter(lambda s: not s.startswith("bearer.") and s != "confide.v1")


@given(st.lists(others, max_size=5), any_str(40), st.booleans(), st.randoms())
def test_bearer_is_found_wherever_it_is_offered(
    noise: list[str], token: str, v1: bool, rnd: random.Random
) -> None:
    offered = [*noise, "bearer." + token, *(["confide.v1"] if v1 else [])]
    rnd.shuffle(offered)
    assert p.bearer_from_subprotocols(offered) == (v1, token)


@given(st.lists(others | st.just("confide.v1") | ids.map("bearer.".__add__), max_size=8))
def test_the_first_bearer_entry_wins(offered: list[str]) -> None:
    bearers = [o.removeprefix("bearer.") for o in offered if o.startswith("bearer.")]
    speaks, token = p.bearer_from_subprotocols(offered)
    assert speaks == ("confide.v1" in offered)
    assert token == (bearers[0] if bearers else None)


# -- TokenBucket -------------------------------------------------------------------

rates = st.floats(0.5, 200)
bursts = st.integers(1, 400).map(float)


@st.composite
def timestamps(draw: st.DrawFn) -> list[float]:
    start = draw(st.floats(0, 1e6))
    steps = draw(st.lists(st.floats(0, 2) | st.just(0.0), min_size=1, max_size=250))
    return list(accumulate(steps, initial=start))


@settings(max_examples=150, deadline=None)
@given(rates, bursts, timestamps())
def test_no_window_allows_more_than_burst_plus_rate_times_its_length(
    rate: float, burst: float, times: list[float]
) -> None:
    bucket = TokenBucket(rate=rate, burst=burst)
    allowed = [bucket.allow(t) for t in times]
    counts = list(accumulate((int(a) for a in allowed), initial=0))
    for i in range(len(times)):
        for j in range(i, len(times)):
            in_window = counts[j + 1] - counts[i]
            assert in_window <= burst + rate * (times[j] - times[i]) + 1


@settings(max_examples=100, deadline=None)
@given(rates, bursts, timestamps(), st.floats(0, 1e4))
def test_after_a_long_idle_period_a_full_burst_is_allowed(
    rate: float, burst: float, times: list[float], extra_idle: float
) -> None:
    bucket = TokenBucket(rate=rate, burst=burst)
    for t in times:
        bucket.allow(t)
    later = times[-1] + burst / rate + 1 + extra_idle
    results = [bucket.allow(later) for _ in range(int(burst) + 1)]
    assert results == [True] * int(burst) + [False]


@given(rates, bursts)
def test_a_fresh_bucket_allows_exactly_its_burst_at_one_instant(rate: float, burst: float) -> None:
    bucket = TokenBucket(rate=rate, burst=burst)
    results = [bucket.allow(5.0) for _ in range(int(burst) + 3)]
    assert results == [True] * int(burst) + [False] * 3
    assert bucket.strikes == 3


@settings(max_examples=150, deadline=None)
@given(st.floats(0.5, 20), st.integers(1, 10).map(float), timestamps())
def test_strikes_count_consecutive_refusals_and_reset_when_allowed(
    rate: float, burst: float, times: list[float]
) -> None:
    bucket = TokenBucket(rate=rate, burst=burst)
    run = 0
    for t in times:
        run = 0 if bucket.allow(t) else run + 1
        assert bucket.strikes == run


def test_a_rate_limited_connection_recovers_at_the_sustained_rate() -> None:
    bucket = TokenBucket(rate=10, burst=20)
    assert sum(bucket.allow(0.0) for _ in range(25)) == 20
    assert bucket.strikes == 5
    assert bucket.allow(0.05) is False
    assert bucket.allow(0.1) is True
    assert bucket.strikes == 0
    assert bucket.allow(0.1) is False


# -- server frames -----------------------------------------------------------------


@given(any_str(), st.integers(0, 2**63 - 1))
def test_ack_frame_is_json_with_the_id_and_seq(frame_id: str, seq: int) -> None:
    wire = frames.ack(frame_id, seq)
    wire.encode("utf-8")
    assert json.loads(wire) == {"type": "ack", "id": as_json_reads(frame_id), "seq": seq}


@given(any_str(20), any_str(), st.none() | any_str())
def test_error_frame_is_json_with_code_detail_and_optional_id(
    code: str, detail: str, frame_id: str | None
) -> None:
    wire = frames.error(code, detail, frame_id)
    wire.encode("utf-8")
    expected = {"type": "error", "code": as_json_reads(code), "detail": as_json_reads(detail)}
    if frame_id is not None:
        expected["id"] = as_json_reads(frame_id)
    assert json.loads(wire) == expected


@pytest.mark.parametrize("frame_id", ['quo"te', "back\\slash", "ünï©ødé 🙂", "\ud800", "\x00\n"])
def test_server_frames_carry_awkward_ids(frame_id: str) -> None:
    assert json.loads(frames.ack(frame_id, 7))["id"] == frame_id
    assert json.loads(frames.error("validation_error", "no", frame_id))["id"] == frame_id


plain_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_str(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_str(), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(any_str(), plain_json, max_size=5))
def test_dumps_writes_compact_utf8_json(frame: dict[str, Any]) -> None:
    wire = frames.dumps(frame)
    wire.encode("utf-8")
    assert json.loads(wire) == json.loads(json.dumps(frame))


def test_dumps_keeps_readable_unicode() -> None:
    assert frames.dumps({"type": "presence", "name": "Zoë"}) == '{"type":"presence","name":"Zoë"}'


_HOSTS = st.from_regex(r"[a-z0-9.-]{1,30}(:[0-9]{1,5})?", fullmatch=True)


@given(host=_HOSTS, secure=st.booleans())
def test_same_origin_is_the_sockets_scheme_and_host(host: str, secure: bool) -> None:
    scheme, web, other = ("wss", "https", "http") if secure else ("ws", "http", "https")
    assert p.same_origin(f"{web}://{host}", scheme, host)
    assert p.same_origin(f"{web}://{host}".upper(), scheme, host.upper())
    assert not p.same_origin(f"{other}://{host}", scheme, host)
    assert not p.same_origin(f"{web}://{host}.evil.example", scheme, host)
    assert not p.same_origin(f"{web}://{host}", scheme, None)
    assert not p.same_origin(f"{web}://{host}", scheme, "")


@given(origin=st.text(max_size=40), host=_HOSTS)
def test_same_origin_holds_only_for_exactly_that_origin(origin: str, host: str) -> None:
    if p.same_origin(origin, "ws", host):
        assert origin.lower() == f"http://{host}"
