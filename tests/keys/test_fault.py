"""CONFIDE_TEST_FAULT=swap_device_key: a server that lies about device keys, for the
client test suites; the reference check must catch it by the identity key's signature
alone, and production must refuse the setting."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from app.cli import _settings_errors
from app.core.config import Settings
from app.core.context import Context
from app.keys.log import LogBroken, LogState, check_head, extend, make_entry
from app.main import create_app
from tests.fixtures.accounts import User, register_client
from tests.fixtures.rooms import add_and_accept
from tests.fixtures.server import serve
from tests.keys.test_key_log_api import add, checked, entry, raw


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    fault = getattr(request, "param", "swap_device_key")
    return settings.model_copy(update={"test_fault": fault})


@pytest.fixture
async def http(ctx: Context) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(context=ctx)) as base, httpx.AsyncClient(base_url=base) as http:
        yield http


async def _log(
    http: httpx.AsyncClient, reader: User, account_id: str, after: int = 0
) -> dict[str, Any]:
    response = await http.get(
        f"/v1/accounts/{account_id}/key-log", params={"after": after}, headers=reader.auth
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _person_with_two_devices(http: httpx.AsyncClient) -> tuple[User, list[str]]:
    person = await register_client(http)
    phone = await add(http, person, "phone")
    laptop = await add(http, person, "laptop")
    return person, [phone, laptop]


async def test_the_swapped_log_chains_and_is_signed_but_fails_at_the_first_device(
    http: httpx.AsyncClient, ctx: Context, counselor: User
) -> None:
    person, devices = await _person_with_two_devices(http)
    body = await _log(http, person, person.id)
    kinds = [e["kind"] for e in body["entries"]]
    assert kinds == ["identity_set", "device_added", "device_added"]

    # What the devices registered is not what the log shows.
    registered = (await http.get("/v1/devices", headers=person.auth)).json()
    real = {d["device_id"]: d["signing_key"] for d in registered}
    shown = {e["device_id"]: e["signing_key"] for e in body["entries"][1:]}
    assert shown.keys() == real.keys() == set(devices)
    assert all(shown[d] != real[d] for d in devices)
    # A point on the curve, different per device, the same at every read.
    assert len({*shown.values()}) == 2
    again = await _log(http, person, person.id)
    assert again["entries"] == body["entries"]

    # Every hash recomputes and chains; the head is the server's own signature.
    prev = bytes(32)
    for item in body["entries"]:
        e = entry(item)
        assert e.prev_hash == prev
        remade = make_entry(
            person.id,
            e.seq,
            e.kind,
            e.prev_hash,
            device_id=e.device_id,
            identity_key=e.identity_key,
            signing_key=e.signing_key,
            public_key=e.public_key,
            signature=e.signature,
        )
        assert remade.hash == e.hash
        prev = e.hash
    claims = ctx.tokens.verify_key_log_head(body["head"]["jws"])
    assert (claims["sub"], claims["seq"], claims["head"]) == (person.id, 3, prev.hex())

    # The reference check refuses it at the first swapped entry, for its signature.
    with pytest.raises(LogBroken) as caught:
        extend(LogState(person.id), [entry(e) for e in body["entries"]])
    assert caught.value.seq == 2
    assert "not signed by the identity key" in caught.value.reason
    # The identity entry alone still checks against the signed chain.
    state = extend(LogState(person.id), [entry(body["entries"][0])])
    check_head(state, 1, bytes.fromhex(body["entries"][0]["hash"]))

    # A contact's read, and a read after a seq, lie the same way and chain on.
    room = await http.post(
        "/v1/rooms", json={"title": "s", "kind": "individual"}, headers=counselor.auth
    )
    await add_and_accept(http, room.json()["id"], counselor.auth, person.auth, account_id=person.id)
    theirs = await _log(http, counselor, person.id)
    assert theirs["entries"] == body["entries"]
    tail = await _log(http, counselor, person.id, after=2)
    assert tail["entries"] == body["entries"][2:]
    assert tail["head"]["hash"] == body["head"]["hash"]


@pytest.mark.parametrize("settings", [None], indirect=True)
async def test_without_the_fault_the_same_log_verifies(
    http: httpx.AsyncClient, ctx: Context
) -> None:
    assert ctx.settings.test_fault is None
    person, devices = await _person_with_two_devices(http)
    state = checked(ctx, LogState(person.id), await _log(http, person, person.id))
    registered = (await http.get("/v1/devices", headers=person.auth)).json()
    assert dict(state.devices) == {d["device_id"]: raw(d["signing_key"]) for d in registered}
    assert set(state.devices) == set(devices)


def test_production_refuses_the_setting_in_one_line() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(env="production", test_fault="swap_device_key")
    (line,) = [e for e in _settings_errors(caught.value) if "CONFIDE_TEST_FAULT" in e]
    assert line.startswith("confide: CONFIDE_TEST_FAULT: ")
    assert "production" in line
    with pytest.raises(ValidationError):
        Settings(test_fault="something_else")
    assert Settings(test_fault="").test_fault is None


def test_the_command_refuses_to_serve_with_a_fault_in_production(tmp_path: Path) -> None:
    confide = Path(sys.executable).parent / "confide"
    env = {
        "PATH": "/usr/bin:/bin",
        "CONFIDE_ENV": "production",
        "CONFIDE_TEST_FAULT": "swap_device_key",
        "CONFIDE_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [str(confide), "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "CONFIDE_TEST_FAULT" in line]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("confide: CONFIDE_TEST_FAULT: ")


def test_nothing_loads_the_faults_unless_the_setting_is_set() -> None:
    code = (
        "import sys; from app.core.config import Settings; from app.main import create_app; "
        "create_app(Settings()); print('app.faults' in sys.modules); "
        "create_app(Settings(test_fault='swap_device_key')); print('app.faults' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["False", "True"]
