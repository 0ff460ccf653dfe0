"""The API docs: Swagger UI at /docs and ReDoc at /redoc, with nothing from another host.

Their scripts and styles are the files of the installed `fastapi-offline`
package (Swagger UI's bundle and ReDoc's standalone build, ReDoc's with one
URL changed, see REDOC_LOGO), served
at /docs/static/<file>, so the docs work on a network that reaches no CDN.
Each page's Content-Security-Policy allows its own origin alone: its inline
scripts by hash, and nothing else from anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from app.core.errors import NotFound

router = APIRouter(include_in_schema=False)

STATIC = "/docs/static"
#: The files served, and their media types.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
TITLE = "Confide API"
OPENAPI_URL = "/openapi.json"


#: ReDoc's sidebar always shows its maker's logo, fetched from their CDN: it
#: gets an empty image instead (a transparent pixel), so the page asks no other host.
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
EMPTY_IMAGE = b"data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw=="


@cache
def asset(name: str) -> bytes:
    data = (resources.files("fastapi_offline") / "static" / name).read_bytes()
    if name == "redoc.standalone.js":
        data = data.replace(REDOC_LOGO, EMPTY_IMAGE)
    return data


def _hashes(html: str, tag: str) -> list[str]:
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in found
    ]


def _csp(html: str, *, inline_styles: bool, workers: bool) -> str:
    styles = "'unsafe-inline'" if inline_styles else " ".join(_hashes(html, "style"))
    directives = [
        "default-src 'none'",
        " ".join(["script-src 'self'", *_hashes(html, "script")]),
        f"style-src 'self' {styles}".rstrip(),
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
    if workers:
        directives.append("worker-src 'self' blob:")
    return "; ".join(directives)


@cache
def swagger_page() -> tuple[str, str]:
    html = bytes(
        get_swagger_ui_html(
            openapi_url=OPENAPI_URL,
            title=TITLE,
            swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC}/favicon.png",
        ).body
    ).decode()
    return html, _csp(html, inline_styles=False, workers=False)


@cache
def redoc_page() -> tuple[str, str]:
    html = bytes(
        get_redoc_html(
            openapi_url=OPENAPI_URL,
            title=TITLE,
            redoc_js_url=f"{STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{STATIC}/favicon.png",
            with_google_fonts=False,
        ).body
    ).decode()
    # ReDoc styles itself with styled-components, which writes <style> elements
    # at run time, and parses the document in a worker it starts from a blob.
    return html, _csp(html, inline_styles=True, workers=True)


@router.get("/docs")
async def docs() -> HTMLResponse:
    html, csp = swagger_page()
    return HTMLResponse(html, headers={"Content-Security-Policy": csp})


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    html, csp = redoc_page()
    return HTMLResponse(html, headers={"Content-Security-Policy": csp})


@router.get(STATIC + "/{name}")
async def static(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound()
    # The same bytes for everyone, no personal data: a browser may keep them a day.
    return Response(
        asset(name), media_type=media_type, headers={"Cache-Control": "public, max-age=86400"}
    )
