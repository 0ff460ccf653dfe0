from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from app.auth.factors import WEBAUTHN, Factor
from app.core import examples
from app.core.passwords import MAX_LENGTH
from app.core.schemas import Clean, RequestModel, ResponseModel, with_example

Code = Annotated[str, StringConstraints(min_length=1, max_length=64), Clean]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64), Clean]
ShortToken = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
#: A PublicKeyCredential as `JSON.stringify` gives it (WebAuthn Level 3 `toJSON()`).
Credential = dict[str, Any]

_FACTOR = {
    "id": "0f6c5e1a-3f5b-4b6e-9d7a-2c1e8b4a9f30",
    "kind": "totp",
    "label": "Authenticator app",
    "created_at": "2026-12-01T19:00:00Z",
    "confirmed": True,
}
_RECOVERY = [f"k7qm-2xa9-p4tr-{n}bzw" for n in "abcdefghjk"]
_CREATION_OPTIONS = {
    "rp": {"name": "Confide", "id": "confide.example.org"},
    "user": {"id": "MGY2YzVlMWE", "name": "ada@example.org", "displayName": "Ada"},
    "challenge": "q1a6JZk9dN0v1mM3hQyH2w",
    "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
    "timeout": 60000,
    "excludeCredentials": [],
    "authenticatorSelection": {"residentKey": "preferred", "userVerification": "preferred"},
    "attestation": "none",
}

_PASSKEY_HINT = (
    "the PublicKeyCredential from navigator.credentials.create()/get(), as JSON "
    "(id, rawId, type, response with base64url fields)"
)


class FactorOut(ResponseModel):
    model_config = with_example(_FACTOR)

    id: str
    kind: Literal["totp", "webauthn"]
    label: str
    created_at: datetime
    confirmed: bool


def factor_out(factor: Factor) -> FactorOut:
    return FactorOut(
        id=factor.id,
        kind="webauthn" if factor.kind == WEBAUTHN else "totp",
        label=str(factor.data.get("label", "")),
        created_at=factor.created_at,
        confirmed=factor.confirmed,
    )


class FactorList(ResponseModel):
    model_config = with_example({"factors": [_FACTOR], "recovery_codes_remaining": 10})

    factors: list[FactorOut]
    recovery_codes_remaining: int = Field(description="unused recovery codes left")


class StartTotp(RequestModel):
    label: Label | None = None


class TotpStarted(ResponseModel):
    model_config = with_example(
        {
            "id": "0f6c5e1a-3f5b-4b6e-9d7a-2c1e8b4a9f30",
            "secret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
            "provisioning_uri": "otpauth://totp/Confide:ada%40example.org?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Confide",
        }
    )

    id: str
    secret: str = Field(description="base32; shown once, for apps that cannot read the URI")
    provisioning_uri: str = Field(description="otpauth:// URI, usually shown as a QR code")


class ConfirmTotp(RequestModel):
    code: Code


class Enrolled(ResponseModel):
    model_config = with_example(
        {
            "factor": _FACTOR,
            "recovery_codes": _RECOVERY,
            "access_token": examples.JWS,
            "token_type": "bearer",
            "expires_in": 900,
        }
    )

    factor: FactorOut
    recovery_codes: list[str] | None = Field(
        default=None,
        description="ten single-use codes, only with the account's first factor; shown once",
    )
    access_token: str = Field(description="the log-in's new access token: it carries the factor")
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class CeremonyOptions(ResponseModel):
    model_config = with_example({"options": _CREATION_OPTIONS, "challenge_token": examples.JWS})

    options: dict[str, Any] = Field(
        description="PublicKeyCredentialCreationOptions or RequestOptions, as JSON"
    )
    challenge_token: str = Field(description="send back with the credential; single use")


class RegisterPasskey(RequestModel):
    credential: Credential = Field(description=_PASSKEY_HINT)
    challenge_token: ShortToken
    label: Label | None = None


class RecoveryCodes(ResponseModel):
    model_config = with_example({"recovery_codes": _RECOVERY})

    recovery_codes: list[str]


class MfaOptionsRequest(RequestModel):
    mfa_token: ShortToken


class FactorAttempt(RequestModel):
    method: Literal["totp", "recovery_code", "webauthn"]
    code: Code | None = None
    credential: Credential | None = Field(default=None, description=_PASSKEY_HINT)
    challenge_token: ShortToken | None = None


class MfaLogin(FactorAttempt):
    mfa_token: ShortToken


class StepUpRequest(RequestModel):
    method: Literal["totp", "recovery_code", "webauthn", "password"]
    code: Code | None = None
    credential: Credential | None = Field(default=None, description=_PASSKEY_HINT)
    challenge_token: ShortToken | None = None
    password: Annotated[str, StringConstraints(min_length=1, max_length=MAX_LENGTH)] | None = None


class AccessToken(ResponseModel):
    model_config = with_example(
        {"access_token": examples.JWS, "token_type": "bearer", "expires_in": 900}
    )

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
