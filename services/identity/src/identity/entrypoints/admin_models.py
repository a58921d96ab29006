from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from identity.entrypoints.models import EMAIL, SECRET, Strict
from identity.service_layer.admin import IDLE_TIMEOUT_MINUTES, MAX_CONCURRENT_SESSIONS, PASSWORD_MIN_LENGTH
from radcommon.contracts import RoleValues

OrganizationRole = Literal["admin", "manager", "radiologist", "technician", "viewer"]
NAME = Field(min_length=1, max_length=200)
SLUG = Field(min_length=2, max_length=64, pattern=r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
TOKEN = Field(min_length=16, max_length=128)


class OrganizationSettingsFields(Strict):
    require_2fa_roles: list[RoleValues] | None = Field(
        default=None, max_length=len(RoleValues), description="Roles that must sign in with a second factor.")
    idle_timeout_minutes: int | None = Field(default=None, ge=IDLE_TIMEOUT_MINUTES[0], le=IDLE_TIMEOUT_MINUTES[1])
    max_concurrent_sessions: int | None = Field(default=None, ge=MAX_CONCURRENT_SESSIONS[0],
                                                le=MAX_CONCURRENT_SESSIONS[1])
    password_min_length: int | None = Field(default=None, ge=PASSWORD_MIN_LENGTH[0], le=PASSWORD_MIN_LENGTH[1])


class CreateOrganizationRequest(OrganizationSettingsFields):
    name: str = NAME
    slug: str = SLUG
    admin_email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$",
                             description="Who is invited as the organisation's first admin.")


class UpdateOrganizationRequest(OrganizationSettingsFields):
    name: str | None = Field(default=None, min_length=1, max_length=200)


class OrganizationPath(BaseModel):
    organization_id: UUID


class OrganizationResponse(BaseModel):
    id: UUID
    name: str
    slug: str
    require_2fa_roles: list[str]
    idle_timeout_minutes: int
    max_concurrent_sessions: int
    password_min_length: int
    created_at: datetime


class InvitationResponse(BaseModel):
    id: UUID
    organization_id: UUID
    email: str
    role: str
    expires_at: datetime
    mail_sent: bool = Field(description="False when the mail server refused it: invite again to send a new link.")


class CreatedOrganizationResponse(BaseModel):
    organization: OrganizationResponse
    admin_invitation: InvitationResponse


class UsersQuery(BaseModel):
    limit: int = Field(default=100, ge=1, le=500)
    offset: int = Field(default=0, ge=0)


class UserResponse(BaseModel):
    id: UUID
    organization_id: UUID
    email: str
    full_name: str
    roles: list[str]
    active: bool
    totp_enabled: bool
    created_at: datetime


class UserPage(BaseModel):
    items: list[UserResponse]
    total: int


class InviteRequest(Strict):
    email: str = EMAIL
    role: OrganizationRole


class AcceptInvitationRequest(Strict):
    token: str = TOKEN
    full_name: str = NAME
    password: str = SECRET


class UserPath(BaseModel):
    user_id: UUID


class RolesRequest(Strict):
    roles: list[OrganizationRole] = Field(min_length=1, max_length=5)


class PasswordResetRequest(Strict):
    email: str = EMAIL


class PasswordResetAccepted(BaseModel):
    detail: str = "If an account with this e-mail address exists, a link to reset its password is on its way."


class PasswordResetConfirmRequest(Strict):
    token: str = TOKEN
    password: str = SECRET
