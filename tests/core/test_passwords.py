"""argon2id's cost is a setting: OWASP's by default, refused below it in production."""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.cli import _settings_errors
from app.core.config import Settings
from app.core.passwords import OWASP_MINIMUMS, PasswordHasher, PasswordsBusy, meets_owasp


def test_defaults_are_owasps(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONFIDE_PASSWORD_MEMORY_KIB", "CONFIDE_PASSWORD_TIME_COST"):
        monkeypatch.delenv(name, raising=False)
    configured = Settings()
    assert (configured.password_memory_kib, configured.password_time_cost) == (19_456, 2)
    assert configured.password_parallelism == 1


@pytest.mark.parametrize(("memory", "time"), OWASP_MINIMUMS)
def test_production_takes_every_owasp_row(memory: int, time: int) -> None:
    configured = Settings(env="production", password_memory_kib=memory, password_time_cost=time)
    assert configured.password_time_cost == time


@pytest.mark.parametrize(("memory", "time"), [(8, 1), (19_455, 2), (19_456, 1), (47_103, 1)])
def test_production_refuses_less_in_one_line(memory: int, time: int) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(env="production", password_memory_kib=memory, password_time_cost=time)
    (line,) = _settings_errors(caught.value)
    assert line.startswith("confide: CONFIDE_PASSWORD_TIME_COST: ")
    assert "OWASP" in line


def test_development_may_lower_it() -> None:
    assert Settings(password_memory_kib=8, password_time_cost=1).password_memory_kib == 8


@given(st.integers(min_value=8, max_value=100_000), st.integers(min_value=1, max_value=10))
def test_owasp_rule_is_monotonic(memory: int, time: int) -> None:
    if meets_owasp(memory, time):
        assert meets_owasp(memory + 1, time)
        assert meets_owasp(memory, time + 1)
    assert meets_owasp(memory, time) == any(memory >= m and time >= t for m, t in OWASP_MINIMUMS)


@settings(max_examples=10, deadline=None)
@given(st.text(min_size=1, max_size=40))
async def test_hash_verifies_only_its_password(password: str) -> None:
    hasher = PasswordHasher(8, 1)
    stored = await hasher.hash(password)
    assert stored.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert await hasher.verify(stored, password)
    assert not await hasher.verify(stored, password + "x")
    assert not await hasher.verify(None, password)
    assert not await hasher.verify("not a hash", password)


async def test_a_hash_made_at_another_cost_still_verifies() -> None:
    older = await PasswordHasher(16, 2).hash("correct horse battery")
    assert "$m=16,t=2,p=1$" in older
    assert await PasswordHasher(8, 1).verify(older, "correct horse battery")


@settings(max_examples=20, deadline=None)
@given(
    st.integers(min_value=1, max_value=4),
    st.integers(min_value=0, max_value=4),
    st.integers(min_value=1, max_value=16),
)
async def test_hashes_past_the_running_and_waiting_bound_are_refused_at_once(
    concurrency: int, queue: int, requests: int
) -> None:
    hasher = PasswordHasher(8, 1, concurrency=concurrency, queue=queue)
    try:
        outcomes = await asyncio.gather(
            *(hasher.hash(f"password {n}") for n in range(requests)), return_exceptions=True
        )
    finally:
        hasher.close()
    refused = [o for o in outcomes if isinstance(o, PasswordsBusy)]
    assert len(refused) == max(0, requests - concurrency - queue)
    assert all(isinstance(o, str) for o in outcomes if o not in refused)
    for error in refused:
        assert (error.status, error.code, error.headers["Retry-After"]) == (503, "busy", "1")
    assert hasher.admitted == 0


async def test_a_reserved_place_is_the_hashs_own_and_refuses_others() -> None:
    hasher = PasswordHasher(8, 1, concurrency=1, queue=0)
    try:
        with hasher.reserve():
            assert hasher.admitted == 1
            # Another request (task) finds no place, before doing anything.
            other = asyncio.create_task(hasher.verify(None, "x"))
            with pytest.raises(PasswordsBusy):
                await other
            # This request's own hash uses its place.
            assert await hasher.verify(await hasher.hash("x"), "x")
            assert hasher.admitted == 1
        assert hasher.admitted == 0
        assert await hasher.verify(None, "x") is False
    finally:
        hasher.close()


def test_the_bound_defaults_to_two_per_core() -> None:
    hasher = PasswordHasher(8, 1)
    try:
        assert hasher.concurrency == 2 * (os.cpu_count() or 1)
        assert hasher.queue == hasher.concurrency
    finally:
        hasher.close()
