"""Standard Webhooks signing, against an independent computation, and the backoff rule."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.errors import ValidationFailed
from app.webhooks import signing
from app.webhooks.service import check_url
from app.webhooks.worker import backoff, sqlite_lock_path

keys = st.binary(min_size=24, max_size=64)
ids = st.text(min_size=1, max_size=64).filter(lambda s: "." not in s)
stamps = st.integers(min_value=0, max_value=2**40)
bodies = st.binary(max_size=2048)


def _secret(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


@given(keys, ids, stamps, bodies)
def test_the_signature_is_hmac_sha256_of_id_timestamp_and_body(
    key: bytes, msg_id: str, stamp: int, body: bytes
) -> None:
    content = f"{msg_id}.{stamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    assert signing.sign(_secret(key), msg_id, stamp, body) == f"v1,{expected}"


@given(keys, ids, stamps, bodies, st.integers(min_value=0))
def test_a_changed_body_or_a_stale_timestamp_does_not_verify(
    key: bytes, msg_id: str, stamp: int, body: bytes, where: int
) -> None:
    secret = _secret(key)
    header = signing.sign(secret, msg_id, stamp, body)
    assert signing.verify(secret, msg_id, stamp, body, header, now=stamp, tolerance=300)
    assert signing.verify(secret, msg_id, stamp, body, "v1,x " + header, now=stamp, tolerance=300)
    changed = bytearray(body or b"\x00")
    changed[where % len(changed)] ^= 0x01
    if bytes(changed) != body:
        assert not signing.verify(
            secret, msg_id, stamp, bytes(changed), header, now=stamp, tolerance=300
        )
    assert not signing.verify(secret, msg_id, stamp, body, header, now=stamp + 301, tolerance=300)


def test_new_secrets_are_whsec_and_32_random_bytes() -> None:
    first, second = signing.new_secret(), signing.new_secret()
    assert first != second
    assert len(signing.secret_bytes(first)) == signing.SECRET_BYTES


@pytest.mark.parametrize(
    "secret", ["", "whsec_", "sk_" + "A" * 44, "whsec_not base64!", "whsec_" + "QUJD"]
)
def test_a_malformed_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="webhook secret"):
        signing.secret_bytes(secret)


@given(
    st.integers(min_value=1, max_value=200),
    st.floats(min_value=0.01, max_value=3600),
    st.floats(min_value=0.01, max_value=86400),
    st.integers(),
)
def test_backoff_doubles_up_to_the_cap_with_jitter(
    attempts: int, base: float, cap: float, seed: int
) -> None:
    delay = backoff(attempts, base, cap, random.Random(seed))
    ceiling = min(cap, base * 2.0 ** min(attempts - 1, 60))
    assert ceiling * 0.5 <= delay <= ceiling


@pytest.mark.parametrize(
    ("url", "production", "ok"),
    [
        ("https://hooks.example.org/in", True, True),
        ("http://hooks.example.org/in", True, False),
        ("http://127.0.0.1:8080/in", False, True),
        ("ftp://hooks.example.org/in", False, False),
        ("https:///in", False, False),
        ("https://user:pw@hooks.example.org/in", False, False),
        ("https://hooks.example.org:99999/in", False, False),
        ("https://hooks.example.org/a b", False, False),
        ("hooks.example.org/in", False, False),
    ],
)
def test_webhook_urls(url: str, production: bool, ok: bool) -> None:
    if ok:
        assert check_url(url, production=production) == url
    else:
        with pytest.raises(ValidationFailed):
            check_url(url, production=production)


def test_the_sqlite_lock_file_sits_beside_the_database() -> None:
    assert str(sqlite_lock_path("sqlite+aiosqlite:////data/confide.db")) == (
        "/data/confide.db.webhooks.lock"
    )
    assert sqlite_lock_path("sqlite+aiosqlite:///:memory:") is None
