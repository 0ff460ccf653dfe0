"""/docs (Swagger UI) and /redoc load everything from this server: no CDN, no other host."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest


class _References(HTMLParser):
    """Every URL a page makes the browser load: src and href attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "spec-url") and value:
                self.urls.append(value)


def _directives(csp: str) -> dict[str, list[str]]:
    return {p.split()[0]: p.split()[1:] for p in (x.strip() for x in csp.split(";")) if p}


@pytest.mark.parametrize(("page", "marker"), [("/docs", "swagger-ui"), ("/redoc", "<redoc")])
async def test_the_docs_pages_reference_this_server_only(
    client: httpx.AsyncClient, page: str, marker: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert marker in response.text
    references = _References()
    references.feed(response.text)
    assert references.urls
    for url in references.urls:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        answer = await client.get(url)
        assert answer.status_code == 200, url
        assert answer.content
    assert "://" not in re.sub(r"<!--.*?-->", "", response.text, flags=re.DOTALL)

    directives = _directives(response.headers["content-security-policy"])
    assert directives["default-src"] == ["'none'"]
    for name, sources in directives.items():
        for source in sources:
            assert "://" not in source, (name, source)
            assert source != "*", name
    assert [s for s in directives["script-src"] if not s.startswith("'sha256-")] == ["'self'"]
    assert directives["connect-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]


async def test_the_assets_are_the_installed_packages_files(client: httpx.AsyncClient) -> None:
    for name, kind, start in [
        ("swagger-ui-bundle.js", "text/javascript", b"/*! For license information"),
        ("swagger-ui.css", "text/css", b""),
        ("redoc.standalone.js", "text/javascript", b"/*! For license information"),
        ("favicon.png", "image/png", b"\x89PNG"),
    ]:
        response = await client.get(f"/docs/static/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith(kind)
        assert response.content.startswith(start)
        assert len(response.content) > 1000


@pytest.mark.parametrize(
    "name", ["nothing.js", "..%2F..%2Fcore%2Fpy.typed", "__init__.py", "%2e%2e", "LICENSE"]
)
async def test_nothing_else_is_served_from_the_docs_folder(
    client: httpx.AsyncClient, name: str
) -> None:
    response = await client.get(f"/docs/static/{name}")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
