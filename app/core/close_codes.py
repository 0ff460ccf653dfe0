"""Every close code the room socket may send, in one place (docs/PROTOCOL.md, "Close codes").

Errors that refuse or end a socket carry one of these (`ConfideError.close_code`),
so no table elsewhere maps errors to codes.
"""

from __future__ import annotations

from enum import IntEnum


class Close(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    POLICY = 1008
    TOO_BIG = 1009
    SERVICE_RESTART = 1012
    TRY_AGAIN = 1013
    TOKEN = 4001
    FORBIDDEN = 4003
    NOT_FOUND = 4004
    ENDED = 4010
    REPLACED = 4011
    DISABLED = 4012
    SUPERVISION_WITHDRAWN = 4013


#: What each code means, as PROTOCOL.md documents it.
MEANING: dict[Close, str] = {
    Close.NORMAL: "normal closure",
    Close.GOING_AWAY: "going away (idle timeout, server stopping)",
    Close.PROTOCOL_ERROR: "protocol error (subprotocol confide.v1 not offered)",
    Close.POLICY: "policy violation (bad frame type, persisting abuse)",
    Close.TOO_BIG: "frame too big",
    Close.SERVICE_RESTART: "service restart: reconnect and resume",
    Close.TRY_AGAIN: "try again later",
    Close.TOKEN: "missing, invalid or expired token",
    Close.FORBIDDEN: "forbidden",
    Close.NOT_FOUND: "room not found",
    Close.ENDED: "room ended",
    Close.REPLACED: "replaced by a new connection of the same device",
    Close.DISABLED: "account disabled by an admin",
    Close.SUPERVISION_WITHDRAWN: (
        "supervision consent withdrawn: a supervisor's socket, when a client of the room"
        " withdraws (or a new client has not yet given) the room's supervision consent"
    ),
}
