"""The server's log: one JSON object a line, and nothing in it that links people.

Every line goes through one handler (standard error) with one formatter
(python-json-logger) and two filters:

- `ContextFilter` adds the request id (`request_id`, one per HTTP request,
  also sent back as `x-request-id`) or the socket's connection id
  (`conn_id`, random per socket, never a device or room id).
- `PrivacyFilter` drops what libraries write that Confide must not keep:
  uvicorn's own access log (raw paths carry room ids), its
  `<ip>:<port> - "WebSocket <path>"` handshake lines, and everything below
  WARNING that the protocol libraries (websockets, wsproto, h11, httptools)
  log: at DEBUG they print request headers (`bearer.<room token>` in
  Sec-WebSocket-Protocol) and frames. What they log at WARNING and above keeps
  its message but loses its exception text, which can quote a header.

What Python writes to standard error by itself (warnings, the tracebacks of
errors no code caught, in any thread, or raised while an object is collected)
goes through the same formatter (`capture_stray_output`), so a value an error
carries cannot start a line of its own. Every string is JSON-escaped with
`ensure_ascii`: CR, LF, ESC and the Unicode line separators never appear raw.

The levels do the rest: `CONFIDE_LOG_LEVEL=debug` turns on Confide's own
debug lines only. Libraries never log below INFO (aiosqlite writes every SQL
statement with its parameters at DEBUG), and the database and protocol
libraries never below WARNING.

The formatter is the last guard: a token-shaped string (`bearer.…`, `eyJ…`)
that reached a line anyway is replaced by `[redacted]`; the tests require
that it never has to act.

Client addresses are not logged unless `CONFIDE_LOG_CLIENT_ADDRESSES` asks:
`truncated` (IPv4 /24, IPv6 /48) or `keyed` (HMAC-SHA256 of the address under
a key derived from the index key, first 16 hex digits: the same address gives
the same value, for abuse handling, without the address itself).
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import ipaddress
import logging
import logging.config
import os
import re
import secrets
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

AddressMode = Literal["off", "truncated", "keyed"]

#: The HTTP request being served, and the socket: set for the whole task that
#: serves it, so every line written on its behalf (uvicorn's too) carries it.
request_id: ContextVar[str | None] = ContextVar("confide_request_id", default=None)
connection_id: ContextVar[str | None] = ContextVar("confide_connection_id", default=None)

#: Loggers that never write below WARNING, whatever the level: they log SQL
#: parameters, headers or frames at DEBUG and INFO.
QUIET_LOGGERS = (
    "aiosqlite",
    "asyncpg",
    "sqlalchemy",
    "alembic",
    "websockets",
    "wsproto",
    "h11",
    "httptools",
    "httpx",
    "httpcore",
    "multipart",
    "python_multipart",
)
_PROTOCOL_PACKAGES = ("websockets", "wsproto", "h11", "httptools")

_TOKEN_SHAPED = re.compile(
    r"bearer\.[A-Za-z0-9._~+/=-]*|eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){0,2}",
    re.IGNORECASE,
)
REDACTED = "[redacted]"


def new_id() -> str:
    """A request or connection id: 16 random hex digits, tied to nothing."""
    return secrets.token_hex(8)


def _package_dirs(names: tuple[str, ...]) -> tuple[str, ...]:
    found = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec else []:
            found.append(os.path.join(os.path.realpath(location), ""))
    return tuple(found)


class ContextFilter(logging.Filter):
    """Adds `request_id` and `conn_id` to every line written on their behalf."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id.get()
        if rid is not None and not hasattr(record, "request_id"):
            record.request_id = rid
        cid = connection_id.get()
        if cid is not None and not hasattr(record, "conn_id"):
            record.conn_id = cid
        return True


class PrivacyFilter(logging.Filter):
    """Drops or trims the library lines that would carry paths, addresses, headers or frames."""

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self._protocol_dirs = _package_dirs(_PROTOCOL_PACKAGES)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.DEBUG:  # uvicorn's TRACE: "<ip>:<port> - HTTP connection made"
            return False
        if record.name == "uvicorn.access" or record.name.startswith("uvicorn.access."):
            return False
        if isinstance(record.msg, str) and '"WebSocket %s"' in record.msg:
            # uvicorn's '<ip>:<port> - "WebSocket <path with room id>" [accepted]':
            # Confide writes its own socket line, by route template.
            return False
        if self._from_protocol_library(record):
            if record.levelno < logging.WARNING:
                return False
            if record.exc_info or record.exc_text:
                error = record.exc_info[1] if record.exc_info else None
                record.error = type(error).__name__ if error is not None else "error"
                record.exc_info = None
                record.exc_text = None
            record.args = ()
        return True

    def _from_protocol_library(self, record: logging.LogRecord) -> bool:
        if record.name.split(".")[0] in _PROTOCOL_PACKAGES:
            return True
        # uvicorn hands its own logger ("uvicorn.error") to the websockets
        # protocol: those lines are known by the file that wrote them.
        path = os.path.realpath(record.pathname) if record.pathname else ""
        return any(path.startswith(prefix) for prefix in self._protocol_dirs)


class JsonFormatter(_JsonFormatter):
    """`{"time", "level", "logger", "message", ...extra fields}`, one object a line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(levelname)s %(name)s %(message)s")
        kwargs.setdefault(
            "rename_fields", {"levelname": "level", "name": "logger", "exc_info": "exception"}
        )
        kwargs.setdefault("timestamp", "time")
        kwargs.setdefault(
            "reserved_attrs", [*RESERVED_ATTRS, "color_message", "websocket", "taskName"]
        )
        super().__init__(*args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        return _TOKEN_SHAPED.sub(REDACTED, line)


def library_level(level: str) -> str:
    """Libraries log at INFO at the lowest, even when Confide's own level is DEBUG."""
    return "INFO" if level.upper() == "DEBUG" else level.upper()


def log_config(level: str) -> dict[str, Any]:
    """The `logging.config.dictConfig` of every Confide process, also given to uvicorn."""
    base = library_level(level)
    quiet = "WARNING" if base in ("DEBUG", "INFO") else base
    # `propagate` is explicit: uvicorn's own default config (when uvicorn is
    # started by hand and this replaces it) turns it off for "uvicorn".
    loggers: dict[str, Any] = {
        "confide": {"level": level.upper(), "propagate": True},
        "uvicorn": {"level": base, "propagate": True},
        "uvicorn.error": {"level": base, "propagate": True},
        "uvicorn.asgi": {"level": quiet, "propagate": True},
        # Confide writes its own access line, by route template: uvicorn's
        # would carry the raw path (room ids) and the client's address.
        "uvicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
    }
    for name in QUIET_LOGGERS:
        loggers[name] = {"level": quiet, "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": "app.core.logging.ContextFilter"},
            "privacy": {"()": "app.core.logging.PrivacyFilter"},
        },
        "formatters": {"json": {"()": "app.core.logging.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json",
                "filters": ["privacy", "context"],
            }
        },
        "root": {"level": base, "handlers": ["stderr"]},
        "loggers": loggers,
    }


def configure(level: str) -> dict[str, Any]:
    """Configure this process's logging; returns the config (for uvicorn's `log_config`)."""
    config = log_config(level)
    logging.config.dictConfig(config)
    capture_stray_output()
    return config


_stray = logging.getLogger("confide.stray")


def _uncaught(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, tb)
        return
    _stray.critical("uncaught %s", kind.__name__, exc_info=(kind, error, tb))


def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    error = args.exc_value or args.exc_type()
    _stray.error(
        "uncaught %s in a thread",
        args.exc_type.__name__,
        exc_info=(args.exc_type, error, args.exc_traceback),
    )


def _unraisable(args: Any) -> None:
    # `args.object` is left out: its repr could be anything, a value included.
    kind = args.exc_type
    error = args.exc_value or kind()
    _stray.error(
        "ignored %s (%s)",
        kind.__name__,
        args.err_msg or "Exception ignored",
        exc_info=(kind, error, args.exc_traceback),
    )


def capture_stray_output() -> None:
    """What Python writes to standard error by itself goes through the log's formatter.

    A warning (`warnings.warn`), the traceback of an error no code caught (in the
    main thread, in another thread, or raised while an object was collected) are
    written raw by default: several lines, with whatever text the error carried
    (a value from a request, a CR, an ESC), beside the JSON records. Here each
    becomes one record, its text escaped in `message` and `exception`.
    """
    logging.captureWarnings(True)
    sys.excepthook = _uncaught
    threading.excepthook = _uncaught_in_thread
    sys.unraisablehook = _unraisable


# -- client addresses -----------------------------------------------------------------


def address_key(index_key: bytes) -> bytes:
    """The key of `keyed` addresses: derived from the index key, used for nothing else."""
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"confide log client address").derive(
        index_key
    )


def client_address(mode: AddressMode, key: bytes | None, host: str | None) -> str | None:
    """What the log shows of a client address: nothing, its network, or a keyed hash."""
    if mode == "off" or not host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if mode == "truncated":
        prefix = 24 if address.version == 4 else 48
        return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
    assert key is not None
    return hmac.new(key, str(address).encode(), hashlib.sha256).hexdigest()[:16]


class ClientAddresses:
    """The address setting with its key: `field(scope["client"])` for a log line."""

    def __init__(self, mode: AddressMode, index_key: bytes | None) -> None:
        self.mode = mode
        self._key = address_key(index_key) if mode == "keyed" and index_key else None
        if mode == "keyed" and self._key is None:
            raise ValueError("keyed client addresses need the index key")

    def field(self, client: Any) -> dict[str, str]:
        """`{"client": ...}` to add to a line's fields, or nothing."""
        if self.mode == "off" or not client:
            return {}
        shown = client_address(self.mode, self._key, str(client[0]))
        return {} if shown is None else {"client": shown}


class Sampler:
    """Lines of one kind: the first `first` in each `interval_s`, then none until it ends.

    An interval starts with the first line after the last one ended, so at
    most 2 x `first` lines of a kind are written in any `interval_s` seconds.

    A flood of refusals (401s for garbage tokens, refused socket handshakes)
    must not make the log the denial of service: disk, the log shipper, and
    the event loop writing each line. Past `first` lines of a kind in an
    interval, `admit` says to leave the line out and counts it; the next line
    of that kind that is written carries the count (`suppressed`), so the log
    still says how many there were. The metrics count every one.

    `time` is a clock's seconds (`Clock.time`), so the tests move it. At most
    `max_kinds` kinds are kept (the least recently seen goes first).
    """

    def __init__(
        self,
        time: Callable[[], float],
        *,
        first: int = 20,
        interval_s: float = 10.0,
        max_kinds: int = 64,
    ) -> None:
        if first < 1 or interval_s <= 0 or max_kinds < 1:
            raise ValueError("first >= 1, interval_s > 0 and max_kinds >= 1 are required")
        self._time = time
        self.first = first
        self.interval_s = interval_s
        self._max_kinds = max_kinds
        #: kind -> [interval start, lines admitted in it, lines left out not yet reported]
        self._kinds: OrderedDict[str, list[float]] = OrderedDict()

    def admit(self, kind: str) -> int | None:
        """None: leave this line out. Otherwise write it, saying that the returned
        number of lines of its kind were left out before it (usually 0)."""
        now = self._time()
        state = self._kinds.pop(kind, None)
        if state is None or not state[0] <= now < state[0] + self.interval_s:
            # A new interval (a clock that went back starts one too).
            state = [now, 0.0, state[2] if state is not None else 0.0]
        self._kinds[kind] = state
        while len(self._kinds) > self._max_kinds:
            self._kinds.popitem(last=False)
        if state[1] >= self.first:
            state[2] += 1
            return None
        state[1] += 1
        suppressed, state[2] = int(state[2]), 0.0
        return suppressed

    def pending(self, kind: str) -> int:
        """Lines of `kind` left out and not yet reported by a written line."""
        state = self._kinds.get(kind)
        return int(state[2]) if state is not None else 0
