"""A short session on a real `confide serve`, from 127.0.0.2, for the log and metrics tests.

Accounts, consent, a scheduled room with a marked title, two participants on
WebSockets with the `bearer.<token>` subprotocol, the host admitting the
client, a message each way, a bad frame, a refused (spent) room token, and
HTTP requests whose paths and query strings carry the room id. The story
returns everything it used that must never show in a log line or a metric.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from websockets.asyncio.client import ClientConnection, connect

from app.core.codec import b64url_encode as b64url
from tests.fixtures.accounts import PASSWORD, User, login, unique_email
from tests.fixtures.processes import Server
from tests.fixtures.server import closed_with, recv, recv_until, ws_url
from tests.relay.conftest import Practice, publish_documents

#: The clients' address: distinct from the server's 127.0.0.1 in every line.
CLIENT_HOST = "127.0.0.2"


@asynccontextmanager
async def practice_on(
    server: Server, *, local_address: str = CLIENT_HOST
) -> AsyncIterator[Practice]:
    """An admin (from the CLI), the consent documents, an HTTP client from `local_address`."""
    email = unique_email("logadmin")
    created = server.cli("admin", "create", "--email", email, "--password-stdin", stdin=PASSWORD)
    assert created.returncode == 0, created.stderr
    base = f"http://127.0.0.1:{server.port}"
    transport = httpx.AsyncHTTPTransport(local_address=local_address)
    async with httpx.AsyncClient(base_url=base, transport=transport, timeout=30) as http:
        admin = await login(http, User(created.stdout.strip(), email, PASSWORD, "Admin", "admin"))
        documents = await publish_documents(http, admin)
        yield Practice(base, http, None, None, admin, documents)


async def socket(base: str, room_id: str, token: str) -> ClientConnection:
    return await connect(
        ws_url(base, room_id),
        subprotocols=["confide.v1", f"bearer.{token}"],  # type: ignore[list-item]
        compression=None,
        open_timeout=10,
        local_addr=(CLIENT_HOST, 0),
    )


@dataclass
class Story:
    """What a session used: none of it may show in the log."""

    room_id: str = ""
    ids: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    client_ports: list[int] = field(default_factory=list)
    request_ids: dict[str, str] = field(default_factory=dict)


async def run_story(practice: Practice) -> Story:
    story = Story()
    tag = secrets.token_hex(6)
    host = await practice.counselor(f"Dr Lognamemarker {tag}")
    guest = await practice.client(f"Client Lognamemarker {tag}")
    starts = (datetime.now(UTC) + timedelta(minutes=2)).replace(microsecond=0)
    ends = starts + timedelta(minutes=50)
    title = f"Titlemarker {tag}"
    room = await practice.room(
        host,
        title=title,
        starts_at=starts.isoformat().replace("+00:00", "Z"),
        ends_at=ends.isoformat().replace("+00:00", "Z"),
    )
    room_id = story.room_id = room["id"]
    await practice.invite(host, room_id, guest)

    # HTTP requests whose paths and query strings carry the room id.
    seen = await practice.http.get(f"/v1/rooms/{room_id}?room={room_id}", headers=host.auth)
    assert seen.status_code == 200, seen.text
    story.request_ids["room read"] = seen.headers["x-request-id"]
    missing = await practice.http.get(f"/v1/nowhere/{room_id}", headers=guest.auth)
    assert missing.status_code == 404
    story.request_ids["unmatched"] = missing.headers["x-request-id"]

    host_token = await practice.token(host, room_id)
    guest_token = await practice.token(guest, room_id)
    host_ws = await socket(practice.base, room_id, host_token)
    assert (await recv(host_ws))["state"] == "admitted"
    guest_ws = await socket(practice.base, room_id, guest_token)
    assert (await recv(guest_ws))["state"] == "waiting"
    await practice.admit(host, room_id, guest)
    await recv_until(guest_ws, "presence", event="admitted")

    said = b64url(f"Framemarker {tag} from the host".encode())
    await host_ws.send(json.dumps({"type": "send", "id": f"hostmsg{tag}", "ciphertext": said}))
    assert (await recv_until(host_ws, "ack"))["seq"] == 1
    assert (await recv_until(guest_ws, "message"))["ciphertext"] == said
    answer = b64url(f"Framemarker {tag} from the client".encode())
    await guest_ws.send(json.dumps({"type": "send", "id": f"guestmsg{tag}", "ciphertext": answer}))
    assert (await recv_until(host_ws, "message"))["ciphertext"] == answer
    await guest_ws.send('{"type": "nonsense-frame-' + tag + '"}')
    assert (await recv_until(guest_ws, "error"))["code"]

    # A spent room token: the socket is refused (4001).
    replay = await socket(practice.base, room_id, guest_token)
    assert await closed_with(replay) == 4001

    for ws in (host_ws, guest_ws, replay):
        story.client_ports.append(ws.local_address[1])
    await guest_ws.close()
    await host_ws.close()

    story.ids = {
        "room id": room_id,
        "room id (hex)": room_id.replace("-", ""),
        "host account id": host.id,
        "guest account id": guest.id,
        "host device id": host.device,
        "guest device id": guest.device,
        "admin account id": practice.admin.id,
    }
    story.secrets = {
        "host name": host.user.display_name,
        "guest name": guest.user.display_name,
        "name marker": "Lognamemarker",
        "host email": host.user.email,
        "guest email": guest.user.email,
        "admin email": practice.admin.email,
        "title": title,
        "title marker": "Titlemarker",
        "starts_at": starts.isoformat()[:16],
        "ends_at": ends.isoformat()[:16],
        "host frame": said,
        "guest frame": answer,
        "frame id": f"hostmsg{tag}",
        "frame marker": f"nonsense-frame-{tag}",
        "password": PASSWORD,
        "host room token": host_token,
        "guest room token": guest_token,
        "host access token": host.user.access_token,
        "guest access token": guest.user.access_token,
        "admin access token": practice.admin.access_token,
        "host refresh token": host.user.refresh_token,
        "guest refresh token": guest.user.refresh_token,
        "client address": CLIENT_HOST,
    }
    return story
