"""The clocks and the states of a client's rights request: pure, no I/O.

Each kind of request has the clock the Privacy Rule gives it, counted from
the receipt of the request:

| kind | due | one extension | source |
|---|---|---|---|
| access | 30 days | 30 days, with a written reason | 45 CFR 164.524(b)(2) |
| amendment | 60 days | 30 days, with a written reason | 45 CFR 164.526(b)(2) |
| accounting | 60 days | 30 days, with a written reason | 45 CFR 164.528(c)(1) |
| restriction | none | none | 45 CFR 164.522(a) |

The rule of each extension says the practice must tell the person the reason
within the first period, so an extension is allowed only up to the original
`due_at`, only once, and only while the request is still undecided.

A restriction request has no statutory clock: 164.522(a) lets the practice
agree or refuse without a deadline (only a restriction of disclosures to a
health plan of care paid in full, 164.522(a)(1)(vi), must be agreed to).
Inventing a deadline would present a practice choice as a legal one, so a
restriction has no `due_at` and is never overdue; the admin list still shows
it undecided until someone moves it.

States move forward one step at a time along
received → in_review → granted | denied → closed;
a request is decided once granted or denied, and overdue when it is
undecided past its `due_at`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta


class RightsKind(enum.StrEnum):
    access = "access"
    amendment = "amendment"
    restriction = "restriction"
    accounting = "accounting"


class RightsState(enum.StrEnum):
    received = "received"
    in_review = "in_review"
    granted = "granted"
    denied = "denied"
    closed = "closed"


@dataclass(frozen=True)
class Rule:
    """A kind's clock: days to act from receipt, days of its one extension, and where it is."""

    days: int | None
    extension_days: int | None
    source: str


RULES: dict[RightsKind, Rule] = {
    RightsKind.access: Rule(30, 30, "45 CFR 164.524(b)(2)"),
    RightsKind.amendment: Rule(60, 30, "45 CFR 164.526(b)(2)"),
    RightsKind.accounting: Rule(60, 30, "45 CFR 164.528(c)(1)"),
    RightsKind.restriction: Rule(None, None, "45 CFR 164.522(a)"),
}

#: The moves allowed from each state: one step forward, never back, never in place.
NEXT: dict[RightsState, frozenset[RightsState]] = {
    RightsState.received: frozenset({RightsState.in_review}),
    RightsState.in_review: frozenset({RightsState.granted, RightsState.denied}),
    RightsState.granted: frozenset({RightsState.closed}),
    RightsState.denied: frozenset({RightsState.closed}),
    RightsState.closed: frozenset(),
}
UNDECIDED = frozenset({RightsState.received, RightsState.in_review})


def first_due(kind: RightsKind, received_at: datetime) -> datetime | None:
    """The due time before any extension (None: the kind has no clock)."""
    days = RULES[kind].days
    return None if days is None else received_at + timedelta(days=days)


def due_at(kind: RightsKind, received_at: datetime, *, extended: bool) -> datetime | None:
    """When the practice must act on the request (None: the kind has no clock)."""
    first = first_due(kind, received_at)
    extra = RULES[kind].extension_days
    if first is None or not extended or extra is None:
        return first
    return first + timedelta(days=extra)


def may_move(current: RightsState, to: RightsState) -> bool:
    return to in NEXT[current]


def extension_refusal(
    kind: RightsKind, state: RightsState, received_at: datetime, *, extended: bool, now: datetime
) -> str | None:
    """Why the request cannot be extended now, or None when it can."""
    if RULES[kind].extension_days is None:
        return f"A {kind.value} request has no extension."
    if extended:
        return "The request has been extended already; the rule allows one extension."
    if state not in UNDECIDED:
        return "The request has been decided; only an undecided one is extended."
    first = first_due(kind, received_at)
    if first is not None and now > first:
        return "The first period has passed; an extension is given within it."
    return None


def is_overdue(
    kind: RightsKind, state: RightsState, received_at: datetime, *, extended: bool, now: datetime
) -> bool:
    """Undecided and past its due time."""
    due = due_at(kind, received_at, extended=extended)
    return state in UNDECIDED and due is not None and now > due
