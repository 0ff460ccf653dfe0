"""Schemathesis hooks for tests/test_fuzz_api.py (loaded through SCHEMATHESIS_HOOKS).

Times: besides ordinary ones, the edges of what Python's `datetime` holds
(years 1 and 9999) with the widest offsets a zone may have. Arithmetic near
those edges (10 minutes before a room's start, a move to UTC) overflows, and
a generator that draws uniformly over ten thousand years rarely lands there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import schemathesis
from hypothesis import strategies as st

_EDGES = [
    datetime(1, 1, 1),
    datetime(1, 1, 1, 0, 5),
    datetime(1, 1, 2),
    datetime(1899, 12, 31, 23, 59, 59),
    datetime(1900, 1, 1),
    datetime(2026, 11, 24, 20),
    datetime(9998, 12, 31, 23, 59, 59),
    datetime(9999, 1, 1),
    datetime(9999, 12, 31, 23, 55),
    datetime(9999, 12, 31, 23, 59, 59, 999999),
]
_ZONES = [
    UTC,
    timezone(timedelta(hours=23, minutes=59)),
    timezone(-timedelta(hours=23, minutes=59)),
    timezone(timedelta(hours=5, minutes=30)),
]


def _render(moment: datetime, zone: timezone) -> str:
    return moment.replace(tzinfo=zone).isoformat()


DATE_TIMES = st.builds(
    _render,
    st.sampled_from(_EDGES) | st.datetimes(),
    st.sampled_from(_ZONES),
)

schemathesis.openapi.format("date-time", DATE_TIMES)
