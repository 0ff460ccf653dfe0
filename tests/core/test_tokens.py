"""Tests for app.core.tokens: every verify() rule has a test that fails without it.

Forged tokens are built by hand (header and payload JSON, then an ES256 signature
from python-jose's key object, or an HMAC we compute ourselves), so each test breaks
exactly one rule. Where two layers refuse the same forgery (our header check and
python-jose's algorithm list, python-jose's `aud` check and ours), each layer also
has a test of its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from jose import jwk, jws, jwt
from jose.backends.base import Key
from jose.exceptions import JWKError

from app.core import tokens
from app.core.clock import FrozenClock
from app.core.tokens import (
    ACCESS_AUDIENCE,
    ACCESS_TYP,
    MAX_TOKEN_BYTES,
    MAX_TOKEN_TTL,
    RETIREMENT_GRACE_SECONDS,
    ROOM_AUDIENCE,
    ROOM_TYP,
    IssuedToken,
    SigningKey,
    TokenError,
    TokenService,
    generate_signing_key_pem,
    load_signing_key,
)

ISSUER = "https://confide.test"
NOW = 1_800_000_000  # 2027-01-15T08:00:00Z, an integral second
TTL = 300

KEY = load_signing_key(generate_signing_key_pem())
OTHER_KEY = load_signing_key(generate_signing_key_pem())
THIRD_KEY = load_signing_key(generate_signing_key_pem())
FOURTH_KEY = load_signing_key(generate_signing_key_pem())
REGISTERED = ("iss", "aud", "sub", "jti", "iat", "nbf", "exp")
# The order of the P-256 group (SEC 2 §2.4.2), written out here rather than imported.
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class _Drop:
    """Marker: leave this claim / header parameter out."""


DROP = _Drop()


# ------------------------------------------------------------------------- helpers


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def public_pem(key: SigningKey) -> bytes:
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_der(key: SigningKey) -> bytes:
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    return private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def header(typ: str = ACCESS_TYP, /, **changes: object) -> dict[str, Any]:
    result: dict[str, Any] = {"alg": "ES256", "kid": KEY.kid, "typ": typ}
    for name, value in changes.items():
        if value is DROP:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def claims(aud: str = ACCESS_AUDIENCE, /, **changes: object) -> dict[str, Any]:
    result: dict[str, Any] = {
        "iss": ISSUER,
        "aud": aud,
        "sub": "account-1",
        "jti": "0123456789abcdef0123456789abcdef",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + TTL,
    }
    for name, value in changes.items():
        if value is DROP:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def as_json(value: Mapping[str, Any] | bytes) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def signature_s(token: str) -> int:
    return int.from_bytes(unb64(token.rsplit(".", 1)[1])[32:], "big")


def with_s(token: str, s: int) -> str:
    """The token with its signature's s replaced (r kept)."""
    signing_input, _, signature = token.rpartition(".")
    r = unb64(signature)[:32]
    return f"{signing_input}.{b64(r + s.to_bytes(32, 'big'))}"


def low_s(token: str) -> str:
    s = signature_s(token)
    return with_s(token, P256_N - s) if s > P256_N // 2 else token


def forge(
    head: Mapping[str, Any] | bytes,
    body: Mapping[str, Any] | bytes,
    *,
    pem: bytes = KEY.private_pem,
) -> str:
    """A token signed with ES256 by the given key (ours by default), header as given, its
    signature normalised to low s as our issuer does (so only the rule under test breaks)."""
    signing_input = f"{b64(as_json(head))}.{b64(as_json(body))}"
    signature = jwk.construct(pem, "ES256").sign(signing_input.encode("ascii"))
    return low_s(f"{signing_input}.{b64(signature)}")


def forge_hs256(head: Mapping[str, Any], body: Mapping[str, Any], secret: bytes) -> str:
    """The classic key-confusion forgery: HMAC-SHA256 keyed with our *public* key."""
    signing_input = f"{b64(as_json(head))}.{b64(as_json(body))}"
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def make_service(at: float = NOW, keys: tuple[SigningKey, ...] = (KEY,)) -> TokenService:
    return TokenService(keys, issuer=ISSUER, now=lambda: float(at))


def refused(
    service: TokenService,
    token: object,
    *,
    audience: str = ACCESS_AUDIENCE,
    typ: str = ACCESS_TYP,
    code: str = "token_invalid",
    detail: str | None = None,
) -> TokenError:
    with pytest.raises(TokenError) as info:
        service.verify(token, audience=audience, typ=typ)
    assert info.value.code == code
    if detail is not None:
        assert detail in info.value.detail
    return info.value


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.fromtimestamp(NOW, UTC))


@pytest.fixture
def service(clock: FrozenClock) -> TokenService:
    return TokenService([KEY], issuer=ISSUER, now=clock.time)


# ---------------------------------------------------------------------- round trip


@pytest.mark.parametrize(
    ("audience", "typ"), [(ACCESS_AUDIENCE, ACCESS_TYP), (ROOM_AUDIENCE, ROOM_TYP)]
)
def test_round_trip(service: TokenService, audience: str, typ: str) -> None:
    issued = service.issue(
        audience=audience, typ=typ, subject="account-1", ttl=TTL, claims={"role": "host"}
    )
    assert isinstance(issued, IssuedToken)
    assert issued.expires_at == NOW + TTL
    assert len(issued.jti) == 32
    int(issued.jti, 16)  # uuid4 hex

    head = json.loads(unb64(issued.token.split(".")[0]))
    assert head == {"alg": "ES256", "kid": KEY.kid, "typ": typ}

    verified = service.verify(issued.token, audience=audience, typ=typ)
    assert verified == {
        "iss": ISSUER,
        "aud": audience,
        "sub": "account-1",
        "jti": issued.jti,
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + TTL,
        "role": "host",
    }


def test_jti_is_fresh_for_every_token(service: TokenService) -> None:
    jtis = {
        service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="a", ttl=60).jti
        for _ in range(20)
    }
    assert len(jtis) == 20


def test_clock_is_injected_not_read_from_the_wall() -> None:
    # python-jose's own exp/nbf checks read the wall clock: with them on, the 2001 token
    # is "expired" and the 2100 token "not yet valid" today. Ours use the injected clock.
    for moment in (978_307_200, 4_102_444_800):  # 2001-01-01, 2100-01-01
        svc = make_service(at=moment)
        issued = svc.issue(audience=ROOM_AUDIENCE, typ=ROOM_TYP, subject="s", ttl=60)
        assert svc.verify(issued.token, audience=ROOM_AUDIENCE, typ=ROOM_TYP)["iat"] == moment


def test_fractional_clock_floors_iat(clock: FrozenClock, service: TokenService) -> None:
    clock.advance(0.75)
    issued = service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=10)
    verified = service.verify(issued.token, audience=ACCESS_AUDIENCE, typ=ACCESS_TYP)
    assert verified["iat"] == NOW
    assert issued.expires_at == NOW + 10


# ------------------------------------------------------------ access versus room


def test_access_token_refused_as_room_token(service: TokenService) -> None:
    issued = service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL)
    refused(service, issued.token, audience=ROOM_AUDIENCE, typ=ROOM_TYP, detail="typ mismatch")


def test_room_token_refused_as_access_token(service: TokenService) -> None:
    issued = service.issue(audience=ROOM_AUDIENCE, typ=ROOM_TYP, subject="s", ttl=TTL)
    refused(service, issued.token, detail="typ mismatch")


def test_right_typ_wrong_aud_is_refused(service: TokenService) -> None:
    # typ says room, aud says api: only the audience check can catch it.
    token = forge(header(ROOM_TYP), claims(ACCESS_AUDIENCE))
    refused(service, token, audience=ROOM_AUDIENCE, typ=ROOM_TYP)


def test_right_aud_wrong_typ_is_refused(service: TokenService) -> None:
    token = forge(header(ACCESS_TYP), claims(ROOM_AUDIENCE))
    refused(service, token, audience=ROOM_AUDIENCE, typ=ROOM_TYP, detail="typ mismatch")


@pytest.mark.parametrize("typ", [DROP, "JWT", "AT+JWT", "at+jwt ", None, ["at+jwt"]])
def test_typ_must_match_exactly(service: TokenService, typ: object) -> None:
    refused(service, forge(header(typ=typ), claims()), detail="typ mismatch")


# --------------------------------------------------------------------- algorithms


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_with_empty_signature(service: TokenService, alg: str) -> None:
    # The textbook forgery: no signature at all. The empty third segment is refused.
    head = b64(json.dumps(header(alg=alg)).encode())
    body = b64(json.dumps(claims()).encode())
    refused(service, f"{head}.{body}.", detail="three base64url segments")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_with_a_signature_segment(service: TokenService, alg: str) -> None:
    # Same, but with a plausible 64-byte signature so only the alg rule can refuse it.
    head = b64(json.dumps(header(alg=alg)).encode())
    body = b64(json.dumps(claims()).encode())
    refused(service, f"{head}.{body}.{b64(bytes(64))}", detail="alg not allowed")


def test_bare_alg_none_header(service: TokenService) -> None:
    head = b64(b'{"alg":"none"}')
    body = b64(json.dumps(claims()).encode())
    refused(service, f"{head}.{body}.{b64(bytes(64))}", detail="alg not allowed")


@pytest.mark.parametrize(
    "alg",
    ["HS256", "RS256", "PS256", "ES384", "ES512", "EdDSA", "es256", "ES256 ", None, ["ES256"], 256],
)
def test_only_es256_is_accepted(service: TokenService, alg: object) -> None:
    # Signed with our real key: nothing but the alg value is wrong.
    refused(service, forge(header(alg=alg), claims()), detail="alg not allowed")


def _hs256_secrets() -> dict[str, bytes]:
    jwk_dict = KEY.public_jwk
    return {
        "pem": public_pem(KEY),
        "pem-stripped": public_pem(KEY).strip(),
        "der": public_der(KEY),
        "jwk-json": json.dumps(jwk_dict).encode(),
        "jwk-json-compact-sorted": json.dumps(
            jwk_dict, separators=(",", ":"), sort_keys=True
        ).encode(),
    }


HS256_SECRETS = _hs256_secrets()


@pytest.mark.parametrize("form", sorted(HS256_SECRETS))
def test_hs256_signed_with_our_public_key_is_refused(service: TokenService, form: str) -> None:
    token = forge_hs256(header(alg="HS256"), claims(), HS256_SECRETS[form])
    refused(service, token, detail="alg not allowed")


@pytest.mark.parametrize("form", sorted(HS256_SECRETS))
def test_hs256_forgery_is_also_refused_by_the_jose_layer(service: TokenService, form: str) -> None:
    # Second layer: the algorithms=["ES256"] list and the Key object given to jose.
    token = forge_hs256(header(alg="HS256"), claims(), HS256_SECRETS[form])
    with pytest.raises(TokenError, match="rejected by jose"):
        service._decode_with_jose(token, kid=KEY.kid, audience=ACCESS_AUDIENCE)


def test_alg_none_is_also_refused_by_the_jose_layer(service: TokenService) -> None:
    head = b64(json.dumps(header(alg="none")).encode())
    body = b64(json.dumps(claims()).encode())
    with pytest.raises(TokenError, match="rejected by jose"):
        service._decode_with_jose(f"{head}.{body}.", kid=KEY.kid, audience=ACCESS_AUDIENCE)


# ------------------------------------------------------------------------- header


def test_unknown_kid(service: TokenService) -> None:
    token = forge(header(kid=OTHER_KEY.kid), claims(), pem=OTHER_KEY.private_pem)
    refused(service, token, detail="unknown kid")


@pytest.mark.parametrize("kid", [DROP, None, "", 7, [KEY.kid], {"kid": KEY.kid}])
def test_kid_missing_or_not_a_string(service: TokenService, kid: object) -> None:
    refused(service, forge(header(kid=kid), claims()), detail="unknown kid")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("jku", "https://attacker.example/jwks.json"),
        ("x5u", "https://attacker.example/cert.pem"),
        ("jwk", KEY.public_jwk),  # even our own key, embedded, is not trusted from a token
        ("x5c", ["MIIB"]),
        ("crit", ["exp"]),
        ("cty", "JWT"),
        ("b64", False),
        ("zip", "DEF"),
    ],
)
def test_header_parameters_outside_the_allow_list(
    service: TokenService, name: str, value: object
) -> None:
    refused(service, forge(header(**{name: value}), claims()), detail="header parameter")


def test_signature_by_another_key_under_our_kid(service: TokenService) -> None:
    token = forge(header(), claims(), pem=OTHER_KEY.private_pem)
    refused(service, token, detail="rejected by jose")


def test_tampered_payload_keeps_signature(service: TokenService) -> None:
    good = forge(header(), claims())
    head, _, sig = good.split(".")
    tampered = b64(json.dumps(claims(sub="account-2")).encode())
    assert service.verify(good, audience=ACCESS_AUDIENCE, typ=ACCESS_TYP)["sub"] == "account-1"
    refused(service, f"{head}.{tampered}.{sig}", detail="rejected by jose")


def test_tampered_header_keeps_signature(service: TokenService) -> None:
    good = forge(header(), claims(ROOM_AUDIENCE))
    _, body, sig = good.split(".")
    retyped = b64(json.dumps(header(ROOM_TYP)).encode())
    token = f"{retyped}.{body}.{sig}"
    refused(service, token, audience=ROOM_AUDIENCE, typ=ROOM_TYP, detail="rejected by jose")


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        b'"ES256"',
        b"\xff\xfe{}",
        b'{"alg":"ES256","alg":"ES256"}',
        # json.loads(bytes) would decode these as UTF-16 / UTF-32; JOSE headers are UTF-8.
        json.dumps(header()).encode("utf-16"),
        json.dumps(header()).encode("utf-32"),
        json.dumps(header()).encode("utf-16-le"),
    ],
)
def test_header_must_be_a_strict_json_object(service: TokenService, raw: bytes) -> None:
    refused(service, forge(raw, claims()), detail="header is not")


def test_duplicate_alg_cannot_smuggle_a_second_value(service: TokenService) -> None:
    # jose reads the last "alg", another parser the first: refuse duplicates outright.
    raw = f'{{"alg":"none","kid":"{KEY.kid}","typ":"{ACCESS_TYP}","alg":"ES256"}}'.encode()
    refused(service, forge(raw, claims()), detail="header is not a strict JSON object")


def test_payload_with_duplicate_claims_is_refused(service: TokenService) -> None:
    # Correctly signed, but "aud" appears twice: jose would take the last one.
    body = json.dumps(claims(ROOM_AUDIENCE))[:-1] + f', "aud": "{ACCESS_AUDIENCE}"}}'
    refused(service, forge(header(), body.encode()), detail="payload is not a strict JSON")


@pytest.mark.parametrize("raw", [b"[]", b'"claims"', b"null", b"\xc3\x28"])
def test_payload_must_be_a_json_object(service: TokenService, raw: bytes) -> None:
    refused(service, forge(header(), raw), detail="payload is not")


def test_nan_in_payload_is_refused(service: TokenService) -> None:
    body = json.dumps(claims()).replace(f'"nbf": {NOW}', '"nbf": NaN').encode()
    assert b"NaN" in body
    refused(service, forge(header(), body), detail="payload is not a strict JSON")


# -------------------------------------------------------------------------- times


def test_expired(clock: FrozenClock, service: TokenService) -> None:
    issued = service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL)
    clock.advance(TTL + 1)
    refused(service, issued.token, code="token_expired")


def test_exp_equal_to_now_is_expired(clock: FrozenClock, service: TokenService) -> None:
    issued = service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL)
    clock.advance(TTL - 1)
    assert service.verify(issued.token, audience=ACCESS_AUDIENCE, typ=ACCESS_TYP)
    clock.advance(1)  # now == exp
    refused(service, issued.token, code="token_expired")


def test_expired_but_otherwise_wrong_is_invalid_not_expired(
    clock: FrozenClock, service: TokenService
) -> None:
    # "token_expired" only ever describes a token we would otherwise have accepted.
    issued = service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL)
    clock.advance(TTL + 1)
    refused(service, issued.token, audience=ROOM_AUDIENCE, typ=ROOM_TYP, code="token_invalid")
    expired_forgery = forge(header(), claims(exp=NOW - 10), pem=OTHER_KEY.private_pem)
    refused(service, expired_forgery, code="token_invalid")


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
@pytest.mark.parametrize(
    "value",
    [str(NOW + 100), float(NOW + 100), float(NOW), True, None, [NOW + 100], {"t": NOW}],
    ids=["str", "float", "float-now", "bool", "null", "list", "object"],
)
def test_numeric_dates_must_be_integers(service: TokenService, name: str, value: object) -> None:
    refused(service, forge(header(), claims(**{name: value})), detail=f"{name} is not an integer")


def test_nbf_in_the_future(service: TokenService) -> None:
    assert service.verify(
        forge(header(), claims(nbf=NOW + 30)), audience=ACCESS_AUDIENCE, typ=ACCESS_TYP
    )
    refused(service, forge(header(), claims(nbf=NOW + 31)), detail="nbf in the future")


def test_iat_in_the_future(service: TokenService) -> None:
    assert service.verify(
        forge(header(), claims(iat=NOW + 30)), audience=ACCESS_AUDIENCE, typ=ACCESS_TYP
    )
    refused(service, forge(header(), claims(iat=NOW + 31)), detail="iat in the future")


# ------------------------------------------------------------------------- claims


@pytest.mark.parametrize("name", REGISTERED)
def test_missing_registered_claim(service: TokenService, name: str) -> None:
    refused(service, forge(header(), claims(**{name: DROP})))


@pytest.mark.parametrize("name", REGISTERED)
def test_missing_claim_refused_by_our_own_check(name: str) -> None:
    # Our layer alone (python-jose requires aud/iss/sub/jti too; exp/iat/nbf only we do).
    with pytest.raises(TokenError, match=f"claim {name} missing"):
        tokens._check_claims(
            claims(**{name: DROP}), audience=ACCESS_AUDIENCE, issuer=ISSUER, now=NOW
        )


@pytest.mark.parametrize("name", ["aud", "iss", "sub", "jti"])
def test_missing_claim_refused_by_the_jose_layer(service: TokenService, name: str) -> None:
    token = forge(header(), claims(**{name: DROP}))
    with pytest.raises(TokenError, match="rejected by jose"):
        service._decode_with_jose(token, kid=KEY.kid, audience=ACCESS_AUDIENCE)


@pytest.mark.parametrize("aud", ["confide:other", "", 5, None])
def test_wrong_aud(service: TokenService, aud: object) -> None:
    refused(service, forge(header(), claims(aud=aud)))


@pytest.mark.parametrize(
    "aud", [[ACCESS_AUDIENCE], [ACCESS_AUDIENCE, ROOM_AUDIENCE], [ROOM_AUDIENCE, ACCESS_AUDIENCE]]
)
def test_aud_as_a_list_is_refused(service: TokenService, aud: list[str]) -> None:
    # python-jose accepts any list containing the audience; we want exactly one.
    refused(service, forge(header(), claims(aud=aud)), detail="aud mismatch")


@pytest.mark.parametrize("iss", ["https://evil.test", "", [ISSUER], None])
def test_wrong_iss(service: TokenService, iss: object) -> None:
    refused(service, forge(header(), claims(iss=iss)))


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"aud": "confide:other"}, "aud mismatch"),
        ({"aud": [ACCESS_AUDIENCE]}, "aud mismatch"),
        ({"iss": "https://evil.test"}, "iss mismatch"),
        ({"iss": [ISSUER]}, "iss mismatch"),
        ({"sub": 42}, "sub is not"),
        ({"sub": ""}, "sub is not"),
        ({"jti": 42}, "jti is not"),
        ({"jti": ""}, "jti is not"),
    ],
)
def test_claim_values_refused_by_our_own_check(changes: dict[str, Any], detail: str) -> None:
    with pytest.raises(TokenError, match=detail):
        tokens._check_claims(claims(**changes), audience=ACCESS_AUDIENCE, issuer=ISSUER, now=NOW)


@pytest.mark.parametrize("changes", [{"aud": "confide:other"}, {"iss": "https://evil.test"}])
def test_claim_values_refused_by_the_jose_layer(
    service: TokenService, changes: dict[str, Any]
) -> None:
    token = forge(header(), claims(**changes))
    with pytest.raises(TokenError, match="rejected by jose"):
        service._decode_with_jose(token, kid=KEY.kid, audience=ACCESS_AUDIENCE)


@pytest.mark.parametrize("changes", [{"sub": 42}, {"sub": ""}, {"jti": 42}, {"jti": ""}])
def test_sub_and_jti_must_be_non_empty_strings(
    service: TokenService, changes: dict[str, Any]
) -> None:
    refused(service, forge(header(), claims(**changes)))


# ------------------------------------------------------------------ raw structure


def test_padding_appended_is_refused(service: TokenService) -> None:
    issued = service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL)
    for padded in (issued.token + "=", issued.token + "=="):
        refused(service, padded, detail="three base64url segments")
    head, body, sig = issued.token.split(".")
    refused(service, f"{head}=.{body}.{sig}", detail="three base64url segments")


@pytest.mark.parametrize("bad", ["+", "/", " ", "\n", "\t", "\x00", "é", "\u2024", "*"])
def test_characters_outside_base64url_are_refused(service: TokenService, bad: str) -> None:
    issued = service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL)
    head, body, sig = issued.token.split(".")
    for token in (f"{head}.{body}{bad}.{sig}", issued.token + bad, bad + issued.token):
        refused(service, token, detail="three base64url segments")


def test_trailing_newline_is_refused(service: TokenService) -> None:
    # The `$` trap: re.match("...$") accepts a trailing "\n"; we use fullmatch.
    issued = service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL)
    refused(service, issued.token + "\n", detail="three base64url segments")


def test_non_canonical_base64_is_refused(service: TokenService) -> None:
    # 64 signature bytes take 86 characters; the last one carries 4 unused bits, so 16
    # spellings decode identically. Only the canonical one (unused bits zero) passes.
    issued = service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL)
    head, body, sig = issued.token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig[-1])
    variant = sig[:-1] + alphabet[last | 0b0001]
    assert variant != sig
    assert unb64(variant) == unb64(sig)
    refused(service, f"{head}.{body}.{variant}", detail="not canonical base64url")


def test_impossible_base64_length_is_refused(service: TokenService) -> None:
    issued = service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL)
    head, body, sig = issued.token.split(".")
    assert len(sig + "AAA") % 4 == 1  # no base64 string has this length
    refused(service, f"{head}.{body}.{sig}AAA", detail="not base64url")


@pytest.mark.parametrize("length", [0, 1, 63, 65, 72])
def test_signature_must_be_64_bytes(service: TokenService, length: int) -> None:
    signing_input = f"{b64(json.dumps(header()).encode())}.{b64(json.dumps(claims()).encode())}"
    signature = bytes([1]) * length
    token = f"{signing_input}.{b64(signature)}" if length else f"{signing_input}.A"
    refused(service, token)


def test_der_encoded_signature_is_refused(service: TokenService) -> None:
    signing_input = f"{b64(json.dumps(header()).encode())}.{b64(json.dumps(claims()).encode())}"
    private = serialization.load_pem_private_key(KEY.private_pem, password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    der = private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    refused(service, f"{signing_input}.{b64(der)}", detail="signature has the wrong length")


def test_a_megabyte_token_is_refused(service: TokenService) -> None:
    issued = service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL)
    head, body, sig = issued.token.split(".")
    huge = f"{head}.{body}{'A' * 1_048_576}.{sig}"
    refused(service, huge, detail="too large")


def test_size_limit_boundary(service: TokenService) -> None:
    filler = "A" * (MAX_TOKEN_BYTES - 5)
    at_limit, over_limit = f"{filler}.A.AA", f"{filler}.AA.AA"
    assert (len(at_limit), len(over_limit)) == (MAX_TOKEN_BYTES, MAX_TOKEN_BYTES + 1)
    assert "too large" not in refused(service, at_limit).detail  # refused later, not for size
    refused(service, over_limit, detail="too large")


@pytest.mark.parametrize("token", [None, b"a.b.c", 12345, ["a", "b", "c"], {"token": "a.b.c"}])
def test_non_string_input(service: TokenService, token: object) -> None:
    refused(service, token, detail="not a string")


def test_bytes_of_a_valid_token_are_refused(service: TokenService) -> None:
    issued = service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL)
    refused(service, issued.token.encode(), detail="not a string")


def test_segment_count(service: TokenService) -> None:
    issued = service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL)
    head, body, sig = issued.token.split(".")
    for token in (
        f"{head}.{body}",  # two segments
        f"{head}.{body}.{sig}.{sig}",  # four
        f"{head}.{body}.{sig}.{sig}.{sig}",  # JWE compact shape
        head,
        "",
    ):
        refused(service, token, detail="three base64url segments")


@pytest.mark.parametrize("shape", ["..", "a..c", ".b.c", "a.b.", "..c", "...", "a.b.c."])
def test_empty_segments(service: TokenService, shape: str) -> None:
    refused(service, shape, detail="three base64url segments")


# ------------------------------------------------------------------------ guards


def test_any_jose_exception_becomes_token_error(
    service: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL)
    echoed = "attacker-chosen-text"
    for exc in (TypeError(echoed), ValueError(echoed), KeyError(echoed), JWKError(echoed)):

        def boom(*args: object, _exc: Exception = exc, **kwargs: object) -> dict[str, Any]:
            raise _exc

        monkeypatch.setattr(jwt, "decode", boom)
        error = refused(service, issued.token, detail="rejected by jose")
        assert type(exc).__name__ in error.detail
        assert echoed not in str(error)  # jose messages can carry header values: not logged


def test_jose_is_called_with_fixed_arguments(
    service: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a prebuilt ES256 Key object, jose's algorithm list is a second lock that no
    # forged token can reach past our header check; pin the call so it cannot go away.
    issued = service.issue(audience=ROOM_AUDIENCE, typ=ROOM_TYP, subject="s", ttl=TTL)
    real_decode = jwt.decode
    seen: list[dict[str, Any]] = []

    def spy(token: str, key: Any, **kwargs: Any) -> dict[str, Any]:
        seen.append({"key": key, **kwargs})
        return real_decode(token, key, **kwargs)

    monkeypatch.setattr(jwt, "decode", spy)
    assert service.verify(issued.token, audience=ROOM_AUDIENCE, typ=ROOM_TYP)
    (call,) = seen
    assert isinstance(call["key"], Key)
    assert call["algorithms"] == ["ES256"]
    assert type(call["algorithms"]) is list
    assert call["audience"] == ROOM_AUDIENCE
    assert call["issuer"] == ISSUER
    options = call["options"]
    for name in ("aud", "iss", "sub", "jti"):
        assert options[f"require_{name}"] is True
    for name in ("exp", "nbf", "iat"):  # wall-clock checks off; ours use the injected clock
        assert options[f"verify_{name}"] is False
        assert options.get(f"require_{name}", False) is False  # would re-enable them


def test_anything_unforeseen_becomes_token_error(
    service: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL)

    def boom(*args: object, **kwargs: object) -> dict[str, Any]:
        raise RuntimeError("unforeseen")

    monkeypatch.setattr(tokens, "_check_claims", boom)
    refused(service, issued.token, detail="unexpected error")


def test_refusal_detail_never_echoes_token_content(service: TokenService) -> None:
    secret = "patient-name-in-a-header"
    for head in (header(alg=secret), header(kid=secret), header(typ=secret), header(x=secret)):
        error = refused(service, forge(head, claims()))
        assert secret not in str(error)
        assert secret not in error.detail


def test_token_error_attributes() -> None:
    error = TokenError("token_expired", "exp has passed")
    assert error.code == "token_expired"
    assert error.detail == "exp has passed"
    assert isinstance(error, Exception)


# ----------------------------------------------------------------------- rotation


def rotated(key: SigningKey, at: int) -> SigningKey:
    return replace(key, active_from=at)


def issue_access(service: TokenService, ttl: int = TTL) -> IssuedToken:
    return service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=ttl)


def kid_of(token: str) -> str:
    kid: str = json.loads(unb64(token.split(".")[0]))["kid"]
    return kid


def test_the_newest_active_key_signs_whatever_the_order_given() -> None:
    old, new = rotated(KEY, NOW - 100), rotated(OTHER_KEY, NOW - 10)
    for keys in ((old, new), (new, old)):
        svc = make_service(keys=keys)
        assert kid_of(issue_access(svc).token) == OTHER_KEY.kid
        assert [k["kid"] for k in svc.jwks()["keys"]] == [OTHER_KEY.kid, KEY.kid]


def test_a_token_signed_before_a_rotation_verifies_until_it_expires(clock: FrozenClock) -> None:
    old = rotated(KEY, NOW - 3600)
    before = TokenService([old], issuer=ISSUER, now=clock.time)
    token = issue_access(before, ttl=MAX_TOKEN_TTL)

    clock.advance(1)  # the rotation: a new key signs from now on
    new = rotated(OTHER_KEY, int(clock.time()))
    after = TokenService([old, new], issuer=ISSUER, now=clock.time)
    assert kid_of(issue_access(after).token) == OTHER_KEY.kid
    assert [s.state for s in after.key_status()] == ["verifying", "signing"]

    clock.advance(MAX_TOKEN_TTL - 2)  # the last second of the old token's life
    assert after.verify(token.token, audience=ACCESS_AUDIENCE, typ=ACCESS_TYP)["sub"] == "s"
    assert KEY.kid in [k["kid"] for k in after.jwks()["keys"]]
    clock.advance(1)
    refused(after, token.token, code="token_expired")


def test_a_replaced_key_is_dropped_once_its_last_token_has_expired(clock: FrozenClock) -> None:
    old, new = rotated(KEY, NOW - 3600), rotated(OTHER_KEY, NOW)
    svc = TokenService([old, new], issuer=ISSUER, now=clock.time)
    drop_at = NOW + RETIREMENT_GRACE_SECONDS
    assert RETIREMENT_GRACE_SECONDS > MAX_TOKEN_TTL  # longer than any token it signed lives
    # A token signed by the old key in the last second it signed (a lagging instance).
    last = forge(header(), claims(iat=NOW, nbf=NOW, exp=NOW + MAX_TOKEN_TTL))
    assert svc.verify(last, audience=ACCESS_AUDIENCE, typ=ACCESS_TYP)
    status = {s.kid: s for s in svc.key_status()}
    assert (status[KEY.kid].state, status[KEY.kid].until) == ("verifying", drop_at)

    clock.advance(RETIREMENT_GRACE_SECONDS - 1)
    assert [k["kid"] for k in svc.jwks()["keys"]] == [OTHER_KEY.kid, KEY.kid]
    # A (forged-long-lived) token of the old key still checks out against the key...
    long_lived = forge(header(), claims(exp=NOW + 10 * RETIREMENT_GRACE_SECONDS))
    assert svc.verify(long_lived, audience=ACCESS_AUDIENCE, typ=ACCESS_TYP)
    clock.advance(1)
    # ...until the key is retired: gone from the JWKS and from token verification.
    assert [k["kid"] for k in svc.jwks()["keys"]] == [OTHER_KEY.kid]
    refused(svc, long_lived, detail="kid retired")
    assert [s.state for s in svc.key_status()] == ["retired", "signing"]
    assert svc.verify(issue_access(svc).token, audience=ACCESS_AUDIENCE, typ=ACCESS_TYP)


def test_a_pending_key_is_published_and_verifies_but_does_not_sign_yet(
    clock: FrozenClock,
) -> None:
    current, pending = rotated(KEY, NOW - 60), rotated(OTHER_KEY, NOW + 300)
    svc = TokenService([current, pending], issuer=ISSUER, now=clock.time)
    assert kid_of(issue_access(svc).token) == KEY.kid
    assert [k["kid"] for k in svc.jwks()["keys"]] == [KEY.kid, OTHER_KEY.kid]
    assert [(s.state, s.until) for s in svc.key_status()] == [
        ("signing", None),
        ("pending", NOW + 300),
    ]
    # An instance whose clock is ahead already signs with it: we accept its tokens.
    ahead = forge(header(kid=OTHER_KEY.kid), claims(), pem=OTHER_KEY.private_pem)
    assert svc.verify(ahead, audience=ACCESS_AUDIENCE, typ=ACCESS_TYP)
    clock.advance(300)
    assert kid_of(issue_access(svc).token) == OTHER_KEY.kid


def test_with_no_key_active_yet_the_oldest_signs() -> None:
    # A key dated a little ahead of this instance's clock must not leave it unable to sign.
    svc = make_service(keys=(rotated(KEY, NOW + 5), rotated(OTHER_KEY, NOW + 50)))
    assert kid_of(issue_access(svc).token) == KEY.kid


def test_an_unknown_key_is_refused_and_a_removed_one_too() -> None:
    old_only = make_service(keys=(KEY,))
    both = make_service(keys=(rotated(KEY, 0), rotated(OTHER_KEY, NOW)))
    new_token = issue_access(both)
    refused(old_only, new_token.token, detail="unknown kid")
    old_token = issue_access(old_only)
    refused(make_service(keys=(OTHER_KEY,)), old_token.token, detail="unknown kid")


def test_two_keys_starting_at_once_are_refused() -> None:
    with pytest.raises(ValueError, match="same active_from"):
        make_service(keys=(rotated(KEY, NOW), rotated(OTHER_KEY, NOW)))


@pytest.mark.parametrize("active_from", [-1, True, 1.5, "0"])
def test_active_from_must_be_a_non_negative_integer(active_from: Any) -> None:
    with pytest.raises(ValueError, match="active_from"):
        make_service(keys=(replace(KEY, active_from=active_from),))


def test_no_token_outlives_the_retirement_grace(service: TokenService) -> None:
    assert issue_access(service, ttl=MAX_TOKEN_TTL).expires_at == NOW + MAX_TOKEN_TTL
    with pytest.raises(ValueError, match="MAX_TOKEN_TTL"):
        issue_access(service, ttl=MAX_TOKEN_TTL + 1)


class Loader:
    """A `reload` callable: returns `keys`, or raises `error`; counts its calls."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys: list[SigningKey] | None = list(keys)
        self.error: Exception | None = None
        self.calls = 0

    def __call__(self) -> list[SigningKey] | None:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.keys


def test_a_rotation_reaches_a_running_service_through_reload(clock: FrozenClock) -> None:
    old = rotated(KEY, NOW - 3600)
    loader = Loader(old)
    svc = TokenService([old], issuer=ISSUER, now=clock.time, reload=loader, reload_interval=0)
    before = issue_access(svc)
    loader.keys = [old, rotated(OTHER_KEY, NOW)]  # what `confide keys rotate-signing` does
    after = issue_access(svc)
    assert (kid_of(before.token), kid_of(after.token)) == (KEY.kid, OTHER_KEY.kid)
    for issued in (before, after):
        assert svc.verify(issued.token, audience=ACCESS_AUDIENCE, typ=ACCESS_TYP)
    assert [k["kid"] for k in svc.jwks()["keys"]] == [OTHER_KEY.kid, KEY.kid]


def test_a_token_of_a_key_we_do_not_hold_yet_triggers_a_reload(clock: FrozenClock) -> None:
    # Another instance started signing with a new key before this one re-read the list.
    old = rotated(KEY, NOW - 3600)
    loader = Loader(old)
    svc = TokenService([old], issuer=ISSUER, now=clock.time, reload=loader, reload_interval=0)
    new = rotated(OTHER_KEY, NOW)
    token = forge(header(kid=OTHER_KEY.kid), claims(), pem=OTHER_KEY.private_pem)
    refused(svc, token, detail="unknown kid")
    loader.keys = [old, new]
    assert svc.verify(token, audience=ACCESS_AUDIENCE, typ=ACCESS_TYP)


def test_a_deleted_key_stops_verifying_at_the_next_reload(clock: FrozenClock) -> None:
    # A leaked key: the operator rotates, then deletes its file. Even an instance that
    # issues nothing stops accepting its tokens.
    old, new = rotated(KEY, NOW - 3600), rotated(OTHER_KEY, NOW - 10)
    loader = Loader(old, new)
    svc = TokenService([old, new], issuer=ISSUER, now=clock.time, reload=loader, reload_interval=0)
    leaked = forge(header(), claims())
    assert svc.verify(leaked, audience=ACCESS_AUDIENCE, typ=ACCESS_TYP)
    loader.keys = [new]
    refused(svc, leaked, detail="unknown kid")


def test_reloads_are_rate_limited(clock: FrozenClock) -> None:
    loader = Loader(KEY)
    svc = TokenService([KEY], issuer=ISSUER, now=clock.time, reload=loader, reload_interval=60)
    unknown = forge(header(kid=OTHER_KEY.kid), claims(), pem=OTHER_KEY.private_pem)
    for _ in range(20):  # an attacker's stream of made-up kids costs no file reads
        refused(svc, unknown, detail="unknown kid")
        issue_access(svc)
    assert loader.calls == 0


@pytest.mark.parametrize(
    "failure",
    ["raises", "returns none", "returns nothing", "returns a duplicate", "returns a bad key"],
)
def test_a_broken_reload_keeps_the_keys_held(clock: FrozenClock, failure: str) -> None:
    loader = Loader(KEY)
    svc = TokenService([KEY], issuer=ISSUER, now=clock.time, reload=loader, reload_interval=0)
    token = issue_access(svc)
    if failure == "raises":
        loader.error = OSError("disk gone")
    elif failure == "returns none":
        loader.keys = None
    elif failure == "returns nothing":
        loader.keys = []
    elif failure == "returns a duplicate":
        loader.keys = [rotated(KEY, 1), rotated(OTHER_KEY, 1)]
    else:
        loader.keys = [replace(KEY, kid=OTHER_KEY.kid)]
    assert svc.verify(token.token, audience=ACCESS_AUDIENCE, typ=ACCESS_TYP)
    assert kid_of(issue_access(svc).token) == KEY.kid
    assert svc.jwks() == {"keys": [KEY.public_jwk]}
    refused(svc, forge(header(kid="made-up"), claims()), detail="unknown kid")


@settings(max_examples=100, deadline=None)
@given(
    starts=st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=4, unique=True),
    issued_at=st.integers(min_value=0, max_value=6000),
    ttl=st.integers(min_value=1, max_value=MAX_TOKEN_TTL),
    checked_after=st.floats(min_value=0, max_value=1),
)
def test_property_every_token_verifies_until_it_expires_whatever_the_rotations(
    starts: list[int], issued_at: int, ttl: int, checked_after: float
) -> None:
    """Keys start signing at `starts` (all known from the outset: pending ones are published
    ahead). A token issued at any time verifies at any later time before its exp, with the
    key that signed it, and is expired at exp; the JWKS holds that key all the while."""
    pool = [KEY, OTHER_KEY, THIRD_KEY, FOURTH_KEY]
    keys = [rotated(pool[i], start) for i, start in enumerate(starts)]
    issuer = TokenService(keys, issuer=ISSUER, now=lambda: float(NOW + issued_at))
    issued = issue_access(issuer, ttl=ttl)
    later = NOW + issued_at + min(int(checked_after * ttl), ttl - 1)
    verifier = TokenService(keys, issuer=ISSUER, now=lambda: float(later))
    assert verifier.verify(issued.token, audience=ACCESS_AUDIENCE, typ=ACCESS_TYP)
    assert kid_of(issued.token) in [k["kid"] for k in verifier.jwks()["keys"]]
    expired = TokenService(keys, issuer=ISSUER, now=lambda: float(issued.expires_at))
    refused(expired, issued.token, code="token_expired")


# -------------------------------------------------------------------------- keys


def test_jwks_publishes_public_keys_only(service: TokenService) -> None:
    published = service.jwks()
    assert published == {"keys": [KEY.public_jwk]}
    (entry,) = published["keys"]
    assert set(entry) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert entry["alg"] == "ES256"
    assert entry["use"] == "sig"
    # A copy: a caller editing the answer cannot change what we publish.
    entry["x"] = "tampered"
    assert service.jwks() == {"keys": [KEY.public_jwk]}


def test_jwks_entry_verifies_our_tokens_elsewhere(service: TokenService) -> None:
    issued = service.issue(audience=ROOM_AUDIENCE, typ=ROOM_TYP, subject="s", ttl=TTL)
    (entry,) = service.jwks()["keys"]
    decoded = jwt.decode(
        issued.token,
        dict(entry),
        algorithms=["ES256"],
        audience=ROOM_AUDIENCE,
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    assert decoded["jti"] == issued.jti


def test_kid_is_the_rfc7638_thumbprint() -> None:
    # Test vector from RFC 9449 §6.1 (DPoP "jkt"): this P-256 JWK has the thumbprint below.
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(unb64("l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs"), "big"),
        int.from_bytes(unb64("9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"), "big"),
        ec.SECP256R1(),
    )
    published = tokens._public_jwk(numbers.public_key())
    assert published["kid"] == "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"


def test_kid_matches_a_recomputed_thumbprint() -> None:
    required = {m: KEY.public_jwk[m] for m in ("crv", "kty", "x", "y")}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True).encode()
    assert KEY.kid == b64(hashlib.sha256(canonical).digest())
    assert KEY.public_jwk["kid"] == KEY.kid


@pytest.mark.parametrize(("scalar", "coordinate"), [(379, "x"), (43, "y")])
def test_coordinates_are_fixed_length(scalar: int, coordinate: str) -> None:
    # These scalars give a public point whose x (resp. y) has a leading zero byte.
    private = ec.derive_private_key(scalar, ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key = load_signing_key(pem)
    raw = unb64(key.public_jwk[coordinate])
    assert len(raw) == 32
    assert raw[0] == 0
    svc = make_service(keys=(key,))
    issued = svc.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL)
    assert svc.verify(issued.token, audience=ACCESS_AUDIENCE, typ=ACCESS_TYP)


def test_generate_and_load() -> None:
    pem = generate_signing_key_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8
    key = load_signing_key(pem)
    assert key.private_pem == pem
    assert key.public_jwk["crv"] == "P-256"
    assert "d" not in key.public_jwk
    assert load_signing_key(generate_signing_key_pem()).kid != key.kid


def test_sec1_pem_is_normalised_to_pkcs8() -> None:
    private = serialization.load_pem_private_key(KEY.private_pem, password=None)
    sec1 = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert sec1.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert load_signing_key(sec1) == KEY


def test_signing_key_repr_hides_the_private_key() -> None:
    assert "PRIVATE" not in repr(KEY)
    assert KEY.private_pem.decode() not in repr(KEY)


def _pem(private: Any, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    data: bytes = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    return data


@pytest.mark.parametrize(
    "pem",
    [
        pytest.param(_pem(ec.generate_private_key(ec.SECP384R1())), id="p384"),
        pytest.param(_pem(ec.generate_private_key(ec.SECP256K1())), id="secp256k1"),
        pytest.param(_pem(ed25519.Ed25519PrivateKey.generate()), id="ed25519"),
        pytest.param(_pem(rsa.generate_private_key(65537, 2048)), id="rsa"),
        pytest.param(_pem(ec.generate_private_key(ec.SECP256R1()), b"pw"), id="encrypted"),
        pytest.param(public_pem(KEY), id="public-key"),
        pytest.param(b"", id="empty"),
        pytest.param(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", id="junk"),
        pytest.param(b"not a pem at all", id="garbage"),
    ],
)
def test_load_signing_key_refuses(pem: bytes) -> None:
    with pytest.raises(ValueError, match=r"PEM private key|P-256"):
        load_signing_key(pem)


# ------------------------------------------------------------------ construction


def test_service_needs_a_key() -> None:
    with pytest.raises(ValueError, match="signing key"):
        TokenService([], issuer=ISSUER)


def test_service_needs_an_issuer() -> None:
    with pytest.raises(ValueError, match="issuer"):
        TokenService([KEY], issuer="")


def test_service_refuses_duplicate_keys() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        TokenService([KEY, KEY], issuer=ISSUER)


def test_service_refuses_a_mislabelled_key() -> None:
    mislabelled = SigningKey(
        kid=OTHER_KEY.kid, private_pem=KEY.private_pem, public_jwk=KEY.public_jwk
    )
    with pytest.raises(ValueError, match="do not match"):
        TokenService([mislabelled], issuer=ISSUER)
    wrong_jwk = SigningKey(
        kid=KEY.kid, private_pem=KEY.private_pem, public_jwk=OTHER_KEY.public_jwk
    )
    with pytest.raises(ValueError, match="do not match"):
        TokenService([wrong_jwk], issuer=ISSUER)


# ------------------------------------------------------------------------- issue


@pytest.mark.parametrize("name", REGISTERED)
def test_extra_claims_cannot_override_registered_ones(service: TokenService, name: str) -> None:
    with pytest.raises(ValueError, match="registered"):
        service.issue(
            audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL, claims={name: "x"}
        )


@pytest.mark.parametrize("ttl", [0, -1, True, 1.5, "60"])
def test_ttl_must_be_a_positive_integer(service: TokenService, ttl: Any) -> None:
    with pytest.raises(ValueError, match="ttl"):
        service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=ttl)


@pytest.mark.parametrize(
    ("field", "value"),
    [("subject", ""), ("subject", 5), ("audience", ""), ("typ", ""), ("typ", None)],
)
def test_issue_refuses_empty_fields(service: TokenService, field: str, value: Any) -> None:
    arguments: dict[str, Any] = {
        "audience": ACCESS_AUDIENCE,
        "typ": ACCESS_TYP,
        "subject": "s",
        "ttl": TTL,
    }
    arguments[field] = value
    with pytest.raises(ValueError, match=field):
        service.issue(**arguments)


@pytest.mark.parametrize(
    "extra",
    [{"x": object()}, {"x": float("nan")}, {"x": float("inf")}, {"x": {1, 2}}, {1: "x"}],
    ids=["object", "nan", "inf", "set", "int-name"],
)
def test_issue_refuses_claims_that_are_not_json(service: TokenService, extra: Any) -> None:
    with pytest.raises(ValueError, match=r"JSON|claim names"):
        service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL, claims=extra)


def test_issue_never_mints_an_oversized_token(service: TokenService) -> None:
    with pytest.raises(ValueError, match="MAX_TOKEN_BYTES"):
        service.issue(
            audience=ACCESS_AUDIENCE,
            typ=ACCESS_TYP,
            subject="s",
            ttl=TTL,
            claims={"blob": "x" * MAX_TOKEN_BYTES},
        )


# ------------------------------------------------------------------------- low s


def test_issued_signatures_are_low_s(service: TokenService) -> None:
    # Each raw ECDSA signature has a high s half the time: 64 tokens all low is no accident.
    for _ in range(64):
        issued = service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL)
        assert signature_s(issued.token) <= P256_N // 2


def test_the_high_s_twin_is_refused_though_jose_would_accept_it(service: TokenService) -> None:
    issued = service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL)
    twin = with_s(issued.token, P256_N - signature_s(issued.token))
    assert twin != issued.token
    # The twin is a valid ECDSA signature of the same bytes: python-jose alone takes it...
    assert jws.verify(twin, jwk.construct(public_pem(KEY), "ES256"), algorithms=["ES256"])
    # ...we do not.
    refused(service, twin, detail="signature s is high")


def test_the_high_s_twin_is_refused_before_jose_sees_it(
    service: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL)
    twin = with_s(issued.token, P256_N - signature_s(issued.token))

    def never(*args: object, **kwargs: object) -> dict[str, Any]:
        raise AssertionError("python-jose saw a high-s token")

    monkeypatch.setattr(jwt, "decode", never)
    refused(service, twin, detail="signature s is high")


@pytest.mark.parametrize(
    ("part", "value"),
    [("r", 0), ("r", P256_N), ("r", 2**256 - 1), ("s", 0), ("s", P256_N), ("s", 2**256 - 1)],
)
def test_signature_r_and_s_must_be_in_range(service: TokenService, part: str, value: int) -> None:
    issued = service.issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="s", ttl=TTL)
    signing_input, _, signature = issued.token.rpartition(".")
    raw = unb64(signature)
    r, s = (
        (value.to_bytes(32, "big"), raw[32:])
        if part == "r"
        else (raw[:32], value.to_bytes(32, "big"))
    )
    refused(service, f"{signing_input}.{b64(r + s)}", detail="out of range")


@settings(max_examples=100, deadline=None)
@given(
    subject=st.text(min_size=1, max_size=40),
    extra=st.dictionaries(
        st.text(max_size=8).filter(lambda name: name not in REGISTERED),
        st.text(max_size=20),
        max_size=3,
    ),
    audience=st.sampled_from([(ACCESS_AUDIENCE, ACCESS_TYP), (ROOM_AUDIENCE, ROOM_TYP)]),
)
def test_property_issued_tokens_are_low_s_and_their_twin_is_refused(
    subject: str, extra: dict[str, str], audience: tuple[str, str]
) -> None:
    aud, typ = audience
    issued = VERIFIER.issue(audience=aud, typ=typ, subject=subject, ttl=TTL, claims=extra)
    s = signature_s(issued.token)
    assert 0 < s <= P256_N // 2
    assert VERIFIER.verify(issued.token, audience=aud, typ=typ)["sub"] == subject
    with pytest.raises(TokenError) as info:
        VERIFIER.verify(with_s(issued.token, P256_N - s), audience=aud, typ=typ)
    assert info.value.detail == "signature s is high (malleable)"


# -------------------------------------------------------------------- properties

VERIFIER = make_service()
VALID = VERIFIER.issue(
    audience=ROOM_AUDIENCE,
    typ=ROOM_TYP,
    subject="account-1",
    ttl=TTL,
    claims={"room": "r-1", "device": "d-1", "role": "participant"},
).token

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=5,
)
b64_segments = st.binary(max_size=200).map(b64)
structured_tokens = st.builds(
    lambda h, c, s: f"{b64(json.dumps(h).encode())}.{b64(json.dumps(c).encode())}.{b64(s)}",
    st.fixed_dictionaries(
        {"alg": st.sampled_from(["ES256", "none", "HS256"]), "kid": st.just(KEY.kid)},
        optional={"typ": st.sampled_from([ROOM_TYP, ACCESS_TYP]), "jku": st.text(max_size=5)},
    ),
    st.just(claims(ROOM_AUDIENCE))
    | st.dictionaries(st.sampled_from([*REGISTERED, "role"]), json_values)
    | st.builds(
        lambda c: {**claims(ROOM_AUDIENCE), **c},
        st.dictionaries(st.sampled_from(REGISTERED), json_values),
    ),
    st.binary(min_size=60, max_size=68),
)


@settings(max_examples=300, deadline=None)
@given(
    st.text()
    | st.text(alphabet="ABCxyz019-_.=+/ ", max_size=60)
    | st.builds(lambda a, b, c: f"{a}.{b}.{c}", b64_segments, b64_segments, b64_segments)
    | structured_tokens
)
def test_property_arbitrary_input_only_ever_raises_token_error(candidate: str) -> None:
    # Random input must be refused, and refused only with TokenError (never a 500).
    with pytest.raises(TokenError) as info:
        VERIFIER.verify(candidate, audience=ROOM_AUDIENCE, typ=ROOM_TYP)
    assert info.value.code in {"token_invalid", "token_expired"}


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_property_any_single_change_to_a_valid_token_is_refused(data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(VALID) - 1), label="index")
    original = VALID[index]
    replacement = data.draw(
        st.characters(codec="utf-8").filter(lambda c: c != original)
        | st.integers(min_value=0, max_value=6).map(lambda bit: chr(ord(original) ^ (1 << bit))),
        label="replacement",
    )
    mutated = VALID[:index] + replacement + VALID[index + 1 :]
    # Non-canonical base64 is refused, so no change is "harmless": every one must fail.
    with pytest.raises(TokenError) as info:
        VERIFIER.verify(mutated, audience=ROOM_AUDIENCE, typ=ROOM_TYP)
    assert info.value.code == "token_invalid"


def test_the_unmutated_token_used_by_the_property_verifies() -> None:
    assert VERIFIER.verify(VALID, audience=ROOM_AUDIENCE, typ=ROOM_TYP)["room"] == "r-1"


@settings(max_examples=150, deadline=None)
@given(
    subject=st.text(min_size=1, max_size=40),
    ttl=st.integers(min_value=1, max_value=MAX_TOKEN_TTL),
    extra=st.dictionaries(
        st.text(max_size=8).filter(lambda name: name not in REGISTERED), json_values, max_size=3
    ),
    audience=st.sampled_from([(ACCESS_AUDIENCE, ACCESS_TYP), (ROOM_AUDIENCE, ROOM_TYP)]),
)
def test_property_round_trip(
    subject: str, ttl: int, extra: dict[str, Any], audience: tuple[str, str]
) -> None:
    aud, typ = audience
    issued = VERIFIER.issue(audience=aud, typ=typ, subject=subject, ttl=ttl, claims=extra)
    verified = VERIFIER.verify(issued.token, audience=aud, typ=typ)
    expected = {
        "iss": ISSUER,
        "aud": aud,
        "sub": subject,
        "jti": issued.jti,
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + ttl,
        **extra,
    }
    assert verified == expected
    # == says True == 1 == 1.0; the canonical JSON tells them apart.
    assert json.dumps(verified, sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert issued.expires_at == NOW + ttl
