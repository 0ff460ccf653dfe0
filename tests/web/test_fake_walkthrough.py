"""Every screen of the web client, clicked through in Chromium by role and label,
while the built page runs on the in-memory FakeClient (clients/web/src/fake.ts).

Goes with the fake: once the build runs on the SDK, tests/web/test_browser_story.py
covers the screens against a real server, and this file and src/fake.ts are removed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.web.node import chromium, node, run_script, runs_on_fake


@pytest.mark.skipif(not runs_on_fake(), reason="the built client runs on the SDK, not the fake")
def test_screens_click_through_on_the_fake(tmp_path: Path) -> None:
    node()
    chromium()
    done = run_script("test/fake-walkthrough.ts", {"CONFIDE_ARTIFACTS": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every screen worked" in done.stdout
    assert len(list(tmp_path.glob("*.png"))) == 6
