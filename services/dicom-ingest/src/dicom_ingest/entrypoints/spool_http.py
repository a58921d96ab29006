"""The spool over HTTP: what an organisation's modalities sent that is acknowledged and not yet indexed, and
what the index refused after it was acknowledged (dicom_ingest.adapters.spool_index), for its admins."""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import UTC, datetime
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, Field

from dicom_ingest.adapters.spool_index import SpoolName
from dicom_ingest.adapters.storage import FileStorage
from dicom_ingest.dicom.part10 import MAX_FILE_META_LENGTH, PREAMBLE_LENGTH, read_file_meta
from radcommon.auth import require_roles
from radcommon.contracts import RoleValues
from radcommon.openapi import operation

storage_key = web.AppKey("spool_storage", FileStorage)

#: The set-aside files listed, newest first; ``set_aside_total`` counts them all.
LISTED = 100


class SetAsideInstance(BaseModel):
    file: str = Field(description="Its name under <storage>/spool/failed, where an operator finds it.")
    calling_ae_title: str
    sop_instance_uid: str | None = Field(description="From its File Meta Information; null if unreadable.")
    size_bytes: int
    set_aside_at: datetime


class SpoolView(BaseModel):
    waiting: int = Field(description="Instances acknowledged (C-STORE Success) and not yet indexed.")
    set_aside_total: int = Field(description="Instances acknowledged that the index refused, set aside.")
    set_aside: list[SetAsideInstance] = Field(description=f"The newest {LISTED} of them.")


def add_routes(app: web.Application, storage: FileStorage) -> None:
    app[storage_key] = storage
    app.router.add_get("/spool", spool)


@operation("The caller's organisation's instances acknowledged and not yet indexed, and those set aside",
           responses={200: SpoolView, 403: None}, tags=["modalities"], security=True)
async def spool(request: web.Request) -> web.Response:
    """With ``DICOM_INGEST_ACKNOWLEDGE_WHEN=written`` a C-STORE is answered once its file is in the spool; the
    index takes it within milliseconds, or, when the database cannot, as soon as it can. An instance the index
    refused for its values is set aside in ``spool/failed``: its sender was told Success, so it is listed here."""
    principal = require_roles(request, RoleValues.ADMIN, RoleValues.MANAGER)
    view = await asyncio.to_thread(spool_of, request.app[storage_key], principal.organization_id)
    return web.json_response(view.model_dump(mode="json"))


def spool_of(storage: FileStorage, organization_id: UUID) -> SpoolView:
    waiting = sum(1 for path in storage.spooled() if _organization(path) == organization_id)
    aside = [path for path in storage.set_aside_files() if _organization(path) == organization_id]
    listed = []
    for path in aside:
        with contextlib.suppress(OSError):
            listed.append((os.stat(path), path))
    listed.sort(key=lambda item: item[0].st_mtime, reverse=True)
    return SpoolView(waiting=waiting, set_aside_total=len(aside), set_aside=[
        SetAsideInstance(file=os.path.basename(path), calling_ae_title=SpoolName.parse(path).calling_ae_title,
                         sop_instance_uid=_sop_instance_uid(path), size_bytes=stat.st_size,
                         set_aside_at=datetime.fromtimestamp(stat.st_mtime, UTC))
        for stat, path in listed[:LISTED]])


def _organization(path: str) -> UUID | None:
    try:
        return SpoolName.parse(path).organization_id
    except ValueError:
        return None


def _sop_instance_uid(path: str) -> str | None:
    try:
        with open(path, "rb") as file:
            head = file.read(PREAMBLE_LENGTH + 4 + MAX_FILE_META_LENGTH)
        return read_file_meta(head).media_storage_sop_instance_uid or None
    except (OSError, ValueError):
        return None
