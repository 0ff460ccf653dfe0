"""Device requests and answers.

A public key travels as base64url text (RFC 4648 §5). Input may carry `=`
padding; the server keeps the raw bytes (opaque, never parsed) and always
answers without padding. Only the canonical encoding of a byte string is
accepted (no stray bits in the last character, no partial padding), so the
key a client reads back is, character for character, the key it sent
(less any padding).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import Field, PlainValidator, StringConstraints, WithJsonSchema

from app.core import examples
from app.core.codec import b64url_decode, is_id
from app.core.schemas import Clean, RequestModel, ResponseModel, with_example
from app.keys.statements import SIGNATURE_BYTES, load_p256
from app.models import MAX_PUBLIC_KEY_BYTES

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")
# The longest text that can encode MAX_PUBLIC_KEY_BYTES, padding included.
MAX_PUBLIC_KEY_CHARS = -(-MAX_PUBLIC_KEY_BYTES // 3) * 4


def decode_public_key(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("must be a base64url string")
    if len(value) > MAX_PUBLIC_KEY_CHARS:
        raise ValueError(f"must decode to at most {MAX_PUBLIC_KEY_BYTES} bytes")
    body = value.rstrip("=")
    padding = len(value) - len(body)
    if padding > 2 or (padding and len(value) % 4) or not _ALPHABET.fullmatch(body):
        raise ValueError("must be base64url (RFC 4648 §5)")
    if len(body) % 4 == 1:
        raise ValueError("must be base64url (RFC 4648 §5)")
    try:
        raw = b64url_decode(body)
    except ValueError:
        raise ValueError("must be canonical base64url (no stray trailing bits)") from None
    if not raw:
        raise ValueError("must not be empty")
    if len(raw) > MAX_PUBLIC_KEY_BYTES:
        raise ValueError(f"must decode to at most {MAX_PUBLIC_KEY_BYTES} bytes")
    return raw


PublicKey = Annotated[
    bytes,
    PlainValidator(decode_public_key),
    WithJsonSchema(
        {
            "type": "string",
            "format": "base64url",
            "minLength": 2,
            "maxLength": MAX_PUBLIC_KEY_CHARS,
            "description": (
                f"base64url, padding optional; 1 to {MAX_PUBLIC_KEY_BYTES} bytes decoded. "
                "Opaque to the server."
            ),
        }
    ),
]
Label = Annotated[str, StringConstraints(min_length=1, max_length=100), Clean]


def decode_p256_key(value: object) -> bytes:
    raw = decode_public_key(value)
    try:
        load_p256(raw)
    except ValueError:
        raise ValueError("must be a P-256 public key, SEC1 uncompressed (65 bytes)") from None
    return raw


def decode_signature(value: object) -> bytes:
    raw = decode_public_key(value)
    if len(raw) != SIGNATURE_BYTES:
        raise ValueError(f"must be r || s, {SIGNATURE_BYTES} bytes")
    return raw


def check_device_id(value: object) -> str:
    if not is_id(value):
        raise ValueError("must be a UUID in lower-case hyphenated form")
    assert isinstance(value, str)
    return value


P256Key = Annotated[
    bytes,
    PlainValidator(decode_p256_key),
    WithJsonSchema(
        {
            "type": "string",
            "format": "base64url",
            "minLength": 87,
            "maxLength": 88,
            "description": "a P-256 public key, SEC1 uncompressed (65 bytes), base64url",
        }
    ),
]
Signature = Annotated[
    bytes,
    PlainValidator(decode_signature),
    WithJsonSchema(
        {
            "type": "string",
            "format": "base64url",
            "minLength": 86,
            "maxLength": 88,
            "description": "ECDSA P-256 / SHA-256 signature r || s (64 bytes), base64url",
        }
    ),
]
DeviceId = Annotated[
    str,
    PlainValidator(check_device_id),
    WithJsonSchema({"type": "string", "format": "uuid"}),
]


class NewDevice(RequestModel):
    device_id: DeviceId = Field(
        description="chosen by the client: a random UUID, lower-case",
        examples=["0b8e3a52-5d3e-4c1a-9a53-3f0d2f7c9e11"],
    )
    label: Label = Field(examples=["Ada's laptop"])
    public_key: PublicKey = Field(examples=["BCm3bE4y0bgx3oP4Y5y0K1lK2wDq"])
    signing_key: P256Key = Field(description="the device's MLS signature key")
    signature: Signature = Field(
        description="the identity key's signature of the device statement (docs/PROTOCOL.md)"
    )


class RegisterDevice(NewDevice):
    identity_key: P256Key | None = Field(
        default=None, description="the account's identity key: with the first device only"
    )


class ResetIdentity(RequestModel):
    identity_key: P256Key = Field(description="the account's new identity key")
    device: NewDevice = Field(description="the first device of the new identity key")


class DeviceOut(ResponseModel):
    model_config = with_example(
        {
            "device_id": "2f6a8c1e-4b3d-4a5f-8e7c-9d0b1a2c3e4f",
            "label": "Ada's laptop",
            "public_key": examples.PUBLIC_KEY,
            "signing_key": examples.SIGNING_KEY,
            "signature": examples.SIGNATURE,
            "created_at": "2026-11-01T10:05:00Z",
        }
    )

    device_id: str
    label: str
    public_key: str = Field(description="base64url without padding")
    signing_key: str | None = Field(
        description="base64url; null for a device registered before devices were signed"
    )
    signature: str | None
    created_at: datetime


# -- MLS KeyPackages ---------------------------------------------------------------

#: The longest base64url text of a KeyPackage (app.devices.key_packages.MAX_KEY_PACKAGE_BYTES).
MAX_KEY_PACKAGE_CHARS = -(-8 * 1024 // 3) * 4
EncodedKeyPackage = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_KEY_PACKAGE_CHARS),
    WithJsonSchema(
        {
            "type": "string",
            "format": "base64url",
            "maxLength": MAX_KEY_PACKAGE_CHARS,
            "description": (
                "An encoded MLSMessage (RFC 9420 §6) of wire_format 5 (mls_key_package), "
                "base64url without padding; a KeyPackage of version 1 and cipher suite 2, "
                "at most 8192 bytes."
            ),
        }
    ),
]


class UploadKeyPackages(RequestModel):
    key_packages: list[EncodedKeyPackage] = Field(default_factory=list, max_length=100)
    last_resort: EncodedKeyPackage | None = Field(
        default=None,
        description="Replaces the device's last-resort package, handed out only when the "
        "others are gone, and kept.",
    )


class KeyPackageStockOut(ResponseModel):
    model_config = with_example({"count": 20, "last_resort": True})

    count: int = Field(description="Packages waiting to be claimed, the last-resort one aside")
    last_resort: bool = Field(description="Whether the device has a last-resort package")
