"""Where key material comes from.

Development: generated on first start into `CONFIDE_DATA_DIR/keys/` (mode
0600) with a loud warning. Production (`CONFIDE_ENV=production`): the master
keys, the blind-index key and the signing key must come from configuration;
the server refuses to start otherwise, and never uses generated keys.

Signing keys. `CONFIDE_SIGNING_KEY_FILE` names one PEM file (one key, no
rotation) or a directory of keys named `signing-YYYYMMDDTHHMMSSZ.pem`: the
UTC time each starts signing (decision note 0001). Development keys live in
the directory `CONFIDE_DATA_DIR/keys/signing/` (a `keys/signing_key.pem` of
an older version is read as its oldest key). `confide keys rotate-signing`
adds a key to the directory; a running server re-reads it (`KeySource`,
`TokenService` reload), as it re-reads the master keyring.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from app.core import encryption
from app.core.codec import b64url_decode, b64url_encode
from app.core.config import Settings
from app.core.tokens import SigningKey, generate_signing_key_pem, load_signing_key

log = logging.getLogger("confide.keys")

MASTER_FILE = "master_keys"
INDEX_FILE = "index_key"
SIGNING_FILE = "signing_key.pem"  # development, before rotation: read as the oldest key
SIGNING_DIR = "signing"
# A signing key in a key directory: the UTC time it starts signing, to the second.
SIGNING_NAME = re.compile(r"signing-(\d{8}T\d{6}Z)\.pem")
_SIGNING_TIME = "%Y%m%dT%H%M%SZ"


class KeyConfigError(RuntimeError):
    pass


def _b64url_decode_secret(text: str, what: str) -> bytes:
    # A secret file or variable may end with a newline or carry padding.
    try:
        return b64url_decode(text.strip().rstrip("="))
    except ValueError:
        raise KeyConfigError(f"{what} is not base64url") from None


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _replace_secret(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    _write_secret(tmp, data)
    tmp.replace(path)


def _publish_secret(path: Path, data: bytes) -> None:
    """Create `path` whole or not at all: a server re-reading the directory never sees a
    half-written key, and an existing key is never overwritten (FileExistsError)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # not *.pem: never loaded
    tmp.unlink(missing_ok=True)
    _write_secret(tmp, data)
    try:
        os.link(tmp, path)
    finally:
        tmp.unlink()


def signing_key_name(active_from: int) -> str:
    """The file name of a key that starts signing at `active_from` (Unix time)."""
    return f"signing-{datetime.fromtimestamp(active_from, UTC).strftime(_SIGNING_TIME)}.pem"


def _active_from(name: str) -> int | None:
    match = SIGNING_NAME.fullmatch(name)
    if match is None:
        return None
    try:
        moment = datetime.strptime(match.group(1), _SIGNING_TIME).replace(tzinfo=UTC)
    except ValueError:  # 20261399T250000Z
        return None
    return int(moment.timestamp())


@dataclass
class KeySource:
    """Reads the master keyring (after `confide keys rotate`) and the signing keys (after
    `confide keys rotate-signing`) again on demand."""

    settings: Settings
    # The last problem reload_signing_keys logged (it runs up to once a second).
    _reload_error: str | None = field(default=None, init=False, repr=False)

    @property
    def key_dir(self) -> Path:
        return self.settings.data_dir / "keys"

    def keyring(self) -> encryption.Keyring:
        if self.settings.master_keys is not None:
            return encryption.Keyring.parse(self.settings.master_keys.get_secret_value())
        return encryption.Keyring.parse((self.key_dir / MASTER_FILE).read_text())

    @property
    def signing_path(self) -> Path:
        """The configured signing key file or directory; the development directory else."""
        return self.settings.signing_key_file or self.key_dir / SIGNING_DIR

    def signing_keys(self) -> list[SigningKey]:
        """Every signing key, each with the time it starts signing; KeyConfigError if there
        is none, or one cannot be read, is not a P-256 key, or is misnamed."""
        found = self._find_signing_keys()
        if not found:
            raise KeyConfigError(f"no signing key in {self.signing_path}")
        return found

    def _find_signing_keys(self) -> list[SigningKey]:
        path = self.signing_path
        found: list[SigningKey] = []
        legacy = self.key_dir / SIGNING_FILE
        if self.settings.signing_key_file is None and legacy.exists():
            found.append(_read_signing_key(legacy, 0))
        if path.is_dir():
            for entry in sorted(path.iterdir()):
                # Hidden entries (Kubernetes' ..data, our .tmp files) and other suffixes
                # are not keys; a *.pem that is not named by its time is a mistake.
                if entry.name.startswith(".") or entry.suffix != ".pem":
                    continue
                active_from = _active_from(entry.name)
                if active_from is None:
                    raise KeyConfigError(
                        f"{entry}: name signing keys signing-YYYYMMDDTHHMMSSZ.pem, the UTC "
                        "time they start signing"
                    )
                found.append(_read_signing_key(entry, active_from))
        elif self.settings.signing_key_file is not None or path.exists():
            found.append(_read_signing_key(path, 0))
        kids = [key.kid for key in found]
        starts = [key.active_from for key in found]
        if len(set(kids)) != len(kids) or len(set(starts)) != len(starts):
            raise KeyConfigError(f"{path}: the same key, or the same start time, twice")
        return found

    def reload_signing_keys(self) -> list[SigningKey] | None:
        """For a running server: the current signing keys, or None (logged, once per
        distinct problem) to keep its own."""
        try:
            keys = self.signing_keys()
        except (KeyConfigError, OSError) as error:
            if str(error) != self._reload_error:
                self._reload_error = str(error)
                log.error("signing keys not re-read, keeping the loaded ones: %s", error)
            return None
        self._reload_error = None
        return keys

    def add_signing_key(self, activate_at: int) -> SigningKey:
        """A new signing key in the key directory, signing from `activate_at` (Unix time;
        moved one second past the newest key's start if not later than it)."""
        path = self.signing_path
        if self.settings.signing_key_file is not None and not path.is_dir():
            raise KeyConfigError(
                f"CONFIDE_SIGNING_KEY_FILE names one file ({path}): to rotate, make it a "
                "directory holding that key as signing-<UTC time>.pem (see the README, "
                '"Rotating the signing key"), then run `confide keys rotate-signing` again'
            )
        existing = self._find_signing_keys()
        newest = max((key.active_from for key in existing), default=-1)
        active_from = max(activate_at, newest + 1)
        pem = generate_signing_key_pem()
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        _publish_secret(path / signing_key_name(active_from), pem)
        return dataclasses.replace(load_signing_key(pem), active_from=active_from)

    def add_master_key(self) -> str:
        """Add a new newest master key (development key file only)."""
        if self.settings.master_keys is not None:
            raise KeyConfigError(
                "master keys come from CONFIDE_MASTER_KEYS: append the new key there "
                "on every instance, then run `confide keys rotate` again"
            )
        ring = self.keyring()
        kid = f"k{len(ring.kids()) + 1}-{b64url_encode(os.urandom(3))}"
        ring = ring.with_new_key(kid, encryption.generate_key())
        _replace_secret(self.key_dir / MASTER_FILE, ring.serialize().encode())
        return kid


@dataclass
class KeyMaterial:
    source: KeySource
    keyring: encryption.Keyring
    index_key: bytes
    signing_keys: list[SigningKey]
    generated: bool


def load_keys(settings: Settings) -> KeyMaterial:
    source = KeySource(settings)
    configured = [
        settings.master_keys is not None,
        settings.index_key is not None,
        settings.signing_key_file is not None,
    ]
    if settings.is_production and not all(configured):
        raise KeyConfigError(
            "CONFIDE_ENV=production requires CONFIDE_MASTER_KEYS, CONFIDE_INDEX_KEY and "
            "CONFIDE_SIGNING_KEY_FILE; refusing to start with generated development keys"
        )
    generated = _ensure_dev_keys(source, settings) if not all(configured) else False

    if settings.index_key is not None:
        index_key = _b64url_decode_secret(
            settings.index_key.get_secret_value(), "CONFIDE_INDEX_KEY"
        )
    else:
        index_key = _b64url_decode_secret(
            (source.key_dir / INDEX_FILE).read_text(), str(source.key_dir / INDEX_FILE)
        )
    if len(index_key) != encryption.KEY_BYTES:
        raise KeyConfigError("the index key must be 32 bytes")

    signing_keys = source.signing_keys()
    return KeyMaterial(source, source.keyring(), index_key, signing_keys, generated)


def _read_signing_key(path: Path, active_from: int) -> SigningKey:
    try:
        key = load_signing_key(path.read_bytes())
    except OSError as error:
        raise KeyConfigError(f"cannot read the signing key {path}: {error.strerror}") from None
    except ValueError as error:
        raise KeyConfigError(f"{path}: {error}") from None
    return dataclasses.replace(key, active_from=active_from)


def _has_signing_key(source: KeySource) -> bool:
    directory = source.key_dir / SIGNING_DIR
    return (source.key_dir / SIGNING_FILE).exists() or (
        directory.is_dir() and any(directory.glob("signing-*.pem"))
    )


def _ensure_dev_keys(source: KeySource, settings: Settings) -> bool:
    made = False
    if settings.master_keys is None and not (source.key_dir / MASTER_FILE).exists():
        ring = encryption.Keyring(
            [(f"k1-{b64url_encode(os.urandom(3))}", encryption.generate_key())]
        )
        _write_secret(source.key_dir / MASTER_FILE, ring.serialize().encode())
        made = True
    if settings.index_key is None and not (source.key_dir / INDEX_FILE).exists():
        _write_secret(
            source.key_dir / INDEX_FILE, b64url_encode(encryption.generate_key()).encode()
        )
        made = True
    if settings.signing_key_file is None and not _has_signing_key(source):
        # FileExistsError: another process starting in the same second made it.
        with contextlib.suppress(FileExistsError):
            source.add_signing_key(int(time.time()))
        made = True
    if made:
        log.warning(
            "\n%s\n  DEVELOPMENT KEYS GENERATED in %s\n  Anyone who can read that folder can "
            "decrypt the database and forge tokens.\n  Never use these keys in production "
            "(CONFIDE_ENV=production refuses them).\n%s",
            "!" * 72,
            source.key_dir.resolve(),
            "!" * 72,
        )
    else:
        log.warning("using development keys from %s (not for production)", source.key_dir)
    return True
