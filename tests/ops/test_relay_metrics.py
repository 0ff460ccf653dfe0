"""The relay's series in /metrics move with a real session, and name no one.

A real `confide serve` (with the in-process broker, and with Redis), two
participants on real sockets: messages broadcast and directed, a ping, a bad
frame, a replay after a reconnect, a refused (spent) token, a refused
subprotocol, a client's close and the room's end. Scrapes before, during and
after show each series move by what the story did; every label value is from
its fixed set, and none looks like an id or an email.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.websockets import WebSocket

from app.core.clock import FrozenClock
from app.core.close_codes import Close
from app.core.codec import b64url_encode as b64url
from app.relay import frames, metrics
from app.relay.broker import InProcessBroker
from app.relay.hub import Connection, Grant, Hub
from tests.fixtures.processes import Backend, Server
from tests.fixtures.redis_server import delete_prefix, shared_redis, unique_prefix
from tests.fixtures.server import closed_with, open_socket, recv, recv_until
from tests.ops.story import practice_on, socket
from tests.relay.conftest import Practice

TOKEN = "metrics-token-" + "R2d9Lx7Qm4Vp8sKw"
UUID_LIKE = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)
EMAIL_LIKE = re.compile(r"[^\s@]+@[^\s@]+")
#: Each relay label, and the only values it may take.
ALLOWED = {
    "confide_relay_frames_in_total": {"type": set(metrics.FRAMES_IN)},
    "confide_relay_frames_out_total": {"type": set(metrics.FRAMES_OUT)},
    "confide_relay_deliveries_total": {"path": set(metrics.DELIVERIES)},
    "confide_relay_closes_total": {"code": set(metrics.CLOSES)},
    "confide_relay_refusals_total": {"reason": set(metrics.REFUSALS)},
}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


class Scraper:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def __call__(self) -> Samples:
        scraped = await self.http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert scraped.status_code == 200, scraped.text
        self.text = scraped.text
        return parse(scraped.text)

    async def until(self, done: Callable[[Samples], bool]) -> Samples:
        """Scrape until `done` (the server finishes a socket after the client saw its close)."""
        for _ in range(100):
            samples = await self()
            if done(samples):
                return samples
            await asyncio.sleep(0.05)
        raise AssertionError("the server did not finish its sockets")


@contextlib.asynccontextmanager
async def confide(tmp_path: Path, broker: str) -> AsyncIterator[Practice]:
    env = {"CONFIDE_METRICS_TOKEN": TOKEN}
    redis_url = prefix = None
    if broker == "redis":
        redis_url, prefix = await shared_redis(), unique_prefix()
        env |= {"CONFIDE_BROKER_URL": redis_url, "CONFIDE_BROKER_PREFIX": prefix}
    backend = Backend("sqlite", tmp_path / "data")
    server = Server(backend, tmp_path / "logs", backend.env(**env)).start()
    try:
        async with practice_on(server, local_address="127.0.0.1") as practice:
            yield practice
    finally:
        server.stop()
        if redis_url is not None and prefix is not None:
            await delete_prefix(redis_url, prefix)


@pytest.mark.parametrize("broker", ["memory", "redis"])
async def test_a_session_moves_every_relay_series(tmp_path: Path, broker: str) -> None:
    closes = "confide_relay_closes_total"
    async with confide(tmp_path, broker) as practice:
        scrape = Scraper(practice.http)
        before = await scrape()
        assert value(before, "confide_relay_sockets_open") == 0
        assert value(before, "confide_relay_rooms_live") == 0

        host = await practice.counselor()
        guest = await practice.client()
        room_id = (await practice.room(host))["id"]
        await practice.invite(host, room_id, guest)
        host_ws = await socket(practice.base, room_id, await practice.token(host, room_id))
        assert (await recv(host_ws))["state"] == "admitted"
        guest_token = await practice.token(guest, room_id)
        guest_ws = await socket(practice.base, room_id, guest_token)
        assert (await recv(guest_ws))["state"] == "waiting"
        await practice.admit(host, room_id, guest)
        await recv_until(guest_ws, "presence", event="admitted")

        said = b64url(b"broadcast ciphertext")
        await host_ws.send(json.dumps({"type": "send", "id": "m1", "ciphertext": said}))
        assert (await recv_until(host_ws, "ack"))["seq"] == 1
        await recv_until(guest_ws, "message", id="m1")
        directed = {host.device: b64url(b"for the host only")}
        await guest_ws.send(json.dumps({"type": "send", "id": "d1", "recipients": directed}))
        await recv_until(guest_ws, "ack", id="d1")
        await recv_until(host_ws, "message", id="d1")
        await host_ws.send('{"type":"ping"}')
        await recv_until(host_ws, "pong")
        await guest_ws.send('{"type":"nonsense"}')
        await recv_until(guest_ws, "error", code="validation_error")

        # The guest leaves, misses a message, and comes back for it by a replay.
        await guest_ws.close()
        await recv_until(host_ws, "presence", event="offline")
        await host_ws.send(json.dumps({"type": "send", "id": "m2", "ciphertext": said}))
        assert (await recv_until(host_ws, "ack", id="m2"))["seq"] == 3
        guest_ws = await open_socket(
            practice.base, room_id, await practice.token(guest, room_id), via="frame"
        )
        await recv_until(guest_ws, "welcome")
        await guest_ws.send(json.dumps({"type": "resume", "after": 2}))
        await recv_until(guest_ws, "message", id="m2")
        await recv_until(guest_ws, "resumed")

        # Refusals: a spent token, and no confide.v1.
        assert await closed_with(await socket(practice.base, room_id, guest_token)) == 4001
        wrong = await open_socket(practice.base, room_id, None, subprotocols=["chat"])
        assert await closed_with(wrong) == Close.PROTOCOL_ERROR

        during = await scrape()
        assert value(during, "confide_relay_sockets_open") == 2
        assert value(during, "confide_relay_rooms_live") == 1
        assert value(during, "confide_relay_send_queue_max_frames") >= 0
        assert value(during, "confide_relay_send_queue_max_bytes") >= 0

        ended = await practice.http.post(f"/v1/rooms/{room_id}/end", headers=host.auth)
        assert ended.status_code == 200, ended.text
        assert await closed_with(host_ws) == Close.ENDED
        assert await closed_with(guest_ws) == Close.ENDED
        after = await scrape.until(
            lambda now: (
                value(now, "confide_relay_sockets_open") == 0
                and value(now, closes, code="4010") - value(before, closes, code="4010") == 2
            )
        )
        text = scrape.text

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert value(after, "confide_relay_rooms_live") == 0
    frames_in = "confide_relay_frames_in_total"
    assert moved(frames_in, type="send") == 3
    assert moved(frames_in, type="ping") == 1
    assert moved(frames_in, type="invalid") == 1
    assert moved(frames_in, type="resume") == 1
    assert moved(frames_in, type="auth") == 1  # the guest's second socket authenticated by frame
    frames_out = "confide_relay_frames_out_total"
    assert moved(frames_out, type="welcome") == 3
    assert moved(frames_out, type="ack") == 3
    assert moved(frames_out, type="message") == 3
    assert moved(frames_out, type="pong") == 1
    assert moved(frames_out, type="error") == 1
    assert moved(frames_out, type="resumed") == 1
    assert moved(frames_out, type="room") == 2  # ended, to each
    assert moved(frames_out, type="presence") >= 3
    assert moved("confide_relay_deliveries_total", path="live") == 2
    assert moved("confide_relay_deliveries_total", path="replay") == 1
    assert moved("confide_relay_bytes_in_total") > 4 * len(said)
    assert moved("confide_relay_bytes_out_total") > moved("confide_relay_bytes_in_total")
    assert moved(closes, code="1000") == 1
    assert moved(closes, code="4001") == 1
    assert moved(closes, code="1002") == 1
    assert moved(closes, code="4010") == 2
    assert moved(closes, code="other") == 0
    assert moved("confide_relay_refusals_total", reason="token_spent") == 1
    assert moved("confide_relay_refusals_total", reason="subprotocol_required") == 1
    assert moved("confide_relay_refusals_total", reason="other") == 0
    peaks = "confide_relay_send_queue_peak_frames"
    # One per socket the hub served. Their values here are small: frames go straight to
    # the transport while it keeps up (the test below fills queues and reads the peaks).
    assert moved(peaks + "_count") == 3
    rtt = "confide_relay_broker_seconds"
    assert total(after, rtt + "_count", broker="memory" if broker == "redis" else "redis") == 0
    for operation, at_least in [
        ("append", 3),
        ("join", 3),
        ("presence", 3),
        ("spend", 4),
        ("replay", 1),
    ]:
        assert moved(rtt + "_count", broker=broker, operation=operation) >= at_least, operation
        assert moved(rtt + "_sum", broker=broker, operation=operation) > 0, operation

    # The process's own series.
    assert value(after, "process_resident_memory_bytes") > 0
    assert value(after, "process_cpu_seconds_total") > 0
    assert total(after, "python_gc_collections_total") > 0

    # No id, no email, no label outside its set.
    assert not UUID_LIKE.search(text), UUID_LIKE.search(text)
    assert not EMAIL_LIKE.search(text), EMAIL_LIKE.search(text)
    for name, labels in after:
        family = name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        allowed = ALLOWED.get(name)
        if allowed is not None:
            for key, label in labels:
                assert label in allowed[key], (name, key, label)
        elif family == rtt:
            assert {k for k, _ in labels} <= {"broker", "operation", "le"}
            for key, label in labels:
                if key == "broker":
                    assert label in metrics.BROKERS
                elif key == "operation":
                    assert label in metrics.BROKER_OPERATIONS
        elif name.startswith("confide_relay_"):
            assert {k for k, _ in labels} <= {"le"}, name


def test_the_queue_gauges_show_the_deepest_queue_and_sockets_their_peak() -> None:
    """Send queues that fill (a reader that does not read): the gauges read them at the
    scrape; each connection keeps the deepest its queue was."""
    hub = Hub(InProcessBroker(), FrozenClock(), rate_per_s=10, idle_timeout=60)
    registry = hub.metrics.registry
    grant = Grant("r", "a", "d", "participant", "s", True, None, False, {})
    # Never written to: no frame sink (the ASGI path) and the writer task that would
    # drain the queues is not started.
    scope = SimpleNamespace(scope={"type": "websocket", "extensions": {}})
    slow, slower = (Connection(cast(WebSocket, scope), grant, 10) for _ in range(2))
    hub._connections |= {slow.id: slow, slower.id: slower}
    assert registry.get_sample_value("confide_relay_sockets_open") == 2
    assert registry.get_sample_value("confide_relay_send_queue_max_frames") == 0
    assert slow.send("x" * 100)
    for _ in range(3):
        assert slower.send(frames.PONG)
    assert registry.get_sample_value("confide_relay_send_queue_max_frames") == 3
    assert registry.get_sample_value("confide_relay_send_queue_max_bytes") == 100
    assert (slow.peak, slower.peak) == (1, 3)
    slower.queue.popleft()
    assert slower.send(frames.PONG)
    assert slower.peak == 3
    slower.close(Close.TRY_AGAIN)  # what is queued is dropped
    assert registry.get_sample_value("confide_relay_send_queue_max_frames") == 1
    assert slower.peak == 3
