"""The migration scripts at the root: the `alembic` command there, and an installed wheel.

`alembic upgrade head`, `alembic check` and `alembic downgrade base` work at
the root with the configured database; autogenerate against an up-to-date
database writes an empty revision, numbered after the head; and the wheel
carries the scripts, so an installed `confide migrate` creates every table.
"""

from __future__ import annotations

import ast
import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from app.models import Base
from tests.fixtures.processes import Backend, backend_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HEAD = ScriptDirectory(str(ROOT / "alembic")).get_current_head()
TIMEOUT_S = 120.0
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def run(args: list[str | Path], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"{args} exited with {done.returncode}:\n{done.stderr}"
    return done.stdout + done.stderr


def tables(backend: Backend) -> set[str]:
    if backend.pg_name is None:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    return {row[0] for row in backend.query(sql)}


def alembic(backend: Backend, *args: str, config: Path = ROOT / "alembic.ini") -> str:
    return run([BIN / "alembic", "-c", config, *args], backend.env(), cwd=config.parent)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_alembic_at_the_root(kind: str, tmp_path: Path) -> None:
    # SQLite: the default file in a data directory that does not exist yet.
    with backend_for(kind, tmp_path / "not" / "yet" / "data") as backend:
        alembic(backend, "upgrade", "head")
        assert tables(backend) == set(Base.metadata.tables) | {"alembic_version"}
        assert backend.query("SELECT version_num FROM alembic_version") == [(HEAD,)]

        assert "No new upgrade operations detected" in alembic(backend, "check")

        alembic(backend, "downgrade", "base")
        assert tables(backend) == {"alembic_version"}
        assert backend.query("SELECT version_num FROM alembic_version") == []


def _bodies(script: Path) -> dict[str, list[type[ast.stmt]]]:
    tree = ast.parse(script.read_text())
    return {
        node.name: [type(stmt) for stmt in node.body]
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
    }


def test_autogenerate_on_an_up_to_date_database_is_empty(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "alembic", project / "alembic", ignore=IGNORE)
    shutil.copy(ROOT / "alembic.ini", project)
    config = project / "alembic.ini"
    backend = Backend("sqlite", tmp_path / "data")
    versions = project / "alembic" / "versions"
    assert HEAD is not None
    following = f"{int(HEAD) + 1:04d}"

    alembic(backend, "upgrade", "head", config=config)
    alembic(backend, "revision", "--autogenerate", "-m", "no change", config=config)

    script = versions / f"{following}_no_change.py"
    assert script.is_file(), sorted(p.name for p in versions.iterdir())
    assert _bodies(script) == {"upgrade": [ast.Pass], "downgrade": [ast.Pass]}
    source = script.read_text()
    assert f"revision: str = '{following}'" in source
    assert f"down_revision: str | None = '{HEAD}'" in source

    alembic(backend, "upgrade", "head", config=config)
    assert backend.query("SELECT version_num FROM alembic_version") == [(following,)]

    # Without --autogenerate too, the next number; --rev-id names it as given.
    alembic(backend, "revision", "-m", "by hand", config=config)
    alembic(backend, "revision", "-m", "named", "--rev-id", "x1", config=config)
    assert (versions / f"{int(following) + 1:04d}_by_hand.py").is_file()
    assert (versions / "x1_named.py").is_file()

    alembic(backend, "downgrade", "base", config=config)
    assert tables(backend) == {"alembic_version"}


def _packages(directory: Path) -> set[str]:
    return {
        str(init.parent.relative_to(directory.parent)) for init in directory.rglob("__init__.py")
    }


def test_an_installed_wheel_migrates(tmp_path: Path) -> None:
    # Build from a copy: an in-tree build would leave build/ in the checkout.
    src = tmp_path / "src"
    for folder in ("app", "alembic"):
        shutil.copytree(ROOT / folder, src / folder, ignore=IGNORE)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONFIDE_", "PYTHON", "PIP_"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    pip = [sys.executable, "-m", "pip"]
    built = run(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path, src], env, src
    )
    # The first install of a fresh clone shows no packaging warnings (project.license, ...).
    assert "Warning" not in built, built
    (wheel,) = tmp_path.glob("confide-*.whl")

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for package in _packages(ROOT / "app"):
        assert f"{package}/__init__.py" in names, f"{package}: missing from pyproject.toml"
    scripts = [p for p in (ROOT / "alembic").rglob("*") if p.is_file() and p.suffix != ".pyc"]
    for path in scripts:
        assert f"confide_migrations/{path.relative_to(ROOT / 'alembic').as_posix()}" in names
    assert not any(name.startswith("alembic/") for name in names)
    # The AsyncAPI document served at /asyncapi.yaml, and the web client's files,
    # ship as package data.
    assert "app/ops/asyncapi.yaml" in names
    static = ROOT / "app" / "webclient" / "static"
    shipped = [p for p in static.rglob("*") if p.is_file()]
    assert static / "index.html" in shipped
    for path in shipped:
        assert f"app/webclient/static/{path.relative_to(static).as_posix()}" in names

    # A fresh environment with the wheel; its dependencies from this one.
    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    python = target / ("Scripts" if os.name == "nt" else "bin") / "python"
    run(
        [*pip, "--python", python, "install", "-q", "--no-deps", "--no-index", wheel], env, tmp_path
    )
    installed = Path(sysconfig.get_path("purelib", vars={"base": target, "platbase": target}))
    (installed / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")

    data = tmp_path / "data"
    env["CONFIDE_DATA_DIR"] = str(data)
    where = run(
        [python, "-c", "from app.core import migrations; print(migrations.script_location())"],
        env,
        tmp_path,
    )
    assert Path(where.strip()) == installed / "confide_migrations"

    run([python.parent / "confide", "migrate"], env, tmp_path)
    conn = sqlite3.connect(data / "confide.db")
    try:
        found = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    finally:
        conn.close()
    assert found == set(Base.metadata.tables) | {"alembic_version"}
    assert version == [(HEAD,)]
