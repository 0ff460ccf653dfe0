from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from app.core.config import Settings
from app.core.context import Context
from app.main import prepare

RECEIVER = Path(__file__).with_name("receiver.py")
BASE_S = 10.0


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """The worker is driven by hand (`Deliverer.tick`) on the test's frozen clock."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=SecretStr(database_url),
        webhook_worker=False,
        webhook_backoff_base_s=BASE_S,
        webhook_backoff_max_s=3600,
        webhook_timeout_s=0.5,
    )


@pytest.fixture
async def system_key(ctx: Context) -> None:
    """What `confide serve` creates on its first start."""
    await prepare(ctx)


@dataclass
class Receiver:
    port: int
    log: Path

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def lines(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@contextmanager
def receiver_on(port: int, secret: str, log: Path) -> Iterator[Receiver]:
    """The receiver process (`receiver.py`) listening on `port`."""
    proc = subprocess.Popen(
        [sys.executable, str(RECEIVER), str(port), secret, str(log)], stdin=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield Receiver(port, log)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
