"""The container image and the compose file agree with the settings the app reads."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.core.config import Settings
from app.core.encryption import Keyring
from tests.fixtures.services import unavailable

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

CADDYFILE = ROOT / "deploy" / "Caddyfile"
#: The secrets Confide reads from files in production, and where compose mounts them.
SECRET_FILES = {
    "CONFIDE_DATABASE_URL_FILE": "database_url",
    "CONFIDE_BROKER_URL_FILE": "broker_url",
    "CONFIDE_MASTER_KEYS_FILE": "master_keys",
    "CONFIDE_INDEX_KEY_FILE": "index_key",
    "CONFIDE_SIGNING_KEY_FILE": "signing_key",
}


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
    assert {"proxy", "confide", "postgres", "redis"} <= set(services)
    assert str(services["proxy"]["image"]).startswith("caddy:2")
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


def test_confide_healthcheck_asks_readyz(services: dict[str, Any]) -> None:
    test = services["confide"]["healthcheck"]["test"]
    command = " ".join(test) if isinstance(test, list) else str(test)
    assert "/readyz" in command  # ready: the database answers, not merely alive
    assert "curl" not in command  # absent from python:3.11-slim


def test_only_the_proxy_publishes_ports(services: dict[str, Any]) -> None:
    assert [str(p) for p in services["proxy"]["ports"]] == ["80:80", "443:443", "443:443/udp"]
    for name in ("confide", "postgres", "redis"):
        assert "ports" not in services[name], name
    assert services["proxy"]["depends_on"]["confide"]["condition"] == "service_healthy"


def test_the_backend_network_is_internal(compose: dict[str, Any], services: dict[str, Any]) -> None:
    assert compose["networks"]["backend"]["internal"] is True
    for name in ("confide", "postgres", "redis"):
        assert services[name]["networks"] == ["backend"], name
    assert set(services["proxy"]["networks"]) == {"edge", "backend"}
    # X-Forwarded-For is trusted because only the proxy reaches Confide.
    assert environment(services["confide"])["FORWARDED_ALLOW_IPS"] == "*"


def test_the_proxy_forwards_to_confide_over_tls() -> None:
    config = CADDYFILE.read_text()
    assert "{$CONFIDE_DOMAIN} {" in config  # a site address: automatic HTTPS
    assert re.search(r"^\s*reverse_proxy confide:8000( \{)?\s*$", config, re.MULTILINE)
    assert "Strict-Transport-Security" in config
    assert "log" not in re.sub(r"#.*", "", config)  # no access log naming paths and addresses


def caddy_block(config: str, name: str) -> dict[str, str]:
    """The `name value` lines of the first `name { ... }` block of a Caddyfile."""
    found = re.search(r"^\s*" + re.escape(name) + r" \{\n(.*?)^\s*\}", config, re.M | re.S)
    assert found, f"no {name} block"
    lines = (line.split("#")[0].split() for line in found.group(1).splitlines())
    return {parts[0]: " ".join(parts[1:]) for parts in lines if parts}


def seconds(duration: str) -> float:
    """A Caddy duration such as 10s or 2m, in seconds."""
    number, unit = re.fullmatch(r"(\d+)(s|m|h)", duration).groups()  # type: ignore[union-attr]
    return int(number) * {"s": 1, "m": 60, "h": 3600}[unit]


def test_the_proxy_cuts_off_slow_clients() -> None:
    """Caddy's server timeouts are all set (Go's defaults are none at all), in the
    global `servers` block; and its upstream keep-alive ends before uvicorn's (5 s)."""
    config = re.sub(r"#.*", "", CADDYFILE.read_text())
    timeouts = caddy_block(caddy_block_text(config, "servers"), "timeouts")
    assert set(timeouts) == {"read_header", "read_body", "write", "idle"}
    assert seconds(timeouts["read_header"]) <= 30
    assert seconds(timeouts["read_header"]) <= seconds(timeouts["read_body"]) <= 120
    assert 10 <= seconds(timeouts["write"]) <= 300
    assert seconds(timeouts["idle"]) <= 600
    assert seconds(caddy_block(config, "transport http")["keepalive"]) < 5


def caddy_block_text(config: str, name: str) -> str:
    """The text of the first `name { ... }` block, nested blocks included."""
    start = re.search(r"^\s*" + re.escape(name) + r" \{\n", config, re.M)
    assert start, f"no {name} block"
    depth, at = 1, start.end()
    while depth:
        opening, closing = config.find("{", at), config.index("}", at)
        if 0 <= opening < closing:
            depth, at = depth + 1, opening + 1
        else:
            depth, at = depth - 1, closing + 1
    return config[start.start() : at]


def test_confide_cuts_off_slow_clients(services: dict[str, Any]) -> None:
    """Confide's own timeouts are set in compose, valid, and no longer than the proxy's."""
    env = environment(services["confide"])
    settings = Settings(
        head_timeout=env["CONFIDE_HEAD_TIMEOUT"],
        body_timeout=env["CONFIDE_BODY_TIMEOUT"],
        body_min_rate=env["CONFIDE_BODY_MIN_RATE"],
    )
    config = re.sub(r"#.*", "", CADDYFILE.read_text())
    timeouts = caddy_block(caddy_block_text(config, "servers"), "timeouts")
    assert settings.head_timeout <= seconds(timeouts["read_header"])
    assert settings.body_timeout <= seconds(timeouts["read_body"])
    assert settings.body_min_rate >= 100


def test_the_caddyfile_is_valid(tmp_path: Path) -> None:
    caddy = shutil.which("caddy")
    if caddy is None:
        unavailable("caddy", FileNotFoundError("caddy is not installed"))
        return
    done = subprocess.run(
        [caddy, "validate", "--adapter", "caddyfile", "--config", str(CADDYFILE)],
        env={**os.environ, "CONFIDE_DOMAIN": "confide.example.org", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_redis_has_a_password_kept_off_the_command_line(services: dict[str, Any]) -> None:
    redis = services["redis"]
    command = " ".join(redis["command"])
    assert "requirepass %s" in command
    assert "/run/secrets/redis_password" in command
    assert "exec redis-server /run/redis/redis.conf" in command  # the server is PID 1
    assert "--requirepass" not in command
    health = " ".join(redis["healthcheck"]["test"])
    assert "REDISCLI_AUTH=" in health


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
    assert "CONFIDE_ALLOWED_ORIGINS" in env
    assert re.fullmatch(
        r"\$\{CONFIDE_DOMAIN:\?[^}]+\}", environment(services["proxy"])["CONFIDE_DOMAIN"]
    )


def mounts(compose: dict[str, Any], service: dict[str, Any]) -> dict[str, str]:
    """Where each of the service's compose secrets is mounted -> the host file."""
    found = {}
    for entry in service.get("secrets", []):
        source, target = (
            (entry, entry)
            if isinstance(entry, str)
            else (
                entry["source"],
                entry.get("target", entry["source"]),
            )
        )
        path = target if target.startswith("/") else f"/run/secrets/{target}"
        found[path] = compose["secrets"][source]["file"]
    return found


def test_every_secret_is_a_file(compose: dict[str, Any], services: dict[str, Any]) -> None:
    """No secret is in an environment variable (`docker inspect` shows those)."""
    env = environment(services["confide"])
    mounted = mounts(compose, services["confide"])
    for variable, name in SECRET_FILES.items():
        assert env[variable] in mounted, variable
        assert mounted[env[variable]].startswith(f"./secrets/{name}"), variable
        assert variable.removesuffix("_FILE") not in env
    postgres = environment(services["postgres"])
    assert "POSTGRES_PASSWORD" not in postgres
    assert mounts(compose, services["postgres"])[postgres["POSTGRES_PASSWORD_FILE"]] == (
        "./secrets/postgres_password"
    )
    for service in services.values():
        for value in environment(service).values():
            assert "://" not in value or "@" not in value, value  # no URL with a password


def test_the_headers_recipe_makes_secrets_confide_accepts(tmp_path: Path) -> None:
    header = COMPOSE.read_text().split("\nservices:")[0]
    lines = header.splitlines()
    start = lines.index("#   python3 - <<'PY'") + 1
    end = lines.index("#   PY")
    script = "\n".join(line.removeprefix("#   ") for line in lines[start:end])
    (tmp_path / "secrets").mkdir()
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True, timeout=30)
    made = tmp_path / "secrets"
    settings = Settings(
        database_url_file=made / "database_url",
        migration_database_url_file=made / "migration_database_url",
        broker_url_file=made / "broker_url",
        master_keys_file=made / "master_keys",
        index_key_file=made / "index_key",
    )
    assert settings.database_url is not None
    password = (made / "postgres_password").read_text().strip()
    app_password = (made / "app_db_password").read_text().strip()
    assert app_password != password
    database_url = settings.database_url.get_secret_value()
    assert database_url == f"postgresql+asyncpg://confide_app:{app_password}@postgres:5432/confide"
    assert settings.resolved_migration_database_url == (
        f"postgresql+asyncpg://confide:{password}@postgres:5432/confide"
    )
    assert settings.server_role == "confide_app"
    redis_password = (made / "redis_password").read_text().strip()
    assert settings.broker_url.get_secret_value() == f"redis://:{redis_password}@redis:6379/0"
    assert settings.master_keys is not None
    assert Keyring.parse(settings.master_keys.get_secret_value()).kids() == ["k1"]


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


def test_the_owner_migrates_and_the_server_runs_as_its_own_role(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    """Two database roles (docs/operations.md): only the one-off `migrate` service holds
    the owner's URL; the server starts after it, as `confide_app`, whom postgres creates
    on its first start."""
    migrate, confide, postgres = services["migrate"], services["confide"], services["postgres"]
    assert migrate["command"] == ["confide", "migrate"]
    assert migrate["restart"] == "no"
    assert confide["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    env = environment(migrate)
    mounted = mounts(compose, migrate)
    assert mounted[env["CONFIDE_MIGRATION_DATABASE_URL_FILE"]] == "./secrets/migration_database_url"
    assert mounted[env["CONFIDE_DATABASE_URL_FILE"]] == "./secrets/database_url"
    assert env["CONFIDE_ENV"] == "production"
    for name in env:
        assert name.removeprefix("CONFIDE_").lower() in Settings.model_fields, name
    # The server never holds the owner's credentials.
    assert "CONFIDE_MIGRATION_DATABASE_URL_FILE" not in environment(confide)
    assert "./secrets/migration_database_url" not in mounts(compose, confide).values()
    # postgres creates the server's role on first start, its password from a secret.
    init = [str(v) for v in postgres["volumes"] if "docker-entrypoint-initdb.d" in str(v)]
    assert init
    assert init[0].startswith("./deploy/postgres-roles.sh:")
    script = (ROOT / "deploy" / "postgres-roles.sh").read_text()
    assert "CREATE ROLE confide_app LOGIN PASSWORD :'app_password'" in script
    assert "`cat /run/secrets/app_db_password`" in script  # never on a command line
    assert "/run/secrets/app_db_password" in mounts(compose, postgres)
