"""The README's walk-through runs as written.

The fenced blocks of "Try it" and "A session, step by step" that follow a
`<!-- readme-test: run -->` line run in order, as a person pastes them into
one shell at the repository root, against a live `confide serve` (its port
put in place of 8000): each exits 0, and the last prints the message one
device decrypted from the other.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.fixtures.processes import backend_for, running_server

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SECTIONS = ("Try it", "A session, step by step")
RUN_MARK = "<!-- readme-test: run -->"
DEFAULT_BASE = "http://127.0.0.1:8000"
DECRYPTED = "the client's device read: Hello Ada, this is Dr A."
BLOCK_TIMEOUT_S = 120

FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.DOTALL | re.MULTILINE)


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    runs: bool


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def blocks(text: str) -> list[Block]:
    found = []
    for title in SECTIONS:
        body = section(text, title)
        for match in FENCE.finditer(body):
            before = body[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            found.append(Block(match.group(1), match.group(2), before.strip() == RUN_MARK))
    return found


def test_the_marked_blocks_are_the_walk_through() -> None:
    found = blocks(README.read_text())
    running = [block for block in found if block.runs]
    assert {block.language for block in running} == {"sh", "python"}
    assert running[-1].language == "python"
    assert "asyncio.run(main())" in running[-1].code
    # Every id a later command needs is captured, never a placeholder to fill in.
    for block in running:
        assert "<" not in block.code.replace("<<", "") or block.language == "python", block.code
    assert RUN_MARK not in "".join(block.code for block in found)


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
        check=False,
    )


def test_the_walk_through_runs_as_written(tmp_path: Path) -> None:
    running = [block for block in blocks(README.read_text()) if block.runs]
    shell = tmp_path / "checkout"  # the reader's repository root: .venv, the data dir
    shell.mkdir()
    (shell / ".venv").symlink_to(ROOT / ".venv")
    state = shell / "state.sh"
    state.write_text("")
    with (
        backend_for("sqlite", tmp_path / "data") as backend,
        running_server(backend, tmp_path / "logs") as server,
    ):
        base = f"http://127.0.0.1:{server.port}"
        env = backend.env()  # the server's data dir: `confide admin create` writes there
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # python3: the venv's
        outputs = []
        for number, block in enumerate(running, start=1):
            code = block.code.replace(DEFAULT_BASE, base)
            if block.language == "python":
                (shell / "session.py").write_text(code)
                script = "set -a; . ./state.sh; set +a; exec python3 session.py"
            else:
                # One shell across blocks: what one block sets, the next one sees.
                script = (
                    "set -eo pipefail; set -a; . ./state.sh\n"
                    f"{code}\n"
                    "{ export -p; declare -f; } > state.sh.next && mv state.sh.next state.sh"
                )
            done = _bash(script, shell, env)
            assert done.returncode == 0, (
                f"README block {number} ({block.language}) exited {done.returncode}:\n"
                f"{code}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}\n"
                f"--- server\n{server.logs()[-4000:]}"
            )
            outputs.append(done.stdout)
        last = outputs[-1].strip().splitlines()[-1]
        assert last == DECRYPTED
        # What the walk-through left on the server: the room has the two of them.
        admitted = server.http.get(
            "/v1/rooms", headers={"Authorization": f"Bearer {_token(shell, env, 'COUNSELOR')}"}
        )
        assert admitted.status_code == 200, admitted.text
        [room] = admitted.json()
        assert room["title"] == "Weekly session"
        assert sorted(p["role"] for p in room["participants"]) == ["host", "participant"]
        assert all(p["admitted"] for p in room["participants"])


def _token(shell: Path, env: dict[str, str], name: str) -> str:
    done = _bash(f'. ./state.sh; printf %s "${name}"', shell, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout, f"${name} is not set"
    return done.stdout
