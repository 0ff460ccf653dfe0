"""`redocly lint` (its recommended rules, tools/lint/redocly.yaml) passes on the OpenAPI
document the app generates: no error and no warning."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from app.core.config import Settings
from app.main import create_app
from tests.fixtures.services import unavailable

ROOT = Path(__file__).resolve().parents[2]
LINT = ROOT / "tools" / "lint"
REDOCLY = LINT / "node_modules" / "@redocly" / "cli" / "bin" / "cli.js"


def redocly() -> list[str]:
    node = shutil.which("node")
    if node is None:
        unavailable("node", FileNotFoundError("node (Node 20.19+) is not on PATH"))
    assert node is not None
    if not REDOCLY.is_file():
        pytest.fail("tools/lint/node_modules is missing: `python3 dev.py test` runs `npm ci` there")
    return [node, str(REDOCLY)]


def lint(document: dict[str, object], where: Path) -> dict[str, object]:
    path = where / "openapi.json"
    path.write_text(json.dumps(document, indent=1))
    done = subprocess.run(
        [*redocly(), "lint", "--config", str(LINT / "redocly.yaml"), "--format=json", str(path)],
        cwd=LINT,
        env={**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout.strip(), done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


def openapi(tmp_path: Path) -> dict[str, Any]:
    """The document the app generates (building the app opens no database)."""
    return create_app(Settings(data_dir=tmp_path / "data")).openapi()


def test_the_generated_document_passes_redocly_lint(tmp_path: Path) -> None:
    report = lint(openapi(tmp_path), tmp_path)
    problems = [
        (p["severity"], p["ruleId"], p["message"], [loc["pointer"] for loc in p["location"]])
        for p in report["problems"]  # type: ignore[attr-defined]
    ]
    assert report["totals"] == {"errors": 0, "warnings": 0, "ignored": 0}, problems


def test_the_lint_fails_a_document_that_breaks_a_rule(tmp_path: Path) -> None:
    document = openapi(tmp_path)
    del document["servers"]
    document["paths"]["/healthz"]["get"].pop("security")
    report = lint(document, tmp_path)
    rules = {p["ruleId"] for p in report["problems"]}  # type: ignore[attr-defined]
    assert {"no-empty-servers", "security-defined"} <= rules
