from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from sqlmodel import select

from identity.adapters.tables import UserRow
from identity.domain.errors import InvalidCredentials, TooManyAttempts
from identity.domain.passwords import PasswordHasher
from identity.domain.totp import SecretBox
from identity.service_layer import handlers
from identity.service_layer.handlers import Dependencies
from identity.service_layer.keyring import KeyRing
from identity.service_layer.organizations import create_organization
from identity.service_layer.unit_of_work import IdentityUnitOfWork
from radcommon.contracts import RoleValues
from radcommon.db import Database
from support.sqlite import copy_migrated

LEAD = timedelta(seconds=60)
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PASSWORD = "a long enough demo password"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{await copy_migrated('identity', tmp_path / 'identity.db')}")
    yield database
    await database.dispose()


@pytest.fixture
def deps() -> Dependencies:
    box = SecretBox(SecretBox.generate_key())
    return Dependencies(keyring=KeyRing(box, "http://telerad.test", timedelta(minutes=6), cache_seconds=0,
                                        publish_lead=LEAD),
                        box=box, hasher=PasswordHasher(time_cost=1, memory_cost_kib=8192, parallelism=1),
                        access_lifetime=timedelta(minutes=5), step_up_lifetime=timedelta(minutes=2),
                        refresh_lifetime=timedelta(days=1))


def kids(document: dict[str, object]) -> set[str]:
    return {key["kid"] for key in document["keys"]}  # type: ignore[attr-defined, index]


async def test_a_rotated_key_is_published_before_it_signs_and_the_old_one_stays_published_while_its_tokens_live(
        db: Database, deps: Dependencies) -> None:
    ring = deps.keyring
    async with IdentityUnitOfWork(db) as uow:
        first = await ring.active_key(uow, T0)
        assert (await ring.active_key(uow, T0)).kid == first.kid
        second = await ring.rotate(uow, T0 + timedelta(days=30))
        assert kids(await ring.public_keys(uow, T0 + timedelta(days=30))) == {first.kid, second.kid}
        assert (await ring.active_key(uow, T0 + timedelta(days=30, seconds=59))).kid == first.kid
        switched = T0 + timedelta(days=30, seconds=61)
        assert (await ring.active_key(uow, switched)).kid == second.kid
        assert kids(await ring.public_keys(uow, switched + timedelta(minutes=5))) == {first.kid, second.kid}
        assert kids(await ring.public_keys(uow, switched + timedelta(minutes=7))) == {second.kid}
        assert await ring.due_for_rotation(uow, switched, timedelta(days=30)) is False
        assert await ring.due_for_rotation(uow, T0 + timedelta(days=61), timedelta(days=30)) is True


async def sign_in(db: Database, deps: Dependencies, password: str, now: datetime, address: str = "10.0.0.1") -> None:
    async with IdentityUnitOfWork(db) as uow:
        await handlers.login(uow, deps, email="rad@b.test", password=password, totp_code=None, backup_code=None,
                             address=address, user_agent="test", now=now)


async def test_failures_older_than_the_forgetting_time_do_not_lock_the_account(db: Database, deps: Dependencies
                                                                              ) -> None:
    async with IdentityUnitOfWork(db) as uow:
        await create_organization(uow, deps, organization_id=uuid4(), name="B", slug="b",
                                  users=[("rad@b.test", "Rad", [RoleValues.RADIOLOGIST])], password=PASSWORD, now=T0)
    for n in range(5):
        with pytest.raises(InvalidCredentials):
            await sign_in(db, deps, "wrong", T0 + timedelta(seconds=n))
    with pytest.raises(TooManyAttempts):
        await sign_in(db, deps, PASSWORD, T0 + timedelta(seconds=10))
    next_day = T0 + deps.account_lockout.forget_after + timedelta(minutes=1)
    with pytest.raises(InvalidCredentials):
        await sign_in(db, deps, "a typo", next_day)  # counts as the first failure again, not the sixth
    await sign_in(db, deps, PASSWORD, next_day + timedelta(seconds=1))
    async with db.session() as session:
        user = (await session.execute(select(UserRow).where(UserRow.email == "rad@b.test"))).scalar_one()
    assert user.failed_logins == 0
