"""The pure part of pagination (app/web/pagination.cut): following the pages of a list
yields each item once, in order, also when items come and go between pages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.cursors import InvalidCursor, Position
from app.web.pagination import cut

Item = tuple[int, str]
items = st.lists(st.tuples(st.integers(-5, 5), st.text("ab", max_size=3)), unique=True)


def key(item: Item) -> Position:
    return item


def walk(found: list[Item], limit: int, descending: bool) -> tuple[list[Item], int]:
    out: list[Item] = []
    after: Position | None = None
    pages = 0
    while True:
        page, after = cut(found, key, after, limit, descending=descending)
        assert len(page) <= limit
        out += page
        pages += 1
        if after is None:
            return out, pages


@given(items, st.integers(1, 6), st.booleans())
def test_the_pages_make_the_whole_list(found: list[Item], limit: int, descending: bool) -> None:
    out, pages = walk(found, limit, descending)
    assert out == sorted(found, reverse=descending)
    assert pages == max(1, -(-len(found) // limit))


@given(items, items, st.integers(1, 4), st.booleans())
def test_a_change_between_pages_repeats_and_skips_nothing(
    before: list[Item], later: list[Item], limit: int, descending: bool
) -> None:
    first, after = cut(before, key, None, limit, descending=descending)
    if after is None:
        return
    rest: list[Item] = []
    while after is not None:
        page, after = cut(later, key, after, limit, descending=descending)
        rest += page
    assert not set(first) & set(rest)
    ordered = first + rest
    assert ordered == sorted(ordered, reverse=descending)
    # Whatever is still there after the first page's end is found.
    edge = first[-1]
    beyond = [i for i in later if (i < edge if descending else i > edge)]
    assert sorted(beyond, reverse=descending) == rest


def test_a_position_of_another_shape_is_an_invalid_cursor() -> None:
    with pytest.raises(InvalidCursor):
        cut([(1, "a")], key, ("x", 1), 10)
