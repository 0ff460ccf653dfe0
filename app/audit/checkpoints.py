"""Signed checkpoints of the audit chain's head, kept outside the database.

The hash chain (app/audit/service.py) shows any edit, deletion or reordering,
but not the loss of its newest entries: cut the tail and what remains is a
valid chain. A checkpoint anchors the head: "the chain held entry `seq`
with hash `head` at time `iat`", signed with the server's ES256 signing key
as a compact JWS of its own `typ` and audience (app/core/tokens.py), so it
is never taken for a token.

Writing. `CheckpointWriter.tick()` reads the head and, when it moved since
the last checkpoint this instance wrote (or found in its file at start),
signs it and appends one JSON line to the checkpoint file
(`CONFIDE_AUDIT_CHECKPOINT_FILE`), optionally also to syslog. `confide serve`
ticks every `CONFIDE_AUDIT_CHECKPOINT_INTERVAL_S` and once more on shutdown.
An unchanged head is not signed again: the previous line already anchors
it, and a quiet server writes nothing. Checkpoints are never stored in the
database: whoever can cut its tail could cut them too. Each instance writes
its own file; ship it to another system (the log pipeline).

Checking. `check_anchors` (pure) compares the chain's own verification and
the hashes it holds at the checkpointed seqs with the checkpoints, and names
the first seq the evidence shows to be wrong: where the chain breaks, the
first missing seq when the chain is shorter than a checkpoint's seq, or a
checkpointed seq whose hash is no longer the signed one (the whole tail was
rewritten and re-hashed, somewhere after the previous matching checkpoint).

File format, one checkpoint per line (only `jws` is trusted; the other
fields are for people and log pipelines, and must agree with it):

    {"seq": 42, "head": "<64 hex>", "at": "2026-11-24T20:00:00Z", "kid": "...", "jws": "..."}
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.handlers
import os
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.audit import AuditTrail, Verification
from app.core.tokens import SignedCheckpoint, TokenError, TokenService
from app.models import AuditEntry

log = logging.getLogger("confide.audit.checkpoints")

#: How many recent checkpoints the writer keeps in memory.
KEEP = 100
#: A line longer than this is not one of ours (a checkpoint line is about 500 bytes).
MAX_LINE_BYTES = 8192
#: The hashes of checkpointed seqs are fetched this many at a time.
_LOOKUP_CHUNK = 500


# -- checkpoints and their lines -------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    head: str
    at: datetime
    kid: str
    jws: str
    #: The line of the file it was read from (1-based), when read from a whole file.
    line: int | None = None

    @classmethod
    def from_signed(cls, signed: SignedCheckpoint, line: int | None = None) -> Checkpoint:
        return cls(
            seq=signed.seq,
            head=signed.head,
            at=datetime.fromtimestamp(signed.iat, UTC),
            kid=signed.kid,
            jws=signed.token,
            line=line,
        )

    def to_line(self) -> str:
        return (
            json.dumps(
                {
                    "seq": self.seq,
                    "head": self.head,
                    "at": _iso(self.at),
                    "kid": self.kid,
                    "jws": self.jws,
                },
                separators=(",", ":"),
            )
            + "\n"
        )

    def where(self) -> str:
        """How a message names it: its time, and its line when known."""
        return f"the checkpoint of {_iso(self.at)}" + (
            f" (line {self.line})" if self.line is not None else ""
        )


@dataclass(frozen=True)
class Refused:
    """A line that is not a valid checkpoint."""

    line: int | None
    reason: str


class CheckpointRefused(ValueError):
    pass


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_line(text: str, tokens: TokenService, *, line: int | None = None) -> Checkpoint:
    """One line of the file, verified; CheckpointRefused says why not."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
        raise CheckpointRefused("line too long")
    try:
        record = json.loads(text)
    except ValueError:
        raise CheckpointRefused("not a JSON line") from None
    if not isinstance(record, dict) or not isinstance(record.get("jws"), str):
        raise CheckpointRefused("no jws")
    try:
        signed = tokens.verify_checkpoint(record["jws"])
    except TokenError as error:
        raise CheckpointRefused(f"signature or claims refused: {error.detail}") from None
    checkpoint = Checkpoint.from_signed(signed, line)
    # The readable fields are not signed: refuse a line whose fields say something else.
    shown = {"seq": checkpoint.seq, "head": checkpoint.head, "kid": checkpoint.kid}
    for name, value in shown.items():
        if name in record and (type(record[name]) is not type(value) or record[name] != value):
            raise CheckpointRefused(f"{name} differs from the signed checkpoint")
    if "at" in record and record["at"] != _iso(checkpoint.at):
        raise CheckpointRefused("at differs from the signed checkpoint")
    return checkpoint


def _parse_all(
    lines: Sequence[tuple[int | None, str]], tokens: TokenService
) -> tuple[list[Checkpoint], list[Refused]]:
    good: list[Checkpoint] = []
    refused: list[Refused] = []
    for number, text in lines:
        if not text.strip():
            continue
        try:
            good.append(parse_line(text, tokens, line=number))
        except CheckpointRefused as error:
            refused.append(Refused(number, str(error)))
    return good, refused


def read_checkpoints(path: Path, tokens: TokenService) -> tuple[list[Checkpoint], list[Refused]]:
    """Every line of the file, numbered; OSError when it cannot be read."""
    with path.open("rb") as handle:
        lines = [
            (number, raw.decode("utf-8", "replace").rstrip("\r\n"))
            for number, raw in enumerate(handle, start=1)
        ]
    return _parse_all(lines, tokens)


def tail_lines(path: Path, count: int, *, block: int = 64 * 1024) -> list[str]:
    """The last `count` lines of the file (read from its end); [] if it does not exist."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return []
    with handle:
        end = handle.seek(0, os.SEEK_END)
        position, data = end, b""
        while position > 0 and data.count(b"\n") <= count:
            step = min(block, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    lines = data.split(b"\n")
    if position > 0:
        lines = lines[1:]  # the first one is cut
    if lines and lines[-1] == b"":
        lines.pop()
    return [raw.decode("utf-8", "replace").rstrip("\r") for raw in lines[-count:]]


def read_recent(
    path: Path, tokens: TokenService, count: int
) -> tuple[list[Checkpoint], list[Refused]]:
    """The checkpoints among the file's last `count` lines, oldest first (no line numbers)."""
    return _parse_all([(None, text) for text in tail_lines(path, count)], tokens)


# -- checking the chain against them (pure) ------------------------------------------------

Reason = Literal["chain", "missing", "mismatch"]


@dataclass(frozen=True)
class Anchored:
    """The chain's verification, and what the checkpoints add to it."""

    ok: bool
    entries: int
    head: str | None
    broken_seq: int | None
    reason: Reason | None
    message: str
    #: How many checkpoints were found to hold.
    checkpoints: int
    #: The highest seq a holding checkpoint anchors.
    anchored_seq: int | None


def check_anchors(
    verification: Verification, hashes: Mapping[int, str], checkpoints: Sequence[Checkpoint]
) -> Anchored:
    """Name the first seq the chain or the checkpoints show to be wrong.

    `hashes` maps each checkpointed seq within the verified part of the chain
    (1..verification.entries) to the hash stored there, in hex. In seq order,
    a checkpoint before the chain's break (or anywhere on an intact chain)
    must find its seq in the chain with exactly its hash: past the end of
    the chain, the first missing seq is the chain's length + 1; a different
    hash means the entries after the previous holding checkpoint up to this
    one were rewritten and re-hashed. Checkpoints at or past a break add
    nothing: the break comes first.
    """
    entries, head = verification.entries, verification.head
    broken = None if verification.ok else verification.broken_seq
    held: list[Checkpoint] = []

    def failed(seq: int, reason: Reason, message: str) -> Anchored:
        anchored = held[-1].seq if held else None
        return Anchored(False, entries, head, seq, reason, message, len(held), anchored)

    for checkpoint in sorted(checkpoints, key=lambda c: (c.seq, c.line or 0)):
        if broken is not None and checkpoint.seq >= broken:
            break
        if checkpoint.seq > entries:
            first = entries + 1
            return failed(
                first,
                "missing",
                f"audit log TRUNCATED at seq {first}: entries from seq {first} on are missing;"
                f" the chain ends at seq {entries} but {checkpoint.where()}"
                f" anchors seq {checkpoint.seq}",
            )
        if hashes.get(checkpoint.seq) != checkpoint.head:
            since = held[-1].seq if held else 0
            return failed(
                checkpoint.seq,
                "mismatch",
                f"audit log REWRITTEN at seq {checkpoint.seq}: its hash is not the one"
                f" {checkpoint.where()} signed; entries {since + 1}..{checkpoint.seq}"
                " were rewritten and re-hashed",
            )
        held.append(checkpoint)
    if broken is not None:
        return failed(
            broken, "chain", f"audit log BROKEN at seq {broken} ({entries} entries verified)"
        )
    if held:
        holds = "1 checkpoint holds" if len(held) == 1 else f"{len(held)} checkpoints hold"
        anchors = f"{holds} (the newest anchors seq {held[-1].seq}, {_iso(held[-1].at)})"
    else:
        anchors = "no checkpoints to check"
    return Anchored(
        True,
        entries,
        head,
        None,
        None,
        f"audit log intact: {entries} entries, head {head}; {anchors}",
        len(held),
        held[-1].seq if held else None,
    )


async def hashes_at(session: AsyncSession, seqs: Sequence[int]) -> dict[int, str]:
    """The stored hash (hex) of each of these seqs that exists."""
    found: dict[int, str] = {}
    wanted = sorted(set(seqs))
    for start in range(0, len(wanted), _LOOKUP_CHUNK):
        chunk = wanted[start : start + _LOOKUP_CHUNK]
        rows = await session.execute(
            select(AuditEntry.seq, AuditEntry.hash).where(AuditEntry.seq.in_(chunk))
        )
        found.update((seq, digest.hex()) for seq, digest in rows)
    return found


async def verify_anchored(
    session: AsyncSession, audit: AuditTrail, checkpoints: Sequence[Checkpoint]
) -> Anchored:
    """Verify the chain, then hold it against the checkpoints."""
    verification = await audit.verify(session)
    seqs = [c.seq for c in checkpoints if c.seq <= verification.entries]
    return check_anchors(verification, await hashes_at(session, seqs), checkpoints)


# -- writing them ------------------------------------------------------------------------


async def current_head(session: AsyncSession) -> tuple[int, str] | None:
    """The newest entry's (seq, hash hex), or None for an empty chain."""
    row = (
        await session.execute(
            select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
        )
    ).one_or_none()
    return (row[0], row[1].hex()) if row is not None else None


def append_line(path: Path, line: str) -> None:
    """Append one line with one write (O_APPEND), then fsync.

    Should an earlier write have been cut short (a crash), the cut line is
    ended first, so the new checkpoint stays a line of its own.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        size = os.fstat(fd).st_size
        data = line.encode("utf-8")
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def syslog_handler(address: str) -> logging.handlers.SysLogHandler:
    """A Unix socket path (`/dev/log`) or `host:port` (UDP)."""
    target: str | tuple[str, int]
    if address.startswith("/"):
        target = address
    else:
        host, _, port = address.rpartition(":")
        target = (host.strip("[]"), int(port))
    return logging.handlers.SysLogHandler(
        address=target, facility=logging.handlers.SysLogHandler.LOG_AUTH
    )


class CheckpointWriter:
    """Signs the head when it moved and appends it to the file (and syslog)."""

    def __init__(
        self,
        tokens: TokenService,
        sessionmaker: async_sessionmaker[AsyncSession],
        path: Path,
        *,
        syslog: str | None = None,
        keep: int = KEEP,
    ) -> None:
        self._tokens = tokens
        self._sessionmaker = sessionmaker
        self.path = path
        self._recent: deque[Checkpoint] = deque(maxlen=keep)
        self._lock = asyncio.Lock()
        self._syslog: logging.handlers.SysLogHandler | None = None
        if syslog is not None:
            try:
                self._syslog = syslog_handler(syslog)
            except OSError:
                log.exception("audit checkpoints: syslog %s unavailable; file only", syslog)

    @property
    def recent(self) -> list[Checkpoint]:
        """What this writer wrote or found at start, oldest first."""
        return list(self._recent)

    def load(self) -> None:
        """Start from the newest checkpoints already in the file (after a restart)."""
        try:
            checkpoints, refused = read_recent(self.path, self._tokens, self._recent.maxlen or KEEP)
        except OSError:
            log.exception("audit checkpoints: cannot read %s", self.path)
            return
        if refused:
            log.error(
                "audit checkpoints: %d of the last lines of %s are not valid checkpoints",
                len(refused),
                self.path,
            )
        self._recent.extend(checkpoints)

    async def tick(self) -> Checkpoint | None:
        """Write a checkpoint if the head moved since the last one; the new one, or None."""
        async with self._lock:
            async with self._sessionmaker() as session:
                head = await current_head(session)
                if head is None:
                    return None
                last = self._recent[-1] if self._recent else None
                if last is not None:
                    if (last.seq, last.head) == head:
                        return None
                    await self._check_continuity(session, last, head[0])
            checkpoint = Checkpoint.from_signed(
                self._tokens.sign_checkpoint(seq=head[0], head=head[1])
            )
            line = checkpoint.to_line()
            await asyncio.to_thread(append_line, self.path, line)
            self._recent.append(checkpoint)
            if self._syslog is not None:
                record = logging.LogRecord(
                    log.name,
                    logging.INFO,
                    __file__,
                    0,
                    "confide-audit-checkpoint %s",
                    (line,),
                    None,
                )
                self._syslog.handle(record)
            log.info("audit checkpoint: seq %d", checkpoint.seq)
            return checkpoint

    async def _check_continuity(self, session: AsyncSession, last: Checkpoint, seq: int) -> None:
        """Say so at once when the chain no longer holds the last checkpoint."""
        if seq < last.seq:
            log.error(
                "audit log TRUNCATED: the head is seq %d, the last checkpoint anchors seq %d",
                seq,
                last.seq,
            )
        elif (await hashes_at(session, [last.seq])).get(last.seq) != last.head:
            log.error("audit log REWRITTEN: checkpointed seq %d has another hash", last.seq)

    def close(self) -> None:
        if self._syslog is not None:
            self._syslog.close()
            self._syslog = None


async def write_periodically(
    writer: CheckpointWriter,
    interval_s: float,
    *,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> None:
    """Tick every `interval_s` until cancelled; a failed tick is retried at the next one."""
    while True:
        await sleep(interval_s)
        try:
            await writer.tick()
        except Exception:
            log.exception("audit checkpoint failed")


async def write_final(writer: CheckpointWriter) -> Checkpoint | None:
    """The shutdown checkpoint: after the last request, before the database closes."""
    try:
        return await writer.tick()
    except Exception:
        log.exception("audit checkpoint at shutdown failed")
        return None
