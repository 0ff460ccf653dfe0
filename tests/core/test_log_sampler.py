"""Lines about refusals are sampled, so a flood of them cannot flood the log.

The sampler's properties (Hypothesis, with a clock the test moves), and the
two places it is used: the access line of a REST 401 and the lines of a
refused room socket. The metrics still count every refusal.
"""

from __future__ import annotations

import logging
from collections import Counter

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.clock import FrozenClock
from app.core.context import Context
from app.core.logging import Sampler
from app.main import create_app

FIRST = 3
INTERVAL = 10.0

#: A run of lines: (kind, seconds the clock moves before the line).
events = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(min_value=0, max_value=15)),
    max_size=200,
)


class Moving:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now


@given(events)
def test_at_most_first_lines_per_interval_and_every_line_is_accounted_for(
    run: list[tuple[str, float]],
) -> None:
    clock = Moving()
    sampler = Sampler(clock.time, first=FIRST, interval_s=INTERVAL)
    written: dict[str, list[float]] = {}
    reported: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for kind, step in run:
        clock.now += step
        seen[kind] += 1
        suppressed = sampler.admit(kind)
        if suppressed is not None:
            written.setdefault(kind, []).append(clock.now)
            reported[kind] += suppressed
    for kind, count in seen.items():
        times = written.get(kind, [])
        # Nothing is lost from the count: written, reported as left out, or pending.
        assert len(times) + reported[kind] + sampler.pending(kind) == count
        # FIRST lines an interval (one starts with the first line after the last
        # ended): never more than twice that within any INTERVAL seconds.
        for i, start in enumerate(times):
            assert sum(1 for t in times[i:] if t < start + INTERVAL) <= 2 * FIRST
        # The first line of a kind is always written.
        assert times


@given(st.integers(min_value=1, max_value=500))
def test_a_burst_at_one_instant_writes_first_lines_and_the_next_interval_reports_the_rest(
    burst: int,
) -> None:
    clock = Moving()
    sampler = Sampler(clock.time, first=FIRST, interval_s=INTERVAL)
    answers = [sampler.admit("k") for _ in range(burst)]
    assert answers[: min(burst, FIRST)] == [0] * min(burst, FIRST)
    assert answers[FIRST:] == [None] * max(0, burst - FIRST)
    clock.now += INTERVAL
    assert sampler.admit("k") == max(0, burst - FIRST)
    assert sampler.pending("k") == 0


def test_a_clock_that_goes_back_starts_a_new_interval() -> None:
    clock = Moving()
    sampler = Sampler(clock.time, first=1, interval_s=INTERVAL)
    assert sampler.admit("k") == 0
    assert sampler.admit("k") is None
    clock.now -= 5
    assert sampler.admit("k") == 1


def test_kinds_are_bounded() -> None:
    sampler = Sampler(Moving().time, first=1, max_kinds=4)
    for n in range(100):
        sampler.admit(f"kind-{n}")
    assert len(sampler._kinds) == 4


@pytest.mark.parametrize("bad", [{"first": 0}, {"interval_s": 0.0}, {"max_kinds": 0}])
def test_bad_bounds_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="required"):
        Sampler(Moving().time, **bad)  # type: ignore[arg-type]


@pytest.fixture
def dialect() -> str:
    return "sqlite"  # the log's, not the database's


async def test_a_flood_of_401s_writes_a_sampled_log_and_counts_every_one(
    ctx: Context, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    flood = 200
    app = create_app(context=ctx)
    bad = {"Authorization": "Bearer garbage"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            with caplog.at_level(logging.INFO, logger="confide.access"):
                for _ in range(flood):
                    assert (await client.get("/v1/me", headers=bad)).status_code == 401
                clock.advance(60)
                assert (await client.get("/v1/me", headers=bad)).status_code == 401
    lines = [
        r for r in caplog.records if r.name == "confide.access" and getattr(r, "status", 0) == 401
    ]
    first = Sampler(clock.time).first
    assert len(lines) == first + 1
    assert getattr(lines[-1], "suppressed", None) == flood - first
    counted = app.state.metrics.registry.get_sample_value(
        "confide_http_requests_total", {"method": "GET", "route": "/v1/me", "status": "401"}
    )
    assert counted == flood + 1
