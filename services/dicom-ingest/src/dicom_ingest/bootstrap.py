from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from uuid import UUID

from sqlmodel import col, select

from dicom_ingest.adapters.storage import FileStorage
from dicom_ingest.adapters.tables import InstanceRow
from dicom_ingest.config import DicomIngestSettings
from dicom_ingest.domain.model import StoreInstance
from dicom_ingest.entrypoints.scp import StorageSCP
from dicom_ingest.service_layer.handlers import announce_settled_studies, index_instance
from radcommon.config import CommonSettings
from radcommon.db import Database
from radcommon.http import create_app
from radcommon.messaging import Bus
from radcommon.service import Service
from radcommon.uow import SqlUnitOfWork

NAME = "dicom-ingest"
log = logging.getLogger(__name__)


class DicomIngestService(Service):
    scp: StorageSCP
    storage: FileStorage

    async def start(self) -> None:
        await super().start()
        self.scp.start()

    async def stop(self) -> None:
        self.scp.stop()
        await super().stop()


def build(common: CommonSettings, bus: Bus, *, embedded: bool,
          settings: DicomIngestSettings | None = None) -> DicomIngestService:
    settings = settings or DicomIngestSettings()
    db = Database(settings.resolved_database_url(NAME, common, embedded))
    storage = FileStorage(settings.storage_dir or common.data_dir / "dicom", fsync=settings.fsync)
    scp_holder: list[StorageSCP] = []

    async def listening() -> bool:
        return bool(scp_holder) and scp_holder[0].server is not None

    app = create_app(NAME, readiness={"database": db.ping, "bus": bus.ping, "dicom": listening})

    async def index(command: StoreInstance) -> str:
        for attempt in range(3):  # two first instances of one study racing for its row: the loser retries
            try:
                async with SqlUnitOfWork(db) as uow:
                    return await index_instance(command, uow)
            except Exception as error:
                if attempt == 2 or "unique" not in str(error).lower():
                    raise
        raise AssertionError("unreachable")

    async def discard_if_unreferenced(key: str) -> None:
        async with db.session() as session:
            referenced = select(col(InstanceRow.id)).where(col(InstanceRow.storage_key) == key).limit(1)
            if not await session.scalar(referenced):
                storage.delete(key)

    def organization_for(calling_ae_title: str, address: str) -> UUID | None:
        return common.default_organization_id  # until identity maps modalities to organisations

    async def settle_monitor() -> None:
        settle = timedelta(seconds=settings.settle_seconds)
        while True:
            async with SqlUnitOfWork(db) as uow:
                announced = await announce_settled_studies(uow, settle)
            if not announced:
                await asyncio.sleep(settings.settle_poll_seconds)

    service = DicomIngestService(NAME, db, bus, app, Path(__file__).parent / "migrations",
                                 http_host=settings.http_host, http_port=settings.http_port,
                                 background=[settle_monitor])
    service.scp = StorageSCP(settings, storage, index, discard_if_unreferenced, organization_for)
    scp_holder.append(service.scp)
    service.storage = storage
    return service
