"""What the consent rule refuses: a room is not entered before consent is given."""

from __future__ import annotations

from app.core.errors import Forbidden


class ConsentRequired(Forbidden):
    code, title = "consent_required", "Consent required"

    def __init__(self, missing: list[str]) -> None:
        super().__init__("Accept the listed consent documents first.", missing=missing)


class ConsentNotPublished(Forbidden):
    code, title = "consent_not_published", "Consent documents not published"

    def __init__(self, kinds: list[str]) -> None:
        super().__init__(
            "The practice has not yet published the consent documents this room needs.",
            kinds=kinds,
        )
