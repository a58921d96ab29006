"""Sign-in, sessions, refresh-token rotation, step-up and second factors."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlmodel import col, select

from identity.adapters.keys import STEP_UP_AUDIENCE, IssuedToken
from identity.adapters.tables import (
    AddressAttemptsRow,
    BackupCodeRow,
    OrganizationRow,
    RefreshTokenRow,
    SessionRow,
    UserRow,
)
from identity.domain import totp
from identity.domain.errors import (
    InvalidCredentials,
    InvalidRefreshToken,
    NotAllowed,
    SecondFactorRequired,
    SessionEnded,
    TooManyAttempts,
)
from identity.domain.lockout import LockoutPolicy
from identity.domain.passwords import PasswordHasher, verify_against_nothing
from identity.domain.sessions import SessionPolicy, new_opaque_token, sessions_to_end, token_digest
from identity.service_layer.keyring import KeyRing
from identity.service_layer.unit_of_work import IdentityUnitOfWork
from radcommon.contracts import (
    PLATFORM_ORGANIZATION_ID,
    LoginFailedV1,
    SessionEndedV1,
    SessionEndReasonValues,
    SessionStartedV1,
)

STEP_UP_PURPOSE = "sign"


@dataclass
class Dependencies:
    keyring: KeyRing
    box: totp.SecretBox
    hasher: PasswordHasher
    access_lifetime: timedelta
    step_up_lifetime: timedelta
    refresh_lifetime: timedelta
    account_lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    address_lockout: LockoutPolicy = field(default_factory=lambda: LockoutPolicy(free_attempts=20))


@dataclass(frozen=True)
class TokenPair:
    access: IssuedToken
    refresh_token: str
    session_id: UUID
    enrolment_required: bool = False


def _stale(policy: LockoutPolicy, last_failure_at: datetime | None, now: datetime) -> bool:
    """Failures long enough ago no longer count (a typo today after yesterday's five is not a lockout)."""
    return last_failure_at is not None and now - aware(last_failure_at) >= policy.forget_after


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def login(uow: IdentityUnitOfWork, deps: Dependencies, *, email: str, password: str, totp_code: str | None,
                backup_code: str | None, address: str, user_agent: str, now: datetime) -> TokenPair:
    email = email.strip().lower()
    attempts = await uow.session.get(AddressAttemptsRow, address)
    if attempts and not _stale(deps.address_lockout, attempts.last_failure_at, now) and \
            (until := deps.address_lockout.locked_until(attempts.failures, aware(attempts.last_failure_at))):
        if until > now:
            raise TooManyAttempts(until)
    user = (await uow.session.execute(select(UserRow).where(UserRow.email == email))).scalar_one_or_none()
    if user is None or not user.active:
        await asyncio.to_thread(verify_against_nothing, password)
        await _failed(uow, deps, None, email, "unknown_user" if user is None else "inactive", address, now)
    assert user is not None
    _refuse_if_locked(deps, user, now)
    if not await asyncio.to_thread(deps.hasher.verify, user.password_hash, password):
        await _failed(uow, deps, user, email, "bad_password", address, now)
    organization = await uow.session.get(OrganizationRow, user.organization_id)
    assert organization is not None
    amr = ["pwd"]
    needs_second_factor = user.totp_enabled or bool(set(user.roles) & set(organization.require_2fa_roles))
    if needs_second_factor and user.totp_enabled:
        if not totp_code and not backup_code:
            raise SecondFactorRequired("a TOTP code or a backup code is required")
        if not await _second_factor_ok(uow, deps, user, totp_code, backup_code, now):
            await _failed(uow, deps, user, email, "bad_second_factor", address, now)
        amr.append("otp")
    if deps.hasher.needs_rehash(user.password_hash):
        user.password_hash = await asyncio.to_thread(deps.hasher.hash, password)
    # The address keeps its count: one valid account must not clear the way for guessing at others.
    user.failed_logins, user.last_failed_at = 0, None
    pair = await _start_session(uow, deps, user, organization, amr, address, user_agent, now)
    await uow.commit()
    return pair


async def _second_factor_ok(uow: IdentityUnitOfWork, deps: Dependencies, user: UserRow, totp_code: str | None,
                            backup_code: str | None, now: datetime) -> bool:
    if totp_code and user.totp_secret_sealed:
        step = totp.accepted_step(deps.box.open(user.totp_secret_sealed), totp_code, now, user.totp_last_step)
        if step is not None:
            user.totp_last_step = step
            return True
        return False
    if backup_code:
        for code in (await uow.session.execute(select(BackupCodeRow).where(
                BackupCodeRow.user_id == user.id, col(BackupCodeRow.used_at).is_(None)))).scalars():
            if totp.backup_code_matches(backup_code, code.code_hash):
                code.used_at = now
                return True
    return False


def _refuse_if_locked(deps: Dependencies, user: UserRow, now: datetime) -> None:
    if user.last_failed_at and not _stale(deps.account_lockout, user.last_failed_at, now) and \
            (until := deps.account_lockout.locked_until(user.failed_logins, aware(user.last_failed_at))):
        if until > now:
            raise TooManyAttempts(until)


async def _failed(uow: IdentityUnitOfWork, deps: Dependencies, user: UserRow | None, email: str, reason: str,
                  address: str, now: datetime) -> None:
    """Count the failure against the account and the address, tell audit, and refuse — all committed."""
    attempts = await uow.session.get(AddressAttemptsRow, address)
    if attempts is None:
        attempts = AddressAttemptsRow(address=address, failures=0, last_failure_at=now)
        uow.session.add(attempts)
    if _stale(deps.address_lockout, attempts.last_failure_at, now):
        attempts.failures = 0
    attempts.failures += 1
    attempts.last_failure_at = now
    if user is not None:
        if _stale(deps.account_lockout, user.last_failed_at, now):
            user.failed_logins = 0
        user.failed_logins += 1
        user.last_failed_at = now
    uow.publish(LoginFailedV1(organization_id=user.organization_id if user else PLATFORM_ORGANIZATION_ID,
                              email=email[:254], user_id=user.id if user else None, reason=reason,
                              source_address=address[:64]))
    await uow.commit()
    raise InvalidCredentials("the e-mail, password or code is not right")


async def _start_session(uow: IdentityUnitOfWork, deps: Dependencies, user: UserRow, organization: OrganizationRow,
                         amr: list[str], address: str, user_agent: str, now: datetime) -> TokenPair:
    policy = session_policy(organization)
    active = list((await uow.session.execute(
        select(SessionRow).where(SessionRow.user_id == user.id, col(SessionRow.ended_at).is_(None))
        .order_by(col(SessionRow.started_at)))).scalars())
    session = SessionRow(organization_id=user.organization_id, user_id=user.id, amr=amr, source_address=address[:64],
                         user_agent=user_agent[:256], started_at=now, last_seen_at=now)
    for old in sessions_to_end([*active, session], policy):
        _end(uow, deps, old, SessionEndReasonValues.SUPERSEDED, now)
    uow.session.add(session)
    await uow.session.flush()
    uow.publish(SessionStartedV1(organization_id=user.organization_id, session_id=session.id, user_id=user.id,
                                 amr=amr, source_address=address[:64]))
    return await _tokens(uow, deps, user, session, now)


async def _tokens(uow: IdentityUnitOfWork, deps: Dependencies, user: UserRow, session: SessionRow,
                  now: datetime) -> TokenPair:
    signer = await deps.keyring.signer(uow, now)
    roles = await effective_roles(uow, user)
    access = signer.issue(user_id=user.id, organization_id=user.organization_id, roles=roles,
                          session_id=session.id, email=user.email, amr=list(session.amr), now=now,
                          lifetime=deps.access_lifetime)
    refresh = new_opaque_token()
    uow.session.add(RefreshTokenRow(digest=token_digest(refresh), session_id=session.id, issued_at=now,
                                    expires_at=now + deps.refresh_lifetime))
    return TokenPair(access, refresh, session.id, enrolment_required=not roles and bool(user.roles))


async def effective_roles(uow: IdentityUnitOfWork, user: UserRow) -> list[str]:
    """No role at all while the organisation requires a second factor the user has not enrolled yet:
    such a session can only enrol (and sign out), then sign in again with the code."""
    organization = await uow.session.get(OrganizationRow, user.organization_id)
    required = set(organization.require_2fa_roles) if organization else set()
    if not user.totp_enabled and set(user.roles) & required:
        return []
    return list(user.roles)


def session_policy(organization: OrganizationRow) -> SessionPolicy:
    return SessionPolicy(idle_timeout=timedelta(minutes=organization.idle_timeout_minutes),
                         max_concurrent=organization.max_concurrent_sessions)


def _end(uow: IdentityUnitOfWork, deps: Dependencies, session: SessionRow, reason: SessionEndReasonValues,
         now: datetime) -> None:
    if session.ended_at is not None:
        return
    session.ended_at, session.end_reason = now, reason.value
    uow.publish(SessionEndedV1(organization_id=session.organization_id, session_id=session.id,
                               user_id=session.user_id, reason=reason,
                               tokens_expire_by=now + max(deps.access_lifetime, deps.step_up_lifetime)))


async def refresh(uow: IdentityUnitOfWork, deps: Dependencies, *, refresh_token: str, now: datetime) -> TokenPair:
    row = (await uow.session.execute(select(RefreshTokenRow).where(
        RefreshTokenRow.digest == token_digest(refresh_token)).with_for_update())).scalar_one_or_none()
    if row is None:
        raise InvalidRefreshToken("unknown refresh token")
    session = await uow.session.get(SessionRow, row.session_id, with_for_update=True)
    assert session is not None
    if row.used_at is not None:
        # A token used twice: it was stolen, or a client raced itself. End the whole family.
        _end(uow, deps, session, SessionEndReasonValues.REFRESH_TOKEN_REUSE, now)
        await uow.commit()
        raise InvalidRefreshToken("refresh token already used; the session has been ended")
    if session.ended_at is not None or aware(row.expires_at) <= now:
        raise SessionEnded("the session has ended")
    user = await uow.session.get(UserRow, session.user_id)
    organization = await uow.session.get(OrganizationRow, session.organization_id)
    assert user is not None and organization is not None
    policy = session_policy(organization)
    if not user.active or policy.is_idle_expired(aware(session.last_seen_at), now) or \
            policy.is_absolutely_expired(aware(session.started_at), now):
        _end(uow, deps, session, SessionEndReasonValues.IDLE_TIMEOUT if user.active
             else SessionEndReasonValues.REVOKED, now)
        await uow.commit()
        raise SessionEnded("the session has ended")
    row.used_at = now
    session.last_seen_at = now
    pair = await _tokens(uow, deps, user, session, now)
    await uow.commit()
    return pair


async def logout(uow: IdentityUnitOfWork, deps: Dependencies, *, session_id: UUID, now: datetime) -> None:
    session = await uow.session.get(SessionRow, session_id)
    if session is not None:
        _end(uow, deps, session, SessionEndReasonValues.LOGOUT, now)
        await uow.commit()


async def active_session(uow: IdentityUnitOfWork, session_id: UUID, now: datetime
                         ) -> tuple[SessionRow, UserRow, SessionPolicy]:
    session = await uow.session.get(SessionRow, session_id)
    if session is None or session.ended_at is not None:
        raise SessionEnded("the session has ended")
    user = await uow.session.get(UserRow, session.user_id)
    organization = await uow.session.get(OrganizationRow, session.organization_id)
    assert user is not None and organization is not None
    policy = session_policy(organization)
    if policy.is_idle_expired(aware(session.last_seen_at), now):
        raise SessionEnded("the session has ended")
    return session, user, policy


async def extend_session(uow: IdentityUnitOfWork, deps: Dependencies, *, session_id: UUID,
                         now: datetime) -> tuple[IssuedToken, datetime]:
    session, user, policy = await active_session(uow, session_id, now)
    session.last_seen_at = now
    signer = await deps.keyring.signer(uow, now)
    access = signer.issue(user_id=user.id, organization_id=user.organization_id,
                          roles=await effective_roles(uow, user), session_id=session.id, email=user.email,
                          amr=list(session.amr), now=now, lifetime=deps.access_lifetime)
    await uow.commit()
    return access, now + policy.idle_timeout


async def step_up(uow: IdentityUnitOfWork, deps: Dependencies, *, session_id: UUID, password: str,
                  totp_code: str, address: str, now: datetime) -> IssuedToken:
    """Re-authentication for signing (21 CFR 11.200): password and TOTP again, a token for two minutes."""
    session, user, _ = await active_session(uow, session_id, now)
    if not user.totp_enabled or not user.totp_secret_sealed:
        raise NotAllowed("signing needs two factors: enrol TOTP first")
    _refuse_if_locked(deps, user, now)  # a locked account cannot sign either, even with the right answers
    password_ok = await asyncio.to_thread(deps.hasher.verify, user.password_hash, password)
    code_ok = await _second_factor_ok(uow, deps, user, totp_code, None, now) if password_ok else False
    if not (password_ok and code_ok):
        await _failed(uow, deps, user, user.email, "bad_step_up", address, now)
    signer = await deps.keyring.signer(uow, now)
    token = signer.issue(user_id=user.id, organization_id=user.organization_id, roles=list(user.roles),
                         session_id=session.id, email=user.email, amr=["pwd", "otp"], now=now,
                         lifetime=deps.step_up_lifetime, audience=STEP_UP_AUDIENCE, purpose=STEP_UP_PURPOSE)
    await uow.commit()
    return token


@dataclass(frozen=True)
class TotpEnrolment:
    secret: str
    otpauth_uri: str
    qr_png: bytes


async def begin_totp_enrolment(uow: IdentityUnitOfWork, deps: Dependencies, *, user_id: UUID) -> TotpEnrolment:
    user = await uow.session.get(UserRow, user_id)
    assert user is not None
    if user.totp_enabled:
        raise NotAllowed("TOTP is already enrolled")
    secret = totp.new_secret()
    user.totp_secret_sealed = deps.box.seal(secret)
    user.totp_last_step = None
    uri = totp.provisioning_uri(secret, user.email)
    await uow.commit()
    return TotpEnrolment(secret, uri, totp.qr_png(uri))


async def confirm_totp_enrolment(uow: IdentityUnitOfWork, deps: Dependencies, *, user_id: UUID, code: str,
                                 now: datetime) -> list[str]:
    """The first good code turns TOTP on and returns ten single-use backup codes, shown this once."""
    user = await uow.session.get(UserRow, user_id)
    assert user is not None
    if user.totp_enabled or not user.totp_secret_sealed:
        raise NotAllowed("no TOTP enrolment is pending")
    step = totp.accepted_step(deps.box.open(user.totp_secret_sealed), code, now, user.totp_last_step)
    if step is None:
        raise InvalidCredentials("the code is not right")
    user.totp_enabled, user.totp_last_step = True, step
    codes = totp.new_backup_codes()
    for old in (await uow.session.execute(select(BackupCodeRow).where(BackupCodeRow.user_id == user.id))).scalars():
        await uow.session.delete(old)
    uow.session.add_all([BackupCodeRow(user_id=user.id, code_hash=totp.hash_backup_code(c)) for c in codes])
    await uow.commit()
    return codes
