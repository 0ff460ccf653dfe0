"""One refresh token presented N times at once: exactly one wins, the rest are reuse.

Spending a refresh token is one conditional UPDATE (app/auth/service.py,
`refresh`). These tests fire the same token concurrently through the real HTTP
API: over the ASGI app on SQLite and PostgreSQL (requests interleave at every
database round trip), and against two real `confide serve` processes sharing
one PostgreSQL database (requests truly in parallel, on separate connections
and processes). Whatever the interleaving, exactly one request gets 200; every
other one is a 401, either `refresh_reused` (it lost the race and revoked the
family) or `token_invalid` (the family was already revoked when it looked);
and the winner's successor is dead, because the family is revoked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.core.context import Context
from tests.fixtures.accounts import register_client
from tests.fixtures.processes import Server, backend_for, new_user, run_async, running_server

N = 6
ROUNDS = 3


def check_race(answers: list[httpx.Response]) -> str:
    """The one winner's successor refresh token; every loser is a 401 of the expected code."""
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [200] + [401] * (len(answers) - 1), [a.text for a in answers]
    losers = [answer.json()["code"] for answer in answers if answer.status_code == 401]
    assert set(losers) <= {"refresh_reused", "token_invalid"}, losers
    # At least the first loser saw the token spent: reuse was detected, not just refused.
    assert "refresh_reused" in losers, losers
    (winner,) = (answer for answer in answers if answer.status_code == 200)
    successor: str = winner.json()["refresh_token"]
    return successor


async def test_concurrent_refreshes_with_one_token_have_one_winner(
    client: httpx.AsyncClient, ctx: Context
) -> None:
    for _ in range(ROUNDS):
        user = await register_client(client)
        body = {"refresh_token": user.refresh_token}
        answers = await asyncio.gather(
            *(client.post("/v1/auth/refresh", json=body) for _ in range(N))
        )
        successor = check_race(list(answers))
        # Reuse revoked the family: the winner's successor and its access token are dead.
        after = await client.post("/v1/auth/refresh", json={"refresh_token": successor})
        assert after.status_code == 401, after.text
        assert after.json()["code"] in {"refresh_reused", "token_invalid"}
        (winner,) = (a for a in answers if a.status_code == 200)
        me = await client.get(
            "/v1/me", headers={"Authorization": f"Bearer {winner.json()['access_token']}"}
        )
        assert me.status_code == 401


# -- true parallelism: two `confide serve` processes on one PostgreSQL database ---------


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    with (
        backend_for("postgresql", tmp_path / "data") as backend,
        running_server(backend, tmp_path / "logs-a") as first,
        running_server(backend, tmp_path / "logs-b") as second,
    ):
        yield first, second


def test_concurrent_refreshes_across_two_server_processes_have_one_winner(
    two_servers: tuple[Server, Server],
) -> None:
    first, second = two_servers
    urls = [str(first.http.base_url), str(second.http.base_url)]
    email, password, name = new_user("race")
    first.register(email, password, name)

    async def race(token: str) -> list[httpx.Response]:
        clients = [httpx.AsyncClient(base_url=url, timeout=30) for url in urls]
        try:
            # Connect every client first, so the refreshes leave together.
            await asyncio.gather(*(c.get("/healthz") for c in clients for _ in range(N)))
            return list(
                await asyncio.gather(
                    *(
                        clients[i % 2].post("/v1/auth/refresh", json={"refresh_token": token})
                        for i in range(N)
                    )
                )
            )
        finally:
            for c in clients:
                await c.aclose()

    for _ in range(ROUNDS):
        tokens = first.login(email, password)
        answers = run_async(race(tokens["refresh_token"]))
        successor = check_race(answers)
        for server in (first, second):
            after = server.http.post("/v1/auth/refresh", json={"refresh_token": successor})
            assert after.status_code == 401, after.text
        assert first.get("/v1/me", tokens["access_token"]).status_code == 401
    for server in (first, second):
        assert '"status": 500' not in server.logs()
