"""The floor: a bare `websockets` asyncio relay speaking the room socket's frames.

What a Python relay cannot do with less work: accept the socket (subprotocol
`confide.v1`), send `welcome`, and for each `send` frame take the room's
next `seq`, write `message` to every other member of the room with
`websockets.broadcast` and `ack` to the sender. `ping` gets `pong`.

No authentication (the `bearer.<x>` subprotocol is read as the device id),
no storage, no validation beyond "a JSON object with type send and string
id and ciphertext", no limits, no presence, no back-pressure: everything the
real relay does beyond this is what the benchmark prices.

Same event loop as `confide serve` (uvloop when installed, as uvicorn picks
it), no compression (the server disables permessage-deflate too), the same
frame size limit and ping interval.

    python -m bench.baseline --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
from dataclasses import dataclass, field
from datetime import UTC, datetime

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

SUBPROTOCOL = "confide.v1"
_PATH = re.compile(r"^/v1/rooms/([^/]+)/ws$")


@dataclass
class Room:
    seq: int = 0
    members: dict[str, ServerConnection] = field(default_factory=dict)


rooms: dict[str, Room] = {}


def _device(ws: ServerConnection) -> str | None:
    assert ws.request is not None
    for header in ws.request.headers.get_all("Sec-WebSocket-Protocol"):
        for entry in header.split(","):
            entry = entry.strip()
            if entry.startswith("bearer."):
                return entry[len("bearer.") :]
    return None


async def handler(ws: ServerConnection) -> None:
    assert ws.request is not None
    match = _PATH.match(ws.request.path.split("?", 1)[0])
    device = _device(ws)
    if match is None or device is None:
        await ws.close(4001, "token_invalid")
        return
    room_id = match.group(1)
    room = rooms.setdefault(room_id, Room())
    room.members[device] = ws
    sender = {"account_id": device, "device_id": device}
    welcome: dict[str, object] = {
        "type": "welcome",
        "room": room_id,
        "you": {"account_id": device, "device_id": device, "role": "participant"},
        "state": "admitted",
        "seq": room.seq,
        "participants": [],
    }
    try:
        await ws.send(json.dumps(welcome, separators=(",", ":")))
        async for text in ws:
            try:
                frame = json.loads(text)
            except ValueError:
                continue
            if not isinstance(frame, dict):
                continue
            kind = frame.get("type")
            if kind == "send":
                frame_id, ciphertext = frame.get("id"), frame.get("ciphertext")
                if not isinstance(frame_id, str) or not isinstance(ciphertext, str):
                    continue
                room.seq += 1
                sent_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                fragment = json.dumps(
                    {
                        "id": frame_id,
                        "sender": sender,
                        "ciphertext": ciphertext,
                        "sent_at": sent_at,
                    },
                    separators=(",", ":"),
                )
                message = '{"type":"message","seq":' + str(room.seq) + "," + fragment[1:]
                broadcast([peer for d, peer in room.members.items() if d != device], message)
                await ws.send(
                    '{"type":"ack","id":' + json.dumps(frame_id) + ',"seq":' + str(room.seq) + "}"
                )
            elif kind == "ping":
                await ws.send('{"type":"pong"}')
    except ConnectionClosed:
        pass
    finally:
        if room.members.get(device) is ws:
            del room.members[device]
        if not room.members and rooms.get(room_id) is room:
            del rooms[room_id]


async def main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    loop.add_signal_handler(signal.SIGINT, stop.set_result, None)
    async with serve(
        handler,
        host,
        port,
        subprotocols=[Subprotocol(SUBPROTOCOL)],
        compression=None,
        max_size=256 * 1024,
        ping_interval=20,
        ping_timeout=20,
        backlog=4096,
    ):
        await stop


def run() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(args.host, args.port))
    else:
        uvloop.run(main(args.host, args.port))


if __name__ == "__main__":
    run()
