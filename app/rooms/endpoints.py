from __future__ import annotations

from typing import Protocol, cast

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse

from app.auth.dependencies import CurrentPrincipal
from app.consent.errors import ConsentNotPublished, ConsentRequired
from app.core import audit
from app.core.codec import b64url_decode, b64url_encode
from app.core.errors import Forbidden, NotFound, RateLimited, Unauthorized, ValidationFailed
from app.rooms import group_info, invitations, key_packages, roles, service
from app.rooms.errors import (
    AlreadyParticipant,
    GuardianConsentRequired,
    InterpreterNotQualified,
    KeyPackagesExhausted,
    LastHost,
    NotAClient,
    NotAdmitted,
    OutsideTimeWindow,
    RoomEnded,
    RoomFull,
    RoomLocked,
    StaleEpoch,
    SupervisionConsentRequired,
    WrongGroup,
)
from app.rooms.ice import ice_servers as _ice_servers
from app.rooms.schemas import (
    AddParticipant,
    ClaimedKeyPackageOut,
    ClaimedKeyPackagesOut,
    ClaimKeyPackages,
    CreateRoom,
    GroupInfoIn,
    GroupInfoOut,
    IceServersOut,
    InvitationHost,
    InvitationOut,
    InvitationPending,
    ParticipantOut,
    ParticipantRole,
    PatchRoom,
    PendingInvitationOut,
    RoomOut,
    RoomTokenOut,
    TokenRequest,
)
from app.safety.errors import JurisdictionMismatch, SafetyCheckinRequired
from app.web import idempotency
from app.web.deps import ContextDep, SessionDep
from app.web.errors import responses
from app.web.idempotency import IdempotencyDep
from app.web.pagination import PageDep, micros, paged

router = APIRouter(tags=["rooms"])
ROOM = "/v1/rooms/{room_id}"


@router.post(
    "/v1/rooms",
    status_code=status.HTTP_201_CREATED,
    response_model=RoomOut,
    responses=idempotency.replayed(responses(Unauthorized, Forbidden, *idempotency.ERRORS), 201),
    summary="Create a room (counselors); the creator hosts it",
)
async def create(
    body: CreateRoom,
    principal: CurrentPrincipal,
    session: SessionDep,
    ctx: ContextDep,
    once: IdempotencyDep,
) -> JSONResponse:
    """A counselor creates a scheduled session, `individual` or `group`; the creator is its host.
    Times, size and the waiting room are optional. A retry with the same `Idempotency-Key`
    gets the first answer again.
    """

    async def act() -> tuple[int, RoomOut]:
        state = await service.create_room(session, ctx, principal, body)
        return status.HTTP_201_CREATED, await service.view(session, ctx, state)

    return await once.run(session, ctx, principal.account, act)


@router.get(
    "/v1/rooms",
    response_model=list[RoomOut],
    responses=paged(responses(Unauthorized)),
    summary="Rooms the caller participates in",
    description="Those with a start time first, by start time, then those without; paginated.",
)
async def list_mine(
    principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep, page: PageDep
) -> list[RoomOut]:
    states = page.take(
        await service.list_rooms(session, ctx, principal.account),
        lambda s: (
            int(s.starts_at is None),
            micros(s.starts_at) if s.starts_at is not None else 0,
            s.room.id,
        ),
        ("rooms", principal.id),
    )
    for state in states:
        service.record_on_room(session, "room.read", principal, state)
    return [await service.view(session, ctx, state) for state in states]


@router.get(
    ROOM,
    response_model=RoomOut,
    responses=responses(Unauthorized, NotFound),
    summary="A room the caller participates in",
)
async def get(
    room_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> RoomOut:
    """The room, its status and its participants. Anyone who is not a participant gets 404, as for
    an unknown id.
    """
    state, _ = await service.load_for(session, ctx.vault, room_id, principal.id)
    service.record_on_room(session, "room.read", principal, state)
    return await service.view(session, ctx, state)


@router.patch(
    ROOM,
    response_model=RoomOut,
    responses=responses(Unauthorized, Forbidden, NotFound, RoomEnded, ValidationFailed),
    summary="Change title, times (extend a running session), size or waiting room (host)",
)
async def patch(
    room_id: str, body: PatchRoom, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> RoomOut:
    """The host changes the title, the times (a running session may be extended), the size or the
    waiting room. An ended room is 409 `room_ended`.
    """
    state = await service.patch_room(session, ctx, principal, room_id, body)
    return await service.view(session, ctx, state)


@router.post(
    ROOM + "/participants",
    status_code=status.HTTP_201_CREATED,
    response_model=ParticipantOut,
    responses=idempotency.replayed(
        {
            202: {
                "model": InvitationPending,
                "description": "an invitation, pending the invitee's acceptance",
            },
            **responses(
                Unauthorized,
                Forbidden,
                NotFound,
                AlreadyParticipant,
                RoomFull,
                RoomEnded,
                InterpreterNotQualified,
                ValidationFailed,
                *idempotency.ERRORS,
            ),
        },
        201,
        202,
    ),
    summary="Add your own client (201), or invite anyone else by account id or email (202)",
    description=(
        "A client who has accepted an invitation of this host before is added at once"
        " (201, the participant). Anyone else gets an invitation to accept or decline"
        ' (`GET /v1/me/invitations`): 202 `{invitation_id, status: "pending"}`, the same'
        " answer whether or not the email or id is registered, or whose it is.\n\n"
        "With `role` (`supervisor`, `interpreter`, `guardian`) it is always an invitation,"
        " accepted only by an account the role fits (a counselor for a supervisor; a client or"
        " counselor for an interpreter; a linked guardian of one of the room's clients for a"
        " guardian), a decoy otherwise. A supervisor or interpreter needs `consent_note`; an"
        " interpreter needs `qualification` with `qualified: true` (else 422"
        " `interpreter_not_qualified`)."
    ),
)
async def add_participant(
    room_id: str,
    body: AddParticipant,
    principal: CurrentPrincipal,
    session: SessionDep,
    ctx: ContextDep,
    once: IdempotencyDep,
) -> JSONResponse:
    typed = (
        None
        if body.role is None
        else invitations.Typed(
            body.role,
            body.qualification.model_dump() if body.qualification is not None else None,
            body.consent_note,
        )
    )

    async def act() -> tuple[int, ParticipantOut | InvitationPending]:
        outcome = await invitations.add_or_invite(
            session,
            ctx,
            principal,
            room_id,
            account_id=body.account_id,
            email=body.email,
            typed=typed,
        )
        if isinstance(outcome, invitations.Invited):
            pending = InvitationPending(invitation_id=outcome.invitation_id)
            return status.HTTP_202_ACCEPTED, pending
        view = await service.participant_view(session, ctx, outcome.state, outcome.member)
        return status.HTTP_201_CREATED, view

    return await once.run(session, ctx, principal.account, act)


@router.get(
    ROOM + "/invitations",
    response_model=list[PendingInvitationOut],
    responses=paged(responses(Unauthorized, Forbidden, NotFound)),
    summary="The room's pending invitations, naming no one (host)",
    description="Oldest first; paginated.",
)
async def room_invitations(
    room_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep, page: PageDep
) -> list[PendingInvitationOut]:
    found = page.take(
        await invitations.pending(session, ctx, principal, room_id),
        lambda each: (micros(each.created_at), each.id),
        ("room invitations", room_id, principal.id),
    )
    return [PendingInvitationOut(id=each.id, created_at=each.created_at) for each in found]


@router.get(
    "/v1/me/invitations",
    response_model=list[InvitationOut],
    responses=paged(responses(Unauthorized)),
    summary="The caller's pending invitations to rooms, oldest first",
    description="Each names its room, host, title and times; paginated.",
)
async def my_invitations(
    principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep, page: PageDep
) -> list[InvitationOut]:
    found = page.take(
        await invitations.list_mine(session, ctx, principal),
        lambda each: (micros(each.created_at), each.id),
        ("invitations", principal.id),
    )
    return [
        InvitationOut(
            id=each.id,
            room_id=each.room_id,
            host=InvitationHost(account_id=each.host_id, display_name=each.host_name),
            title=each.title,
            starts_at=each.starts_at,
            ends_at=each.ends_at,
            created_at=each.created_at,
            role=cast(ParticipantRole | None, each.role),
        )
        for each in found
    ]


@router.post(
    "/v1/me/invitations/{invitation_id}/accept",
    response_model=RoomOut,
    responses=responses(Unauthorized, NotFound, RoomFull, RoomEnded),
    summary="Accept an invitation: join the room; its host becomes your counselor",
)
async def accept_invitation(
    invitation_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> RoomOut:
    """The caller becomes a participant of the room (a counselor as host, a client as participant)
    and the host becomes the client's counselor. Answers the room.
    """
    state = await invitations.accept(session, ctx, principal, invitation_id)
    return await service.view(session, ctx, state)


@router.post(
    "/v1/me/invitations/{invitation_id}/decline",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(Unauthorized, NotFound),
    summary="Decline an invitation",
)
async def decline_invitation(
    invitation_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> Response:
    """Declines a pending invitation of the caller; someone else's invitation, or one already
    answered, is 404.
    """
    await invitations.decline(session, ctx, principal, invitation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    ROOM + "/participants/{account_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(Unauthorized, Forbidden, NotFound, LastHost),
    summary="Remove a participant (host): their sockets close, their tokens stop working",
)
async def remove_participant(
    room_id: str, account_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> Response:
    """The host removes a participant: that account's live sockets close with 4003 and the room
    tokens already issued to it stop working.
    """
    await service.remove_participant(session, ctx, principal, room_id, account_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    ROOM + "/participants/{account_id}/admit",
    response_model=ParticipantOut,
    responses=responses(Unauthorized, Forbidden, NotFound, RoomEnded),
    summary="Admit a participant from the waiting room (host)",
)
async def admit(
    room_id: str, account_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> ParticipantOut:
    """The host admits a participant from the waiting room; the participant's socket starts
    receiving the room's messages.
    """
    state, member = await service.admit(session, ctx, principal, room_id, account_id)
    return await service.participant_view(session, ctx, state, member)


@router.post(
    ROOM + "/lock",
    response_model=RoomOut,
    responses=responses(Unauthorized, Forbidden, NotFound, RoomEnded),
    summary="Lock: no tokens for participants not yet admitted (host)",
)
async def lock(
    room_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> RoomOut:
    """A locked room issues no room tokens to participants not yet admitted."""
    state = await service.set_locked(session, ctx, principal, room_id, True)
    return await service.view(session, ctx, state)


@router.post(
    ROOM + "/unlock",
    response_model=RoomOut,
    responses=responses(Unauthorized, Forbidden, NotFound, RoomEnded),
    summary="Unlock (host)",
)
async def unlock(
    room_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> RoomOut:
    """Room tokens are issued again to participants not yet admitted."""
    state = await service.set_locked(session, ctx, principal, room_id, False)
    return await service.view(session, ctx, state)


@router.post(
    ROOM + "/end",
    response_model=RoomOut,
    responses=responses(Unauthorized, Forbidden, NotFound),
    summary="End the session (host): every socket closes with 4010",
)
async def end(
    room_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> RoomOut:
    """The host ends the session: every socket of the room closes with 4010 and no further room
    tokens are issued.
    """
    state = await service.end_room(session, ctx, principal, room_id)
    return await service.view(session, ctx, state)


@router.post(
    ROOM + "/token",
    response_model=RoomTokenOut,
    responses=responses(
        Unauthorized,
        NotFound,
        ConsentRequired,
        ConsentNotPublished,
        SafetyCheckinRequired,
        JurisdictionMismatch,
        OutsideTimeWindow,
        RoomLocked,
        RoomEnded,
        SupervisionConsentRequired,
        GuardianConsentRequired,
    ),
    summary="A room token for one of the caller's devices",
)
async def token(
    room_id: str,
    body: TokenRequest,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    ctx: ContextDep,
) -> RoomTokenOut:
    """A short-lived room token (5 minutes by default) for one of the caller's own devices, to open
    the room socket once. Issued only inside the room's time window, to an admitted participant
    of an unlocked or already-joined room who has accepted every consent document the room needs
    and, where the room requires it, recorded a safety check-in of the last 24 hours
    (`safety_checkin_required`); with the practice's `refuse` policy, from a jurisdiction a host
    of the room is licensed for (`jurisdiction_mismatch`).
    A supervisor's is refused (403 `supervision_consent_required`) until every client of the room
    has given its supervision consent; a minor client's (403 `guardian_consent_required`) without
    a linked guardian's current consent or the practice's record of the minor's own.
    """
    issued = await service.issue_token(session, ctx, principal, room_id, body.device_id)
    base = request.base_url
    scheme = "wss" if base.scheme == "https" else "ws"
    ws_url = f"{scheme}://{base.netloc}{base.path.rstrip('/')}/v1/rooms/{room_id}/ws"
    return RoomTokenOut(token=issued.token, expires_at=issued.expires_at, ws_url=ws_url)


# -- supervision consent --------------------------------------------------------


@router.put(
    ROOM + "/supervision-consent",
    response_model=RoomOut,
    responses=responses(Unauthorized, NotFound, NotAClient, RoomEnded),
    summary="Consent to supervision in this room (client)",
)
async def give_supervision_consent(
    room_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> RoomOut:
    """The client consents to the room's supervisors observing this room (ACA F.1.c). A
    supervisor is admitted only while every client of the room has consented. Giving it again
    changes nothing. Answers the room (each client's `supervision_consent`).
    """
    state = await roles.set_supervision_consent(session, ctx, principal, room_id, give=True)
    return await service.view(session, ctx, state)


@router.delete(
    ROOM + "/supervision-consent",
    response_model=RoomOut,
    responses=responses(Unauthorized, NotFound, NotAClient, RoomEnded),
    summary="Withdraw consent to supervision in this room (client)",
)
async def withdraw_supervision_consent(
    room_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> RoomOut:
    """Every supervisor's live socket in the room closes with 4013, and their room tokens are
    refused with `supervision_consent_required` until the consent is given again.
    """
    state = await roles.set_supervision_consent(session, ctx, principal, room_id, give=False)
    return await service.view(session, ctx, state)


# -- ICE servers ----------------------------------------------------------------


@router.get(
    ROOM + "/ice-servers",
    response_model=IceServersOut,
    responses=responses(
        Unauthorized,
        NotFound,
        ConsentRequired,
        ConsentNotPublished,
        SafetyCheckinRequired,
        JurisdictionMismatch,
        OutsideTimeWindow,
        RoomLocked,
        RoomEnded,
        SupervisionConsentRequired,
        GuardianConsentRequired,
    ),
    summary="STUN/TURN servers for the room's calls; TURN credentials end with the room",
    description="Given under the same rules as a room token (the device aside).",
)
async def ice_servers(
    room_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> IceServersOut:
    # The room token's rule, from its one home: whoever may not join gets no relay.
    admission = await service.admit_device(
        session,
        ctx,
        account_id=principal.id,
        login_id=principal.login_id,
        room_id=room_id,
        device_id=None,
    )
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
        now=admission.at,
        ends_at=admission.state.ends_at,
        index_key_fn=ctx.vault.index,
    )


@router.post(
    f"{ROOM}/key-packages/claim",
    response_model=ClaimedKeyPackagesOut,
    responses=responses(
        Unauthorized, NotFound, NotAdmitted, RoomEnded, KeyPackagesExhausted, RateLimited
    ),
    summary="Claim one MLS KeyPackage of each named device of the room's admitted participants",
)
async def claim_key_packages(
    room_id: str,
    body: ClaimKeyPackages,
    principal: CurrentPrincipal,
    session: SessionDep,
    ctx: ContextDep,
) -> ClaimedKeyPackagesOut:
    """Hands out one KeyPackage of each named device (active devices of the room's admitted
    participants), the newest first, so the caller can add them to the room's MLS group. If any
    device has none left, nothing is taken (409 `key_packages_exhausted`).
    """
    claimed = await key_packages.claim(session, ctx, principal.account, room_id, body.device_ids)
    return ClaimedKeyPackagesOut(
        key_packages=[
            ClaimedKeyPackageOut(
                device_id=c.device_id,
                key_package=b64url_encode(c.package),
                last_resort=c.last_resort,
            )
            for c in claimed
        ]
    )


class _Epochs(Protocol):
    async def mls_epoch(self, room: str) -> int | None: ...


@router.put(
    f"{ROOM}/group-info",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(
        Unauthorized,
        NotFound,
        NotAdmitted,
        RoomEnded,
        WrongGroup,
        StaleEpoch,
        ValidationFailed,
        RateLimited,
    ),
    summary="Upload the room's latest MLS GroupInfo (its group, the room's current epoch)",
    description="Uploads are limited per account (429 `rate_limited` with `Retry-After`).",
)
async def put_group_info(
    room_id: str,
    body: GroupInfoIn,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    ctx: ContextDep,
) -> Response:
    group_info.throttle(ctx, principal.id)
    try:
        raw = b64url_decode(body.group_info)
    except ValueError:
        raise ValidationFailed("group_info is not base64url.") from None
    broker: _Epochs = request.app.state.hub.broker
    epoch = await broker.mls_epoch(room_id)
    await group_info.put(session, ctx, principal.account, room_id, raw, epoch)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    f"{ROOM}/group-info",
    response_model=GroupInfoOut,
    responses=responses(Unauthorized, NotFound, NotAdmitted),
    summary="The room's latest MLS GroupInfo, to rejoin by external commit",
)
async def get_group_info(
    room_id: str, principal: CurrentPrincipal, session: SessionDep, ctx: ContextDep
) -> GroupInfoOut:
    """The latest GroupInfo of the room's MLS group, which a device that lost its state uses to
    rejoin by an external commit. 404 before any upload.
    """
    raw = await group_info.get(session, ctx, principal.account, room_id)
    return GroupInfoOut(group_info=b64url_encode(raw))
