"""The container image and the compose file agree with the settings the app reads."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.core.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

REQUIRED_FROM_ENVIRONMENT = ("CONFIDE_MASTER_KEYS", "CONFIDE_INDEX_KEY", "POSTGRES_PASSWORD")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the `- NAME=value` form
        return dict(str(item).partition("=")[::2] for item in env)
    return {str(name): "" if value is None else str(value) for name, value in env.items()}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation line"
    pairs = []
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def exec_form(arguments: str) -> list[str]:
    if arguments.startswith("["):
        value = json.loads(arguments)
        assert isinstance(value, list)
        return [str(part) for part in value]
    return shlex.split(arguments)


def test_compose_services(services: dict[str, Any]) -> None:
    assert {"confide", "postgres", "redis"} <= set(services)
    assert str(services["postgres"]["image"]).startswith("postgres:16")
    assert str(services["redis"]["image"]).startswith("redis:7")
    assert services["confide"].get("build") is not None


@pytest.mark.parametrize(
    ("service", "probe"), [("postgres", "pg_isready"), ("redis", "redis-cli ping")]
)
def test_dependencies_have_healthchecks(services: dict[str, Any], service: str, probe: str) -> None:
    test = services[service]["healthcheck"]["test"]
    command = " ".join(test) if isinstance(test, list) else str(test)
    assert probe in command


def test_confide_waits_for_healthy_dependencies(services: dict[str, Any]) -> None:
    depends_on = services["confide"]["depends_on"]
    assert isinstance(depends_on, dict), "the long form is needed to wait for health"
    for name in ("postgres", "redis"):
        assert depends_on[name]["condition"] == "service_healthy"


def test_confide_healthcheck_asks_healthz(services: dict[str, Any]) -> None:
    test = services["confide"]["healthcheck"]["test"]
    command = " ".join(test) if isinstance(test, list) else str(test)
    assert "/healthz" in command
    assert "curl" not in command  # absent from python:3.11-slim


def test_only_confide_publishes_a_port(services: dict[str, Any]) -> None:
    assert [str(p) for p in services["confide"]["ports"]] == ["8000:8000"]
    for name in ("postgres", "redis"):
        assert "ports" not in services[name]


def test_postgres_data_is_a_named_volume(compose: dict[str, Any], services: dict[str, Any]) -> None:
    mounts = [str(m) for m in services["postgres"]["volumes"]]
    sources = [m.split(":")[0] for m in mounts if m.endswith(":/var/lib/postgresql/data")]
    assert sources, mounts
    assert sources[0] in compose["volumes"]


def test_every_confide_variable_is_a_setting(services: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    wired = [name for name in environment(services["confide"]) if name.startswith("CONFIDE_")]
    dockerfile = [
        name
        for instruction, arguments in dockerfile_instructions()
        if instruction == "ENV"
        for name in re.findall(r"(CONFIDE_[A-Z0-9_]+)=", arguments)
    ]
    assert wired
    for name in wired + dockerfile:
        assert name.removeprefix("CONFIDE_").lower() in fields, f"{name} is not a setting"


def test_production_settings(services: dict[str, Any]) -> None:
    env = environment(services["confide"])
    assert env["CONFIDE_ENV"] == "production"
    assert env["CONFIDE_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert "@postgres:5432/" in env["CONFIDE_DATABASE_URL"]
    assert env["CONFIDE_BROKER_URL"].startswith("redis://redis:")
    assert "CONFIDE_ALLOWED_ORIGINS" in env


@pytest.mark.parametrize("name", REQUIRED_FROM_ENVIRONMENT)
def test_secrets_are_required_from_the_environment(services: dict[str, Any], name: str) -> None:
    """`${VAR:?message}`: compose refuses to start without the value, and none is written down."""
    values = [*environment(services["confide"]).values()]
    values += environment(services["postgres"]).values()
    uses = [v for v in values if f"${{{name}" in v]
    assert uses, f"{name} is not used"
    for value in uses:
        assert re.search(rf"\$\{{{name}:\?[^}}]+\}}", value), value


def test_signing_key_is_a_compose_secret(compose: dict[str, Any], services: dict[str, Any]) -> None:
    env = environment(services["confide"])
    path = env["CONFIDE_SIGNING_KEY_FILE"]
    assert path.startswith("/run/secrets/")
    mounted = {}
    for entry in services["confide"]["secrets"]:
        if isinstance(entry, str):
            mounted[entry] = entry
        else:
            mounted[entry["source"]] = entry.get("target", entry["source"])
    targets = {
        source: target if target.startswith("/") else f"/run/secrets/{target}"
        for source, target in mounted.items()
    }
    sources = [source for source, target in targets.items() if target == path]
    assert sources, f"nothing is mounted at {path}"
    assert "file" in compose["secrets"][sources[0]]


def test_compose_header_explains_key_generation() -> None:
    header = COMPOSE.read_text().split("\nservices:")[0]
    assert "secrets.token_urlsafe(32)" in header
    assert "openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt" in (
        header
    )


def test_dockerfile_base_image() -> None:
    froms = [args for instruction, args in dockerfile_instructions() if instruction == "FROM"]
    assert froms[-1].split()[0] == "python:3.11-slim"


def test_dockerfile_runs_as_non_root() -> None:
    users = [args for instruction, args in dockerfile_instructions() if instruction == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_dockerfile_serves() -> None:
    instructions = dockerfile_instructions()
    cmds = [exec_form(args) for instruction, args in instructions if instruction == "CMD"]
    assert cmds
    cmd = cmds[-1]
    assert cmd[:2] == ["confide", "serve"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--port") + 1] == "8000"
    entrypoints = [args for instruction, args in instructions if instruction == "ENTRYPOINT"]
    assert not entrypoints


def test_dockerfile_installs_the_project_and_checks_health() -> None:
    instructions = dockerfile_instructions()
    runs = " ".join(args for instruction, args in instructions if instruction == "RUN")
    assert re.search(r"pip install (\S+ )*\.(\s|$)", runs)
    health = [args for instruction, args in instructions if instruction == "HEALTHCHECK"]
    assert health
    assert "/healthz" in health[-1]
    assert "urllib" in health[-1]
    assert "curl" not in health[-1]
    for instruction, args in instructions:
        if instruction == "COPY":
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            for source in parts[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the build context"
