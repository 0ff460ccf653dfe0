from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from app.auth.dependencies import CurrentAccount
from app.core import audit
from app.core.deps import ContextDep, SessionDep
from app.core.errors import Forbidden, NotFound, Unauthorized, ValidationFailed, responses
from app.rooms import service
from app.rooms.errors import (
    AlreadyParticipant,
    ConsentRequired,
    LastHost,
    OutsideTimeWindow,
    RoomEnded,
    RoomFull,
    RoomLocked,
)
from app.rooms.ice import ice_servers as _ice_servers
from app.rooms.schemas import (
    AddParticipant,
    CreateRoom,
    IceServersOut,
    ParticipantOut,
    PatchRoom,
    RoomOut,
    RoomTokenOut,
    TokenRequest,
)

router = APIRouter(tags=["rooms"])
ROOM = "/v1/rooms/{room_id}"


@router.post(
    "/v1/rooms",
    status_code=status.HTTP_201_CREATED,
    response_model=RoomOut,
    responses=responses(Unauthorized, Forbidden),
    summary="Create a room (counselors); the creator hosts it",
)
async def create(
    body: CreateRoom, principal: CurrentAccount, session: SessionDep, ctx: ContextDep
) -> RoomOut:
    state = await service.create_room(session, ctx, principal, body)
    return await service.view(session, ctx, state)


@router.get(
    "/v1/rooms",
    response_model=list[RoomOut],
    responses=responses(Unauthorized),
    summary="Rooms the caller participates in",
)
async def list_mine(
    principal: CurrentAccount, session: SessionDep, ctx: ContextDep
) -> list[RoomOut]:
    states = await service.list_rooms(session, ctx, principal.account)
    return [await service.view(session, ctx, state) for state in states]


@router.get(
    ROOM,
    response_model=RoomOut,
    responses=responses(Unauthorized, NotFound),
    summary="A room the caller participates in",
)
async def get(
    room_id: str, principal: CurrentAccount, session: SessionDep, ctx: ContextDep
) -> RoomOut:
    state, _ = await service.load_for(session, ctx.vault, room_id, principal.id)
    audit.record(
        session, "room.read", actor_id=principal.id, actor_role=principal.role, target=room_id
    )
    return await service.view(session, ctx, state)


@router.patch(
    ROOM,
    response_model=RoomOut,
    responses=responses(Unauthorized, Forbidden, NotFound, RoomEnded, ValidationFailed),
    summary="Change title, times (extend a running session), size or waiting room (host)",
)
async def patch(
    room_id: str, body: PatchRoom, principal: CurrentAccount, session: SessionDep, ctx: ContextDep
) -> RoomOut:
    state = await service.patch_room(session, ctx, principal, room_id, body)
    return await service.view(session, ctx, state)


@router.post(
    ROOM + "/participants",
    status_code=status.HTTP_201_CREATED,
    response_model=ParticipantOut,
    responses=responses(Unauthorized, Forbidden, NotFound, AlreadyParticipant, RoomFull, RoomEnded),
    summary="Add a participant by account id or email (host)",
)
async def add_participant(
    room_id: str,
    body: AddParticipant,
    principal: CurrentAccount,
    session: SessionDep,
    ctx: ContextDep,
) -> ParticipantOut:
    state, member = await service.add_participant(
        session, ctx, principal, room_id, account_id=body.account_id, email=body.email
    )
    return await service.participant_view(session, ctx, state, member)


@router.delete(
    ROOM + "/participants/{account_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(Unauthorized, Forbidden, NotFound, LastHost),
    summary="Remove a participant (host): their sockets close, their tokens stop working",
)
async def remove_participant(
    room_id: str, account_id: str, principal: CurrentAccount, session: SessionDep, ctx: ContextDep
) -> Response:
    await service.remove_participant(session, ctx, principal, room_id, account_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    ROOM + "/participants/{account_id}/admit",
    response_model=ParticipantOut,
    responses=responses(Unauthorized, Forbidden, NotFound, RoomEnded),
    summary="Admit a participant from the waiting room (host)",
)
async def admit(
    room_id: str, account_id: str, principal: CurrentAccount, session: SessionDep, ctx: ContextDep
) -> ParticipantOut:
    state, member = await service.admit(session, ctx, principal, room_id, account_id)
    return await service.participant_view(session, ctx, state, member)


@router.post(
    ROOM + "/lock",
    response_model=RoomOut,
    responses=responses(Unauthorized, Forbidden, NotFound, RoomEnded),
    summary="Lock: no tokens for participants not yet admitted (host)",
)
async def lock(
    room_id: str, principal: CurrentAccount, session: SessionDep, ctx: ContextDep
) -> RoomOut:
    state = await service.set_locked(session, ctx, principal, room_id, True)
    return await service.view(session, ctx, state)


@router.post(
    ROOM + "/unlock",
    response_model=RoomOut,
    responses=responses(Unauthorized, Forbidden, NotFound, RoomEnded),
    summary="Unlock (host)",
)
async def unlock(
    room_id: str, principal: CurrentAccount, session: SessionDep, ctx: ContextDep
) -> RoomOut:
    state = await service.set_locked(session, ctx, principal, room_id, False)
    return await service.view(session, ctx, state)


@router.post(
    ROOM + "/end",
    response_model=RoomOut,
    responses=responses(Unauthorized, Forbidden, NotFound),
    summary="End the session (host): every socket closes with 4010",
)
async def end(
    room_id: str, principal: CurrentAccount, session: SessionDep, ctx: ContextDep
) -> RoomOut:
    state = await service.end_room(session, ctx, principal, room_id)
    return await service.view(session, ctx, state)


@router.post(
    ROOM + "/token",
    response_model=RoomTokenOut,
    responses=responses(
        Unauthorized,
        NotFound,
        ConsentRequired,
        OutsideTimeWindow,
        RoomLocked,
        RoomEnded,
    ),
    summary="A room token for one of the caller's devices",
)
async def token(
    room_id: str,
    body: TokenRequest,
    request: Request,
    principal: CurrentAccount,
    session: SessionDep,
    ctx: ContextDep,
) -> RoomTokenOut:
    issued = await service.issue_token(session, ctx, principal, room_id, body.device_id)
    base = request.base_url
    scheme = "wss" if base.scheme == "https" else "ws"
    ws_url = f"{scheme}://{base.netloc}{base.path.rstrip('/')}/v1/rooms/{room_id}/ws"
    return RoomTokenOut(token=issued.token, expires_at=issued.expires_at, ws_url=ws_url)


# -- ICE servers ----------------------------------------------------------------


@router.get(
    ROOM + "/ice-servers",
    response_model=IceServersOut,
    responses=responses(Unauthorized, NotFound, RoomEnded),
    summary="STUN/TURN servers for the room's calls; TURN credentials end with the room",
)
async def ice_servers(
    room_id: str, principal: CurrentAccount, session: SessionDep, ctx: ContextDep
) -> IceServersOut:
    state, _ = await service.load_for(session, ctx.vault, room_id, principal.id)
    now = ctx.clock.now()
    if state.status(now) == "ended":
        raise RoomEnded("This session has ended.")
    audit.record(
        session,
        "room.ice",
        actor_id=principal.id,
        actor_role=principal.role,
        target=principal.id,
        details={"room": room_id},
    )
    return _ice_servers(
        ctx.settings,
        room_id=room_id,
        account_id=principal.id,
        now=now,
        ends_at=state.ends_at,
        index_key_fn=ctx.vault.index,
    )
