"""The safety check-in's and licensure's rules, without I/O (PROTOCOL.md, "Safety check-in
and licensure").

- A jurisdiction is an ISO 3166-2 subdivision code: a country's two letters,
  a hyphen, one to three letters or digits (`US-CO`, `CA-ON`, `FR-75C`).
- A check-in is valid for 24 hours after it was recorded: one session day,
  whatever the room's schedule (a room without times, a session that runs
  past midnight UTC). A client checks in again for the next day's session.
- A client's jurisdiction is licensed when at least one of the room's hosts
  is licensed for it: that host can lead the session.
- The gate, for a client (never a host): a room whose `safety_checkin` is
  `required` needs a valid check-in (`safety_checkin_required`); with the
  practice's `refuse` policy, a valid check-in from a jurisdiction no host is
  licensed for refuses the token (`jurisdiction_mismatch`). With `warn` the
  token is issued and the hosts see the mismatch. A room whose setting is
  `optional` or `off` checks a check-in's jurisdiction only when there is one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal

#: ISO 3166-2: country code, hyphen, subdivision of 1 to 3 letters or digits.
JURISDICTION = r"^[A-Z]{2}-[A-Z0-9]{1,3}$"
_JURISDICTION = re.compile(JURISDICTION)
#: A phone number, loosely: an optional +, digits, spaces, dots, hyphens and
#: parentheses; 6 to 15 digits (E.164's most).
PHONE = r"^\+?[0-9][0-9 ().\-]{4,30}$"
_PHONE = re.compile(PHONE)
PHONE_DIGITS = (6, 15)
#: How long a check-in admits its client to the room.
VALID_FOR = timedelta(hours=24)

Mode = Literal["required", "optional", "off"]
Policy = Literal["warn", "refuse"]
Refusal = Literal["safety_checkin_required", "jurisdiction_mismatch"]


def is_jurisdiction(code: str) -> bool:
    return _JURISDICTION.fullmatch(code) is not None


def is_phone(value: str) -> bool:
    if _PHONE.fullmatch(value) is None:
        return False
    digits = sum(ch.isdigit() for ch in value)
    return PHONE_DIGITS[0] <= digits <= PHONE_DIGITS[1]


def valid_until(recorded_at: datetime) -> datetime:
    return recorded_at + VALID_FOR


def is_valid(recorded_at: datetime, now: datetime) -> bool:
    """Whether a check-in recorded at `recorded_at` still admits at `now`."""
    return now < valid_until(recorded_at)


def licensed(jurisdiction: str, hosts: Iterable[Iterable[str]]) -> bool:
    """Whether any host (each given by the jurisdictions they are licensed for) is
    licensed for `jurisdiction`."""
    return any(jurisdiction in set(each) for each in hosts)


def refusal(
    mode: Mode, policy: Policy, *, checked_in: bool, is_licensed: bool | None
) -> Refusal | None:
    """Why a client's room token is refused, or None.

    `checked_in`: the client has a valid check-in for the room; `is_licensed`:
    whether its jurisdiction is licensed (None without a valid check-in).
    """
    if mode == "required" and not checked_in:
        return "safety_checkin_required"
    if checked_in and policy == "refuse" and is_licensed is False:
        return "jurisdiction_mismatch"
    return None
