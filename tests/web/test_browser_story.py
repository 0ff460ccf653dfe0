"""The whole session in Chromium against a real server (clients/web/test/story.ts):
a counselor and a client in two browser contexts; consents, invitation, waiting
room, admission, chat both ways, the same safety number on both sides, a video
call that connects, and a reload that still decrypts. Afterwards neither the
database file nor the server's log holds any of the chat texts."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from tests.fixtures.processes import backend_for, running_server
from tests.web.node import ROOT, chromium, node, run_script
from tests.web.seed import CONSENTS, bearer, seed

ARTIFACTS = Path(os.environ.get("CONFIDE_TEST_ARTIFACTS", ROOT / "test-artifacts"))


def test_seeded_client_has_an_invitation_and_consents_to_read(tmp_path: Path) -> None:
    with (
        backend_for("sqlite", tmp_path / "data") as backend,
        running_server(backend, tmp_path / "logs") as server,
    ):
        story = seed(server)
        client = bearer(server.login(story.client_email, story.client_password)["access_token"])
        invitations = server.http.get("/v1/me/invitations", headers=client).json()
        assert [(i["room_id"], i["title"]) for i in invitations] == [
            (story.room_id, story.room_title)
        ]
        assert invitations[0]["host"]["display_name"] == story.counselor_name
        documents = server.http.get("/v1/consent-documents").json()
        assert {d["kind"]: d["title"] for d in documents} == CONSENTS
        counselor = bearer(
            server.login(story.counselor_email, story.counselor_password)["access_token"]
        )
        room = server.http.get(f"/v1/rooms/{story.room_id}", headers=counselor).json()
        assert room["status"] in ("scheduled", "open")
        assert room["waiting_room"] is True


def test_browser_story(tmp_path: Path) -> None:
    node()
    chromium()
    # Kept after the run (test-artifacts/ is ignored by git) for a person or CI to look at.
    shots = ARTIFACTS / "browser-story"
    shutil.rmtree(shots, ignore_errors=True)
    texts = {f"CONFIDE_TEXT_{i}": f"storytext-{secrets.token_hex(8)}" for i in (1, 2, 3)}
    with backend_for("sqlite", tmp_path / "data") as backend:
        with running_server(backend, tmp_path / "logs", CONFIDE_WEB_CLIENT="1") as server:
            page = server.http.get("/app/")
            assert page.status_code == 200, "the server does not serve the web client at /app/"
            story = seed(server)
            done = run_script(
                "test/story.ts",
                {**story.env(), **texts, "CONFIDE_ARTIFACTS": str(shots)},
                timeout=300,
            )
            print(f"screenshots: {shots}")
            assert done.returncode == 0, done.stdout + done.stderr
            assert "story: done" in done.stdout
        stored = backend.stored_bytes()
        logs = server.logs()
    assert len(list(shots.glob("*.png"))) >= 8
    for text in texts.values():
        assert text.encode() not in stored
        assert text not in logs
