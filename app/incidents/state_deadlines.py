"""Breach notification clocks: HIPAA's, and the states' that are shorter.

HIPAA gives a covered entity at most 60 days from discovery to notify the
people affected (45 CFR 164.404(b)). Some states give fewer days to notify
their residents. An incident's `notify_by` is its discovery plus the
shortest deadline among HIPAA's and the entry of every jurisdiction of an
affected account (`shortest`).

NOT LEGAL ADVICE. The default table below lists only statutes whose
deadline for notifying residents is stated in days, as we read them; many
carry exemptions (for entities that follow HIPAA, for instance) and other
conditions not modelled here. Check with counsel, and override or extend the
table with `CONFIDE_BREACH_DEADLINES_FILE`: a JSON array of
`{"jurisdiction": "US-CO", "days": 30, "source": "C.R.S. 6-1-716(2)"}`;
an entry of the file replaces the default of the same jurisdiction, others
are added. A file that cannot be read or does not match stops the server
with one line naming the setting.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from app.accounts.jurisdiction import PATTERN as JURISDICTION_PATTERN

SETTING = "CONFIDE_BREACH_DEADLINES_FILE"
MAX_DAYS = 365


@dataclass(frozen=True)
class Deadline:
    """A notification deadline: days from discovery, the jurisdiction whose law sets it
    (None: HIPAA's, which applies to every incident), and its citation."""

    jurisdiction: str | None
    days: int
    source: str


HIPAA = Deadline(None, 60, "45 CFR 164.404(b)")

#: The shipped table (not legal advice: check with counsel).
DEFAULTS: tuple[Deadline, ...] = (
    Deadline("US-AL", 45, "Ala. Code 8-38-5(b)"),
    Deadline("US-AZ", 45, "Ariz. Rev. Stat. 18-552(B)"),
    Deadline("US-CO", 30, "Colo. Rev. Stat. 6-1-716(2)"),
    Deadline("US-FL", 30, "Fla. Stat. 501.171(4)(a)"),
    Deadline("US-ME", 30, "Me. Rev. Stat. tit. 10, 1348(1)"),
    Deadline("US-NM", 45, "N.M. Stat. 57-12C-6(A)"),
    Deadline("US-OH", 45, "Ohio Rev. Code 1349.19(B)(2)"),
    Deadline("US-RI", 45, "R.I. Gen. Laws 11-49.3-4(a)(2)"),
    Deadline("US-TN", 45, "Tenn. Code 47-18-2107(b)"),
    Deadline("US-VT", 45, "Vt. Stat. tit. 9, 2435(b)(1)"),
    Deadline("US-WA", 30, "Rev. Code Wash. 19.255.010(8)"),
    Deadline("US-WI", 45, "Wis. Stat. 134.98(3)(a)"),
)


class DeadlineFileError(ValueError):
    """The practice's deadline file cannot be used; the message is one line."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    jurisdiction: Annotated[str, StringConstraints(pattern=JURISDICTION_PATTERN)]
    days: int = Field(ge=1, le=MAX_DAYS)
    source: Annotated[str, StringConstraints(min_length=1, max_length=500)]


_FILE = TypeAdapter(list[_Entry])


def table(entries: Iterable[Deadline]) -> dict[str, Deadline]:
    return {entry.jurisdiction: entry for entry in entries if entry.jurisdiction is not None}


def parse(text: str, *, defaults: Iterable[Deadline] = DEFAULTS) -> dict[str, Deadline]:
    """The defaults with a deadline file's entries over them; `DeadlineFileError` if it is bad."""
    try:
        entries = _FILE.validate_python(json.loads(text))
    except json.JSONDecodeError as error:
        raise DeadlineFileError(f"not JSON: {error.msg} at line {error.lineno}") from None
    except ValidationError as error:
        first = error.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise DeadlineFileError(f"{where}: {first['msg']}") from None
    seen: set[str] = set()
    for entry in entries:
        if entry.jurisdiction in seen:
            raise DeadlineFileError(f"{entry.jurisdiction} is listed twice")
        seen.add(entry.jurisdiction)
    merged = table(defaults)
    merged.update({e.jurisdiction: Deadline(e.jurisdiction, e.days, e.source) for e in entries})
    return merged


@functools.lru_cache(maxsize=8)
def load(path: Path | None) -> Mapping[str, Deadline]:
    """The table in force: the defaults, with the file at `path` over them if it is set."""
    if path is None:
        return table(DEFAULTS)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        why = getattr(error, "strerror", None) or type(error).__name__
        raise DeadlineFileError(f"{SETTING}: cannot read {path}: {why}") from None
    try:
        return parse(text)
    except DeadlineFileError as error:
        raise DeadlineFileError(f"{SETTING}: {path}: {error}") from None


def shortest(jurisdictions: Iterable[str], deadlines: Mapping[str, Deadline]) -> Deadline:
    """The deadline that controls: the fewest days among HIPAA's and each jurisdiction's entry.

    A jurisdiction without an entry adds nothing. Of equal days HIPAA's is named,
    then the first jurisdiction in code order, so the answer does not depend on
    the order of the affected accounts.
    """
    controlling = HIPAA
    for code in sorted(set(jurisdictions)):
        entry = deadlines.get(code)
        if entry is not None and entry.days < controlling.days:
            controlling = entry
    return controlling


def notify_by(discovered_at: datetime, deadline: Deadline) -> datetime:
    return discovered_at + timedelta(days=deadline.days)
