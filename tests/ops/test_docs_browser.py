"""/docs and /redoc render in Chromium under their CSP, asking no other host
(clients/web/test/docs-pages.ts against a real server)."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.processes import backend_for, running_server
from tests.web.node import chromium, node, run_script


def test_the_docs_render_in_chromium_from_this_server_alone(tmp_path: Path) -> None:
    node()
    chromium()
    with (
        backend_for("sqlite", tmp_path / "data") as backend,
        running_server(backend, tmp_path / "logs") as server,
    ):
        done = run_script("test/docs-pages.ts", {"CONFIDE_BASE_URL": str(server.http.base_url)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "/docs: rendered" in done.stdout
    assert "/redoc: rendered" in done.stdout
    assert "docs pages: done" in done.stdout
