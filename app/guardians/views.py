"""The guardians domain's answers, shared by its endpoints and the export."""

from __future__ import annotations

from app.guardians import service
from app.guardians.schemas import LinkOut, MinorOut, SelfConsentOut


def link_out(link: service.Link) -> LinkOut:
    return LinkOut(
        account_id=link.other, linked_at=link.linked_at, consent_given_at=link.consent_given_at
    )


def minor_out(status_: service.MinorStatus | None) -> MinorOut | None:
    if status_ is None:
        return None
    return MinorOut(
        minor=status_.minor,
        self_consent=SelfConsentOut(
            allowed=status_.self_consent_allowed, basis=status_.self_consent_basis
        )
        if status_.minor
        else None,
        set_at=status_.set_at,
    )
