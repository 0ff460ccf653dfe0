"""The reference web client, served by the server itself at `/app/`.

Only when `CONFIDE_WEB_CLIENT` is on (by default in development, not in
production). The files come from `static/` beside this module (the web
client's build writes them there; they ship in the wheel). `/app` redirects
to `/app/`, which is `index.html`; `/app/<file>` is that file; anything else
under `/app/` (a folder, a missing file, a path that leaves the folder) is
404, never a listing.

Every answer carries a strict Content-Security-Policy: scripts and styles
from this origin only, no inline code, no framing, no forms, and sockets to
this same host only (`connect-src 'self'` and the host's `ws:`/`wss:`
origin: the socket check accepts the server's own origin, see
`app.relay.protocol.same_origin`); camera and microphone for this origin
only. `index.html` is `no-cache` (always revalidated, so a new build is
picked up); the other files keep the API's `no-store`.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).parent / "static"
PREFIX = "/app"
PERMISSIONS = "camera=(self), microphone=(self), display-capture=(self), geolocation=()"
#: A Host header that may be written into the policy as it is; anything else is left out.
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?$")


def content_security_policy(scheme: str, host: str | None) -> str:
    """The policy of every web client answer, for a request to `host` over `scheme`."""
    connect = "connect-src 'self'"
    if host and _HOST.match(host):
        socket_scheme = "wss" if scheme == "https" else "ws"
        connect += f" {socket_scheme}://{host}"
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            "media-src 'self' blob: mediastream:",
            connect,
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


class WebClientFiles(StaticFiles):
    """The static folder: files only (no listing), with the web client's headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        response.headers["content-security-policy"] = content_security_policy(
            scope.get("scheme", "http"), headers.get("host")
        )
        response.headers["x-content-type-options"] = "nosniff"
        response.headers["referrer-policy"] = "no-referrer"
        # A session is a call: this origin's pages may ask for the camera and the
        # microphone (the API's answers allow neither, nor does any frame).
        response.headers["permissions-policy"] = PERMISSIONS
        if path in (".", "", "index.html"):
            response.headers["cache-control"] = "no-cache"
        return response


def install(app: FastAPI) -> None:
    """Serve the web client at /app/."""
    router = APIRouter()

    @router.get(PREFIX, include_in_schema=False)
    async def to_the_app() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=308)

    app.include_router(router)
    app.mount(PREFIX, WebClientFiles(directory=STATIC, html=True), name="webclient")
