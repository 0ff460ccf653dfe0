from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.codec import new_id
from app.models.base import Base, encrypted, slot_index


class RightsRequest(Base):
    """A client's request to exercise a Privacy Rule right (45 CFR 164.522 to 164.528).

    Whose it is: `client_ix`, the client's slot index (unique, it groups
    nothing), for the client's own list; and `owner`, the client's id sealed
    under the system key, so that an admin's list knows whose key opens the
    rest. Everything else (kind, state, what was asked, every time, the
    extension, the denial and the client's statement of disagreement) is in
    `details`, sealed under the client's own data key: the client's record,
    shredded with them.
    """

    __tablename__ = "rights_requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    client_ix: Mapped[bytes] = slot_index()
    # {client}
    owner: Mapped[bytes] = encrypted()
    # {kind, text, state, received_at, history, extension, denial, disagreement}
    details: Mapped[bytes] = encrypted()
