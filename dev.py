#!/usr/bin/env python3
"""The two commands of the README, on a fresh clone with only Python 3.11+ and pip.

    python3 dev.py serve [--host H --port P]   run Confide on the embedded default
    python3 dev.py test [pytest args]          checks (format, lint, types, imports), the
                                               TypeScript SDK's type check and tests, the
                                               web client's type check and unit tests, the
                                               AsyncAPI document's validation, tests

Both create `.venv` and install the project into it first (again whenever
pyproject.toml changes). `test` also installs the Node packages of the SDK
(clients/typescript), of the web client (clients/web), of the AsyncAPI
check (tools/asyncapi) and of the document linters (tools/lint), `npm ci`,
whenever a package-lock.json changes; it needs Node 20.19+ and npm, and
without them skips them with one line (fails with
CONFIDE_REQUIRE_SERVICES=1, as CI sets).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".confide-installed"
SDK = ROOT / "clients" / "typescript"
WEB = ROOT / "clients" / "web"
ASYNCAPI = ROOT / "tools" / "asyncapi"
LINT = ROOT / "tools" / "lint"
NPM_STAMP = Path("node_modules") / ".confide-installed"


def run(*args: str | Path, env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], cwd=cwd, check=True, env=env)


def ensure_venv() -> None:
    if sys.version_info < (3, 11):
        sys.exit("Confide needs Python 3.11 or newer")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        venv.create(VENV, with_pip=True)
    run(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    # setuptools warns on every editable install of a project with a folder
    # mapped to a package (alembic/ ships as confide_migrations); the folder has
    # no __init__.py, so the alembic library still wins its imports.
    quiet = {**os.environ, "PYTHONWARNINGS": "ignore:Editable installation"}
    run(BIN / "python", "-m", "pip", "install", "--quiet", "-e", ".[dev]", env=quiet)
    STAMP.write_text(wanted)


def require_services() -> bool:
    """CONFIDE_REQUIRE_SERVICES, read as tests/fixtures/services.py reads it."""
    return os.environ.get("CONFIDE_REQUIRE_SERVICES", "") not in ("", "0")


def npm_ci(npm: str, package: Path) -> None:
    """`npm ci` in `package`, unless its package-lock.json is the one last installed."""
    stamp = package / NPM_STAMP
    wanted = hashlib.sha256((package / "package-lock.json").read_bytes()).hexdigest()
    if not (stamp.exists() and stamp.read_text() == wanted):
        run(npm, "ci", "--no-audit", "--no-fund", cwd=package)
        stamp.write_text(wanted)


def test_node_packages() -> bool:
    """The Node packages: the SDK's `npm ci`, type check and tests; the web client's
    `npm ci`, type check and unit tests (its build and browser tests run under
    pytest, tests/web); docs/asyncapi.yaml through the official AsyncAPI parser; the
    linters' `npm ci` (redocly, run under pytest, tests/ops).

    False, after one line, when Node or npm is missing and services are not required.
    """
    npm = shutil.which("npm")
    if not (shutil.which("node") and npm):
        message = (
            "node and npm (Node 20+) not found: the TypeScript SDK's, the web client's and"
            " the AsyncAPI document's checks"
        )
        if require_services():
            sys.exit(f"{message} cannot run (CONFIDE_REQUIRE_SERVICES is set)")
        print(f"{message} were skipped", flush=True)
        return False
    npm_ci(npm, SDK)
    run(npm, "run", "--silent", "check", cwd=SDK)
    run(npm, "test", "--silent", cwd=SDK)
    npm_ci(npm, WEB)  # after the SDK's: the web build bundles the SDK's sources
    run(npm, "run", "--silent", "check", cwd=WEB)
    run(npm, "test", "--silent", cwd=WEB)
    npm_ci(npm, ASYNCAPI)
    run(npm, "run", "--silent", "check", cwd=ASYNCAPI)
    npm_ci(npm, LINT)  # redocly, which tests/ops/test_openapi_lint.py runs on the OpenAPI document
    return True


def _workers(args: list[str]) -> list[str]:
    """Spread the suite over worker processes (pytest-xdist), unless the caller chose.

    Most tests wait on servers, sockets and databases rather than compute, so
    there are more workers than cores: CONFIDE_TEST_WORKERS, by default twice
    the cores, at least 2.
    """
    if any(a.startswith(("-n", "--numprocesses", "--pdb")) or "no:xdist" in a for a in args):
        return []
    workers = os.environ.get("CONFIDE_TEST_WORKERS") or str(max(2, 2 * (os.cpu_count() or 1)))
    return ["-n", workers, "--dist", "worksteal"]


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("serve", "test"):
        print(__doc__)
        return 2
    ensure_venv()
    command, rest = sys.argv[1], sys.argv[2:]
    try:
        if command == "serve":
            run(BIN / "confide", "serve", *rest)
        else:
            run(BIN / "ruff", "format", "--check", ".")
            run(BIN / "ruff", "check", ".")
            run(BIN / "mypy", "app", "tests", "bench", "dev.py", "alembic/env.py")
            run(BIN / "lint-imports")  # the contracts in pyproject.toml [tool.importlinter]
            test_node_packages()
            run(BIN / "pytest", *_workers(rest), *rest)
    except subprocess.CalledProcessError as error:
        return error.returncode or 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
