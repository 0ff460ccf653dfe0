"""Check-in errors: each a problem-details body on REST and a close code on the socket."""

from __future__ import annotations

from app.core.errors import Forbidden


class SafetyCheckinRequired(Forbidden):
    """A client's room token (or socket, or TURN credentials) in a room whose
    `safety_checkin` is `required`, without a check-in of the last 24 hours:
    403, and the socket closes with 4003 `safety_checkin_required`."""

    code, title = "safety_checkin_required", "Safety check-in required"


class JurisdictionMismatch(Forbidden):
    """The client's checked-in jurisdiction is none the room's hosts are licensed
    for, and the practice refuses such tokens: 403, 4003 `jurisdiction_mismatch`."""

    code, title = "jurisdiction_mismatch", "Jurisdiction not licensed"
