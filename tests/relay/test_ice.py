"""ICE servers: TURN REST API credentials, the endpoint, and a real coturn checking them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.rooms.ice import ICE_TTL, ice_servers, participant_handle, turn_credentials
from tests.fixtures.accounts import login
from tests.fixtures.services import unavailable
from tests.relay.conftest import Person, Practice

TURN_SECRET = "confide-test-turn-secret"
STUN_URL = "stun:127.0.0.1:3478"
TURN_URLS = [STUN_URL, "turn:127.0.0.1:3478?transport=udp", "turn:127.0.0.1:3478?transport=tcp"]


def hmac_sha1_b64(secret: str, username: str) -> str:
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@pytest.fixture
def turn_secret() -> str | None:
    """Parametrize `turn_secret` with None for a deployment without TURN."""
    return TURN_SECRET


@pytest.fixture
def settings(tmp_path: Path, database_url: str, turn_secret: str | None) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=SecretStr(database_url),
        turn_secret=SecretStr(turn_secret) if turn_secret is not None else None,
        turn_urls=TURN_URLS,
    )


# -- the credential arithmetic -------------------------------------------------


def fake_index(value: str, *, purpose: str) -> bytes:
    return hmac.new(b"index-key", f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()


def test_turn_credentials_match_a_hand_computed_vector() -> None:
    # printf %s "1700000000:6a0b3c" | openssl dgst -sha1 -hmac "north-secret" -binary | base64
    username, credential = turn_credentials(b"north-secret", "6a0b3c", 1_700_000_000)
    assert username == "1700000000:6a0b3c"
    assert credential == "sef/D/zV6wWBmFypRAS8GFveer4="


def test_ice_servers_with_a_secret_expire_within_the_hour_or_at_the_room_end() -> None:
    settings = Settings(data_dir=Path("unused"), turn_secret=SecretStr("s"), turn_urls=TURN_URLS)
    now = datetime(2026, 11, 24, 12, 0, 0, 500_000, tzinfo=UTC)
    account = "acct-0123456789"

    def issue(ends_at: datetime | None, room: str = "room-1", who: str = account) -> Any:
        return ice_servers(
            settings,
            room_id=room,
            account_id=who,
            now=now,
            ends_at=ends_at,
            index_key_fn=fake_index,
        )

    open_ended = issue(None)
    (entry,) = open_ended.ice_servers
    assert entry.urls == TURN_URLS
    assert entry.username is not None
    assert entry.credential == hmac_sha1_b64("s", entry.username)
    expiry, handle = entry.username.split(":")
    assert int(expiry) == int((now + ICE_TTL).timestamp())
    assert open_ended.expires_at == datetime.fromtimestamp(int(expiry), UTC)
    assert account not in entry.username
    assert handle == participant_handle(fake_index, "room-1", account)
    assert re.fullmatch(r"[0-9a-f]{32}", handle)

    ends_at = now + timedelta(minutes=20, seconds=0.9)  # 12:20:01.4
    ending = issue(ends_at)
    expiry = ending.ice_servers[0].username.split(":")[0]
    assert int(expiry) == int(ends_at.timestamp())  # 12:20:01: rounded down, never past the end
    assert ending.expires_at == datetime(2026, 11, 24, 12, 20, 1, tzinfo=UTC)

    handles = {
        issue(None, room, who).ice_servers[0].username.split(":")[1]
        for room in ("room-1", "room-2")
        for who in (account, "acct-other")
    }
    assert len(handles) == 4
    assert issue(None).ice_servers[0].username == entry.username


def test_ice_servers_without_a_secret_are_stun_only() -> None:
    def issue(settings: Settings) -> Any:
        return ice_servers(
            settings,
            room_id="r",
            account_id="a",
            now=datetime.now(UTC),
            ends_at=None,
            index_key_fn=fake_index,
        ).model_dump()

    assert issue(Settings(data_dir=Path("unused"), turn_urls=TURN_URLS)) == {
        "ice_servers": [{"urls": [STUN_URL], "username": None, "credential": None}],
        "expires_at": None,
    }
    turn_only = Settings(data_dir=Path("unused"), turn_urls=TURN_URLS[1:])
    assert issue(turn_only) == {"ice_servers": [], "expires_at": None}
    unset = Settings(data_dir=Path("unused"), turn_urls=[])
    assert issue(unset) == {"ice_servers": [], "expires_at": None}


# -- the endpoint ----------------------------------------------------------------


async def session_with_client(practice: Practice, **room: Any) -> tuple[Person, Person, str]:
    counselor = await practice.counselor()
    client = await practice.client()
    created = await practice.room(counselor, **room)
    await practice.invite(counselor, created["id"], client)
    return counselor, client, str(created["id"])


def path(room_id: str) -> str:
    return f"/v1/rooms/{room_id}/ice-servers"


async def test_participants_get_turn_credentials_until_the_room_ends(
    practice: Practice, clock: FrozenClock
) -> None:
    ends_at = clock.now() + timedelta(minutes=30)
    counselor, client, room_id = await session_with_client(practice, ends_at=ends_at.isoformat())

    response = await practice.http.get(path(room_id), headers=client.auth)
    assert response.status_code == 200, response.text
    body = response.json()
    (entry,) = body["ice_servers"]
    assert entry["urls"] == TURN_URLS
    username: str = entry["username"]
    expiry, handle = username.split(":")
    assert int(expiry) <= ends_at.timestamp()
    assert int(expiry) == int(ends_at.timestamp())
    assert datetime.fromisoformat(body["expires_at"]) == datetime.fromtimestamp(int(expiry), UTC)
    assert entry["credential"] == hmac_sha1_b64(TURN_SECRET, username)
    for revealing in (client.id, client.user.email, counselor.id, counselor.user.email):
        assert revealing not in username
    assert re.fullmatch(r"[0-9a-f]{32}", handle)

    again = (await practice.http.get(path(room_id), headers=client.auth)).json()
    assert again["ice_servers"][0]["username"] == username
    host = (await practice.http.get(path(room_id), headers=counselor.auth)).json()
    assert host["ice_servers"][0]["username"].split(":")[1] != handle

    async with practice.context.sessionmaker() as session:
        entries = await practice.context.audit.entries_about(session, client.id)
    assert [
        (e.actor_id, e.actor_role, e.target, e.details) for e in entries if e.action == "room.ice"
    ] == [(client.id, "client", client.id, {"room": room_id})] * 2


async def test_without_an_end_credentials_last_an_hour(
    practice: Practice, clock: FrozenClock
) -> None:
    _, client, room_id = await session_with_client(practice)
    body = (await practice.http.get(path(room_id), headers=client.auth)).json()
    expiry = int(body["ice_servers"][0]["username"].split(":")[0])
    assert expiry == int((clock.now() + ICE_TTL).timestamp())


@pytest.mark.parametrize("turn_secret", [None])
async def test_without_a_turn_secret_there_are_no_credentials(practice: Practice) -> None:
    _, client, room_id = await session_with_client(practice)
    response = await practice.http.get(path(room_id), headers=client.auth)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "ice_servers": [{"urls": [STUN_URL], "username": None, "credential": None}],
        "expires_at": None,
    }


async def test_only_participants_get_ice_servers(practice: Practice) -> None:
    _, _, room_id = await session_with_client(practice)
    outsider = await practice.client("Outsider")
    response = await practice.http.get(path(room_id), headers=outsider.auth)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert (await practice.http.get(path("no-such-room"), headers=outsider.auth)).status_code == 404
    assert (await practice.http.get(path(room_id))).status_code == 401


async def test_an_ended_room_gives_no_credentials(practice: Practice, clock: FrozenClock) -> None:
    counselor, client, room_id = await session_with_client(practice)
    ended = await practice.http.post(f"/v1/rooms/{room_id}/end", headers=counselor.auth)
    assert ended.status_code == 200, ended.text
    for person in (client, counselor):
        response = await practice.http.get(path(room_id), headers=person.auth)
        assert response.status_code == 409
        assert response.json()["code"] == "room_ended"

    ends_at = clock.now() + timedelta(minutes=5)
    _, client, room_id = await session_with_client(practice, ends_at=ends_at.isoformat())
    assert (await practice.http.get(path(room_id), headers=client.auth)).status_code == 200
    clock.set(ends_at)
    response = await practice.http.get(path(room_id), headers=client.auth)
    assert response.status_code == 409
    assert response.json()["code"] == "room_ended"


async def test_credentials_follow_the_room_tokens_rules(
    practice: Practice, clock: FrozenClock
) -> None:
    """Issue 9.6: the refused got TURN credentials valid for up to an hour."""
    http = practice.http

    async def both(person: Person, room_id: str) -> tuple[int, str, int, str]:
        token = await practice.token_response(person, room_id)
        ice = await http.get(path(room_id), headers=person.auth)
        return (
            token.status_code,
            token.json().get("code", ""),
            ice.status_code,
            ice.json().get("code", ""),
        )

    # Waiting in a locked room.
    counselor, client, room_id = await session_with_client(practice)
    locked = await http.post(f"/v1/rooms/{room_id}/lock", headers=counselor.auth)
    assert locked.status_code == 200, locked.text
    assert await both(client, room_id) == (403, "room_locked", 403, "room_locked")
    await practice.admit(counselor, room_id, client)
    assert (await both(client, room_id))[::2] == (200, 200)

    # Consent not given.
    reluctant = await practice.client("Reluctant", consent=False)
    room = await practice.room(counselor, kind="group")
    await practice.invite(counselor, room["id"], reluctant)
    assert await both(reluctant, room["id"]) == (403, "consent_required", 403, "consent_required")

    # A month before the session.
    starts = clock.now() + timedelta(days=30)
    _, early, early_room = await session_with_client(
        practice,
        starts_at=starts.isoformat(),
        ends_at=(starts + timedelta(hours=1)).isoformat(),
    )
    expected = (403, "outside_time_window", 403, "outside_time_window")
    assert await both(early, early_room) == expected
    clock.set(starts - timedelta(minutes=10))
    for person in (early, counselor, client):
        await login(practice.http, person.user)
    assert (await both(early, early_room))[::2] == (200, 200)

    async with practice.context.sessionmaker() as session:
        entries = await practice.context.audit.entries_about(session, reluctant.id)
    assert [e for e in entries if e.action == "room.ice"] == []


# -- a real coturn ------------------------------------------------------------------


@dataclass
class Coturn:
    port: int
    log: Path


def free_port() -> int:
    """A port free for both UDP and TCP on loopback (coturn listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def stun_answers(port: int) -> bool:
    """Does a STUN Binding request to the port get an answer?"""
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(0.2)
        try:
            udp.sendto(request, ("127.0.0.1", port))
            answer = udp.recv(2048)
        except OSError:
            return False
    return answer[:2] == b"\x01\x01" and answer[8:20] == request[8:20]


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    binary = shutil.which("turnserver")
    if binary is None or shutil.which("turnutils_uclient") is None:
        unavailable("coturn", FileNotFoundError("turnserver/turnutils_uclient not installed"))
    assert binary is not None
    work = tmp_path_factory.mktemp("coturn")
    port = free_port()
    relay = 20000 + port % 20000  # a relay port range away from the listener
    log = work / "turnserver.log"
    command = [
        binary,
        "-n",
        "--listening-ip=127.0.0.1",
        f"--listening-port={port}",
        "--relay-ip=127.0.0.1",
        "--use-auth-secret",
        f"--static-auth-secret={TURN_SECRET}",
        "--realm=confide.test",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--no-rfc5780",
        f"--log-file={log}",
        "--simple-log",
        f"--pidfile={work / 'turnserver.pid'}",
        f"--userdb={work / 'turndb'}",
        f"--min-port={relay}",
        f"--max-port={relay + 100}",
        "--allow-loopback-peers",
    ]
    with (work / "stdout.log").open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not stun_answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                output = (work / "stdout.log").read_text(errors="replace")
                pytest.fail(f"turnserver did not start ({process.returncode}):\n{output[-4000:]}")
            time.sleep(0.05)
        yield Coturn(port, log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def relay_through(coturn: Coturn, username: str, credential: str) -> tuple[int, str]:
    """Two clients allocate relays on coturn and send each other packets through them."""
    uclient = shutil.which("turnutils_uclient")
    assert uclient is not None
    process = await asyncio.create_subprocess_exec(
        uclient,
        "-y",  # client to client, through both relays
        "-c",  # no RTCP allocations
        "-n",
        "3",
        "-p",
        str(coturn.port),
        "-u",
        username,
        "-w",
        credential,
        "127.0.0.1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def test_coturn_relays_with_issued_credentials_only(
    practice: Practice, coturn: Coturn
) -> None:
    _, client, room_id = await session_with_client(practice)
    response = await practice.http.get(path(room_id), headers=client.auth)
    assert response.status_code == 200, response.text
    entry = response.json()["ice_servers"][0]
    username, credential = entry["username"], entry["credential"]

    code, output = await relay_through(coturn, username, credential)
    assert code == 0, output
    received = [int(n) for n in re.findall(r"tot_recv_msgs=(\d+)", output)]
    assert received, output
    assert received[-1] > 0, output
    assert "Cannot complete Allocation" not in output

    expiry, handle = username.split(":")
    _, forged = turn_credentials(b"not-the-secret", handle, int(expiry))
    code, output = await relay_through(coturn, username, forged)
    assert code != 0, output
    assert "Cannot complete Allocation" in output

    other_handle = f"{expiry}:{'0' * 32}"
    code, output = await relay_through(coturn, other_handle, credential)
    assert code != 0, output
    assert "Cannot complete Allocation" in output

    expired, signed = turn_credentials(TURN_SECRET.encode(), handle, int(time.time()) - 60)
    assert signed == hmac_sha1_b64(TURN_SECRET, expired)
    code, output = await relay_through(coturn, expired, signed)
    assert code != 0, output
    assert "Cannot complete Allocation" in output
