"""The MLS header parser: real messages from ts-mls, round trips, and hostile bytes.

The fixed vectors in tests/vectors/mls_vectors.json were made by ts-mls 1.6.4
(suite 2) with tests/vectors/make_mls_vectors.mjs. The encoder below is
written from RFC 9420's structures, independently of the parser.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core import mls
from tests.fixtures.mls import (
    expected_ref,
    group_info,
    header,
    key_package,
    key_package_body,
    private_message,
    public_message,
    u8,
    u16,
    u64,
    varint,
    welcome,
)

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "mls_vectors.json").read_text())[
    "vectors"
]


# -- fixed vectors from ts-mls ------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=[x["name"] for x in VECTORS])
def test_ts_mls_vectors(vector: dict[str, Any]) -> None:
    parsed = mls.parse(bytes.fromhex(vector["message"]))
    assert parsed.wire_format == vector["wire_format"]
    for name in ("epoch", "content_type", "cipher_suite", "sender_type", "sender_index"):
        if name in vector:
            assert getattr(parsed, name) == vector[name], name
    for name in ("group_id", "authenticated_data"):
        if name in vector:
            assert getattr(parsed, name).hex() == vector[name], name
    if "ref" in vector:
        assert isinstance(parsed, mls.KeyPackageHeader)
        assert parsed.ref is not None
        assert parsed.ref.hex() == vector["ref"]
    if "new_members" in vector:
        assert isinstance(parsed, mls.WelcomeHeader)
        assert [ref.hex() for ref in parsed.new_members] == vector["new_members"]


def test_a_welcome_names_the_refs_of_the_key_packages_it_adds() -> None:
    by_name = {x["name"]: mls.parse(bytes.fromhex(x["message"])) for x in VECTORS}
    refs = [by_name[n].ref for n in ("key_package_bob", "key_package_carol")]  # type: ignore[union-attr]
    assert list(by_name["welcome_bob_carol"].new_members) == refs  # type: ignore[union-attr]


@pytest.mark.parametrize("vector", VECTORS, ids=[x["name"] for x in VECTORS])
def test_every_truncation_of_a_real_message_is_refused(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["message"])
    for cut in range(len(data)):
        try:
            mls.parse(data[:cut])
        except mls.MlsFormatError:
            continue
        # Only a public message's unparsed tail may be cut and still read.
        assert vector["wire_format"] == 1


@pytest.mark.parametrize(
    "vector", [x for x in VECTORS if x["wire_format"] != 1], ids=lambda x: x["name"]
)
def test_trailing_bytes_are_refused(vector: dict[str, Any]) -> None:
    with pytest.raises(mls.MlsFormatError) as caught:
        mls.parse(bytes.fromhex(vector["message"]) + b"\x00")
    assert caught.value.reason == "trailing_bytes"


# -- varints --------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=2**30 - 1))
def test_varint_round_trip(n: int) -> None:
    assert mls.encode_varint(n) == varint(n)
    message = private_message(b"g", 0, 1, [b"", b"", b""])
    # A ciphertext of n bytes is too long to build for big n: read the length alone.
    reader = mls._Reader(mls.encode_varint(n))
    assert reader.varint() == n
    assert reader.pos == len(reader.data)
    assert mls.parse(message).wire_format == 2


@pytest.mark.parametrize(
    ("encoded", "reason"),
    [
        (b"\xc0", "bad_varint"),
        (b"\xff\xff\xff\xff", "bad_varint"),
        (b"\x40\x05", "non_minimal_varint"),
        (b"\x40\x3f", "non_minimal_varint"),
        (b"\x80\x00\x3f\xff", "non_minimal_varint"),
        (b"\x40", "truncated"),
        (b"\x80\x00\x40", "truncated"),
    ],
)
def test_bad_group_id_lengths(encoded: bytes, reason: str) -> None:
    data = header(2) + encoded + b"\x00" * 20
    with pytest.raises(mls.MlsFormatError) as caught:
        mls.parse(data if reason != "truncated" else header(2) + encoded)
    assert caught.value.reason == reason


def test_smallest_two_and_four_byte_lengths_are_read() -> None:
    for n in (64, 16383, 16384):
        data = private_message(b"x" * n, 7, 3, [b"", b"", b""])
        parsed = mls.parse(data)
        assert isinstance(parsed, mls.PrivateMessageHeader)
        assert len(parsed.group_id) == n


# -- round trips ---------------------------------------------------------------------------

blobs = st.binary(max_size=80)
epochs = st.integers(min_value=0, max_value=2**64 - 1)
content_types = st.sampled_from([1, 2, 3])


@given(blobs, epochs, content_types, st.lists(st.binary(max_size=100), min_size=3, max_size=3))
def test_private_message_round_trip(
    group_id: bytes, epoch: int, content_type: int, rest: list[bytes]
) -> None:
    assert mls.parse(private_message(group_id, epoch, content_type, rest)) == (
        mls.PrivateMessageHeader(group_id, epoch, content_type)
    )


@given(
    blobs, epochs, st.sampled_from([1, 2, 3, 4]), st.integers(0, 2**32 - 1), blobs, content_types
)
def test_public_message_round_trip(
    group_id: bytes, epoch: int, sender_type: int, index: int, ad: bytes, content_type: int
) -> None:
    parsed = mls.parse(public_message(group_id, epoch, sender_type, index, ad, content_type))
    assert parsed == mls.PublicMessageHeader(
        group_id,
        epoch,
        sender_type,
        index if sender_type in (1, 2) else None,
        ad,
        content_type,
    )


@given(st.integers(0, 0xFFFF), st.lists(st.binary(min_size=0, max_size=40), max_size=12), blobs)
def test_welcome_round_trip(suite: int, refs: list[bytes], info: bytes) -> None:
    assert mls.parse(welcome(suite, refs, info)) == mls.WelcomeHeader(suite, tuple(refs))


@given(st.integers(0, 0xFFFF), blobs, epochs)
def test_group_info_round_trip(suite: int, group_id: bytes, epoch: int) -> None:
    assert mls.parse(group_info(suite, group_id, epoch)) == mls.GroupInfoHeader(
        1, suite, group_id, epoch
    )


@given(st.integers(0, 0xFFFF), blobs, st.booleans())
def test_key_package_round_trip(suite: int, identity: bytes, x509: bool) -> None:
    body = key_package_body(suite, identity, x509)
    parsed = mls.parse(header(5) + body)
    ref = expected_ref(body) if suite in (1, 2, 3) else None
    assert parsed == mls.KeyPackageHeader(1, suite, ref)
    if suite in (1, 2, 3):
        assert mls.key_package_ref(body) == ref


# -- hostile bytes ----------------------------------------------------------------------------


def examples() -> list[bytes]:
    return [
        private_message(b"group", 5, 3, [b"ad", b"sender", b"ciphertext"]),
        public_message(b"group", 5, 1, 2, b"ad", 2),
        public_message(b"group", 5, 3, 0, b"", 1),
        welcome(2, [b"r" * 32, b"s" * 32], b"info"),
        group_info(2, b"group", 9),
        key_package(2, b"alice"),
        key_package(2, b"", x509=True),
    ] + [bytes.fromhex(x["message"]) for x in VECTORS]


REASONS = set(get_args(mls.Reason))


def parse_or_error(data: bytes) -> None:
    reason = None
    try:
        mls.parse(data)
    except mls.MlsFormatError as error:
        reason = error.reason
    assert reason is None or reason in REASONS


def test_every_truncation_of_every_example_is_a_header_or_a_format_error() -> None:
    for data in examples():
        for cut in range(len(data)):
            parse_or_error(data[:cut])


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_random_bytes_give_a_header_or_a_format_error(data: bytes) -> None:
    parse_or_error(data)


@settings(max_examples=400)
@given(st.sampled_from(range(13)), st.data())
def test_mutated_messages_give_a_header_or_a_format_error(which: int, draw: st.DataObject) -> None:
    data = bytearray(examples()[which % len(examples())])
    for _ in range(draw.draw(st.integers(1, 4))):
        at = draw.draw(st.integers(0, len(data) - 1))
        data[at] = draw.draw(st.integers(0, 255))
    parse_or_error(bytes(data))


@settings(max_examples=200)
@given(st.sampled_from(range(4)), st.binary(max_size=200))
def test_any_header_followed_by_anything(wire_format_ix: int, rest: bytes) -> None:
    parse_or_error(header([1, 2, 3, 4, 5][wire_format_ix]) + rest)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x00", "truncated"),
        (u16(2) + u16(2), "unknown_version"),
        (u16(1) + u16(0), "unknown_wire_format"),
        (u16(1) + u16(6), "unknown_wire_format"),
        (private_message(b"g", 1, 0, [b"", b"", b""]), "unknown_content_type"),
        (private_message(b"g", 1, 4, [b"", b"", b""]), "unknown_content_type"),
        (public_message(b"g", 1, 0, 0, b"", 1), "unknown_sender_type"),
        (public_message(b"g", 1, 5, 0, b"", 1), "unknown_sender_type"),
        (header(5) + u16(2) + u16(2), "unknown_version"),
        (header(4) + u16(0) + u16(2), "unknown_version"),
    ],
)
def test_reasons(data: bytes, reason: str) -> None:
    with pytest.raises(mls.MlsFormatError) as caught:
        mls.parse(data)
    assert caught.value.reason == reason


def test_a_key_package_with_an_unknown_credential_or_leaf_source_is_refused() -> None:
    body = bytearray(key_package_body(2, b"bob"))
    at = 4 + 3 * (2 + 65)  # version, suite; init_key, encryption_key, signature_key
    assert body[at : at + 2] == u16(1)
    body[at : at + 2] = u16(7)
    with pytest.raises(mls.MlsFormatError) as caught:
        mls.parse(header(5) + bytes(body))
    assert caught.value.reason == "unknown_credential_type"
    good = key_package_body(2, b"bob")
    source_at = good.index(u8(1) + u64(0) + u64(2**64 - 1))
    bad = good[:source_at] + u8(2) + good[source_at + 1 :]
    with pytest.raises(mls.MlsFormatError) as caught:
        mls.parse(header(5) + bad)
    assert caught.value.reason == "bad_leaf_node_source"
