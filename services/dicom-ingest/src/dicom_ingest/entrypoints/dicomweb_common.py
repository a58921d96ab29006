"""What the DICOMweb routes share: their dependencies, roles, errors, lookups and streamed multipart replies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar
from uuid import UUID

from aiohttp import web

from dicom_ingest.adapters.storage import InstanceStorage
from dicom_ingest.dicom.attributes import UID_PATTERN
from dicom_ingest.dicom.media_types import MediaRange, parse_accept
from dicom_ingest.dicom.multipart import closing_delimiter, multipart_content_type, new_boundary, part_head, part_tail
from dicom_ingest.dicomweb_views import StoredInstance, stored_instances
from dicom_ingest.service_layer.stow import StowPorts
from radcommon.auth import require_roles
from radcommon.contracts import RoleValues
from radcommon.db import Database
from radcommon.problems import NotFound, Problem

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Everyone of an organisation may look at its images.
READERS = (RoleValues.ADMIN, RoleValues.MANAGER, RoleValues.RADIOLOGIST, RoleValues.TECHNICIAN, RoleValues.VIEWER)
#: Who may store: technicians send studies, radiologists store what they make of them (key images,
#: SR measurements, presentation states from the viewer), admins and managers repair and import.
WRITERS = (RoleValues.ADMIN, RoleValues.MANAGER, RoleValues.RADIOLOGIST, RoleValues.TECHNICIAN)


class NotAcceptable(Problem):
    status_code, title = 406, "Not Acceptable"


class ContentTooLarge(Problem):
    status_code, title = 413, "Content Too Large"


class UnsupportedMediaTypeProblem(Problem):
    status_code, title = 415, "Unsupported Media Type"


@dataclass
class DicomWeb:
    """The DICOMweb routes' dependencies; ``base_url`` is DICOMweb's public root (…/dicomweb)."""

    db: Database
    storage: InstanceStorage
    stow: StowPorts
    executor: ThreadPoolExecutor
    base_url: str
    max_part_bytes: int
    max_request_bytes: int
    max_parts: int

    async def blocking(self, work: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, work, *args)

    def study_url(self, study: str) -> str:
        return f"{self.base_url}/studies/{study}"

    def instance_url(self, study: str, series: str, instance: str) -> str:
        return f"{self.study_url(study)}/series/{series}/instances/{instance}"


dicomweb_key = web.AppKey("dicomweb", DicomWeb)


def reader(request: web.Request) -> tuple[DicomWeb, UUID]:
    """The dependencies and the caller's organisation id, for someone allowed to read."""
    principal = require_roles(request, *READERS)
    return request.app[dicomweb_key], principal.organization_id


def uid(request: web.Request, name: str) -> str:
    """A UID from the path; anything that is not a UID names nothing here: 404."""
    value = request.match_info[name]
    if len(value) > 64 or not UID_PATTERN.fullmatch(value):
        raise NotFound(f"no such {name}")
    return value


async def instances_of(request: web.Request, *, series: bool = False, instance: bool = False
                       ) -> tuple[DicomWeb, list[StoredInstance]]:
    """The caller's instances under the path's study (series, instance); 404 when none.

    Another organisation's UIDs answer exactly as UIDs nobody holds: existence never leaks.
    """
    dicomweb, organization_id = reader(request)
    found = await stored_instances(dicomweb.db, organization_id, uid(request, "study"),
                                   uid(request, "series") if series else None,
                                   uid(request, "instance") if instance else None)
    if not found:
        raise NotFound("no such " + ("instance" if instance else "series" if series else "study"))
    return dicomweb, found


def accepted(request: web.Request) -> list[MediaRange]:
    return parse_accept(request.headers.get("Accept"))


async def stream_multipart(request: web.Request, part_type: str, parts: AsyncIterator[tuple[str, bytes]],
                           transfer_syntax: str | None = None) -> web.StreamResponse:
    """Send ``(content type, bytes)`` parts as multipart/related as they come.

    Once the first byte is out the status cannot change: a part that fails after that aborts the
    connection, so the client sees a truncated body rather than a complete-looking one.
    """
    boundary = new_boundary()
    response = web.StreamResponse(headers={"Content-Type": multipart_content_type(part_type, boundary,
                                                                                 transfer_syntax)})
    first = await anext(parts, None)  # errors before the first part still become problem documents
    await response.prepare(request)
    try:
        item = first
        while item is not None:
            content_type, body = item
            await response.write(part_head(boundary, content_type) + body + part_tail())
            item = await anext(parts, None)
        await response.write(closing_delimiter(boundary))
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception:
        log.exception("a multipart response failed after it started; aborting the connection",
                      extra={"path": request.path})
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


def executor(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dicomweb")
