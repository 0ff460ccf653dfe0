from __future__ import annotations

from fastapi import APIRouter

from app.auth.dependencies import CurrentPrincipal
from app.core.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from app.rooms import checkins
from app.rooms.errors import RoomEnded
from app.safety.schemas import CheckinIn, CheckinOut, checkin_out
from app.web.deps import ContextDep, SessionDep
from app.web.errors import responses

router = APIRouter(tags=["safety"])
ROOM = "/v1/rooms/{room_id}"


def _out(shown: checkins.Shown) -> CheckinOut:
    return checkin_out(shown.checkin, valid=shown.valid, licensed=shown.licensed)


@router.put(
    ROOM + "/checkin",
    response_model=CheckinOut,
    responses=responses(Unauthorized, Forbidden, NotFound, RoomEnded, Conflict, ValidationFailed),
    summary="Record the caller's safety check-in for the room (client participants)",
)
async def put_checkin(
    room_id: str, body: CheckinIn, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> CheckinOut:
    """Where the client is now (a free-text address and its ISO 3166-2 jurisdiction), an emergency
    contact, and a phone number to call back if the call drops. It replaces the caller's earlier
    check-in for the room and admits them for 24 hours (a room whose `safety_checkin` is
    `required` issues a client no room token without one). Sealed under the client's own key; the
    room's hosts see it over REST and as a `checkin` frame on their sockets. Hosts do not check in
    (403 `forbidden`); anyone outside the room gets 404; an ended room is 409 `room_ended`.
    """
    return _out(await checkins.record(session, ctx, principal, room_id, body))


@router.get(
    ROOM + "/checkin",
    response_model=CheckinOut,
    responses=responses(Unauthorized, NotFound),
    summary="The caller's own latest check-in for the room",
)
async def get_checkin(
    room_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> CheckinOut:
    """The caller's latest check-in for the room, with whether it is still `valid`; 404 when there
    is none. `jurisdiction_licensed` and `jurisdiction_mismatch` are null here (the hosts' view).
    The read shows in the caller's access log.
    """
    return _out(await checkins.own(session, ctx, principal, room_id))


@router.get(
    ROOM + "/checkins",
    response_model=list[CheckinOut],
    responses=responses(Unauthorized, Forbidden, NotFound),
    summary="Every client's latest check-in for the room, with licensure (hosts)",
)
async def get_checkins(
    room_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> list[CheckinOut]:
    """For the room's hosts, during the session and after it: each client participant's latest
    check-in (clients without one are left out), whether a host of the room is licensed for its
    jurisdiction (`jurisdiction_licensed`) and its negation (`jurisdiction_mismatch`). Another
    participant gets 403 `forbidden`, anyone outside the room 404. Each check-in read shows in its
    client's access log (`checkin.read`).
    """
    return [_out(shown) for shown in await checkins.hosts_view(session, ctx, principal, room_id)]
