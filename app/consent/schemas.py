from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from app.core import examples
from app.core.schemas import Clean, RequestModel, ResponseModel, with_example
from app.models import ConsentKind

LOCALE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"
LOCALE_MAX = 35
TITLE_MAX = 200
BODY_MAX = 100_000

_LOCALE = re.compile(LOCALE_PATTERN)


def canonical_locale(value: str) -> str:
    """The RFC 5646 §2.1.1 case of a tag: `de-ch` → `de-CH`, `zh-hant` → `zh-Hant`.

    Tags that differ only in case are the same tag: they are stored and looked
    up in one spelling.
    """
    if len(value) > LOCALE_MAX or not _LOCALE.fullmatch(value):
        raise ValueError("must be a language tag such as en, de or de-CH")
    language, *subtags = value.split("-")
    out = [language]
    for subtag in subtags:
        if len(subtag) == 2 and subtag.isalpha():
            out.append(subtag.upper())
        elif len(subtag) == 4 and subtag.isalpha():
            out.append(subtag.title())
        else:
            out.append(subtag.lower())
    return "-".join(out)


Locale = Annotated[
    str,
    StringConstraints(max_length=LOCALE_MAX, pattern=LOCALE_PATTERN),
    AfterValidator(canonical_locale),
]
Title = Annotated[str, StringConstraints(min_length=1, max_length=TITLE_MAX), Clean]
Body = Annotated[str, StringConstraints(min_length=1, max_length=BODY_MAX), Clean]

SHA256_DESCRIPTION = (
    "Lowercase hex SHA-256 of the document's `body` encoded as UTF-8: what the "
    "client shows is what was accepted."
)


class PublishDocument(RequestModel):
    kind: ConsentKind = Field(strict=False, examples=["informed_consent"])
    locale: Locale = Field(
        description="BCP 47 language tag (language, then optional subtags), at most 35 characters.",
        examples=["en"],
    )
    title: Title = Field(examples=["Informed consent"])
    body: Body = Field(
        description=f"The full text, at most {BODY_MAX} characters.",
        examples=["What you tell your counselor stays confidential, except …"],
    )


class DocumentOut(ResponseModel):
    model_config = with_example(
        {
            "id": "c4e1f2a3-b5d6-4e7f-8a9b-0c1d2e3f4a5b",
            "kind": "telehealth",
            "locale": "en",
            "version": 3,
            "title": "Sessions online",
            "body": "Sessions take place over the internet. ...",
            "sha256": examples.HASH_1,
            "published_at": "2026-10-01T09:00:00Z",
        }
    )

    id: str
    kind: ConsentKind
    locale: str
    version: int = Field(description="1 for the first text of a kind and locale, then +1 each.")
    title: str
    body: str
    sha256: str = Field(description=SHA256_DESCRIPTION)
    published_at: datetime


class AcceptConsent(RequestModel):
    document_id: uuid.UUID = Field(strict=False, examples=["0b6f8f5e-6c55-4b8e-9a5e-2f1f5c0e8a11"])


class AcceptanceOut(ResponseModel):
    model_config = with_example(
        {
            "document_id": "c4e1f2a3-b5d6-4e7f-8a9b-0c1d2e3f4a5b",
            "sha256": examples.HASH_1,
            "accepted_at": "2026-11-01T10:10:00Z",
        }
    )

    document_id: str
    sha256: str = Field(description=SHA256_DESCRIPTION)
    accepted_at: datetime
