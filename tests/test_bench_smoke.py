"""The benchmarks (bench/) run end to end in a tiny configuration.

Against the real `confide serve` (PostgreSQL, the in-process broker, then
Redis with one and two instances, and `--workers 2` for room tokens) and the
baseline. Nothing here is timed:
it checks that every part of `python -m bench.run` completes and measures
something, so the benchmark does not rot between full runs.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bench import churn
from bench import load as loadgen
from bench import run as bench
from tests.fixtures.processes import run_async
from tests.fixtures.services import PG_HOST, PG_PORT, PG_USER, REDIS_URL, pg_dsn, unavailable


async def _services() -> None:
    try:
        conn = await asyncpg.connect(pg_dsn("postgres"), timeout=5)
        await conn.close()
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        unavailable("PostgreSQL", error)
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as error:
        unavailable("Redis", error)
    finally:
        await client.aclose()


def tiny(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--rooms=3",
        "--participants=3",
        "--window=2",
        "--rate=150",
        "--duration=0.5",
        "--warmup=0.2",
        "--idle-sockets=200",
        "--reuse-servers",
        "--token-concurrency=8",
        "--flood-clients=8",
        f"--pg-dsn=postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}",
        f"--redis-url={REDIS_URL}",
        f"--workdir={tmp_path}",
        f"--json={tmp_path / 'results.json'}",
        "--quiet",
        *extra,
    ]


def test_the_benchmark_runs_against_the_relay_and_the_baseline(tmp_path: Path) -> None:
    run_async(_services())
    results = bench.main(tiny(tmp_path))

    assert [(r.target, r.mode, r.broker, r.instances) for r in results.loads] == [
        ("baseline", "closed", "-", 1),
        ("relay", "closed", "memory", 1),
        ("baseline", "open", "-", 1),
        ("relay", "open", "memory", 1),
        ("relay", "closed", "redis", 1),
        ("relay", "open", "redis", 1),
        ("relay", "closed", "redis", 2),
        ("relay", "open", "redis", 2),
    ]
    for load in results.loads:
        assert load.sockets == 9, load.name
        assert load.sent > 0, load.name
        assert load.delivered > 0, load.name
        assert load.deliveries_per_s > 0, load.name
        assert load.server_cpu_s > 0, load.name
        assert load.deliveries_per_cpu_s > 0, load.name
        assert load.p50_ms is not None, load.name
        assert load.p99_ms is not None, load.name
        assert 0 < load.p50_ms <= load.p99_ms, load.name
        assert load.lost == 0, load.name
        assert load.errors == {}, load.name
        assert load.unexpected_closes == {}, load.name

    assert [i.target for i in results.idle] == ["relay", "baseline"]
    for idle in results.idle:
        assert idle.sockets == 200
        assert idle.rss_after_mb > 0
        assert idle.kb_per_socket > 0

    assert results.tokens is not None
    assert results.tokens.tokens > 200
    assert results.tokens.tokens_per_s > 0
    assert_workers_measured(results)

    assert results.floods is not None
    assert results.floods.logins
    assert results.floods.probes_idle > 0
    assert results.floods.probes_flood > 0
    assert len(results.targets) == 10
    assert all(isinstance(t["met"], bool) for t in results.targets)
    assert (tmp_path / "results.json").is_file()
    text = bench.report(results)
    assert "| relay, closed loop |" in text
    assert "--workers 2" in text


def assert_workers_measured(results: bench.Results) -> None:
    """One process and --workers 2, both on Redis, with the same requests."""
    one, several = results.tokens_one, results.tokens_workers
    assert one is not None
    assert several is not None
    assert (one.workers, several.workers) == (1, 2)
    assert one.broker == several.broker == "redis"
    assert one.tokens == several.tokens > 200
    assert one.concurrency == several.concurrency
    for measured in (one, several):
        assert measured.tokens_per_s > 0
        assert measured.server_util > 0


def test_only_measures_the_parts_named(tmp_path: Path) -> None:
    run_async(_services())
    results = bench.main(tiny(tmp_path, "--only=workers"))
    assert results.loads == []
    assert results.idle == []
    assert results.tokens is None
    assert_workers_measured(results)
    assert [t["target"] for t in results.targets] == [
        "room tokens/s with --workers 2 / one process >= 1.7 x"
    ]


@pytest.mark.parametrize("only", ["tokens,nothing", "", ","])
def test_only_refuses_an_unknown_part(only: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        bench.parse([f"--only={only}"])
    assert stopped.value.code == 2
    assert "--only" in capsys.readouterr().err


def test_parts_follow_only_profile_and_no_redis() -> None:
    assert bench.parse([]).parts == {"tokens", "idle", "inprocess", "redis", "workers", "floods"}
    assert bench.parse(["--profile"]).parts == set(bench.PARTS)
    assert bench.parse(["--only=redis,workers,tokens", "--no-redis"]).parts == {"tokens"}
    assert bench.parse(["--only=profile"]).parts == {"profile"}


@pytest.mark.parametrize(
    ("hist", "q", "expected"),
    [({}, 0.5, None), ({loadgen.bucket(2_000_000): 10}, 0.99, 2.0)],
)
def test_percentiles_come_from_the_log_histogram(
    hist: dict[int, int], q: float, expected: float | None
) -> None:
    value = loadgen.percentile_ms(hist, q)
    if expected is None:
        assert value is None
    else:
        assert value == pytest.approx(expected, rel=0.02)


def test_the_churn_scenario_runs_and_everything_comes_back(tmp_path: Path) -> None:
    """`python -m bench.churn` in seconds: joins happen, samples are read, counts return."""
    run_async(_services())
    results = churn.main(
        [
            "--rooms=3",
            "--period=2",
            "--minutes=0.1",
            "--warmup=0",
            "--sample=2",
            "--settle=1",
            "--counselors=1",
            "--clients=2",
            f"--pg-dsn=postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}",
            f"--redis-url={REDIS_URL}",
            f"--workdir={tmp_path}",
            f"--json={tmp_path / 'churn.json'}",
            "--quiet",
        ]
    )
    assert results.failures == {}
    assert results.joins >= 6
    assert results.messages_acked == results.joins
    assert results.samples
    assert max(s.sockets_open for s in results.samples) > 0
    returned = results.returned()
    assert set(returned) == set(churn.COUNTS)
    for name in ("rooms_live", "sockets_open", "pool_in_use"):
        assert returned[name][2] == 0, name
    assert returned["tasks"][2] <= returned["tasks"][0]
    assert returned["redis_channels"][2] == returned["redis_channels"][0] > 0
    assert returned["redis_connections"][2] == returned["redis_connections"][0] > 0
    # The pool's idle connections, and the audit chain's writer's own one.
    assert 0 < returned["pg_connections"][2] <= returned["pool_idle"][2] + 1
    assert results.rss_slope_kb_per_min is not None
    assert "| tasks |" in churn.report(results)


def test_the_rss_slope_is_a_least_squares_line() -> None:
    assert churn.slope_per_minute([(0.0, 100.0), (60.0, 110.0), (120.0, 120.0)]) == 10.0
    assert churn.slope_per_minute([(0.0, 5.0)]) is None
    assert churn.slope_per_minute([(10.0, 5.0), (10.0, 6.0)]) is None
