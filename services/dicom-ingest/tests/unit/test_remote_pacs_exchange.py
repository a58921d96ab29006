"""Remote PACS over real associations: a pynetdicom SCP in this process is the remote PACS, Telerad's own SCP takes
its C-MOVE sub-operations, SQLite and files on disk are behind both, and the HTTP routes are called with tokens."""

from __future__ import annotations

import asyncio
import fnmatch
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    RLELossless,
    generate_uid,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, build_context, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from sqlmodel import col, select

from dicom_ingest.adapters.index_queries import SqlIndexQueries
from dicom_ingest.adapters.modalities import SqlModalityRegistry
from dicom_ingest.adapters.remote_pacs import DimseClient, RemoteJobRow, SqlRemoteJobs, SqlRemotePacsRegistry
from dicom_ingest.adapters.storage import FileStorage
from dicom_ingest.adapters.tables import InstanceRow, StudyRow
from dicom_ingest.config import DicomIngestSettings
from dicom_ingest.domain.model import StoreInstance
from dicom_ingest.entrypoints import remote_pacs_http
from dicom_ingest.entrypoints.scp import StorageSCP
from dicom_ingest.service_layer.handlers import index_instance
from dicom_ingest.service_layer.remote import JobRunner, ReceivedInstances, RemoteExchange
from radcommon.auth import auth_middleware
from radcommon.contracts import RoleValues
from radcommon.db import Database
from radcommon.http import create_app
from radcommon.testing import TokenMinter
from radcommon.uow import SqlUnitOfWork

MIGRATIONS = Path(__file__).parents[2] / "src" / "dicom_ingest" / "migrations"
ORG_A, ORG_B = UUID(int=0xA), UUID(int=0xB)
ROOT = "1.2.826.0.1.3680043.10.1234."
ADMIN, MANAGER, TECHNICIAN, RADIOLOGIST, VIEWER = (RoleValues.ADMIN, RoleValues.MANAGER, RoleValues.TECHNICIAN,
                                                   RoleValues.RADIOLOGIST, RoleValues.VIEWER)
FIND, MOVE, GET = (StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelMove,
                   StudyRootQueryRetrieveInformationModelGet)


def image(study: str, series: str | None, number: int, sop_class: str = CTImageStorage, patient_id: str = "PAT1",
          modality: str = "CT") -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid(ROOT)
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.StudyInstanceUID = study
    if series is not None:
        ds.SeriesInstanceUID = series
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = patient_id, "Doe^Jane", "19700101", "F"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20240115", "101500", f"ACC-{patient_id}", "1"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, 1, number
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = bytes(range(32))
    return ds


def a_study(instances: int = 3, patient_id: str = "PAT1") -> list[Dataset]:
    study, series = generate_uid(ROOT), generate_uid(ROOT)
    return [image(study, series, n, patient_id=patient_id) for n in range(1, instances + 1)]


@dataclass
class FakePacs:
    """A remote PACS: C-ECHO, Study Root C-FIND/C-MOVE/C-GET over ``instances``, C-STORE into ``received``."""

    ae_title: str = "FAKEPACS"
    instances: list[Dataset] = field(default_factory=list)
    destinations: dict[str, tuple[str, int]] = field(default_factory=dict)
    storage_syntaxes: list[str] = field(default_factory=lambda: list(ALL_TRANSFER_SYNTAXES))
    received: list[Dataset] = field(default_factory=list)
    move_started: threading.Event = field(default_factory=threading.Event)
    hold_moves: threading.Event | None = None
    port: int = 0
    server: Any = None

    def start(self) -> FakePacs:
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(Verification)
        for model in (FIND, MOVE, GET):
            ae.add_supported_context(model)
        for context in StoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, self.storage_syntaxes, scu_role=True, scp_role=True)
        handlers = [(evt.EVT_C_ECHO, lambda _: 0x0000), (evt.EVT_C_FIND, self._find), (evt.EVT_C_MOVE, self._move),
                    (evt.EVT_C_GET, self._get), (evt.EVT_C_STORE, self._store)]
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        self.port = int(self.server.server_address[1])
        return self

    def stop(self) -> None:
        self.server.shutdown()

    def _find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        query = event.identifier
        level = query.QueryRetrieveLevel
        seen: set[str] = set()
        for ds in self._matching(query):
            key = {"STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}[level]
            if key not in ds or ds[key].value in seen:
                continue
            seen.add(ds[key].value)
            if event.is_cancelled:
                yield 0xFE00, None
                return
            answer = Dataset()
            answer.QueryRetrieveLevel = level
            for element in query:
                if element.keyword != "QueryRetrieveLevel":
                    answer.add_new(element.tag, element.VR, ds[element.tag].value if element.tag in ds else None)
            yield 0xFF00, answer

    def _matching(self, query: Dataset) -> list[Dataset]:
        def matches(ds: Dataset) -> bool:
            for element in query:
                wanted = "" if element.value is None else str(element.value)
                keyword = "Modality" if element.keyword == "ModalitiesInStudy" else element.keyword
                if keyword == "QueryRetrieveLevel" or not wanted:
                    continue
                if keyword not in ds:
                    return False
                if not any(fnmatch.fnmatchcase(str(ds[keyword].value), option) for option in wanted.split("\\")):
                    return False
            return True
        return [ds for ds in self.instances if matches(ds)]

    def _move(self, event: Any) -> Iterator[Any]:
        destination = self.destinations.get(str(event.move_destination).strip())
        if destination is None:
            yield None, None
            return
        found = self._matching(event.identifier)
        contexts = {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in found}
        yield *destination, {"contexts": [build_context(c, s) for c, s in contexts]}
        yield len(found)
        self.move_started.set()
        for ds in found:
            if self.hold_moves is not None:
                self.hold_moves.wait(30)
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, ds

    def _get(self, event: Any) -> Iterator[Any]:
        found = self._matching(event.identifier)
        yield len(found)
        for ds in found:
            yield 0xFF00, ds

    def _store(self, event: Any) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        self.received.append(dataset)
        return 0x0000


@dataclass
class Telerad:
    db: Database
    storage: FileStorage
    modalities: SqlModalityRegistry
    scp: StorageSCP
    exchange: RemoteExchange
    client: TestClient  # type: ignore[type-arg]
    minter: TokenMinter = field(default_factory=TokenMinter)

    async def call(self, method: str, path: str, role: RoleValues = ADMIN, organization_id: UUID = ORG_A,
                   json: Any = None) -> tuple[int, Any]:
        headers = self.minter.bearer(organization_id=organization_id, roles=[role])
        async with self.client.request(method, path, json=json, headers=headers) as response:
            body = await response.json() if response.content_type.endswith("json") else None
            if response.status >= 400:
                assert response.content_type == "application/problem+json"
            return response.status, body

    async def register(self, pacs: FakePacs, organization_id: UUID = ORG_A, **extra: Any) -> dict[str, Any]:
        status, body = await self.call("POST", "/remote-pacs", organization_id=organization_id, json={
            "ae_title": pacs.ae_title, "host": "127.0.0.1", "port": pacs.port, **extra})
        assert status == 201, body
        return body  # type: ignore[no-any-return]

    async def finished(self, job: dict[str, Any]) -> dict[str, Any]:
        await self.exchange.runner.wait()
        status, body = await self.call("GET", f"/remote-pacs/jobs/{job['id']}")
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    async def indexed(self, organization_id: UUID = ORG_A) -> dict[str, str]:
        """SOP Instance UID → the calling AE title its study was received from."""
        async with self.db.session() as session:
            rows = (await session.execute(select(InstanceRow.sop_instance_uid, StudyRow.calling_ae_title).join(
                StudyRow, col(StudyRow.id) == col(InstanceRow.study_ref)).where(
                col(InstanceRow.organization_id) == organization_id))).all()
        return dict(rows)  # type: ignore[arg-type]


@pytest.fixture
async def telerad(tmp_path: Path) -> AsyncIterator[Telerad]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'dicom_ingest.db'}")
    await db.ensure_created()
    await db.migrate(MIGRATIONS)
    storage = FileStorage(tmp_path / "files", fsync=False)
    modalities = SqlModalityRegistry(db)
    await modalities.reload()
    settings = DicomIngestSettings(dicom_port=0, remote_request_timeout_seconds=1, remote_connection_timeout_seconds=2,
                                   remote_acse_timeout_seconds=5, remote_dimse_timeout_seconds=10,
                                   remote_network_timeout_seconds=10)

    async def index(command: StoreInstance) -> str:
        async with SqlUnitOfWork(db) as uow:
            return await index_instance(command, uow)

    async def discard(key: str) -> None:
        async with db.session() as session:
            if not await session.scalar(select(col(InstanceRow.id)).where(col(InstanceRow.storage_key) == key)):
                storage.delete(key)

    scp = StorageSCP(settings, storage, index, discard, modalities.match)
    scp.start()
    jobs = SqlRemoteJobs(db)
    dimse = DimseClient(connection_timeout=2, acse_timeout=5, dimse_timeout=10, network_timeout=10,
                        maximum_pdu_size=settings.maximum_pdu_size)
    exchange = RemoteExchange(settings, SqlRemotePacsRegistry(db), jobs,
                              JobRunner(jobs, concurrency=2, heartbeat_seconds=0.2, stale_seconds=5), modalities,
                              dimse, SqlIndexQueries(db), storage, ReceivedInstances(storage, index, discard, 10))
    minter = TokenMinter()
    app = create_app("dicom-ingest")
    app.middlewares.append(auth_middleware(minter.verifier()))
    remote_pacs_http.add_routes(app, exchange)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Telerad(db, storage, modalities, scp, exchange, client, minter)
    finally:
        await exchange.runner.stop()
        await client.close()
        scp.stop()
        await db.dispose()


@pytest.fixture
def pacs(telerad: Telerad) -> Iterator[Callable[..., FakePacs]]:
    started: list[FakePacs] = []

    def start(**kwargs: Any) -> FakePacs:
        kwargs.setdefault("destinations", {"TELERAD": ("127.0.0.1", telerad.scp.port)})
        started.append(FakePacs(**kwargs).start())
        return started[-1]

    yield start
    for fake in started:
        fake.stop()


# -- the registry --------------------------------------------------------------------------------------------------

async def test_a_registration_is_the_organisations_and_lets_the_remote_pacs_in(
        telerad: Telerad, pacs: Callable[..., FakePacs]) -> None:
    fake = pacs()
    registered = await telerad.register(fake, description="the hospital's PACS", calling_ae_title=" TELERAD_A ")

    assert (registered["ae_title"], registered["host"], registered["port"]) == ("FAKEPACS", "127.0.0.1", fake.port)
    assert registered["calling_ae_title"] == "TELERAD_A"
    modality = telerad.modalities.match("FAKEPACS", "127.0.0.1")
    assert modality is not None and (modality.organization_id, str(modality.id)) == (ORG_A, registered["modality_id"])
    assert (await telerad.call("GET", "/remote-pacs", TECHNICIAN))[1]["items"] == [registered]
    assert (await telerad.call("GET", "/remote-pacs", organization_id=ORG_B))[1]["items"] == []

    # its AE title again in the organisation; its AE title and address for another organisation
    assert (await telerad.call("POST", "/remote-pacs", json={"ae_title": "FAKEPACS", "host": "127.0.0.2",
                                                             "port": 104}))[0] == 409
    assert (await telerad.call("POST", "/remote-pacs", organization_id=ORG_B, json={
        "ae_title": "FAKEPACS", "host": "127.0.0.1", "port": fake.port}))[0] == 409
    assert (await telerad.call("GET", "/remote-pacs", organization_id=ORG_B))[1]["items"] == []

    assert (await telerad.call("DELETE", f"/remote-pacs/{registered['id']}", organization_id=ORG_B))[0] == 404
    assert (await telerad.call("DELETE", f"/remote-pacs/{registered['id']}"))[0] == 204
    assert telerad.modalities.match("FAKEPACS", "127.0.0.1") is None
    assert (await telerad.call("GET", "/remote-pacs"))[1]["items"] == []
    assert (await telerad.call("DELETE", f"/remote-pacs/{registered['id']}"))[0] == 404


async def test_a_modality_the_organisation_registered_already_is_kept(telerad: Telerad) -> None:
    existing = await telerad.modalities.register(ORG_A, "OLDPACS", "127.0.0.0/8", "sends to us already")
    status, body = await telerad.call("POST", "/remote-pacs", json={"ae_title": "OLDPACS", "host": "127.0.0.1",
                                                                    "port": 104})
    assert (status, body["modality_id"]) == (201, None)

    assert (await telerad.call("DELETE", f"/remote-pacs/{body['id']}"))[0] == 204
    assert telerad.modalities.match("OLDPACS", "127.0.0.1") == existing


@pytest.mark.parametrize("body", [
    {}, {"ae_title": "PACS", "host": "127.0.0.1"}, {"ae_title": "A" * 17, "host": "127.0.0.1", "port": 104},
    {"ae_title": "PACS", "host": "not a host", "port": 104}, {"ae_title": "PACS", "host": "127.0.0.1", "port": 0},
    {"ae_title": "PACS", "host": "127.0.0.1", "port": 104, "calling_ae_title": "BAD\\AE"},
    {"ae_title": "PACS", "host": "no-such-host.invalid", "port": 104},
    {"ae_title": "PACS", "host": "127.0.0.1", "port": 104, "extra": 1}])
async def test_a_bad_registration_is_refused_and_leaves_nothing(telerad: Telerad, body: dict[str, Any]) -> None:
    assert (await telerad.call("POST", "/remote-pacs", json=body))[0] == 422
    assert (await telerad.call("GET", "/remote-pacs"))[1]["items"] == []
    assert len(telerad.modalities.directory) == 0


async def test_roles(telerad: Telerad, pacs: Callable[..., FakePacs]) -> None:
    remote = await telerad.register(pacs())
    base = f"/remote-pacs/{remote['id']}"
    for method, path, role in (("POST", "/remote-pacs", TECHNICIAN), ("GET", "/remote-pacs", RADIOLOGIST),
                               ("GET", "/remote-pacs", VIEWER), ("DELETE", base, TECHNICIAN),
                               ("POST", f"{base}/echo", TECHNICIAN), ("POST", f"{base}/find", VIEWER),
                               ("POST", f"{base}/retrieve", VIEWER), ("POST", f"{base}/send", RADIOLOGIST),
                               ("GET", "/remote-pacs/jobs", VIEWER), ("GET", f"/remote-pacs/jobs/{uuid4()}", VIEWER)):
        assert (await telerad.call(method, path, role, json={}))[0] == 403, (method, path, role)
    assert (await telerad.call("POST", f"{base}/find", RADIOLOGIST, json={}))[0] == 200
    assert (await telerad.call("GET", "/remote-pacs/jobs", RADIOLOGIST))[0] == 200


# -- C-ECHO and C-FIND ---------------------------------------------------------------------------------------------

async def test_echo_says_whether_the_remote_pacs_answers(telerad: Telerad, pacs: Callable[..., FakePacs]) -> None:
    answering = await telerad.register(pacs())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    silent = await telerad.call("POST", "/remote-pacs", json={"ae_title": "GONE", "host": "127.0.0.1",
                                                              "port": closed_port})

    status, echo = await telerad.call("POST", f"/remote-pacs/{answering['id']}/echo")
    assert (status, echo["success"], echo["status"]) == (200, True, 0)
    status, echo = await telerad.call("POST", f"/remote-pacs/{silent[1]['id']}/echo")
    assert (status, echo["success"], echo["status"]) == (200, False, None)
    assert "could not associate" in echo["detail"]
    assert (await telerad.call("POST", f"/remote-pacs/{answering['id']}/echo", organization_id=ORG_B))[0] == 404


async def test_find_answers_dicom_json_at_each_level_up_to_the_limit(telerad: Telerad,
                                                                     pacs: Callable[..., FakePacs]) -> None:
    studies = [a_study(2, f"PAT{n}") for n in range(3)]
    remote = await telerad.register(pacs(instances=[ds for study in studies for ds in study]))
    find = f"/remote-pacs/{remote['id']}/find"

    status, found = await telerad.call("POST", find, TECHNICIAN, json={"keys": {"PatientID": "PAT*"}})
    assert (status, found["truncated"]) == (200, False)
    assert sorted(m["0020000D"]["Value"][0] for m in found["matches"]) == sorted(
        s[0].StudyInstanceUID for s in studies)
    first = next(m for m in found["matches"] if m["00100020"]["Value"] == ["PAT0"])
    assert first["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}
    assert first["00080052"]["Value"] == ["STUDY"] and "00080005" not in first

    status, limited = await telerad.call("POST", find, json={"keys": {"PatientID": "PAT*"}, "limit": 2})
    assert (status, len(limited["matches"]), limited["truncated"]) == (200, 2, True)

    study = studies[1][0]
    status, images = await telerad.call("POST", find, json={"level": "IMAGE", "keys": {
        "StudyInstanceUID": study.StudyInstanceUID, "SeriesInstanceUID": study.SeriesInstanceUID}})
    assert sorted(m["00080018"]["Value"][0] for m in images["matches"]) == sorted(
        ds.SOPInstanceUID for ds in studies[1])

    for body in ({"level": "SERIES", "keys": {"Modality": "CT"}}, {"keys": {"NoSuchKey": "1"}},
                 {"keys": {"StudyDate": "last week"}}, {"level": "PATIENT"}, {"limit": 0}):
        assert (await telerad.call("POST", find, json=body))[0] == 422, body
    assert (await telerad.call("POST", find, organization_id=ORG_B, json={}))[0] == 404


async def test_a_remote_pacs_that_does_not_answer_times_out_without_blocking_the_loop(telerad: Telerad) -> None:
    silent = socket.socket()  # accepts the connection and says nothing: no A-ASSOCIATE-AC ever comes
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        _, remote = await telerad.call("POST", "/remote-pacs", json={"ae_title": "SILENT", "host": "127.0.0.1",
                                                                     "port": silent.getsockname()[1]})
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        status, problem = await telerad.call("POST", f"/remote-pacs/{remote['id']}/find", json={})
        elapsed = time.monotonic() - started
        ticker.cancel()
        assert (status, problem["status"]) == (504, 504)
        assert 0.9 < elapsed < 3 and ticks >= 15
    finally:
        silent.close()


# -- retrieval -----------------------------------------------------------------------------------------------------

async def test_a_c_move_brings_the_study_in_for_the_organisation(telerad: Telerad,
                                                                 pacs: Callable[..., FakePacs]) -> None:
    wanted, other = a_study(3), a_study(2, "PAT2")
    remote = await telerad.register(pacs(instances=[*wanted, *other]))

    status, job = await telerad.call("POST", f"/remote-pacs/{remote['id']}/retrieve", RADIOLOGIST, json={
        "study_instance_uid": wanted[0].StudyInstanceUID})
    assert (status, job["status"], job["operation"]) == (202, "queued", "move")
    done = await telerad.finished(job)

    assert (done["status"], done["completed"], done["failed"], done["warning"], done["remaining"]) == (
        "completed", 3, 0, 0, 0)
    assert (done["final_status"], done["failures"], done["detail"]) == (0, [], None)
    assert await telerad.indexed() == {ds.SOPInstanceUID: "FAKEPACS" for ds in wanted}
    assert await telerad.indexed(ORG_B) == {}
    assert len(telerad.storage.files()) == 3
    assert (await telerad.call("GET", f"/remote-pacs/jobs/{job['id']}", organization_id=ORG_B))[0] == 404
    assert [j["id"] for j in (await telerad.call("GET", "/remote-pacs/jobs"))[1]["items"]] == [job["id"]]


async def test_a_c_move_the_remote_pacs_cannot_deliver_fails_with_its_reason(
        telerad: Telerad, pacs: Callable[..., FakePacs]) -> None:
    study = a_study(2)
    remote = await telerad.register(pacs(instances=study, destinations={}))

    _, job = await telerad.call("POST", f"/remote-pacs/{remote['id']}/retrieve", json={
        "study_instance_uid": study[0].StudyInstanceUID, "method": "move"})
    done = await telerad.finished(job)

    assert (done["status"], done["final_status"]) == ("failed", 0xA801)
    assert "Move Destination unknown" in done["detail"]
    assert await telerad.indexed() == {}


async def test_a_c_get_brings_a_series_back_and_says_why_an_instance_was_refused(
        telerad: Telerad, pacs: Callable[..., FakePacs]) -> None:
    study, series = generate_uid(ROOT), generate_uid(ROOT)
    ct = [image(study, series, n) for n in (1, 2)]
    mr_series = generate_uid(ROOT)
    mr = [image(study, mr_series, n, MRImageStorage, modality="MR") for n in (1, 2)]
    mr[1].compress(RLELossless)
    broken = image(study, None, 9, MRImageStorage)  # no Series Instance UID: refused as a C-STORE would be
    remote = await telerad.register(pacs(instances=[*ct, *mr, broken]))

    _, whole = await telerad.call("POST", f"/remote-pacs/{remote['id']}/retrieve", json={
        "study_instance_uid": study, "method": "get"})
    done = await telerad.finished(whole)

    assert (done["operation"], done["status"], done["completed"], done["failed"]) == (
        "get", "completed_with_failures", 4, 1)
    assert done["final_status"] == 0xB000
    [failure] = done["failures"]
    assert failure["sop_instance_uid"] == broken.SOPInstanceUID
    assert failure["reason"].startswith("refused (0xA900)") and "series_instance_uid" in failure["reason"]
    assert set(await telerad.indexed()) == {ds.SOPInstanceUID for ds in [*ct, *mr]}
    async with telerad.db.session() as session:
        syntaxes = dict((await session.execute(select(InstanceRow.sop_instance_uid, InstanceRow.transfer_syntax_uid)
                                               )).all())
    assert syntaxes[mr[1].SOPInstanceUID] == RLELossless  # kept as the remote sent it

    # again, one series: what is held already is kept once
    _, one = await telerad.call("POST", f"/remote-pacs/{remote['id']}/retrieve", json={
        "study_instance_uid": study, "series_instance_uid": series, "method": "get"})
    again = await telerad.finished(one)
    assert (again["status"], again["completed"], again["series_instance_uid"]) == ("completed", 2, series)
    assert len(await telerad.indexed()) == 4


async def test_retrieving_needs_the_organisations_remote_pacs_and_uids(telerad: Telerad,
                                                                       pacs: Callable[..., FakePacs]) -> None:
    remote = await telerad.register(pacs())
    retrieve = f"/remote-pacs/{remote['id']}/retrieve"
    assert (await telerad.call("POST", retrieve, organization_id=ORG_B,
                               json={"study_instance_uid": "1.2.3"}))[0] == 404
    for body in ({}, {"study_instance_uid": "1.2.x"}, {"study_instance_uid": "1.2", "method": "fetch"},
                 {"study_instance_uid": "1.2", "series_instance_uid": "x"}):
        assert (await telerad.call("POST", retrieve, json=body))[0] == 422, body
    assert (await telerad.call("GET", "/remote-pacs/jobs"))[1]["items"] == []


# -- sending -------------------------------------------------------------------------------------------------------

def store_from_a_modality(port: int, instances: list[Dataset]) -> None:
    ae = AE(ae_title="MODALITY")
    for syntax in {str(ds.file_meta.TransferSyntaxUID) for ds in instances}:
        ae.add_requested_context(CTImageStorage, syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title="TELERAD")
    assert assoc.is_established
    try:
        assert [int(assoc.send_c_store(ds).Status) for ds in instances] == [0] * len(instances)
    finally:
        assoc.release()


async def test_a_study_is_sent_as_stored_and_decompressed_only_for_a_remote_that_needs_it(
        telerad: Telerad, pacs: Callable[..., FakePacs]) -> None:
    await telerad.modalities.register(ORG_A, "MODALITY", "127.0.0.1")
    study = a_study(3)
    study[2].compress(RLELossless)
    await asyncio.to_thread(store_from_a_modality, telerad.scp.port, study)
    taking_all = pacs(ae_title="ALLPACS")
    uncompressed_only = pacs(ae_title="PLAINPACS", storage_syntaxes=[ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    for fake in (taking_all, uncompressed_only):
        remote = await telerad.register(fake)
        status, job = await telerad.call("POST", f"/remote-pacs/{remote['id']}/send", TECHNICIAN, json={
            "study_instance_uid": study[0].StudyInstanceUID})
        assert (status, job["operation"], job["remaining"]) == (202, "send", 3)
        done = await telerad.finished(job)
        assert (done["status"], done["completed"], done["failed"], done["remaining"]) == ("completed", 3, 0, 0)

    assert {ds.SOPInstanceUID for ds in taking_all.received} == {ds.SOPInstanceUID for ds in study}
    sent = {ds.SOPInstanceUID: ds for ds in taking_all.received}
    assert sent[study[2].SOPInstanceUID].file_meta.TransferSyntaxUID == RLELossless
    plain = {ds.SOPInstanceUID: ds for ds in uncompressed_only.received}
    assert set(plain) == set(sent)
    decompressed = plain[study[2].SOPInstanceUID]
    assert decompressed.file_meta.TransferSyntaxUID != RLELossless
    assert decompressed.PixelData == bytes(range(32))
    assert plain[study[0].SOPInstanceUID].PixelData == study[0].PixelData


async def test_sending_what_the_organisation_does_not_hold_is_404(telerad: Telerad,
                                                                  pacs: Callable[..., FakePacs]) -> None:
    await telerad.modalities.register(ORG_A, "MODALITY", "127.0.0.1")
    study = a_study(1)
    await asyncio.to_thread(store_from_a_modality, telerad.scp.port, study)
    remote_a = await telerad.register(pacs())
    remote_b = await telerad.register(pacs(ae_title="BPACS"), organization_id=ORG_B)

    assert (await telerad.call("POST", f"/remote-pacs/{remote_a['id']}/send", json={
        "study_instance_uid": generate_uid(ROOT)}))[0] == 404
    assert (await telerad.call("POST", f"/remote-pacs/{remote_b['id']}/send", organization_id=ORG_B, json={
        "study_instance_uid": study[0].StudyInstanceUID}))[0] == 404  # A's study
    assert (await telerad.call("POST", f"/remote-pacs/{remote_a['id']}/send", organization_id=ORG_B, json={
        "study_instance_uid": study[0].StudyInstanceUID}))[0] == 404  # A's remote PACS
    assert (await telerad.call("GET", "/remote-pacs/jobs"))[1]["items"] == []


async def test_a_send_to_a_remote_pacs_that_is_gone_fails_each_instance_with_the_reason(
        telerad: Telerad) -> None:
    await telerad.modalities.register(ORG_A, "MODALITY", "127.0.0.1")
    study = a_study(2)
    await asyncio.to_thread(store_from_a_modality, telerad.scp.port, study)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _, remote = await telerad.call("POST", "/remote-pacs", json={"ae_title": "GONE", "host": "127.0.0.1",
                                                                 "port": port})
    _, job = await telerad.call("POST", f"/remote-pacs/{remote['id']}/send", json={
        "study_instance_uid": study[0].StudyInstanceUID})
    done = await telerad.finished(job)

    assert (done["status"], done["completed"], done["failed"]) == ("failed", 0, 2)
    assert {f["sop_instance_uid"] for f in done["failures"]} == {ds.SOPInstanceUID for ds in study}
    assert "could not associate" in done["detail"]


# -- jobs that outlive their process -------------------------------------------------------------------------------

async def test_jobs_whose_process_is_gone_are_interrupted_and_live_ones_are_not(telerad: Telerad) -> None:
    now = datetime.now(UTC)
    rows = {name: RemoteJobRow(organization_id=ORG_A, remote_pacs_id=uuid4(), remote_ae_title="X", operation="move",
                               status=status, study_instance_uid="1.2", created_at=now, heartbeat_at=beat)
            for name, status, beat in (("stale", "running", now - timedelta(minutes=1)),
                                       ("queued", "queued", now - timedelta(minutes=1)),
                                       ("alive", "running", now), ("done", "completed", now - timedelta(hours=1)))}
    async with telerad.db.session() as session:
        session.add_all(rows.values())
        await session.commit()

    assert await telerad.exchange.runner.interrupt_stale() == 2
    jobs = {name: await telerad.exchange.jobs.get(ORG_A, row.id) for name, row in rows.items()}
    assert {name: job.status.value for name, job in jobs.items()} == {
        "stale": "interrupted", "queued": "interrupted", "alive": "running", "done": "completed"}
    assert jobs["stale"].detail is not None and "heartbeat" in jobs["stale"].detail


async def test_a_stopping_service_aborts_its_running_jobs_and_marks_them_interrupted(
        telerad: Telerad, pacs: Callable[..., FakePacs]) -> None:
    study = a_study(3)
    fake = pacs(instances=study, hold_moves=threading.Event())
    remote = await telerad.register(fake)
    _, job = await telerad.call("POST", f"/remote-pacs/{remote['id']}/retrieve", json={
        "study_instance_uid": study[0].StudyInstanceUID})
    keep_alive = asyncio.create_task(telerad.exchange.runner.keep_alive())
    try:
        assert await asyncio.to_thread(fake.move_started.wait, 10)
        await asyncio.sleep(0.5)  # a heartbeat or two
        running = await telerad.exchange.jobs.get(ORG_A, UUID(job["id"]))
        assert running.status.value == "running" and running.started_at is not None
        await telerad.exchange.runner.stop()
    finally:
        keep_alive.cancel()
        assert fake.hold_moves is not None
        fake.hold_moves.set()

    stopped = await telerad.exchange.jobs.get(ORG_A, UUID(job["id"]))
    assert stopped.status.value == "interrupted" and stopped.finished_at is not None
    assert stopped.detail == "the service stopped before the job finished"

