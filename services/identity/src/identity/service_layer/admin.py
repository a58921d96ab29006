"""Organisation administration: organisations and their settings, invitations, roles, password reset."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from identity.adapters.admin_tables import InvitationRow, PasswordResetRow
from identity.adapters.mail import Mailer, MailMessage, deliver
from identity.adapters.tables import OrganizationRow, SessionRow, UserRow
from identity.domain.errors import IdentityError, NotAllowed, PolicyViolation
from identity.domain.passwords import PasswordPolicy
from identity.domain.sessions import new_opaque_token, token_digest
from identity.service_layer import handlers
from identity.service_layer.handlers import Dependencies, aware
from identity.service_layer.unit_of_work import IdentityUnitOfWork
from radcommon.contracts import (
    OrganizationCreatedV1,
    RoleValues,
    SessionEndReasonValues,
    UserInvitedV1,
    UserRegisteredV1,
    UserRoleChangedV1,
)

ORGANIZATION_ROLES = (RoleValues.ADMIN, RoleValues.MANAGER, RoleValues.RADIOLOGIST, RoleValues.TECHNICIAN,
                      RoleValues.VIEWER)
#: Inclusive bounds of each organisation setting; the HTTP models declare the same.
IDLE_TIMEOUT_MINUTES = (5, 720)
MAX_CONCURRENT_SESSIONS = (1, 100)
PASSWORD_MIN_LENGTH = (8, 128)


class NotFound(IdentityError):
    """Absent, or in another organisation: the caller cannot tell which."""


class AlreadyExists(IdentityError):
    pass


class InvalidToken(IdentityError):
    """An invitation or reset link that is unknown, used or expired."""


class LastAdmin(IdentityError):
    pass


@dataclass(frozen=True)
class Actor:
    user_id: UUID
    session_id: UUID


@dataclass(frozen=True)
class OrganizationChange:
    """New values for an organisation; None leaves a value as it is."""

    name: str | None = None
    require_2fa_roles: Sequence[RoleValues] | None = None
    idle_timeout_minutes: int | None = None
    max_concurrent_sessions: int | None = None
    password_min_length: int | None = None

    def __post_init__(self) -> None:
        for name, (low, high) in (("idle_timeout_minutes", IDLE_TIMEOUT_MINUTES),
                                  ("max_concurrent_sessions", MAX_CONCURRENT_SESSIONS),
                                  ("password_min_length", PASSWORD_MIN_LENGTH)):
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                raise ValueError(f"{name} must be between {low} and {high}")
        if self.name is not None and not self.name.strip():
            raise ValueError("name must not be blank")

    def apply_to(self, organization: OrganizationRow) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None:
                continue
            if item.name == "require_2fa_roles":
                value = sorted({RoleValues(r).value for r in value})
            setattr(organization, item.name, value.strip() if isinstance(value, str) else value)


@dataclass
class Administration:
    deps: Dependencies
    mailer: Mailer
    public_url: str
    invitation_lifetime: timedelta = timedelta(hours=72)
    reset_lifetime: timedelta = timedelta(minutes=30)
    #: Further reset requests for one account within this interval send no mail (no mail-bombing).
    reset_request_interval: timedelta = timedelta(minutes=1)
    pending: set[asyncio.Task[bool]] = field(default_factory=set)

    def link(self, page: str, token: str) -> str:
        # In the fragment, which browsers never send: the token stays out of server logs and Referer headers.
        return f"{self.public_url.rstrip('/')}/{page}#token={token}"

    def deliver_later(self, message: MailMessage) -> None:
        task = asyncio.create_task(deliver(self.mailer, message))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def drain(self) -> None:
        await asyncio.gather(*self.pending)


@dataclass(frozen=True)
class InvitationSent:
    invitation: InvitationRow
    mail_sent: bool


def normalised_email(email: str) -> str:
    return email.strip().lower()


async def _acting(uow: IdentityUnitOfWork, actor: Actor, now: datetime, *roles: RoleValues) -> UserRow:
    """The actor as the database knows them now: a demoted admin's unexpired token no longer counts."""
    _, user, _ = await handlers.active_session(uow, actor.session_id, now)
    if user.id != actor.user_id or not user.active or not set(user.roles) & {r.value for r in roles}:
        raise NotAllowed(f"requires one of the roles: {', '.join(sorted(roles))}")
    return user


async def _user_by_email(uow: IdentityUnitOfWork, email: str) -> UserRow | None:
    return (await uow.session.execute(select(UserRow).where(UserRow.email == email))).scalar_one_or_none()


async def _flush_unique(uow: IdentityUnitOfWork, what: str) -> None:
    try:
        await uow.session.flush()
    except IntegrityError:
        raise AlreadyExists(f"{what} already exists") from None


def _check_password(organization: OrganizationRow, password: str, email: str) -> None:
    violations = PasswordPolicy(min_length=organization.password_min_length).violations(password, email)
    if violations:
        raise PolicyViolation(violations)


async def create_organization_by_operator(uow: IdentityUnitOfWork, admin: Administration, *, actor: Actor,
                                          name: str, slug: str, admin_email: str, settings: OrganizationChange,
                                          now: datetime) -> tuple[OrganizationRow, InvitationSent]:
    """A new organisation and an invitation for its first admin."""
    operator = await _acting(uow, actor, now, RoleValues.OPERATOR)
    if (await uow.session.execute(select(OrganizationRow).where(OrganizationRow.slug == slug))).first():
        raise AlreadyExists(f"an organisation with the slug {slug!r} already exists")
    organization = OrganizationRow(name=name.strip(), slug=slug, created_at=now)
    settings.apply_to(organization)
    uow.session.add(organization)
    await _flush_unique(uow, "an organisation with this slug")
    uow.publish(OrganizationCreatedV1(organization_id=organization.id, name=organization.name))
    invitation, token = await _invite(uow, admin, organization, admin_email, RoleValues.ADMIN, operator, now)
    await uow.commit()
    sent = await deliver(admin.mailer, _invitation_mail(admin, organization, invitation, operator, token))
    return organization, InvitationSent(invitation, sent)


async def update_organization_settings(uow: IdentityUnitOfWork, admin: Administration, *, actor: Actor,
                                       organization_id: UUID, change: OrganizationChange,
                                       now: datetime) -> OrganizationRow:
    user = await _acting(uow, actor, now, RoleValues.ADMIN, RoleValues.OPERATOR)
    if RoleValues.OPERATOR not in user.roles and user.organization_id != organization_id:
        raise NotFound("no such organisation")
    organization = await uow.session.get(OrganizationRow, organization_id, with_for_update=True)
    if organization is None:
        raise NotFound("no such organisation")
    change.apply_to(organization)
    await uow.commit()
    return organization


async def invite_user(uow: IdentityUnitOfWork, admin: Administration, *, actor: Actor, email: str,
                      role: RoleValues, now: datetime) -> InvitationSent:
    """Invite someone into the admin's organisation; an earlier pending invitation of that address is replaced."""
    inviter = await _acting(uow, actor, now, RoleValues.ADMIN)
    organization = await uow.session.get(OrganizationRow, inviter.organization_id)
    assert organization is not None
    invitation, token = await _invite(uow, admin, organization, email, role, inviter, now)
    await uow.commit()
    sent = await deliver(admin.mailer, _invitation_mail(admin, organization, invitation, inviter, token))
    return InvitationSent(invitation, sent)


async def _invite(uow: IdentityUnitOfWork, admin: Administration, organization: OrganizationRow, email: str,
                  role: RoleValues, inviter: UserRow, now: datetime) -> tuple[InvitationRow, str]:
    email = normalised_email(email)
    if role not in ORGANIZATION_ROLES:
        raise NotAllowed(f"an organisation can invite only as one of: {', '.join(ORGANIZATION_ROLES)}")
    if await _user_by_email(uow, email) is not None:
        raise AlreadyExists(f"a user with the e-mail address {email} already exists")
    await uow.session.execute(sa.delete(InvitationRow).where(
        col(InvitationRow.organization_id) == organization.id, col(InvitationRow.email) == email,
        col(InvitationRow.accepted_at).is_(None)))
    token = new_opaque_token()
    invitation = InvitationRow(digest=token_digest(token), organization_id=organization.id, email=email,
                               role=role.value, invited_by=inviter.id, created_at=now,
                               expires_at=now + admin.invitation_lifetime)
    uow.session.add(invitation)
    await uow.session.flush()
    uow.publish(UserInvitedV1(organization_id=organization.id, invitation_id=invitation.id, email=email, role=role,
                              invited_by=inviter.id, expires_at=invitation.expires_at))
    return invitation, token


def _invitation_mail(admin: Administration, organization: OrganizationRow, invitation: InvitationRow,
                     inviter: UserRow, token: str) -> MailMessage:
    link = admin.link("accept-invitation", token)
    body = (f"{inviter.full_name or 'An administrator'} has invited you to join {organization.name} on Telerad "
            f"as {invitation.role}.\n\nTo accept, open this link and choose your password:\n\n{link}\n\n"
            f"The link works once and expires at {aware(invitation.expires_at):%Y-%m-%d %H:%M} UTC.\n"
            "If you did not expect this invitation, ignore this message.\n")
    return MailMessage(to=invitation.email, subject=f"Your invitation to {organization.name} on Telerad",
                       body=body, link=link)


async def accept_invitation(uow: IdentityUnitOfWork, admin: Administration, *, token: str, full_name: str,
                            password: str, now: datetime) -> UserRow:
    invitation = (await uow.session.execute(select(InvitationRow).where(
        InvitationRow.digest == token_digest(token)).with_for_update())).scalar_one_or_none()
    if invitation is None or invitation.accepted_at is not None:
        raise InvalidToken("this invitation link is not valid, or has been used already")
    if aware(invitation.expires_at) <= now:
        raise InvalidToken("this invitation has expired; ask your administrator to invite you again")
    if await _user_by_email(uow, invitation.email) is not None:
        raise AlreadyExists(f"a user with the e-mail address {invitation.email} already exists")
    organization = await uow.session.get(OrganizationRow, invitation.organization_id)
    assert organization is not None
    _check_password(organization, password, invitation.email)
    user = UserRow(organization_id=organization.id, email=invitation.email, full_name=full_name.strip(),
                   password_hash=admin.deps.hasher.hash(password), roles=[invitation.role], created_at=now)
    uow.session.add(user)
    await _flush_unique(uow, "a user with this e-mail address")
    invitation.accepted_at, invitation.user_id = now, user.id
    uow.publish(UserRegisteredV1(organization_id=organization.id, user_id=user.id, email=user.email,
                                 full_name=user.full_name, roles=[RoleValues(invitation.role)]))
    await uow.commit()
    return user


async def change_roles(uow: IdentityUnitOfWork, admin: Administration, *, actor: Actor, user_id: UUID,
                       roles: Sequence[RoleValues], now: datetime) -> UserRow:
    """Set a user's roles and end their sessions, so that no token with the old roles outlives the change."""
    changer = await _acting(uow, actor, now, RoleValues.ADMIN)
    if not roles or any(r not in ORGANIZATION_ROLES for r in roles):
        raise NotAllowed(f"roles must be one or more of: {', '.join(ORGANIZATION_ROLES)}")
    # Locking the organisation serialises its role changes: two admins cannot demote each other at once.
    await uow.session.get(OrganizationRow, changer.organization_id, with_for_update=True)
    user = await uow.session.get(UserRow, user_id, with_for_update=True)
    if user is None or user.organization_id != changer.organization_id:
        raise NotFound("no such user")
    if RoleValues.OPERATOR in user.roles:
        raise NotAllowed("a platform operator's roles are not managed by an organisation")
    previous = [RoleValues(r) for r in user.roles]
    wanted = [r for r in ORGANIZATION_ROLES if r in set(roles)]
    if set(previous) == set(wanted):
        return user
    if RoleValues.ADMIN in previous and RoleValues.ADMIN not in wanted and not await _other_admins(uow, user):
        raise LastAdmin("an organisation keeps at least one admin: make someone else admin first")
    user.roles = [r.value for r in wanted]
    uow.publish(UserRoleChangedV1(organization_id=user.organization_id, user_id=user.id, roles=wanted,
                                  previous_roles=previous, changed_by=changer.id))
    await _end_sessions(uow, admin, user, now)
    await uow.commit()
    return user


async def _other_admins(uow: IdentityUnitOfWork, user: UserRow) -> bool:
    others = (await uow.session.execute(select(UserRow).where(
        UserRow.organization_id == user.organization_id, UserRow.id != user.id, col(UserRow.active)))).scalars()
    return any(RoleValues.ADMIN in other.roles for other in others)


async def _end_sessions(uow: IdentityUnitOfWork, admin: Administration, user: UserRow, now: datetime) -> None:
    for session in (await uow.session.execute(select(SessionRow).where(
            SessionRow.user_id == user.id, col(SessionRow.ended_at).is_(None)))).scalars():
        handlers._end(uow, admin.deps, session, SessionEndReasonValues.REVOKED, now)


async def list_users(uow: IdentityUnitOfWork, admin: Administration, *, actor: Actor, limit: int, offset: int,
                     now: datetime) -> tuple[list[UserRow], int]:
    viewer = await _acting(uow, actor, now, RoleValues.ADMIN, RoleValues.MANAGER)
    mine = UserRow.organization_id == viewer.organization_id
    total = (await uow.session.execute(select(sa.func.count()).select_from(UserRow).where(mine))).scalar_one()
    users = (await uow.session.execute(select(UserRow).where(mine).order_by(col(UserRow.email))
                                       .offset(offset).limit(limit))).scalars()
    return list(users), total


async def request_password_reset(uow: IdentityUnitOfWork, admin: Administration, *, email: str,
                                 now: datetime) -> None:
    """Mail a reset link if the account exists. The caller learns nothing either way, not even from the time
    taken: the mail goes out in the background."""
    user = await _user_by_email(uow, normalised_email(email))
    if user is None or not user.active:
        return
    pending = list((await uow.session.execute(select(PasswordResetRow).where(
        PasswordResetRow.user_id == user.id, col(PasswordResetRow.used_at).is_(None)))).scalars())
    if any(aware(p.created_at) + admin.reset_request_interval > now for p in pending):
        return
    for old in pending:  # only the newest link works
        await uow.session.delete(old)
    token = new_opaque_token()
    reset = PasswordResetRow(digest=token_digest(token), user_id=user.id, organization_id=user.organization_id,
                             created_at=now, expires_at=now + admin.reset_lifetime)
    uow.session.add(reset)
    await uow.commit()
    link = admin.link("reset-password", token)
    minutes = int(admin.reset_lifetime.total_seconds() // 60)
    body = (f"Someone, probably you, asked to reset the password of your Telerad account {user.email}.\n\n"
            f"To choose a new password, open this link within {minutes} minutes:\n\n{link}\n\n"
            "The link works once. If you did not ask for this, ignore this message: your password stays as it "
            "is.\n")
    admin.deliver_later(MailMessage(to=user.email, subject="Reset your Telerad password", body=body, link=link))


async def confirm_password_reset(uow: IdentityUnitOfWork, admin: Administration, *, token: str, password: str,
                                 now: datetime) -> None:
    """Set the new password, end every session of the account and clear its failed sign-ins."""
    reset = (await uow.session.execute(select(PasswordResetRow).where(
        PasswordResetRow.digest == token_digest(token)).with_for_update())).scalar_one_or_none()
    if reset is None or reset.used_at is not None:
        raise InvalidToken("this password reset link is not valid, or has been used already")
    if aware(reset.expires_at) <= now:
        raise InvalidToken("this password reset link has expired; ask for a new one")
    user = await uow.session.get(UserRow, reset.user_id, with_for_update=True)
    assert user is not None
    if not user.active:
        raise InvalidToken("this password reset link is not valid, or has been used already")
    organization = await uow.session.get(OrganizationRow, user.organization_id)
    assert organization is not None
    _check_password(organization, password, user.email)
    user.password_hash = admin.deps.hasher.hash(password)
    user.failed_logins, user.last_failed_at = 0, None
    reset.used_at = now
    await _end_sessions(uow, admin, user, now)
    await uow.commit()
