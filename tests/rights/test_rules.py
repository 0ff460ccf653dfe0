"""The rights requests' clocks and states, as properties over every kind, state and time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from app.rights import rules
from app.rights.rules import RULES, UNDECIDED, RightsKind, RightsState

DAY = timedelta(days=1)
kinds = st.sampled_from(list(RightsKind))
states = st.sampled_from(list(RightsState))
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
offsets = st.timedeltas(min_value=timedelta(days=-10), max_value=timedelta(days=200))


def test_the_table_has_the_rule_of_each_kind() -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    assert rules.due_at(RightsKind.access, at, extended=False) == at + 30 * DAY
    assert rules.due_at(RightsKind.access, at, extended=True) == at + 60 * DAY
    assert rules.due_at(RightsKind.amendment, at, extended=False) == at + 60 * DAY
    assert rules.due_at(RightsKind.amendment, at, extended=True) == at + 90 * DAY
    assert rules.due_at(RightsKind.accounting, at, extended=False) == at + 60 * DAY
    assert rules.due_at(RightsKind.accounting, at, extended=True) == at + 90 * DAY
    assert rules.due_at(RightsKind.restriction, at, extended=False) is None
    assert rules.due_at(RightsKind.restriction, at, extended=True) is None
    assert RULES[RightsKind.access].source == "45 CFR 164.524(b)(2)"


@given(kinds, times, times)
def test_due_at_is_monotone_in_the_receipt(kind: RightsKind, a: datetime, b: datetime) -> None:
    early, late = sorted((a, b))
    for extended in (False, True):
        first = rules.due_at(kind, early, extended=extended)
        second = rules.due_at(kind, late, extended=extended)
        if first is None or second is None:
            assert first is second is None
            assert kind == RightsKind.restriction
        else:
            assert first <= second
            assert second - first == late - early


@given(kinds, times)
def test_an_extension_never_brings_the_deadline_forward(kind: RightsKind, at: datetime) -> None:
    plain = rules.due_at(kind, at, extended=False)
    extended = rules.due_at(kind, at, extended=True)
    if plain is None:
        assert extended is None
    else:
        assert extended is not None
        assert extended - plain == timedelta(days=RULES[kind].extension_days or 0)
        assert plain > at


@given(kinds, states, times, offsets, st.booleans())
def test_an_extension_is_allowed_once_undecided_within_the_first_period_where_the_rule_has_one(
    kind: RightsKind, state: RightsState, at: datetime, after: timedelta, extended: bool
) -> None:
    now = at + after
    refusal = rules.extension_refusal(kind, state, at, extended=extended, now=now)
    first = rules.due_at(kind, at, extended=False)
    allowed = (
        RULES[kind].extension_days is not None
        and not extended
        and state in UNDECIDED
        and first is not None
        and now <= first
    )
    assert (refusal is None) == allowed


@given(kinds, states, times, offsets, st.booleans())
def test_overdue_iff_undecided_and_past_due(
    kind: RightsKind, state: RightsState, at: datetime, after: timedelta, extended: bool
) -> None:
    now = at + after
    due = rules.due_at(kind, at, extended=extended)
    overdue = rules.is_overdue(kind, state, at, extended=extended, now=now)
    assert overdue == (due is not None and state in UNDECIDED and now > due)
    if kind == RightsKind.restriction or state not in UNDECIDED:
        assert not overdue


@given(states, states)
def test_states_only_move_one_step_forward(current: RightsState, to: RightsState) -> None:
    order = {
        RightsState.received: 0,
        RightsState.in_review: 1,
        RightsState.granted: 2,
        RightsState.denied: 2,
        RightsState.closed: 3,
    }
    assert rules.may_move(current, to) == (order[to] == order[current] + 1)


@given(st.lists(states, max_size=12))
def test_any_walk_of_allowed_moves_ends_closed_in_at_most_three_steps(
    wanted: list[RightsState],
) -> None:
    state = RightsState.received
    moves = 0
    for to in wanted:
        if rules.may_move(state, to):
            state = to
            moves += 1
    assert moves <= 3
    assert rules.NEXT[RightsState.closed] == frozenset()
