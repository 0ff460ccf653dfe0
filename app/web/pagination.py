"""Cursor pagination for the lists that grow: `limit` and `cursor` in, next cursor out.

A list stays a JSON array (the wire contract's "Lists are JSON arrays"); when
more items follow, the answer carries the cursor of the next page in
`X-Next-Cursor` and, the same, as an RFC 8288 `Link: <...>; rel="next"`.
A client that ignores both gets the first `limit` items, as before.

The cursor is the sealed sort key of the page's last item (app/core/cursors.py),
bound to the list and the caller: the next page starts after that key, so an
item added or removed meanwhile neither repeats nor skips another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import Depends, Query, Request, Response

from app.core import cursors
from app.core.cursors import InvalidCursor, Position
from app.web.deps import ContextDep

T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
NEXT_CURSOR = "X-Next-Cursor"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: The 200 answer's headers of a paginated list, for `responses=`.
PAGED_HEADERS: dict[str, Any] = {
    NEXT_CURSOR: {
        "description": "The cursor of the next page; absent on the last page.",
        "schema": {"type": "string", "maxLength": cursors.MAX_CURSOR_CHARS},
    },
    "Link": {
        "description": 'The next page as an RFC 8288 link (`<...>; rel="next"`); absent on the'
        " last page.",
        "schema": {"type": "string"},
    },
}


def micros(value: datetime) -> int:
    """A time as integer microseconds since the epoch (a naive time is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(microseconds=1)


def cut(
    items: Sequence[T],
    key: Callable[[T], Position],
    after: Position | None,
    limit: int,
    *,
    descending: bool = False,
) -> tuple[list[T], Position | None]:
    """The page of `items` (in `key` order, or its reverse) that follows `after`, and the
    position the next page follows (None on the last page)."""
    ordered = sorted(items, key=key, reverse=descending)
    if after is not None:
        try:
            ordered = [
                item for item in ordered if (key(item) < after if descending else key(item) > after)
            ]
        except TypeError:  # a position of another shape (an older cursor)
            raise InvalidCursor("The cursor is not one this list handed out.") from None
    page = ordered[:limit]
    return page, (key(page[-1]) if len(ordered) > limit else None)


class Page:
    """One list request's `limit` and `cursor`; `take` cuts its page."""

    def __init__(
        self, request: Request, response: Response, key: bytes, limit: int, cursor: str | None
    ) -> None:
        self.request = request
        self.response = response
        self.key = key
        self.limit = limit
        self.cursor = cursor

    def position(self, scope: Sequence[str]) -> Position | None:
        """The position the request's cursor names (None: the first page)."""
        if self.cursor is None:
            return None
        return cursors.open_(self.key, scope, self.cursor)

    def next_after(self, scope: Sequence[str], position: Position) -> None:
        """Announce the next page: it starts after `position`."""
        cursor = cursors.seal(self.key, scope, position)
        query = [(k, v) for k, v in self.request.query_params.multi_items() if k != "cursor"]
        link = f"{self.request.url.path}?{urlencode([*query, ('cursor', cursor)])}"
        self.response.headers[NEXT_CURSOR] = cursor
        self.response.headers["Link"] = f'<{link}>; rel="next"'

    def take(
        self,
        items: Sequence[T],
        key: Callable[[T], Position],
        scope: Sequence[str],
        *,
        descending: bool = False,
    ) -> list[T]:
        """The page of `items` (in `key` order, or its reverse) after the cursor.

        `scope` names the list and the caller (for example `("rooms", account id)`):
        a cursor opens only in the scope that sealed it.
        """
        page, last = cut(items, key, self.position(scope), self.limit, descending=descending)
        if last is not None:
            self.next_after(scope, last)
        return page


def page_params(
    request: Request,
    response: Response,
    ctx: ContextDep,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="The most items to answer (1–1000).")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=cursors.MAX_CURSOR_CHARS,
            description="Where to go on: the `X-Next-Cursor` of the page before, as it came.",
        ),
    ] = None,
) -> Page:
    return Page(request, response, cursors.cursor_key(ctx.keys.index_key), limit, cursor)


PageDep = Annotated[Page, Depends(page_params)]


def paged(entries: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries of a paginated list: its errors, and the next-page headers."""
    out = {200: {"headers": PAGED_HEADERS}, **entries}
    if 422 in out:
        out[422] = {**out[422], "description": f"{out[422]['description']}, {InvalidCursor.code}"}
    return out
