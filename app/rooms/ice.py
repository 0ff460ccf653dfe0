"""ICE servers for a room's WebRTC calls, and TURN credentials (PROTOCOL.md, ICE servers).

Credentials follow the TURN REST API convention that coturn's `use-auth-secret`
checks: `username` = `<expiry unix time>:<handle>`, `credential` =
base64(HMAC-SHA1(shared secret, username)). The handle is opaque: a blind index
of (room, account), stable for one participant of one room, revealing neither
the account id nor the email to the TURN server or its logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Protocol

from app.core.config import Settings
from app.rooms.schemas import IceServer, IceServersOut

ICE_TTL = timedelta(hours=1)
"""The longest a credential lives; a room's end shortens it."""

HANDLE_PURPOSE = "turn.handle"
HANDLE_HEX_CHARS = 32


class Indexer(Protocol):
    """A keyed blind index, as `Vault.index`."""

    def __call__(self, value: str, *, purpose: str) -> bytes: ...


def turn_credentials(secret: bytes, handle: str, expires: int) -> tuple[str, str]:
    """(username, credential) that coturn's `use-auth-secret` accepts until `expires`."""
    username = f"{expires}:{handle}"
    digest = hmac.new(secret, username.encode("utf-8"), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def participant_handle(index_key_fn: Indexer, room_id: str, account_id: str) -> str:
    """An opaque name for one participant of one room."""
    digest = index_key_fn(f"{room_id}:{account_id}", purpose=HANDLE_PURPOSE)
    return digest.hex()[:HANDLE_HEX_CHARS]


def ice_servers(
    settings: Settings,
    *,
    room_id: str,
    account_id: str,
    now: datetime,
    ends_at: datetime | None,
    index_key_fn: Indexer,
) -> IceServersOut:
    """The ICE servers a participant may use now; with TURN, credentials valid until
    an hour from now or the room's end, whichever is first."""
    if settings.turn_secret is None:
        stun = [url for url in settings.turn_urls if url.startswith("stun:")]
        servers = [IceServer(urls=stun)] if stun else []
        return IceServersOut(ice_servers=servers, expires_at=None)
    if not settings.turn_urls:
        return IceServersOut(ice_servers=[], expires_at=None)
    until = now + ICE_TTL
    if ends_at is not None:
        until = min(until, ends_at)
    expires = int(until.timestamp())  # rounded down: never past the room's end
    username, credential = turn_credentials(
        settings.turn_secret.get_secret_value().encode("utf-8"),
        participant_handle(index_key_fn, room_id, account_id),
        expires,
    )
    return IceServersOut(
        ice_servers=[
            IceServer(urls=list(settings.turn_urls), username=username, credential=credential)
        ],
        expires_at=datetime.fromtimestamp(expires, UTC),
    )
