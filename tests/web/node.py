"""The web client's Node tooling for the tests: node, the installed packages, Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.services import unavailable

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "clients" / "web"
STATIC = ROOT / "app" / "webclient" / "static"
BUILT = ("index.html", "app.js", "app.css")
CHROMIUM = Path(os.environ.get("CONFIDE_CHROMIUM", "/usr/bin/chromium"))


def node() -> str:
    """The node binary, with clients/web's packages installed; else skip (fail in CI)."""
    found = shutil.which("node")
    if found is None:
        unavailable("node", FileNotFoundError("node (Node 20+) is not on PATH"))
    assert found is not None
    if not (WEB / "node_modules" / "esbuild").is_dir():
        pytest.fail(
            "clients/web/node_modules is missing: `python3 dev.py test` runs `npm ci` there"
        )
    return found


def chromium() -> Path:
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(
            "chromium", FileNotFoundError(f"{CHROMIUM} is missing (apt-get install chromium)")
        )
    return CHROMIUM


def run_script(
    entry: str, env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`node scripts/run.mjs <entry>` in clients/web, output captured."""
    return subprocess.run(
        [node(), "scripts/run.mjs", entry],
        cwd=WEB,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
