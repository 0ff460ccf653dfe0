"""The strict codecs every edge shares: ids, base64url and JSON.

Each accepts exactly one spelling of a value, so two parsers can never read
the same input two ways (no malleable tokens, ids or frames).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any


def canonical_uuid(value: str) -> str | None:
    """The canonical spelling (lower-case, hyphenated) of a UUID, or None if `value` is none."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None


def new_id() -> str:
    """A fresh record id: a random UUID, spelled canonically."""
    return str(uuid.uuid4())


def is_id(value: object) -> bool:
    """Whether `value` is a record id as Confide writes them: a UUID, spelled canonically.

    Anything else cannot name a record and is never sent to the database
    (PostgreSQL refuses a NUL that SQLite would compare): both answer the same.
    """
    return isinstance(value, str) and canonical_uuid(value) == value


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 4648 §5, RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url, refusing every non-canonical spelling with ValueError.

    Padding, characters outside the alphabet and unused low bits in the last
    character are refused: exactly one string decodes to a given byte string.
    """
    if "=" in text or not text.isascii():
        raise ValueError("not canonical base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:  # length % 4 == 1 is never valid
        raise ValueError("not base64url") from exc
    if b64url_encode(data) != text:
        raise ValueError("not canonical base64url")
    return data


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Libraries disagree on duplicate member names (first wins, last wins):
    # refusing them removes the parser differential (RFC 8259 §4, RFC 7515 §5.2).
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise ValueError(f"duplicate member name {name!r}")
        result[name] = value
    return result


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259 §6); Python's json accepts them by default.
    raise ValueError(f"{name} is not JSON")


def strict_json_loads(text: str) -> Any:
    """Parse JSON text, refusing duplicate member names and NaN/Infinity.

    Raises ValueError (RecursionError for absurd nesting is turned into ValueError too).
    """
    try:
        return json.loads(
            text, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant
        )
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
