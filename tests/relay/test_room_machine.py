"""A room driven by Hypothesis through joins, admissions, removals, sends, resumes, ends and drops.

The room's core runs in a `World` (the in-process broker, no sockets, no
event loop, a clock that moves when a rule moves it). After every step, and at
every frame a connection gets, the contract's promises are checked:
- a device is sent a message only while its account is admitted, only one
  sent after its admission point (a new one after each return to the waiting
  room), and only one addressed to it;
- `seq` is gap-free and increasing per room;
- a resend (the same client id from the same device) is acked with the first
  seq, and delivered once;
- a connection is sent each message once (a later `resume` asking for it
  again aside), live messages in order, and after `resumed` it has every
  message the room keeps for it in the range it asked for;
- every close code is one PROTOCOL.md documents (`MEANING`).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from app.core.close_codes import MEANING
from app.core.events import (
    Admitted,
    DeviceRevoked,
    ParticipantAdded,
    ParticipantRemoved,
    RoomEnded,
    Unadmitted,
)
from app.relay.protocol import State
from app.relay.room import Drain, Participant, Peer, Tick
from tests.relay.roomworld import Socket, World, run

ROOM = "room"
DEVICES = {"host": ("host-1",), "ann": ("ann-1", "ann-2"), "bob": ("bob-1",), "cat": ("cat-1",)}
GUESTS = ("ann", "bob", "cat")
LIVE = "live"


class Checked(World):
    """A world that holds every frame to the contract as it is sent."""

    def __init__(self, machine: RoomMachine) -> None:
        self.machine = machine
        super().__init__(idle_timeout_s=300)
        #: Per connection: seq -> where each delivery came from ("live" or a replay id).
        self.got: dict[str, dict[int, list[int | str]]] = {}
        self.live_high: dict[str, int] = {}
        self.began: dict[str, tuple[int, int]] = {}  # connection -> (after, admission point)

    def on_replay_begun(self, peer: Peer, point: int, latest: int) -> None:
        assert peer.replay is not None
        self.began[peer.id] = (peer.replay.after, point)

    def on_frame(self, socket: Socket, frame: dict[str, Any]) -> None:
        peer = socket.peer
        if len(socket.frames) == 1:
            assert frame["type"] == "welcome"
        match frame["type"]:
            case "message":
                self._message(socket, frame)
            case "device":
                assert peer.state in (State.ADMITTED, State.DRAINING)
            case "ack":
                self.machine.acked(peer.device_id, frame["id"], frame["seq"])
            case "resumed":
                self._resumed(socket, frame["seq"])

    def _message(self, socket: Socket, frame: dict[str, Any]) -> None:
        peer, model = socket.peer, self.machine
        seq = frame["seq"]
        # Only to an admitted account, only what was said since its admission.
        assert peer.state in (State.ADMITTED, State.DRAINING), peer.state
        since = model.since.get(peer.account_id)
        assert since is not None, f"{peer.account_id} is not admitted"
        assert seq > since, f"seq {seq} from before {peer.account_id}'s admission at {since}"
        # Only what is addressed to it.
        sender = frame["sender"]["device_id"]
        recipients = model.recipients[(sender, frame["id"])]
        assert peer.device_id in recipients if recipients else peer.device_id != sender
        # Once per connection, unless a later resume asked for it again.
        source: int | str = LIVE if self.pacing is None else self.pacing
        earlier = self.got.setdefault(peer.id, {}).setdefault(seq, [])
        assert all(s != LIVE and s != source for s in earlier), (seq, earlier, source)
        assert source != LIVE or not earlier, (seq, earlier)
        earlier.append(source)
        if source == LIVE:
            assert seq > self.live_high.get(peer.id, 0), "live messages come in seq order"
            self.live_high[peer.id] = seq

    def _resumed(self, socket: Socket, latest: int) -> None:
        """Everything the room keeps for it in the range it asked for has come."""
        after, point = self.began[socket.peer.id]
        got = self.got.get(socket.peer.id, {})
        kept = run(self.broker.replay(ROOM, max(after, point)))
        owed = [s.seq for s in kept if s.seq <= latest and s.fragment_for(socket.peer.device_id)]
        assert [seq for seq in owed if seq not in got] == [], (after, point, latest)


class RoomMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = Checked(self)
        # The database's view: the members, whether each is admitted, their devices.
        self.members: dict[str, bool] = {"host": True}
        self.devices: dict[str, list[str]] = {a: list(d) for a, d in DEVICES.items()}
        self.ended = False
        #: Each admitted account's admission point (the latest seq when it was admitted).
        self.since: dict[str, int] = {"host": 0}
        self.sent: dict[str, list[dict[str, Any]]] = {}  # device -> its send frames
        self.recipients: dict[tuple[str, str], frozenset[str]] = {}
        self.seqs: dict[tuple[str, str], int] = {}
        self.sockets: list[Socket] = []
        self.count = 0

    # -- the model -------------------------------------------------------------------
    def latest(self) -> int:
        return run(self.world.broker.latest_seq(ROOM))

    def acked(self, device: str, client_id: str, seq: int) -> None:
        first = self.seqs.setdefault((device, client_id), seq)
        assert seq == first, f"{client_id} acked with {seq}, first with {first}"

    def view(self) -> dict[str, Participant]:
        return {
            account: Participant(
                account,
                "host" if account == "host" else "participant",
                account.title(),
                admitted,
                {d: (f"key-{d}", f"sig-{d}") for d in self.devices[account]},
            )
            for account, admitted in self.members.items()
        }

    def open_sockets(self) -> list[Socket]:
        return [s for s in self.sockets if s.open]

    def pick(self, sockets: list[Socket], index: int) -> Socket:
        return sockets[index % len(sockets)]

    # -- the people --------------------------------------------------------------------
    @initialize(
        said=st.integers(0, 3),
        guests=st.lists(st.tuples(st.sampled_from(GUESTS), st.booleans()), max_size=3),
    )
    def gather(self, said: int, guests: list[tuple[str, bool]]) -> None:
        """The host is in the room and says something; guests are added, admitted or
        waiting, and join."""
        self.join(0, 0)
        if said:
            self.send(0, [], said)
        for account, admitted in guests:
            self.add(account, admitted)
            self.join(list(self.members).index(account), 0)

    @precondition(lambda self: not self.ended)
    @rule(index=st.integers(0, 50), which=st.integers(0, 1))
    def join(self, index: int, which: int) -> None:
        account = list(self.members)[index % len(self.members)]
        if not self.devices[account]:
            return
        device = self.devices[account][which % len(self.devices[account])]
        role = "host" if account == "host" else "participant"
        socket = self.world.join(
            ROOM, account, device, self.view(), role=role, session=f"login-{account}"
        )
        self.sockets.append(socket)

    @precondition(lambda self: not self.ended)
    @rule(account=st.sampled_from(GUESTS), admitted=st.booleans())
    def add(self, account: str, admitted: bool) -> None:
        if account in self.members:
            return
        keys = tuple((d, f"key-{d}", f"sig-{d}") for d in self.devices[account])
        event = ParticipantAdded(ROOM, account, "participant", account.title(), admitted, keys)
        self.world.publish(event)
        self.members[account] = admitted
        if admitted:
            self.since[account] = self.latest()

    @precondition(lambda self: not self.ended)
    @rule(account=st.sampled_from(GUESTS))
    def admit(self, account: str) -> None:
        if self.members.get(account) is not False:
            return
        self.world.publish(Admitted(ROOM, account))
        self.members[account] = True
        self.since.setdefault(account, self.latest())

    @precondition(lambda self: not self.ended)
    @rule(account=st.sampled_from(GUESTS))
    def unadmit(self, account: str) -> None:
        """Back to the waiting room (consent withdrawn): its sockets close, and an
        admission after this one is a new admission point."""
        if self.members.get(account) is not True:
            return
        self.world.publish(Unadmitted(ROOM, account))
        self.members[account] = False
        self.since.pop(account, None)
        for socket in self.sockets:
            if socket.peer.account_id == account:
                assert not socket.open

    @rule(account=st.sampled_from(GUESTS))
    def remove(self, account: str) -> None:
        if account not in self.members:
            return
        self.world.publish(ParticipantRemoved(ROOM, account))
        del self.members[account]
        self.since.pop(account, None)
        for socket in self.sockets:
            if socket.peer.account_id == account:
                assert not socket.open

    @precondition(lambda self: self.count >= 10)
    @rule(account=st.sampled_from(("host", *GUESTS)), which=st.integers(0, 1))
    def revoke(self, account: str, which: int) -> None:
        devices = self.devices[account]
        if len(devices) < 2 and account == "host":
            return  # the host keeps a device to talk with
        if not devices:
            return
        device = devices.pop(which % len(devices))
        self.world.publish(DeviceRevoked(account, device))
        for socket in self.sockets:
            if socket.peer.device_id == device:
                assert not socket.open

    @precondition(lambda self: not self.ended and self.count >= 10)
    @rule()
    def end(self) -> None:
        self.world.publish(RoomEnded(ROOM))
        self.ended = True
        assert self.open_sockets() == []

    # -- the sockets -------------------------------------------------------------------
    @precondition(lambda self: any(s.open for s in self.sockets))
    @rule(
        index=st.integers(0, 50),
        to=st.lists(st.integers(0, 5), max_size=3, unique=True),
        times=st.integers(1, 3),
    )
    def send(self, index: int, to: list[int], times: int) -> None:
        """Messages from one socket (an admitted one, mostly), to everyone or to some."""
        sockets = self.open_sockets()
        talkers = [s for s in sockets if s.peer.state is State.ADMITTED] if index % 4 else []
        socket = self.pick(talkers or sockets, index)
        everyone = sorted(d for a in self.members for d in self.devices[a])
        recipients = sorted({everyone[i % len(everyone)] for i in to})
        for _ in range(times):
            self.count += 1
            cid = f"m{self.count}"
            frame: dict[str, Any] = {"type": "send", "id": cid}
            if recipients:
                frame["recipients"] = dict.fromkeys(recipients, "AQID")
            else:
                frame["ciphertext"] = "AQID"
            self.recipients[(socket.peer.device_id, cid)] = frozenset(recipients)
            self.sent.setdefault(socket.peer.device_id, []).append(frame)
            self.world.say(socket, frame)

    @precondition(
        lambda self: any(s.open and self.sent.get(s.peer.device_id) for s in self.sockets)
    )
    @rule(index=st.integers(0, 50), which=st.integers(0, 50))
    def resend(self, index: int, which: int) -> None:
        sockets = [s for s in self.open_sockets() if self.sent.get(s.peer.device_id)]
        socket = self.pick(sockets, index)
        frames = self.sent[socket.peer.device_id]
        self.world.say(socket, frames[which % len(frames)])

    @precondition(lambda self: any(s.open for s in self.sockets))
    @rule(index=st.integers(0, 50), after=st.integers(0, 12), steps=st.integers(0, 6))
    def resume(self, index: int, after: int, steps: int) -> None:
        socket = self.pick(self.open_sockets(), index)
        self.world.say(socket, {"type": "resume", "after": after})
        for _ in range(steps):
            self.world.replay_step(socket)

    @precondition(lambda self: not self.ended and any(s.open for s in self.sockets))
    @rule(index=st.integers(0, 50), back=st.integers(0, 6), steps=st.integers(0, 6))
    def reconnect(self, index: int, back: int, steps: int) -> None:
        """What a client does after a drop: a new socket for the same device, then resume."""
        socket = self.pick(self.open_sockets(), index)
        self.world.hang_up(socket)
        account, device = socket.peer.account_id, socket.peer.device_id
        if account not in self.members or device not in self.devices[account]:
            return
        role = "host" if account == "host" else "participant"
        again = self.world.join(
            ROOM, account, device, self.view(), role=role, session=f"login-{account}"
        )
        self.sockets.append(again)
        self.world.say(again, {"type": "resume", "after": max(0, self.latest() - back)})
        for _ in range(steps):
            self.world.replay_step(again)

    @precondition(lambda self: any(self.world.replay_work.get(s.peer.id) for s in self.sockets))
    @rule(index=st.integers(0, 50), steps=st.integers(1, 4))
    def replay_step(self, index: int, steps: int) -> None:
        busy = [s for s in self.sockets if self.world.replay_work.get(s.peer.id)]
        socket = self.pick(busy, index)
        for _ in range(steps):
            self.world.replay_step(socket)

    @precondition(lambda self: any(s.open for s in self.sockets))
    @rule(index=st.integers(0, 50))
    def hang_up(self, index: int) -> None:
        self.world.hang_up(self.pick(self.open_sockets(), index))

    @precondition(lambda self: any(not s.open and not s.left for s in self.sockets))
    @rule(index=st.integers(0, 50))
    def closed_socket_leaves(self, index: int) -> None:
        gone = [s for s in self.sockets if not s.open and not s.left]
        self.world.leave(self.pick(gone, index))

    @rule()
    def broker_blip(self) -> None:
        self.world.broker_down = True

    @rule(seconds=st.sampled_from([0.5, 5.0, 60.0]))
    def time_passes(self, seconds: float) -> None:
        self.world.advance(seconds)
        room = self.world.rooms.get(ROOM)
        if room is not None:
            self.world.feed(room, Tick())

    @precondition(lambda self: self.count >= 10)
    @rule()
    def long_silence(self) -> None:
        """Past the idle timeout: the sockets that said nothing meanwhile close (1001)."""
        self.time_passes(400.0)

    @precondition(lambda self: ROOM in self.world.rooms and self.count >= 10)
    @rule()
    def drain(self) -> None:
        self.world.feed(self.world.rooms[ROOM], Drain())
        assert self.open_sockets() == []

    # -- invariants --------------------------------------------------------------------
    @invariant()
    def seq_is_gap_free_and_increasing(self) -> None:
        seqs = [stored.seq for room, stored in self.world.published if room == ROOM]
        assert seqs == list(range(1, len(seqs) + 1))
        assert set(self.seqs.values()) <= set(seqs)
        assert len(set(self.seqs.values())) == len(self.seqs)  # one seq, one message

    @invariant()
    def connections_are_where_their_state_says(self) -> None:
        room = self.world.rooms.get(ROOM)
        if room is None:
            return
        assert room.joining == {}
        for device, peer in room.connections.items():
            assert peer.device_id == device
            assert peer.state is not State.AUTHENTICATING
            if peer.state is State.ADMITTED:
                assert self.members.get(peer.account_id) is True
            if peer.state is State.WAITING:
                assert self.members.get(peer.account_id) is False

    @invariant()
    def every_close_is_documented(self) -> None:
        for _, code in self.world.closes:
            assert code in MEANING


RoomMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRoomMachine = RoomMachine.TestCase
