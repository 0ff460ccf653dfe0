"""CI sets CONFIDE_REQUIRE_SERVICES=1: a missing service must fail a test, never skip it."""

from __future__ import annotations

import pytest

from tests.fixtures.services import unavailable


def test_a_missing_service_fails_when_services_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONFIDE_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="CONFIDE_REQUIRE_SERVICES"):
        unavailable("PostgreSQL", ConnectionRefusedError("refused"))


def test_a_missing_service_skips_on_a_developer_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONFIDE_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL unreachable"):
        unavailable("PostgreSQL", ConnectionRefusedError("refused"))
