"""The check-in's pure rules: jurisdiction codes, phones, validity, licensure, the gate."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from app.safety import rules
from app.safety.schemas import CheckinIn, LicensureIn

UPPER = string.ascii_uppercase
codes = st.builds(
    lambda country, sub: f"{country}-{sub}",
    st.text(UPPER, min_size=2, max_size=2),
    st.text(UPPER + string.digits, min_size=1, max_size=3),
)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(codes)
def test_every_iso_3166_2_shaped_code_is_a_jurisdiction(code: str) -> None:
    assert rules.is_jurisdiction(code)
    assert LicensureIn(jurisdictions=[code]).jurisdictions == [code]


@given(st.text(max_size=10))
def test_a_jurisdiction_is_exactly_two_letters_a_hyphen_and_one_to_three_more(text: str) -> None:
    expected = re.fullmatch(r"[A-Z]{2}-[A-Z0-9]{1,3}", text) is not None
    assert rules.is_jurisdiction(text) is expected
    try:
        LicensureIn(jurisdictions=[text])
    except ValidationError:
        accepted = False
    else:
        accepted = True
    assert accepted is expected


@pytest.mark.parametrize("code", ["us-co", "USA-CO", "US-", "US_CO", "US-COLO", "U-CO", " US-CO"])
def test_near_misses_are_refused(code: str) -> None:
    assert not rules.is_jurisdiction(code)


@pytest.mark.parametrize("phone", ["+13035550142", "+1 (303) 555-0142", "303.555.0142", "123456"])
def test_phones_in_common_shapes_are_accepted(phone: str) -> None:
    assert rules.is_phone(phone)


@pytest.mark.parametrize(
    "phone", ["12345", "+1234567890123456", "call me", "++1303555", "-1303555"]
)
def test_what_is_no_phone_is_refused(phone: str) -> None:
    assert not rules.is_phone(phone)
    body = {
        "location": {"address": "Home", "jurisdiction": "US-CO"},
        "emergency_contact": {"name": "Sam", "phone": "+13035550142"},
        "callback_phone": phone,
    }
    with pytest.raises(ValidationError):
        CheckinIn.model_validate(body)


@given(moments, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)))
def test_a_check_in_admits_for_exactly_24_hours(recorded: datetime, later: timedelta) -> None:
    assert rules.is_valid(recorded, recorded + later) is (later < timedelta(hours=24))


@given(codes, st.lists(st.lists(codes, max_size=4), max_size=4))
def test_licensed_when_any_host_holds_the_jurisdiction(code: str, hosts: list[list[str]]) -> None:
    assert rules.licensed(code, hosts) is any(code in each for each in hosts)
    assert rules.licensed(code, [*hosts, [code]])
    assert not rules.licensed(code, [[c for c in each if c != code] for each in hosts])


@given(
    st.sampled_from(["required", "optional", "off"]),
    st.sampled_from(["warn", "refuse"]),
    st.booleans(),
    st.booleans(),
)
def test_the_gate(mode: rules.Mode, policy: rules.Policy, checked_in: bool, lic: bool) -> None:
    licensed = lic if checked_in else None
    why = rules.refusal(mode, policy, checked_in=checked_in, is_licensed=licensed)
    if mode == "required" and not checked_in:
        assert why == "safety_checkin_required"
    elif checked_in and policy == "refuse" and not lic:
        assert why == "jurisdiction_mismatch"
    else:
        assert why is None
