"""Shared pieces of request and response models.

Request models forbid unknown fields and coerce nothing (strict), refuse NaN
and Infinity, and their strings refuse NUL bytes and lone surrogates, which
PostgreSQL rejects and SQLite would store: the same input must get the same
answer on both databases.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Strict


def _clean_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


Clean = AfterValidator(_clean_text)
"""Add to an `Annotated[str, ...]` request field: refuses NUL and lone surrogates."""


#: The times a request may carry, in UTC. Far from both ends of what `datetime`
#: holds (years 1 to 9999), so that the arithmetic on them (10 minutes before a
#: room's start, 60 days after a discovery) and the move to UTC never overflow.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must include a time zone")
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not EARLIEST <= in_utc < LATEST:
        raise ValueError("must lie between 1900-01-01T00:00:00Z and 9999-01-01T00:00:00Z")
    return value


# Strict models take JSON strings for times and enums: relax just those fields.
AwareDatetime = Annotated[datetime, Strict(False), AfterValidator(_aware)]


def _utc(value: datetime) -> datetime:
    # _aware has already kept the value inside the years 1900 to 9999 in UTC.
    return value.astimezone(UTC)


#: An aware time, stored and answered in UTC.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def with_example(example: dict[str, Any]) -> ConfigDict:
    """A response model's config, with `example` shown for it in the OpenAPI document.

    tests/ops/test_openapi_examples.py holds every example to its schema.
    """
    return ConfigDict(from_attributes=True, json_schema_extra={"examples": [example]})
