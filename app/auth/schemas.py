from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from app.core import examples
from app.core.schemas import Clean, RequestModel, ResponseModel, with_example


class TokenPair(ResponseModel):
    model_config = with_example(
        {
            "access_token": examples.JWS,
            "token_type": "bearer",
            "expires_in": 900,
            "refresh_token": "rt_9Jc2m0Q7ZpV4yq8Lw1sXbA3nE5tH6kR",
        }
    )

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the access token expires")
    refresh_token: str


class RefreshRequest(RequestModel):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=256), Clean]
