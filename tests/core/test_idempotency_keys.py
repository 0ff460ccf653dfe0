"""The `Idempotency-Key` header's rules and the keyed hashes of its rows (pure)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from app.core import idempotency as rules

FAST = settings(max_examples=100, deadline=None)
ALLOWED = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
good_keys = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"\\'),
    min_size=1,
    max_size=rules.MAX_KEY_CHARS,
)
KEY = rules.derive_key(bytes(32))


@FAST
@given(key=good_keys)
def test_a_good_key_reads_back_bare_and_quoted(key: str) -> None:
    assert rules.parse_key(key) == key
    assert rules.parse_key(f'"{key}"') == key
    assert rules.parse_key(f" {key}\t") == key


@FAST
@given(value=st.text(max_size=300))
def test_a_key_is_accepted_only_when_it_is_short_visible_ascii(value: str) -> None:
    bare = value.strip(" \t")
    if len(bare) >= 2 and bare[0] == bare[-1] == '"':
        bare = bare[1:-1]
    fits = ALLOWED.fullmatch(bare) is not None and len(bare) <= rules.MAX_KEY_CHARS
    if not fits:
        with pytest.raises(rules.IdempotencyKeyInvalid):
            rules.parse_key(value)
        return
    assert rules.parse_key(value) == bare


@pytest.mark.parametrize("value", ["", '""', "a" * 256, "a b", "a\r\nb", "é", 'a"b', "a\\b"])
def test_bad_keys_are_refused(value: str) -> None:
    with pytest.raises(rules.IdempotencyKeyInvalid) as refused:
        rules.parse_key(value)
    assert refused.value.status == 400
    assert refused.value.code == "idempotency_key_invalid"


parts = st.text(max_size=20)


@FAST
@given(a=st.tuples(parts, parts, parts), b=st.tuples(parts, parts, parts))
def test_the_row_hash_tells_accounts_routes_and_keys_apart(
    a: tuple[str, str, str], b: tuple[str, str, str]
) -> None:
    assume(a != b)
    first = rules.key_hash(KEY, account_id=a[0], route=a[1], client_key=a[2])
    second = rules.key_hash(KEY, account_id=b[0], route=b[1], client_key=b[2])
    assert first != second
    assert len(first) == 32
    # Keyed: another derived key gives another hash.
    other = rules.derive_key(bytes([1]) * 32)
    assert rules.key_hash(other, account_id=a[0], route=a[1], client_key=a[2]) != first


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


@FAST
@given(value=st.dictionaries(st.text(max_size=8), json_values, max_size=6), indent=st.booleans())
def test_a_re_encoded_body_has_the_same_fingerprint(value: dict[str, object], indent: bool) -> None:
    row = rules.key_hash(KEY, account_id="a", route="/v1/rooms", client_key="k")
    compact = json.dumps(value, separators=(",", ":")).encode()
    reordered = json.dumps(
        dict(reversed(list(value.items()))), indent=2 if indent else None, ensure_ascii=False
    ).encode()
    same = [
        rules.fingerprint(KEY, row, method="POST", path="/v1/rooms", body=body)
        for body in (compact, reordered)
    ]
    assert same[0] == same[1]


@FAST
@given(
    body=st.binary(max_size=64), other=st.binary(max_size=64), path=st.sampled_from(["/a", "/b"])
)
def test_another_body_or_path_has_another_fingerprint(body: bytes, other: bytes, path: str) -> None:
    assume(rules.canonical_body(body) != rules.canonical_body(other))
    row = rules.key_hash(KEY, account_id="a", route="/v1/rooms", client_key="k")
    first = rules.fingerprint(KEY, row, method="POST", path="/a", body=body)
    assert first != rules.fingerprint(KEY, row, method="POST", path="/a", body=other)
    assert (first == rules.fingerprint(KEY, row, method="POST", path=path, body=body)) == (
        path == "/a"
    )
    # The fingerprint covers the row: two people's identical bodies share no value.
    row2 = rules.key_hash(KEY, account_id="b", route="/v1/rooms", client_key="k")
    assert first != rules.fingerprint(KEY, row2, method="POST", path="/a", body=body)
