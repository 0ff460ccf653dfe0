"""The room's rules (`app.relay.room`), one scenario each: no socket, no broker I/O, no sleep.

Most scenarios run in a `World` (tests/relay/roomworld.py), which carries out
the actions against the in-process broker; a few look at the actions `handle`
returns themselves.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.core.close_codes import MEANING, Close
from app.core.events import (
    AccountClosed,
    Admitted,
    CheckinRecorded,
    DeviceAdded,
    DeviceRevoked,
    LoginRevoked,
    ParticipantAdded,
    ParticipantRemoved,
    Presence,
    RoomEnded,
    RoomLocked,
    RoomSchedule,
    RoomUnlocked,
    Unadmitted,
)
from app.relay import frames
from app.relay.protocol import MAX_STRIKES, State
from app.relay.room import (
    ENDING_NOTICE,
    REPLAY_PAGE,
    Append,
    Appended,
    ArmTimer,
    CancelTimer,
    CloseAfter,
    Drain,
    Grant,
    Granted,
    Joined,
    Left,
    Load,
    Now,
    Opening,
    Overflowed,
    Participant,
    Peer,
    PeerGone,
    Received,
    Replay,
    ReplayFailed,
    RoomState,
    Send,
    Tick,
    Timer,
    TimerFired,
    handle,
)
from app.relay.store import ReplayLimits
from tests.relay.roomworld import START, Socket, World, run

ROOM = "room-1"


def people(**admitted: bool) -> dict[str, Participant]:
    """The database's view: each account, admitted or not, with one device `<account>-1`."""
    return {
        account: Participant(
            account,
            "host" if account == "host" else "participant",
            account.title(),
            ok,
            {f"{account}-1": (f"key-{account}", f"sig-{account}")},
        )
        for account, ok in admitted.items()
    }


def send(cid: str, ciphertext: str = "AQID", **extra: Any) -> dict[str, Any]:
    body = {"type": "send", "id": cid, **extra}
    if "recipients" not in extra:
        body["ciphertext"] = ciphertext
    return body


def messages(socket: Socket) -> list[tuple[int, str]]:
    return [(f["seq"], f["id"]) for f in socket.of("message")]


def state_of(peer: Peer) -> State:
    return peer.state


def replay_of(socket: Socket) -> Replay | None:
    return socket.peer.replay


@pytest.fixture
def world() -> World:
    return World()


def pair(world: World, *, client_admitted: bool = True) -> tuple[Socket, Socket]:
    host = world.join(ROOM, "host", "host-1", people(host=True, ann=client_admitted), role="host")
    ann = world.join(ROOM, "ann", "ann-1", people(host=True, ann=client_admitted))
    return host, ann


# -- joining ---------------------------------------------------------------------------


def test_welcome_comes_first_and_the_room_hears_of_the_newcomer(world: World) -> None:
    host, ann = pair(world)
    welcome = host.frames[0]
    assert welcome["type"] == "welcome"
    assert (welcome["state"], welcome["seq"]) == ("admitted", 0)
    assert welcome["you"] == {"account_id": "host", "device_id": "host-1", "role": "host"}
    assert [(p["account_id"], p["online"]) for p in welcome["participants"]] == [
        ("host", True),
        ("ann", False),
    ]
    assert ann.frames[0]["type"] == "welcome"
    assert [(p["account_id"], p["online"]) for p in ann.frames[0]["participants"]] == [
        ("host", True),
        ("ann", True),
    ]
    assert host.of("presence") == [
        {"type": "presence", "event": "online", "account_id": "ann", "device_id": "ann-1"}
    ]
    assert ann.of("presence") == []  # not its own
    assert (host.peer.state, ann.peer.state) == (State.ADMITTED, State.ADMITTED)


def test_a_connection_authenticates_before_it_joins() -> None:
    room = RoomState(ROOM)
    now = Now(START, 0.0)
    grant = Grant(ROOM, "ann", "ann-1", "participant", "s", False, None, False, people(ann=False))
    peer = Peer.from_grant("p", grant, 10)
    assert handle(room, Granted(grant), now) == []
    assert handle(room, Opening(peer), now) == [Load(peer, ())]
    assert state_of(peer) is State.AUTHENTICATING
    assert room.joining == {"p": peer}
    # Until it has joined, the room neither reads it nor sends it anything.
    assert handle(room, Received(peer, '{"type":"ping"}'), now) == []
    assert handle(room, RoomLocked(ROOM), now) == []
    actions = handle(room, Joined(peer, frozenset(), 0), now)
    assert state_of(peer) is State.WAITING
    assert [type(a).__name__ for a in actions] == ["Send", "Announce"]
    assert room.joining == {}


def test_the_same_device_again_replaces_the_first_connection(world: World) -> None:
    first = world.join(ROOM, "ann", "ann-1", people(ann=True))
    second = world.join(ROOM, "ann", "ann-1", people(ann=True))
    assert (first.code, first.reason) == (Close.REPLACED, "replaced by a new connection")
    assert second.open
    world.leave(first)
    assert world.rooms[ROOM].connections == {"ann-1": second.peer}


def test_a_device_joining_on_another_instance_replaces_this_one(world: World) -> None:
    _, ann = pair(world)
    world.publish(Presence(ROOM, "online", "ann", "ann-1", "elsewhere"))
    assert ann.code is Close.REPLACED


def test_the_room_is_kept_while_a_connection_is_on_its_way_in(world: World) -> None:
    host = world.join(ROOM, "host", "host-1", people(host=True, ann=True), role="host")
    room = world.rooms[ROOM]
    grant = Grant(ROOM, "ann", "ann-1", "participant", "s", True, None, False, people(ann=True))
    coming = Peer.from_grant("coming", grant, 10)
    handle(room, Opening(coming), world.now())  # its Load is under way
    world.hang_up(host)
    assert ROOM in world.rooms  # not disposed: one is joining
    world.execute(room, handle(room, Left(coming), world.now()))
    assert world.disposed == [ROOM]


def test_the_last_one_out_disposes_of_the_room(world: World) -> None:
    host, ann = pair(world)
    world.hang_up(ann)
    assert host.of("presence")[-1] == {
        "type": "presence",
        "event": "offline",
        "account_id": "ann",
        "device_id": "ann-1",
    }
    assert ann.code is Close.NORMAL
    world.hang_up(host)
    assert world.disposed == [ROOM]
    assert run_online(world) == set()


def run_online(world: World) -> set[str]:
    return run(world.broker.online(ROOM))


def test_a_broker_that_fails_the_announcement_closes_1013(world: World) -> None:
    world.join(ROOM, "host", "host-1", people(host=True, ann=True), role="host")
    world.broker_down = True
    ann = world.join(ROOM, "ann", "ann-1", people(host=True, ann=True))
    assert ann.frames[0]["type"] == "welcome"
    assert (ann.code, ann.reason) == (Close.TRY_AGAIN, "broker unavailable")


# -- the waiting room --------------------------------------------------------------------


def test_a_waiting_device_is_refused_until_admitted(world: World) -> None:
    host, ann = pair(world, client_admitted=False)
    assert ann.frames[0]["state"] == "waiting"
    assert host.of("presence")[0]["event"] == "waiting"
    world.say(ann, send("w1"))
    world.say(ann, {"type": "resume", "after": 0})
    assert ann.of("error") == [
        {"type": "error", "code": "not_admitted", "detail": "wait to be admitted", "id": "w1"},
        {"type": "error", "code": "not_admitted", "detail": "wait to be admitted"},
    ]
    world.say(host, send("h1"))
    world.publish(DeviceAdded("host", "host-2", "key-2", "sig-2"))
    assert ann.of("message") == []
    assert ann.of("device") == []

    world.publish(Admitted(ROOM, "ann"))
    assert ann.peer.state is State.ADMITTED
    admitted = {"type": "presence", "event": "admitted", "account_id": "ann"}
    assert ann.frames[-1] == admitted
    assert host.frames[-1] == admitted
    world.say(host, send("h2"))
    assert messages(ann) == [(2, "h2")]


def test_back_in_the_waiting_room_closes_4003_tells_the_room_and_starts_again(
    world: World,
) -> None:
    host, ann = pair(world)
    world.say(host, send("h1"))
    world.publish(Unadmitted(ROOM, "ann"))
    assert (ann.code, ann.reason) == (Close.FORBIDDEN, "back in the waiting room")
    assert host.frames[-1] == {"type": "presence", "event": "waiting", "account_id": "ann"}
    assert world.rooms[ROOM].participants["ann"].admitted is False
    world.say(host, send("h2"))  # said while ann is out

    # Her next socket waits; her next admission is a new admission point.
    again = world.join(ROOM, "ann", "ann-1", people(host=True, ann=False))
    assert again.frames[0]["state"] == "waiting"
    assert host.frames[-1]["event"] == "waiting"
    world.publish(Admitted(ROOM, "ann"))
    world.say(host, send("h3"))
    world.say(again, {"type": "resume", "after": 0})
    world.replay_all(again)
    assert again.of("replay_truncated") == [{"type": "replay_truncated", "earliest": 3}]
    assert messages(again) == [(3, "h3")]


# -- sending -----------------------------------------------------------------------------


def test_a_send_is_acked_and_reaches_every_other_device_once(world: World) -> None:
    host, ann = pair(world)
    world.say(ann, send("a1"))
    assert ann.of("ack") == [{"type": "ack", "id": "a1", "seq": 1}]
    assert ann.of("message") == []  # not to itself
    (message,) = host.of("message")
    assert message == {
        "type": "message",
        "seq": 1,
        "id": "a1",
        "sender": {"account_id": "ann", "device_id": "ann-1"},
        "ciphertext": "AQID",
        "sent_at": START.isoformat().replace("+00:00", "Z"),
    }
    world.say(ann, send("a1"))  # a resend: the same seq, delivered once
    assert ann.of("ack") == [{"type": "ack", "id": "a1", "seq": 1}] * 2
    assert messages(host) == [(1, "a1")]


def test_a_directed_send_reaches_only_its_recipients(world: World) -> None:
    host, ann = pair(world)
    bob = world.join(ROOM, "bob", "bob-1", people(host=True, ann=True, bob=True))
    world.say(host, send("d1", recipients={"ann-1": "AAAA", "bob-1": "BBBB"}))
    world.say(host, send("d2", recipients={"ann-1": "CCCC"}))
    assert [(f["id"], f["ciphertext"]) for f in ann.of("message")] == [
        ("d1", "AAAA"),
        ("d2", "CCCC"),
    ]
    assert [(f["id"], f["ciphertext"]) for f in bob.of("message")] == [("d1", "BBBB")]
    world.say(host, send("d3", recipients={"stranger-1": "AAAA"}))
    assert host.of("error") == [
        {
            "type": "error",
            "code": "validation_error",
            "detail": "unknown recipient device",
            "id": "d3",
        }
    ]


def test_a_refused_send_gets_an_error_with_its_id(world: World) -> None:
    sent_at = frames.sent_at(START)
    size = len(frames.fragment("q1", "host", "host-1", "A" * 8, sent_at))
    world.broker.limits = ReplayLimits(sender_max_bytes=size + size // 2)
    host, _ = pair(world)
    world.say(host, send("q1", "A" * 8))
    world.say(host, send("q2", "A" * 8))
    world.broker_down = True
    world.say(host, send("u1"))
    assert host.of("ack") == [{"type": "ack", "id": "q1", "seq": 1}]
    assert [(e["code"], e["id"]) for e in host.of("error")] == [
        ("quota_exceeded", "q2"),
        ("unavailable", "u1"),
    ]
    assert host.open


def test_a_frame_that_fails_validation_gets_an_error_and_the_socket_stays(world: World) -> None:
    host, _ = pair(world)
    for text in ("not json", "[]", '{"type":"nope"}', '{"type":"auth","token":"x"}'):
        world.say(host, text)
    assert [e["code"] for e in host.of("error")] == ["validation_error"] * 4
    assert host.of("error")[-1]["detail"] == "already authenticated"
    world.say(host, {"type": "ping"})
    assert host.frames[-1] == {"type": "pong"}


def test_a_binary_frame_closes_1008(world: World) -> None:
    host, _ = pair(world)
    world.say(host, None)
    assert (host.code, host.reason) == (Close.POLICY, "binary frames are not allowed")


def test_rate_limit_then_1008_as_abuse_persists(world: World) -> None:
    host, _ = pair(world)
    for _ in range(200):  # the burst
        world.say(host, {"type": "ping"})
    assert len(host.of("pong")) == 200
    for _ in range(MAX_STRIKES):
        world.say(host, {"type": "ping"})
    assert len(host.of("error")) == MAX_STRIKES
    assert {e["code"] for e in host.of("error")} == {"rate_limited"}
    assert host.open
    world.say(host, {"type": "ping"})
    assert (host.code, host.reason) == (Close.POLICY, "rate limit exceeded")


def test_the_rate_limit_recovers_with_time(world: World) -> None:
    host, _ = pair(world)
    for _ in range(210):
        world.say(host, {"type": "ping"})
    assert len(host.of("error")) == 10
    world.advance(0.5)  # 50 more at 100 a second
    for _ in range(50):
        world.say(host, {"type": "ping"})
    assert len(host.of("error")) == 10
    assert host.open


# -- events ------------------------------------------------------------------------------


def test_removal_closes_4003_and_tells_the_room(world: World) -> None:
    host, ann = pair(world)
    world.publish(ParticipantRemoved(ROOM, "ann"))
    assert (ann.code, ann.reason) == (Close.FORBIDDEN, "removed from the room")
    assert host.frames[-1] == {"type": "presence", "event": "removed", "account_id": "ann"}
    assert "ann" not in world.rooms[ROOM].participants


def test_devices_added_and_revoked_are_told_to_the_admitted(world: World) -> None:
    host, ann = pair(world)
    wes = world.join(ROOM, "wes", "wes-1", people(host=True, ann=True, wes=False))
    world.publish(DeviceAdded("ann", "ann-2", "key-2", "sig-2"))
    added = frames.device("added", "ann", "ann-2", ("key-2", "sig-2"))
    assert host.raw[-1] == added
    assert host.of("device")[-1]["device"] == {
        "device_id": "ann-2",
        "public_key": "key-2",
        "signing_key": "sig-2",
    }
    assert wes.of("device") == []
    world.publish(DeviceRevoked("ann", "ann-1"))
    assert (ann.code, ann.reason) == (Close.FORBIDDEN, "device revoked")
    revoked = frames.device("revoked", "ann", "ann-1", ("key-ann", "sig-ann"))
    assert host.raw[-1] == revoked
    assert world.rooms[ROOM].participants["ann"].devices == {"ann-2": ("key-2", "sig-2")}
    # A device registered before devices were signed has no signing key.
    world.publish(DeviceAdded("ann", "ann-3", "key-3", None))
    assert host.of("device")[-1]["device"] == {
        "device_id": "ann-3",
        "public_key": "key-3",
        "signing_key": None,
    }
    # An account that is not in the room: nothing.
    world.publish(DeviceAdded("stranger", "s-1", "k", "s"))
    assert host.raw[-1] == frames.device("added", "ann", "ann-3", ("key-3", None))


def test_a_closed_account_closes_with_its_code_a_revoked_session_with_4001(world: World) -> None:
    host, ann = pair(world)
    world.publish(AccountClosed("ann", Close.TOKEN, "erased"))
    assert (ann.code, ann.reason) == (Close.TOKEN, "erased")
    world.publish(LoginRevoked("s"))
    assert (host.code, host.reason) == (Close.TOKEN, "logged out")


def test_locking_and_unlocking_are_told_to_everyone(world: World) -> None:
    host, ann = pair(world, client_admitted=False)
    world.publish(RoomLocked(ROOM))
    assert world.rooms[ROOM].locked
    world.publish(RoomUnlocked(ROOM))
    for socket in (host, ann):
        assert [f["event"] for f in socket.of("room")] == ["locked", "unlocked"]


def test_a_check_in_is_told_to_the_hosts_alone(world: World) -> None:
    host, ann = pair(world)
    bob = world.join(ROOM, "bob", "bob-1", people(host=True, ann=True, bob=True))
    world.publish(
        CheckinRecorded(
            ROOM, "ann", "12 Elm St", "US-CO", "Sam", "+1303555", "+1303556", START, True
        )
    )
    (frame,) = host.of("checkin")
    assert (frame["account_id"], frame["jurisdiction"], frame["licensed"]) == ("ann", "US-CO", True)
    assert frame["emergency_contact"] == {"name": "Sam", "phone": "+1303555"}
    assert frame["jurisdiction_mismatch"] is False
    assert ann.of("checkin") == []
    assert bob.of("checkin") == []


def test_a_hosts_greeting_follows_its_welcome_and_no_one_elses(world: World) -> None:
    participants = people(host=True, ann=True)
    ann = world.join(ROOM, "ann", "ann-1", participants)
    grant = Grant(ROOM, "host", "host-1", "host", "s", True, None, False, participants)
    grant.greeting = (frames.dumps({"type": "checkin", "account_id": "ann"}),)
    peer = Peer.from_grant("c-host", grant, rate_per_s=100)
    room = world.rooms[ROOM]
    host = world.sockets[peer.id] = Socket(peer, room)
    world.feed(room, Granted(grant))
    world.feed(room, Opening(peer))
    assert [f["type"] for f in host.frames[:2]] == ["welcome", "checkin"]
    assert peer.greeting == ()
    assert ann.of("checkin") == []


def test_a_participant_added_is_known_to_the_room(world: World) -> None:
    pair(world)
    world.publish(
        ParticipantAdded(ROOM, "bob", "participant", "Bob", False, (("bob-1", "k", "s"),))
    )
    bob = world.rooms[ROOM].participants["bob"]
    assert (bob.display_name, bob.admitted, bob.devices) == ("Bob", False, {"bob-1": ("k", "s")})


def test_the_end_closes_every_connection_4010(world: World) -> None:
    host, ann = pair(world, client_admitted=False)
    world.publish(RoomEnded(ROOM))
    for socket in (host, ann):
        assert socket.raw[-1] == frames.ROOM_ENDED
        assert (socket.code, socket.reason) == (Close.ENDED, "room ended")


# -- the clock ---------------------------------------------------------------------------


def test_a_scheduled_end_sends_the_notice_then_ends(world: World) -> None:
    ends = START + timedelta(minutes=30)
    host = world.join(ROOM, "host", "host-1", people(host=True), role="host", ends_at=ends)
    assert world.timers == {(ROOM, Timer.ENDING): ends - ENDING_NOTICE, (ROOM, Timer.END): ends}
    assert host.of("room") == []
    world.fire(ROOM, Timer.ENDING)
    assert host.raw[-1] == frames.room_ending(ends)
    world.fire(ROOM, Timer.END)
    assert (host.raw[-1], host.code) == (frames.ROOM_ENDED, Close.ENDED)


def test_joining_near_the_end_gets_the_notice_at_once(world: World) -> None:
    ends = START + timedelta(minutes=3)
    host = world.join(ROOM, "host", "host-1", people(host=True), role="host", ends_at=ends)
    assert [f["type"] for f in host.frames] == ["welcome", "room"]
    assert host.frames[1] == {
        "type": "room",
        "event": "ending",
        "ends_at": ends.isoformat().replace("+00:00", "Z"),
    }
    assert world.timers == {(ROOM, Timer.END): ends}  # no notice timer: it went already


def test_moving_the_end_rearms_and_notifies_again(world: World) -> None:
    ends = START + timedelta(seconds=3)
    host = world.join(ROOM, "host", "host-1", people(host=True), role="host", ends_at=ends)
    room = world.rooms[ROOM]
    later = ends + timedelta(minutes=4)
    actions = handle(room, RoomSchedule(ROOM, later), world.now())
    assert actions[:2] == [CancelTimer(Timer.END), ArmTimer(Timer.END, later)]
    assert actions[2:] == [Send((host.peer,), frames.room_ending(later))]
    world.execute(room, actions)
    # The old end passes: its timer was cancelled, and a late one changes nothing.
    world.advance(200)
    world.feed(room, Tick())
    world.feed(room, TimerFired(Timer.END, ends))
    assert host.open
    # Taken off the schedule: no timer at all.
    world.publish(RoomSchedule(ROOM, None))
    assert world.timers == {}


def test_the_clock_reaching_the_end_ends_the_room_by_tick() -> None:
    world = World(idle_timeout_s=3600)
    ends = START + timedelta(minutes=30)
    host = world.join(ROOM, "host", "host-1", people(host=True), role="host", ends_at=ends)
    world.advance(31 * 60)
    world.feed(world.rooms[ROOM], Tick())
    assert [f.get("event") for f in host.of("room")] == ["ending", "ended"]
    assert host.code is Close.ENDED
    assert world.rooms[ROOM].timers == {}


def test_a_silent_connection_is_closed_1001_a_talking_one_stays() -> None:
    world = World(idle_timeout_s=60)
    host, ann = pair(world)
    world.advance(40)
    world.say(host, {"type": "ping"})
    world.advance(30)
    world.feed(world.rooms[ROOM], Tick())
    assert (ann.code, ann.reason) == (Close.GOING_AWAY, "idle timeout")
    assert host.open


# -- stopping ------------------------------------------------------------------------------


def test_drain_closes_1012_after_the_frame_in_hand_is_answered(world: World) -> None:
    host, ann = pair(world)
    room = world.rooms[ROOM]
    now = world.now()
    (append,) = handle(room, Received(host.peer, '{"type":"send","id":"x","ciphertext":"AQ"}'), now)
    assert isinstance(append, Append)
    actions = handle(room, Drain(), now)
    assert actions == [CloseAfter(ann.peer, Close.SERVICE_RESTART, "")]
    assert (host.peer.state, ann.peer.state) == (State.DRAINING, State.CLOSED)
    assert handle(room, Received(host.peer, '{"type":"ping"}'), now) == []  # reads no more
    assert handle(room, Appended(host.peer, "x", 1), now) == [
        Send((host.peer,), frames.ack("x", 1)),
        CloseAfter(host.peer, Close.SERVICE_RESTART, ""),
    ]


def test_a_full_queue_closes_1013_and_a_gone_peer_1001(world: World) -> None:
    host, ann = pair(world)
    room = world.rooms[ROOM]
    world.feed(room, Overflowed(ann.peer))
    assert (ann.code, ann.reason) == (Close.TRY_AGAIN, "consumer too slow")
    world.feed(room, PeerGone(host.peer))
    assert host.code is Close.GOING_AWAY
    world.feed(room, PeerGone(ann.peer))  # closed already: the first code stays
    assert ann.peer.close_code is Close.TRY_AGAIN


# -- replay --------------------------------------------------------------------------------


def test_a_late_joiner_is_told_where_its_history_starts(world: World) -> None:
    host = world.join(ROOM, "host", "host-1", people(host=True), role="host")
    world.say(host, send("before"))
    world.publish(
        ParticipantAdded(ROOM, "ann", "participant", "Ann", True, (("ann-1", "k", None),))
    )
    world.say(host, send("after"))
    ann = world.join(ROOM, "ann", "ann-1", people(host=True, ann=True))
    world.say(ann, {"type": "resume", "after": 0})
    world.replay_all(ann)
    assert [f["type"] for f in ann.frames[1:]] == ["replay_truncated", "message", "resumed"]
    assert ann.frames[1] == {"type": "replay_truncated", "earliest": 2}
    assert messages(ann) == [(2, "after")]
    assert ann.frames[-1] == {"type": "resumed", "seq": 2}


def test_a_long_backlog_is_replayed_page_by_page_in_order(world: World) -> None:
    host, ann = pair(world)
    world.hang_up(ann)
    count = 3 * REPLAY_PAGE + 5
    for i in range(count):
        world.say(host, send(f"m{i}"))
        world.advance(0.01)  # within the rate limit
    again = world.join(ROOM, "ann", "ann-1", people(host=True, ann=True))
    world.say(again, {"type": "resume", "after": 0})
    reads = 0
    while world.replay_work.get(again.peer.id):
        reads += type(world.replay_work[again.peer.id][0]).__name__ == "ReadPage"
        world.replay_step(again)
    assert [seq for seq, _ in messages(again)] == list(range(1, count + 1))
    assert again.frames[-1] == {"type": "resumed", "seq": count}
    assert reads == 4


def test_live_messages_wait_for_the_replay_and_come_once(world: World) -> None:
    host, ann = pair(world)
    world.say(host, send("m1"))
    world.say(host, send("m2"))
    world.say(ann, {"type": "resume", "after": 0})  # it has both already, live
    world.replay_step(ann)  # the admission point and the latest seq
    world.say(host, send("m3"))  # held back: the replay reads on to it
    assert messages(ann) == [(1, "m1"), (2, "m2")]
    world.replay_all(ann)
    assert messages(ann) == [(1, "m1"), (2, "m2"), (3, "m3")]
    assert ann.frames[-1] == {"type": "resumed", "seq": 3}
    world.say(host, send("m4"))
    assert messages(ann)[-1] == (4, "m4")
    # Resuming again from the start gives nothing this socket has had.
    world.say(ann, {"type": "resume", "after": 0})
    world.replay_all(ann)
    assert messages(ann) == [(1, "m1"), (2, "m2"), (3, "m3"), (4, "m4")]
    assert ann.frames[-1] == {"type": "resumed", "seq": 4}


def test_a_new_resume_replaces_the_one_under_way(world: World) -> None:
    host, ann = pair(world)
    world.hang_up(ann)
    for i in range(5):
        world.say(host, send(f"m{i}"))
    again = world.join(ROOM, "ann", "ann-1", people(host=True, ann=True))
    world.say(again, {"type": "resume", "after": 0})
    for _ in range(4):  # begun, one page read, two messages queued
        world.replay_step(again)
    assert messages(again) == [(1, "m0"), (2, "m1")]
    world.say(again, {"type": "resume", "after": 3})
    world.replay_all(again)
    assert messages(again) == [(1, "m0"), (2, "m1"), (4, "m3"), (5, "m4")]
    assert [f["type"] for f in again.frames].count("resumed") == 1
    # What neither replay went through is still there for a third.
    world.say(again, {"type": "resume", "after": 2})
    world.replay_all(again)
    assert [seq for seq, _ in messages(again)] == [1, 2, 4, 5, 3]


def test_a_message_still_waiting_for_room_in_the_queue_is_not_lost_to_a_new_resume(
    world: World,
) -> None:
    host, ann = pair(world)
    world.hang_up(ann)
    for i in range(3):
        world.say(host, send(f"m{i}"))
    again = world.join(ROOM, "ann", "ann-1", people(host=True, ann=True))
    world.say(again, {"type": "resume", "after": 0})
    world.replay_step(again)  # the admission point and the latest seq
    world.replay_step(again)  # a page: its first message waits for room in the queue
    assert messages(again) == []
    world.say(again, {"type": "resume", "after": 0})  # stops that replay
    world.replay_all(again)
    assert [seq for seq, _ in messages(again)] == [1, 2, 3]


def test_a_replay_the_broker_cannot_serve_is_an_error_a_broken_one_1013(
    world: World,
) -> None:
    host, ann = pair(world)
    world.say(host, send("m1"))
    world.say(ann, {"type": "resume", "after": 0})
    world.broker_down = True
    world.replay_step(ann)
    assert ann.frames[-1] == {
        "type": "error",
        "code": "unavailable",
        "detail": "replay not available; resume again",
    }
    assert replay_of(ann) is None
    world.say(ann, {"type": "resume", "after": 0})
    replay = replay_of(ann)
    assert replay is not None
    world.feed(world.rooms[ROOM], ReplayFailed(ann.peer, replay.id, broken=True))
    assert (ann.code, ann.reason) == (Close.TRY_AGAIN, "replay failed; resume again")


def test_inputs_of_a_stopped_replay_are_ignored(world: World) -> None:
    _, ann = pair(world)
    world.say(ann, {"type": "resume", "after": 0})
    world.say(ann, {"type": "resume", "after": 0})
    room = world.rooms[ROOM]
    assert handle(room, ReplayFailed(ann.peer, 1, broken=True), world.now()) == []
    assert ann.open


# -- close codes -------------------------------------------------------------------------


def test_every_close_code_is_documented_in_the_contract() -> None:
    protocol = (Path(__file__).parents[2] / "docs" / "PROTOCOL.md").read_text()
    table = protocol.split("Close codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d{4}) \|", table, re.MULTILINE)}
    assert documented == {int(code) for code in MEANING}
    assert set(MEANING) == set(Close)


# -- what each frame read was (the hub counts frames by it) -------------------------------


def test_the_room_says_what_each_frame_read_was(world: World) -> None:
    host, ann = pair(world)
    assert read_of(host) == "unread"
    cases: list[tuple[dict[str, Any] | str, str]] = [
        (send("m1"), "send"),
        ({"type": "ping"}, "ping"),
        ({"type": "resume", "after": 0}, "resume"),
        ({"type": "auth", "token": "t"}, "auth"),
        ({"type": "nonsense"}, "invalid"),
        ("not json", "invalid"),
        (send("big", "A" * (90 * 1024)), "invalid"),
    ]
    for frame, read in cases:
        world.say(host, frame)
        assert read_of(host) == read, frame
    world.say(ann, None)
    assert read_of(ann) == "binary"
    assert ann.code == Close.POLICY
    world.say(ann, {"type": "ping"})
    assert read_of(ann) == "unread"  # closed: it reads no more


def read_of(socket: Socket) -> str:
    return socket.peer.read


def test_a_frame_over_the_rate_is_read_as_rate_limited(world: World) -> None:
    host, _ = pair(world)
    for _ in range(int(host.peer.bucket.burst)):
        world.say(host, {"type": "ping"})
        assert read_of(host) == "ping"
    world.say(host, {"type": "ping"})
    assert read_of(host) == "rate_limited"
    assert host.of("error")[-1]["code"] == "rate_limited"
