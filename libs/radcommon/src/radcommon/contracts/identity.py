"""Events published by identity."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime, Field

from radcommon.contracts.envelope import Event

#: The organisation of events about no known organisation (a failed login for an unknown e-mail).
PLATFORM_ORGANIZATION_ID = UUID(int=0)


class RoleValues(StrEnum):
    """What a user may do in an organisation; ``operator`` runs the platform itself."""

    ADMIN = "admin"
    MANAGER = "manager"
    RADIOLOGIST = "radiologist"
    TECHNICIAN = "technician"
    VIEWER = "viewer"
    OPERATOR = "operator"


class OrganizationCreatedV1(Event):
    """A new organisation (tenant) exists."""

    routing_key: ClassVar[str] = "identity.organization.created.v1"
    aggregate: ClassVar[str] = "organization_id"
    name: str = Field(max_length=200)


class UserInvitedV1(Event):
    """An admin invited someone by e-mail to join with a role."""

    routing_key: ClassVar[str] = "identity.user.invited.v1"
    aggregate: ClassVar[str] = "invitation_id"
    invitation_id: UUID
    email: str = Field(max_length=254)
    role: RoleValues
    invited_by: UUID
    expires_at: AwareDatetime


class UserRegisteredV1(Event):
    """A user account exists (accepted invitation, or created by seeding)."""

    routing_key: ClassVar[str] = "identity.user.registered.v1"
    aggregate: ClassVar[str] = "user_id"
    user_id: UUID
    email: str = Field(max_length=254)
    full_name: str = Field(default="", max_length=200)
    roles: list[RoleValues]


class UserRoleChangedV1(Event):
    """An admin changed a user's roles."""

    routing_key: ClassVar[str] = "identity.user.role_changed.v1"
    aggregate: ClassVar[str] = "user_id"
    user_id: UUID
    roles: list[RoleValues]
    previous_roles: list[RoleValues]
    changed_by: UUID


class SessionStartedV1(Event):
    """A user signed in."""

    routing_key: ClassVar[str] = "identity.session.started.v1"
    aggregate: ClassVar[str] = "session_id"
    session_id: UUID
    user_id: UUID
    amr: list[str]
    source_address: str = Field(default="", max_length=64)


class SessionEndReasonValues(StrEnum):
    LOGOUT = "logout"
    IDLE_TIMEOUT = "idle_timeout"
    SUPERSEDED = "superseded"  # the oldest session, ended by a newer one over the organisation's limit
    REFRESH_TOKEN_REUSE = "refresh_token_reuse"  # noqa: S105 - a reason, not a secret
    REVOKED = "revoked"


class SessionEndedV1(Event):
    """A session ended; tokens that name it must be refused everywhere until they expire."""

    routing_key: ClassVar[str] = "identity.session.ended.v1"
    aggregate: ClassVar[str] = "session_id"
    session_id: UUID
    user_id: UUID
    reason: SessionEndReasonValues
    #: After this, no token of the session is valid anyway; projections may forget it.
    tokens_expire_by: datetime


class LoginFailedV1(Event):
    """A sign-in failed (audit and security alerting)."""

    routing_key: ClassVar[str] = "identity.login.failed.v1"
    aggregate: ClassVar[str] = "email"
    email: str = Field(max_length=254)
    user_id: UUID | None = None
    reason: str = Field(max_length=64)
    source_address: str = Field(default="", max_length=64)
