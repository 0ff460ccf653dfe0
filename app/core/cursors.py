"""Opaque, sealed cursors for paginated lists.

A cursor names a position in a list: the sort key of the last item a page
held. It travels to the client and back, so it is sealed (AES-256-GCM under
a key derived from the index key), never plain: a client learns nothing from
it (no id, no time, not even how long the key is beyond a padded bucket), and
cannot forge one or move it to another list. The associated data names the
list and whoever asked for it (`scope`), so a cursor handed out on one
person's rooms fails to open on another person's rooms or on their notices.

Layout, base64url without padding: version byte 1, 12-byte random nonce,
then AES-GCM over the JSON array of the key's parts, padded with spaces to a
multiple of 32 bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.core.errors import ValidationFailed

#: One part of a position: a string or an integer (times as integer microseconds).
Part = str | int
Position = tuple[Part, ...]

VERSION = 1
#: The longest cursor accepted, in characters (a position is a few ids and times).
MAX_CURSOR_CHARS = 512
_PAD = 32
_NONCE = 12


class InvalidCursor(ValidationFailed):
    code, title = "invalid_cursor", "Invalid cursor"


def cursor_key(index_key: bytes) -> bytes:
    """The cursors' own 256-bit key, derived from the index key (HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"confide cursor v1").derive(
        index_key
    )


def _aad(scope: Sequence[str]) -> bytes:
    return json.dumps(["confide cursor v1", *scope], separators=(",", ":")).encode()


def seal(key: bytes, scope: Sequence[str], position: Position) -> str:
    """The cursor for `position` in the list `scope` names."""
    plain = json.dumps(list(position), separators=(",", ":"), ensure_ascii=True).encode()
    plain += b" " * (-len(plain) % _PAD)
    nonce = os.urandom(_NONCE)
    sealed = bytes([VERSION]) + nonce + AESGCM(key).encrypt(nonce, plain, _aad(scope))
    cursor = base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()
    if len(cursor) > MAX_CURSOR_CHARS:
        # `open_` would refuse it: a list whose sort key is this long is a bug, not a page.
        raise ValueError(f"a cursor of {len(cursor)} characters; at most {MAX_CURSOR_CHARS}")
    return cursor


def open_(key: bytes, scope: Sequence[str], cursor: str) -> Position:
    """The position a cursor of `seal(key, scope, ...)` holds; `InvalidCursor` otherwise."""
    refused = InvalidCursor("The cursor is not one this list handed out.")
    if not cursor or len(cursor) > MAX_CURSOR_CHARS or not cursor.isascii():
        raise refused
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise refused from None
    if len(raw) < 1 + _NONCE + 16 or raw[0] != VERSION:
        raise refused
    try:
        plain = AESGCM(key).decrypt(raw[1 : 1 + _NONCE], raw[1 + _NONCE :], _aad(scope))
        parts = json.loads(plain)
    except (InvalidTag, ValueError):
        raise refused from None
    if not isinstance(parts, list) or not all(
        isinstance(p, str | int) and not isinstance(p, bool) for p in parts
    ):
        raise refused
    return tuple(parts)
