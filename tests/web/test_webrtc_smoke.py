"""Chromium from /usr/bin/chromium: the built client loads under the server's CSP,
and two pages connect a loopback WebRTC call (clients/web/test/webrtc-smoke.ts)."""

from __future__ import annotations

from pathlib import Path

from tests.web.node import chromium, node, run_script


def test_chromium_loads_client_and_connects_loopback_call(tmp_path: Path) -> None:
    node()
    chromium()
    done = run_script("test/webrtc-smoke.ts", {"CONFIDE_ARTIFACTS": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the loopback call connected" in done.stdout
    shots = sorted(p.name for p in tmp_path.glob("*.png"))
    assert shots == ["01-smoke-loaded.png", "02-smoke-connected.png"]
