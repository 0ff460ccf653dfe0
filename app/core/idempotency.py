"""Idempotency keys: the header's rules and the keyed hashes a stored answer is found by.

A client that retries a write (a room, an invitation, a disclosure, an incident)
sends the same `Idempotency-Key` (the IETF draft "The Idempotency-Key HTTP
Header Field"): a string of its choosing, such as a UUID. The server keeps the
first success answer under that key for a while and sends it again, unchanged,
to every retry (decision note 0013).

Pure: the header's syntax and two keyed hashes. A row is found by
`HMAC(k, account | route | client key)` and checked against
`HMAC(k, that hash | method | path | body)`, with `k` derived from the index key
and used for nothing else. Both values occur once in a dump: the account is
inside the hash, and the fingerprint covers the row's own hash, so two people
sending the same body leave no shared value (decision note 0007).
"""

from __future__ import annotations

import json
import re
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.core.errors import ConfideError, ValidationFailed

HEADER = "Idempotency-Key"
#: The header a replayed answer carries.
REPLAYED_HEADER = "Idempotent-Replayed"
#: The longest key accepted, in characters: a UUID is 36, a ULID 26.
MAX_KEY_CHARS = 255
# Visible ASCII without the quote and the backslash (a structured-field string's
# specials): nothing that can end a log line, split a header or need escaping.
_KEY = re.compile(rf"[\x21\x23-\x5b\x5d-\x7e]{{1,{MAX_KEY_CHARS}}}")
_HASH_DOMAIN = b"confide/idempotency-key"
_FINGERPRINT_DOMAIN = b"confide/idempotency-request"


class IdempotencyKeyInvalid(ConfideError):
    status, code, title = 400, "idempotency_key_invalid", "Invalid Idempotency-Key"


class IdempotencyKeyReused(ValidationFailed):
    """The key already stands for another request (another body or another target)."""

    code, title = "idempotency_key_reused", "Idempotency-Key reused"


def parse_key(value: str) -> str:
    """The client's key from the header: a bare token or a structured-field string.

    `"abc"` and `abc` are the same key. Anything else (empty, longer than
    MAX_KEY_CHARS, a space, a control character, a non-ASCII character, a quote
    inside) is IdempotencyKeyInvalid.
    """
    text = value.strip(" \t")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    if _KEY.fullmatch(text) is None:
        raise IdempotencyKeyInvalid(
            f"{HEADER} must be 1 to {MAX_KEY_CHARS} visible ASCII characters (a UUID will do),"
            ' without spaces, quotes or backslashes; a structured-field string ("...") is fine.'
        )
    return text


def derive_key(index_key: bytes) -> bytes:
    """The HMAC key of idempotency rows: derived from the index key, used for nothing else."""
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"confide idempotency keys").derive(index_key)


def _frame(*parts: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(part)) + part for part in parts)


def _mac(key: bytes, *parts: bytes) -> bytes:
    mac = crypto_hmac.HMAC(key, hashes.SHA256())
    mac.update(_frame(*parts))
    return mac.finalize()


def key_hash(key: bytes, *, account_id: str, route: str, client_key: str) -> bytes:
    """What a row is found by: one account's key on one route (template), 32 bytes."""
    return _mac(key, _HASH_DOMAIN, account_id.encode(), route.encode(), client_key.encode())


def canonical_body(body: bytes) -> bytes:
    """A JSON body with sorted keys and no spaces (so a re-encoded retry matches); else as is."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return body
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
        ).encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError):
        return body


def fingerprint(key: bytes, row_hash: bytes, *, method: str, path: str, body: bytes) -> bytes:
    """What the request was: the row's own hash, method, path (with its ids) and body."""
    return _mac(
        key, _FINGERPRINT_DOMAIN, row_hash, method.encode(), path.encode(), canonical_body(body)
    )
