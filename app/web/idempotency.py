"""`Idempotency-Key` on the writes a client may retry (decision note 0013).

A route takes `IdempotencyDep` and runs its write through `Once.run`:

    return await once.run(session, ctx, principal.account, act)

Without the header the write runs as before. With it, the first request claims
the key inside its own transaction and stores its success answer there; a retry
with the same body gets that answer again (same status and body, with
`Idempotent-Replayed: true`), whatever happened since; the same key with another
body or target is 422 `idempotency_key_reused`; a bad key is 400
`idempotency_key_invalid`. A duplicate sent while the first is still running
waits for it (the claim's unique hash), then gets its answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import idempotency as rules
from app.core.context import Context
from app.core.errors import ConfideError, ValidationFailed
from app.idempotency import service
from app.models import Account

#: What a route's write gives back: its status and its answer.
Act = Callable[[], Awaitable[tuple[int, BaseModel]]]


@dataclass(frozen=True)
class Once:
    """The request as the key sees it; `client_key` None when no key was sent."""

    client_key: str | None
    route: str
    method: str
    path: str
    body: bytes

    async def run(
        self, session: AsyncSession, ctx: Context, account: Account, act: Act
    ) -> JSONResponse:
        """Run `act` once for this key; a retry gets the stored answer."""
        if self.client_key is None:
            status, model = await act()
            return JSONResponse(jsonable_encoder(model), status_code=status)
        data_key_id = account.data_key_id
        assert data_key_id is not None  # a live account has its data key
        derived = rules.derive_key(ctx.keys.index_key)
        key_hash = rules.key_hash(
            derived, account_id=account.id, route=self.route, client_key=self.client_key
        )
        fingerprint = rules.fingerprint(
            derived, key_hash, method=self.method, path=self.path, body=self.body
        )
        found = await service.claim(session, ctx, data_key_id, key_hash, fingerprint)
        if isinstance(found, service.Answer):
            return JSONResponse(
                found.body, status_code=found.status, headers={rules.REPLAYED_HEADER: "true"}
            )
        try:
            status, model = await act()
        except ConfideError as error:
            if error.persist:  # its unit of work commits: the claim must not
                await service.release(session, found)
            raise
        body = jsonable_encoder(model)
        await service.complete(session, ctx, data_key_id, found, service.Answer(status, body))
        return JSONResponse(body, status_code=status)


async def once(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=rules.HEADER,
            description=(
                "Optional. A key of the client's choosing (a UUID will do; 1-255 visible ASCII"
                " characters, no quotes or spaces) that makes a retry of this write safe: the"
                " first success answer is stored for 24 hours and sent again, with"
                " `Idempotent-Replayed: true`, to a retry with the same body."
            ),
        ),
    ] = None,
) -> Once:
    client_key = None if idempotency_key is None else rules.parse_key(idempotency_key)
    route = request.scope.get("route")
    return Once(
        client_key=client_key,
        route=str(getattr(route, "path", "")),
        method=request.method,
        path=request.url.path,
        body=await request.body() if client_key is not None else b"",
    )


IdempotencyDep = Annotated[Once, Depends(once)]

#: The errors a route that takes the key may answer with (for its `responses`).
ERRORS: tuple[type[ConfideError], ...] = (
    rules.IdempotencyKeyInvalid,
    ValidationFailed,
    rules.IdempotencyKeyReused,
)


def replayed(
    declared: dict[int | str, dict[str, Any]], *statuses: int
) -> dict[int | str, dict[str, Any]]:
    """`declared` (a route's `responses`) with `Idempotent-Replayed` on its success answers."""
    header = {
        "description": "`true` when this is the stored answer to an earlier request with the"
        " same `Idempotency-Key` (nothing was done again); absent on a first answer.",
        "schema": {"type": "string", "enum": ["true"]},
    }
    for status in statuses:
        declared.setdefault(status, {}).setdefault("headers", {})[rules.REPLAYED_HEADER] = header
    return declared
