"""The TypeScript SDK's committed vectors are what the Python reference computes."""

from __future__ import annotations

from tests.keys.sdk_vectors import PATH, render, safety


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
