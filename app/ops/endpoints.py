"""Health, readiness and the AsyncAPI document (/metrics is in metrics.py, /docs in docs.py).

`/asyncapi.yaml` is the room socket's AsyncAPI document: `asyncapi.yaml` beside
this module, shipped in the wheel, the same bytes as docs/asyncapi.yaml (a
test holds them equal). `/asyncapi.json` is the same document as JSON,
converted once per process.
"""

from __future__ import annotations

import asyncio
import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
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


def _example(value: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"example": value}}}


@router.get(
    "/healthz",
    summary="The process is alive",
    responses={200: _example({"status": "ok"})},
)
async def healthz() -> dict[str, str]:
    """Answers 200 as long as the process runs; it checks no dependency (that is `/readyz`)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database (and broker) answer",
    responses={
        200: _example({"status": "ready", "checks": {"database": "ok", "broker": "ok"}}),
        503: {
            "description": "a dependency is unreachable",
            **_example(
                {"status": "unavailable", "checks": {"database": "ok", "broker": "unavailable"}}
            ),
        },
    },
)
async def readyz(ctx: ContextDep, request: Request) -> JSONResponse:
    """200 when the database and the broker answer within 2 seconds each, else 503 with the check
    that failed. Load balancers route by it.
    """
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


@router.get(
    "/asyncapi.yaml",
    summary="The room socket's AsyncAPI 3.0 document (its frames as JSON Schemas)",
    response_class=Response,
    responses={200: {"content": {"application/yaml": {}}}},
)
async def asyncapi() -> Response:
    """The frames of the room socket (`/v1/rooms/{room_id}/ws`), its close codes and both ways to
    authenticate, as an AsyncAPI 3.0 document in YAML.
    """
    return Response(_asyncapi(), media_type="application/yaml")


@router.get(
    "/asyncapi.json",
    summary="The room socket's AsyncAPI 3.0 document, as JSON",
    response_class=Response,
    responses={
        200: _example(
            {"asyncapi": "3.0.0", "info": {"title": "Confide room socket", "version": "1"}}
        )
    },
)
async def asyncapi_json() -> Response:
    """The same document as `/asyncapi.yaml`, converted to JSON (for tools that read JSON
    only).
    """
    return Response(_asyncapi_json(), media_type="application/json")
