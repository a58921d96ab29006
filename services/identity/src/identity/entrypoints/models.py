from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

EMAIL = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
SECRET = Field(min_length=1, max_length=256)
CODE = Field(default=None, min_length=6, max_length=16)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(Strict):
    email: str = EMAIL
    password: str = SECRET
    totp: str | None = CODE
    backup_code: str | None = Field(default=None, min_length=8, max_length=32)


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    expires_in: int
    #: The organisation requires a second factor this user has not enrolled: the tokens carry no role
    #: and serve only to enrol (POST /api/auth/2fa/enrol, /2fa/verify); then sign in again with a code.
    two_factor_enrolment_required: bool = False
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme name, not a secret


class RefreshRequest(Strict):
    refresh_token: str = Field(min_length=16, max_length=128)


class AccessTokenResponse(BaseModel):
    access_token: str
    expires_in: int
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme name, not a secret
    idle_expires_at: datetime


class SessionStatusResponse(BaseModel):
    session_id: UUID
    user_id: UUID
    organization_id: UUID
    email: str
    roles: list[str]
    amr: list[str]
    started_at: datetime
    last_seen_at: datetime
    idle_expires_at: datetime
    absolute_expires_at: datetime
    totp_enabled: bool


class StepUpRequest(Strict):
    password: str = SECRET
    totp: str = Field(min_length=6, max_length=10)


class StepUpResponse(BaseModel):
    step_up_token: str
    expires_in: int
    purpose: Literal["sign"] = "sign"
    amr: list[str]


class TotpEnrolmentResponse(BaseModel):
    otpauth_uri: str
    secret: str
    qr_png_base64: str


class TotpConfirmRequest(Strict):
    code: str = Field(min_length=6, max_length=10)


class BackupCodesResponse(BaseModel):
    backup_codes: list[str]


class KeyRotationResponse(BaseModel):
    kid: str
