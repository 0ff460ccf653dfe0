"""The OpenAPI document: what FastAPI generates, plus what a linter and a reader expect.

FastAPI writes the operations from the routes and their models; this adds
what a route cannot say about itself, for every operation alike:
- `security: []` on an operation without a bearer dependency (it is public);
- path parameters are ids, random UUIDs (`format: uuid`);
- the 431 every request can get (a request head over 16 KiB), and the 408
  (a request sent too slowly);
- operation ids `<tag>_<function name>`;
- the `null`s of a model's examples, which FastAPI drops (it writes the
  document without any null), so that each example still fits its schema.
`redocly lint` with its recommended rules passes on the result (tests/ops).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.core.errors import PROBLEM_JSON, HeadersTooLarge, RequestTimeout

ASYNCAPI_URL = "/asyncapi.yaml"
LICENSE = {"name": "Apache-2.0", "identifier": "Apache-2.0"}
SERVERS = [{"url": "/", "description": "This server (the one that serves this document)"}]
EXTERNAL_DOCS = {
    "description": "The room socket (WebSocket), as an AsyncAPI 3.0 document",
    "url": ASYNCAPI_URL,
}
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def operation_id(route: APIRoute) -> str:
    """`rooms_list_mine`: the route's first tag, then its function's name."""
    tag = str(route.tags[0]) if route.tags else "confide"
    return f"{tag}_{route.name}"


def _nullable(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "null" or any(
        option.get("type") == "null" for option in schema.get("anyOf", [])
    )


def _resolve(schema: dict[str, Any], models: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        return dict(models.get(ref.rsplit("/", 1)[-1], {}))
    return schema


def _restore_nulls(value: Any, schema: dict[str, Any], models: dict[str, Any]) -> None:
    """Put back, in `value` and what it holds, each required property that may be null."""
    schema = _resolve(schema, models)
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            _restore_nulls(value, option, models)
    if isinstance(value, dict) and "properties" in schema:
        properties = schema["properties"]
        for name in schema.get("required", []):
            if name not in value and _nullable(_resolve(properties.get(name, {}), models)):
                value[name] = None
        for name, item in value.items():
            if name in properties:
                _restore_nulls(item, properties[name], models)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _restore_nulls(item, schema["items"], models)


def refine(schema: dict[str, Any]) -> dict[str, Any]:
    """Complete a document FastAPI generated (in place; returned for convenience)."""
    # A relative URL, which FastAPI's own model of the document refuses.
    schema["externalDocs"] = EXTERNAL_DOCS
    components = schema.setdefault("components", {})
    models = components.get("schemas", {})
    for model in models.values():
        for example in model.get("examples", []):
            _restore_nulls(example, model, models)
    for path_item in schema.get("paths", {}).values():
        for method in _METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            operation.setdefault("security", [])
            operation["responses"].setdefault(
                "431",
                {
                    "description": f"{HeadersTooLarge.code}: the request's head is over 16 KiB",
                    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                },
            )
            operation["responses"].setdefault(
                "408",
                {
                    "description": f"{RequestTimeout.code}: the request came too slowly "
                    "(its head, or its body); the connection is closed",
                    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                },
            )
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter["schema"].get("type") == "string":
                    parameter["schema"]["format"] = "uuid"
    return schema


def install(app: FastAPI) -> None:
    """Serve the refined document at /openapi.json (built once, on first use)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = refine(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
