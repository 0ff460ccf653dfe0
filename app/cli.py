"""The `confide` command: serve, migrate, admin create, keys, audit verify, purge, backup,
restore."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from app.context import build_context
from app.core import logging as logs
from app.core.broker_url import broker_kind
from app.core.config import Settings, get_settings
from app.core.errors import ConfideError
from app.core.keys import KeyConfigError, KeySource, load_keys, signing_key_name
from app.core.tokens import KeyStatus, TokenService
from app.incidents import state_deadlines
from app.incidents.state_deadlines import DeadlineFileError

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

log = logging.getLogger("confide")

#: The most processes `confide serve --workers` runs (CONFIDE_WORKERS' bound too).
MAX_WORKERS = 64
#: How long a worker has to drain its sockets and stop once told to (SIGTERM):
#: the drain, then uvicorn's graceful shutdown (10 s), with room to spare.
WORKER_STOP_S = 40.0
#: A worker's exit status when its server never started (uvicorn's, too): the
#: others would fail the same way, so the whole server stops.
STARTUP_FAILURE = 3


def _setup_logging(settings: Settings) -> dict[str, Any]:
    """JSON lines on standard error, for this process and (as log_config) its uvicorn."""
    return logs.configure(settings.log_level)


def _settings_errors(error: ValidationError) -> list[str]:
    """One line per bad setting, naming its variable; never the value (it may be a secret)."""
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        if not item["loc"]:  # a rule across settings: its message names them
            lines.append(f"confide: {item['msg'].removeprefix('Value error, ')}")
            continue
        name = "CONFIDE_" + "_".join(str(part) for part in item["loc"]).upper()
        lines.append(f"confide: {name}: {item['msg']}")
    return lines


class UnknownSchema(RuntimeError):
    """The database is at a schema revision this release does not have."""


class AuditNotFenced(RuntimeError):
    """Production on PostgreSQL, as a role that may change or remove audit entries."""


def _migrate(settings: Settings) -> None:
    """Apply pending migrations, as the owner's role when there are two (and grant the
    server's role its rights); a refusal is one line (`UnknownSchema`)."""
    from alembic.util.exc import CommandError
    from sqlalchemy import exc as sa_exc

    from app.core.migrations import upgrade

    if settings.resolved_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    keys = load_keys(settings)  # a migration may re-seal rows (0004)
    try:
        applied = upgrade(
            settings.resolved_migration_database_url,
            keys=(keys.keyring, keys.index_key),
            server_role=settings.server_role,
        )
    except CommandError as error:
        raise UnknownSchema(
            f"this release cannot migrate the database's schema ({error}); if a newer release "
            "migrated it, roll it back with that release's `alembic downgrade` "
            "(docs/operations.md, Upgrade and roll back)"
        ) from None
    except sa_exc.ProgrammingError as error:
        if getattr(error.orig, "sqlstate", None) != "42501":  # insufficient_privilege
            raise
        raise UnknownSchema(
            "the database role may not apply the pending migrations (permission denied): "
            "set CONFIDE_MIGRATION_DATABASE_URL to the owner's URL, or run `confide migrate` "
            "as the owner first (docs/operations.md, Two database roles)"
        ) from None
    if applied:
        log.info(
            "database migrated: applied %d revision(s), now at %s",
            len(applied),
            applied[-1],
            extra={"applied": applied},
        )
    else:
        log.info("database schema is up to date")


def _check_audit_fence(settings: Settings) -> None:
    """PostgreSQL: the server's role may only SELECT and INSERT audit entries. Production
    refuses to start as a role that may UPDATE, DELETE or TRUNCATE them (`AuditNotFenced`);
    development says so in one info line (there, one role is the usual set-up)."""
    if not settings.resolved_database_url.startswith("postgresql"):
        return
    from app.core.db import create_engine
    from app.core.migrations import audit_log_rights

    async def rights() -> list[str]:
        engine = create_engine(settings.resolved_database_url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(audit_log_rights)
        finally:
            await engine.dispose()

    held = asyncio.run(rights())
    if not held:
        return
    message = (
        f"the database role may {', '.join(held)} the audit log, which must be append-only: "
        "run the server as a role of its own, with CONFIDE_MIGRATION_DATABASE_URL the "
        "owner's (docs/operations.md, Two database roles)"
    )
    if settings.is_production:
        raise AuditNotFenced(message)
    log.info(message + "; production refuses to start so", extra={"audit_rights": held})


def _metrics_mode(settings: Settings) -> str:
    if settings.metrics_listener is not None:
        return "listener"
    return "token" if settings.metrics_token is not None else "off"


def _websocket_protocol() -> type[Any]:
    """The WebSocket protocol `confide serve` runs (`app.relay.wsproto`)."""
    from app.relay.wsproto import WebSocketProtocol

    return WebSocketProtocol


def _workers(settings: Settings, given: str | None) -> int | str:
    """How many processes serve: --workers, else CONFIDE_WORKERS; or the one line refusing."""
    if given is None:
        count = settings.workers
    elif given.isascii() and given.isdigit() and 1 <= int(given) <= MAX_WORKERS:
        count = int(given)
    else:
        return f"confide: --workers must be a whole number from 1 to {MAX_WORKERS}, not {given!r}"
    if count == 1:
        return 1
    if broker_kind(settings.broker_url.get_secret_value()) == "memory":
        return (
            f"confide: {count} workers need a shared broker: set CONFIDE_BROKER_URL to "
            "redis:// or redis+cluster:// (with memory://, sockets on different processes "
            "could not reach each other)"
        )
    if settings.resolved_database_url.startswith("sqlite"):
        return (
            f"confide: {count} workers need PostgreSQL (CONFIDE_DATABASE_URL): "
            "the embedded SQLite database serves one process"
        )
    if settings.metrics_listener is not None:
        return (
            f"confide: CONFIDE_METRICS_ADDR is one listener and cannot be served by {count} "
            "workers: unset it and set CONFIDE_METRICS_TOKEN (each worker serves /metrics "
            "behind it), or serve with one worker"
        )
    return count


def _listen(host: str, port: int, *, accept: bool) -> socket.socket:
    """A socket on host:port with SO_REUSEPORT (OSError if it cannot be had).

    The parent's is bound, not listening: it holds the port while workers come
    and go, and finds it taken by another server. Each worker listens on a
    socket of its own, and the kernel spreads new connections over them; on one
    shared socket the first worker to wake would accept a burst of connections
    alone, and keep them (HTTP keep-alive, room sockets).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if accept:
            sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _run_worker(make_server: Callable[[], uvicorn.Server], address: tuple[str, int]) -> None:
    """One worker process: its own event loop, app and listening socket, on the port."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)  # the server installs its own once it runs
    try:
        listener = _listen(*address, accept=True)
    except OSError as error:
        print(f"confide: cannot listen on {address[0]}:{address[1]}: {error}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    server = make_server()
    try:
        server.run(sockets=[listener])
    except Exception:
        # multiprocessing would print the traceback raw, beside the JSON records.
        log.critical("worker failed", exc_info=True)
        sys.exit(1)
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _supervise(
    count: int, make_server: Callable[[], uvicorn.Server], listener: socket.socket
) -> int:
    """Run `count` workers until SIGTERM or SIGINT; start another for one that dies.

    A worker whose first start fails (its application startup, e.g. the
    database refuses it) stops them all: the others would fail the same way.
    A replacement that fails to start is tried again after 1 s, then 2, 4...
    up to 30 s, while the other workers serve.

    On the signal each worker is sent SIGTERM, drains its room sockets (1012)
    and stops; one that has not after WORKER_STOP_S is killed. Exit 0 when every
    worker stopped of itself, 1 otherwise.
    """
    import multiprocessing
    from multiprocessing.process import BaseProcess

    # Where the workers listen: the port the parent holds (chosen by the system for 0).
    address: tuple[str, int] = listener.getsockname()[:2]

    # fork: each worker starts from this process's settings and checked state,
    # and builds its own app, connections and event loop.
    context = multiprocessing.get_context("fork")
    stop = threading.Event()
    signals: list[int] = []

    def request_stop(signum: int, _: object) -> None:
        signals.append(signum)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)

    def start(index: int) -> BaseProcess:
        process = context.Process(
            target=_run_worker, args=(make_server, address), name=f"confide-worker-{index}"
        )
        process.start()
        log.info("worker %d started", index, extra={"worker": index, "pid": process.pid})
        return process

    code = 0
    processes = [start(index) for index in range(count)]
    replaced = [False] * count  # a first start that fails stops everything
    delay = [0.0] * count  # a replacement that fails to start is retried later and later
    due = [0.0] * count
    try:
        while not stop.wait(0.5):
            for index, process in enumerate(processes):
                if process.is_alive() or stop.is_set() or time.monotonic() < due[index]:
                    continue
                failed = process.exitcode == STARTUP_FAILURE
                if failed and not replaced[index]:
                    log.error("worker %d could not start; stopping every worker", index)
                    code = 1
                    stop.set()
                    break
                if failed and due[index] == 0.0:
                    delay[index] = min(30.0, max(1.0, 2 * delay[index]))
                    due[index] = time.monotonic() + delay[index]
                    log.warning(
                        "worker %d could not start; trying again in %.0f s",
                        index,
                        delay[index],
                        extra={"worker": index},
                    )
                    continue
                if not failed:
                    delay[index] = 0.0
                    log.warning(
                        "worker %d exited (%s); starting another",
                        index,
                        process.exitcode,
                        extra={"worker": index, "exit_code": process.exitcode},
                    )
                due[index] = 0.0
                replaced[index] = True
                processes[index] = start(index)
    finally:
        if signals:
            log.info("stopping %d workers (%s)", count, signal.Signals(signals[0]).name)
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + WORKER_STOP_S
        for index, process in enumerate(processes):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker %d did not stop in %.0f s; killed", index, WORKER_STOP_S)
                process.kill()
                process.join()
                code = 1
        listener.close()
    return code


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app
    from app.ops.metrics import MetricsServer, create_metrics_app
    from app.web.http_protocol import with_timeouts
    from app.web.middleware import MAX_HEADER_BYTES

    workers = _workers(settings, args.workers)
    if isinstance(workers, str):
        print(workers, file=sys.stderr)
        return 2
    log_config = logs.log_config(settings.log_level)
    state_deadlines.load(settings.breach_deadlines_file)  # a bad file: one line, no server
    load_keys(settings)  # refuse early (production without keys), and generate dev keys
    missing = settings.production_webauthn_missing()
    if missing:
        print(f"confide: CONFIDE_ENV=production requires {missing}", file=sys.stderr)
        return 2
    _migrate(settings)
    _check_audit_fence(settings)
    listener: socket.socket | None = None
    if workers > 1:
        try:
            listener = _listen(args.host, args.port, accept=False)
        except OSError as error:
            print(
                f"confide: cannot listen on {args.host}:{args.port}: {error.strerror or error}",
                file=sys.stderr,
            )
            return 2
    # One app per process: here with one worker, in each worker (from this
    # factory, by uvicorn) with several.
    made: list[FastAPI] = []

    def make_app() -> FastAPI:
        made.append(create_app(settings))
        return made[-1]

    app: FastAPI | Callable[[], FastAPI] = make_app() if workers == 1 else make_app
    log.info(
        "logging configured",
        extra={
            "log_level": settings.log_level,
            "client_addresses": settings.log_client_addresses,
            "metrics": _metrics_mode(settings),
            "workers": workers,
        },
    )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    base = f"http://{shown}:{args.port}"
    web_client = f"{base}/app/" if settings.serves_web_client else "off (CONFIDE_WEB_CLIENT)"
    log.info(
        "serving on %s: web client %s, API docs %s/docs",
        f"{shown}:{args.port}",
        web_client,
        base,
        extra={"web_client": web_client, "api_docs": f"{base}/docs"},
    )
    if settings.is_production and _metrics_mode(settings) == "off":
        log.warning(
            "/metrics is not served: set CONFIDE_METRICS_TOKEN (served here behind that "
            "bearer token) or CONFIDE_METRICS_ADDR (a listener of its own, host:port)"
        )

    metrics_server: uvicorn.Server | None = None
    metrics_sockets: list[socket.socket] = []
    if settings.metrics_listener is not None:
        host, port = settings.metrics_listener
        try:
            metrics_sockets.append(
                socket.create_server(
                    (host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET
                )
            )
        except OSError as error:
            print(
                f"confide: CONFIDE_METRICS_ADDR: cannot listen on {host}:{port}: "
                f"{error.strerror or error}",
                file=sys.stderr,
            )
            return 2
        log.info("/metrics is served on its own listener", extra={"listener": f"{host}:{port}"})
        metrics_server = MetricsServer(
            uvicorn.Config(
                create_metrics_app(made[0].state.metrics, settings.metrics_token),
                host=host,
                port=port,
                server_header=False,
                access_log=False,
                log_config=None,  # configured above, once for the process
                log_level=None,
                lifespan="off",
                proxy_headers=False,
                ws="none",
                http="h11",  # a bounded head, as below
                h11_max_incomplete_event_size=4 * MAX_HEADER_BYTES,
            )
        )

    class Server(uvicorn.Server):
        metrics_task: asyncio.Task[None] | None = None

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            if metrics_server is not None:
                # On the socket bound above, beside this server, in this loop.
                self.metrics_task = asyncio.create_task(metrics_server.serve(metrics_sockets))
            await super().startup(sockets)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # SIGTERM: drain the room sockets first (in-flight sends acked, then
            # 1012), so clients resume on another instance and lose nothing.
            hub = getattr(made[-1].state, "hub", None) if made else None
            if hub is not None:
                await hub.drain()
            await super().shutdown(sockets)
            if metrics_server is not None and self.metrics_task is not None:
                metrics_server.should_exit = True
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.metrics_task, 10)

    config = uvicorn.Config(
        app,
        ws=_websocket_protocol(),
        host=args.host,
        port=args.port,
        server_header=False,
        # Confide writes its own access line, by route template: uvicorn's
        # would carry raw paths (room ids) and the client's address.
        access_log=False,
        log_config=log_config,
        log_level=None,  # the levels are in log_config (libraries never below INFO)
        proxy_headers=True,
        ws_max_size=256 * 1024,
        ws_per_message_deflate=False,
        # The head of a request is bounded while it is read, not only once it
        # has been parsed: httptools (fast, in C) has no such bound of its own
        # and buffered whatever it was sent (an 8 MB header was answered), so
        # this protocol answers 431 and closes past 4 x MAX_HEADER_BYTES. Under
        # that, the app answers 431 past MAX_HEADER_BYTES.
        # It also cuts off a head or a body that trickles in (408): uvicorn's own
        # timeout_keep_alive covers only the idle time between requests.
        http=with_timeouts(settings.head_timeout, settings.body_timeout, settings.body_min_rate),
        timeout_graceful_shutdown=10,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        factory=workers > 1,
    )
    if listener is None:
        Server(config).run()
        return 0
    return _supervise(workers, lambda: Server(config), listener)


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    _migrate(settings)
    print("database is at the newest schema")
    return 0


async def _admin_create(settings: Settings, email: str, password: str, name: str) -> str:
    from app.accounts.service import create_account
    from app.main import prepare
    from app.models import Role

    ctx = build_context(settings)
    try:
        await prepare(ctx)
        async with ctx.transaction() as session:
            account = await create_account(
                session,
                ctx.vault,
                ctx.clock,
                ctx.passwords,
                email=email,
                password=password,
                display_name=name,
                role=Role.admin,
                actor_role="cli",
            )
            return account.id
    finally:
        await ctx.close()


def cmd_admin_create(settings: Settings, args: argparse.Namespace) -> int:
    if not args.password_stdin:
        print("pass --password-stdin and the password on standard input", file=sys.stderr)
        return 2
    password = sys.stdin.readline().rstrip("\r\n")
    _migrate(settings)
    try:
        account_id = asyncio.run(
            _admin_create(settings, args.email, password, args.display_name or "Administrator")
        )
    except ConfideError as error:
        print(f"refused ({error.code}): {error.detail}", file=sys.stderr)
        return 1
    print(account_id)
    return 0


async def _rotate(settings: Settings) -> tuple[str, int]:
    ctx = build_context(settings)
    try:
        kid = ctx.keys.source.add_master_key() if settings.master_keys is None else ""
        async with ctx.transaction() as session:
            count = await ctx.vault.rewrap_all(session)
        return kid or ctx.vault.keyring.current_kid, count
    finally:
        await ctx.close()


def cmd_keys_rotate(settings: Settings, _: argparse.Namespace) -> int:
    _migrate(settings)
    kid, count = asyncio.run(_rotate(settings))
    print(f"newest master key {kid}; re-wrapped {count} data keys")
    return 0


def _iso(moment: int) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def _signing_status(source: KeySource, settings: Settings) -> list[KeyStatus]:
    return TokenService(source.signing_keys(), issuer=settings.issuer).key_status()


def _print_signing_status(statuses: list[KeyStatus]) -> None:
    for status in statuses:
        line = f"{status.state:<9}  {status.kid}  from {_iso(status.active_from)}"
        if status.state == "pending" and status.until is not None:
            line += f"  (signs from {_iso(status.until)})"
        elif status.state == "verifying" and status.until is not None:
            line += f"  (its tokens verify until {_iso(status.until)})"
        elif status.state == "retired":
            line += "  (verifies audit checkpoints only)"
        print(line)


def cmd_keys_rotate_signing(settings: Settings, args: argparse.Namespace) -> int:
    if args.activate_in < 0:
        print("--activate-in must be 0 or more seconds", file=sys.stderr)
        return 2
    source = load_keys(settings).source  # refuses a broken configuration first
    key = source.add_signing_key(int(time.time()) + args.activate_in)
    print(
        f"new signing key {key.kid} in {source.signing_path / signing_key_name(key.active_from)}"
        f"; it signs from {_iso(key.active_from)}"
    )
    _print_signing_status(_signing_status(source, settings))
    return 0


def cmd_keys_list_signing(settings: Settings, _: argparse.Namespace) -> int:
    source = load_keys(settings).source
    _print_signing_status(_signing_status(source, settings))
    return 0


async def _verify(settings: Settings, checkpoint_file: Path | None) -> int:
    from app.audit.checkpoints import read_checkpoints, verify_anchored

    ctx = build_context(settings)
    try:
        if checkpoint_file is None:
            async with ctx.transaction() as session:
                result = await ctx.audit.verify(session)
            if result.ok:
                print(f"audit log intact: {result.entries} entries, head {result.head}")
                return 0
            print(
                f"audit log BROKEN at seq {result.broken_seq} ({result.entries} entries verified)"
            )
            return 1
        try:
            checkpoints, refused = read_checkpoints(checkpoint_file, ctx.tokens)
        except OSError as error:
            print(f"confide: cannot read {checkpoint_file}: {error.strerror}", file=sys.stderr)
            return 2
        if refused:
            first = refused[0]
            print(
                f"checkpoint REFUSED: {checkpoint_file} line {first.line}: {first.reason}"
                + (f" ({len(refused)} lines refused)" if len(refused) > 1 else "")
            )
            return 1
        async with ctx.transaction() as session:
            anchored = await verify_anchored(session, ctx.audit, checkpoints)
    finally:
        await ctx.close()
    print(anchored.message)
    return 0 if anchored.ok else 1


def cmd_audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_verify(settings, args.checkpoints))


async def _purge(settings: Settings) -> str:
    from app.relay.broker import ReplayLimits, create_broker
    from app.retention.service import purge

    ctx = build_context(settings)
    broker = create_broker(
        settings.broker_url.get_secret_value(),
        prefix=settings.broker_prefix,
        limits=ReplayLimits.from_settings(settings),
        timeout_s=settings.broker_timeout_s,
    )

    async def ignore(*_: object) -> None:
        return None

    await broker.start(ignore, ignore)
    try:
        done = await purge(ctx, broker)
    finally:
        await broker.close()
        await ctx.close()
    return (
        f"purged: ciphertexts of {done.rooms} rooms, {done.refresh_tokens} refresh tokens, "
        f"{done.spent_token_ids} spent token ids, {done.webhook_deliveries} webhook deliveries, "
        f"{done.password_resets} password resets, {done.idempotency_keys} idempotency keys"
    )


def cmd_purge(settings: Settings, _: argparse.Namespace) -> int:
    _migrate(settings)
    print(asyncio.run(_purge(settings)))
    return 0


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    from app.ops.backup import BackupError, backup

    try:
        manifest = backup(settings, args.directory, args.keys)
    except BackupError as error:
        print(f"confide backup: {error}", file=sys.stderr)
        return 1
    print(
        f"backed up the {manifest.database} database (schema {manifest.schema_revision}, "
        f"{manifest.data_keys} data keys under master keys "
        f"{', '.join(manifest.master_key_ids) or '-'}) into {args.directory / manifest.file}"
    )
    if args.keys is not None:
        print(f"keys into {args.keys}: keep them apart from the database backup")
    else:
        print("keys not backed up (--keys): the backup cannot be read without them")
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    from app.ops.backup import BackupError, restore

    try:
        manifest, opened = restore(settings, args.directory, args.keys)
    except BackupError as error:
        print(f"confide restore: {error}", file=sys.stderr)
        return 1
    print(
        f"restored the {manifest.database} backup of {manifest.created_at} "
        f"(schema {manifest.schema_revision}); the master keys open all {opened} data keys. "
        "Next: confide audit verify, then confide serve (it applies pending migrations)"
    )
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    import httpx

    from app import demo

    if settings.is_production:
        print("confide demo is for development only (CONFIDE_ENV=production)", file=sys.stderr)
        return 2
    _migrate(settings)
    tag = demo.new_tag()
    admin = demo.admin_login(tag)
    try:
        asyncio.run(_admin_create(settings, admin.email, admin.password, admin.display_name))
    except ConfideError as error:
        print(f"refused ({error.code}): {error.detail}", file=sys.stderr)
        return 1
    url = args.url.rstrip("/")
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            made = demo.seed(http, admin, tag)
    except httpx.HTTPError as error:
        print(f"confide demo: no Confide server answers at {url} ({error})", file=sys.stderr)
        return 1
    except demo.DemoError as error:
        print(f"confide demo: {error}", file=sys.stderr)
        return 1
    print("\n".join(made.lines()))
    return 0


def version() -> str:
    """The installed package's version (pyproject.toml)."""
    try:
        return metadata.version("confide")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="confide", description=__doc__)
    parser.add_argument(
        "--version", action="version", version=f"confide {version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="apply pending migrations, then serve")
    serve.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)"
    )
    serve.add_argument(
        "--port", type=int, default=8000, help="the port to listen on (default: %(default)s)"
    )
    serve.add_argument(
        "--workers",
        metavar="N",
        help="processes serving the one port, each with its own event loop (default: "
        "CONFIDE_WORKERS, else 1); more than 1 needs Redis (CONFIDE_BROKER_URL) and PostgreSQL",
    )
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", help="apply pending migrations").set_defaults(func=cmd_migrate)

    admin = sub.add_parser("admin", help="accounts").add_subparsers(dest="admin", required=True)
    create = admin.add_parser("create", help="create an admin account")
    create.add_argument("--email", required=True, help="the admin's email, used to log in")
    create.add_argument("--display-name", help="the name others see (default: Administrator)")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (required: it never goes on the command line)",
    )
    create.set_defaults(func=cmd_admin_create)

    keys = sub.add_parser("keys", help="key management").add_subparsers(dest="keys", required=True)
    keys.add_parser(
        "rotate", help="add a master key and re-wrap every data key under it"
    ).set_defaults(func=cmd_keys_rotate)
    rotate_signing = keys.add_parser(
        "rotate-signing",
        help="add a signing key that signs new tokens from now (or --activate-in seconds); "
        "the older keys keep verifying the tokens they signed until those have expired",
    )
    rotate_signing.add_argument(
        "--activate-in",
        type=int,
        default=0,
        metavar="SECONDS",
        help="publish the key now, sign with it only after SECONDS (time to copy it to "
        "instances that do not share the key directory)",
    )
    rotate_signing.set_defaults(func=cmd_keys_rotate_signing)
    keys.add_parser("list-signing", help="the signing keys and what each does now").set_defaults(
        func=cmd_keys_list_signing
    )

    audit = sub.add_parser("audit", help="audit log").add_subparsers(dest="audit", required=True)
    verify = audit.add_parser(
        "verify", help="verify the hash chain (and hold it against signed checkpoints)"
    )
    verify.add_argument(
        "--checkpoints",
        type=Path,
        metavar="FILE",
        help="a checkpoint file (CONFIDE_AUDIT_CHECKPOINT_FILE): check each signature, and "
        "that the chain holds each checkpointed seq with exactly its hash",
    )
    verify.set_defaults(func=cmd_audit_verify)

    sub.add_parser(
        "purge", help="delete what retention no longer allows (also runs inside serve)"
    ).set_defaults(func=cmd_purge)
    backup = sub.add_parser(
        "backup",
        help="back up the database (while servers run) and, with --keys, the keys that open it",
    )
    backup.add_argument(
        "directory",
        type=Path,
        help="a new or empty directory for the database backup and its manifest.json",
    )
    backup.add_argument(
        "--keys",
        type=Path,
        metavar="DIR",
        help="a new or empty directory, kept apart from the database backup, for the master "
        "keys, the index key and the signing keys",
    )
    backup.set_defaults(func=cmd_backup)
    restore = sub.add_parser(
        "restore",
        help="restore a backup into the configured, empty database (and a fresh data dir)",
    )
    restore.add_argument("directory", type=Path, help="a directory `confide backup` wrote")
    restore.add_argument(
        "--keys",
        type=Path,
        metavar="DIR",
        help="the keys backed up with it, installed into the data dir (without it, the "
        "configured keys are used)",
    )
    restore.set_defaults(func=cmd_restore)
    demo = sub.add_parser(
        "demo",
        help="development only: make a counselor, a client and a room on a running server "
        "to try the web client, and print their logins",
    )
    demo.add_argument(
        "--url",
        default="http://127.0.0.1:8000",
        help="the running server (same database and keys) (default: %(default)s)",
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as error:
        for line in _settings_errors(error):
            print(line, file=sys.stderr)
        return 2
    _setup_logging(settings)
    try:
        code: int = args.func(settings, args)
    except (KeyConfigError, UnknownSchema, DeadlineFileError, AuditNotFenced) as error:
        print(f"confide: {error}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
