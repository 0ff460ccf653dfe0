"""Operations endpoints and the HTTP layer every route shares.

Health and readiness (also through a real database outage), metrics, the API
docs and their CSP, the OpenAPI document, problem details for the framework's
own errors, the body limit, security headers, CORS, and no 500 for any input.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.types import Receive, Scope, Send

from app.context import build_context
from app.core.clock import FrozenClock
from app.core.config import Settings
from app.core.context import Context
from app.core.db import create_engine
from app.main import create_app
from app.web.middleware import SecurityHeaders
from tests.conftest import empty_tables
from tests.fixtures.accounts import PASSWORD, register_client, unique_email
from tests.fixtures.services import PG_HOST, PG_PORT, PG_USER

PROBLEM_JSON = "application/problem+json"
MIB = 1024 * 1024
MARKER = "Sekrit-Marker-Passw0rd-7f3a"
T = TypeVar("T")


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith("/" + code)
    assert body["title"]
    assert isinstance(body["detail"], str)


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def can_log_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> bool:
    response = await client.post("/v1/auth/token", data={"username": email, "password": password})
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


# --- health and readiness ----------------------------------------------------


async def test_healthz_and_readyz_answer_ok(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}

    ready = await client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == "ok"
    assert set(body["checks"].values()) == {"ok"}


class TcpProxy:
    """127.0.0.1:<port> → PostgreSQL. `stop()` is an outage, `start()` the recovery.

    With `stall` set, new connections are accepted and never answered: a
    database that hangs rather than refuses.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.stall = False

    async def start(self) -> None:
        # Port 0 the first time; the same port again after an outage.
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.writers.add(writer)
        try:
            if self.stall:
                await reader.read()  # until the client gives up
                writer.transport.abort()
                return
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.transport.abort()
                return
            self.writers.add(upstream_writer)
            await asyncio.gather(
                self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
            )
        finally:
            self.tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()

    async def drop_connections(self) -> None:
        """Kill every live connection (both sides), as a network failure would."""
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        tasks = list(self.tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            assert not pending, "proxy connections did not end"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.drop_connections()
        await self.server.wait_closed()
        self.server = None


@pytest.fixture
async def pg_proxy() -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(PG_HOST, PG_PORT)
    await proxy.start()
    yield proxy
    if proxy.server is not None:
        await proxy.stop()


@pytest.fixture
async def proxied_client(
    pg_database: str, pg_proxy: TcpProxy, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[httpx.AsyncClient]:
    """The app on PostgreSQL through the proxy (its own pool, its own context)."""
    url = f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{pg_proxy.port}/{pg_database}"
    ctx = build_context(Settings(data_dir=tmp_path / "data", database_url=SecretStr(url)), clock)
    try:
        await empty_tables(ctx.engine)
        async with serve(create_app(context=ctx)) as client:
            yield client
    finally:
        await ctx.close()


async def test_readyz_follows_a_database_outage_without_a_restart(
    proxied_client: httpx.AsyncClient, pg_proxy: TcpProxy
) -> None:
    client = proxied_client
    assert (await client.get("/readyz")).status_code == 200
    # Warm the pool: several connections, all through the proxy.
    before = await asyncio.gather(*(register_client(client) for _ in range(3)))

    await pg_proxy.stop()
    loop = asyncio.get_running_loop()
    began = loop.time()
    down = await client.get("/readyz")
    assert down.status_code == 503, down.text
    assert down.json()["status"] == "unavailable"
    assert down.json()["checks"]["database"] == "unavailable"
    assert loop.time() - began < 3
    # Still down on a second look (nothing cached a stale "ok"); liveness unaffected.
    assert (await client.get("/readyz")).status_code == 503
    assert (await client.get("/healthz")).status_code == 200

    await pg_proxy.start()
    up = await client.get("/readyz")
    assert up.status_code == 200, up.text
    assert up.json()["checks"]["database"] == "ok"
    after = await register_client(client)
    assert (await client.get("/v1/me", headers=after.auth)).status_code == 200

    # Connections die under a listening server: pool_pre_ping replaces the
    # pooled ones, so the next real requests succeed on the first try.
    await pg_proxy.drop_connections()
    again = await asyncio.gather(*(register_client(client) for _ in range(3)))
    for user in [*before, after, *again]:
        me = await client.get("/v1/me", headers=user.auth)
        assert me.status_code == 200, me.text
        assert me.json()["email"] == user.email


async def test_readyz_gives_up_on_a_hanging_database_after_its_timeout(
    proxied_client: httpx.AsyncClient, pg_proxy: TcpProxy
) -> None:
    assert (await proxied_client.get("/readyz")).status_code == 200
    pg_proxy.stall = True
    await pg_proxy.drop_connections()
    loop = asyncio.get_running_loop()
    began = loop.time()
    down = await proxied_client.get("/readyz")
    elapsed = loop.time() - began
    assert down.status_code == 503, down.text
    assert down.json()["checks"]["database"] == "unavailable"
    assert 1.5 <= elapsed < 4, elapsed  # the 2 s bound, not the driver's 60 s
    assert (await proxied_client.get("/healthz")).status_code == 200

    pg_proxy.stall = False
    up = await proxied_client.get("/readyz")
    assert up.status_code == 200, up.text
    await register_client(proxied_client)


# --- metrics -----------------------------------------------------------------


def request_counts(text: str) -> dict[tuple[str, str, str], float]:
    counts: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "confide_http_requests":
            continue
        for sample in family.samples:
            if sample.name == "confide_http_requests_total":
                labels = sample.labels
                key = (labels["method"], labels["route"], labels["status"])
                counts[key] = sample.value
    return counts


METRICS_TOKEN = "ops-test-metrics-token-4f9c2a"
METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def with_metrics(ctx: Context) -> FastAPI:
    """The app with /metrics served (behind a token: see tests/ops/test_metrics.py)."""
    configured = Settings(
        data_dir=ctx.settings.data_dir,
        database_url=ctx.settings.database_url,
        metrics_token=SecretStr(METRICS_TOKEN),
    )
    return create_app(configured, context=ctx)


@pytest.fixture
async def metrics_client(ctx: Context) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(with_metrics(ctx)) as client:
        yield client


async def test_metrics_are_prometheus_text_labelled_by_route_template(
    metrics_client: httpx.AsyncClient,
) -> None:
    client = metrics_client
    user = await register_client(client)
    for _ in range(2):
        assert (await client.get("/v1/me", headers=user.auth)).status_code == 200
    assert (await client.get("/v1/me")).status_code == 401
    raw_id = str(uuid.uuid4())
    assert (await client.get(f"/v1/nonexistent/{raw_id}")).status_code == 404
    assert (await client.get(f"/v1/me?id={raw_id}", headers=user.auth)).status_code == 200

    response = await client.get("/metrics", headers=METRICS_AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE confide_http_requests_total counter" in text
    assert "confide_http_request_duration_seconds_bucket" in text
    counts = request_counts(text)
    assert counts[("GET", "/v1/me", "200")] == 3
    assert counts[("GET", "/v1/me", "401")] == 1
    assert counts[("POST", "/v1/accounts", "201")] == 1
    assert counts[("GET", "unmatched", "404")] == 1
    assert raw_id not in text
    assert raw_id.replace("-", "") not in text
    assert "nonexistent" not in text
    assert user.email not in text


async def test_metrics_label_a_parametrized_route_by_its_template(ctx: Context) -> None:
    app = with_metrics(ctx)

    @app.get("/v1/probe/{item_id}")
    async def probe(item_id: str) -> dict[str, str]:
        return {"seen": "yes"}

    async with serve(app) as client:
        raw_id = str(uuid.uuid4())
        assert (await client.get(f"/v1/probe/{raw_id}")).status_code == 200
        text = (await client.get("/metrics", headers=METRICS_AUTH)).text
    assert request_counts(text)[("GET", "/v1/probe/{item_id}", "200")] == 1
    assert raw_id not in text


# --- API docs and the OpenAPI document ----------------------------------------


class _InlineScripts(HTMLParser):
    """The text of every <script> without src, whatever its attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.inline: list[str] = []
        self.external: list[str] = []
        self._current: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            src = dict(attrs).get("src")
            if src:
                self.external.append(src)
            else:
                self._current = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._current is not None:
            self.inline.append("".join(self._current))
            self._current = None

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._current.append(data)


async def test_docs_page_csp_allows_exactly_its_inline_scripts(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "swagger-ui" in response.text.lower()

    csp = response.headers["content-security-policy"]
    directives = {
        part.split()[0]: part.split()[1:] for part in (p.strip() for p in csp.split(";")) if part
    }
    assert directives["default-src"] == ["'none'"]
    assert "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp
    assert directives["frame-ancestors"] == ["'none'"]

    scripts = _InlineScripts()
    scripts.feed(response.text)
    scripts.close()
    assert scripts.inline, "the page has its inline bootstrap script"
    script_src = directives["script-src"]
    hashes = {s for s in script_src if s.startswith("'sha256-")}
    expected = {
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in scripts.inline
    }
    assert hashes == expected
    # Swagger UI's own files come from this server (app/ops/docs.py), no other host.
    assert [s for s in script_src if not s.startswith("'sha256-")] == ["'self'"]
    for src in scripts.external:
        assert src.startswith("/docs/static/"), src


async def test_openapi_documents_problems_and_the_oauth2_password_flow(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    problem_ref = "#/components/schemas/Problem"
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["required"]) >= {"title", "status", "detail", "code"}

    register = spec["paths"]["/v1/accounts"]["post"]
    for status in ("409", "422"):
        content = register["responses"][status]["content"]
        # The media type actually sent carries the schema.
        assert content[PROBLEM_JSON]["schema"] == {"$ref": problem_ref}, status
    assert "email_taken" in register["responses"]["409"]["description"]

    token = spec["paths"]["/v1/auth/token"]["post"]
    assert "application/x-www-form-urlencoded" in token["requestBody"]["content"]
    assert token["responses"]["422"]["content"][PROBLEM_JSON]["schema"] == {"$ref": problem_ref}
    schemes = spec["components"]["securitySchemes"]
    password_flows = [
        scheme["flows"]["password"]
        for scheme in schemes.values()
        if scheme["type"] == "oauth2" and "password" in scheme.get("flows", {})
    ]
    assert password_flows == [{"scopes": {}, "tokenUrl": "/v1/auth/token"}]
    # The routes that need it say so.
    me = spec["paths"]["/v1/me"]["get"]
    assert any(set(requirement) & set(schemes) for requirement in me["security"])


# --- problem details for the framework's own errors ---------------------------


async def test_unknown_path_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v1/nonexistent/{uuid.uuid4()}")
    assert_problem(response, 404, "not_found")


async def test_wrong_method_is_a_405_problem(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/me/notices")
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"


@pytest.mark.parametrize(
    "raw",
    [
        f'{{"email": "a@example.org", "password": "{MARKER}", '.encode(),
        f'{{"email": "a@example.org", "password": "{MARKER}", "display_name": }}'.encode(),
        f'{{"email": 5, "password": "{MARKER}", "display_name": "{MARKER}"}}'.encode(),
        f'{{"email": "a@example.org", "password": "{MARKER}", "display_name": "X", '
        f'"role": "{MARKER}"}}'.encode(),
        f'["{MARKER}"]'.encode(),
        f'"{MARKER}'.encode(),
    ],
    ids=["truncated", "missing-value", "wrong-type", "extra-field", "array", "unterminated"],
)
async def test_malformed_bodies_are_422_problems_that_never_echo_input(
    client: httpx.AsyncClient, raw: bytes
) -> None:
    response = await client.post(
        "/v1/accounts", content=raw, headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "validation_error")
    assert MARKER not in response.text
    assert MARKER.lower() not in response.text.lower()
    for error in response.json()["errors"]:
        assert set(error) == {"loc", "msg", "type"}


# --- the request body limit --------------------------------------------------


def padded_registration(email: str, size: int) -> bytes:
    """A valid registration, padded with JSON whitespace to exactly `size` bytes."""
    body = json.dumps({"email": email, "password": PASSWORD, "display_name": "Big"}).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


async def chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_declared_body_over_the_limit_is_413_and_creates_nothing(
    client: httpx.AsyncClient,
) -> None:
    email = unique_email("big")
    response = await client.post(
        "/v1/accounts",
        content=padded_registration(email, MIB + 1),
        headers={"content-type": "application/json"},
    )
    assert response.request.headers["content-length"] == str(MIB + 1)
    assert_problem(response, 413, "payload_too_large")
    assert not await can_log_in(client, email)


async def test_streamed_body_over_the_limit_is_413_and_creates_nothing(
    client: httpx.AsyncClient,
) -> None:
    email = unique_email("chunked")
    response = await client.post(
        "/v1/accounts",
        content=chunks(padded_registration(email, MIB + 1)),
        headers={"content-type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_problem(response, 413, "payload_too_large")
    assert not await can_log_in(client, email)


async def test_streamed_form_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    body = b"username=a%40example.org&password=" + b"x" * MIB
    response = await client.post(
        "/v1/auth/token",
        content=chunks(body),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert_problem(response, 413, "payload_too_large")


@pytest.mark.parametrize("streamed", [False, True], ids=["declared", "streamed"])
async def test_body_of_exactly_the_limit_is_accepted(
    client: httpx.AsyncClient, streamed: bool
) -> None:
    email = unique_email("limit")
    body = padded_registration(email, MIB)
    content: bytes | AsyncIterator[bytes] = chunks(body) if streamed else body
    response = await client.post(
        "/v1/accounts", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 201, response.text
    assert await can_log_in(client, email)


# --- security headers --------------------------------------------------------


def assert_security_headers(response: httpx.Response) -> None:
    headers = response.headers
    assert headers["strict-transport-security"].startswith("max-age=")
    assert int(headers["strict-transport-security"].split(";")[0].split("=")[1]) >= 31536000
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    assert "server" not in headers


async def test_every_response_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    user = await register_client(client)
    responses = [
        await client.get("/healthz"),
        await client.get("/readyz"),
        await client.get("/metrics"),  # not served without a metrics setting
        await client.get("/v1/me", headers=user.auth),
        await client.get("/v1/me"),
        await client.get("/nothing/here"),
        await client.delete("/v1/me/notices"),
        await client.post(
            "/v1/accounts", content=b"{", headers={"content-type": "application/json"}
        ),
        await client.post(
            "/v1/accounts",
            content=b" " * (MIB + 1),
            headers={"content-type": "application/json"},
        ),
        await client.get("/docs"),
        await client.get("/openapi.json"),
    ]
    assert [r.status_code for r in responses] == [
        200, 200, 404, 200, 401, 404, 405, 422, 413, 200, 200,
    ]  # fmt: skip
    for response in responses:
        assert_security_headers(response)


async def test_a_server_header_from_inside_is_removed() -> None:
    async def noisy(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"server", b"uvicorn"), (b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"hi"})

    transport = httpx.ASGITransport(app=SecurityHeaders(noisy))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get("/")
    assert response.text == "hi"
    assert_security_headers(response)


# --- CORS --------------------------------------------------------------------

ALLOWED = "https://app.example.org"
EVIL = "https://evil.example.org"


async def test_cors_allows_exactly_the_configured_origins(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The deployment contract: comma-separated CONFIDE_ALLOWED_ORIGINS.
    monkeypatch.setenv("CONFIDE_ALLOWED_ORIGINS", f"{ALLOWED}, https://other.example.org")
    cors_settings = Settings(data_dir=ctx.settings.data_dir, database_url=ctx.settings.database_url)
    assert cors_settings.allowed_origins == [ALLOWED, "https://other.example.org"]

    async with serve(create_app(cors_settings, context=ctx)) as client:

        async def preflight(origin: str) -> httpx.Response:
            return await client.options(
                "/v1/me",
                headers={
                    "origin": origin,
                    "access-control-request-method": "GET",
                    "access-control-request-headers": "authorization,idempotency-key",
                },
            )

        allowed = await preflight(ALLOWED)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ALLOWED
        assert "GET" in allowed.headers["access-control-allow-methods"]
        allowed_headers = allowed.headers["access-control-allow-headers"].lower()
        # A browser app may retry its writes safely (Idempotency-Key).
        assert {"authorization", "idempotency-key"} <= {
            h.strip() for h in allowed_headers.split(",")
        }
        assert "access-control-allow-credentials" not in allowed.headers

        for origin in (EVIL, "http://app.example.org", ALLOWED + ".evil.example", "null"):
            refused = await preflight(origin)
            assert refused.status_code >= 400, origin
            assert "access-control-allow-origin" not in refused.headers, origin

        simple = await client.get("/healthz", headers={"origin": ALLOWED})
        assert simple.headers["access-control-allow-origin"] == ALLOWED
        # A browser app may read the next page's cursor, when to try again, and
        # whether an answer is a replay of its retried write.
        exposed = simple.headers["access-control-expose-headers"].lower().split(",")
        wanted = {"link", "x-next-cursor", "retry-after", "idempotent-replayed"}
        assert wanted <= {h.strip() for h in exposed}
        foreign = await client.get("/healthz", headers={"origin": EVIL})
        assert foreign.status_code == 200
        assert "access-control-allow-origin" not in foreign.headers


async def test_without_configured_origins_no_origin_is_allowed(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/v1/me", headers={"origin": ALLOWED, "access-control-request-method": "GET"}
    )
    assert "access-control-allow-origin" not in response.headers


# --- no input causes a 500 ---------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"9" * 5000,
        b'{"email": ' + b"9" * 5000 + b"}",
        b'{"refresh_token": 1e999999}',
        b"[" * 200_000,
        b'{"a":' * 100_000,
        b"NaN",
        b'{"email": NaN, "password": Infinity, "display_name": -Infinity}',
        b"\xff\xfe\x00{",
        b'{"refresh_token": "\\ud800"}',
        b'{"\\udfff": "x"}',
        b'{"refresh_token": "a", "refresh_token": "b"}',
        b"",
    ],
    ids=[
        "huge-int",
        "huge-int-field",
        "huge-float",
        "deep-arrays",
        "deep-objects",
        "nan",
        "non-finite-fields",
        "bad-utf8",
        "surrogate-value",
        "surrogate-key",
        "duplicate-key",
        "empty",
    ],
)
@pytest.mark.parametrize("path", ["/v1/accounts", "/v1/auth/refresh"])
async def test_hostile_json_bodies_get_a_problem_not_a_500(
    client: httpx.AsyncClient, path: str, raw: bytes
) -> None:
    response = await client.post(path, content=raw, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == PROBLEM_JSON


_ODD_CHARACTERS = st.sampled_from(["\x00", "\ud800", "\udfff", "\ufeff", "\u202e", "é", "💥"])
_TEXT = st.text(st.characters() | _ODD_CHARACTERS, max_size=300)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=10**400)
    | st.floats()
    | _TEXT
    | st.emails()
)
_JSON = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=10,
)
_FIELDS = ("email", "password", "display_name", "refresh_token", "role")
# Bodies near the real shapes reach the validators, the services and the database.
_SHAPED = st.fixed_dictionaries({}, optional=dict.fromkeys(_FIELDS, _TEXT | st.emails() | _JSON))
_REGISTRATION = st.fixed_dictionaries(
    {
        "email": st.emails() | _TEXT,
        "password": st.just(PASSWORD) | _TEXT.map(PASSWORD.__add__) | _TEXT,
        "display_name": st.text(min_size=1, max_size=30) | _TEXT,
    }
)
_BODIES = (_REGISTRATION | _SHAPED | _JSON).map(
    lambda value: json.dumps(value).encode()
) | st.binary(max_size=64)


class LoopThread:
    """An event loop of its own in a thread, for a sync test to drive the app with."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> LoopThread:
        self.thread.start()
        return self

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def __exit__(self, *_: object) -> None:
        self.run(self.loop.shutdown_asyncgens())
        self.run(self.loop.shutdown_default_executor())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


async def _truncate(url: str) -> None:
    engine = create_engine(url)
    try:
        await empty_tables(engine)
    finally:
        await engine.dispose()


def test_no_json_body_causes_a_500(tmp_path: Path, database_url: str) -> None:
    # Hypothesis drives a sync function; the app runs on a loop in another
    # thread, its context built by its own lifespan as in production.
    app_settings = Settings(data_dir=tmp_path / "data", database_url=SecretStr(database_url))
    with LoopThread() as loop:
        loop.run(_truncate(database_url))
        stack = contextlib.AsyncExitStack()
        http = loop.run(stack.enter_async_context(serve(create_app(app_settings))))
        try:

            @settings(max_examples=150, deadline=None)
            @given(path=st.sampled_from(["/v1/accounts", "/v1/auth/refresh"]), body=_BODIES)
            def check(path: str, body: bytes) -> None:
                response = loop.run(
                    http.post(path, content=body, headers={"content-type": "application/json"})
                )
                assert response.status_code < 500, (body, response.text)
                if response.status_code >= 400:
                    assert response.headers["content-type"] == PROBLEM_JSON, response.text
                    assert response.json()["status"] == response.status_code

            check()
        finally:
            loop.run(stack.aclose())


async def test_made_up_methods_do_not_mint_metric_series(
    metrics_client: httpx.AsyncClient,
) -> None:
    client = metrics_client
    response = await client.request("X0Y", "/healthz")
    assert response.status_code == 405
    text = (await client.get("/metrics", headers=METRICS_AUTH)).text
    assert "X0Y" not in text
    assert 'method="other"' in text
