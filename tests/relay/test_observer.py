"""The relay's share of supervision (`app.relay.room`), as properties: no socket, no sleep.

- A supervisor's `send` is refused with `observer_cannot_send` exactly when it is not
  an MLS handshake (a Commit or Proposal, public or private, or a Welcome); anyone
  else's is never refused for that.
- `supervision_withdrawn` closes exactly the room's supervisors, with 4013, whatever
  the mix of roles and admissions; everyone else stays.
"""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from app.core import mls
from app.core.close_codes import Close
from app.core.events import SupervisionWithdrawn
from app.relay.room import Participant
from tests.fixtures.mls import private_message, public_message, welcome
from tests.relay.roomworld import World

ROOM = "room-observed"
GROUP = mls.room_group_id(ROOM)
ROLES = ("host", "participant", "supervisor", "interpreter", "guardian")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def seats(roles: dict[str, str], admitted: dict[str, bool]) -> dict[str, Participant]:
    return {
        account: Participant(
            account, role, account, admitted[account], {f"{account}-1": ("k", None)}
        )
        for account, role in roles.items()
    }


#: (what it is, ciphertext, is it a handshake)
FRAMES = st.one_of(
    st.sampled_from([1, 2, 3]).map(
        lambda ct: ("private", b64(private_message(GROUP, 0, ct, [b"", b"s", b"c"])), ct != 1)
    ),
    st.sampled_from([1, 2, 3]).map(
        lambda ct: ("public", b64(public_message(GROUP, 0, 1, 0, b"", ct)), ct != 1)
    ),
    st.just(("welcome", b64(welcome(1, [b"ref"], b"info")), True)),
    st.binary(min_size=1, max_size=40)
    .filter(lambda raw: raw[:2] != b"\x00\x01")
    .map(lambda raw: ("opaque", b64(raw), False)),
)


@settings(max_examples=60, deadline=None)
@given(role=st.sampled_from(ROLES), frame=FRAMES)
def test_a_supervisor_sends_handshakes_only(role: str, frame: tuple[str, str, bool]) -> None:
    _, ciphertext, handshake = frame
    world = World()
    roles = {"host": "host", "sender": role}
    people = seats(roles, {"host": True, "sender": True})
    world.join(ROOM, "host", "host-1", people, role="host")
    sender = world.join(ROOM, "sender", "sender-1", people, role=role)
    world.say(sender, {"type": "send", "id": "x", "ciphertext": ciphertext})
    refused = any(f.get("code") == "observer_cannot_send" for f in sender.of("error"))
    assert refused == (role == "supervisor" and not handshake)
    assert sender.open


@settings(max_examples=40, deadline=None)
@given(mix=st.lists(st.tuples(st.sampled_from(ROLES[1:]), st.booleans()), min_size=1, max_size=6))
def test_a_withdrawal_closes_exactly_the_supervisors(mix: list[tuple[str, bool]]) -> None:
    world = World()
    roles = {"host": "host"} | {f"p{i}": role for i, (role, _) in enumerate(mix)}
    admitted = {"host": True} | {f"p{i}": ok for i, (_, ok) in enumerate(mix)}
    people = seats(roles, admitted)
    sockets = {
        account: world.join(ROOM, account, f"{account}-1", people, role=role)
        for account, role in roles.items()
    }
    world.publish(SupervisionWithdrawn(ROOM))
    for account, socket in sockets.items():
        if roles[account] == "supervisor":
            assert (socket.code, socket.reason) == (
                Close.SUPERVISION_WITHDRAWN,
                "supervision consent withdrawn",
            )
        else:
            assert socket.open, account
    # A withdrawal in another room closes no one here.
    world.publish(SupervisionWithdrawn("another-room"))
