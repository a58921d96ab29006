"""Managing an organisation's templates: the defaults it starts with, new ones, edits, (de)activation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

from reporting.domain.default_templates import default_templates
from reporting.domain.report import ReportError
from reporting.domain.templates import Section, Template
from reporting.service_layer.unit_of_work import ReportingUnitOfWork


class TemplateNotFound(ReportError):
    pass


class TemplateNameTaken(ReportError):
    pass


async def seed_default_templates(uow: ReportingUnitOfWork, organization_id: UUID, now: datetime) -> bool:
    """Give the organisation the default templates, once (inside the caller's transaction)."""
    if not await uow.templates.claim_seeding(organization_id, now):
        return False
    for template in default_templates(organization_id, now):
        if not await uow.templates.name_taken(organization_id, template.name):
            await uow.templates.save(template)
    return True


async def ensure_default_templates(uow: ReportingUnitOfWork, organization_id: UUID) -> None:
    async with uow:
        if await seed_default_templates(uow, organization_id, datetime.now(UTC)):
            await uow.commit()


async def create_template(uow: ReportingUnitOfWork, organization_id: UUID, created_by: UUID, name: str,
                          modality: str, body_part: str, sections: Sequence[Section]) -> Template:
    now = datetime.now(UTC)
    async with uow:
        template = Template(organization_id, name, modality, body_part, tuple(sections), created_by=created_by,
                            created_at=now, updated_at=now)
        if await uow.templates.name_taken(organization_id, name):
            raise TemplateNameTaken(f"the organisation has a template named {name!r} already")
        await uow.templates.save(template)
        await uow.commit()
    return template


async def revise_template(uow: ReportingUnitOfWork, organization_id: UUID, template_id: UUID, edited_by: UUID,
                          name: str, modality: str, body_part: str, sections: Sequence[Section]) -> Template:
    """A new version; reports started from an earlier one keep it."""
    async with uow:
        template = await _template(uow, organization_id, template_id)
        if await uow.templates.name_taken(organization_id, name, other_than=template_id):
            raise TemplateNameTaken(f"the organisation has a template named {name!r} already")
        template.revise(name, modality, body_part, sections, edited_by, datetime.now(UTC))
        await uow.templates.save(template)
        await uow.commit()
    return template


async def set_template_active(uow: ReportingUnitOfWork, organization_id: UUID, template_id: UUID,
                              active: bool) -> Template:
    """An inactive template starts no new report; reports written from it are unaffected."""
    async with uow:
        template = await _template(uow, organization_id, template_id)
        template.active, template.updated_at = active, datetime.now(UTC)
        await uow.templates.save(template)
        await uow.commit()
    return template


async def _template(uow: ReportingUnitOfWork, organization_id: UUID, template_id: UUID) -> Template:
    template = await uow.templates.get(organization_id, template_id, lock=True)
    if template is None:
        raise TemplateNotFound("no such template")
    return template
