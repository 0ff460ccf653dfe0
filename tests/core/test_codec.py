"""The shared strict codecs: one spelling per value, everything else refused."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.codec import b64url_decode, b64url_encode, canonical_uuid, is_id, strict_json_loads


def test_b64url_is_unpadded_url_alphabet() -> None:
    assert b64url_encode(b"\xfb\xff") == "-_8"
    assert b64url_encode(b"") == ""
    assert b64url_decode("-_8") == b"\xfb\xff"


@given(st.binary(max_size=200))
def test_b64url_round_trips(data: bytes) -> None:
    text = b64url_encode(data)
    assert "=" not in text
    assert b64url_decode(text) == data


@given(
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ \n.",
        max_size=24,
    )
)
def test_b64url_decode_accepts_exactly_the_canonical_spelling(text: str) -> None:
    try:
        data = b64url_decode(text)
    except ValueError:
        # Refused: then no byte string has this spelling.
        padded = text + "=" * (-len(text) % 4)
        try:
            decoded = base64.urlsafe_b64decode(padded)
        except ValueError:
            return
        assert b64url_encode(decoded) != text
    else:
        assert b64url_encode(data) == text


@pytest.mark.parametrize("text", ["-_9", "AA==", "A", "a+b/", "QQ\n", "é"])
def test_b64url_decode_refuses_other_spellings(text: str) -> None:
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode(text)


@given(st.uuids())
def test_ids_are_canonical_uuids(value: uuid.UUID) -> None:
    text = str(value)
    assert is_id(text)
    assert canonical_uuid(text.upper()) == text
    assert not is_id(text.upper())
    assert not is_id(text.replace("-", ""))
    assert not is_id(text + "\x00")


@pytest.mark.parametrize("value", ["", "not an id", "\x00", None, 7])
def test_non_ids(value: object) -> None:
    assert not is_id(value)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=20,
    )
)
def test_strict_json_reads_what_json_writes(value: object) -> None:
    assert strict_json_loads(json.dumps(value)) == value


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"a":1,"a":2}', "duplicate member name 'a'"),
        ("NaN", "NaN is not JSON"),
        ("[Infinity]", "Infinity is not JSON"),
        ("-Infinity", "-Infinity is not JSON"),
        ("{", "Expecting property name"),
        ("[" * 100_000, "nested too deeply"),
    ],
)
def test_strict_json_refuses(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        strict_json_loads(text)
