"""Fixed vectors for the TypeScript SDK, computed with the Python reference.

    .venv/bin/python -m tests.keys.sdk_vectors    rewrites the JSON file

The SDK's tests (clients/typescript/test/) check that it builds the same
bytes; tests/keys/test_sdk_vectors.py checks that the committed file is
still what the reference computes, so neither side drifts. Every key is
derived from a fixed scalar and every signature is deterministic (RFC 6979),
so the file is the same on every run.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from app.core.tokens import KEY_LOG_AUDIENCE, KEY_LOG_TYP, SigningKey, load_signing_key
from app.keys.log import (
    DEVICE_ADDED,
    DEVICE_REVOKED,
    IDENTITY_RESET,
    IDENTITY_SET,
    ZERO_HASH,
    Entry,
    LogState,
    check_head,
    extend,
    make_entry,
)
from app.keys.safety import groups, safety_number
from app.keys.statements import device_statement, verify
from tests.fixtures.identity import b64, point

PATH = (
    Path(__file__).resolve().parents[2]
    / "clients"
    / "typescript"
    / "test"
    / "vectors"
    / "keys.json"
)
ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ACCOUNT = "0b8e3a52-5d3e-4c1a-9a53-3f0d2f7c9e11"
OTHER_ACCOUNT = "5e0c3d7a-1f7e-4b53-8d0c-2a4f6b9e8d10"
DEVICES = (
    "3f9d1c2e-8a4b-4c6d-9e0f-1a2b3c4d5e6f",
    "a1b2c3d4-e5f6-4789-8abc-def012345678",
    "00000000-0000-4000-8000-000000000001",
)


def key(seed: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(seed, ec.SECP256R1())


def sign(private: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """r || s, deterministic (RFC 6979)."""
    der = private.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def e2e_key(label: str) -> bytes:
    """A stand-in for a device's end-to-end public key (any bytes are accepted)."""
    return hashlib.sha256(label.encode()).digest()


def wire(entry: Entry) -> dict[str, Any]:
    """An entry as the key-log endpoint answers it."""

    def opt(value: bytes) -> str | None:
        return b64(value) if value else None

    return {
        "seq": entry.seq,
        "kind": entry.kind,
        "device_id": entry.device_id or None,
        "identity_key": opt(entry.identity_key),
        "signing_key": opt(entry.signing_key),
        "public_key": opt(entry.public_key),
        "signature": opt(entry.signature),
        "prev_hash": entry.prev_hash.hex(),
        "hash": entry.hash.hex(),
    }


def statements() -> list[dict[str, Any]]:
    identity = key(1)
    out = []
    for n, device_id in enumerate(DEVICES):
        signing_key = point(key(100 + n))
        public_key = e2e_key(f"device {n}")[: 32 - n]  # lengths differ
        statement = device_statement(ACCOUNT, device_id, signing_key, public_key)
        signature = sign(identity, statement)
        r, s = signature[:32], int.from_bytes(signature[32:], "big")
        high_s = r + (ORDER - s).to_bytes(32, "big")
        tampered = bytes([signature[0] ^ 1]) + signature[1:]
        assert verify(point(identity), statement, signature)
        assert verify(point(identity), statement, high_s)
        assert not verify(point(identity), statement, tampered)
        out.append(
            {
                "account_id": ACCOUNT,
                "device_id": device_id,
                "signing_key": signing_key.hex(),
                "public_key": public_key.hex(),
                "statement": statement.hex(),
                "identity_key": point(identity).hex(),
                "signature": signature.hex(),
                "signature_high_s": high_s.hex(),
                "signature_tampered": tampered.hex(),
            }
        )
    return out


def key_log() -> dict[str, Any]:
    """identity_set, two devices, both revoked, identity_reset, a third device."""
    first, second = key(1), key(2)
    entries: list[Entry] = []
    state = LogState(ACCOUNT)

    def append(kind: str, **contents: Any) -> None:
        nonlocal state
        entry = make_entry(ACCOUNT, state.seq + 1, kind, state.head, **contents)
        state = extend(state, [entry])
        entries.append(entry)

    def add(identity: ec.EllipticCurvePrivateKey, n: int) -> None:
        signing_key, public_key = point(key(100 + n)), e2e_key(f"device {n}")
        statement = device_statement(ACCOUNT, DEVICES[n], signing_key, public_key)
        append(
            DEVICE_ADDED,
            device_id=DEVICES[n],
            signing_key=signing_key,
            public_key=public_key,
            signature=sign(identity, statement),
        )

    append(IDENTITY_SET, identity_key=point(first))
    add(first, 0)
    add(first, 1)
    append(DEVICE_REVOKED, device_id=DEVICES[0])
    append(DEVICE_REVOKED, device_id=DEVICES[1])
    append(IDENTITY_RESET, identity_key=point(second))
    add(second, 2)
    check_head(state, state.seq, state.head)
    assert entries[0].prev_hash == ZERO_HASH
    return {
        "account_id": ACCOUNT,
        "entries": [wire(e) for e in entries],
        "head": {"seq": state.seq, "hash": state.head.hex()},
        "identity_key": (state.identity_key or b"").hex(),
        "devices": {d: k.hex() for d, k in sorted(state.devices.items())},
    }


def safety() -> list[dict[str, Any]]:
    """PROTOCOL.md's vector, then the two identity keys of the key log."""
    cases = [
        (bytes([4, *range(64)]), ACCOUNT, bytes([4, *range(64, 128)]), OTHER_ACCOUNT),
        (point(key(1)), ACCOUNT, point(key(2)), OTHER_ACCOUNT),
    ]
    return [
        {
            "identity_key": a.hex(),
            "account_id": a_id,
            "other_identity_key": b.hex(),
            "other_account_id": b_id,
            "groups": groups(safety_number(a, a_id, b, b_id)),
        }
        for a, a_id, b, b_id in cases
    ]


def compact(
    header: dict[str, str], claims: dict[str, Any], private: ec.EllipticCurvePrivateKey
) -> str:
    """A compact JWS (ES256) of `claims`, its signature deterministic and low-s."""

    def part(value: dict[str, Any]) -> str:
        return b64(json.dumps(value, separators=(",", ":")).encode("ascii"))

    signing_input = f"{part(header)}.{part(claims)}"
    signature = sign(private, signing_input.encode("ascii"))
    s = int.from_bytes(signature[32:], "big")
    if s > ORDER // 2:
        signature = signature[:32] + (ORDER - s).to_bytes(32, "big")
    return f"{signing_input}.{b64(signature)}"


SERVER_KEY_SEED = 7
HEAD_ISSUER = "confide"


def server_key() -> SigningKey:
    """The fixed server signing key of the key-log head vector."""
    pem = key(SERVER_KEY_SEED).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return load_signing_key(pem)


def key_log_head() -> dict[str, Any]:
    """The head of key_log() signed as the server signs it, by a fixed server key.

    Variants that a verifier must refuse: the same signature with s high,
    another typ, another aud, an unknown kid, a changed payload, alg none.
    """
    private = key(SERVER_KEY_SEED)
    signing = server_key()
    log = key_log()
    claims = {
        "iss": HEAD_ISSUER,
        "aud": KEY_LOG_AUDIENCE,
        "jti": "6f1c2b1e0d9a4c3b8a7f6e5d4c3b2a19",
        "iat": 1_790_000_000,
        "sub": ACCOUNT,
        "seq": log["head"]["seq"],
        "head": log["head"]["hash"],
    }
    header = {"alg": "ES256", "kid": signing.kid, "typ": KEY_LOG_TYP}
    jws = compact(header, claims, private)
    signing_input, _, signature_b64 = jws.rpartition(".")
    signature = _unb64(signature_b64)
    s = int.from_bytes(signature[32:], "big")
    high_s = signature[:32] + (ORDER - s).to_bytes(32, "big")
    payload = signing_input.split(".")[1]
    tampered_claims = {**claims, "seq": claims["seq"] + 1}
    return {
        "jwks": {"keys": [dict(signing.public_jwk)]},
        "account_id": ACCOUNT,
        "head": {"seq": claims["seq"], "hash": claims["head"], "jws": jws},
        "claims": claims,
        "high_s": f"{signing_input}.{b64(high_s)}",
        "wrong_typ": compact({**header, "typ": "JWT"}, claims, private),
        "wrong_aud": compact(header, {**claims, "aud": "confide:api"}, private),
        "unknown_kid": compact({**header, "kid": "A" * 43}, claims, private),
        "tampered": jws.replace(
            payload, b64(json.dumps(tampered_claims, separators=(",", ":")).encode())
        ),
        "alg_none": f"{b64(json.dumps({'alg': 'none', 'typ': KEY_LOG_TYP}).encode())}.{payload}.",
    }


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def vectors() -> dict[str, Any]:
    return {
        "device_statements": statements(),
        "key_log": key_log(),
        "key_log_head": key_log_head(),
        "safety_numbers": safety(),
    }


def render() -> str:
    return json.dumps(vectors(), indent=2) + "\n"


if __name__ == "__main__":
    PATH.write_text(render())
    print(f"wrote {PATH}")
