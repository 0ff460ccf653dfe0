"""How many statements a room token costs: a guard that fails if the token path gains queries.

Every statement sent while one `POST /v1/rooms/{id}/token` is served is counted
(SQLAlchemy's `before_cursor_execute` on every engine, the audit writer's too;
asyncpg's BEGIN and COMMIT and the pool's ping do not go through a cursor), for
a host and for a client who must have accepted the room's consent documents.
Each figure is the most the path may take; lower it when the path gets cheaper.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from app.core.context import Context
from tests.fixtures.accounts import User
from tests.rooms.test_rooms import (
    accept,
    add_device,
    create_room,
    invite,
    publish_documents,
    room_token,
)

#: The most statements one room token may cost, by who asks.
HOST_LIMIT = 8
CLIENT_LIMIT = 11


@pytest.fixture
def dialect() -> str:
    return "postgresql"  # production's database, with its advisory lock for the audit chain


@contextmanager
def counting() -> Iterator[list[str]]:
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    # Every engine's: the audit chain's writer has its own.
    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", count)


async def test_a_room_token_costs_at_most_a_few_statements(
    client: httpx.AsyncClient,
    ctx: Context,
    counselor: User,
    client_user: User,
    admin: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    documents = await publish_documents(client, admin)
    for kind in ("informed_consent", "telehealth"):
        await accept(client, client_user, documents[kind])
    room = await create_room(client, counselor)
    await invite(client, counselor, room["id"], client_user)
    host_device = await add_device(client, counselor)
    client_device = await add_device(client, client_user)
    # Once first: what a process caches (keys, documents) is warm, as it is in service.
    for user, device in ((counselor, host_device), (client_user, client_device)):
        assert (await room_token(client, user, room["id"], device)).status_code == 200

    async def no_argon2(*_: object) -> object:
        raise AssertionError("argon2 on the room token's path")

    # Nothing on this path hashes or checks a password.
    monkeypatch.setattr(ctx.passwords, "hash", no_argon2)
    monkeypatch.setattr(ctx.passwords, "verify", no_argon2)
    for user, device, limit in (
        (counselor, host_device, HOST_LIMIT),
        (client_user, client_device, CLIENT_LIMIT),
    ):
        with counting() as statements:
            response = await room_token(client, user, room["id"], device)
        assert response.status_code == 200, response.text
        print(f"{user.id[:6]}: {len(statements)} statements", *statements, sep="\n  ")
        assert len(statements) <= limit, statements
