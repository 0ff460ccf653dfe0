"""The OpenAPI document describes each duty endpoint with its errors and an example."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

DUTIES = [
    ("post", "/v1/accounts/{account_id}/disclosures"),
    ("get", "/v1/me/disclosures"),
    ("post", "/v1/incidents"),
    ("get", "/v1/incidents"),
    ("get", "/v1/incidents/{incident_id}"),
    ("patch", "/v1/incidents/{incident_id}"),
    ("post", "/v1/incidents/{incident_id}/notify"),
    ("get", "/v1/me/notices"),
    ("get", "/v1/me/access-log"),
    ("get", "/v1/me/export"),
    ("delete", "/v1/me"),
]


def has_example(node: Any, spec: dict[str, Any], seen: set[str]) -> bool:
    if isinstance(node, dict):
        if "examples" in node or "example" in node:
            return True
        ref = node.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            seen.add(ref)
            target: Any = spec
            for part in ref.removeprefix("#/").split("/"):
                target = target[part]
            if has_example(target, spec, seen):
                return True
        return any(has_example(value, spec, seen) for value in node.values())
    if isinstance(node, list):
        return any(has_example(value, spec, seen) for value in node)
    return False


@pytest.mark.parametrize(("method", "path"), DUTIES)
async def test_each_duty_endpoint_has_errors_and_an_example(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"][path][method]
    assert operation.get("summary") or operation.get("description")
    errors = [code for code in operation["responses"] if code.startswith(("4", "5"))]
    assert "401" in errors or path == "/v1/accounts/{account_id}/disclosures"
    assert errors
    for code in errors:
        content = operation["responses"][code].get("content", {})
        assert "application/problem+json" in content, (path, code)
    if method == "delete":
        return  # 204: nothing to exemplify beyond its errors
    documented = {key: operation[key] for key in ("requestBody", "responses") if key in operation}
    assert has_example(documented, spec, set()), f"{method} {path} has no example"
