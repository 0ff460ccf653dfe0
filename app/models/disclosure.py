from __future__ import annotations

import enum

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.codec import new_id
from app.models.base import Base, encrypted, slot_index


class DisclosureBasis(enum.StrEnum):
    imminent_harm = "imminent_harm"
    mandated_report = "mandated_report"
    court_order = "court_order"
    law_enforcement = "law_enforcement"
    client_authorized = "client_authorized"
    other = "other"


class Disclosure(Base):
    """One entry of a client's accounting of disclosures (45 CFR 164.528).

    Whose information it was is only `client_ix`, the client's slot index
    (`app.core.slots`: unique, it groups nothing); everything else, times
    included (`withhold_until` too, so a dump shows no date at all), is in
    `details`, sealed under the client's own
    data key: it is the client's information, readable after the recording
    counselor is erased, shredded when the client is.
    """

    __tablename__ = "disclosures"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    client_ix: Mapped[bytes] = slot_index()
    # {client, basis, recipient, purpose, description, disclosed_at,
    #  withhold_until, recorded_by, recorded_by_role, recorded_at}
    details: Mapped[bytes] = encrypted()
