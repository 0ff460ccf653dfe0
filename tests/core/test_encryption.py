"""Tests for app.core.encryption: sealed fields, wrapped data keys, blind indexes.

Every failure to open or unwrap must raise DecryptionError and nothing else, so
the negative tests use ``pytest.raises(DecryptionError)``: any other exception
(InvalidTag, ValueError, IndexError...) escapes it and fails the test.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import struct

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from app.core.encryption import (
    KEY_BYTES,
    DecryptionError,
    Keyring,
    blind_index,
    generate_key,
    normalize_email,
    open_sealed,
    open_sealed_v1,
    open_str,
    rewrap_data_key,
    seal,
    seal_str,
    sealed_key_id_v1,
    unwrap_data_key,
    wrap_data_key,
    wrapped_kid,
)

# Fixed keys keep hypothesis examples reproducible.
KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
MASTER_1 = bytes(range(200, 232))
MASTER_2 = bytes([7]) * 32
INDEX_KEY = bytes(range(50, 82))
DATA_KEY_ID = "7f1d3c2a-5b6e-4f70-8a91-b2c3d4e5f607"
PLACE = {"table": "accounts", "column": "email", "row_id": "42"}
OPEN = {**PLACE, "key_id": DATA_KEY_ID}

FAST = settings(max_examples=60, deadline=None)
QUICK = settings(max_examples=25, deadline=None)

keys = st.binary(min_size=KEY_BYTES, max_size=KEY_BYTES)
key_ids = st.one_of(
    st.uuids().map(str),
    st.just("system"),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64),
)
names = st.text(max_size=40)
kids = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)


def flip_bit(blob: bytes, bit: int) -> bytes:
    out = bytearray(blob)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def frame(*parts: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def ring(*entries: tuple[str, bytes]) -> Keyring:
    return Keyring(list(entries))


# --------------------------------------------------------------------------
# Keys


def test_generate_key_is_32_fresh_bytes() -> None:
    first, second = generate_key(), generate_key()
    assert isinstance(first, bytes)
    assert len(first) == KEY_BYTES == 32
    assert first != second


# --------------------------------------------------------------------------
# Sealed fields: round trips


@FAST
@given(key=keys, key_id=key_ids, plaintext=st.binary(max_size=256), t=names, c=names, r=names)
def test_seal_open_round_trip(
    key: bytes, key_id: str, plaintext: bytes, t: str, c: str, r: str
) -> None:
    blob = seal(key, key_id, plaintext, table=t, column=c, row_id=r)
    assert open_sealed(key, blob, key_id=key_id, table=t, column=c, row_id=r) == plaintext


@FAST
@given(key=keys, key_id=key_ids, text=st.text(max_size=200), t=names, c=names, r=names)
def test_seal_str_open_str_round_trip(
    key: bytes, key_id: str, text: str, t: str, c: str, r: str
) -> None:
    blob = seal_str(key, key_id, text, table=t, column=c, row_id=r)
    assert open_str(key, blob, key_id=key_id, table=t, column=c, row_id=r) == text


def test_sealed_layout_matches_the_documented_format() -> None:
    blob = seal(KEY_A, DATA_KEY_ID, b"hello", **PLACE)
    assert blob[0] == 2
    # version, salt, nonce, padded plaintext (a multiple of 32 bytes), tag
    assert len(blob) == 1 + 16 + 12 + 32 + 16
    assert len(seal(KEY_A, DATA_KEY_ID, b"x" * 31, **PLACE)) == 1 + 16 + 12 + 32 + 16
    assert len(seal(KEY_A, DATA_KEY_ID, b"x" * 32, **PLACE)) == 1 + 16 + 12 + 64 + 16
    assert b"hello" not in blob


@FAST
@given(key=keys, key_id=key_ids, plaintext=st.binary(max_size=64))
def test_a_sealed_field_names_no_key(key: bytes, key_id: str, plaintext: bytes) -> None:
    blob = seal(key, key_id, plaintext, **PLACE)
    assert key_id.encode() not in blob[:-16] or len(key_id) < 4
    # Two fields of one owner share nothing beyond the version byte.
    other = seal(key, key_id, plaintext, **PLACE)
    assert blob[0] == other[0] == 2
    assert blob[1:5] != other[1:5]


def test_known_answer_sealed_field_stays_readable() -> None:
    """Pin the format: a blob built by hand from the documented layout must open.

    Stored data outlives code; if this fails, existing databases become unreadable.
    """
    salt, nonce = bytes(range(16)), bytes(12)
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt, info=b"confide/field/v2/key"
    ).derive(KEY_A)
    aad = frame(
        b"confide/field", b"\x02", b"system", b"accounts", b"email", b"row-1"
    )  # domain, version, key id, table, column, row id
    padded = b"alice@example.com" + b"\x80" + bytes(14)
    body = AESGCM(derived).encrypt(nonce, padded, aad)
    blob = b"\x02" + salt + nonce + body
    opened = open_sealed(
        KEY_A, blob, key_id="system", table="accounts", column="email", row_id="row-1"
    )
    assert opened == b"alice@example.com"


def test_a_version_1_field_opens_for_the_migration_only() -> None:
    nonce = bytes(12)
    aad = frame(b"confide/field", b"\x01", b"system", b"accounts", b"email", b"row-1")
    body = AESGCM(KEY_A).encrypt(nonce, b"alice@example.com", aad)
    blob = b"\x01" + bytes([6]) + b"system" + nonce + body
    assert sealed_key_id_v1(blob) == "system"
    place = {"table": "accounts", "column": "email", "row_id": "row-1"}
    assert open_sealed_v1(KEY_A, blob, **place) == b"alice@example.com"
    with pytest.raises(DecryptionError):
        open_sealed(KEY_A, blob, key_id="system", **place)


def test_every_field_is_encrypted_under_a_key_of_its_own() -> None:
    """No data key encrypts anything itself, so none has a nonce budget to exhaust
    (the system key seals every audit entry and is never re-sealed)."""
    aad = frame(b"confide/field", b"\x02", b"system", b"accounts", b"email", b"42")
    for _ in range(20):
        blob = seal(KEY_A, "system", b"audit payload", **PLACE)
        salt, nonce, body = blob[1:17], blob[17:29], blob[29:]
        with pytest.raises(InvalidTag):
            AESGCM(KEY_A).decrypt(nonce, body, aad)
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=salt, info=b"confide/field/v2/key"
        ).derive(KEY_A)
        assert AESGCM(derived).decrypt(nonce, body, aad).startswith(b"audit payload\x80")


def test_two_seals_of_the_same_plaintext_differ() -> None:
    first = seal(KEY_A, DATA_KEY_ID, b"same", **PLACE)
    second = seal(KEY_A, DATA_KEY_ID, b"same", **PLACE)
    assert first != second
    assert first[1:29] != second[1:29]


def test_salts_and_nonces_do_not_repeat() -> None:
    heads = {seal(KEY_A, "system", b"", **PLACE)[1:29] for _ in range(2000)}
    assert len(heads) == 2000
    assert len({head[:16] for head in heads}) == 2000


# --------------------------------------------------------------------------
# Sealed fields: everything that must fail


@FAST
@given(
    key=keys,
    plaintext=st.binary(max_size=64),
    place=st.tuples(names, names, names),
    other=st.tuples(names, names, names),
)
def test_open_at_another_place_fails(
    key: bytes,
    plaintext: bytes,
    place: tuple[str, str, str],
    other: tuple[str, str, str],
) -> None:
    assume(place != other)
    t, c, r = place
    blob = seal(key, "system", plaintext, table=t, column=c, row_id=r)
    with pytest.raises(DecryptionError):
        open_sealed(key, blob, key_id="system", table=other[0], column=other[1], row_id=other[2])


@pytest.mark.parametrize(
    "moved",
    [
        pytest.param({"row_id": "43"}, id="another-row"),
        pytest.param({"column": "display_name"}, id="another-column"),
        pytest.param({"table": "incidents"}, id="another-table"),
        pytest.param({"key_id": "system"}, id="another-owner"),
    ],
)
def test_ciphertext_moved_elsewhere_fails(moved: dict[str, str]) -> None:
    blob = seal(KEY_A, DATA_KEY_ID, b"alice@example.com", **PLACE)
    with pytest.raises(DecryptionError):
        open_sealed(KEY_A, blob, **{**OPEN, **moved})


@pytest.mark.parametrize(
    ("sealed_at", "opened_at"),
    [
        (("a|b", "c", "r"), ("a", "b|c", "r")),
        (("a", "b:c", "r"), ("a:b", "c", "r")),
        (("t", "c\x00", "r"), ("t", "c", "\x00r")),
        (("t", "", "cr"), ("t", "c", "r")),
    ],
)
def test_associated_data_is_unambiguous(
    sealed_at: tuple[str, str, str], opened_at: tuple[str, str, str]
) -> None:
    blob = seal(KEY_A, "system", b"x", table=sealed_at[0], column=sealed_at[1], row_id=sealed_at[2])
    with pytest.raises(DecryptionError):
        open_sealed(
            KEY_A,
            blob,
            key_id="system",
            table=opened_at[0],
            column=opened_at[1],
            row_id=opened_at[2],
        )


@FAST
@given(key=keys, other=keys, plaintext=st.binary(max_size=64))
def test_open_with_wrong_key_fails(key: bytes, other: bytes, plaintext: bytes) -> None:
    assume(key != other)
    blob = seal(key, DATA_KEY_ID, plaintext, **PLACE)
    with pytest.raises(DecryptionError):
        open_sealed(other, blob, **OPEN)


def test_every_single_bit_flip_fails() -> None:
    blob = seal(KEY_A, DATA_KEY_ID, b"Tuesday 14:00 with Dr. Rivera", **PLACE)
    for bit in range(len(blob) * 8):
        with pytest.raises(DecryptionError):
            open_sealed(KEY_A, flip_bit(blob, bit), **OPEN)


@FAST
@given(key=keys, key_id=key_ids, plaintext=st.binary(max_size=128), data=st.data())
def test_any_bit_flip_fails(key: bytes, key_id: str, plaintext: bytes, data: st.DataObject) -> None:
    blob = seal(key, key_id, plaintext, **PLACE)
    bit = data.draw(st.integers(0, len(blob) * 8 - 1), label="bit")
    with pytest.raises(DecryptionError):
        open_sealed(key, flip_bit(blob, bit), key_id=key_id, **PLACE)


def test_truncation_at_every_length_fails() -> None:
    blob = seal(KEY_A, DATA_KEY_ID, b"a short secret", **PLACE)
    for length in range(len(blob)):
        with pytest.raises(DecryptionError):
            open_sealed(KEY_A, blob[:length], **OPEN)


def test_appended_bytes_fail() -> None:
    blob = seal(KEY_A, DATA_KEY_ID, b"secret", **PLACE)
    for extra in (b"\x00", b"=", bytes(16)):
        with pytest.raises(DecryptionError):
            open_sealed(KEY_A, blob + extra, **OPEN)


@pytest.mark.parametrize("version", [0, 1, 3, 255])
def test_unknown_version_fails(version: int) -> None:
    blob = seal(KEY_A, DATA_KEY_ID, b"secret", **PLACE)
    bad = bytes([version]) + blob[1:]
    with pytest.raises(DecryptionError):
        open_sealed(KEY_A, bad, **OPEN)


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x02",
        b"\x02" + bytes(28),  # salt and nonce, nothing else
        b"\x02" + bytes(28 + 47),  # one byte short of a padded block and tag
        b"\x01\x06system" + bytes(60),  # version 1
    ],
)
def test_malformed_blobs_fail(blob: bytes) -> None:
    with pytest.raises(DecryptionError):
        open_sealed(KEY_A, blob, **OPEN)


@FAST
@given(blob=st.binary(max_size=120))
def test_arbitrary_bytes_only_ever_raise_decryption_error(blob: bytes) -> None:
    with pytest.raises(DecryptionError):
        open_sealed(KEY_A, blob, **OPEN)
    with contextlib.suppress(DecryptionError):
        assert isinstance(sealed_key_id_v1(blob), str)


@FAST
@given(key=keys, plaintext=st.binary(max_size=80), data=st.data())
def test_a_forged_padding_is_refused(key: bytes, plaintext: bytes, data: st.DataObject) -> None:
    """A ciphertext whose padding is wrong cannot be made without the key; the
    check still refuses one built with it (no 0x80, or non-zero bytes after it)."""
    salt, nonce = bytes(16), bytes(12)
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt, info=b"confide/field/v2/key"
    ).derive(key)
    aad = frame(b"confide/field", b"\x02", b"system", b"accounts", b"email", b"42")
    bad = data.draw(
        st.sampled_from(
            [
                # no 0x80 marker at all
                plaintext.replace(b"\x80", b"") + bytes(32),
                # a marker followed by a non-zero byte
                plaintext + b"\x80\x01" + bytes(30),
            ]
        )
    )
    bad = bad + bytes(-len(bad) % 32)
    blob = b"\x02" + salt + nonce + AESGCM(derived).encrypt(nonce, bad, aad)
    with pytest.raises(DecryptionError):
        open_sealed(key, blob, key_id="system", **PLACE)


@pytest.mark.parametrize("bad_key", [b"", bytes(16), bytes(31), bytes(33)])
def test_open_with_a_key_of_the_wrong_length_fails(bad_key: bytes) -> None:
    blob = seal(KEY_A, DATA_KEY_ID, b"secret", **PLACE)
    with pytest.raises(DecryptionError):
        open_sealed(bad_key, blob, **OPEN)


def test_open_str_of_non_utf8_plaintext_fails() -> None:
    blob = seal(KEY_A, DATA_KEY_ID, b"\xff\xfe", **PLACE)
    with pytest.raises(DecryptionError):
        open_str(KEY_A, blob, **OPEN)


def test_open_at_an_unencodable_place_fails() -> None:
    blob = seal(KEY_A, DATA_KEY_ID, b"secret", **PLACE)
    with pytest.raises(DecryptionError):
        open_sealed(
            KEY_A, blob, key_id=DATA_KEY_ID, table="accounts", column="email", row_id="\ud800"
        )


@pytest.mark.parametrize("bad_key", [b"", bytes(16), bytes(31), bytes(33)])
def test_seal_rejects_a_key_of_the_wrong_length(bad_key: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        seal(bad_key, DATA_KEY_ID, b"x", **PLACE)


@pytest.mark.parametrize("bad_id", ["", "a" * 65, "with space", "tab\t", "é", "\x00"])
def test_seal_rejects_a_bad_key_id(bad_id: str) -> None:
    with pytest.raises(ValueError, match="data key id"):
        seal(KEY_A, bad_id, b"x", **PLACE)


def test_seal_str_rejects_lone_surrogates() -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        seal_str(KEY_A, DATA_KEY_ID, "\ud800", **PLACE)


# --------------------------------------------------------------------------
# Keyring


def test_keyring_newest_is_current() -> None:
    keyring = ring(("k1", MASTER_1), ("k2", MASTER_2))
    assert keyring.current_kid == "k2"
    assert keyring.kids() == ["k1", "k2"]
    assert keyring.get("k1") == MASTER_1
    assert keyring.get("k2") == MASTER_2
    with pytest.raises(KeyError):
        keyring.get("k3")


def test_keyring_kids_is_a_copy() -> None:
    keyring = ring(("k1", MASTER_1))
    keyring.kids().append("k9")
    assert keyring.kids() == ["k1"]


def test_keyring_needs_a_key() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Keyring([])


def test_keyring_refuses_duplicate_kids() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        ring(("k1", MASTER_1), ("k1", MASTER_2))


@pytest.mark.parametrize("bad_kid", ["", "a" * 33, "a b", "a:b", "a,b", "é", "k1\n", "k.1"])
def test_keyring_refuses_bad_kids(bad_kid: str) -> None:
    with pytest.raises(ValueError, match="key id"):
        ring((bad_kid, MASTER_1))


def test_keyring_accepts_the_widest_kid() -> None:
    kid = "A-z_09" + "x" * 26
    assert ring((kid, MASTER_1)).current_kid == kid


@pytest.mark.parametrize("bad_key", [b"", bytes(16), bytes(31), bytes(33), bytes(64)])
def test_keyring_refuses_keys_of_the_wrong_length(bad_key: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        ring(("k1", bad_key))


def test_keyring_repr_and_str_never_show_keys() -> None:
    keyring = ring(("old", MASTER_1), ("new", MASTER_2))
    for shown in (repr(keyring), str(keyring), f"{keyring}", f"{keyring!r}", repr([keyring])):
        assert "old" in shown
        assert "new" in shown
        for key in (MASTER_1, MASTER_2):
            assert repr(key) not in shown
            assert key.hex() not in shown
            assert base64.urlsafe_b64encode(key).decode().rstrip("=") not in shown
            assert base64.b64encode(key).decode().rstrip("=") not in shown


def test_keyring_has_no_instance_dict_to_leak() -> None:
    assert not hasattr(ring(("k1", MASTER_1)), "__dict__")


def test_with_new_key_adds_the_newest_and_leaves_the_original() -> None:
    original = ring(("k1", MASTER_1))
    rotated = original.with_new_key("k2", MASTER_2)
    assert rotated.current_kid == "k2"
    assert rotated.kids() == ["k1", "k2"]
    assert original.kids() == ["k1"]
    assert original.current_kid == "k1"
    with pytest.raises(ValueError, match="duplicate"):
        rotated.with_new_key("k1", generate_key())
    with pytest.raises(ValueError, match="32 bytes"):
        rotated.with_new_key("k3", bytes(8))


@FAST
@given(entries=st.lists(st.tuples(kids, keys), min_size=1, max_size=5, unique_by=lambda e: e[0]))
def test_parse_serialize_round_trip(entries: list[tuple[str, bytes]]) -> None:
    keyring = Keyring(entries)
    text = keyring.serialize()
    parsed = Keyring.parse(text)
    assert parsed.kids() == [kid for kid, _ in entries]
    assert parsed.current_kid == entries[-1][0]
    for kid, key in entries:
        assert parsed.get(kid) == key
    assert parsed.serialize() == text


def test_parse_reads_the_documented_format() -> None:
    b64_1 = base64.urlsafe_b64encode(MASTER_1).decode()  # padded
    b64_2 = base64.urlsafe_b64encode(MASTER_2).decode().rstrip("=")  # unpadded
    assert b64_1.endswith("=")
    keyring = Keyring.parse(f"2024-01:{b64_1},2025_06:{b64_2}")
    assert keyring.kids() == ["2024-01", "2025_06"]
    assert keyring.current_kid == "2025_06"
    assert keyring.get("2024-01") == MASTER_1
    assert keyring.get("2025_06") == MASTER_2


def test_parse_ignores_surrounding_whitespace() -> None:
    b64 = base64.urlsafe_b64encode(MASTER_1).decode()
    keyring = Keyring.parse(f" k1:{b64} , k2:{b64.rstrip('=')}\n")
    assert keyring.kids() == ["k1", "k2"]


def _b64(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


# A 32-byte key encodes to 43 characters whose last one carries 2 spare bits;
# changing it from "A" to "B" keeps the same bytes but is not the canonical spelling.
_NON_CANONICAL = "A" * 42 + "B"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("   \n", id="blank"),
        pytest.param("k1", id="no-colon"),
        pytest.param("k1:", id="no-key"),
        pytest.param(f":{_b64(MASTER_1)}", id="no-kid"),
        pytest.param(f"k 1:{_b64(MASTER_1)}", id="bad-kid"),
        pytest.param(f"k1:{_b64(MASTER_1)},", id="trailing-comma"),
        pytest.param(f",k1:{_b64(MASTER_1)}", id="leading-comma"),
        pytest.param(f"k1:{_b64(MASTER_1)},k1:{_b64(MASTER_2)}", id="duplicate-kid"),
        pytest.param(f"k1:{_b64(bytes(31))}", id="short-key"),
        pytest.param(f"k1:{_b64(bytes(33))}", id="long-key"),
        pytest.param("k1:" + "!" * 43, id="not-base64"),
        pytest.param("k1:" + "+/" * 21 + "A", id="standard-not-url-alphabet"),
        pytest.param(f"k1:{_b64(MASTER_1)[:-1]}", id="cut-short"),
        pytest.param(f"k1:{_b64(MASTER_1)}===", id="too-much-padding"),
        pytest.param(f"k1:{_b64(MASTER_1)[:20]} {_b64(MASTER_1)[20:]}", id="inner-space"),
        pytest.param(f"k1:{_NON_CANONICAL}", id="non-canonical"),
        pytest.param(f"k1:{_b64(MASTER_1)};k2:{_b64(MASTER_2)}", id="wrong-separator"),
    ],
)
def test_parse_refuses_bad_input(text: str) -> None:
    with pytest.raises(ValueError, match="key") as caught:
        Keyring.parse(text)
    message = str(caught.value)
    for key in (MASTER_1, MASTER_2):
        assert _b64(key) not in message


def test_non_canonical_example_really_decodes_to_32_bytes() -> None:
    assert len(base64.urlsafe_b64decode(_NON_CANONICAL + "=")) == 32


# --------------------------------------------------------------------------
# Wrapped data keys


@FAST
@given(kid=kids, master=keys, data_key_id=key_ids, data_key=keys)
def test_wrap_unwrap_round_trip(kid: str, master: bytes, data_key_id: str, data_key: bytes) -> None:
    keyring = ring((kid, master))
    wrapped = wrap_data_key(keyring, data_key_id, data_key)
    assert wrapped_kid(wrapped) == kid
    assert unwrap_data_key(keyring, data_key_id, wrapped) == data_key


def test_wrapped_layout_matches_the_documented_format() -> None:
    keyring = ring(("k1", MASTER_1), ("k2", MASTER_2))
    data_key = generate_key()
    wrapped = wrap_data_key(keyring, DATA_KEY_ID, data_key)
    assert wrapped[:4] == b"\x01\x02k2"
    assert len(wrapped) == 1 + 1 + 2 + 12 + 32 + 16
    assert data_key not in wrapped


def test_known_answer_wrapped_key_stays_unwrappable() -> None:
    nonce = bytes(range(12))
    aad = frame(b"confide/wrap", b"\x01", b"k1", DATA_KEY_ID.encode())  # domain, version, kid, id
    body = AESGCM(MASTER_1).encrypt(nonce, KEY_A, aad)
    wrapped = b"\x01\x02k1" + nonce + body
    assert unwrap_data_key(ring(("k1", MASTER_1)), DATA_KEY_ID, wrapped) == KEY_A


def test_two_wraps_of_the_same_key_differ() -> None:
    keyring = ring(("k1", MASTER_1))
    assert wrap_data_key(keyring, DATA_KEY_ID, KEY_A) != wrap_data_key(keyring, DATA_KEY_ID, KEY_A)


@FAST
@given(data_key_id=key_ids, other_id=key_ids)
def test_unwrap_under_another_data_key_id_fails(data_key_id: str, other_id: str) -> None:
    assume(data_key_id != other_id)
    keyring = ring(("k1", MASTER_1))
    wrapped = wrap_data_key(keyring, data_key_id, KEY_A)
    with pytest.raises(DecryptionError):
        unwrap_data_key(keyring, other_id, wrapped)


def test_unwrap_after_the_wrapping_master_key_is_retired_fails() -> None:
    old = ring(("k1", MASTER_1))
    wrapped = wrap_data_key(old, DATA_KEY_ID, KEY_A)
    retired = ring(("k2", MASTER_2))
    with pytest.raises(DecryptionError):
        unwrap_data_key(retired, DATA_KEY_ID, wrapped)


def test_unwrap_with_the_same_kid_but_another_key_fails() -> None:
    wrapped = wrap_data_key(ring(("k1", MASTER_1)), DATA_KEY_ID, KEY_A)
    with pytest.raises(DecryptionError):
        unwrap_data_key(ring(("k1", MASTER_2)), DATA_KEY_ID, wrapped)


def test_rotation_unwraps_old_and_wraps_new_under_the_newest() -> None:
    old = ring(("k1", MASTER_1))
    wrapped_old = wrap_data_key(old, DATA_KEY_ID, KEY_A)
    rotated = old.with_new_key("k2", MASTER_2)
    assert unwrap_data_key(rotated, DATA_KEY_ID, wrapped_old) == KEY_A
    wrapped_new = wrap_data_key(rotated, "system", KEY_B)
    assert wrapped_kid(wrapped_new) == "k2"
    assert unwrap_data_key(ring(("k2", MASTER_2)), "system", wrapped_new) == KEY_B


def test_rewrap_preserves_the_data_key_and_survives_retirement() -> None:
    old = ring(("k1", MASTER_1))
    new = ring(("k2", MASTER_2))
    wrapped_old = wrap_data_key(old, DATA_KEY_ID, KEY_A)
    field = seal(KEY_A, DATA_KEY_ID, b"Dr. Rivera", **PLACE)

    # By hand: unwrap with the old keyring, wrap with the new one.
    rewrapped = wrap_data_key(new, DATA_KEY_ID, unwrap_data_key(old, DATA_KEY_ID, wrapped_old))
    assert wrapped_kid(rewrapped) == "k2"
    data_key = unwrap_data_key(new, DATA_KEY_ID, rewrapped)
    assert data_key == KEY_A
    assert open_sealed(data_key, field, **OPEN) == b"Dr. Rivera"
    with pytest.raises(DecryptionError):
        unwrap_data_key(new, DATA_KEY_ID, wrapped_old)  # old master retired


def test_rewrap_data_key_helper_moves_to_the_newest_master() -> None:
    both = ring(("k1", MASTER_1), ("k2", MASTER_2))
    wrapped_old = wrap_data_key(ring(("k1", MASTER_1)), DATA_KEY_ID, KEY_A)
    rewrapped = rewrap_data_key(both, DATA_KEY_ID, wrapped_old)
    assert wrapped_kid(rewrapped) == "k2"
    assert unwrap_data_key(ring(("k2", MASTER_2)), DATA_KEY_ID, rewrapped) == KEY_A
    with pytest.raises(DecryptionError):
        rewrap_data_key(both, "another-id", wrapped_old)


def test_every_single_bit_flip_of_a_wrapped_key_fails() -> None:
    keyring = ring(("k1", MASTER_1), ("k2", MASTER_2))
    wrapped = wrap_data_key(keyring, DATA_KEY_ID, KEY_A)
    for bit in range(len(wrapped) * 8):
        with pytest.raises(DecryptionError):
            unwrap_data_key(keyring, DATA_KEY_ID, flip_bit(wrapped, bit))


def test_wrapped_key_truncated_at_every_length_fails() -> None:
    keyring = ring(("k1", MASTER_1))
    wrapped = wrap_data_key(keyring, DATA_KEY_ID, KEY_A)
    for length in range(len(wrapped)):
        with pytest.raises(DecryptionError):
            unwrap_data_key(keyring, DATA_KEY_ID, wrapped[:length])
    with pytest.raises(DecryptionError):
        unwrap_data_key(keyring, DATA_KEY_ID, wrapped + b"\x00")


@pytest.mark.parametrize("version", [0, 2])
def test_wrapped_key_with_unknown_version_fails(version: int) -> None:
    keyring = ring(("k1", MASTER_1))
    wrapped = bytes([version]) + wrap_data_key(keyring, DATA_KEY_ID, KEY_A)[1:]
    with pytest.raises(DecryptionError):
        unwrap_data_key(keyring, DATA_KEY_ID, wrapped)
    with pytest.raises(DecryptionError):
        wrapped_kid(wrapped)


@pytest.mark.parametrize(
    "wrapped",
    [b"", b"\x01", b"\x01\x02k1", b"\x01\x02k" + bytes(61), b"\x01\x02k.+" + bytes(59)],
)
def test_malformed_wrapped_keys_fail(wrapped: bytes) -> None:
    with pytest.raises(DecryptionError):
        wrapped_kid(wrapped)
    with pytest.raises(DecryptionError):
        unwrap_data_key(ring(("k1", MASTER_1)), DATA_KEY_ID, wrapped)


@FAST
@given(blob=st.binary(max_size=100))
def test_unwrap_of_arbitrary_bytes_only_raises_decryption_error(blob: bytes) -> None:
    with pytest.raises(DecryptionError):
        unwrap_data_key(ring(("k1", MASTER_1)), DATA_KEY_ID, blob)
    with contextlib.suppress(DecryptionError):
        assert isinstance(wrapped_kid(blob), str)


def test_unwrap_with_a_malformed_data_key_id_fails() -> None:
    keyring = ring(("k1", MASTER_1))
    wrapped = wrap_data_key(keyring, DATA_KEY_ID, KEY_A)
    with pytest.raises(DecryptionError):
        unwrap_data_key(keyring, "", wrapped)


def test_wrap_validates_its_input() -> None:
    keyring = ring(("k1", MASTER_1))
    with pytest.raises(ValueError, match="32 bytes"):
        wrap_data_key(keyring, DATA_KEY_ID, bytes(16))
    with pytest.raises(ValueError, match="data key id"):
        wrap_data_key(keyring, "", KEY_A)


def test_wrapped_key_does_not_open_as_a_sealed_field() -> None:
    """Domain separation: even if a master key were misused as a data key."""
    wrapped = wrap_data_key(ring(("k1", MASTER_1)), "k1", KEY_A)
    with pytest.raises(DecryptionError):
        open_sealed(MASTER_1, wrapped, **OPEN)


def test_erasure_by_destroying_the_wrapped_key() -> None:
    """Crypto-shredding: without the wrapped data key, sealed fields are unreadable."""
    keyring = ring(("k1", MASTER_1))
    data_key = generate_key()
    stored = {"wrapped": wrap_data_key(keyring, DATA_KEY_ID, data_key)}
    field = seal(data_key, DATA_KEY_ID, b"alice@example.com", **PLACE)
    del data_key
    del stored["wrapped"]  # erasure
    # What is left (the field, the keyring) cannot open it; a guessed key fails.
    with pytest.raises(DecryptionError):
        open_sealed(generate_key(), field, **OPEN)
    with pytest.raises(DecryptionError):
        open_sealed(MASTER_1, field, **OPEN)


# --------------------------------------------------------------------------
# Blind indexes


def test_blind_index_is_hmac_sha256_over_a_framed_input() -> None:
    """Pin the construction: stored indexes must stay findable across releases."""
    expected = hmac.new(
        INDEX_KEY,
        frame(b"confide/blind-index", b"account.email", b"alice@example.com"),
        hashlib.sha256,
    ).digest()
    assert blind_index(INDEX_KEY, "alice@example.com", purpose="account.email") == expected


@FAST
@given(key=keys, value=st.text(max_size=80), purpose=st.text(min_size=1, max_size=20))
def test_blind_index_is_deterministic_and_32_bytes(key: bytes, value: str, purpose: str) -> None:
    first = blind_index(key, value, purpose=purpose)
    assert len(first) == 32
    assert first == blind_index(key, value, purpose=purpose)


@QUICK
@given(value=st.text(max_size=40), purpose=st.text(min_size=1), other=st.text(min_size=1))
def test_blind_index_differs_by_purpose(value: str, purpose: str, other: str) -> None:
    assume(purpose != other)
    assert blind_index(INDEX_KEY, value, purpose=purpose) != blind_index(
        INDEX_KEY, value, purpose=other
    )


@QUICK
@given(key=keys, other=keys, value=st.text(max_size=40))
def test_blind_index_differs_by_key(key: bytes, other: bytes, value: str) -> None:
    assume(key != other)
    purpose = "account.email"
    assert blind_index(key, value, purpose=purpose) != blind_index(other, value, purpose=purpose)


def test_blind_index_differs_by_value_and_framing() -> None:
    idx = blind_index
    assert idx(INDEX_KEY, "a", purpose="room.member") != idx(INDEX_KEY, "b", purpose="room.member")
    assert idx(INDEX_KEY, "bc", purpose="a") != idx(INDEX_KEY, "c", purpose="ab")
    assert idx(INDEX_KEY, "x", purpose="room.member") != idx(INDEX_KEY, "x", purpose="audit.target")


def test_blind_index_validates_its_input() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        blind_index(bytes(16), "x", purpose="account.email")
    with pytest.raises(ValueError, match="purpose"):
        blind_index(INDEX_KEY, "x", purpose="")
    with pytest.raises(ValueError, match="UTF-8"):
        blind_index(INDEX_KEY, "\udcff", purpose="account.email")


# --------------------------------------------------------------------------
# Email normalization


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Alice@Example.com ", "alice@example.com"),
        ("  alice@example.com\n", "alice@example.com"),
        ("ＡＬＩＣＥ@ｅｘａｍｐｌｅ.ｃｏｍ", "alice@example.com"),  # fullwidth
        ("\u3000Alice@Example.COM\u3000", "alice@example.com"),  # ideographic spaces
        ("STRASSE@example.com", "strasse@example.com"),
        ("Straße@example.com", "strasse@example.com"),
    ],
)
def test_normalize_email(raw: str, normalized: str) -> None:
    assert normalize_email(raw) == normalized


def test_normalized_emails_share_a_blind_index() -> None:
    def index(email: str) -> bytes:
        return blind_index(INDEX_KEY, normalize_email(email), purpose="account.email")

    assert index("Alice@Example.com ") == index("alice@example.com")
    assert index("alice@example.com") != index("alice@example.org")


@settings(max_examples=200, deadline=None)
@given(email=st.text(max_size=30))
def test_normalize_email_is_idempotent(email: str) -> None:
    once = normalize_email(email)
    assert normalize_email(once) == once
    assert once == once.strip()
