"""Signing keys from the configuration (app/core/keys.py): one file, or a directory of
keys named by the time each starts signing, and `add_signing_key` (what
`confide keys rotate-signing` does)."""

from __future__ import annotations

import os
import secrets
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from app.core.config import Settings
from app.core.keys import (
    SIGNING_DIR,
    SIGNING_FILE,
    KeyConfigError,
    KeySource,
    load_keys,
    signing_key_name,
)
from app.core.tokens import generate_signing_key_pem, load_signing_key

T0 = int(datetime(2026, 11, 24, 20, 0, 0, tzinfo=UTC).timestamp())


def dev(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def production(tmp_path: Path, signing: Path) -> Settings:
    return Settings(
        env="production",
        password_memory_kib=19_456,
        password_time_cost=2,
        data_dir=tmp_path / "data",
        master_keys=SecretStr("k1:" + secrets.token_urlsafe(32)),
        index_key=SecretStr(secrets.token_urlsafe(32)),
        signing_key_file=signing,
    )


def write_key(path: Path) -> bytes:
    pem = generate_signing_key_pem()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pem)
    return pem


def test_the_name_is_the_utc_start_time() -> None:
    assert signing_key_name(T0) == "signing-20261124T200000Z.pem"


# -- development ----------------------------------------------------------------------


def test_development_generates_one_key_into_the_key_directory(tmp_path: Path) -> None:
    before = int(time.time())
    material = load_keys(dev(tmp_path))
    directory = tmp_path / "data" / "keys" / SIGNING_DIR
    (path,) = directory.iterdir()
    (key,) = material.signing_keys
    assert path.name == signing_key_name(key.active_from)
    assert before <= key.active_from <= int(time.time())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) & 0o077 == 0
    # The next start reads it and makes no other.
    assert load_keys(dev(tmp_path)).signing_keys == [key]
    assert len(list(directory.iterdir())) == 1


def test_development_reads_the_key_file_of_an_older_version_as_its_oldest_key(
    tmp_path: Path,
) -> None:
    settings = dev(tmp_path)
    legacy = tmp_path / "data" / "keys" / SIGNING_FILE
    pem = write_key(legacy)
    (key,) = load_keys(settings).signing_keys
    assert (key.kid, key.active_from) == (load_signing_key(pem).kid, 0)
    assert not (tmp_path / "data" / "keys" / SIGNING_DIR).exists()  # nothing generated

    added = KeySource(settings).add_signing_key(T0)
    keys = KeySource(settings).signing_keys()
    assert [(k.kid, k.active_from) for k in keys] == [(key.kid, 0), (added.kid, T0)]


def test_add_signing_key_in_development(tmp_path: Path) -> None:
    settings = dev(tmp_path)
    (first,) = load_keys(settings).signing_keys
    source = KeySource(settings)
    second = source.add_signing_key(first.active_from + 600)
    path = source.signing_path / signing_key_name(second.active_from)
    assert load_signing_key(path.read_bytes()).kid == second.kid
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [k.kid for k in source.signing_keys()] == [first.kid, second.kid]
    assert not [p for p in source.signing_path.iterdir() if p.name.startswith(".")]


def test_a_new_key_always_starts_after_the_newest(tmp_path: Path) -> None:
    source = KeySource(dev(tmp_path))
    first = source.add_signing_key(T0)
    # Asked to start no later than the newest (a clock behind, or twice in one second).
    assert source.add_signing_key(T0).active_from == T0 + 1
    assert source.add_signing_key(T0 - 3600).active_from == T0 + 2
    assert [k.active_from for k in source.signing_keys()] == [T0, T0 + 1, T0 + 2]
    assert source.signing_keys()[0] == first


# -- production: one file or a directory ----------------------------------------------


def test_production_with_one_file_has_one_key_and_cannot_rotate_it(tmp_path: Path) -> None:
    file = tmp_path / "signing_key.pem"
    pem = write_key(file)
    settings = production(tmp_path, file)
    (key,) = load_keys(settings).signing_keys
    assert (key.kid, key.active_from) == (load_signing_key(pem).kid, 0)
    with pytest.raises(KeyConfigError, match="names one file"):
        KeySource(settings).add_signing_key(T0)
    assert not (tmp_path / "data").exists()


def test_production_with_a_directory(tmp_path: Path) -> None:
    directory = tmp_path / "signing"
    old = write_key(directory / "signing-20261124T200000Z.pem")
    new = write_key(directory / "signing-20261201T090000Z.pem")
    # Not keys: hidden entries (Kubernetes secret volumes, our temporary files), other names.
    (directory / "..data").mkdir()
    (directory / ".signing-20261202T000000Z.pem.123.tmp").write_bytes(b"partial")
    (directory / "README").write_text("rotated with confide keys rotate-signing\n")
    settings = production(tmp_path, directory)
    keys = load_keys(settings).signing_keys
    assert [(k.kid, k.active_from) for k in keys] == [
        (load_signing_key(old).kid, T0),
        (load_signing_key(new).kid, int(datetime(2026, 12, 1, 9, tzinfo=UTC).timestamp())),
    ]
    added = KeySource(settings).add_signing_key(T0)
    assert added.active_from == keys[-1].active_from + 1
    assert [k.kid for k in KeySource(settings).signing_keys()][-1] == added.kid
    assert not (tmp_path / "data").exists()  # nothing generated


def test_a_symlinked_key_is_read(tmp_path: Path) -> None:
    # Kubernetes mounts each secret file as a symlink into ..data/.
    directory = tmp_path / "signing"
    pem = write_key(directory / "..data" / "signing-20261124T200000Z.pem")
    (directory / "signing-20261124T200000Z.pem").symlink_to(
        Path("..data") / "signing-20261124T200000Z.pem"
    )
    (key,) = KeySource(production(tmp_path, directory)).signing_keys()
    assert key.kid == load_signing_key(pem).kid


@pytest.mark.parametrize(
    "name",
    [
        "signing_key.pem",
        "signing-2026-11-24T20:00:00Z.pem",
        "signing-20261124T200000.pem",
        "signing-20261399T250000Z.pem",
        "key.pem",
    ],
)
def test_a_misnamed_key_is_refused(tmp_path: Path, name: str) -> None:
    directory = tmp_path / "signing"
    write_key(directory / "signing-20261124T200000Z.pem")
    write_key(directory / name)
    with pytest.raises(KeyConfigError, match=r"signing-YYYYMMDDTHHMMSSZ\.pem"):
        load_keys(production(tmp_path, directory))


def test_an_empty_directory_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "signing"
    directory.mkdir()
    with pytest.raises(KeyConfigError, match="no signing key"):
        load_keys(production(tmp_path, directory))


def test_the_same_key_twice_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "signing"
    pem = write_key(directory / "signing-20261124T200000Z.pem")
    (directory / "signing-20261124T200001Z.pem").write_bytes(pem)
    with pytest.raises(KeyConfigError, match="the same key"):
        load_keys(production(tmp_path, directory))


@pytest.mark.parametrize("content", [b"not a key", b""])
def test_a_file_that_is_not_a_key_is_refused(tmp_path: Path, content: bytes) -> None:
    directory = tmp_path / "signing"
    directory.mkdir()
    (directory / "signing-20261124T200000Z.pem").write_bytes(content)
    with pytest.raises(KeyConfigError, match=r"signing-20261124T200000Z\.pem"):
        load_keys(production(tmp_path, directory))


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError, match="cannot read the signing key"):
        load_keys(production(tmp_path, tmp_path / "absent.pem"))


# -- re-reading at run time -----------------------------------------------------------


def test_reload_sees_a_new_key_and_keeps_going_through_a_broken_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "signing"
    write_key(directory / "signing-20261124T200000Z.pem")
    source = KeySource(production(tmp_path, directory))
    assert len(source.reload_signing_keys() or []) == 1
    source.add_signing_key(T0 + 60)
    assert len(source.reload_signing_keys() or []) == 2

    broken = directory / "signing-20261125T000000Z.pem"
    broken.write_bytes(b"half a key")
    for _ in range(3):
        assert source.reload_signing_keys() is None  # the server keeps the keys it holds
    # Logged once, not once a second; never the file's content.
    assert caplog.text.count("signing keys not re-read") == 1
    assert "half a key" not in caplog.text
    os.unlink(broken)
    assert len(source.reload_signing_keys() or []) == 2
