"""Events as they cross instances: every kind round-trips, and nothing else is read."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core import events
from app.core.close_codes import Close
from app.core.events import (
    KINDS,
    AccountClosed,
    AccountErased,
    Admitted,
    CheckinRecorded,
    DataKeyDestroyed,
    DeviceAdded,
    DeviceRevoked,
    Event,
    EventError,
    LoginRevoked,
    ParticipantAdded,
    ParticipantRemoved,
    Presence,
    RoomEnded,
    RoomLocked,
    RoomSchedule,
    RoomUnlocked,
    SupervisionWithdrawn,
    Unadmitted,
)

ids = st.text(max_size=12)
moments = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)
) | st.just(datetime(2026, 11, 24, 20, 0, tzinfo=timezone(timedelta(hours=2))))
any_event: st.SearchStrategy[Event] = st.one_of(
    st.builds(DeviceAdded, ids, ids, ids, st.none() | ids),
    st.builds(DeviceRevoked, ids, ids),
    st.builds(AccountClosed, ids, st.sampled_from(Close), ids),
    st.builds(LoginRevoked, ids),
    st.builds(
        ParticipantAdded,
        ids,
        ids,
        ids,
        ids,
        st.booleans(),
        st.dictionaries(ids, st.tuples(ids, st.none() | ids), max_size=3).map(
            lambda keys: tuple((d, public, signing) for d, (public, signing) in keys.items())
        ),
    ),
    st.builds(ParticipantRemoved, ids, ids),
    st.builds(Admitted, ids, ids),
    st.builds(Unadmitted, ids, ids),
    st.builds(
        CheckinRecorded, ids, ids, ids, ids, ids, ids, ids, st.none() | moments, st.booleans()
    ),
    st.builds(RoomLocked, ids),
    st.builds(RoomUnlocked, ids),
    st.builds(RoomSchedule, ids, st.none() | moments),
    st.builds(RoomEnded, ids),
    st.builds(SupervisionWithdrawn, ids),
    st.builds(DataKeyDestroyed, ids),
    st.builds(AccountErased, ids, st.lists(ids).map(tuple), st.lists(ids).map(tuple)),
    st.builds(Presence, ids, st.sampled_from(["online", "offline", "waiting"]), ids, ids, ids),
)


@given(any_event)
def test_every_event_round_trips(event: Event) -> None:
    text = events.encode(event)
    assert events.decode(text) == event
    assert json.loads(text)["kind"] == events.kind_of(event)


def test_every_kind_has_a_name() -> None:
    assert set(KINDS.values()) == set(get_args(Event))


def test_the_wire_form_is_the_kind_and_the_fields() -> None:
    event = ParticipantAdded(
        "r", "a", "participant", "Ann", True, (("d1", "k1", "s1"), ("d0", "k0", None))
    )
    assert json.loads(events.encode(event)) == {
        "kind": "participant_added",
        "room": "r",
        "account": "a",
        "role": "participant",
        "display_name": "Ann",
        "admitted": True,
        "devices": {"d1": ["k1", "s1"], "d0": ["k0", None]},
    }
    assert events.decode(events.encode(event)) == event
    added = DeviceAdded("a", "d", "k", None)
    assert json.loads(events.encode(added))["signing_key"] is None
    assert events.decode(events.encode(added)) == added
    ends = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)
    assert json.loads(events.encode(RoomSchedule("r", ends))) == {
        "kind": "room_schedule",
        "room": "r",
        "ends_at": "2026-11-24T20:00:00+00:00",
    }


@pytest.mark.parametrize(
    "data",
    [
        [],
        "room_ended",
        {},
        {"kind": "room_ended"},
        {"kind": "nonsense", "room": "r"},
        {"kind": 5, "room": "r"},
        {"kind": "room_ended", "room": "r", "extra": 1},
        {"kind": "room_ended", "room": 5},
        {"kind": "admitted", "room": "r", "account": None},
        {"kind": "account_closed", "account": "a", "code": 1234, "reason": ""},
        {"kind": "account_closed", "account": "a", "code": True, "reason": ""},
        {"kind": "account_closed", "account": "a", "code": "4001", "reason": ""},
        {"kind": "room_schedule", "room": "r", "ends_at": "tomorrow"},
        {"kind": "room_schedule", "room": "r", "ends_at": "2026-11-24T20:00:00"},
        {"kind": "presence", "room": "r", "event": "dancing", "account": "a", "device": "d"},
        {"kind": "account_erased", "account": "a", "devices": "d1", "rooms": []},
        {"kind": "account_erased", "account": "a", "devices": [1], "rooms": []},
        {
            "kind": "participant_added",
            "room": "r",
            "account": "a",
            "role": "participant",
            "display_name": "",
            "admitted": 1,
            "devices": {},
        },
        {
            "kind": "participant_added",
            "room": "r",
            "account": "a",
            "role": "participant",
            "display_name": "",
            "admitted": True,
            "devices": [["d", "k"]],
        },
        {
            "kind": "participant_added",
            "room": "r",
            "account": "a",
            "role": "participant",
            "display_name": "",
            "admitted": True,
            "devices": {"d": "k"},
        },
        {
            "kind": "participant_added",
            "room": "r",
            "account": "a",
            "role": "participant",
            "display_name": "",
            "admitted": True,
            "devices": {"d": ["k", 5]},
        },
        {"kind": "device_added", "account": "a", "device": "d", "public_key": "k"},
        {
            "kind": "device_added",
            "account": "a",
            "device": "d",
            "public_key": "k",
            "signing_key": 1,
        },
    ],
)
def test_a_malformed_event_is_refused(data: Any) -> None:
    with pytest.raises(EventError):
        events.decode(json.dumps(data))


@given(st.text() | st.binary())
def test_any_text_is_an_event_or_an_event_error(text: str | bytes) -> None:
    with contextlib.suppress(EventError):
        events.decode(text)


plain_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@given(st.sampled_from(sorted(KINDS)), st.dictionaries(st.text(max_size=12), plain_json))
def test_any_object_of_a_known_kind_is_an_event_or_an_event_error(
    kind: str, fields: dict[str, Any]
) -> None:
    with contextlib.suppress(EventError):
        events.decode(json.dumps({**fields, "kind": kind}))
