"""Summaries of a py-spy profile (`py-spy record --format raw`: collapsed stacks).

Each line of the raw format is `frame;frame;...;frame COUNT`, outermost
first, a frame being `function (file:line)`. Self time is the innermost
frame's; inclusive ("total") time counts each function once per stack.
Functions are named `function (file)` with the path shortened to what follows
`site-packages/` or the project root, and line numbers dropped.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


@dataclass(frozen=True)
class Entry:
    function: str
    self_pct: float
    total_pct: float


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3":
                path = "stdlib" + path[path.find("/") :]
            break
    else:
        for root in ("/app/", "/bench/"):
            if root in path:
                path = root.strip("/") + "/" + path.split(root, 1)[1]
                break
    return f"{match.group('func')} ({path})"


def summarize(text: str, top: int = 20) -> tuple[int, list[Entry], list[Entry]]:
    """(samples, top by self time, top by total time)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        names = [_name(f) for f in stack.split(";") if f]
        if not names:
            continue
        own[names[-1]] += count
        for name in set(names):
            total[name] += count
    if samples == 0:
        return 0, [], []

    def entries(counter: Counter[str]) -> list[Entry]:
        return [
            Entry(name, 100.0 * own[name] / samples, 100.0 * total[name] / samples)
            for name, _ in counter.most_common(top)
        ]

    return samples, entries(own), entries(total)


def summarize_file(path: Path, top: int = 20) -> tuple[int, list[Entry], list[Entry]]:
    return summarize(path.read_text(errors="replace"), top)


def as_markdown(samples: int, by_self: list[Entry], by_total: list[Entry]) -> str:
    lines = [f"{samples} samples (on-CPU only).", "", "Top by self time:", ""]
    lines += ["| self % | total % | function |", "|---:|---:|---|"]
    lines += [f"| {e.self_pct:.1f} | {e.total_pct:.1f} | `{e.function}` |" for e in by_self]
    lines += ["", "Top by total (inclusive) time:", ""]
    lines += ["| total % | self % | function |", "|---:|---:|---|"]
    lines += [f"| {e.total_pct:.1f} | {e.self_pct:.1f} | `{e.function}` |" for e in by_total]
    return "\n".join(lines)
