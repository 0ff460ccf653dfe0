"""The byte strings identity keys sign, and the P-256 checks the server makes.

Pure (no database, no web framework): the server, tests and SDKs build the
same bytes. docs/PROTOCOL.md ("Identity keys and signed devices") spells
them out.

A *framed* value is its length as a 4-byte big-endian unsigned integer, then
its bytes. A device statement is

    frame("confide device v1") || frame(account id) || frame(device id)
        || frame(signing key) || frame(public key)

with ids as their canonical lower-case hyphenated UUID text in ASCII, keys
as raw bytes (signing key: P-256 SEC1 uncompressed, 65 bytes; public key:
the device's end-to-end key exactly as registered). The account's identity
key signs it with ECDSA P-256 / SHA-256; the signature is r || s, 32 bytes
each, big-endian (either s is accepted).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

DEVICE_CONTEXT = b"confide device v1"
#: SEC1 uncompressed P-256 point: 0x04 || x || y.
P256_POINT_BYTES = 65
#: r || s.
SIGNATURE_BYTES = 64


def frame(value: bytes) -> bytes:
    """`value` preceded by its length (4 bytes, big-endian)."""
    return len(value).to_bytes(4, "big") + value


def device_statement(
    account_id: str, device_id: str, signing_key: bytes, public_key: bytes
) -> bytes:
    """What the identity key signs when it vouches for a device."""
    return b"".join(
        frame(part)
        for part in (
            DEVICE_CONTEXT,
            account_id.encode("ascii"),
            device_id.encode("ascii"),
            signing_key,
            public_key,
        )
    )


def load_p256(point: bytes) -> ec.EllipticCurvePublicKey:
    """The key, if `point` is an uncompressed SEC1 P-256 point on the curve; else ValueError."""
    if len(point) != P256_POINT_BYTES or point[0] != 4:
        raise ValueError("must be an uncompressed P-256 point (65 bytes, starting 0x04)")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` (r || s) is `public_key`'s ECDSA-SHA256 signature of `message`."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        key = load_p256(public_key)
    except ValueError:
        return False
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (r and s):
        return False
    try:
        key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
