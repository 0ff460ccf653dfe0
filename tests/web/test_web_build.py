"""The committed web client (app/webclient/static) is what its sources build, and
it asks nothing of any other host."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.web.node import BUILT, STATIC, WEB, node

EXTERNAL = re.compile(rb"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", re.IGNORECASE)


def build(outdir: Path) -> None:
    done = subprocess.run(
        [node(), "scripts/build.mjs", "--outdir", str(outdir)],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_committed_build_is_what_the_sources_build(tmp_path: Path) -> None:
    build(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(BUILT)
    for name in BUILT:
        fresh = (tmp_path / name).read_bytes()
        assert (STATIC / name).read_bytes() == fresh, (
            f"app/webclient/static/{name} is stale: run `npm run build` in clients/web"
        )


def test_build_is_deterministic(tmp_path: Path) -> None:
    build(tmp_path / "one")
    build(tmp_path / "two")
    for name in BUILT:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


@pytest.mark.parametrize("name", BUILT)
def test_built_file_names_no_other_host(name: str) -> None:
    found = EXTERNAL.findall((STATIC / name).read_bytes())
    assert found == [], f"{name} refers to another host: {found[:5]}"


def test_external_reference_is_caught() -> None:
    assert EXTERNAL.search(b'import"https://cdn.example.com/x.js"')
    assert EXTERNAL.search(b'<link href="//fonts.example.org/a.css">')
    assert not EXTERNAL.search(b'<script type="module" src="app.js"></script>')


def test_page_loads_only_its_own_files() -> None:
    html = (STATIC / "index.html").read_text()
    references = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert sorted(references) == ["#main", "app.css", "app.js", "data:,"]
