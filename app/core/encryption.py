"""Encryption at rest: sealed fields, wrapped data keys, blind indexes.

This module is the whole of Confide's cryptography at rest
(docs/decisions/0002-encryption-at-rest.md and 0007-unlinkable-storage.md).
It is pure: bytes in, bytes out. It knows nothing of the database, FastAPI
or settings; callers fetch keys and rows and hand them over.

The key hierarchy
-----------------
* **Master keys** live in a `Keyring` (from configuration, or generated on
  first start in the embedded mode). Each has a short id, the *kid*. The
  newest key wraps; every key in the ring unwraps, so master keys rotate
  without downtime: add a new key, re-wrap the data keys at leisure
  (`rewrap_data_key`), and only then retire the old key.
* **Data keys** are random 256-bit keys, one per account (plus a "system"
  key for records that belong to no account). They are stored only
  *wrapped*: AES-256-GCM encrypted under the current master key
  (`wrap_data_key`).
* **Fields** (an email, a room title, a session time...) are *sealed* under
  a data key (`seal`), each column of each row on its own.
* **Blind indexes** (`blind_index`) are HMAC-SHA256 under a separate index
  key, for the few equality look-ups (log in by email) and for links between
  people that must not appear as plain ids side by side.

Why erasure is real (crypto-shredding)
--------------------------------------
Every personal field of an account is sealed under that account's data key,
and the data key exists nowhere in clear: only its wrapped form is stored.
Destroying the wrapped data key therefore makes every sealed copy of those
fields unreadable (replicas, exports, stray copies) without having to find
and overwrite each one: AES-256-GCM ciphertext without its key is noise.
A backup taken *before* the erasure still holds the wrapped key too; it
becomes unreadable once the master key that wrapped it is retired, which is
why master keys are rotated and old ones dropped after the backup retention
window.

Why a fresh key for every field, derived from the data key
------------------------------------------------------------
GCM with random 96-bit nonces is safe for about 2**32 encryptions under one
key (NIST SP 800-38D); past that a repeated nonce leaks the XOR of two
plaintexts and the authentication subkey. A shared key (the "system" data key
seals every audit payload, incident and login) would walk towards that budget
and never reset it. So each sealed field draws a random 128-bit salt and is
encrypted under HKDF-SHA256(data key, salt): every derived key encrypts
exactly one field, a nonce can never repeat under it, and no data key has a
budget to exhaust, however long it lives. The nonce is random too, so a
repeat would need 224 random bits to collide.

Why a sealed field names no key
-------------------------------
Version 1 started each sealed field with the id of its data key in clear, and
that id also stood in the owner's account row: one join named the owner of
every disclosure, notice and membership in a dump. Version 2 carries no key
id. The caller says whose record it opens (the person or room it looked the
row up for) and passes that data key's id; it is bound into the associated
data, so a field opened with another owner's key fails like a flipped bit. A
dump shows, for every sealed field, one constant version byte and then
random bytes; nothing groups the fields of one owner. Plaintexts are padded
to a multiple of 32 bytes, so lengths tell little (a role, a short name).

A wrapped data key still starts with the kid of the master key that wrapped
it: master kids name no person, and they let master keys rotate.

Why the associated data names version, table, column, row id and key id
-----------------------------------------------------------------------
GCM authenticates "associated data" without encrypting it. Binding each
ciphertext to its place (table, column, row id) means an attacker with
write access to the database cannot copy a ciphertext into another row or
column (say, swap two clients' emails, or move a disclosure onto another
account) and have it decrypt: it fails as surely as a flipped bit. Binding
the data key's id means a field only opens as the record of the owner it was
sealed for. The parts are length-prefixed, so ("a|b", "c") and ("a", "b|c")
are different associated data.

Formats
-------
sealed field (v2): 0x02 | salt (16) | nonce (12) | ciphertext of padded plaintext | tag (16)
wrapped key (v1):  0x01 | len(kid) (1 byte) | kid (ASCII) | nonce (12) | ciphertext (32) | tag (16)
Sealed fields of version 1 (0x01 | len(key_id) | key_id | nonce | ciphertext |
tag, no padding, no derived key) are only read by the migration that
re-seals them (`open_sealed_v1`, `sealed_key_id_v1`).

Every failure to open or unwrap, whatever its cause (malformed, truncated,
unknown version, unknown kid, wrong key, wrong place, tampered), raises
`DecryptionError` and nothing else, and its message never carries key
material or plaintext. Mistakes on the sealing side (a key of the wrong
length, an invalid id) raise `ValueError`.
"""

from __future__ import annotations

import os
import re
import struct
import unicodedata
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.core.codec import b64url_decode, b64url_encode

__all__ = [
    "KEY_BYTES",
    "DecryptionError",
    "Keyring",
    "blind_index",
    "generate_key",
    "normalize_email",
    "open_sealed",
    "open_sealed_v1",
    "open_str",
    "rewrap_data_key",
    "seal",
    "seal_str",
    "sealed_key_id_v1",
    "unwrap_data_key",
    "wrap_data_key",
    "wrapped_kid",
]

KEY_BYTES = 32
"""Every key here (master, data, index) is 256 bits."""

_VERSION = 1
_VERSION_BYTE = bytes([_VERSION])
_NONCE_BYTES = 12  # 96 bits: GCM's native nonce size (see module docstring).
_TAG_BYTES = 16
_MAX_KEY_ID = 64

# Domain labels at the head of each associated data / HMAC input, so that a
# blob made for one use can never verify as another even if keys were mixed up.
_FIELD_DOMAIN = b"confide/field"
_WRAP_DOMAIN = b"confide/wrap"
_INDEX_DOMAIN = b"confide/blind-index"

_KID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
# Data key ids are opaque: a uuid, or "system". Visible ASCII, no spaces.
_KEY_ID_RE = re.compile(rf"[\x21-\x7e]{{1,{_MAX_KEY_ID}}}")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]+={0,2}")


class DecryptionError(Exception):
    """A blob could not be opened or unwrapped.

    Deliberately uninformative: callers treat every cause alike, and the
    message never includes key material or plaintext.
    """


def generate_key() -> bytes:
    """A fresh random 256-bit key from the operating system's CSPRNG."""
    return os.urandom(KEY_BYTES)


# --------------------------------------------------------------------------
# Helpers


def _frame(*parts: bytes) -> bytes:
    """Length-prefix each part (4-byte big-endian), so the encoding is injective."""
    return b"".join(struct.pack(">I", len(part)) + part for part in parts)


def _check_key(key: bytes, what: str) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        raise ValueError(f"{what} must be {KEY_BYTES} bytes")


def _check_kid(kid: str) -> None:
    if not isinstance(kid, str) or _KID_RE.fullmatch(kid) is None:
        raise ValueError("key id must be 1-32 characters of [A-Za-z0-9_-]")


def _check_key_id(key_id: str) -> None:
    if not isinstance(key_id, str) or _KEY_ID_RE.fullmatch(key_id) is None:
        raise ValueError(f"data key id must be 1-{_MAX_KEY_ID} visible ASCII characters")


def _split(blob: bytes, id_pattern: re.Pattern[str], body_min: int) -> tuple[str, bytes, bytes]:
    """Parse ``version | len | id | nonce | body`` into (id, nonce, body).

    Raises DecryptionError for anything malformed; `body_min` is the
    smallest acceptable ciphertext-and-tag length.
    """
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise DecryptionError("not a byte string")
    data = bytes(blob)
    if len(data) < 2:
        raise DecryptionError("truncated")
    if data[0] != _VERSION:
        raise DecryptionError("unknown format version")
    id_len = data[1]
    id_end = 2 + id_len
    if len(data) < id_end + _NONCE_BYTES + body_min:
        raise DecryptionError("truncated")
    try:
        ident = data[2:id_end].decode("ascii")
    except UnicodeDecodeError:
        raise DecryptionError("malformed key id") from None
    if id_pattern.fullmatch(ident) is None:
        raise DecryptionError("malformed key id")
    nonce = data[id_end : id_end + _NONCE_BYTES]
    body = data[id_end + _NONCE_BYTES :]
    return ident, nonce, body


def _encode(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not encodable as UTF-8") from None


# --------------------------------------------------------------------------
# Master keys


class Keyring:
    """Master keys with ids; the newest (last added) encrypts, all decrypt.

    Immutable: `with_new_key` returns a new ring. Its repr names the kids
    only, never key bytes, so a keyring can be logged or shown in a traceback
    safely. `serialize` is the one method that returns key material.
    """

    __slots__ = ("_keys", "_order")

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        """`keys` is ordered oldest to newest; the last one wraps new data keys."""
        order: list[str] = []
        table: dict[str, bytes] = {}
        for kid, key in keys:
            _check_kid(kid)
            _check_key(key, f"master key {kid!r}")
            if kid in table:
                raise ValueError(f"duplicate master key id {kid!r}")
            order.append(kid)
            table[kid] = bytes(key)
        if not order:
            raise ValueError("a keyring needs at least one key")
        self._order: tuple[str, ...] = tuple(order)
        self._keys: dict[str, bytes] = table

    @property
    def current_kid(self) -> str:
        """The kid of the newest key: the one `wrap_data_key` uses."""
        return self._order[-1]

    def kids(self) -> list[str]:
        """All kids, oldest to newest."""
        return list(self._order)

    def get(self, kid: str) -> bytes:
        """The key named `kid`; KeyError if the ring does not hold it."""
        return self._keys[kid]

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """Read ``"kid1:<base64url key>,kid2:<base64url key>"`` (last is newest).

        Padding is optional; whitespace around entries is ignored (so a
        trailing newline in an environment variable or key file is harmless).
        Anything else is a ValueError whose message names no key material.
        """
        if not isinstance(text, str) or not text.strip():
            raise ValueError("empty keyring")
        keys: list[tuple[str, bytes]] = []
        for position, raw_entry in enumerate(text.split(","), start=1):
            entry = raw_entry.strip()
            kid, sep, encoded = entry.partition(":")
            if not sep:
                raise ValueError(f"keyring entry {position} is not kid:key")
            _check_kid(kid)
            keys.append((kid, _b64url_decode_key(encoded, kid)))
        return cls(keys)

    def serialize(self) -> str:
        """The inverse of `parse` (unpadded base64url). Contains the keys: handle as a secret."""
        return ",".join(f"{kid}:{b64url_encode(self._keys[kid])}" for kid in self._order)

    def with_new_key(self, kid: str, key: bytes) -> Keyring:
        """A new ring with `key` added as the newest; this ring is unchanged."""
        return Keyring([*((k, self._keys[k]) for k in self._order), (kid, key)])

    def __repr__(self) -> str:
        return f"Keyring(kids={list(self._order)!r}, current={self.current_kid!r})"

    __str__ = __repr__


def _b64url_decode_key(encoded: str, kid: str) -> bytes:
    # The standard library's decoder silently skips characters outside the
    # alphabet, so validate strictly first and insist on the canonical form:
    # one key, one spelling.
    if _B64URL_RE.fullmatch(encoded) is None:
        raise ValueError(f"master key {kid!r} is not base64url")
    bare = encoded.rstrip("=")
    try:
        key = b64url_decode(bare)
    except ValueError:
        raise ValueError(f"master key {kid!r} is not canonical base64url") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"master key {kid!r} must decode to {KEY_BYTES} bytes")
    return key


# --------------------------------------------------------------------------
# Data keys, wrapped under the master key


def _wrap_aad(kid: str, data_key_id: str) -> bytes:
    return _frame(_WRAP_DOMAIN, _VERSION_BYTE, kid.encode("ascii"), data_key_id.encode("ascii"))


def wrap_data_key(keyring: Keyring, data_key_id: str, data_key: bytes) -> bytes:
    """Encrypt `data_key` under the keyring's newest master key.

    The associated data binds `data_key_id`, so a wrapped key copied onto
    another account's key row does not unwrap there.
    """
    _check_key_id(data_key_id)
    _check_key(data_key, "data key")
    kid = keyring.current_kid
    nonce = os.urandom(_NONCE_BYTES)
    body = AESGCM(keyring.get(kid)).encrypt(nonce, bytes(data_key), _wrap_aad(kid, data_key_id))
    return _VERSION_BYTE + bytes([len(kid)]) + kid.encode("ascii") + nonce + body


def wrapped_kid(wrapped: bytes) -> str:
    """The kid of the master key a wrapped data key is under (no key needed)."""
    kid, _nonce, _body = _split(wrapped, _KID_RE, KEY_BYTES + _TAG_BYTES)
    return kid


def unwrap_data_key(keyring: Keyring, data_key_id: str, wrapped: bytes) -> bytes:
    """Recover a data key; DecryptionError on any failure.

    Fails if the master key that wrapped it has been retired from the ring,
    if the wrapped key belongs to another `data_key_id`, or if a single bit
    has changed.
    """
    kid, nonce, body = _split(wrapped, _KID_RE, KEY_BYTES + _TAG_BYTES)
    if len(body) != KEY_BYTES + _TAG_BYTES:
        raise DecryptionError("wrapped key has the wrong length")
    if not isinstance(data_key_id, str) or _KEY_ID_RE.fullmatch(data_key_id) is None:
        raise DecryptionError("malformed data key id")
    try:
        master = keyring.get(kid)
    except KeyError:
        raise DecryptionError("wrapped under a master key not in the keyring") from None
    try:
        return AESGCM(master).decrypt(nonce, body, _wrap_aad(kid, data_key_id))
    except InvalidTag:
        raise DecryptionError("cannot unwrap data key") from None


def rewrap_data_key(keyring: Keyring, data_key_id: str, wrapped: bytes) -> bytes:
    """Unwrap with whichever key in the ring wrapped it, wrap again under the newest.

    The step of a master-key rotation: run it over every stored wrapped key,
    then retire the old master key. The data key itself (and so every field
    sealed under it) is unchanged.
    """
    return wrap_data_key(keyring, data_key_id, unwrap_data_key(keyring, data_key_id, wrapped))


# --------------------------------------------------------------------------
# Sealed fields

_FIELD_VERSION = 2
_FIELD_VERSION_BYTE = bytes([_FIELD_VERSION])
_SALT_BYTES = 16
_PAD_TO = 32
_FIELD_HEADER = 1 + _SALT_BYTES + _NONCE_BYTES
_DERIVE_INFO = b"confide/field/v2/key"


def _field_aad(version: bytes, key_id: str, table: str, column: str, row_id: str) -> bytes:
    return _frame(
        _FIELD_DOMAIN,
        version,
        key_id.encode("ascii"),
        _encode(table, "table"),
        _encode(column, "column"),
        _encode(row_id, "row id"),
    )


def _field_key(key: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=_DERIVE_INFO).derive(
        bytes(key)
    )


def _pad(data: bytes) -> bytes:
    """ISO/IEC 7816-4 padding: 0x80, then zeros up to a multiple of 32 bytes."""
    padded = data + b"\x80"
    return padded + b"\x00" * (-len(padded) % _PAD_TO)


def _unpad(data: bytes) -> bytes:
    end = data.rfind(b"\x80")
    if end < 0 or data[end + 1 :].strip(b"\x00") or len(data) % _PAD_TO:
        raise DecryptionError("bad padding")
    return data[:end]


def seal(
    key: bytes, key_id: str, plaintext: bytes, *, table: str, column: str, row_id: str
) -> bytes:
    """Encrypt one field of one row under data key `key` (whose id is `key_id`).

    The result opens only with the same key and key id, at the same (table,
    column, row_id); it names neither (see the module docstring).
    """
    _check_key(key, "data key")
    _check_key_id(key_id)
    aad = _field_aad(_FIELD_VERSION_BYTE, key_id, table, column, row_id)
    salt = os.urandom(_SALT_BYTES)
    nonce = os.urandom(_NONCE_BYTES)
    body = AESGCM(_field_key(key, salt)).encrypt(nonce, _pad(bytes(plaintext)), aad)
    return _FIELD_VERSION_BYTE + salt + nonce + body


def open_sealed(
    key: bytes, blob: bytes, *, key_id: str, table: str, column: str, row_id: str
) -> bytes:
    """Decrypt a sealed field; DecryptionError on any failure.

    Fails with the wrong key or key id, at another table, column or row id,
    or if the blob was altered or truncated in any way.
    """
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise DecryptionError("not a byte string")
    data = bytes(blob)
    if len(data) < _FIELD_HEADER + _PAD_TO + _TAG_BYTES:
        raise DecryptionError("truncated")
    if data[0] != _FIELD_VERSION:
        raise DecryptionError("unknown format version")
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        raise DecryptionError("data key has the wrong length")
    if not isinstance(key_id, str) or _KEY_ID_RE.fullmatch(key_id) is None:
        raise DecryptionError("malformed data key id")
    try:
        aad = _field_aad(_FIELD_VERSION_BYTE, key_id, table, column, row_id)
    except ValueError:
        raise DecryptionError("place is not encodable") from None
    salt = data[1 : 1 + _SALT_BYTES]
    nonce = data[1 + _SALT_BYTES : _FIELD_HEADER]
    try:
        padded = AESGCM(_field_key(key, salt)).decrypt(nonce, data[_FIELD_HEADER:], aad)
    except InvalidTag:
        raise DecryptionError("cannot open sealed field") from None
    return _unpad(padded)


def seal_str(
    key: bytes, key_id: str, plaintext: str, *, table: str, column: str, row_id: str
) -> bytes:
    """`seal` for text (stored as UTF-8)."""
    data = _encode(plaintext, "plaintext")
    return seal(key, key_id, data, table=table, column=column, row_id=row_id)


def open_str(key: bytes, blob: bytes, *, key_id: str, table: str, column: str, row_id: str) -> str:
    """`open_sealed` for text; DecryptionError also if the plaintext is not UTF-8."""
    data = open_sealed(key, blob, key_id=key_id, table=table, column=column, row_id=row_id)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionError("sealed field is not text") from None


def sealed_key_id_v1(blob: bytes) -> str:
    """The data key id in the clear prefix of a version 1 field (migration only)."""
    key_id, _nonce, _body = _split(blob, _KEY_ID_RE, _TAG_BYTES)
    return key_id


def open_sealed_v1(key: bytes, blob: bytes, *, table: str, column: str, row_id: str) -> bytes:
    """Open a version 1 field (migration only); DecryptionError on any failure."""
    key_id, nonce, body = _split(blob, _KEY_ID_RE, _TAG_BYTES)
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        raise DecryptionError("data key has the wrong length")
    try:
        aad = _field_aad(_VERSION_BYTE, key_id, table, column, row_id)
    except ValueError:
        raise DecryptionError("place is not encodable") from None
    try:
        return AESGCM(bytes(key)).decrypt(nonce, body, aad)
    except InvalidTag:
        raise DecryptionError("cannot open sealed field") from None


# --------------------------------------------------------------------------
# Blind indexes


def blind_index(key: bytes, value: str, *, purpose: str) -> bytes:
    """HMAC-SHA256 of `value` under the index key, separated by `purpose`.

    Deterministic, so it supports equality look-ups, but without the index
    key it reveals nothing about the value, and `purpose` (for example
    "account.email", "room.member", "audit.target") keeps an index made for
    one use from matching one made for another. The index key must be its
    own key, never a master or data key. Normalize first where equality is
    looser than identity (`normalize_email`).
    """
    _check_key(key, "index key")
    if not isinstance(purpose, str) or not purpose:
        raise ValueError("purpose must be a non-empty string")
    mac = crypto_hmac.HMAC(bytes(key), hashes.SHA256())
    mac.update(_frame(_INDEX_DOMAIN, _encode(purpose, "purpose"), _encode(value, "value")))
    return mac.finalize()


def normalize_email(email: str) -> str:
    """The form of an email address that is blind-indexed: NFKC, stripped, casefolded.

    Casefolding can leave a string that is no longer in NFKC, so normalize
    again afterwards; the result is a fixed point (normalizing it twice
    changes nothing).
    """
    text = unicodedata.normalize("NFKC", email).strip().casefold()
    return unicodedata.normalize("NFKC", text).strip()
