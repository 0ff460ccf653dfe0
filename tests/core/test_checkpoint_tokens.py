"""Signed audit checkpoints (TokenService.sign_checkpoint / verify_checkpoint).

A checkpoint is a compact JWS with its own typ and audience: it verifies
under any of our keys by kid, never as an access or room token, and no token
verifies as a checkpoint. Forgeries are built by hand as in test_tokens.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jose import jwk

from app.core.tokens import (
    ACCESS_AUDIENCE,
    ACCESS_TYP,
    CHECKPOINT_AUDIENCE,
    CHECKPOINT_TYP,
    ROOM_AUDIENCE,
    ROOM_TYP,
    SigningKey,
    TokenError,
    TokenService,
    generate_signing_key_pem,
    load_signing_key,
)

ISSUER = "confide-test"
NOW = 1_800_000_000
HEAD = "ab" * 32

KEY = load_signing_key(generate_signing_key_pem())
OTHER_KEY = load_signing_key(generate_signing_key_pem())
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def service(*keys: SigningKey, at: float = NOW) -> TokenService:
    return TokenService(keys or (KEY,), issuer=ISSUER, now=lambda: float(at))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def with_s(token: str, s: int) -> str:
    signing_input, _, signature = token.rpartition(".")
    return f"{signing_input}.{b64(unb64(signature)[:32] + s.to_bytes(32, 'big'))}"


def signature_s(token: str) -> int:
    return int.from_bytes(unb64(token.rsplit(".", 1)[1])[32:], "big")


def forge(head: Mapping[str, Any], body: Mapping[str, Any], *, key: SigningKey = KEY) -> str:
    """Signed by hand, its signature normalised to low s as our signer does."""
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(body).encode())}"
    signature = jwk.construct(key.private_pem, "ES256").sign(signing_input.encode("ascii"))
    token = f"{signing_input}.{b64(signature)}"
    s = signature_s(token)
    return with_s(token, P256_N - s) if s > P256_N // 2 else token


def header(**changes: object) -> dict[str, Any]:
    return {"alg": "ES256", "kid": KEY.kid, "typ": CHECKPOINT_TYP, **changes}


def body(**changes: object) -> dict[str, Any]:
    result: dict[str, Any] = {
        "iss": ISSUER,
        "aud": CHECKPOINT_AUDIENCE,
        "jti": "0123456789abcdef",
        "iat": NOW,
        "seq": 7,
        "head": HEAD,
    }
    result.update(changes)
    return result


def refused(token: object, detail: str | None = None, *, by: TokenService | None = None) -> None:
    with pytest.raises(TokenError) as info:
        (by or service()).verify_checkpoint(token)
    assert info.value.code == "token_invalid"
    if detail is not None:
        assert detail in info.value.detail


def test_round_trip() -> None:
    signed = service().sign_checkpoint(seq=7, head=HEAD)
    assert (signed.seq, signed.head, signed.iat, signed.kid) == (7, HEAD, NOW, KEY.kid)
    assert service().verify_checkpoint(signed.token) == signed


def test_a_hand_built_checkpoint_verifies() -> None:
    checkpoint = service().verify_checkpoint(forge(header(), body()))
    assert (checkpoint.seq, checkpoint.head, checkpoint.jti) == (7, HEAD, "0123456789abcdef")


def test_checkpoints_outlive_any_token_lifetime() -> None:
    signed = service().sign_checkpoint(seq=1, head=HEAD)
    years_later = service(at=NOW + 10 * 365 * 86400)
    assert years_later.verify_checkpoint(signed.token).seq == 1


def test_any_key_held_verifies_by_kid() -> None:
    older = replace(OTHER_KEY, active_from=NOW - 100)
    newer = replace(KEY, active_from=NOW - 10)
    old = service(older).sign_checkpoint(seq=3, head=HEAD)
    new = service(older, newer).sign_checkpoint(seq=4, head=HEAD)
    both = service(older, newer)
    assert both.verify_checkpoint(old.token).kid == OTHER_KEY.kid
    assert both.verify_checkpoint(new.token).kid == KEY.kid
    refused(old.token, "unknown kid", by=service(KEY))


def test_a_retired_key_still_verifies_its_checkpoints() -> None:
    # Retired for tokens (its successor has signed for longer than any token lives), but a
    # checkpoint is evidence: it verifies for as long as the key is held.
    older = replace(OTHER_KEY, active_from=NOW - 100)
    old = service(older).sign_checkpoint(seq=3, head=HEAD)
    newer = replace(KEY, active_from=NOW)
    years_later = service(older, newer, at=NOW + 10 * 365 * 86400)
    assert [s.state for s in years_later.key_status()] == ["retired", "signing"]
    assert years_later.verify_checkpoint(old.token).kid == OTHER_KEY.kid
    assert years_later.sign_checkpoint(seq=4, head=HEAD).kid == KEY.kid


@settings(max_examples=64, deadline=None)
@given(seq=st.integers(min_value=1, max_value=2**53), head=st.binary(min_size=32, max_size=32))
def test_property_checkpoints_are_low_s_and_their_twin_is_refused(seq: int, head: bytes) -> None:
    signed = service().sign_checkpoint(seq=seq, head=head.hex())
    s = signature_s(signed.token)
    assert 0 < s <= P256_N // 2
    assert service().verify_checkpoint(signed.token).seq == seq
    refused(with_s(signed.token, P256_N - s), "signature s is high")


def test_bad_signature_is_refused() -> None:
    token = service().sign_checkpoint(seq=7, head=HEAD).token
    head, _, signature = token.split(".")
    tampered = f"{head}.{b64(json.dumps(body(seq=8)).encode())}.{signature}"
    refused(tampered, "rejected by jose")
    refused(forge(header(), body(), key=OTHER_KEY), "rejected by jose")


@pytest.mark.parametrize("typ", [ACCESS_TYP, ROOM_TYP, "JWT", "confide-audit-checkpoint", None])
def test_wrong_typ_is_refused(typ: object) -> None:
    refused(forge(header(typ=typ), body()), "typ mismatch")


@pytest.mark.parametrize("aud", [ACCESS_AUDIENCE, ROOM_AUDIENCE, [CHECKPOINT_AUDIENCE], ""])
def test_wrong_audience_is_refused(aud: object) -> None:
    refused(forge(header(), body(aud=aud)), "aud mismatch")


def test_an_access_token_is_not_a_checkpoint() -> None:
    issued = service().issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="a", ttl=60)
    refused(issued.token, "typ mismatch")
    # Even dressed in the checkpoint's typ, a token's claims are not a checkpoint's.
    token_claims = {"sub": "a", "nbf": NOW, "exp": NOW + 60}
    refused(forge(header(), body(**token_claims)), "checkpoint claims")


@pytest.mark.parametrize(
    ("audience", "typ"), [(ACCESS_AUDIENCE, ACCESS_TYP), (ROOM_AUDIENCE, ROOM_TYP)]
)
def test_a_checkpoint_is_not_a_token(audience: str, typ: str) -> None:
    token = service().sign_checkpoint(seq=7, head=HEAD).token
    with pytest.raises(TokenError, match="typ mismatch"):
        service().verify(token, audience=audience, typ=typ)
    # Nor with the token's typ: no sub, no exp, the checkpoint audience.
    with pytest.raises(TokenError):
        service().verify(forge(header(typ=typ), body()), audience=audience, typ=typ)


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"iss": "someone-else"}, "iss mismatch"),
        ({"jti": ""}, "jti"),
        ({"iat": str(NOW)}, "iat is not an integer"),
        ({"iat": NOW + 31}, "iat in the future"),
        ({"seq": 0}, "seq"),
        ({"seq": True}, "seq"),
        ({"seq": 7.0}, "seq"),
        ({"seq": "7"}, "seq"),
        ({"head": HEAD.upper()}, "head"),
        ({"head": HEAD[:-2]}, "head"),
        ({"head": None}, "head"),
        ({"exp": NOW + 60}, "checkpoint claims"),
    ],
)
def test_claims_are_exactly_a_checkpoints(changes: dict[str, Any], detail: str) -> None:
    refused(forge(header(), body(**changes)), detail)


def test_missing_claim_is_refused() -> None:
    claims = body()
    del claims["seq"]
    refused(forge(header(), claims), "checkpoint claims")


def test_sign_refuses_what_verify_would_refuse() -> None:
    with pytest.raises(ValueError, match="seq"):
        service().sign_checkpoint(seq=0, head=HEAD)
    with pytest.raises(ValueError, match="head"):
        service().sign_checkpoint(seq=1, head="not hex")


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=50), st.integers(), st.none()))
def test_garbage_is_only_ever_a_token_error(garbage: object) -> None:
    refused(garbage)
