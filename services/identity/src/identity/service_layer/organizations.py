from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from sqlmodel import select

from identity.adapters.tables import OrganizationRow, UserRow
from identity.service_layer.handlers import Dependencies
from identity.service_layer.unit_of_work import IdentityUnitOfWork
from radcommon.contracts import OrganizationCreatedV1, RoleValues, UserRegisteredV1

DEMO_USERS = (
    ("admin@demo.telerad", "Ada Admin", [RoleValues.ADMIN]),
    ("manager@demo.telerad", "Max Manager", [RoleValues.MANAGER]),
    ("radiologist@demo.telerad", "Rita Radiologist", [RoleValues.RADIOLOGIST]),
    ("technician@demo.telerad", "Theo Technician", [RoleValues.TECHNICIAN]),
)


def generated_password() -> str:
    return secrets.token_urlsafe(12)


async def seed_demo_organization(uow: IdentityUnitOfWork, deps: Dependencies, *, organization_id: UUID,
                                 password: str, now: datetime) -> bool:
    """The demo organisation and its four users, once; 2FA is not required there. False if already seeded."""
    return await create_organization(uow, deps, organization_id=organization_id, name="Demo Imaging Centre",
                                     slug="demo", users=DEMO_USERS, password=password, now=now)


async def create_organization(uow: IdentityUnitOfWork, deps: Dependencies, *, organization_id: UUID, name: str,
                              slug: str, users: Sequence[tuple[str, str, Sequence[RoleValues]]], password: str,
                              now: datetime, require_2fa_roles: Sequence[RoleValues] = ()) -> bool:
    """An organisation with users sharing one initial password; nothing if it exists. For seeding and tests."""
    if await uow.session.get(OrganizationRow, organization_id) is not None:
        return False
    organization = OrganizationRow(id=organization_id, name=name, slug=slug,
                                   require_2fa_roles=[r.value for r in require_2fa_roles], created_at=now)
    uow.session.add(organization)
    await uow.session.flush()
    uow.publish(OrganizationCreatedV1(organization_id=organization_id, name=organization.name))
    hashed = deps.hasher.hash(password)
    for email, full_name, roles in users:
        existing = (await uow.session.execute(select(UserRow).where(UserRow.email == email))).scalar_one_or_none()
        if existing is not None:
            continue
        user = UserRow(organization_id=organization_id, email=email, full_name=full_name, password_hash=hashed,
                       roles=[r.value for r in roles], created_at=now)
        uow.session.add(user)
        await uow.session.flush()
        uow.publish(UserRegisteredV1(organization_id=organization_id, user_id=user.id, email=email,
                                     full_name=full_name, roles=list(roles)))
    await uow.commit()
    return True
