"""C-FIND, C-MOVE and C-GET over real associations: pynetdicom as the SCU, SQLite and files on disk behind the SCP."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import ip_network
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from dicom_ingest.adapters.index_queries import SqlIndexQueries
from dicom_ingest.adapters.storage import FileStorage
from dicom_ingest.config import DicomIngestSettings
from dicom_ingest.domain.modalities import Modality, ModalityDirectory
from dicom_ingest.domain.model import StoreInstance
from dicom_ingest.entrypoints.qr_scp import QueryRetrieveSCP
from dicom_ingest.entrypoints.scp import StorageSCP
from dicom_ingest.service_layer.handlers import index_instance
from radcommon.db import Database
from radcommon.uow import SqlUnitOfWork

MIGRATIONS = Path(__file__).parents[2] / "src" / "dicom_ingest" / "migrations"
ORG_A, ORG_B = UUID(int=0xA), UUID(int=0xB)
ROOT = "1.2.826.0.1.3680043.10.1234."


def registration(ae_title: str, organization_id: UUID, host: str, port: int | None = None) -> Modality:
    return Modality(id=uuid4(), organization_id=organization_id, ae_title=ae_title, host=ip_network(host),
                    description="", created_at=datetime.now(UTC), port=port)


def ct(study_uid: str, series_uid: str, number: int, patient_id: str = "PAT1") -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid(ROOT)
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = patient_id, "Doe^Jane", "19700101", "F"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20240115", "101500", "ACC1", "1"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, number
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = bytes(32)
    return ds


@dataclass
class Archive:
    scp: StorageSCP
    storage: FileStorage
    study_uid: str
    instances: list[Dataset]
    received: list[Dataset] = field(default_factory=list)  # by the move destination


@pytest.fixture
async def archive(tmp_path: Path) -> AsyncIterator[Archive]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'dicom_ingest.db'}")
    await db.ensure_created()
    await db.migrate(MIGRATIONS)
    storage = FileStorage(tmp_path / "files", fsync=False)
    received: list[Dataset] = []

    def store(event: Any) -> int:
        received.append(event.dataset)
        return 0x0000

    destination = AE(ae_title="DEST")
    destination.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
    server = destination.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, store)])
    dest_port = server.server_address[1]
    directory = ModalityDirectory([
        registration("QR-SCU", ORG_A, "127.0.0.1"), registration("DEST", ORG_A, "127.0.0.1", dest_port),
        registration("QR-B", ORG_B, "127.0.0.1"), registration("ELSEWHERE", ORG_B, "127.0.0.1", dest_port)])

    async def index(command: StoreInstance) -> str:
        async with SqlUnitOfWork(db) as uow:
            return await index_instance(command, uow)

    async def keep(_: str) -> None:
        return None

    scp = StorageSCP(DicomIngestSettings(dicom_port=0), storage, index, keep, directory.match,
                     QueryRetrieveSCP("TELERAD", storage, SqlIndexQueries(db), directory.destination, page_size=2))
    scp.start()
    study_uid = generate_uid(ROOT)
    series_uid = generate_uid(ROOT)
    instances = [ct(study_uid, series_uid, n) for n in (1, 2, 3)]
    await asyncio.to_thread(send, scp.port, instances)
    try:
        yield Archive(scp, storage, study_uid, instances, received)
    finally:
        scp.stop()
        server.shutdown()
        await db.dispose()


def send(port: int, instances: list[Dataset]) -> None:
    ae = AE(ae_title="QR-SCU")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="TELERAD")
    assert assoc.is_established
    try:
        assert [assoc.send_c_store(ds).Status for ds in instances] == [0] * len(instances)
    finally:
        assoc.release()


def find(port: int, identifier: Dataset, model: str = StudyRootQueryRetrieveInformationModelFind,
         calling: str = "QR-SCU") -> list[tuple[int, Dataset | None]]:
    ae = AE(ae_title=calling)
    ae.add_requested_context(model)
    assoc = ae.associate("127.0.0.1", port, ae_title="TELERAD")
    assert assoc.is_established
    try:
        return [(int(status.Status), found) for status, found in assoc.send_c_find(identifier, model)]
    finally:
        assoc.release()


def query(**keys: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


async def test_c_find_answers_every_level_with_the_requested_keys(archive: Archive) -> None:
    answers = await asyncio.to_thread(find, archive.scp.port, query(
        QueryRetrieveLevel="STUDY", PatientName="doe*", StudyDate="20240101-", ModalitiesInStudy="",
        NumberOfStudyRelatedInstances="", StudyDescription="", RetrieveAETitle=""))

    [(pending, study), (success, none)] = answers
    assert (pending, success, none) == (0xFF00, 0x0000, None)
    assert study is not None
    assert (study.StudyInstanceUID, str(study.PatientName), study.StudyDate) == (
        archive.study_uid, "Doe^Jane", "20240115")
    assert study.ModalitiesInStudy == "CT" and study.NumberOfStudyRelatedInstances == 3
    assert study.RetrieveAETitle == "TELERAD" and study.StudyDescription in ("", None)

    series_uid = archive.instances[0].SeriesInstanceUID
    images = await asyncio.to_thread(find, archive.scp.port, query(
        QueryRetrieveLevel="IMAGE", PatientID="PAT1", StudyInstanceUID=archive.study_uid,
        SeriesInstanceUID=series_uid, SOPInstanceUID="", InstanceNumber=""),
        PatientRootQueryRetrieveInformationModelFind)
    # three matches over two pages of two
    assert [(s, d.InstanceNumber if d else None) for s, d in images] == [(0xFF00, 1), (0xFF00, 2), (0xFF00, 3),
                                                                         (0x0000, None)]
    assert [d.SOPInstanceUID for _, d in images if d] == [ds.SOPInstanceUID for ds in archive.instances]


async def test_c_find_flags_keys_it_cannot_match_and_refuses_a_broken_hierarchy(archive: Archive) -> None:
    flagged = await asyncio.to_thread(find, archive.scp.port, query(
        QueryRetrieveLevel="STUDY", StudyInstanceUID="", OtherPatientIDs="SOMETHING"))
    assert [s for s, _ in flagged] == [0xFF01, 0x0000]
    assert flagged[0][1] is not None and flagged[0][1].OtherPatientIDs in ("", None)

    [(status, none)] = await asyncio.to_thread(find, archive.scp.port, query(
        QueryRetrieveLevel="SERIES", Modality="CT"))
    assert (status, none) == (0xA900, None)

    [(status, _)] = await asyncio.to_thread(find, archive.scp.port, query(QueryRetrieveLevel="PATIENT"))
    assert status == 0xA900  # the Study Root model has no PATIENT level


async def test_another_organisation_finds_nothing(archive: Archive) -> None:
    answers = await asyncio.to_thread(find, archive.scp.port, query(QueryRetrieveLevel="STUDY", StudyInstanceUID=""),
                                      calling="QR-B")
    assert answers == [(0x0000, None)]


def get(port: int, identifier: Dataset, calling: str = "QR-SCU") -> tuple[list[Dataset], list[Dataset]]:
    received: list[Dataset] = []

    def store(event: Any) -> int:
        received.append(event.dataset)
        return 0x0000

    ae = AE(ae_title=calling)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="TELERAD", ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, store)])
    assert assoc.is_established
    try:
        responses = [status for status, _ in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)]
    finally:
        assoc.release()
    return responses, received


async def test_c_get_sends_the_study_back_on_the_same_association(archive: Archive) -> None:
    responses, received = await asyncio.to_thread(get, archive.scp.port, query(
        QueryRetrieveLevel="STUDY", StudyInstanceUID=archive.study_uid))

    assert sorted(ds.SOPInstanceUID for ds in received) == sorted(ds.SOPInstanceUID for ds in archive.instances)
    assert [(r.Status, r.NumberOfRemainingSuboperations) for r in responses[:-1]] == [
        (0xFF00, 2), (0xFF00, 1), (0xFF00, 0)]
    final = responses[-1]
    assert (final.Status, final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (0, 3, 0)


async def test_a_lost_file_fails_its_sub_operation_and_the_rest_go_through(archive: Archive) -> None:
    lost = archive.instances[1]
    [path] = [p for p in archive.storage.files() if lost.SOPInstanceUID.encode() in p.read_bytes()]
    path.unlink()

    responses, received = await asyncio.to_thread(get, archive.scp.port, query(
        QueryRetrieveLevel="STUDY", StudyInstanceUID=archive.study_uid))

    assert len(received) == 2
    final = responses[-1]
    assert (final.Status, final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (0xB000, 2, 1)


async def test_c_get_of_another_organisations_study_sends_nothing(archive: Archive) -> None:
    responses, received = await asyncio.to_thread(get, archive.scp.port, query(
        QueryRetrieveLevel="STUDY", StudyInstanceUID=archive.study_uid), "QR-B")

    assert received == []
    assert [(r.Status, r.NumberOfCompletedSuboperations) for r in responses] == [(0, 0)]


def move(port: int, identifier: Dataset, destination: str, calling: str = "QR-SCU") -> list[Dataset]:
    ae = AE(ae_title=calling)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", port, ae_title="TELERAD")
    assert assoc.is_established
    try:
        return [status for status, _ in assoc.send_c_move(identifier, destination,
                                                          StudyRootQueryRetrieveInformationModelMove)]
    finally:
        assoc.release()


async def test_c_move_sends_the_study_to_a_registered_destination(archive: Archive) -> None:
    responses = await asyncio.to_thread(move, archive.scp.port, query(
        QueryRetrieveLevel="STUDY", StudyInstanceUID=archive.study_uid), "DEST")

    assert sorted(ds.SOPInstanceUID for ds in archive.received) == sorted(
        ds.SOPInstanceUID for ds in archive.instances)
    final = responses[-1]
    assert (final.Status, final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (0, 3, 0)
    assert [r.Status for r in responses[:-1]] == [0xFF00] * 3


async def test_c_move_to_a_destination_the_organisation_has_not_registered_is_refused(archive: Archive) -> None:
    identifier = query(QueryRetrieveLevel="STUDY", StudyInstanceUID=archive.study_uid)
    for destination in ("NOWHERE", "ELSEWHERE", "QR-SCU"):  # unknown; another organisation's; no port
        [response] = await asyncio.to_thread(move, archive.scp.port, identifier, destination)
        assert response.Status == 0xA801
    assert archive.received == []


async def test_c_move_of_an_identifier_without_unique_keys_is_refused(archive: Archive) -> None:
    [response] = await asyncio.to_thread(move, archive.scp.port, query(
        QueryRetrieveLevel="STUDY", PatientName="Doe*"), "DEST")

    assert response.Status == 0xA900
    assert archive.received == []



class FakeEvent:
    """What the handlers read of a pynetdicom event; cancelled once ``cancel_after`` answers were taken."""

    def __init__(self, identifier: Dataset, abstract_syntax: str, cancel_after: int) -> None:
        self.identifier, self.cancel_after, self.taken = identifier, cancel_after, 0
        self.context = type("Context", (), {"abstract_syntax": abstract_syntax})()
        requestor = type("Requestor", (), {"ae_title": "QR-SCU", "address": "127.0.0.1"})()
        self.assoc = type("Assoc", (), {"requestor": requestor})()
        self.move_destination = "DEST"

    @property
    def is_cancelled(self) -> bool:
        return self.taken >= self.cancel_after


class FakeIndex:
    async def find(self, organization_id: UUID, query: Any) -> list[dict[str, Any]]:
        return [{"StudyInstanceUID": f"{ROOT}{n}"} for n in range(query.offset, min(query.offset + query.limit, 5))]

    async def instances(self, organization_id: UUID, query: Any, limit: int) -> list[Any]:
        raise AssertionError("not reached")


def test_a_cancelled_c_find_stops_between_matches(tmp_path: Path) -> None:
    scp = QueryRetrieveSCP("TELERAD", FileStorage(tmp_path), FakeIndex(), lambda *_: None, page_size=2,
                           run=asyncio.run)
    event = FakeEvent(query(QueryRetrieveLevel="STUDY", StudyInstanceUID=""),
                      StudyRootQueryRetrieveInformationModelFind, cancel_after=3)
    answers = []
    for status, identifier in scp.find(event, registration("QR-SCU", ORG_A, "127.0.0.1")):
        answers.append((status, None if identifier is None else identifier.StudyInstanceUID))
        event.taken += 1

    assert answers == [(0xFF00, f"{ROOT}0"), (0xFF00, f"{ROOT}1"), (0xFF00, f"{ROOT}2"), (0xFE00, None)]
    uncancelled = FakeEvent(event.identifier, StudyRootQueryRetrieveInformationModelFind, cancel_after=99)
    assert len(list(scp.find(uncancelled, registration("QR-SCU", ORG_A, "127.0.0.1")))) == 5  # three pages
