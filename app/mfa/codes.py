"""The pure rules of one-time codes: TOTP steps (RFC 6238) and recovery codes.

TOTP: 30-second steps, 6 digits, a code of the step before or after the
current one is accepted (clock drift), and never a code of a step at or before
the last one accepted (a replayed or older code).

Recovery codes: 16 base32 characters (80 bits), shown as `xxxx-xxxx-xxxx-xxxx`;
what a person types is normalised (case, dashes, spaces) before hashing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import pyotp

STEP_S = 30
DIGITS = 6
WINDOW = 1
RECOVERY_CODES = 10
_RECOVERY_CHARS = 16
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def new_secret() -> str:
    """A TOTP secret: 160 random bits, base32 (what authenticator apps read)."""
    return pyotp.random_base32(32)


def step_at(time_s: float) -> int:
    return int(time_s // STEP_S)


def code_at_step(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).at(step * STEP_S)


def accepted_step(secret: str, code: str, time_s: float, last_step: int | None) -> int | None:
    """The step `code` proves at `time_s`, or None (wrong, outside the window, or replayed)."""
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    now = step_at(time_s)
    for step in range(now - WINDOW, now + WINDOW + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(code_at_step(secret, step), code):
            return step
    return None


def provisioning_uri(secret: str, *, account_name: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).provisioning_uri(
        name=account_name, issuer_name=issuer
    )


def format_recovery(raw: str) -> str:
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def normalise_recovery(code: str) -> str | None:
    """The 16 characters a typed recovery code stands for, or None if it cannot be one."""
    raw = "".join(code.split()).replace("-", "").lower()
    if len(raw) != _RECOVERY_CHARS or any(c not in _BASE32 for c in raw):
        return None
    return raw


def new_recovery_codes() -> list[str]:
    """Ten fresh codes, formatted for showing."""
    return [
        format_recovery("".join(secrets.choice(_BASE32) for _ in range(_RECOVERY_CHARS)))
        for _ in range(RECOVERY_CODES)
    ]


def hash_recovery(code: str) -> str:
    """SHA-256 (hex) of the normalised code: enough at 80 bits of entropy."""
    raw = normalise_recovery(code)
    if raw is None:
        raise ValueError("not a recovery code")
    return hashlib.sha256(raw.encode()).hexdigest()
