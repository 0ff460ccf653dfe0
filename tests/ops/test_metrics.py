"""/metrics is private: behind a bearer token, or on a listener of its own, or not served.

And what it shows links no one: no id, no raw path, no address in any label,
and no counter of single domain acts: HTTP requests by route template, the relay's
series (tests/ops/test_relay_metrics.py) and the process's.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from app.core.config import Settings
from app.core.context import Context
from app.main import create_app
from tests.fixtures.processes import Backend, Server, free_port
from tests.ops.story import CLIENT_HOST, practice_on, run_story
from tests.ops.test_ops import assert_problem, serve

TOKEN = "metrics-token-" + "x7Qp2vLm9sKd4aZr"
UUID_LIKE = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)
FAMILIES = {"confide_http_requests", "confide_http_request_duration_seconds"}
RELAY = {
    "confide_relay_sockets_open",
    "confide_relay_rooms_live",
    "confide_relay_send_queue_max_frames",
    "confide_relay_send_queue_max_bytes",
    "confide_relay_send_queue_peak_frames",
    "confide_relay_frames_in",
    "confide_relay_frames_out",
    "confide_relay_bytes_in",
    "confide_relay_bytes_out",
    "confide_relay_deliveries",
    "confide_relay_closes",
    "confide_relay_refusals",
    "confide_relay_broker_seconds",
}

#: Gauges of the whole process, without labels.
GAUGES = {"confide_webhook_backlog", "confide_asyncio_tasks"}
#: The database pool's connections, by state.
POOL = "confide_db_pool_connections"


def app_for(ctx: Context, **settings: object) -> FastAPI:
    configured = Settings(
        data_dir=ctx.settings.data_dir,
        database_url=ctx.settings.database_url,
        **settings,  # type: ignore[arg-type]
    )
    return create_app(configured, context=ctx)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- on the main listener -------------------------------------------------------------


async def test_without_a_setting_metrics_are_not_served(ctx: Context) -> None:
    async with serve(app_for(ctx)) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert_problem(await client.get("/metrics"), 404, "not_found")
        assert_problem(await client.get("/metrics", headers=bearer(TOKEN)), 404, "not_found")
        assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]


async def test_the_token_opens_metrics_and_nothing_else_does(ctx: Context) -> None:
    async with serve(app_for(ctx, metrics_token=SecretStr(TOKEN))) as client:
        assert (await client.get("/healthz")).status_code == 200
        for headers in (
            {},
            bearer(TOKEN[:-1] + "y"),
            bearer(TOKEN[:-1]),
            bearer(""),
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": TOKEN},
        ):
            refused = await client.get("/metrics", headers=headers)
            assert_problem(refused, 401, "token_invalid")
            assert refused.headers["www-authenticate"] == "Bearer"
            assert "confide_http" not in refused.text
        allowed = await client.get("/metrics", headers=bearer(TOKEN))
        assert allowed.status_code == 200
        assert allowed.headers["content-type"].startswith("text/plain")
        assert 'route="/healthz"' in allowed.text


async def test_with_a_listener_of_its_own_the_main_one_has_no_metrics(ctx: Context) -> None:
    app = app_for(ctx, metrics_token=SecretStr(TOKEN), metrics_addr="127.0.0.1:9100")
    async with serve(app) as client:
        assert_problem(await client.get("/metrics", headers=bearer(TOKEN)), 404, "not_found")


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("metrics_token", "", None),
        ("metrics_token", "too-short", False),
        ("metrics_token", TOKEN, True),
        ("metrics_addr", "", None),
        ("metrics_addr", "10.0.0.5:9100", True),
        ("metrics_addr", "[::1]:9100", True),
        ("metrics_addr", "10.0.0.5", False),
        ("metrics_addr", "10.0.0.5:99999", False),
        ("metrics_addr", ":9100", False),
    ],
)
def test_metrics_settings_are_checked(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, accepted: bool | None
) -> None:
    monkeypatch.setenv(f"CONFIDE_{name.upper()}", value)
    if accepted is False:
        with pytest.raises(ValueError, match=name):
            Settings()
        return
    got = getattr(Settings(), name)
    if accepted is None:
        assert got is None
    else:
        assert (got.get_secret_value() if isinstance(got, SecretStr) else got) == value


# -- a real `confide serve` -------------------------------------------------------------


@pytest.mark.parametrize("with_token", [False, True], ids=["listener", "listener+token"])
def test_a_listener_of_its_own_serves_metrics(tmp_path: Path, with_token: bool) -> None:
    port = free_port()
    backend = Backend("sqlite", tmp_path / "data")
    env = {"CONFIDE_METRICS_ADDR": f"127.0.0.1:{port}"}
    if with_token:
        env["CONFIDE_METRICS_TOKEN"] = TOKEN
    server = Server(backend, tmp_path / "logs", backend.env(**env)).start()
    try:
        assert server.http.get("/v1/nowhere").status_code == 404
        assert_problem(server.http.get("/metrics", headers=bearer(TOKEN)), 404, "not_found")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as listener:
            headers = bearer(TOKEN) if with_token else {}
            if with_token:
                assert_problem(listener.get("/metrics"), 401, "token_invalid")
            scraped = listener.get("/metrics", headers=headers)
            assert scraped.status_code == 200, scraped.text
            assert 'route="/healthz"' in scraped.text  # counted on the main listener
            assert 'route="unmatched",status="404"' in scraped.text
            for path in ("/healthz", "/docs", "/openapi.json", "/v1/me", "/"):
                assert listener.get(path, headers=headers).status_code == 404, path
            assert "server" not in scraped.headers
    finally:
        server.stop()


async def test_a_scrape_after_a_session_shows_no_id(tmp_path: Path) -> None:
    backend = Backend("sqlite", tmp_path / "data")
    server = Server(backend, tmp_path / "logs", backend.env(CONFIDE_METRICS_TOKEN=TOKEN)).start()
    try:
        async with practice_on(server) as practice:
            story = await run_story(practice)
            await practice.http.delete("/v1/me", headers=practice.admin.auth)
            refused = await practice.http.get("/metrics")
            assert_problem(refused, 401, "token_invalid")
            scraped = await practice.http.get("/metrics", headers=bearer(TOKEN))
            assert scraped.status_code == 200
    finally:
        server.stop()
    text = scraped.text
    assert not UUID_LIKE.search(text), UUID_LIKE.search(text)
    for label, value in {**story.ids, **story.secrets}.items():
        assert value not in text, f"the {label} appears in /metrics"
    assert CLIENT_HOST not in text
    assert "127.0.0.1" not in text

    templates = set(create_app().openapi()["paths"]) | {"unmatched", "/metrics", "/docs"}
    families = list(text_string_to_metric_families(text))
    names = {family.name for family in families}
    # No counter of domain acts: HTTP requests, the relay, the webhook backlog, the process.
    assert {name for name in names if name.startswith("confide_")} == FAMILIES | RELAY | GAUGES | {
        POOL
    }
    assert {name.split("_")[0] for name in names} == {"confide", "process", "python"}
    # No `_created` series: the time a label set was first seen (the first erasure...).
    assert "_created" not in text
    routes = set()
    for family in families:
        if family.name in GAUGES:
            assert [sample.labels for sample in family.samples] == [{}]
            continue
        if family.name == POOL:
            states = {sample.labels["state"]: sample.value for sample in family.samples}
            assert set(states) == {"in_use", "idle"}
            assert all(value >= 0 for value in states.values())
            continue
        if family.name not in FAMILIES:
            continue  # tests/ops/test_relay_metrics.py checks the relay's
        for sample in family.samples:
            assert set(sample.labels) <= {"method", "route", "status", "le"}, sample
            assert sample.labels["method"] in {"GET", "POST", "PATCH", "DELETE", "other"}
            assert sample.labels.get("status", "200").isdigit()
            routes.add(sample.labels["route"])
    assert routes <= templates, routes - templates
    assert {"/v1/rooms/{room_id}", "/v1/rooms/{room_id}/token", "unmatched"} <= routes
