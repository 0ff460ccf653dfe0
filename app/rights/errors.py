"""What the rights requests' services refuse, each with its status and stable code."""

from __future__ import annotations

from app.core.errors import Conflict, ValidationFailed


class InvalidTransition(Conflict):
    code, title = "invalid_transition", "Invalid state transition"


class ReasonRequired(ValidationFailed):
    code, title = "reason_required", "A written reason is required"


class ExtensionNotAllowed(Conflict):
    code, title = "extension_not_allowed", "The request cannot be extended"


class DisagreementNotAllowed(Conflict):
    code, title = "disagreement_not_allowed", "No statement of disagreement can be filed"
