"""Health, readiness and the API docs (/metrics is in metrics.py).

`/asyncapi.yaml` is the room socket's AsyncAPI document: `asyncapi.yaml` beside
this module, shipped in the wheel, the same bytes as docs/asyncapi.yaml (a
test holds them equal). `/asyncapi.json` is the same document as JSON,
converted once per process.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import text

from app.web.deps import ContextDep

router = APIRouter(tags=["operations"])
ASYNCAPI = Path(__file__).parent / "asyncapi.yaml"


@cache
def _asyncapi() -> bytes:
    return ASYNCAPI.read_bytes()


@cache
def _asyncapi_json() -> bytes:
    document = yaml.safe_load(_asyncapi())
    return json.dumps(document, ensure_ascii=False, indent=2).encode()


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database (and broker) answer",
    responses={503: {"description": "a dependency is unreachable"}},
)
async def readyz(ctx: ContextDep, request: Request) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(2):
            async with ctx.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception:  # any failure to reach the database means not ready
        checks["database"] = "unavailable"
    hub = getattr(request.app.state, "hub", None)
    if hub is not None:
        try:
            async with asyncio.timeout(2):
                checks["broker"] = "ok" if await hub.broker.ready() else "unavailable"
        except Exception:  # any failure to reach the broker means not ready
            checks["broker"] = "unavailable"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


def _inline_script_hashes(html: str) -> list[str]:
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in scripts
    ]


@router.get("/docs", include_in_schema=False)
async def docs(request: Request) -> HTMLResponse:
    page = get_swagger_ui_html(openapi_url="/openapi.json", title="Confide API")
    html = bytes(page.body).decode()
    cdn = "https://cdn.jsdelivr.net"
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src {cdn} " + " ".join(_inline_script_hashes(html)),
            f"style-src {cdn}",
            "img-src 'self' data: https://fastapi.tiangolo.com",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ]
    )
    headers: dict[str, Any] = {"Content-Security-Policy": csp}
    return HTMLResponse(html, headers=headers)


@router.get(
    "/asyncapi.yaml",
    summary="The room socket's AsyncAPI 3.0 document (its frames as JSON Schemas)",
    response_class=Response,
    responses={200: {"content": {"application/yaml": {}}}},
)
async def asyncapi() -> Response:
    return Response(_asyncapi(), media_type="application/yaml")


@router.get(
    "/asyncapi.json",
    summary="The room socket's AsyncAPI 3.0 document, as JSON",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
async def asyncapi_json() -> Response:
    return Response(_asyncapi_json(), media_type="application/json")
