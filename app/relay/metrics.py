"""What the relay counts for /metrics: sockets, rooms, frames, bytes, closes, refusals,
send queues and the broker's round trips.

The hub and the socket endpoint count; the room's rules (`app.relay.room`) know
nothing of it. Every label value comes from a fixed set named here (a frame
type, a close code of `Close`, a refusal code, a broker kind, an operation);
anything else is counted as "other", so no id, name or client-made string can
ever become a label. The labelled children are made once, here: on the hot
path counting is a dict look-up and an increment.

A registry of its own when none is given: a hub built without one counts
into a registry nobody serves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.core.close_codes import Close
from app.relay import frames
from app.relay.protocol import FrameRead

#: What a frame read was (`app.relay.protocol.FrameRead`).
FRAMES_IN: tuple[str, ...] = get_args(FrameRead)
#: The type of a frame written (`app.relay.frames.TYPES`), or "other".
FRAMES_OUT: tuple[str, ...] = (*frames.TYPES, "other")
#: How a message reached a recipient's queue: live, or by a replay (`resume`).
DELIVERIES = ("live", "replay")
#: A socket's close code: a value of `Close`, or "other" (1011, a server bug).
CLOSES: tuple[str, ...] = (*(str(code.value) for code in Close), "other")
#: Why the socket's handshake refused it: the code the refusal carries.
REFUSALS = (
    # the handshake
    "handshake_rate",
    "origin_refused",
    "subprotocol_required",
    "token_in_url",
    "auth_timeout",
    "auth_frame_required",
    "binary_frame",
    "gone",
    # the token
    "token_invalid",
    "token_expired",
    "token_spent",
    # the room-token rule (rooms.admit_device)
    "not_found",
    "forbidden",
    "device_revoked",
    "room_ended",
    "room_locked",
    "outside_time_window",
    "consent_required",
    "consent_not_published",
    # the database or the broker away
    "unavailable",
    "other",
)
BROKERS = ("memory", "redis", "other")
#: The broker calls timed: storing a message, reading a replay page, a socket's
#: join (who is online, the latest seq, admission points), its presence, and
#: spending a room token's `jti`.
BROKER_OPERATIONS = ("append", "replay", "join", "presence", "spend")
#: Round trips: 0.1 ms to 2.5 s.
BROKER_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
#: A socket's deepest send queue, in frames, up to the limit (1024: then it closes).
QUEUE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _children(metric: Any, values: tuple[str, ...]) -> dict[str, Any]:
    return {value: metric.labels(value) for value in values}


class RelayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.registry = registry
        self.sockets = Gauge(
            "confide_relay_sockets_open", "Room sockets open on this instance", registry=registry
        )
        self.rooms = Gauge(
            "confide_relay_rooms_live",
            "Rooms with a socket on this instance",
            registry=registry,
        )
        self.queue_frames = Gauge(
            "confide_relay_send_queue_max_frames",
            "The deepest send queue of a socket on this instance now, in frames",
            registry=registry,
        )
        self.queue_bytes = Gauge(
            "confide_relay_send_queue_max_bytes",
            "The largest send queue of a socket on this instance now, in bytes",
            registry=registry,
        )
        self.queue_peak = Histogram(
            "confide_relay_send_queue_peak_frames",
            "The deepest each closed socket's send queue ever was, in frames",
            buckets=QUEUE_BUCKETS,
            registry=registry,
        )
        frames_in = Counter(
            "confide_relay_frames_in",
            "Frames read from room sockets, by what they were",
            ["type"],
            registry=registry,
        )
        self.frames_in = _children(frames_in, FRAMES_IN)
        frames_out = Counter(
            "confide_relay_frames_out",
            "Frames written to room sockets, by type",
            ["type"],
            registry=registry,
        )
        self.frames_out = _children(frames_out, FRAMES_OUT)
        self.bytes_in = Counter(
            "confide_relay_bytes_in", "Bytes of frames read from room sockets", registry=registry
        )
        self.bytes_out = Counter(
            "confide_relay_bytes_out", "Bytes of frames written to room sockets", registry=registry
        )
        deliveries = Counter(
            "confide_relay_deliveries",
            "Messages queued for a recipient device, live or by a replay",
            ["path"],
            registry=registry,
        )
        self.live, self.replayed = (deliveries.labels(path) for path in DELIVERIES)
        closes = Counter(
            "confide_relay_closes",
            "Room sockets closed (refused ones too), by close code",
            ["code"],
            registry=registry,
        )
        self._closes = {int(code): closes.labels(code) for code in CLOSES[:-1]}
        self._close_other = closes.labels("other")
        refusals = Counter(
            "confide_relay_refusals",
            "Room sockets refused at the handshake, by reason",
            ["reason"],
            registry=registry,
        )
        self._refusals = _children(refusals, REFUSALS)
        self.broker = Histogram(
            "confide_relay_broker_seconds",
            "Round trips to the broker that answered, by broker and operation",
            ["broker", "operation"],
            buckets=BROKER_BUCKETS,
            registry=registry,
        )

    def watch(
        self,
        sockets: Callable[[], float],
        rooms: Callable[[], float],
        queue: Callable[[], tuple[int, int]],
    ) -> None:
        """Read the gauges from the hub at each scrape (nothing to keep up on the hot path)."""
        self.sockets.set_function(sockets)
        self.rooms.set_function(rooms)
        self.queue_frames.set_function(lambda: queue()[0])
        self.queue_bytes.set_function(lambda: queue()[1])

    def timer(self, broker: str, operation: str) -> Any:
        """The histogram child that times `operation` on a broker of kind `broker`."""
        assert operation in BROKER_OPERATIONS
        return self.broker.labels(broker if broker in BROKERS else "other", operation)

    def closed(self, code: int) -> None:
        self._closes.get(code, self._close_other).inc()

    def refused(self, reason: str) -> None:
        self._refusals.get(reason, self._refusals["other"]).inc()


def utf8_length(text: str) -> int:
    """The size of `text` on the wire (its length, unless it has non-ASCII characters)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
