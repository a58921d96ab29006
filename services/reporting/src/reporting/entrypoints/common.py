"""What every reporting route shares: its keys, roles, path parsing, and errors as problems."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from radcommon.contracts import RoleValues
from radcommon.db import Database
from radcommon.problems import Conflict, Forbidden, NotFound, UnprocessableContent
from reporting.config import ReportingSettings
from reporting.domain.quality import SelfReview
from reporting.domain.report import NotTheAuthor, ReportError
from reporting.domain.templates import ContentInvalid, TemplateError
from reporting.service_layer.commands import ItemNotFound, ReportNotFound, TemplateUnavailable
from reporting.service_layer.quality import DisputeNotFound
from reporting.service_layer.templates import TemplateNotFound
from reporting.service_layer.unit_of_work import ReportingUnitOfWork

database_key = web.AppKey("database", Database)
settings_key = web.AppKey("settings", ReportingSettings)

SEEING = (RoleValues.ADMIN, RoleValues.MANAGER, RoleValues.RADIOLOGIST, RoleValues.TECHNICIAN, RoleValues.VIEWER)
#: Who sees drafts and every version; the others see a report once submitted, as submitted or signed.
AUTHORING = (RoleValues.ADMIN, RoleValues.MANAGER, RoleValues.RADIOLOGIST)
MANAGING = (RoleValues.ADMIN, RoleValues.MANAGER)
READING = (RoleValues.RADIOLOGIST,)

NOT_FOUND = (ReportNotFound, ItemNotFound, TemplateNotFound, DisputeNotFound)
T = TypeVar("T")
P = TypeVar("P", bound=BaseModel)


class ReportPath(BaseModel):
    report_id: UUID


class VersionPath(BaseModel):
    report_id: UUID
    version: int = Field(ge=1)


class TemplatePath(BaseModel):
    template_id: UUID


class TemplateVersionPath(BaseModel):
    template_id: UUID
    version: int = Field(ge=1)


class DisputePath(BaseModel):
    dispute_id: UUID


def uow(request: web.Request) -> ReportingUnitOfWork:
    return ReportingUnitOfWork(request.app[database_key])


def path(request: web.Request, model: type[P], what: str) -> P:
    """The path's parameters; one that cannot name anything (not a UUID) is simply not found."""
    try:
        return model.model_validate(dict(request.match_info))
    except ValidationError:
        raise NotFound(f"no such {what}") from None


async def run(action: Callable[[], Awaitable[T]]) -> T:
    """A command's outcome: unknown things are 404, refusals of who you are 403, bad content 422, and what
    the state forbids (a final report, a newer version, no claim, a decided dispute) 409."""
    try:
        return await action()
    except NOT_FOUND as error:
        raise NotFound(str(error)) from None
    except (NotTheAuthor, SelfReview) as error:
        raise Forbidden(str(error)) from None
    except (TemplateUnavailable, ContentInvalid, TemplateError) as error:
        raise UnprocessableContent(str(error)) from None
    except ReportError as error:
        raise Conflict(str(error)) from None


def day_range(start: date | None, end: date | None) -> tuple[datetime | None, datetime | None]:
    """Whole UTC days, ``end`` included."""
    return (datetime.combine(start, time(), UTC) if start else None,
            datetime.combine(end + timedelta(days=1), time(), UTC) if end else None)
