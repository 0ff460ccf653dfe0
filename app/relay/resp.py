"""RESP, the Redis protocol: commands as bytes, replies read by `hiredis`.

A command is an array of bulk strings (`*<n>\\r\\n` then `$<len>\\r\\n<bytes>\\r\\n`
for each argument); str is sent as UTF-8, int and float as their decimal
text. Replies are read by `hiredis.Reader` (C): bulk strings decoded as UTF-8,
error replies returned as `hiredis.ReplyError` values (never raised), and a
stream that is not RESP raises `hiredis.ProtocolError`.
"""

from __future__ import annotations

from collections.abc import Iterable

import hiredis

#: An argument of a command.
Arg = str | bytes | int | float


def encode(args: Iterable[Arg]) -> bytes:
    """One command as RESP: an array of bulk strings."""
    parts: list[bytes] = []
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bool):
            raise TypeError("a Redis argument cannot be a bool")
        elif isinstance(arg, int):
            data = b"%d" % arg
        elif isinstance(arg, float):
            data = repr(arg).encode()
        else:
            raise TypeError(f"a Redis argument cannot be a {type(arg).__name__}")
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"*%d\r\n%b" % (len(parts), b"".join(parts))


def reader(*, lenient: bool = False) -> hiredis.Reader:
    """A reply parser: UTF-8 text; `lenient` replaces bytes that are not UTF-8."""
    return hiredis.Reader(encoding="utf-8", errors="replace" if lenient else "strict")
