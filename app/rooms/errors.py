"""Room errors: each maps to a problem-details body on REST and a close code on the socket."""

from __future__ import annotations

from app.core.close_codes import Close
from app.core.errors import Conflict, Forbidden, NotFound, ValidationFailed


class RoomNotFound(NotFound):
    """No room has this id: 404 `not_found` on REST, as for a room the caller is not in
    (the same body); the socket, whose token named the room, closes with 4004."""

    close_code = Close.NOT_FOUND


class DeviceRevoked(NotFound):
    """The device is not the caller's own active device: 404 `not_found` on REST, as
    for any id the caller may not use; the socket closes with 4003 `device_revoked`."""

    close_reason = "device_revoked"


class RoomEnded(Conflict):
    code, title = "room_ended", "Room ended"
    close_code = Close.ENDED


class RoomFull(Conflict):
    code, title = "room_full", "Room full"


class AlreadyParticipant(Conflict):
    code, title = "already_participant", "Already a participant"


class LastHost(Conflict):
    code, title = "last_host", "A room keeps at least one host"


class RoomLocked(Forbidden):
    code, title = "room_locked", "Room locked"


class OutsideTimeWindow(Forbidden):
    code, title = "outside_time_window", "Outside the room's time window"


class NotAdmitted(Forbidden):
    code, title = "not_admitted", "Not admitted to the room"


class KeyPackagesExhausted(Conflict):
    code, title = "key_packages_exhausted", "A device has no key package left"


class StaleEpoch(Conflict):
    code, title = "stale_epoch", "A GroupInfo for another epoch than the room's"


class WrongGroup(Conflict):
    code, title = "wrong_group", "A GroupInfo for another MLS group than the room's"


class SupervisionConsentRequired(Forbidden):
    """A supervisor's token or socket before every client of the room has consented."""

    code, title = "supervision_consent_required", "Every client's supervision consent needed"


class GuardianConsentRequired(Forbidden):
    """A minor's token or socket without a guardian's current consent or the practice's
    record that the minor consents for themselves."""

    code, title = "guardian_consent_required", "A guardian's consent needed"


class InterpreterNotQualified(ValidationFailed):
    code, title = "interpreter_not_qualified", "Interpreter's qualification not attested"


class NotAClient(Forbidden):
    code, title = "not_a_client", "Only a client of the room may do this"
