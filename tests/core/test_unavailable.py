"""Which errors mean "a dependency is away" (503 `unavailable`), and which stay bugs (500)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import exc as sa_exc

from app.core.errors import PROBLEM_JSON, is_unavailable
from app.relay.broker import BrokerUnavailable
from app.web.errors import install_error_handlers


class FakeAsyncpgError(Exception):
    """asyncpg's errors carry their SQLSTATE as `sqlstate`."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def dbapi(kind: type[sa_exc.DBAPIError], orig: BaseException) -> sa_exc.DBAPIError:
    return kind("SELECT 1", None, orig)


UNAVAILABLE: dict[str, Callable[[], BaseException]] = {
    "refused": lambda: ConnectionRefusedError(111, "Connect call failed"),
    "several-addresses": lambda: OSError("Multiple exceptions: [Errno 111], [Errno 99]"),
    "timeout": lambda: TimeoutError(),
    "pool-timeout": lambda: sa_exc.TimeoutError("QueuePool limit reached"),
    "connection-closed": lambda: dbapi(sa_exc.InterfaceError, FakeAsyncpgError("08003")),
    "admin-shutdown": lambda: dbapi(sa_exc.OperationalError, FakeAsyncpgError("57P01")),
    "starting-up": lambda: dbapi(sa_exc.OperationalError, FakeAsyncpgError("57P03")),
    "too-many-connections": lambda: dbapi(sa_exc.OperationalError, FakeAsyncpgError("53300")),
    "sqlite-locked": lambda: dbapi(
        sa_exc.OperationalError, sqlite3.OperationalError("database is locked")
    ),
    "sqlite-unopenable": lambda: dbapi(
        sa_exc.OperationalError, sqlite3.OperationalError("unable to open database file")
    ),
}
BUGS: dict[str, Callable[[], BaseException]] = {
    "integrity": lambda: dbapi(sa_exc.IntegrityError, FakeAsyncpgError("23505")),
    "syntax": lambda: dbapi(sa_exc.ProgrammingError, FakeAsyncpgError("42601")),
    "sqlite-no-table": lambda: dbapi(
        sa_exc.OperationalError, sqlite3.OperationalError("no such table: rooms")
    ),
    "key": lambda: KeyError("x"),
    "value": lambda: ValueError("x"),
}


@pytest.mark.parametrize("make", UNAVAILABLE.values(), ids=UNAVAILABLE.keys())
def test_connection_failures_are_unavailable(make: Callable[[], BaseException]) -> None:
    assert is_unavailable(make())


@pytest.mark.parametrize("make", BUGS.values(), ids=BUGS.keys())
def test_other_errors_are_not(make: Callable[[], BaseException]) -> None:
    assert not is_unavailable(make())


def test_an_invalidated_connection_is_unavailable() -> None:
    error = sa_exc.DBAPIError("SELECT 1", None, Exception("gone"), connection_invalidated=True)
    assert is_unavailable(error)


def app_raising(error: BaseException) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app, unavailable=(BrokerUnavailable,))

    @app.get("/boom")
    async def boom() -> None:
        raise error

    return app


async def call(error: BaseException) -> httpx.Response:
    transport = httpx.ASGITransport(app=app_raising(error), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.get("/boom")


@pytest.mark.parametrize(
    "make",
    [*UNAVAILABLE.values(), lambda: BrokerUnavailable("redis down")],
    ids=[*UNAVAILABLE.keys(), "broker"],
)
async def test_unavailable_is_a_503_problem_with_retry_after_and_one_line(
    make: Callable[[], BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="confide.errors"):
        response = await call(make())
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["code"] == "unavailable"
    assert int(response.headers["retry-after"]) >= 1
    records = [r for r in caplog.records if r.name == "confide.errors"]
    assert [(r.levelname, r.exc_info) for r in records] == [("WARNING", None)]
    assert "GET /boom" in records[0].getMessage()


@pytest.mark.parametrize("make", BUGS.values(), ids=BUGS.keys())
async def test_a_bug_stays_a_500(make: Callable[[], BaseException]) -> None:
    response = await call(make())
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
