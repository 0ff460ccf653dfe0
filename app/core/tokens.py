"""Signed tokens: the one module that touches python-jose.

Every access token and room token is issued and verified here, so the sharp
edges of python-jose 3.5.0 (docs/decisions/0001-es256-tokens.md) are fenced in one
place. The rules follow RFC 8725 (JWT Best Current Practices); each check
below carries a one-line reason.

Verification is layered: we vet the raw string and the header ourselves
*before* python-jose sees anything, let python-jose check the signature,
`aud`, `iss`, `sub` and `jti` with a fixed algorithm list, and then re-check
every claim ourselves against an injectable clock. Every refusal is a
`TokenError`; no other exception escapes `TokenService.verify`.

One signed token has one spelling: base64url must be canonical, and ECDSA's
(r, s) / (r, n - s) twin is closed by issuing only low-s signatures and
refusing high-s ones before python-jose sees them.

Audit checkpoints (the signed head of the audit chain, see app/audit/checkpoints.py)
are signed and verified here too, with their own `typ` and audience, so one is
never taken for an access or room token, nor the other way round.

Several signing keys (rotation, decision note 0001): each has the time it starts
signing (`active_from`); the newest active one signs. A key that a newer one has
replaced keeps verifying tokens (and stays in the JWKS) for RETIREMENT_GRACE_SECONDS
after it stopped signing, longer than any token it signed can live, then is
dropped; it still verifies audit checkpoints for as long as it is given. The key
list can be re-read at run time (`reload`), so a rotation made by the CLI reaches
a running server without a restart.

Pure module: no FastAPI, no database, no settings.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jwk, jws, jwt
from jose.backends.base import Key

from app.core.codec import b64url_decode, b64url_encode, strict_json_loads

ACCESS_AUDIENCE: Final = "confide:api"
ROOM_AUDIENCE: Final = "confide:room"
# Explicit typing per RFC 8725 §3.11 / RFC 9068: distinct `typ` values stop one
# kind of token being substituted for another even if an audience check slips.
ACCESS_TYP: Final = "at+jwt"
ROOM_TYP: Final = "room+jwt"
# The second step of a log-in (app.mfa): the password was right, a factor must follow.
MFA_AUDIENCE: Final = "confide-mfa"
MFA_TYP: Final = "mfa+jwt"
# A WebAuthn ceremony's challenge, carried by the client between options and verify.
WEBAUTHN_AUDIENCE: Final = "confide-webauthn"
WEBAUTHN_TYP: Final = "webauthn-challenge+jwt"
# Audit checkpoints: a signed (seq, head hash, time) of the audit chain. Their own audience
# and typ, so a checkpoint never passes as a token and no token passes as a checkpoint.
CHECKPOINT_AUDIENCE: Final = "confide:audit-checkpoint"
CHECKPOINT_TYP: Final = "confide-audit-checkpoint+jwt"
# Key-log heads: a signed (account, seq, head hash) of an account's key log (app/keys).
KEY_LOG_AUDIENCE: Final = "confide:key-log"
KEY_LOG_TYP: Final = "confide-key-log-head+jwt"
_KEY_LOG_CLAIMS: Final = frozenset({"iss", "aud", "jti", "iat", "sub", "seq", "head"})
# Bound the work an unauthenticated caller can make us do (ASVS: limit input size).
MAX_TOKEN_BYTES: Final = 4096

# The longest lifetime of any token we issue (access and room tokens are both capped at 15
# minutes, see Settings); issue() refuses a longer ttl, so a retired key can be dropped.
MAX_TOKEN_TTL: Final = 900
# A key replaced by a newer one verifies tokens for this long after it stopped signing: the
# longest token lifetime, plus 60 s for clock skew between instances (30 s, as in the claim
# checks) and for the instances that pick the newer key up a little later (reload interval).
RETIREMENT_GRACE_SECONDS: Final = MAX_TOKEN_TTL + 60
# How often, at most, the key list is re-read (see TokenService `reload`).
RELOAD_INTERVAL_SECONDS: Final = 1.0

TOKEN_INVALID: Final = "token_invalid"
TOKEN_EXPIRED: Final = "token_expired"

# One algorithm for all our keys (RFC 8725 §3.1, §2.1): never "none", never HMAC.
_ALG: Final = "ES256"
# ES256 signatures are the fixed-length r||s concatenation (RFC 7518 §3.4).
_ES256_SIGNATURE_BYTES: Final = 64
# The order n of the P-256 group (SEC 2 §2.4.2). An ECDSA signature (r, s) verifies exactly
# when (r, n - s) does, so every token would have a second valid spelling; we issue only the
# "low" one (s <= n/2, as BIP 62 / libsecp256k1 do) and refuse the other before python-jose
# sees it: one token string per signed token.
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P256_HALF_ORDER: Final = _P256_ORDER // 2
# Clock skew we tolerate on `iat` and `nbf`; RFC 7519 allows "a few minutes", we allow 30 s.
_LEEWAY_SECONDS: Final = 30
# The only header parameters our issuer writes; anything else is refused (RFC 8725 §3.10:
# `jku`/`x5u` would make us fetch a key, `jwk`/`x5c` would let the token bring its own,
# `crit` demands processing we do not implement, RFC 7515 §4.1.11).
_HEADER_PARAMS: Final = frozenset({"alg", "kid", "typ"})
# Claims every token must carry (RFC 8725 §3.8, §3.9; `jti` feeds single-use / deny lists).
_REGISTERED_CLAIMS: Final = ("iss", "aud", "sub", "jti", "iat", "nbf", "exp")
# Three non-empty base64url segments and nothing else: no `=` padding, no whitespace,
# no trailing newline (fullmatch, not `$`), checked before python-jose parses anything.
_COMPACT_JWS: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# A checkpoint carries exactly these claims. No exp: it is evidence that must still verify
# years later, and it grants nothing. No sub: it speaks for no account.
_CHECKPOINT_CLAIMS: Final = frozenset({"iss", "aud", "jti", "iat", "seq", "head"})
# The audit chain's SHA-256 hashes as Confide writes them: 64 lowercase hex digits.
_HEX_SHA256: Final = re.compile(r"[0-9a-f]{64}")


class TokenError(Exception):
    """A refused token. `code` is "token_invalid" or "token_expired"; `detail` is a fixed
    string naming the rule (never token content, so it is safe to log)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def _invalid(detail: str) -> TokenError:
    return TokenError(TOKEN_INVALID, detail)


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class SigningKey:
    kid: str
    # repr=False: a logged or printed SigningKey must never show the private key.
    private_pem: bytes = field(repr=False)
    public_jwk: dict[str, str]
    # When this key starts signing (Unix seconds): of the keys whose time has come, the
    # newest signs. 0 for a key that has always been the one (a single configured file).
    active_from: int = 0


KeyState = Literal["signing", "pending", "verifying", "retired"]


@dataclass(frozen=True)
class KeyStatus:
    """What one signing key does at a given time.

    signing: it signs new tokens and checkpoints. pending: published and verifying, it
    signs from `until` on. verifying: replaced; its tokens verify (and it is published)
    until `until`. retired: gone from the JWKS and from token verification; it still
    verifies the audit checkpoints it signed.
    """

    kid: str
    active_from: int
    state: KeyState
    until: int | None


def generate_signing_key_pem() -> bytes:
    """A new P-256 private key as PKCS8 PEM (unencrypted: protect it at rest elsewhere)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_jwk(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The public JWK with its RFC 7638 thumbprint as `kid`."""
    numbers = public_key.public_numbers()
    # RFC 7518 §6.2.1.2: coordinates are fixed-length (32 bytes for P-256), left-padded.
    x = b64url_encode(numbers.x.to_bytes(32, "big"))
    y = b64url_encode(numbers.y.to_bytes(32, "big"))
    # RFC 7638 §3.2: required members only, lexicographic order, no whitespace.
    canonical = json.dumps(
        {"crv": "P-256", "kty": "EC", "x": x, "y": y}, separators=(",", ":"), sort_keys=True
    )
    kid = b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest())
    return {"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": _ALG, "use": "sig"}


def load_signing_key(pem: bytes) -> SigningKey:
    """Load a P-256 private key (PKCS8 or SEC1 PEM); anything else is a ValueError."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except Exception as exc:  # cryptography raises ValueError, TypeError, UnsupportedAlgorithm
        raise ValueError("not an unencrypted PEM private key") from exc
    # One key type, one curve, one algorithm (RFC 8725 §3.1): refuse RSA, Ed25519, P-384...
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("signing key must be an EC P-256 private key")
    # Normalise to PKCS8 so every SigningKey carries the same encoding.
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_jwk = _public_jwk(key.public_key())
    return SigningKey(kid=public_jwk["kid"], private_pem=pkcs8, public_jwk=public_jwk)


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: int


@dataclass(frozen=True)
class SignedCheckpoint:
    """A signed audit checkpoint: the chain held entry `seq` with hash `head` at `iat`."""

    token: str
    kid: str
    jti: str
    iat: int
    seq: int
    head: str


# ------------------------------------------------------------------------ signing


def _low_s(token: str) -> str:
    """The same token with its signature's s normalised to the low half (s > n/2 -> n - s).

    (r, n - s) verifies exactly when (r, s) does (ECDSA's inherent malleability), so this
    changes the spelling, never the validity; verify() refuses the high spelling.
    """
    signing_input, _, signature_b64 = token.rpartition(".")
    signature = b64url_decode(signature_b64)
    if len(signature) != _ES256_SIGNATURE_BYTES:  # never from python-jose's ES256
        raise ValueError("unexpected ES256 signature length")
    s = int.from_bytes(signature[32:], "big")
    if s > _P256_HALF_ORDER:
        signature = signature[:32] + (_P256_ORDER - s).to_bytes(32, "big")
    return f"{signing_input}.{b64url_encode(signature)}"


def _sign(payload: bytes, signer: Key, headers: Mapping[str, str]) -> str:
    """A compact JWS of `payload` (ES256, our header parameters), its signature low-s."""
    return _low_s(jws.sign(payload, signer, headers=dict(headers), algorithm=_ALG))


# ------------------------------------------------------------------ raw parsing


def _strict_b64url_decode(segment: str) -> bytes:
    """Decode one segment, refusing any non-canonical encoding.

    python-jose ignores the unused low bits of the last character, so several strings
    decode to the same bytes; we accept exactly one spelling per token (no malleable
    token strings; the regex already refused padding and foreign characters).
    """
    try:
        return b64url_decode(segment)
    except ValueError as exc:  # "not base64url" or "not canonical base64url"
        raise _invalid(f"segment is {exc}") from exc


def _strict_json_object(data: bytes, what: str) -> dict[str, Any]:
    """UTF-8 JSON object, no duplicate names, no NaN/Infinity (RFC 7515 §5.2 steps 2-4)."""
    try:
        # Decode as UTF-8 ourselves: json.loads(bytes) would also guess UTF-16/32.
        value = strict_json_loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _invalid(f"{what} is not a strict JSON object") from exc
    if not isinstance(value, dict):
        raise _invalid(f"{what} is not a JSON object")
    return value


def _is_int(value: object) -> bool:
    # NumericDate as an integer only: bool is an int subclass, floats and strings are not
    # accepted (python-jose int()-converts "123" and 1.5 and would take them).
    return type(value) is int


def _check_claims(
    claims: Mapping[str, Any], *, audience: str, issuer: str, now: float
) -> dict[str, Any]:
    """Our own claim checks, run after python-jose with the injected clock.

    Order matters: everything that makes a token *invalid* is checked before expiry, so
    "token_expired" only ever describes an otherwise acceptable token.
    """
    # Every registered claim is mandatory (RFC 8725 §3.8-3.9); python-jose requires none by
    # default, and its require_exp/iat/nbf would switch its wall-clock checks back on.
    for name in _REGISTERED_CLAIMS:
        if name not in claims:
            raise _invalid(f"claim {name} missing")
    # Issuer must be exactly ours (RFC 8725 §3.8).
    if type(claims["iss"]) is not str or claims["iss"] != issuer:
        raise _invalid("iss mismatch")
    # Audience must be exactly the one expected, a plain string: python-jose accepts a
    # list that merely contains it, which would let one token serve two audiences
    # (RFC 8725 §3.9, and PROTOCOL: access and room tokens never substitute).
    if type(claims["aud"]) is not str or claims["aud"] != audience:
        raise _invalid("aud mismatch")
    # Subject names the account; a non-string or empty one names nobody.
    if type(claims["sub"]) is not str or not claims["sub"]:
        raise _invalid("sub is not a non-empty string")
    # Deny-lists and single-use checks key on jti, so it must be usable.
    if type(claims["jti"]) is not str or not claims["jti"]:
        raise _invalid("jti is not a non-empty string")
    for name in ("exp", "iat", "nbf"):
        if not _is_int(claims[name]):
            raise _invalid(f"{name} is not an integer")
    # A token issued in the future comes from a broken or hostile clock (30 s skew allowed).
    if claims["iat"] > now + _LEEWAY_SECONDS:
        raise _invalid("iat in the future")
    # RFC 7519 §4.1.5: not valid before nbf (same 30 s skew).
    if claims["nbf"] > now + _LEEWAY_SECONDS:
        raise _invalid("nbf in the future")
    # RFC 7519 §4.1.4: invalid "on or after" exp, so exp == now is expired (jose says valid).
    if claims["exp"] <= now:
        raise TokenError(TOKEN_EXPIRED, "exp has passed")
    return dict(claims)


def _check_checkpoint_claims(
    claims: Mapping[str, Any], *, issuer: str, now: float
) -> dict[str, Any]:
    """A checkpoint's claims: exactly the expected set, each of the expected type."""
    # Exactly our claims: a token (with sub, exp, ...) is not a checkpoint, whatever its typ.
    if set(claims) != _CHECKPOINT_CLAIMS:
        raise _invalid("checkpoint claims are not exactly iss, aud, jti, iat, seq, head")
    if type(claims["iss"]) is not str or claims["iss"] != issuer:
        raise _invalid("iss mismatch")
    if type(claims["aud"]) is not str or claims["aud"] != CHECKPOINT_AUDIENCE:
        raise _invalid("aud mismatch")
    if type(claims["jti"]) is not str or not claims["jti"]:
        raise _invalid("jti is not a non-empty string")
    if not _is_int(claims["iat"]):
        raise _invalid("iat is not an integer")
    # Signed in the future: a broken or hostile clock (same 30 s skew as tokens).
    if claims["iat"] > now + _LEEWAY_SECONDS:
        raise _invalid("iat in the future")
    if not _is_int(claims["seq"]) or claims["seq"] < 1:
        raise _invalid("seq is not a positive integer")
    if type(claims["head"]) is not str or not _HEX_SHA256.fullmatch(claims["head"]):
        raise _invalid("head is not a hex SHA-256")
    return dict(claims)


# ----------------------------------------------------------------- the service


@dataclass(frozen=True)
class _Keyring:
    """A validated key list, oldest first, and what each key may verify."""

    keys: tuple[SigningKey, ...]
    # kid -> public key: verifies checkpoints for as long as the key is in the list.
    verifiers: Mapping[str, Key]
    # kid -> private key object that signs, for every key (the newest active one is used).
    signers: Mapping[str, Key]
    # kid -> when its tokens stop verifying: the next key's active_from + the grace; None for
    # the newest key. A key is dropped only once its successor has been signing that long.
    drop_at: Mapping[str, int | None]

    @classmethod
    def build(cls, keys: Sequence[SigningKey]) -> _Keyring:
        if not keys:
            # Production refuses to start without signing keys (app/core/keys.py).
            raise ValueError("at least one signing key is required")
        verifiers: dict[str, Key] = {}
        signers: dict[str, Key] = {}
        for key in keys:
            loaded = load_signing_key(key.private_pem)
            if loaded.kid != key.kid or loaded.public_jwk != key.public_jwk:
                raise ValueError("SigningKey kid / public_jwk do not match its private key")
            if loaded.kid in verifiers:
                raise ValueError("duplicate signing key")
            if not _is_int(key.active_from) or key.active_from < 0:
                raise ValueError("active_from must be a non-negative integer")
            # Public keys are rebuilt from the private PEM, so a caller mutating
            # SigningKey.public_jwk cannot change what we trust.
            private = serialization.load_pem_private_key(loaded.private_pem, password=None)
            public_pem = private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            verifiers[loaded.kid] = jwk.construct(public_pem, _ALG)
            signers[loaded.kid] = jwk.construct(loaded.private_pem, _ALG)
        ordered = tuple(sorted(keys, key=lambda k: k.active_from))
        starts = [k.active_from for k in ordered]
        if len(set(starts)) != len(starts):
            # Which of two keys starting at once would sign is a coin toss: refuse.
            raise ValueError("two signing keys have the same active_from")
        drop_at: dict[str, int | None] = {}
        for older, newer in itertools.pairwise(ordered):
            drop_at[older.kid] = newer.active_from + RETIREMENT_GRACE_SECONDS
        drop_at[ordered[-1].kid] = None
        return cls(ordered, verifiers, signers, drop_at)

    def signer(self, now: float) -> SigningKey:
        """The newest key whose time has come (the oldest one if none has yet)."""
        for key in reversed(self.keys):
            if key.active_from <= now:
                return key
        return self.keys[0]

    def verifies_tokens(self, kid: str, now: float) -> bool:
        drop = self.drop_at[kid]
        return drop is None or now < drop

    def status(self, now: float) -> list[KeyStatus]:
        signing = self.signer(now).kid
        result = []
        for key in self.keys:
            drop = self.drop_at[key.kid]
            if key.kid == signing:
                result.append(KeyStatus(key.kid, key.active_from, "signing", None))
            elif key.active_from > now:
                result.append(KeyStatus(key.kid, key.active_from, "pending", key.active_from))
            elif self.verifies_tokens(key.kid, now):
                result.append(KeyStatus(key.kid, key.active_from, "verifying", drop))
            else:
                result.append(KeyStatus(key.kid, key.active_from, "retired", None))
        return result


class TokenService:
    """Signs with the newest active key; verifies tokens with every key not yet retired and
    checkpoints with every key it holds.

    `keys` in any order, each with its `active_from`. `reload`, if given, returns the
    current key list (or None to keep the one held); it is called at most once per
    `reload_interval` seconds (monotonic), before issuing, signing, publishing or
    verifying, so a key added by `confide keys rotate-signing` (or a key file deleted)
    reaches a running server. A list that fails to load or to validate is ignored.
    """

    def __init__(
        self,
        keys: Sequence[SigningKey],
        *,
        issuer: str,
        now: Callable[[], float] = time.time,
        reload: Callable[[], Sequence[SigningKey] | None] | None = None,
        reload_interval: float = RELOAD_INTERVAL_SECONDS,
    ) -> None:
        if not isinstance(issuer, str) or not issuer:
            raise ValueError("issuer must be a non-empty string")
        self._issuer = issuer
        self._now = now
        # kid -> verification key: a fixed map of our own keys, never anything the token
        # names or carries (RFC 8725 §3.10); replaced whole, never edited, on reload.
        self._ring = _Keyring.build(keys)
        self._reload = reload
        self._reload_interval = reload_interval
        self._loaded_at = time.monotonic()

    def _refresh_keys(self) -> None:
        """Re-read the key list if `reload` is set and the interval has passed."""
        if self._reload is None:
            return
        moment = time.monotonic()
        if moment - self._loaded_at < self._reload_interval:
            return
        self._loaded_at = moment
        try:
            keys = self._reload()
            if keys is None or tuple(sorted(keys, key=lambda k: k.active_from)) == self._ring.keys:
                return
            self._ring = _Keyring.build(keys)
        except Exception:  # a broken key file must not take verification down: keep ours
            return

    def key_status(self) -> list[KeyStatus]:
        """Each key, oldest first, and what it does now."""
        self._refresh_keys()
        return self._ring.status(self._now())

    def jwks(self) -> dict[str, Any]:
        """The JWK set for `/.well-known/jwks.json`: the signing key first, then every other
        key whose tokens still verify (pending and replaced ones), newest first. Copies:
        callers cannot alter ours."""
        self._refresh_keys()
        ring, now = self._ring, self._now()
        signing = ring.signer(now)
        others = [
            k
            for k in reversed(ring.keys)
            if k.kid != signing.kid and ring.verifies_tokens(k.kid, now)
        ]
        return {"keys": [dict(k.public_jwk) for k in (signing, *others)]}

    # --------------------------------------------------------------------- issue

    def issue(
        self,
        *,
        audience: str,
        typ: str,
        subject: str,
        ttl: int,
        claims: Mapping[str, Any] | None = None,
    ) -> IssuedToken:
        if not isinstance(audience, str) or not audience:
            raise ValueError("audience must be a non-empty string")
        if not isinstance(typ, str) or not typ:
            raise ValueError("typ must be a non-empty string")
        # verify() refuses an empty or non-string sub, so never mint one.
        if not isinstance(subject, str) or not subject:
            raise ValueError("subject must be a non-empty string")
        if not _is_int(ttl) or ttl <= 0:
            raise ValueError("ttl must be a positive integer number of seconds")
        # A retired key is dropped RETIREMENT_GRACE_SECONDS after it stopped signing: no
        # token may outlive that.
        if ttl > MAX_TOKEN_TTL:
            raise ValueError(f"ttl may not exceed MAX_TOKEN_TTL ({MAX_TOKEN_TTL} s)")
        extra = dict(claims or {})
        if any(not isinstance(name, str) for name in extra):
            raise ValueError("claim names must be strings")
        # Extra claims may not override registered ones (a caller cannot stretch exp or
        # retarget aud through the extra-claims door).
        overridden = sorted(set(extra) & set(_REGISTERED_CLAIMS))
        if overridden:
            raise ValueError(f"extra claims may not set registered claims: {overridden}")

        self._refresh_keys()
        now = self._now()
        iat = math.floor(now)
        signer = self._ring.signer(now)
        body: dict[str, Any] = {
            "iss": self._issuer,
            "aud": audience,
            "sub": subject,
            "jti": uuid.uuid4().hex,  # random, unique: the key for deny-lists and single use
            "iat": iat,
            "nbf": iat,
            "exp": iat + ttl,
            **extra,
        }
        try:
            # Serialise ourselves: strict JSON (no NaN), ASCII only, the exact bytes signed.
            payload = json.dumps(
                body, separators=(",", ":"), allow_nan=False, ensure_ascii=True
            ).encode("ascii")
        except (TypeError, ValueError) as exc:
            raise ValueError("claims are not JSON-serialisable") from exc
        # Header: alg ES256 (python-jose adds it), our kid, our explicit typ.
        token = _sign(payload, self._ring.signers[signer.kid], {"kid": signer.kid, "typ": typ})
        if len(token) > MAX_TOKEN_BYTES:
            # Never mint a token that verify() would refuse.
            raise ValueError("token would exceed MAX_TOKEN_BYTES")
        return IssuedToken(token=token, jti=body["jti"], expires_at=body["exp"])

    # -------------------------------------------------------------------- verify

    def verify(self, token: object, *, audience: str, typ: str) -> dict[str, Any]:
        """The verified claims, or TokenError. Never any other exception: a forged token
        is a 401 / close 4001, never a 500 (python-jose raises JWKError, TypeError,
        ValueError... for some forgeries)."""
        try:
            return self._verify(token, audience=audience, typ=typ)
        except TokenError:
            raise
        except Exception as exc:  # belt and braces: anything unforeseen is a refusal
            raise _invalid("unexpected error while verifying") from exc

    def _verify(self, token: object, *, audience: str, typ: str) -> dict[str, Any]:
        text, kid = self._vet(token, typ=typ)
        now = self._now()
        # A replaced key verifies tokens for the grace period only, then it is retired.
        if not self._ring.verifies_tokens(kid, now):
            raise _invalid("kid retired")
        decoded = self._decode_with_jose(text, kid=kid, audience=audience)
        return _check_claims(decoded, audience=audience, issuer=self._issuer, now=now)

    def _vet(self, token: object, *, typ: str) -> tuple[str, str]:
        """The checks made before python-jose sees anything: the token and the kid of one
        of our keys (after _vet, nothing re-reads the key list until verification ends)."""
        # Text only: bytes or other objects have no business here.
        if not isinstance(token, str):
            raise _invalid("token is not a string")
        # Size first, on characters (>= bytes once the ASCII-only regex passes), so a
        # megabyte of input costs nothing.
        if len(token) > MAX_TOKEN_BYTES:
            raise _invalid("token too large")
        # Exactly JWS compact serialisation (RFC 7515 §7.1), no JWE (five segments), no
        # padding or stray characters, which python-jose would otherwise tolerate.
        if not _COMPACT_JWS.fullmatch(token):
            raise _invalid("token is not three base64url segments")
        header_b64, payload_b64, signature_b64 = token.split(".")
        header_raw = _strict_b64url_decode(header_b64)
        payload_raw = _strict_b64url_decode(payload_b64)
        signature = _strict_b64url_decode(signature_b64)

        # Our own header parse, before python-jose sees anything (RFC 8725 §3.1).
        header = _strict_json_object(header_raw, "header")
        self._check_header(header, typ=typ)
        # ES256 signatures are exactly 64 bytes; jose would hand anything to the backend.
        if len(signature) != _ES256_SIGNATURE_BYTES:
            raise _invalid("signature has the wrong length")
        # r and s in range, and s low: (r, n - s) is the same signature spelled another way,
        # and we accept one spelling only (we never issue the high one, see _sign).
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        if not 0 < r < _P256_ORDER or not 0 < s < _P256_ORDER:
            raise _invalid("signature r or s out of range")
        if s > _P256_HALF_ORDER:
            raise _invalid("signature s is high (malleable)")
        # Parse the payload strictly too, so jose's lenient json.loads (last duplicate
        # wins) can never see something we would read differently.
        _strict_json_object(payload_raw, "payload")
        kid: str = header["kid"]
        return token, kid

    def _check_header(self, header: Mapping[str, Any], *, typ: str) -> None:
        # Exactly ES256: refuse "none" in any case, HS256 (public key as HMAC secret),
        # RS/PS/other ES variants (RFC 8725 §2.1, §3.1). Compare as a str, exact case.
        alg = header.get("alg")
        if type(alg) is not str or alg != _ALG:
            raise _invalid("alg not allowed")
        # Allow-list of header parameters: no jku/x5u (we never fetch keys), no embedded
        # jwk/x5c (a token never brings its own key), no crit (RFC 8725 §3.10, RFC 7515).
        if not set(header) <= _HEADER_PARAMS:
            raise _invalid("header parameter not allowed")
        # kid must name one of our own keys in the fixed map; check the type first so an
        # unhashable kid (a list, an object) cannot raise TypeError on lookup.
        kid = header.get("kid")
        # The current key list (re-read at most once per reload interval): a key another
        # instance has just started signing with verifies here too, and a key file deleted
        # (a leaked key) stops verifying within the interval, even on an instance that
        # issues nothing.
        self._refresh_keys()
        if type(kid) is not str or kid not in self._ring.verifiers:
            raise _invalid("unknown kid")
        # Explicit typing (RFC 8725 §3.11): an access token is never a room token.
        if header.get("typ") != typ:
            raise _invalid("typ mismatch")

    def _decode_with_jose(self, token: str, *, kid: str, audience: str) -> dict[str, Any]:
        """python-jose's checks: signature with the one key `kid` names, ES256 only (a
        list, never a bare string or None), aud, iss, sub and jti present and valid.

        Its time checks are off: it reads the wall clock (not our injectable one) and
        accepts exp == now and exp as a numeric string; we do them in `_check_claims`.
        require_exp/iat/nbf are off too, because python-jose turns verify_<claim> back on
        for every required claim; `_check_claims` requires them instead.
        """
        options = {
            "verify_signature": True,
            "verify_aud": True,
            "verify_iss": True,
            "verify_sub": True,
            "verify_jti": True,
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_at_hash": False,  # OIDC only; we never bind an access token hash
            "require_aud": True,
            "require_iss": True,
            "require_sub": True,
            "require_jti": True,
            "leeway": 0,
        }
        try:
            return jwt.decode(
                token,
                self._ring.verifiers[kid],  # a Key object: jose never parses it as PEM/JWK/secret
                algorithms=[_ALG],
                audience=audience,
                issuer=self._issuer,
                options=options,
            )
        except Exception as exc:  # JOSEError, JWKError, TypeError, ValueError, KeyError...
            # Class name only: jose messages can echo attacker-chosen header values.
            raise _invalid(f"rejected by jose ({type(exc).__name__})") from exc

    # --------------------------------------------------------------- checkpoints

    def sign_checkpoint(self, *, seq: int, head: str) -> SignedCheckpoint:
        """Sign "the audit chain held entry `seq` with hash `head`, now" as a compact JWS.

        Its own typ and audience (never an access or room token), no exp (evidence that
        must verify for as long as the signing key is kept), no sub.
        """
        if not _is_int(seq) or seq < 1:
            raise ValueError("seq must be a positive integer")
        if not isinstance(head, str) or not _HEX_SHA256.fullmatch(head):
            raise ValueError("head must be 64 lowercase hex digits")
        self._refresh_keys()
        now = self._now()
        signer = self._ring.signer(now)
        body: dict[str, Any] = {
            "iss": self._issuer,
            "aud": CHECKPOINT_AUDIENCE,
            "jti": uuid.uuid4().hex,
            "iat": math.floor(now),
            "seq": seq,
            "head": head,
        }
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")
        key = self._ring.signers[signer.kid]
        token = _sign(payload, key, {"kid": signer.kid, "typ": CHECKPOINT_TYP})
        return SignedCheckpoint(
            token=token,
            kid=signer.kid,
            jti=body["jti"],
            iat=body["iat"],
            seq=seq,
            head=head,
        )

    def sign_key_log_head(self, *, account_id: str, seq: int, head: str) -> str:
        """Sign "the key log of `account_id` held entry `seq` with hash `head`, now".

        Signed like a checkpoint (ES256, low s, no exp), with its own typ and
        audience, and the account as `sub`: claims `{iss, aud, jti, iat, sub, seq, head}`.
        """
        if not _is_int(seq) or seq < 1:
            raise ValueError("seq must be a positive integer")
        if not isinstance(head, str) or not _HEX_SHA256.fullmatch(head):
            raise ValueError("head must be 64 lowercase hex digits")
        self._refresh_keys()
        now = self._now()
        signer = self._ring.signer(now)
        body: dict[str, Any] = {
            "iss": self._issuer,
            "aud": KEY_LOG_AUDIENCE,
            "jti": uuid.uuid4().hex,
            "iat": math.floor(now),
            "sub": account_id,
            "seq": seq,
            "head": head,
        }
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")
        return _sign(
            payload, self._ring.signers[signer.kid], {"kid": signer.kid, "typ": KEY_LOG_TYP}
        )

    def verify_key_log_head(self, token: object) -> dict[str, Any]:
        """The claims of a key-log head this server signed, or TokenError."""
        try:
            text, kid = self._vet(token, typ=KEY_LOG_TYP)
            payload = jws.verify(text, self._ring.verifiers[kid], algorithms=[_ALG])
            claims = _strict_json_object(payload, "payload")
        except TokenError:
            raise
        except Exception as exc:
            raise _invalid(f"rejected ({type(exc).__name__})") from exc
        if set(claims) != _KEY_LOG_CLAIMS or claims["aud"] != KEY_LOG_AUDIENCE:
            raise _invalid("not a key-log head")
        if claims["iss"] != self._issuer:
            raise _invalid("iss mismatch")
        return claims

    def verify_checkpoint(self, token: object) -> SignedCheckpoint:
        """The verified checkpoint, or TokenError (never any other exception).

        Signed by any of our keys (by kid), typ and audience of a checkpoint, exactly the
        checkpoint claims; the same raw-string and header rules as tokens.
        """
        try:
            return self._verify_checkpoint(token)
        except TokenError:
            raise
        except Exception as exc:  # belt and braces, as in verify()
            raise _invalid("unexpected error while verifying") from exc

    def _verify_checkpoint(self, token: object) -> SignedCheckpoint:
        # Any key we hold, retired or not: a checkpoint is evidence that must keep verifying
        # for as long as its key is kept.
        text, kid = self._vet(token, typ=CHECKPOINT_TYP)
        try:
            # Signature only, with the one key `kid` names, ES256 only: a checkpoint has
            # none of the registered claims jwt.decode would check.
            payload = jws.verify(text, self._ring.verifiers[kid], algorithms=[_ALG])
        except Exception as exc:  # JWSError, JWKError, TypeError, ValueError...
            raise _invalid(f"rejected by jose ({type(exc).__name__})") from exc
        claims = _check_checkpoint_claims(
            _strict_json_object(payload, "payload"), issuer=self._issuer, now=self._now()
        )
        return SignedCheckpoint(
            token=text,
            kid=kid,
            jti=claims["jti"],
            iat=claims["iat"],
            seq=claims["seq"],
            head=claims["head"],
        )
