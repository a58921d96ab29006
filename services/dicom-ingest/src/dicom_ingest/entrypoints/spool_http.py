"""The spool over HTTP: what an organisation's modalities sent that is acknowledged and not yet indexed, and
what the index refused after it was acknowledged (dicom_ingest.adapters.spool_index), for its admins, who can
have the index try the refused ones again once what refused them is mended."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from uuid import UUID

from aiohttp import web
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field

from dicom_ingest.adapters.spool_index import SpoolName, read_spooled
from dicom_ingest.adapters.storage import FileStorage
from dicom_ingest.dicom.part10 import MAX_FILE_META_LENGTH, PREAMBLE_LENGTH, read_file_meta
from dicom_ingest.domain.model import Discarder, Indexer, IndexOutcomeValues, unreferenced_storage_key
from radcommon.auth import require_roles
from radcommon.contracts import RoleValues
from radcommon.openapi import operation, parse_body

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpoolServices:
    storage: FileStorage
    index: Indexer
    discard_if_unreferenced: Discarder


spool_key = web.AppKey("spool", SpoolServices)

#: The set-aside files listed, newest first; ``set_aside_total`` counts them all.
LISTED = 100
#: The set-aside files one retry takes at most (oldest first), so a request stays short.
RETRIED_AT_MOST = 200


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


class RetryRequest(BaseModel):
    files: list[str] | None = Field(default=None, max_length=RETRIED_AT_MOST, description=(
        "Names of set-aside files (as listed by GET /spool); none: every one of the organisation's, oldest "
        f"first, {RETRIED_AT_MOST} at most."))


class RetryOutcomeValues(StrEnum):
    INDEXED = "indexed"  # filed and indexed: the sender's Success now holds
    ALREADY_HELD = "already_held"  # an instance of that SOP Instance UID is held (keep_first): this copy dropped
    REFUSED = "refused"  # the index refused it again, or held its UID in another study: it stays set aside
    UNREADABLE = "unreadable"  # the file cannot be read as the instance it was: it stays set aside
    NOT_FOUND = "not_found"  # no such set-aside file of the organisation


class RetriedInstance(BaseModel):
    file: str
    outcome: RetryOutcomeValues
    sop_instance_uid: str | None = None
    detail: str | None = Field(default=None, description="Why it stays set aside.")


class RetryResult(BaseModel):
    retried: list[RetriedInstance]
    set_aside_total: int = Field(description="The organisation's instances still set aside.")


class SpoolCollector(Collector):
    """The spool on ``/metrics``, read at each scrape, for alerting: an index that stopped taking what was
    acknowledged (waiting grows, the oldest gets old) or refused something (set aside above 0)."""

    def __init__(self) -> None:
        #: The storage of each service serving HTTP in this process (one, but for tests).
        self.storages: set[FileStorage] = set()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        waiting = set_aside = 0
        oldest: float | None = None
        for storage in list(self.storages):
            with contextlib.suppress(OSError):
                spooled = storage.spooled()
                waiting += len(spooled)
                set_aside += len(storage.set_aside_files())
                for path in spooled:
                    with contextlib.suppress(OSError):
                        modified = os.stat(path).st_mtime
                        oldest = modified if oldest is None else min(oldest, modified)
        yield GaugeMetricFamily("telerad_dicom_spool_waiting_instances",
                                "Instances acknowledged (C-STORE Success) and not yet indexed", value=waiting)
        yield GaugeMetricFamily("telerad_dicom_spool_oldest_waiting_seconds",
                                "Age of the oldest instance waiting in the spool (0: none waits)",
                                value=0.0 if oldest is None else max(time.time() - oldest, 0.0))
        yield GaugeMetricFamily("telerad_dicom_spool_set_aside_instances",
                                "Instances acknowledged that the index refused, set aside for an operator",
                                value=set_aside)


#: One for the process (a registry takes each metric name once); every service built in it adds its storage.
SPOOL_METRICS = SpoolCollector()
REGISTRY.register(SPOOL_METRICS)


def add_routes(app: web.Application, storage: FileStorage, index: Indexer, discard_if_unreferenced: Discarder) -> None:
    app[spool_key] = SpoolServices(storage, index, discard_if_unreferenced)
    SPOOL_METRICS.storages.add(storage)

    async def forget(_: web.Application) -> None:
        SPOOL_METRICS.storages.discard(storage)

    app.on_cleanup.append(forget)
    app.router.add_get("/spool", spool)
    app.router.add_post("/spool/set-aside/retry", retry_set_aside)


@operation("The caller's organisation's instances acknowledged and not yet indexed, and those set aside",
           responses={200: SpoolView, 403: None}, tags=["modalities"], security=True)
async def spool(request: web.Request) -> web.Response:
    """With ``DICOM_INGEST_ACKNOWLEDGE_WHEN=written`` a C-STORE is answered once its file is in the spool; the
    index takes it within milliseconds, or, when the database cannot, as soon as it can. An instance the index
    refused for its values is set aside in ``spool/failed``: its sender was told Success, so it is listed here."""
    principal = require_roles(request, RoleValues.ADMIN, RoleValues.MANAGER)
    view = await asyncio.to_thread(spool_of, request.app[spool_key].storage, principal.organization_id)
    return web.json_response(view.model_dump(mode="json"))


@operation("Index the caller's organisation's set-aside instances again", request=RetryRequest,
           responses={200: RetryResult, 403: None, 422: None}, tags=["modalities"], security=True)
async def retry_set_aside(request: web.Request) -> web.Response:
    """Once what made the index refuse them is mended (a migration, a fix), each instance is filed and indexed as
    the spool indexer would have: then its set-aside file is removed and its study announced as any other. One
    refused again, or unreadable, stays set aside, with why. One at a time, oldest first; the body may name files."""
    principal = require_roles(request, RoleValues.ADMIN, RoleValues.MANAGER)
    body = await parse_body(request, RetryRequest) if request.can_read_body else RetryRequest()
    services = request.app[spool_key]
    organization_id = principal.organization_id
    mine = await asyncio.to_thread(_set_aside_of, services.storage, organization_id)
    by_name = {os.path.basename(path): path for _, path in mine}
    names = body.files if body.files is not None else list(by_name)[:RETRIED_AT_MOST]
    retried = []
    for name in dict.fromkeys(names):  # each once, in the order given
        path = by_name.get(name)
        retried.append(await _retry(services, path) if path is not None
                       else RetriedInstance(file=name, outcome=RetryOutcomeValues.NOT_FOUND))
    log.info("set-aside instances retried", extra={
        "organization_id": str(organization_id), "user_id": str(principal.user_id),
        "outcomes": {o.value: sum(r.outcome == o for r in retried) for o in RetryOutcomeValues}})
    remaining = await asyncio.to_thread(_set_aside_of, services.storage, organization_id)
    return web.json_response(RetryResult(retried=retried, set_aside_total=len(remaining)).model_dump(mode="json"))


async def _retry(services: SpoolServices, path: str) -> RetriedInstance:
    name = os.path.basename(path)
    storage = services.storage
    try:
        command = await asyncio.to_thread(read_spooled, path)
    except Exception as error:
        log.warning("a set-aside instance is unreadable", extra={"file": name, "error": type(error).__name__})
        return RetriedInstance(file=name, outcome=RetryOutcomeValues.UNREADABLE,
                               sop_instance_uid=_sop_instance_uid(path), detail=f"{type(error).__name__}: {error}")
    uid, key = command.attributes.sop_instance_uid, command.storage_key
    try:  # filed under its key before the index row, as the spool indexer does
        directory = await asyncio.to_thread(storage.adopt, path, key)
        if directory is not None:
            await asyncio.to_thread(storage.sync, {directory})
        outcome = await services.index(command)
    except Exception as error:
        sqlstate = _sqlstate(error)
        log.warning("a set-aside instance was refused again", exc_info=True,
                    extra={"file": name, "sop_instance_uid": uid, "sqlstate": sqlstate})
        await _discard(services, key)
        return RetriedInstance(file=name, outcome=RetryOutcomeValues.REFUSED, sop_instance_uid=uid,
                               detail=f"the index refused it: {type(error).__name__}"
                                      + (f" (SQLSTATE {sqlstate})" if sqlstate else ""))
    unreferenced = unreferenced_storage_key(outcome, key)
    if unreferenced is not None:
        await _discard(services, unreferenced)
    if outcome == IndexOutcomeValues.CONFLICT:
        return RetriedInstance(file=name, outcome=RetryOutcomeValues.REFUSED, sop_instance_uid=uid,
                               detail="its SOP Instance UID is held in another study or series")
    await asyncio.to_thread(storage.unspool, path)
    held = outcome in (IndexOutcomeValues.DUPLICATE, IndexOutcomeValues.SUPERSEDED)
    return RetriedInstance(file=name, sop_instance_uid=uid,
                           outcome=RetryOutcomeValues.ALREADY_HELD if held else RetryOutcomeValues.INDEXED)


def _sqlstate(error: BaseException | None) -> str | None:
    """The SQLSTATE of a database error, wrapped (SQLAlchemy's ``orig``, a cause) or not."""
    seen = 0
    while error is not None and seen < 8:
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if isinstance(code, str) and code:
            return code
        error = getattr(error, "orig", None) or error.__cause__
        seen += 1
    return None


async def _discard(services: SpoolServices, key: str) -> None:
    """Remove the file filed under ``key`` if no index row points at it; if that cannot be checked, it stays."""
    try:
        await services.discard_if_unreferenced(key)
    except Exception:
        log.exception("could not discard an unindexed file", extra={"storage_key": key})


def _set_aside_of(storage: FileStorage, organization_id: UUID) -> list[tuple[os.stat_result, str]]:
    """The organisation's set-aside files with what ``stat`` says of them, oldest first."""
    found = []
    for path in storage.set_aside_files():
        if _organization(path) == organization_id:
            with contextlib.suppress(OSError):
                found.append((os.stat(path), path))
    return sorted(found, key=lambda item: item[0].st_mtime)


def spool_of(storage: FileStorage, organization_id: UUID) -> SpoolView:
    waiting = sum(1 for path in storage.spooled() if _organization(path) == organization_id)
    aside = _set_aside_of(storage, organization_id)
    listed = aside[::-1]  # newest first
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
