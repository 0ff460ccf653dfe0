"""A webhook receiver, run as its own process: `python receiver.py PORT SECRET LOG`.

It checks every request with the Standard Webhooks algorithm, written here
from the specification and not taken from the server's code: the secret is
`whsec_` + base64; the signed content is `{webhook-id}.{webhook-timestamp}.{body}`;
`webhook-signature` holds space-separated `v1,<base64 HMAC-SHA256>`; the timestamp
must be within five minutes. Each request becomes one JSON line in LOG
({path, id, timestamp, valid, body}); a valid one to /hook is answered 204,
one to /redirect 307 (to /hook), one to /slow 204 after two seconds, one to
/fail 500, anything else 401.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_S = 300


def verified(secret: str, headers: dict[str, str], body: bytes) -> bool:
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit() or abs(time.time() - int(stamp)) > TOLERANCE_S:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = msg_id.encode() + b"." + stamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    for signature in headers.get("webhook-signature", "").split():
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


def main() -> None:
    port, secret, log_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            ok = verified(secret, headers, body)
            line = {
                "path": self.path,
                "id": headers.get("webhook-id"),
                "timestamp": headers.get("webhook-timestamp"),
                "valid": ok,
                "body": body.decode(),
            }
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps(line) + "\n")
            if not ok:
                self.send_response(401)
            elif self.path == "/redirect":
                self.send_response(307)
                self.send_header("location", "/hook")
            elif self.path == "/slow":
                time.sleep(2)
                self.send_response(204)
            elif self.path == "/fail":
                self.send_response(500)
            else:
                self.send_response(204 if self.path == "/hook" else 401)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
