"""Every example in the OpenAPI document fits its schema (jsonschema, formats checked),
and every operation carries what a reader needs: a description, its security, uuid ids,
an example of its answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from app.core.config import Settings
from app.main import create_app

METHODS = ("get", "put", "post", "delete", "patch")
BASE = "urn:confide:openapi"


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data = tmp_path_factory.mktemp("openapi") / "data"
    return create_app(Settings(data_dir=data)).openapi()


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def examples(node: Any, pointer: str = "") -> Iterator[tuple[str, str, Any]]:
    """(where the example is, the pointer of the schema it must fit, the example)."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from examples(item, f"{pointer}/{i}")
        return
    if not isinstance(node, dict):
        return
    is_schema = any(k in node for k in ("type", "properties", "anyOf", "$ref", "items", "enum"))
    if is_schema and isinstance(node.get("examples"), list):
        for i, value in enumerate(node["examples"]):
            yield f"{pointer}/examples/{i}", pointer, value
    if "schema" in node and isinstance(node["schema"], dict):  # a media type or a parameter
        if "example" in node:
            yield f"{pointer}/example", f"{pointer}/schema", node["example"]
        if isinstance(node.get("examples"), dict):
            for name, item in node["examples"].items():
                if "value" in item:
                    where = f"{pointer}/examples/{_escape(name)}/value"
                    yield where, f"{pointer}/schema", item["value"]
    for key, value in node.items():
        if key in ("examples", "example") and is_schema:
            continue
        yield from examples(value, f"{pointer}/{_escape(key)}")


def validator_for(document: dict[str, Any], pointer: str) -> Draft202012Validator:
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(BASE, resource)
    return Draft202012Validator(
        {"$ref": f"{BASE}#{pointer}"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def test_every_example_fits_its_schema(document: dict[str, Any]) -> None:
    found = list(examples(document))
    assert len(found) > 20
    wrong = []
    for where, schema, value in found:
        errors = [e.message for e in validator_for(document, schema).iter_errors(value)]
        if errors:
            wrong.append((where, errors))
    assert not wrong


def test_a_wrong_example_is_found(document: dict[str, Any]) -> None:
    schema = "/components/schemas/IncidentOut"
    example = dict(document["components"]["schemas"]["IncidentOut"]["examples"][0])
    assert not list(validator_for(document, schema).iter_errors(example))
    for broken in ({**example, "severity": "apocalyptic"}, {**example, "overdue": "no"}):
        assert list(validator_for(document, schema).iter_errors(broken)), broken
    missing = dict(example)
    del missing["notified_at"]
    assert list(validator_for(document, schema).iter_errors(missing))


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def test_every_operation_has_a_description_and_its_security(document: dict[str, Any]) -> None:
    public = set()
    for method, path, operation in operations(document):
        assert operation.get("description", "").strip(), f"{method} {path}"
        assert "security" in operation, f"{method} {path}"
        if operation["security"] == []:
            public.add(f"{method} {path}")
    assert public == {
        "get /healthz",
        "get /readyz",
        "get /asyncapi.yaml",
        "get /asyncapi.json",
        "get /.well-known/jwks.json",
        "post /v1/auth/token",
        "post /v1/auth/refresh",
        "post /v1/auth/mfa",
        "post /v1/auth/mfa/webauthn/options",
        "post /v1/auth/password-reset",
        "post /v1/accounts",
        "get /v1/consent-documents",
    }


def test_path_ids_are_uuids(document: dict[str, Any]) -> None:
    seen = 0
    for method, path, operation in operations(document):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                seen += 1
                assert parameter["schema"] == {"type": "string", "format": "uuid"} | {
                    k: v for k, v in parameter["schema"].items() if k == "title"
                }, (method, path, parameter)
    assert seen > 20


def _has_example(node: Any, document: dict[str, Any], seen: set[str]) -> bool:
    if isinstance(node, dict):
        if "example" in node or "examples" in node:
            return True
        ref = node.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            seen.add(ref)
            target: Any = document
            for part in ref.removeprefix("#/").split("/"):
                target = target[part]
            return _has_example(target, document, seen)
        return False
    return False


def test_every_json_answer_has_an_example(document: dict[str, Any]) -> None:
    missing = []
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if not status.startswith("2"):
                continue
            media = response.get("content", {}).get("application/json")
            if media is None:
                continue
            schema = media.get("schema", {})
            target = schema.get("items", schema) if schema.get("type") == "array" else schema
            if not (_has_example(media, document, set()) or _has_example(target, document, set())):
                missing.append(f"{method} {path} {status}")
    assert not missing


def test_the_document_links_to_the_asyncapi_document(document: dict[str, Any]) -> None:
    assert document["externalDocs"]["url"] == "/asyncapi.yaml"
    assert "(/asyncapi.yaml)" in document["info"]["description"]
    assert document["info"]["license"] == {"name": "Apache-2.0", "identifier": "Apache-2.0"}
    assert document["servers"]


def test_the_document_is_the_same_path_for_every_reader(tmp_path: Path) -> None:
    """Built twice, the document is the same: refining it does not pile up."""
    app = create_app(Settings(data_dir=tmp_path / "data"))
    first = app.openapi()
    assert app.openapi() is first
    assert first == create_app(Settings(data_dir=tmp_path / "data2")).openapi()


PAGED = [
    "/v1/rooms",
    "/v1/rooms/{room_id}/invitations",
    "/v1/me/invitations",
    "/v1/devices",
    "/v1/me/consents",
    "/v1/me/key-changes",
    "/v1/me/disclosures",
    "/v1/incidents",
    "/v1/me/notices",
    "/v1/me/access-log",
    "/v1/admin/audit",
    "/v1/admin/webhooks",
    "/v1/admin/webhooks/{webhook_id}/deliveries",
    "/v1/me/logins",
    "/v1/admin/accounts",
    "/v1/me/wards",
    "/v1/me/rights-requests",
    "/v1/admin/rights-requests",
]


def test_every_list_that_grows_documents_its_pagination(document: dict[str, Any]) -> None:
    for path in PAGED:
        operation = document["paths"][path]["get"]
        names = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
        assert {"limit", "cursor"} <= names, path
        assert set(operation["responses"]["200"]["headers"]) == {"X-Next-Cursor", "Link"}, path
        assert "invalid_cursor" in operation["responses"]["422"]["description"], path
    unpaged = [
        (method, path)
        for method, path, operation in operations(document)
        if method == "get"
        and path not in PAGED
        and operation["responses"]["200"]
        .get("content", {})
        .get("application/json", {})
        .get("schema", {})
        .get("type")
        == "array"
    ]
    # The consent documents: one current version per kind, a list that does not grow;
    # a room's check-ins: one per client of the room, at most its max_participants.
    assert unpaged == [("get", "/v1/consent-documents"), ("get", "/v1/rooms/{room_id}/checkins")]
