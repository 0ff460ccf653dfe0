"""The reference web client at /app/, served by the server itself with strict headers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.config import Settings
from app.core.context import Context
from app.main import create_app
from app.webclient.endpoints import STATIC, content_security_policy
from tests.fixtures.server import serve


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return settings.model_copy(update={"web_client": getattr(request, "param", None)})


@pytest.fixture
async def http(ctx: Context) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(context=ctx)) as base, httpx.AsyncClient(base_url=base) as http:
        yield http


def expected_csp(host: str) -> str:
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"media-src 'self' blob: mediastream:; connect-src 'self' ws://{host}; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


async def test_the_app_is_served_with_a_strict_policy(http: httpx.AsyncClient) -> None:
    host = str(http.base_url).removeprefix("http://").rstrip("/")
    redirect = await http.get("/app")
    assert redirect.status_code == 308
    assert redirect.headers["location"] == "/app/"

    page = await http.get("/app/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.content == (STATIC / "index.html").read_bytes()
    assert "<h1>" in page.text
    assert "<noscript>" in page.text
    assert page.headers["content-security-policy"] == expected_csp(host)
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["permissions-policy"] == (
        "camera=(self), microphone=(self), display-capture=(self), geolocation=()"
    )
    # The API's answers still allow no camera.
    assert "camera=()" in (await http.get("/healthz")).headers["permissions-policy"]
    assert (await http.get("/app/index.html")).headers["cache-control"] == "no-cache"

    for name, kind in (("app.js", "javascript"), ("app.css", "text/css")):
        got = await http.get(f"/app/{name}")
        assert got.status_code == 200, name
        assert kind in got.headers["content-type"]
        assert got.content == (STATIC / name).read_bytes()
        assert got.headers["content-security-policy"] == expected_csp(host)
        assert got.headers["x-content-type-options"] == "nosniff"
        assert got.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize(
    "path",
    [
        "/app/missing.js",
        "/app/../main.py",
        "/app/%2e%2e/main.py",
        "/app/..%2fmain.py",
        "/app/%2e%2e/%2e%2e/pyproject.toml",
        "/app/static/",
    ],
)
async def test_nothing_else_is_served_and_no_folder_is_listed(
    http: httpx.AsyncClient, path: str
) -> None:
    response = await http.get(path)
    assert response.status_code == 404, (path, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


async def test_the_app_is_read_only(http: httpx.AsyncClient) -> None:
    response = await http.post("/app/", content=b"x")
    assert response.status_code == 405
    assert response.json()["code"]


@pytest.mark.parametrize("settings", [False], indirect=True)
async def test_when_off_the_app_is_404(http: httpx.AsyncClient) -> None:
    for path in ("/app/", "/app/app.js", "/app/index.html"):
        response = await http.get(path)
        assert response.status_code == 404, path
        assert "<h1>" not in response.text
    assert (await http.get("/healthz")).status_code == 200


def test_on_by_default_in_development_off_in_production() -> None:
    def production(web_client: bool | None = None) -> Settings:
        return Settings(
            env="production",
            password_memory_kib=19_456,
            password_time_cost=2,
            web_client=web_client,
        )

    assert Settings().serves_web_client
    assert not production().serves_web_client
    assert production(web_client=True).serves_web_client
    assert not Settings(web_client=False).serves_web_client
    assert Settings(web_client="").serves_web_client


@given(host=st.from_regex(r"[a-z0-9.-]{1,40}(:[0-9]{1,5})?", fullmatch=True), tls=st.booleans())
def test_the_policy_names_the_hosts_socket_origin(host: str, tls: bool) -> None:
    policy = content_security_policy("https" if tls else "http", host)
    assert f"connect-src 'self' {'wss' if tls else 'ws'}://{host};" in policy
    assert policy.startswith("default-src 'none'; ")


@given(host=st.text(max_size=60))
def test_a_host_header_never_writes_into_the_policy_beyond_one_origin(host: str) -> None:
    policy = content_security_policy("http", host)
    directives = [d.split(" ", 1)[0] for d in policy.split("; ")]
    assert directives == [
        "default-src",
        "script-src",
        "style-src",
        "img-src",
        "media-src",
        "connect-src",
        "frame-ancestors",
        "base-uri",
        "form-action",
    ]
    assert "\r" not in policy
    assert "\n" not in policy
    connect = next(d for d in policy.split("; ") if d.startswith("connect-src"))
    assert connect in ("connect-src 'self'", f"connect-src 'self' ws://{host}")
    assert len(connect.split(" ")) <= 3
