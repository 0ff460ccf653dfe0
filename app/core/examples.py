"""Values the OpenAPI document's examples share: real P-256 points, hashes, a token's shape."""

from __future__ import annotations

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
