from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from app.core.schemas import Clean, RequestModel, ResponseModel, with_example
from app.safety import rules
from app.safety.service import Checkin


def _phone(value: str) -> str:
    if not rules.is_phone(value):
        raise ValueError(
            "must be a phone number: an optional +, then 6 to 15 digits"
            " (spaces, dots, hyphens and parentheses allowed)"
        )
    return value


Jurisdiction = Annotated[
    str,
    StringConstraints(min_length=4, max_length=6, pattern=rules.JURISDICTION),
    Field(description="ISO 3166-2 subdivision code", examples=["US-CO"]),
]
Phone = Annotated[
    str,
    StringConstraints(min_length=6, max_length=32),
    Clean,
    AfterValidator(_phone),
    Field(examples=["+1 303 555 0142"]),
]
Address = Annotated[str, StringConstraints(min_length=1, max_length=500), Clean]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200), Clean]


class LocationIn(RequestModel):
    address: Address = Field(examples=["1600 Pennsylvania St, Denver, CO 80203"])
    jurisdiction: Jurisdiction


class EmergencyContactIn(RequestModel):
    name: Name = Field(examples=["Sam Rivera"])
    phone: Phone


class CheckinIn(RequestModel):
    """Where the client is, whom to call in an emergency, and where to call back."""

    location: LocationIn
    emergency_contact: EmergencyContactIn
    callback_phone: Phone


class Location(ResponseModel):
    address: str
    jurisdiction: str


class EmergencyContact(ResponseModel):
    name: str
    phone: str


CHECKIN_EXAMPLE = {
    "account_id": "0b8e3a52-5d3e-4c1a-9a53-3f0d2f7c9e11",
    "room_id": "7d2c9a4e-6b1f-4e8a-9c3d-1f5e7a9b2c40",
    "location": {"address": "1600 Pennsylvania St, Denver, CO 80203", "jurisdiction": "US-CO"},
    "emergency_contact": {"name": "Sam Rivera", "phone": "+1 303 555 0142"},
    "callback_phone": "+1 303 555 0199",
    "recorded_at": "2026-11-24T19:55:00Z",
    "valid_until": "2026-11-25T19:55:00Z",
    "valid": True,
    "jurisdiction_licensed": True,
    "jurisdiction_mismatch": False,
}


class CheckinOut(ResponseModel):
    """A client's latest check-in for a room."""

    model_config = with_example(CHECKIN_EXAMPLE)

    account_id: str
    room_id: str
    location: Location
    emergency_contact: EmergencyContact
    callback_phone: str
    recorded_at: datetime
    valid_until: datetime = Field(description="24 hours after recorded_at")
    valid: bool = Field(description="whether it still admits the client to the room now")
    jurisdiction_licensed: bool | None = Field(
        description="whether a host of the room is licensed for the jurisdiction"
        " (the hosts' view; null in the client's own)"
    )
    jurisdiction_mismatch: bool | None = Field(
        description="not jurisdiction_licensed (the hosts' view; null in the client's own)"
    )


class LicensureIn(RequestModel):
    jurisdictions: list[Jurisdiction] = Field(max_length=100, examples=[["US-CO", "US-NY"]])


class LicensureOut(ResponseModel):
    model_config = with_example(
        {"account_id": "5e0c3d7a-1f7e-4b53-8d0c-2a4f6b9e8d10", "jurisdictions": ["US-CO", "US-NY"]}
    )

    account_id: str
    jurisdictions: list[str]


def checkin_out(each: Checkin, *, valid: bool, licensed: bool | None) -> CheckinOut:
    """`each` as the endpoints answer it; `licensed` None outside the hosts' view."""
    return CheckinOut(
        account_id=each.account_id,
        room_id=each.room_id,
        location=Location(address=each.address, jurisdiction=each.jurisdiction),
        emergency_contact=EmergencyContact(name=each.contact_name, phone=each.contact_phone),
        callback_phone=each.callback_phone,
        recorded_at=each.recorded_at,
        valid_until=each.valid_until,
        valid=valid,
        jurisdiction_licensed=licensed,
        jurisdiction_mismatch=None if licensed is None else not licensed,
    )
