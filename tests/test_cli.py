"""The command line: its version, a help text on every option, and what a
migration says it did."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from app.cli import build_parser, main
from tests.fixtures.processes import backend_for, run_cli

ROOT = Path(__file__).resolve().parents[1]


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from parsers(child)


def test_version_is_the_packages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"confide {metadata.version('confide')}"


def test_every_option_and_command_has_help() -> None:
    missing = []
    for parser in parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [
                    f"{parser.prog} {choice.dest}"
                    for choice in action._choices_actions
                    if not choice.help
                ]
            elif not action.help:
                missing.append(f"{parser.prog} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_migrate_says_what_it_applied_then_that_nothing_was_left(tmp_path: Path) -> None:
    with backend_for("sqlite", tmp_path / "data") as backend:
        first = run_cli(backend.env(), "migrate")
        again = run_cli(backend.env(), "migrate")
    assert first.returncode == 0, first.stderr
    heads = sorted(p.name.split("_")[0] for p in (ROOT / "alembic" / "versions").glob("0*.py"))
    line = next(json.loads(s) for s in first.stderr.splitlines() if "database migrated" in s)
    assert line["message"] == (
        f"database migrated: applied {len(heads)} revision(s), now at {heads[-1]}"
    )
    assert line["applied"] == heads
    assert again.returncode == 0, again.stderr
    assert any("database schema is up to date" in s for s in again.stderr.splitlines())
    assert "database migrated" not in again.stderr
