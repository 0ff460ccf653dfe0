"""Dependencies every domain uses: the running context and the request's unit of work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.context import Context


def client_address(request: Request) -> str:
    """The peer's address, which the log-in throttles count failures by ("unknown" without one)."""
    return request.client.host if request.client else "unknown"


def get_context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


ContextDep = Annotated[Context, Depends(get_context)]


async def get_session(ctx: ContextDep) -> AsyncIterator[AsyncSession]:
    # scope="function" below: the commit happens before the response is sent,
    # so a failed commit is an error answer, never a 201 for lost work.
    async with ctx.transaction() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
