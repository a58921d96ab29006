from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from uuid import UUID

from sqlmodel import col, select

from dicom_ingest.adapters.index_queries import SqlIndexQueries
from dicom_ingest.adapters.modalities import FreshModalities, ModalityConflict, SqlModalityRegistry
from dicom_ingest.adapters.remote_pacs import DimseClient, SqlRemoteJobs, SqlRemotePacsRegistry
from dicom_ingest.adapters.spool_index import SpoolIndexer
from dicom_ingest.adapters.storage import FileStorage
from dicom_ingest.adapters.tables import InstanceRow
from dicom_ingest.adapters.thread_index import ThreadIndexer
from dicom_ingest.config import DicomIngestSettings
from dicom_ingest.entrypoints import modalities_http, remote_pacs_http, spool_http
from dicom_ingest.entrypoints.dicomweb import add_routes as add_dicomweb_routes
from dicom_ingest.entrypoints.qr_scp import QueryRetrieveSCP
from dicom_ingest.entrypoints.scp import StorageSCP
from dicom_ingest.entrypoints.scp_workers import ScpWorkerPool
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
    scp: StorageSCP | ScpWorkerPool
    storage: FileStorage
    modalities: SqlModalityRegistry

    async def start(self) -> None:
        await super().start()
        await self.modalities.reload()  # before the first association is screened
        if isinstance(self.scp, ScpWorkerPool):
            await self.scp.start()
        else:
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
        if isinstance(self.scp, ScpWorkerPool):
            await self.scp.stop()
        else:
            self.scp.stop()
        await super().stop()


def build(common: CommonSettings, bus: Bus, *, embedded: bool,
          settings: DicomIngestSettings | None = None) -> DicomIngestService:
    settings = settings or DicomIngestSettings()
    db_url = settings.resolved_database_url(NAME, common, embedded)
    db = Database(db_url)
    storage = FileStorage(settings.storage_dir or common.data_dir / "dicom", fsync=settings.fsync)
    modalities = SqlModalityRegistry(db)

    async def listening() -> bool:
        return service.scp.listening

    app = create_app(NAME, readiness={"database": db.ping, "bus": bus.ping, "dicom": listening})
    jwks = JwksClient(f"{common.identity_url.rstrip('/')}/.well-known/jwks.json")
    verifier = TokenVerifier(jwks, issuer=common.public_url, revocations=SqlRevocationList(db))
    app.middlewares.append(auth_middleware(verifier))
    modalities_http.add_routes(app, modalities)
    consumer = EventConsumer(f"{NAME}.events", {SessionEndedV1: [record_session_ended]}, lambda: SqlUnitOfWork(db))

    # one transaction for every instance waiting (C-STORE, STOW-RS, C-GET retrievals), answered once committed
    index = BatchIndexer(DatabaseWriter(db, settings.duplicate_policy))

    discard_if_unreferenced = unreferenced_discarder(db, storage)
    spool_http.add_routes(app, storage, index, discard_if_unreferenced)
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
    if settings.scp_processes > 1 and db.is_postgres:
        worker_settings = settings.model_copy(update={"storage_dir": storage.root, "database_url": db_url})
        service.scp = ScpWorkerPool(worker_settings, common.log_level, common.log_format)
    else:
        if settings.scp_processes > 1:
            log.warning("DICOM_INGEST_SCP_PROCESSES=%d ignored: SQLite is written by one process; the SCP runs "
                        "in this one", settings.scp_processes)
        service.scp = build_scp(settings, db, storage, modalities, index)
    service.storage = storage
    service.modalities = modalities
    return service


def unreferenced_discarder(db: Database, storage: FileStorage) -> Callable[[str], Awaitable[None]]:
    """Removes a file no index row points at (a duplicate, or an instance the index refused)."""
    async def discard_if_unreferenced(key: str) -> None:
        async with db.session() as session:
            referenced = select(col(InstanceRow.id)).where(col(InstanceRow.storage_key) == key).limit(1)
            if not await session.scalar(referenced):
                storage.delete(key)
    return discard_if_unreferenced


def build_scp(settings: DicomIngestSettings, db: Database, storage: FileStorage,
              modalities: SqlModalityRegistry | FreshModalities, index: BatchIndexer, *,
              reuse_port: bool = False) -> StorageSCP:
    """The DIMSE SCP: storage, verification and query/retrieve, in the service or in a worker process."""
    query_retrieve = QueryRetrieveSCP(settings.ae_title, storage, SqlIndexQueries(db), modalities.destination)
    thread_index = spool_index = None
    if settings.index_in_scp_thread and db.is_postgres and settings.duplicate_policy == "keep_first":
        thread_index = ThreadIndexer(db.libpq_dsn, timeout_seconds=settings.index_timeout_seconds)
        if settings.acknowledge_when == "written":
            spool_index = SpoolIndexer(storage, thread_index)
    return StorageSCP(settings, storage, index, unreferenced_discarder(db, storage), modalities.match,
                      query_retrieve, reuse_port=reuse_port, thread_index=thread_index, spool_index=spool_index)


@contextlib.asynccontextmanager
async def scp_worker(settings: DicomIngestSettings) -> AsyncIterator[StorageSCP]:
    """The SCP of one worker process (:class:`ScpWorkerPool`): the service's database and files, a
    modality registry of its own, an index writer of its own; listening beside the others (SO_REUSEPORT)."""
    if not settings.database_url or settings.storage_dir is None:
        raise ValueError("an SCP worker needs the service's database URL and storage directory")
    db = Database(settings.database_url, pool_size=4)
    storage = FileStorage(settings.storage_dir, fsync=settings.fsync)
    registry = SqlModalityRegistry(db)
    index = BatchIndexer(DatabaseWriter(db, settings.duplicate_policy))
    reloading: asyncio.Task[None] | None = None
    scp: StorageSCP | None = None
    try:
        await registry.reload()
        reloading = asyncio.create_task(registry.reload_forever(), name="modality-registry")
        modalities = FreshModalities(registry, asyncio.get_running_loop())
        scp = build_scp(settings, db, storage, modalities, index, reuse_port=True)
        scp.start()
        yield scp
    finally:
        if scp is not None:
            scp.stop()
        if reloading is not None:
            reloading.cancel()
        await index.close()
        await db.dispose()
