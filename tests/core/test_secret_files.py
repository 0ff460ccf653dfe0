"""Every secret setting may come from a file (CONFIDE_<NAME>_FILE) instead of the environment."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.cli import _settings_errors, main
from app.core.config import SECRET_FILES, Settings, get_settings
from app.core.keys import load_keys


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_FILES:
        monkeypatch.delenv(f"CONFIDE_{name.upper()}", raising=False)
        monkeypatch.delenv(f"CONFIDE_{name.upper()}_FILE", raising=False)


@pytest.mark.parametrize("name", SECRET_FILES)
def test_a_secret_is_read_from_its_file(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        "broker_url": "redis://:" + secrets.token_urlsafe(16) + "@127.0.0.1:6379/0",
        "master_keys": "k1:" + secrets.token_urlsafe(32),
        "migration_database_url": "postgresql+asyncpg://owner:"
        + secrets.token_urlsafe(16)
        + "@127.0.0.1:5432/confide",
    }.get(name, secrets.token_urlsafe(32))
    if name == "migration_database_url":  # for PostgreSQL with two roles only
        monkeypatch.setenv("CONFIDE_DATABASE_URL", "postgresql+asyncpg://app@127.0.0.1/confide")
    path = tmp_path / name
    path.write_text(value + "\n")  # as editors and `echo` leave them
    monkeypatch.setenv(f"CONFIDE_{name.upper()}_FILE", str(path))
    secret = getattr(Settings(), name)
    assert secret is not None
    assert secret.get_secret_value() == value
    assert value not in repr(Settings())


def test_keys_from_files_serve_production(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.tokens import generate_signing_key_pem

    signing = tmp_path / "signing.pem"
    signing.write_bytes(generate_signing_key_pem())
    (tmp_path / "master").write_text("k1:" + secrets.token_urlsafe(32) + "\n")
    (tmp_path / "index").write_text(secrets.token_urlsafe(32) + "\n")
    monkeypatch.setenv("CONFIDE_MASTER_KEYS_FILE", str(tmp_path / "master"))
    monkeypatch.setenv("CONFIDE_INDEX_KEY_FILE", str(tmp_path / "index"))
    configured = Settings(
        env="production",
        data_dir=tmp_path / "data",
        signing_key_file=signing,
        password_memory_kib=19_456,
        password_time_cost=2,
    )
    keys = load_keys(configured)
    assert not keys.generated
    assert keys.keyring.kids() == ["k1"]
    assert len(keys.index_key) == 32


def test_both_set_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "index").write_text(secrets.token_urlsafe(32))
    monkeypatch.setenv("CONFIDE_INDEX_KEY", secrets.token_urlsafe(32))
    monkeypatch.setenv("CONFIDE_INDEX_KEY_FILE", str(tmp_path / "index"))
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert _settings_errors(caught.value) == [
        "confide: CONFIDE_INDEX_KEY and CONFIDE_INDEX_KEY_FILE are both set; set one of them"
    ]


def test_an_unreadable_file_stops_the_cli_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("CONFIDE_MASTER_KEYS_FILE", str(missing))
    get_settings.cache_clear()
    try:
        assert main(["migrate"]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert (
        err
        == f"confide: CONFIDE_MASTER_KEYS_FILE: cannot read {missing}: No such file or directory\n"
    )


def test_a_migration_url_is_for_postgresql_with_two_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIDE_MIGRATION_DATABASE_URL", "postgresql+asyncpg://owner@db/confide")
    with pytest.raises(ValidationError, match="CONFIDE_DATABASE_URL is not a PostgreSQL URL"):
        Settings()
    monkeypatch.setenv("CONFIDE_DATABASE_URL", "postgresql+asyncpg://app@db/confide")
    assert Settings().server_role == "app"
    monkeypatch.setenv("CONFIDE_DATABASE_URL", "postgresql+asyncpg://owner@db/confide")
    assert Settings().server_role is None  # one role after all: nothing to grant
