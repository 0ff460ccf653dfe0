"""Where key material comes from.

Development: generated on first start into `CONFIDE_DATA_DIR/keys/` (mode
0600) with a loud warning. Production (`CONFIDE_ENV=production`): the master
keys, the blind-index key and the signing key must come from configuration;
the server refuses to start otherwise, and never uses generated keys.
"""

from __future__ import annotations

import base64
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from app.core import encryption
from app.core.config import Settings
from app.core.tokens import SigningKey, generate_signing_key_pem, load_signing_key

log = logging.getLogger("confide.keys")

MASTER_FILE = "master_keys"
INDEX_FILE = "index_key"
SIGNING_FILE = "signing_key.pem"


class KeyConfigError(RuntimeError):
    pass


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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


@dataclass
class KeySource:
    """Reads the master keyring again on demand (after `confide keys rotate`)."""

    settings: Settings

    @property
    def key_dir(self) -> Path:
        return self.settings.data_dir / "keys"

    def keyring(self) -> encryption.Keyring:
        if self.settings.master_keys is not None:
            return encryption.Keyring.parse(self.settings.master_keys.get_secret_value())
        return encryption.Keyring.parse((self.key_dir / MASTER_FILE).read_text())

    def add_master_key(self) -> str:
        """Add a new newest master key (development key file only)."""
        if self.settings.master_keys is not None:
            raise KeyConfigError(
                "master keys come from CONFIDE_MASTER_KEYS: append the new key there "
                "on every instance, then run `confide keys rotate` again"
            )
        ring = self.keyring()
        kid = f"k{len(ring.kids()) + 1}-{b64url(os.urandom(3))}"
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
        index_key = b64url_decode(settings.index_key.get_secret_value())
    else:
        index_key = b64url_decode((source.key_dir / INDEX_FILE).read_text())
    if len(index_key) != encryption.KEY_BYTES:
        raise KeyConfigError("the index key must be 32 bytes")

    signing_path = settings.signing_key_file or source.key_dir / SIGNING_FILE
    signing_keys = [load_signing_key(signing_path.read_bytes())]
    return KeyMaterial(source, source.keyring(), index_key, signing_keys, generated)


def _ensure_dev_keys(source: KeySource, settings: Settings) -> bool:
    made = False
    if settings.master_keys is None and not (source.key_dir / MASTER_FILE).exists():
        ring = encryption.Keyring([(f"k1-{b64url(os.urandom(3))}", encryption.generate_key())])
        _write_secret(source.key_dir / MASTER_FILE, ring.serialize().encode())
        made = True
    if settings.index_key is None and not (source.key_dir / INDEX_FILE).exists():
        _write_secret(source.key_dir / INDEX_FILE, b64url(encryption.generate_key()).encode())
        made = True
    if settings.signing_key_file is None and not (source.key_dir / SIGNING_FILE).exists():
        _write_secret(source.key_dir / SIGNING_FILE, generate_signing_key_pem())
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
