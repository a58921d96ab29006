
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlmodel import select

from identity.adapters.admin_tables import InvitationRow, PasswordResetRow
from identity.adapters.mail import LogMailer, MailMessage
from identity.adapters.tables import OrganizationRow, SessionRow, UserRow
from identity.domain.errors import InvalidCredentials, NotAllowed, PolicyViolation, SessionEnded
from identity.domain.passwords import PasswordHasher
from identity.domain.totp import SecretBox
from identity.service_layer import admin, handlers
from identity.service_layer.admin import Actor, Administration, OrganizationChange
from identity.service_layer.handlers import Dependencies
from identity.service_layer.keyring import KeyRing
from identity.service_layer.organizations import create_organization
from identity.service_layer.unit_of_work import IdentityUnitOfWork
from radcommon.contracts import RoleValues
from radcommon.db import Database
from radcommon.outbox import outbox_table
from support.sqlite import copy_migrated

T0 = datetime(2026, 3, 14, 8, 0, tzinfo=UTC)
PASSWORD = "a long shared test password"
NEW_PASSWORD = "quite another passphrase 42"
PLATFORM_ORG = UUID("00000000-0000-4000-8000-00000000000f")
ORG_A = UUID("00000000-0000-4000-8000-00000000000a")
ORG_B = UUID("00000000-0000-4000-8000-00000000000b")
A = TypeVar("A")


class FakeMailer:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[MailMessage] = []
        self.fail = fail

    async def send(self, message: MailMessage) -> None:
        if self.fail:
            raise ConnectionRefusedError("the mail server is down")
        self.sent.append(message)


def token_of(message: MailMessage) -> str:
    match = re.search(r"#token=([A-Za-z0-9_-]+)", message.link)
    assert match and match.group(0) in message.body
    return match.group(1)


@dataclass
class World:
    db: Database
    admin: Administration
    mailer: FakeMailer

    async def run(self, work: Callable[[IdentityUnitOfWork], Awaitable[A]]) -> A:
        async with IdentityUnitOfWork(self.db) as uow:
            result = await work(uow)
            uow.session.expunge_all()
            return result

    async def sign_in(self, email: str, password: str = PASSWORD, now: datetime = T0) -> tuple[Actor, str]:
        pair = await self.run(lambda uow: handlers.login(uow, self.admin.deps, email=email, password=password,
                                                         totp_code=None, backup_code=None, address="10.0.0.1",
                                                         user_agent="test", now=now))
        session = await self.run(lambda uow: uow.session.get(SessionRow, pair.session_id))
        assert session is not None
        return Actor(user_id=session.user_id, session_id=session.id), pair.refresh_token

    async def user(self, email: str) -> UserRow:
        return (await self.run(lambda uow: uow.session.execute(select(UserRow).where(UserRow.email == email)))
                ).scalar_one()

    async def events(self) -> list[tuple[str, dict[str, Any]]]:
        rows = await self.run(lambda uow: uow.session.execute(
            sa.select(outbox_table.c.routing_key, outbox_table.c.body).order_by(outbox_table.c.id)))
        return [(key.removeprefix("identity.").removesuffix(".v1"), json.loads(body)) for key, body in rows]

    async def invite(self, actor: Actor, email: str, role: RoleValues = RoleValues.RADIOLOGIST,
                     now: datetime = T0) -> str:
        sent = await self.run(lambda uow: admin.invite_user(uow, self.admin, actor=actor, email=email, role=role,
                                                            now=now))
        assert sent.mail_sent
        return token_of(self.mailer.sent[-1])

    async def accept(self, token: str, password: str = NEW_PASSWORD, now: datetime = T0) -> UserRow:
        return await self.run(lambda uow: admin.accept_invitation(uow, self.admin, token=token, full_name="Nia New",
                                                                  password=password, now=now))


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    db = Database(f"sqlite+aiosqlite:///{await copy_migrated('identity', tmp_path / 'identity.db')}")
    box = SecretBox(SecretBox.generate_key())
    deps = Dependencies(keyring=KeyRing(box, "http://telerad.test", timedelta(minutes=10)), box=box,
                        hasher=PasswordHasher(time_cost=1, memory_cost_kib=1024, parallelism=1),
                        access_lifetime=timedelta(minutes=5), step_up_lifetime=timedelta(minutes=2),
                        refresh_lifetime=timedelta(days=1))
    mailer = FakeMailer()
    world = World(db, Administration(deps, mailer, "http://telerad.test/"), mailer)
    for organization_id, slug, users in (
            (PLATFORM_ORG, "platform", [("operator@platform.test", "Olga Operator", [RoleValues.OPERATOR])]),
            (ORG_A, "a", [("admin@a.test", "Ada Admin", [RoleValues.ADMIN]),
                          ("manager@a.test", "Max Manager", [RoleValues.MANAGER]),
                          ("radiologist@a.test", "Rita Radiologist", [RoleValues.RADIOLOGIST])]),
            (ORG_B, "b", [("admin@b.test", "Bea Admin", [RoleValues.ADMIN]),
                          ("radiologist@b.test", "Bo Radiologist", [RoleValues.RADIOLOGIST])])):
        async with IdentityUnitOfWork(db) as uow:
            await create_organization(uow, deps, organization_id=organization_id, name=slug.upper(), slug=slug,
                                      users=users, password=PASSWORD, now=T0)
    try:
        yield world
    finally:
        await db.dispose()


async def test_an_operator_creates_an_organisation_and_invites_its_first_admin(world: World):
    operator, _ = await world.sign_in("operator@platform.test")
    organization, sent = await world.run(lambda uow: admin.create_organization_by_operator(
        uow, world.admin, actor=operator, name=" Northern Imaging ", slug="northern", admin_email="Boss@North.test",
        settings=OrganizationChange(require_2fa_roles=[RoleValues.RADIOLOGIST], password_min_length=14), now=T0))

    assert (organization.name, organization.slug, organization.password_min_length) == ("Northern Imaging",
                                                                                         "northern", 14)
    assert organization.require_2fa_roles == ["radiologist"]
    assert sent.mail_sent and sent.invitation.role == "admin" and sent.invitation.email == "boss@north.test"
    [mail] = world.mailer.sent
    assert mail.to == "boss@north.test" and "Northern Imaging" in mail.subject
    assert mail.link.startswith("http://telerad.test/accept-invitation#token=")
    assert "Olga Operator" in mail.body
    events = [e for e in await world.events() if e[1]["organization_id"] == str(organization.id)]
    assert [key for key, _ in events] == ["organization.created", "user.invited"]
    assert events[1][1]["role"] == "admin" and events[1][1]["invited_by"] == str(operator.user_id)

    user = await world.accept(token_of(mail), password="fourteen chars, at least")
    assert (user.organization_id, user.roles, user.full_name) == (organization.id, ["admin"], "Nia New")


async def test_only_an_operator_creates_organisations_and_slugs_are_unique(world: World):
    operator, _ = await world.sign_in("operator@platform.test")
    admin_a, _ = await world.sign_in("admin@a.test")

    def create(actor: Actor, slug: str) -> Callable[[IdentityUnitOfWork], Awaitable[Any]]:
        return lambda uow: admin.create_organization_by_operator(
            uow, world.admin, actor=actor, name="X", slug=slug, admin_email="x@x.test", settings=OrganizationChange(),
            now=T0)

    with pytest.raises(NotAllowed):
        await world.run(create(admin_a, "new"))
    with pytest.raises(admin.AlreadyExists):
        await world.run(create(operator, "a"))
    with pytest.raises(admin.AlreadyExists, match=r"admin@b\.test"):
        await world.run(lambda uow: admin.create_organization_by_operator(
            uow, world.admin, actor=operator, name="X", slug="x", admin_email="admin@b.test",
            settings=OrganizationChange(), now=T0))
    assert world.mailer.sent == []


async def test_an_invitation_creates_the_user_once(world: World):
    admin_a, _ = await world.sign_in("admin@a.test")
    token = await world.invite(admin_a, "New.Person@a.test")

    user = await world.accept(token, now=T0 + timedelta(hours=71))
    with pytest.raises(admin.InvalidToken, match="used"):
        await world.accept(token)

    assert (user.email, user.organization_id, user.roles) == ("new.person@a.test", ORG_A, ["radiologist"])
    [invitation] = (await world.run(lambda uow: uow.session.execute(select(InvitationRow)))).scalars()
    assert invitation.digest != token and len(invitation.digest) == 64 and invitation.user_id == user.id
    keys = [key for key, body in await world.events() if body.get("email") == "new.person@a.test"]
    assert keys == ["user.invited", "user.registered"]
    await world.sign_in("new.person@a.test", NEW_PASSWORD)


async def test_an_expired_invitation_is_refused(world: World):
    admin_a, _ = await world.sign_in("admin@a.test")
    token = await world.invite(admin_a, "late@a.test")
    with pytest.raises(admin.InvalidToken, match="expired"):
        await world.accept(token, now=T0 + timedelta(hours=72))
    with pytest.raises(admin.InvalidToken):
        await world.accept("not-a-token-anyone-was-ever-given")


async def test_the_password_must_meet_the_organisations_policy_and_a_refusal_keeps_the_link_usable(world: World):
    operator, _ = await world.sign_in("operator@platform.test")
    await world.run(lambda uow: admin.update_organization_settings(
        uow, world.admin, actor=operator, organization_id=ORG_A, change=OrganizationChange(password_min_length=30),
        now=T0))
    admin_a, _ = await world.sign_in("admin@a.test")
    token = await world.invite(admin_a, "careful@a.test")

    with pytest.raises(PolicyViolation, match="at least 30"):
        await world.accept(token, password=NEW_PASSWORD)
    with pytest.raises(PolicyViolation, match="e-mail"):
        await world.accept(token, password="careful careful careful careful!")
    await world.accept(token, password="a passphrase of thirty or more characters")


async def test_reinviting_replaces_the_earlier_invitation(world: World):
    admin_a, _ = await world.sign_in("admin@a.test")
    first = await world.invite(admin_a, "twice@a.test", RoleValues.VIEWER)
    second = await world.invite(admin_a, "twice@a.test", RoleValues.TECHNICIAN)

    with pytest.raises(admin.InvalidToken):
        await world.accept(first)
    assert (await world.accept(second)).roles == ["technician"]


async def test_an_existing_users_address_cannot_be_invited(world: World):
    admin_a, _ = await world.sign_in("admin@a.test")
    with pytest.raises(admin.AlreadyExists, match=r"radiologist@b\.test"):
        await world.invite(admin_a, " Radiologist@B.test ")


async def test_an_invitation_accepted_after_the_address_registered_elsewhere_is_refused(world: World):
    admin_a, _ = await world.sign_in("admin@a.test")
    admin_b, _ = await world.sign_in("admin@b.test")
    token_a = await world.invite(admin_a, "wanted@both.test")
    token_b = await world.invite(admin_b, "wanted@both.test")
    await world.accept(token_b)
    with pytest.raises(admin.AlreadyExists):
        await world.accept(token_a)


async def test_only_admins_invite_and_never_as_operator(world: World):
    manager, _ = await world.sign_in("manager@a.test")
    admin_a, _ = await world.sign_in("admin@a.test")
    with pytest.raises(NotAllowed):
        await world.invite(manager, "x@a.test")
    with pytest.raises(NotAllowed):
        await world.invite(admin_a, "x@a.test", RoleValues.OPERATOR)


async def test_a_mail_failure_keeps_the_invitation(world: World, caplog: pytest.LogCaptureFixture):
    admin_a, _ = await world.sign_in("admin@a.test")
    world.mailer.fail = True
    sent = await world.run(lambda uow: admin.invite_user(uow, world.admin, actor=admin_a, email="lost@a.test",
                                                         role=RoleValues.VIEWER, now=T0))
    assert not sent.mail_sent
    assert "mail could not be sent" in caplog.text
    assert [k for k, b in await world.events() if b.get("email") == "lost@a.test"] == ["user.invited"]

    world.mailer.fail = False
    await world.accept(await world.invite(admin_a, "lost@a.test"))


async def test_changing_roles_ends_the_users_sessions_and_is_announced(world: World):
    admin_a, _ = await world.sign_in("admin@a.test")
    radiologist, refresh_token = await world.sign_in("radiologist@a.test")

    user = await world.run(lambda uow: admin.change_roles(
        uow, world.admin, actor=admin_a, user_id=radiologist.user_id,
        roles=[RoleValues.VIEWER, RoleValues.RADIOLOGIST, RoleValues.VIEWER], now=T0))

    assert user.roles == ["radiologist", "viewer"]
    changed = [b for k, b in await world.events() if k == "user.role_changed"]
    assert changed == [changed[0]] and changed[0]["roles"] == ["radiologist", "viewer"]
    assert (changed[0]["previous_roles"], changed[0]["changed_by"]) == (["radiologist"], str(admin_a.user_id))
    ended = [b for k, b in await world.events() if k == "session.ended"]
    assert [(b["session_id"], b["reason"]) for b in ended] == [(str(radiologist.session_id), "revoked")]
    with pytest.raises(SessionEnded):
        await world.run(lambda uow: handlers.refresh(uow, world.admin.deps, refresh_token=refresh_token, now=T0))


async def test_unchanged_roles_change_nothing(world: World):
    admin_a, _ = await world.sign_in("admin@a.test")
    radiologist, refresh_token = await world.sign_in("radiologist@a.test")
    await world.run(lambda uow: admin.change_roles(uow, world.admin, actor=admin_a, user_id=radiologist.user_id,
                                                   roles=[RoleValues.RADIOLOGIST], now=T0))
    assert not [k for k, _ in await world.events() if k in ("user.role_changed", "session.ended")]
    await world.run(lambda uow: handlers.refresh(uow, world.admin.deps, refresh_token=refresh_token, now=T0))


async def test_the_last_admin_cannot_lose_the_admin_role(world: World):
    admin_a, _ = await world.sign_in("admin@a.test")
    manager = await world.user("manager@a.test")

    def set_roles(actor: Actor, user_id: UUID, *roles: RoleValues) -> Callable[[IdentityUnitOfWork], Awaitable[Any]]:
        return lambda uow: admin.change_roles(uow, world.admin, actor=actor, user_id=user_id, roles=roles, now=T0)

    with pytest.raises(admin.LastAdmin):
        await world.run(set_roles(admin_a, admin_a.user_id, RoleValues.MANAGER))
    await world.run(set_roles(admin_a, manager.id, RoleValues.ADMIN, RoleValues.MANAGER))
    await world.run(set_roles(admin_a, admin_a.user_id, RoleValues.MANAGER))

    # the demoted admin's session ended with the change: the old token administers nothing
    with pytest.raises(SessionEnded):
        await world.run(set_roles(admin_a, admin_a.user_id, RoleValues.ADMIN))
    with pytest.raises(NotAllowed):
        await world.run(set_roles((await world.sign_in("admin@a.test"))[0], manager.id, RoleValues.VIEWER))


async def test_roles_are_organisation_roles_of_ones_own_organisation(world: World):
    admin_a, _ = await world.sign_in("admin@a.test")
    operator = await world.user("operator@platform.test")
    other = await world.user("radiologist@b.test")
    manager, _ = await world.sign_in("manager@a.test")
    rita = await world.user("radiologist@a.test")
    for actor, user_id, roles, error in (
            (admin_a, other.id, [RoleValues.VIEWER], admin.NotFound),
            (admin_a, operator.id, [RoleValues.VIEWER], admin.NotFound),
            (admin_a, UUID(int=7), [RoleValues.VIEWER], admin.NotFound),
            (admin_a, rita.id, [RoleValues.OPERATOR], NotAllowed),
            (admin_a, rita.id, [], NotAllowed),
            (manager, rita.id, [RoleValues.VIEWER], NotAllowed)):
        async with IdentityUnitOfWork(world.db) as uow:
            with pytest.raises(error):
                await admin.change_roles(uow, world.admin, actor=actor, user_id=user_id, roles=roles, now=T0)
    assert (await world.user("radiologist@b.test")).roles == ["radiologist"]


async def test_users_are_listed_for_admins_and_managers_of_their_own_organisation(world: World):
    for email in ("admin@a.test", "manager@a.test"):
        actor, _ = await world.sign_in(email)
        async with IdentityUnitOfWork(world.db) as uow:
            users, total = await admin.list_users(uow, world.admin, actor=actor, limit=2, offset=1, now=T0)
            assert total == 3 and [u.email for u in users] == ["manager@a.test", "radiologist@a.test"]
    radiologist, _ = await world.sign_in("radiologist@a.test")
    with pytest.raises(NotAllowed):
        await world.run(lambda uow: admin.list_users(uow, world.admin, actor=radiologist, limit=10, offset=0, now=T0))


async def test_settings_are_changed_by_the_organisations_admin_or_an_operator(world: World):
    admin_a, _ = await world.sign_in("admin@a.test")
    admin_b, _ = await world.sign_in("admin@b.test")
    manager, _ = await world.sign_in("manager@a.test")
    operator, _ = await world.sign_in("operator@platform.test")

    def change(actor: Actor, organization_id: UUID, **values: Any) -> Callable[[IdentityUnitOfWork], Awaitable[Any]]:
        return lambda uow: admin.update_organization_settings(
            uow, world.admin, actor=actor, organization_id=organization_id, change=OrganizationChange(**values),
            now=T0)

    organization = await world.run(change(admin_a, ORG_A, idle_timeout_minutes=15, max_concurrent_sessions=2,
                                          require_2fa_roles=[RoleValues.ADMIN, RoleValues.RADIOLOGIST]))
    assert (organization.idle_timeout_minutes, organization.max_concurrent_sessions) == (15, 2)
    assert organization.require_2fa_roles == ["admin", "radiologist"]
    assert (await world.run(change(operator, ORG_B, name="Bee Clinic"))).name == "Bee Clinic"
    with pytest.raises(admin.NotFound):
        await world.run(change(admin_b, ORG_A, idle_timeout_minutes=60))
    with pytest.raises(admin.NotFound):
        await world.run(change(operator, UUID(int=9), idle_timeout_minutes=60))
    with pytest.raises(NotAllowed):
        await world.run(change(manager, ORG_A, idle_timeout_minutes=60))
    stored = await world.run(lambda uow: uow.session.get(OrganizationRow, ORG_A))
    assert stored is not None and stored.idle_timeout_minutes == 15


@pytest.mark.parametrize("values", [{"idle_timeout_minutes": 0}, {"max_concurrent_sessions": 101},
                                    {"password_min_length": 7}, {"name": "  "}])
def test_nonsensical_settings_are_rejected(values: dict[str, Any]):
    with pytest.raises(ValueError):
        OrganizationChange(**values)


async def test_a_reset_for_an_unknown_address_sends_nothing(world: World):
    await world.run(lambda uow: admin.request_password_reset(uow, world.admin, email="nobody@a.test", now=T0))
    await world.admin.drain()
    assert world.mailer.sent == []
    assert not list((await world.run(lambda uow: uow.session.execute(select(PasswordResetRow)))).scalars())


async def test_a_password_reset_works_once_ends_sessions_and_clears_the_lockout(world: World):
    _, refresh_token = await world.sign_in("radiologist@a.test")
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            await world.sign_in("radiologist@a.test", "wrong password")
    await world.run(lambda uow: admin.request_password_reset(uow, world.admin, email=" Radiologist@A.test",
                                                             now=T0))
    await world.admin.drain()
    [mail] = world.mailer.sent
    assert mail.to == "radiologist@a.test" and mail.link.startswith("http://telerad.test/reset-password#token=")

    def confirm(password: str, now: datetime = T0) -> Callable[[IdentityUnitOfWork], Awaitable[None]]:
        return lambda uow: admin.confirm_password_reset(uow, world.admin, token=token_of(mail), password=password,
                                                        now=now)

    with pytest.raises(PolicyViolation):
        await world.run(confirm("short"))
    await world.run(confirm(NEW_PASSWORD, T0 + timedelta(minutes=29)))
    with pytest.raises(admin.InvalidToken, match="used"):
        await world.run(confirm("yet another passphrase 7"))

    user = await world.user("radiologist@a.test")
    assert (user.failed_logins, user.last_failed_at) == (0, None)
    assert [b["reason"] for k, b in await world.events() if k == "session.ended"] == ["revoked"]
    with pytest.raises(SessionEnded):
        await world.run(lambda uow: handlers.refresh(uow, world.admin.deps, refresh_token=refresh_token, now=T0))
    with pytest.raises(InvalidCredentials):
        await world.sign_in("radiologist@a.test")
    await world.sign_in("radiologist@a.test", NEW_PASSWORD)


async def test_an_expired_reset_link_is_refused(world: World):
    await world.run(lambda uow: admin.request_password_reset(uow, world.admin, email="manager@a.test", now=T0))
    await world.admin.drain()
    with pytest.raises(admin.InvalidToken, match="expired"):
        await world.run(lambda uow: admin.confirm_password_reset(
            uow, world.admin, token=token_of(world.mailer.sent[0]), password=NEW_PASSWORD,
            now=T0 + timedelta(minutes=30)))


async def test_a_burst_of_reset_requests_sends_one_mail_and_only_the_newest_link_works(world: World):
    for minutes in (0, 0.5, 2):
        async with IdentityUnitOfWork(world.db) as uow:
            await admin.request_password_reset(uow, world.admin, email="manager@a.test",
                                               now=T0 + timedelta(minutes=minutes))
    await world.admin.drain()
    first, newest = world.mailer.sent

    def confirm(mail: MailMessage) -> Callable[[IdentityUnitOfWork], Awaitable[None]]:
        return lambda uow: admin.confirm_password_reset(uow, world.admin, token=token_of(mail), password=NEW_PASSWORD,
                                                        now=T0 + timedelta(minutes=3))

    with pytest.raises(admin.InvalidToken):
        await world.run(confirm(first))
    await world.run(confirm(newest))


async def test_the_log_mailer_shows_the_link(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    await LogMailer().send(MailMessage(to="x@y.test", subject="Hello", body="...", link="http://h/p#token=t"))
    assert "x@y.test" in caplog.text and "Hello" in caplog.text and "http://h/p#token=t" in caplog.text
