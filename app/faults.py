"""Test faults: a server that lies, for client test suites only.

`CONFIDE_TEST_FAULT` turns one on; production refuses to start with any
value (app/core/config.py). Nothing imports this module unless the setting
is set: `create_app` imports it then, and only then, and routes the faulty
answers before the real ones.

`swap_device_key`: the key-log endpoint answers, for every account, a log in
which the signing key of each `device_added` entry is replaced by a key the
server made (a fresh P-256 point per device, the same for the life of the
process), with every hash recomputed and the head signed again with the
server's real signing key. That is exactly what a compromised server could
do: the chain, the hashes and the signed head all verify; only the identity
key's signature over the device statement (which the server cannot make)
gives it away. A client's check must refuse such a log at its first
`device_added` entry.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, FastAPI, Query

from app.auth.dependencies import CurrentPrincipal
from app.core.codec import b64url_decode, b64url_encode
from app.core.tokens import TokenService
from app.keys.log import DEVICE_ADDED, ZERO_HASH, make_entry
from app.keys.schemas import KeyLogEntryOut, KeyLogOut, SignedHead
from app.rooms import key_log as real
from app.web.deps import ContextDep, SessionDep

Fault = Literal["swap_device_key"]
log = logging.getLogger("confide")


class SwappedKeys:
    """The server's own signing key for each (account, device), made on first use."""

    def __init__(self) -> None:
        self._points: dict[tuple[str, str], bytes] = {}

    def point(self, account_id: str, device_id: str) -> bytes:
        key = (account_id, device_id)
        if key not in self._points:
            public = ec.generate_private_key(ec.SECP256R1()).public_key()
            self._points[key] = public.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        return self._points[key]


def _raw(value: str | None) -> bytes:
    return b64url_decode(value) if value else b""


def swap_device_keys(
    whole: KeyLogOut, after: int, swapped: SwappedKeys, tokens: TokenService
) -> KeyLogOut:
    """`whole` (the log from its first entry) with every device's signing key swapped,
    rehashed from the start; the entries after `after`, and a head signed anew."""
    account_id = whole.account_id
    prev = ZERO_HASH
    out: list[KeyLogEntryOut] = []
    for item in whole.entries:
        signing_key = _raw(item.signing_key)
        if item.kind == DEVICE_ADDED and item.device_id:
            signing_key = swapped.point(account_id, item.device_id)
        entry = make_entry(
            account_id,
            item.seq,
            item.kind,
            prev,
            device_id=item.device_id or "",
            identity_key=_raw(item.identity_key),
            signing_key=signing_key,
            public_key=_raw(item.public_key),
            signature=_raw(item.signature),
        )
        prev = entry.hash
        out.append(
            item.model_copy(
                update={
                    "signing_key": b64url_encode(signing_key) if signing_key else None,
                    "prev_hash": entry.prev_hash.hex(),
                    "hash": entry.hash.hex(),
                }
            )
        )
    head = None
    if whole.head is not None and out:
        last = out[-1]
        head = SignedHead(
            seq=last.seq,
            hash=last.hash,
            jws=tokens.sign_key_log_head(account_id=account_id, seq=last.seq, head=last.hash),
        )
    return KeyLogOut(account_id=account_id, entries=[e for e in out if e.seq > after], head=head)


def _swap_device_key_router() -> APIRouter:
    router = APIRouter()
    swapped = SwappedKeys()

    @router.get(
        "/v1/accounts/{account_id}/key-log", response_model=KeyLogOut, include_in_schema=False
    )
    async def lying_key_log(
        account_id: str,
        principal: CurrentPrincipal,
        session: SessionDep,
        ctx: ContextDep,
        after: Annotated[int, Query(ge=0, le=2**53)] = 0,
    ) -> KeyLogOut:
        whole = await real.key_log(account_id, principal, session, ctx, 0)
        return swap_device_keys(whole, after, swapped, ctx.tokens)

    return router


def install(app: FastAPI, fault: Fault) -> None:
    """Route the fault's answers ahead of the real ones."""
    if fault == "swap_device_key":
        app.include_router(_swap_device_key_router())
    log.warning(
        "CONFIDE_TEST_FAULT=%s: this server lies on purpose, for client test suites only", fault
    )
