from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from uuid import UUID

from sqlmodel import col, select

from dicom_ingest.adapters.index_queries import SqlIndexQueries
from dicom_ingest.adapters.modalities import ModalityConflict, SqlModalityRegistry
from dicom_ingest.adapters.remote_pacs import DimseClient, SqlRemoteJobs, SqlRemotePacsRegistry
from dicom_ingest.adapters.storage import FileStorage
from dicom_ingest.adapters.tables import InstanceRow
from dicom_ingest.config import DicomIngestSettings
from dicom_ingest.entrypoints import modalities_http, remote_pacs_http
from dicom_ingest.entrypoints.dicomweb import add_routes as add_dicomweb_routes
from dicom_ingest.entrypoints.qr_scp import QueryRetrieveSCP
from dicom_ingest.entrypoints.scp import StorageSCP
from dicom_ingest.service_layer.batch_index import BatchIndexer, DatabaseWriter
from dicom_ingest.service_layer.handlers import announce_settled_studies
from dicom_ingest.service_layer.remote import JobRunner, ReceivedInstances, RemoteExchange
from radcommon.auth import JwksClient, SqlRevocationList, TokenVerifier, auth_middleware, record_session_ended
from radcommon.config import CommonSettings
from radcommon.consumer import EventConsumer
from radcommon.contracts import SessionEndedV1
from radcommon.db import Database
from radcommon.http import create_app
from radcommon.messaging import Bus
from radcommon.service import Service
from radcommon.uow import SqlUnitOfWork

NAME = "dicom-ingest"
#: What `telerad up` accepts for the demo organisation: dcmtk's and pynetdicom's default calling AE titles.
DEMO_AE_TITLES = ("STORESCU", "ECHOSCU", "ANY-SCU")  # dcmtk and pynetdicom defaults
DEMO_HOST = "127.0.0.1/32"
log = logging.getLogger(__name__)


class DicomIngestService(Service):
    scp: StorageSCP
    storage: FileStorage
    modalities: SqlModalityRegistry

    async def start(self) -> None:
        await super().start()
        await self.modalities.reload()  # before the first association is screened
        self.scp.start()

    async def register_demo_modalities(self, organization_id: UUID) -> int:
        """Let local dcmtk and pynetdicom senders in for the demo organisation, once: nothing when it
        has modalities already. Returns how many were registered."""
        if await self.modalities.of_organization(organization_id):
            return 0
        registered = 0
        for ae_title in DEMO_AE_TITLES:
            try:
                await self.modalities.register(organization_id, ae_title, DEMO_HOST, "demo: a sender on this machine")
                registered += 1
            except ModalityConflict as error:
                log.warning("demo modality not registered: %s", error)
        return registered

    async def stop(self) -> None:
        self.scp.stop()
        await super().stop()


def build(common: CommonSettings, bus: Bus, *, embedded: bool,
          settings: DicomIngestSettings | None = None) -> DicomIngestService:
    settings = settings or DicomIngestSettings()
    db = Database(settings.resolved_database_url(NAME, common, embedded))
    storage = FileStorage(settings.storage_dir or common.data_dir / "dicom", fsync=settings.fsync)
    modalities = SqlModalityRegistry(db)

    async def listening() -> bool:
        return scp.server is not None

    app = create_app(NAME, readiness={"database": db.ping, "bus": bus.ping, "dicom": listening})
    jwks = JwksClient(f"{common.identity_url.rstrip('/')}/.well-known/jwks.json")
    verifier = TokenVerifier(jwks, issuer=common.public_url, revocations=SqlRevocationList(db))
    app.middlewares.append(auth_middleware(verifier))
    modalities_http.add_routes(app, modalities)
    consumer = EventConsumer(f"{NAME}.events", {SessionEndedV1: [record_session_ended]}, lambda: SqlUnitOfWork(db))

    # one transaction for every instance waiting (C-STORE, STOW-RS, C-GET retrievals), answered once committed
    index = BatchIndexer(DatabaseWriter(db))

    async def discard_if_unreferenced(key: str) -> None:
        async with db.session() as session:
            referenced = select(col(InstanceRow.id)).where(col(InstanceRow.storage_key) == key).limit(1)
            if not await session.scalar(referenced):
                storage.delete(key)

    dicomweb_url = settings.dicomweb_url or f"{common.public_url.rstrip('/')}/dicomweb"
    add_dicomweb_routes(app, db=db, storage=storage, index=index, discard_if_unreferenced=discard_if_unreferenced,
                        settings=settings, base_url=dicomweb_url)

    remote_jobs = SqlRemoteJobs(db)
    runner = JobRunner(remote_jobs, concurrency=settings.remote_jobs_concurrency,
                       heartbeat_seconds=settings.remote_job_heartbeat_seconds,
                       stale_seconds=settings.remote_job_stale_seconds)
    dimse = DimseClient(connection_timeout=settings.remote_connection_timeout_seconds,
                        acse_timeout=settings.remote_acse_timeout_seconds,
                        dimse_timeout=settings.remote_dimse_timeout_seconds,
                        network_timeout=settings.remote_network_timeout_seconds,
                        maximum_pdu_size=settings.maximum_pdu_size)
    received = ReceivedInstances(storage, index, discard_if_unreferenced, settings.index_timeout_seconds)
    remote = RemoteExchange(settings, SqlRemotePacsRegistry(db), remote_jobs, runner, modalities, dimse,
                            SqlIndexQueries(db), storage, received)
    remote_pacs_http.add_routes(app, remote)

    async def settle_monitor() -> None:
        settle = timedelta(seconds=settings.settle_seconds)
        while True:
            async with SqlUnitOfWork(db) as uow:
                announced = await announce_settled_studies(uow, settle)
            if not announced:
                await asyncio.sleep(settings.settle_poll_seconds)

    service = DicomIngestService(NAME, db, bus, app, Path(__file__).parent / "migrations",
                                 http_host=settings.http_host, http_port=settings.http_port,
                                 consumers=[consumer],
                                 background=[settle_monitor, modalities.reload_forever, runner.keep_alive])
    service.on_stop.append(jwks.close)
    service.on_stop.append(runner.stop)
    service.on_stop.append(index.close)  # after everything that indexes
    query_retrieve = QueryRetrieveSCP(settings.ae_title, storage, SqlIndexQueries(db), modalities.destination)
    service.scp = scp = StorageSCP(settings, storage, index, discard_if_unreferenced, modalities.match,
                                   query_retrieve)
    service.storage = storage
    service.modalities = modalities
    return service
