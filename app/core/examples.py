"""Values the OpenAPI document's examples share: real P-256 points, hashes, a token's shape."""

from __future__ import annotations

from typing import Any

#: SEC1 uncompressed P-256 points (65 bytes), base64url: an identity key, a
#: device's signing key and its public key.
IDENTITY_KEY = (
    "BORWlHzf2tpjqA3Nkdw-kZV7w8gJyqxciZRAN-6vLsEVGgWWGRIAMmyfni1u7JmVZyIVq5RnNfXOFHoRwEySzms"
)
SIGNING_KEY = (
    "BCS1RNxSa4R-7N9TteMEADOrkrO6tPvtVfBANEHdq-jPmzKImPnfyog8Mafz_0X0x4TmRQ2DXrqXoT4mRvIhNUE"
)
PUBLIC_KEY = (
    "BK9Ngtnso8LuyrnfmA280jbFkiFipVs3v0aTyQRZA-_xnH3LviTnMqLWOFZUA27aSluP7aCn0U40qC8J0_MlGKo"
)
#: An ECDSA signature, r || s (64 bytes), base64url.
SIGNATURE = "DszJPcdK_atFFnSwevl24_bJlIb-KSHP3vMhWVr0HQE7oqtnZ-rPMIkQO42wfVVCyMqQPeG8dprRecpoZTJv3w"
#: SHA-256 hashes, 64 lower-case hex digits.
HASH_1 = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
HASH_2 = "3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d"
#: The shape of a compact JWS (header, claims, signature).
JWS = "eyJhbGciOiJFUzI1NiIsImtpZCI6IjRfVjVoIn0.eyJzdWIiOiIwYjhlIn0.c2ln"
#: The `prev_hash` of a chain's first entry.
ZERO_HASH = "0" * 64

#: A room as `GET /v1/rooms/{id}` shows it (also in the export).
ROOM: dict[str, Any] = {
    "id": "7d2c9a4e-6b1f-4e8a-9c3d-1f5e7a9b2c40",
    "title": "Weekly session",
    "kind": "individual",
    "status": "scheduled",
    "starts_at": "2026-11-24T20:00:00Z",
    "ends_at": "2026-11-24T20:50:00Z",
    "max_participants": 2,
    "waiting_room": True,
    "safety_checkin": "required",
    "locked": False,
    "participants": [
        {
            "account_id": "5e0c3d7a-1f7e-4b53-8d0c-2a4f6b9e8d10",
            "display_name": "Dr. Grace Hopper",
            "role": "host",
            "admitted": True,
        },
        {
            "account_id": "0b8e3a52-5d3e-4c1a-9a53-3f0d2f7c9e11",
            "display_name": "Ada",
            "role": "participant",
            "admitted": False,
        },
    ],
    "mls_group_id": "zQqphWFHtsW0_yt9_uXaIKo4JTCZ7xtKZKztIzya_ik",
}

#: A key log of two entries as `GET /v1/accounts/{id}/key-log` serves it (also in the export).
KEY_LOG: dict[str, Any] = {
    "account_id": "0b8e3a52-5d3e-4c1a-9a53-3f0d2f7c9e11",
    "entries": [
        {
            "seq": 1,
            "kind": "identity_set",
            "device_id": None,
            "identity_key": IDENTITY_KEY,
            "signing_key": None,
            "public_key": None,
            "signature": None,
            "prev_hash": ZERO_HASH,
            "hash": HASH_1,
        },
        {
            "seq": 2,
            "kind": "device_added",
            "device_id": "2f6a8c1e-4b3d-4a5f-8e7c-9d0b1a2c3e4f",
            "identity_key": None,
            "signing_key": SIGNING_KEY,
            "public_key": PUBLIC_KEY,
            "signature": SIGNATURE,
            "prev_hash": HASH_1,
            "hash": HASH_2,
        },
    ],
    "head": {
        "seq": 2,
        "hash": HASH_2,
        "jws": JWS,
    },
}
