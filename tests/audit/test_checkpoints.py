"""Signed checkpoints anchor the audit chain's head outside the database.

The chain alone cannot see its newest entries cut, nor a tail rewritten and
re-hashed; a checkpoint file can. Database tests run on SQLite and
PostgreSQL (the `ctx` fixture); `confide audit verify --checkpoints` runs as
the real command, against the same database and keys.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.audit.checkpoints import (
    Checkpoint,
    CheckpointWriter,
    append_line,
    check_anchors,
    read_checkpoints,
    tail_lines,
    write_final,
    write_periodically,
)
from app.audit.service import GENESIS, chain_hash, verify_chain
from app.core.audit import Verification
from app.core.context import Context
from app.core.tokens import (
    ACCESS_AUDIENCE,
    ACCESS_TYP,
    TokenService,
    generate_signing_key_pem,
    load_signing_key,
)
from app.main import create_app
from app.models import AuditEntry
from tests.fixtures.accounts import User, register_client
from tests.fixtures.processes import run_async, run_cli

# -- helpers -------------------------------------------------------------------------------


def writer_for(ctx: Context, **options: Any) -> CheckpointWriter:
    return CheckpointWriter(
        ctx.tokens, ctx.sessionmaker, ctx.settings.resolved_audit_checkpoint_file, **options
    )


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def head_seq(ctx: Context) -> int:
    async with ctx.engine.connect() as conn:
        return int((await conn.execute(text("SELECT MAX(seq) FROM audit_log"))).scalar_one())


async def execute(ctx: Context, statement: str, **params: object) -> None:
    async with ctx.engine.begin() as conn:
        await conn.execute(text(statement), params)


async def rehash_from(ctx: Context, seq: int) -> None:
    """Move another entry's sealed payload into `seq` and re-hash every later link.

    What someone who can write the database (but holds no key) can do: the
    result verifies as a chain.
    """
    async with ctx.engine.begin() as conn:
        rows = {
            row_seq: (bytes(ix) if ix is not None else None, bytes(payload), bytes(digest))
            for row_seq, ix, payload, digest in await conn.execute(
                text("SELECT seq, target_ix, payload, hash FROM audit_log ORDER BY seq")
            )
        }
        prev = rows[seq - 1][2] if seq > 1 else GENESIS
        for row_seq in sorted(s for s in rows if s >= seq):
            target_ix, payload, _ = rows[row_seq]
            if row_seq == seq:
                payload = rows[seq + 1][1]
            digest = chain_hash(prev, row_seq, target_ix, payload)
            await conn.execute(
                text(
                    "UPDATE audit_log SET payload = :payload, prev_hash = :prev, hash = :hash"
                    " WHERE seq = :seq"
                ),
                {"payload": payload, "prev": prev, "hash": digest, "seq": row_seq},
            )
            prev = digest


def cli_env(ctx: Context) -> dict[str, str]:
    """The command line on the test's database, with the keys the test's context uses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFIDE_")}
    env["CONFIDE_DATA_DIR"] = str(ctx.settings.data_dir)
    env["CONFIDE_DATABASE_URL"] = ctx.settings.resolved_database_url
    return env


def verify_cli(ctx: Context, *extra: str) -> tuple[int, str]:
    """Exit status and standard output (standard error, when that is empty)."""
    result = run_cli(cli_env(ctx), "audit", "verify", *extra)
    return result.returncode, (result.stdout or result.stderr).strip()


async def entries(client: httpx.AsyncClient, admin: User) -> list[dict[str, Any]]:
    response = await client.get("/v1/admin/audit?limit=1000", headers=admin.auth)
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


# -- the pure check: random chains, random tampering ------------------------------------


def build_chain(length: int) -> list[AuditEntry]:
    rows, prev = [], GENESIS
    for seq in range(1, length + 1):
        payload = f"sealed payload {seq}".encode()
        target_ix = bytes([seq % 256]) * 32 if seq % 3 else None
        digest = chain_hash(prev, seq, target_ix, payload)
        rows.append(
            AuditEntry(seq=seq, target_ix=target_ix, payload=payload, prev_hash=prev, hash=digest)
        )
        prev = digest
    return rows


def tamper(rows: list[AuditEntry], kind: str, at: int, cut: int | None) -> list[AuditEntry]:
    """A copy of the chain, changed at seq `at` (`kind`), then cut after seq `cut`."""
    out = [
        AuditEntry(
            seq=r.seq, target_ix=r.target_ix, payload=r.payload, prev_hash=r.prev_hash, hash=r.hash
        )
        for r in rows
    ]
    if kind == "edit":  # the payload changes, the stored hashes stay: the link breaks
        out[at - 1].payload += b"!"
    elif kind == "delete":
        del out[at - 1]
    elif kind == "rewrite":  # changed and re-hashed from there on: the chain verifies
        out[at - 1].payload += b"!"
        prev = out[at - 2].hash if at > 1 else GENESIS
        for row in out[at - 1 :]:
            row.prev_hash = prev
            row.hash = chain_hash(prev, row.seq, row.target_ix, row.payload)
            prev = row.hash
    if cut is not None:
        out = [r for r in out if r.seq <= cut]
    return out


def expected_first_bad(
    length: int, checkpointed: list[int], kind: str, at: int, cut: int | None
) -> tuple[int, str] | None:
    """What the evidence can show (first bad seq, why), worked out from the tampering."""
    end = cut if cut is not None else length
    found = []
    if kind == "delete" and at == end:
        end -= 1  # deleting the newest entry is a cut
    elif kind in ("edit", "delete") and at <= end:
        found.append((at, "chain"))  # a broken link at `at`
    if kind == "rewrite" and at <= end:
        later = [s for s in checkpointed if s >= at]
        if later and later[0] <= end:
            found.append((later[0], "mismatch"))
    if checkpointed and max(checkpointed) > end:
        found.append((end + 1, "missing"))
    return min(found, default=None)


async def _batches(rows: list[AuditEntry]) -> AsyncIterator[list[AuditEntry]]:
    for start in range(0, len(rows), 4):
        yield rows[start : start + 4]


def run_check(rows: list[AuditEntry], checkpoints: list[Checkpoint]) -> Any:
    verification: Verification = run_async(verify_chain(_batches(rows)))
    # As verify_anchored reads them: the hashes within the verified part of the chain.
    hashes = {r.seq: r.hash.hex() for r in rows if r.seq <= verification.entries}
    return check_anchors(verification, hashes, checkpoints)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, list[int], str, int, int | None]:
    length = draw(st.integers(1, 25))
    checkpointed = sorted(draw(st.sets(st.integers(1, length), max_size=6)))
    kind = draw(st.sampled_from(["none", "edit", "delete", "rewrite"]))
    at = draw(st.integers(1, length))
    cut = draw(st.none() | st.integers(0, length - 1))
    return length, checkpointed, kind, at, cut


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_the_check_names_exactly_the_first_bad_seq(
    scenario: tuple[int, list[int], str, int, int | None],
) -> None:
    length, checkpointed, kind, at, cut = scenario
    original = build_chain(length)
    checkpoints = [
        Checkpoint(
            seq=s,
            head=original[s - 1].hash.hex(),
            at=datetime(2026, 11, 24, tzinfo=UTC),
            kid="k",
            jws="signed",
            line=n,
        )
        for n, s in enumerate(reversed(checkpointed), start=1)  # file order need not be seq order
    ]
    result = run_check(tamper(original, kind, at, cut), checkpoints)
    expected = expected_first_bad(length, checkpointed, kind, at, cut)
    assert result.ok is (expected is None), result.message
    if expected is not None:
        assert (result.broken_seq, result.reason) == expected, result.message
        assert f"at seq {expected[0]}" in result.message


def test_without_checkpoints_a_cut_tail_goes_unseen_and_with_one_it_is_named() -> None:
    rows = build_chain(10)
    at_ten = Checkpoint(10, rows[9].hash.hex(), datetime.now(UTC), "k", "signed", 1)
    assert run_check(rows[:7], []).ok
    result = run_check(rows[:7], [at_ten])
    assert (result.ok, result.broken_seq, result.reason) == (False, 8, "missing")
    assert "TRUNCATED at seq 8" in result.message
    assert "(line 1)" in result.message


# -- the file ------------------------------------------------------------------------------

ISSUER = "confide"
KEY = load_signing_key(generate_signing_key_pem())
OTHER = load_signing_key(generate_signing_key_pem())
HEAD = "cd" * 32


def signer(*keys: Any) -> TokenService:
    return TokenService(keys or (KEY,), issuer=ISSUER)


def line(tokens: TokenService, seq: int, head: str = HEAD) -> str:
    return Checkpoint.from_signed(tokens.sign_checkpoint(seq=seq, head=head)).to_line()


def test_every_line_is_verified_and_a_refused_one_is_named(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.jsonl"
    access = signer().issue(audience=ACCESS_AUDIENCE, typ=ACCESS_TYP, subject="a", ttl=60)
    path.write_text(
        line(signer(), 1)
        + "\n"  # a blank line is skipped
        + line(signer(OTHER), 2)  # not our key
        + '{"jws": "'
        + access.token
        + '"}\n'  # a token is not a checkpoint
        + line(signer(), 3).replace('"seq":3', '"seq":4')  # the readable seq lies
        + "not json\n"
        + line(signer(), 5)
    )
    good, refused = read_checkpoints(path, signer())
    assert [(c.seq, c.line) for c in good] == [(1, 1), (5, 7)]
    assert [(r.line, r.reason) for r in refused] == [
        (3, "signature or claims refused: unknown kid"),
        (4, "signature or claims refused: typ mismatch"),
        (5, "seq differs from the signed checkpoint"),
        (6, "not a JSON line"),
    ]


def test_tail_reads_the_last_lines_across_blocks(tmp_path: Path) -> None:
    path = tmp_path / "f"
    assert tail_lines(path, 3) == []
    path.write_text("".join(f"line {n}\n" for n in range(1, 101)) + "cut")
    assert tail_lines(path, 3, block=7) == ["line 99", "line 100", "cut"]
    assert tail_lines(path, 500, block=7)[0] == "line 1"


def test_a_cut_line_is_ended_before_the_next_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "checkpoints.jsonl"
    append_line(path, line(signer(), 1))
    with path.open("a") as handle:
        handle.write('{"seq": 2, "head": "cd')  # a crash in the middle of a write
    append_line(path, line(signer(), 3))
    good, refused = read_checkpoints(path, signer())
    assert [c.seq for c in good] == [1, 3]
    assert [r.line for r in refused] == [2]


# -- writing: the interval, the shutdown -----------------------------------------------------


async def test_a_tick_signs_the_head_once_until_it_moves(
    ctx: Context, client: httpx.AsyncClient, admin: User
) -> None:
    path = ctx.settings.resolved_audit_checkpoint_file
    writer = writer_for(ctx)
    first = await writer.tick()
    assert first is not None
    assert first.seq == await head_seq(ctx)
    assert await writer.tick() is None  # the head did not move
    await register_client(client)
    second = await writer.tick()
    assert second is not None
    assert second.seq > first.seq
    assert [c.seq for c in read_checkpoints(path, ctx.tokens)[0]] == [first.seq, second.seq]
    assert writer.recent == [first, second]

    restarted = writer_for(ctx)
    restarted.load()  # picks up where the file ends: nothing new to sign
    assert await restarted.tick() is None
    assert len(lines_of(path)) == 2


async def test_an_empty_chain_gets_no_checkpoint(ctx: Context) -> None:
    assert await writer_for(ctx).tick() is None
    assert not ctx.settings.resolved_audit_checkpoint_file.exists()


class Stop(Exception):
    pass


async def test_the_interval_writer_ticks_after_each_interval(
    ctx: Context, client: httpx.AsyncClient, admin: User
) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            raise Stop
        if len(waits) == 2:
            await register_client(client)  # the head moves during the second interval

    with pytest.raises(Stop):
        await write_periodically(writer_for(ctx), 300, sleep=sleep)
    assert waits == [300, 300, 300]
    written = read_checkpoints(ctx.settings.resolved_audit_checkpoint_file, ctx.tokens)[0]
    assert len(written) == 2
    assert written[-1].seq == await head_seq(ctx)


async def test_a_failed_tick_is_logged_and_retried(
    ctx: Context, admin: User, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    writer = CheckpointWriter(ctx.tokens, ctx.sessionmaker, blocked / "checkpoints.jsonl")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            raise Stop

    with pytest.raises(Stop):
        await write_periodically(writer, 5, sleep=sleep)
    assert caplog.text.count("audit checkpoint failed") == 2


async def test_the_lifespan_writes_a_checkpoint_on_shutdown(ctx: Context) -> None:
    path = ctx.settings.resolved_audit_checkpoint_file
    app = create_app(context=ctx)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            await register_client(http)
        assert lines_of(path) == []  # the first interval has not passed
    written = read_checkpoints(path, ctx.tokens)[0]
    assert [c.seq for c in written] == [await head_seq(ctx)]


async def test_write_final_never_raises(ctx: Context, admin: User, tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    writer = CheckpointWriter(ctx.tokens, ctx.sessionmaker, blocked / "x.jsonl")
    assert await write_final(writer) is None


async def test_the_writer_says_so_when_the_tail_was_cut(
    ctx: Context, client: httpx.AsyncClient, admin: User, caplog: pytest.LogCaptureFixture
) -> None:
    writer = writer_for(ctx)
    await writer.tick()
    await register_client(client)
    anchored = await writer.tick()
    assert anchored is not None
    await execute(ctx, "DELETE FROM audit_log WHERE seq > :seq", seq=anchored.seq - 2)
    with caplog.at_level(logging.ERROR, logger="confide.audit.checkpoints"):
        await writer.tick()
    assert f"TRUNCATED: the head is seq {anchored.seq - 2}" in caplog.text


async def test_checkpoints_also_go_to_syslog(ctx: Context, admin: User) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(10)
        writer = writer_for(ctx, syslog=f"127.0.0.1:{receiver.getsockname()[1]}")
        try:
            checkpoint = await writer.tick()
        finally:
            writer.close()
        datagram = receiver.recv(65536).decode()
    assert checkpoint is not None
    assert datagram.startswith("<")  # a syslog priority
    assert "confide-audit-checkpoint" in datagram
    assert checkpoint.jws in datagram


# -- confide audit verify --checkpoints, the real command ------------------------------------


@dataclass
class Anchored:
    older: Checkpoint
    newest: Checkpoint
    file: Path


@pytest.fixture
async def anchored(ctx: Context, client: httpx.AsyncClient, admin: User) -> Anchored:
    """A chain with two checkpoints in the file, the newest at its head."""
    writer = writer_for(ctx)
    await register_client(client)
    older = await writer.tick()
    for _ in range(2):
        await register_client(client)
    newest = await writer.tick()
    assert older is not None
    assert newest is not None
    assert newest.seq == await head_seq(ctx)
    assert newest.seq - older.seq >= 4
    return Anchored(older, newest, writer.path)


async def test_verify_with_checkpoints_passes_on_an_intact_chain(
    ctx: Context, anchored: Anchored
) -> None:
    code, output = verify_cli(ctx, "--checkpoints", str(anchored.file))
    assert code == 0, output
    assert "intact" in output
    assert f"2 checkpoints hold (the newest anchors seq {anchored.newest.seq}" in output


async def test_a_cut_tail_fails_at_the_first_missing_seq(ctx: Context, anchored: Anchored) -> None:
    first_missing = anchored.newest.seq - 2
    await execute(ctx, "DELETE FROM audit_log WHERE seq >= :seq", seq=first_missing)

    code, output = verify_cli(ctx)
    assert code == 0, output  # the chain alone cannot see it
    code, output = verify_cli(ctx, "--checkpoints", str(anchored.file))
    assert code == 1
    assert output.startswith(f"audit log TRUNCATED at seq {first_missing}:"), output
    assert len(output.splitlines()) == 1


async def test_an_edited_earlier_entry_fails_at_its_seq(ctx: Context, anchored: Anchored) -> None:
    seq = anchored.older.seq - 1
    await execute(
        ctx,
        "UPDATE audit_log SET payload = (SELECT payload FROM audit_log WHERE seq = :other)"
        " WHERE seq = :seq",
        seq=seq,
        other=seq + 1,
    )
    code, output = verify_cli(ctx, "--checkpoints", str(anchored.file))
    assert code == 1
    assert output == f"audit log BROKEN at seq {seq} ({seq - 1} entries verified)"


async def test_a_rewritten_and_rehashed_tail_fails_at_the_checkpoint_after_it(
    ctx: Context, anchored: Anchored
) -> None:
    seq = anchored.older.seq + 2
    await rehash_from(ctx, seq)

    code, output = verify_cli(ctx)
    assert code == 0, output  # it verifies as a chain
    code, output = verify_cli(ctx, "--checkpoints", str(anchored.file))
    assert code == 1
    assert output.startswith(f"audit log REWRITTEN at seq {anchored.newest.seq}:"), output
    assert f"entries {anchored.older.seq + 1}..{anchored.newest.seq} were rewritten" in output


async def test_a_forged_checkpoint_is_refused(ctx: Context, anchored: Anchored) -> None:
    other = TokenService([OTHER], issuer=ctx.settings.issuer)
    with anchored.file.open("a") as handle:
        handle.write(line(other, anchored.newest.seq + 5))
    code, output = verify_cli(ctx, "--checkpoints", str(anchored.file))
    assert code == 1
    assert output == (
        f"checkpoint REFUSED: {anchored.file} line 3: signature or claims refused: unknown kid"
    )


async def test_a_missing_checkpoint_file_is_a_usage_error(ctx: Context, admin: User) -> None:
    code, output = verify_cli(ctx, "--checkpoints", str(ctx.settings.data_dir / "nope.jsonl"))
    assert code == 2
    assert "cannot read" in output


# -- the API ---------------------------------------------------------------------------------


async def test_reading_the_audit_log_is_audited(client: httpx.AsyncClient, admin: User) -> None:
    await register_client(client)
    response = await client.get("/v1/admin/audit?after=1&limit=3", headers=admin.auth)
    assert [e["seq"] for e in response.json()] == [2, 3, 4]
    reads = [e for e in await entries(client, admin) if e["action"] == "audit.read"]
    assert reads[0]["actor"] == admin.id
    assert reads[0]["actor_role"] == "admin"
    assert reads[0]["details"] == {
        "after": 1,
        "limit": 3,
        "count": 3,
        "first_seq": 2,
        "last_seq": 4,
    }


async def test_verifying_and_reading_checkpoints_are_audited(
    ctx: Context, client: httpx.AsyncClient, admin: User
) -> None:
    await writer_for(ctx).tick()
    assert (await client.get("/v1/admin/audit/verify", headers=admin.auth)).status_code == 200
    assert (await client.get("/v1/admin/audit/checkpoints", headers=admin.auth)).status_code == 200
    found = {e["action"]: e for e in await entries(client, admin)}
    assert found["audit.verify"]["actor"] == admin.id
    assert found["audit.verify"]["details"]["ok"] is True
    assert found["audit.checkpoints_read"]["actor"] == admin.id
    assert found["audit.checkpoints_read"]["details"]["count"] == 1


async def test_the_checkpoints_endpoint_shows_signed_and_decoded_checkpoints(
    ctx: Context, client: httpx.AsyncClient, admin: User
) -> None:
    writer = writer_for(ctx)
    first = await writer.tick()
    await register_client(client)
    second = await writer.tick()
    assert first is not None
    assert second is not None
    with writer.path.open("a") as handle:
        handle.write("not a checkpoint\n")
    response = await client.get("/v1/admin/audit/checkpoints?limit=2", headers=admin.auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["interval_s"] == ctx.settings.audit_checkpoint_interval_s
    assert body["file"] == str(writer.path)
    assert body["refused"] == [{"reason": "not a JSON line"}]
    (shown,) = body["checkpoints"]  # the last two lines: one checkpoint, one refused
    assert shown["seq"] == second.seq
    assert shown["head"] == second.head
    assert shown["kid"] == ctx.tokens.jwks()["keys"][0]["kid"]
    assert datetime.fromisoformat(shown["at"]) == second.at
    assert ctx.tokens.verify_checkpoint(shown["jws"]).seq == second.seq


async def test_no_checkpoint_file_yet_is_an_empty_list(
    client: httpx.AsyncClient, admin: User
) -> None:
    response = await client.get("/v1/admin/audit/checkpoints", headers=admin.auth)
    assert response.status_code == 200
    assert (response.json()["checkpoints"], response.json()["refused"]) == ([], [])


async def test_only_admins_read_checkpoints(
    client: httpx.AsyncClient, counselor: User, client_user: User
) -> None:
    path = "/v1/admin/audit/checkpoints"
    anonymous = await client.get(path)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    for user in (counselor, client_user):
        response = await client.get(path, headers=user.auth)
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"


async def test_api_verify_with_checkpoints_names_the_first_missing_seq(
    ctx: Context, client: httpx.AsyncClient, admin: User, anchored: Anchored
) -> None:
    url = "/v1/admin/audit/verify?checkpoints=true"
    intact = (await client.get(url, headers=admin.auth)).json()
    assert intact["ok"] is True
    assert (intact["checkpoints"], intact["anchored_seq"]) == (2, anchored.newest.seq)

    first_missing = anchored.newest.seq - 1
    await execute(ctx, "DELETE FROM audit_log WHERE seq >= :seq", seq=first_missing)
    body = (await client.get(url, headers=admin.auth)).json()
    assert (body["ok"], body["broken_seq"], body["reason"]) == (False, first_missing, "missing")
    assert body["anchored_seq"] == anchored.older.seq
    assert body["message"].startswith(f"audit log TRUNCATED at seq {first_missing}:")


async def test_api_verify_without_checkpoints_is_unchanged(
    client: httpx.AsyncClient, admin: User
) -> None:
    body = (await client.get("/v1/admin/audit/verify", headers=admin.auth)).json()
    assert body["ok"] is True
    assert (body["reason"], body["checkpoints"], body["anchored_seq"]) == (None, None, None)


async def test_the_checkpoints_endpoint_is_documented(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/admin/audit/checkpoints"]["get"]
    assert operation["summary"]
    for code in ("401", "403"):
        assert "application/problem+json" in operation["responses"][code]["content"]
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["examples"][0]["checkpoints"][0]["seq"] == 42
