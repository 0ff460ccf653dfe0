"""The TypeScript SDK's committed vectors are what the Python reference computes."""

from __future__ import annotations

import pytest

from app.core.tokens import TokenError, TokenService
from tests.keys.sdk_vectors import HEAD_ISSUER, PATH, key_log_head, render, safety, server_key


def test_committed_vectors_match_the_reference() -> None:
    assert PATH.read_text() == render(), (
        "clients/typescript/test/vectors/keys.json is stale: "
        "run .venv/bin/python -m tests.keys.sdk_vectors"
    )


def test_the_protocol_safety_number_vector_is_the_first() -> None:
    # docs/PROTOCOL.md, "Safety numbers".
    assert " ".join(safety()[0]["groups"]) == (
        "16303 91880 36754 24548 25302 13564 75408 11999 90577 79418 65233 38369"
    )


def test_the_head_vector_is_what_the_server_accepts_and_its_variants_what_it_refuses() -> None:
    vector = key_log_head()
    service = TokenService(
        [server_key()], issuer=HEAD_ISSUER, now=lambda: float(vector["claims"]["iat"] + 10)
    )
    assert service.verify_key_log_head(vector["head"]["jws"]) == vector["claims"]
    for variant in ("high_s", "wrong_typ", "wrong_aud", "unknown_kid", "tampered", "alg_none"):
        with pytest.raises(TokenError):
            service.verify_key_log_head(vector[variant])
