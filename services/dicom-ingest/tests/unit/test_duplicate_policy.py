"""A second copy of a SOP Instance UID: kept first or overwritten by policy, never stored twice (SQLite, PostgreSQL)."""

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE

from dicom_ingest.adapters.storage import FileStorage
from dicom_ingest.adapters.tables import InstanceRow, SeriesRow, StudyRow
from dicom_ingest.config import DicomIngestSettings
from dicom_ingest.dicom.attributes import InstanceAttributes, StoreStatusValues
from dicom_ingest.domain.modalities import Modality
from dicom_ingest.domain.model import (
    DuplicatePolicy,
    IndexOutcome,
    IndexOutcomeValues,
    StoreInstance,
    unreferenced_storage_key,
)
from dicom_ingest.entrypoints.scp import StorageSCP
from dicom_ingest.service_layer.batch_index import BatchIndexer, DatabaseWriter
from dicom_ingest.service_layer.handlers import ConcurrentlyIndexed, announce_settled_studies, index_instances
from dicom_ingest.service_layer.remote import ReceivedInstances
from dicom_ingest.service_layer.stow import FailureReasonValues, StowPorts, store_instance
from radcommon.db import Database
from radcommon.outbox import outbox_table
from radcommon.uow import SqlUnitOfWork
from support.studies import ORG_ROOT, ct_instance

ORG = UUID(int=0xA)
CT, ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1"
STORED, DUPLICATE, REPLACED = IndexOutcomeValues.STORED, IndexOutcomeValues.DUPLICATE, IndexOutcomeValues.REPLACED
SUPERSEDED, CONFLICT = IndexOutcomeValues.SUPERSEDED, IndexOutcomeValues.CONFLICT
_instances: sa.Table = InstanceRow.__table__  # type: ignore[attr-defined]
_i, _st, _se = _instances.c, StudyRow.__table__.c, SeriesRow.__table__.c  # type: ignore[attr-defined]


def uid(*parts: int) -> str:
    return "1.2.826.0.1.3680043.10.1234.88." + ".".join(map(str, parts))


def copy(key: str, *, study: int = 1, series: int = 1, instance: int = 1, sop_class_uid: str = CT,
         instance_number: int | None = 1, number_of_frames: int | None = None, size: int = 100,
         transfer_syntax_uid: str = "1.2.840.10008.1.2.1") -> StoreInstance:
    """A copy of SOP instance ``instance`` under the storage key ``key`` (one hex digit, repeated)."""
    attributes = InstanceAttributes(
        sop_class_uid=sop_class_uid, sop_instance_uid=uid(instance), study_instance_uid=uid(study, 0),
        series_instance_uid=uid(study, series, 0), patient_id="PAT1", patient_name="Doe^Jane", modality="CT",
        body_part_examined="CHEST", series_number=series, instance_number=instance_number,
        number_of_frames=number_of_frames)
    return StoreInstance(ORG, attributes, transfer_syntax_uid, key * 64, size, "CT1")


async def index(db: Database, policy: DuplicatePolicy, *commands: StoreInstance) -> list[str]:
    writer = BatchIndexer(DatabaseWriter(db, policy))
    try:
        if len(commands) == 1:
            return [await writer(commands[0])]
        async with db.engine.begin() as conn:  # one batch, in one transaction
            return await index_instances(commands, conn, policy)
    finally:
        await writer.close()


async def instance_row(db: Database, instance: int = 1) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        [row] = (await conn.execute(sa.select(_instances).where(_i.sop_instance_uid == uid(instance)))).all()
    return dict(row._mapping)


async def counts(db: Database) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        studies = (await conn.execute(sa.select(_st.study_instance_uid, _st.number_of_series, _st.number_of_instances,
                                                _st.revision))).all()
        series = (await conn.execute(sa.select(_se.series_instance_uid, _se.number_of_instances))).all()
        instances = (await conn.execute(sa.select(sa.func.count()).select_from(_instances))).scalar_one()
    return {"studies": sorted(map(tuple, studies)), "series": sorted(map(tuple, series)), "instances": instances}


async def announce(db: Database) -> list[tuple[str, int]]:
    """Announce what has settled (at once); the routing keys and instance counts of what went out."""
    async with SqlUnitOfWork(db) as uow:
        await announce_settled_studies(uow, timedelta(0))
    async with db.engine.begin() as conn:
        rows = (await conn.execute(sa.select(outbox_table.c.routing_key, outbox_table.c.body)
                                   .where(outbox_table.c.sent_at.is_(None)).order_by(outbox_table.c.id))).all()
        await conn.execute(outbox_table.update().values(sent_at=datetime.now(UTC)))
    return [(key, json.loads(body)["number_of_instances"]) for key, body in rows]


RECEIVED, UPDATED = "dicom-ingest.study.received.v1", "dicom-ingest.study.updated.v1"


# --- the index ----------------------------------------------------------------------------------------------------

async def test_keep_first_keeps_the_first_copy_and_announces_nothing_more(db: Database) -> None:
    assert await index(db, "keep_first", copy("1")) == [STORED]
    assert await announce(db) == [(RECEIVED, 1)]
    assert await index(db, "keep_first", copy("2", instance_number=7)) == [DUPLICATE]
    assert await index(db, "keep_first", copy("3", study=9)) == [DUPLICATE]  # another study: kept first too
    row = await instance_row(db)
    assert (row["storage_key"], row["instance_number"]) == ("1" * 64, 1)
    assert await announce(db) == []
    assert await counts(db) == {"studies": [(uid(1, 0), 1, 1, 0)], "series": [(uid(1, 1, 0), 1)], "instances": 1}


async def test_overwrite_replaces_the_held_copy_in_place_and_announces_the_study_again(db: Database) -> None:
    assert await index(db, "overwrite", copy("1")) == [STORED]
    first = await instance_row(db)
    assert await announce(db) == [(RECEIVED, 1)]

    newer = copy("2", sop_class_uid=ENHANCED_CT, instance_number=7, number_of_frames=3, size=250,
                 transfer_syntax_uid="1.2.840.10008.1.2")
    [outcome] = await index(db, "overwrite", newer)
    assert outcome == REPLACED
    assert isinstance(outcome, IndexOutcome) and outcome.released_storage_key == "1" * 64
    assert unreferenced_storage_key(outcome, "2" * 64) == "1" * 64
    row = await instance_row(db)
    assert {k: row[k] for k in ("id", "storage_key", "size_bytes", "transfer_syntax_uid", "sop_class_uid",
                                "instance_number", "number_of_frames")} == {
        "id": first["id"], "storage_key": "2" * 64, "size_bytes": 250, "transfer_syntax_uid": "1.2.840.10008.1.2",
        "sop_class_uid": ENHANCED_CT, "instance_number": 7, "number_of_frames": 3}
    assert row["received_at"] > first["received_at"]
    assert await counts(db) == {"studies": [(uid(1, 0), 1, 1, 1)], "series": [(uid(1, 1, 0), 1)], "instances": 1}
    assert await announce(db) == [(UPDATED, 1)]  # the same count, announced once more
    assert await announce(db) == []


async def test_overwrite_by_identical_bytes_changes_nothing(db: Database) -> None:
    assert await index(db, "overwrite", copy("1")) == [STORED]
    assert await announce(db) == [(RECEIVED, 1)]
    [outcome] = await index(db, "overwrite", copy("1"))
    assert outcome == DUPLICATE
    assert unreferenced_storage_key(outcome, "1" * 64) == "1" * 64  # discarded only if no row points at it
    assert await announce(db) == []


async def test_overwrite_in_one_batch_the_last_copy_wins(db: Database) -> None:
    assert await index(db, "overwrite", copy("1"), copy("7", instance=2), copy("2")) == [SUPERSEDED, STORED, STORED]
    assert (await instance_row(db))["storage_key"] == "2" * 64
    outcomes = await index(db, "overwrite", copy("3"), copy("4"), copy("5", instance=2))
    assert outcomes == [SUPERSEDED, REPLACED, REPLACED]
    assert [unreferenced_storage_key(o, k * 64) for o, k in zip(outcomes, "345", strict=True)] == [
        "3" * 64, "2" * 64, "7" * 64]
    assert ((await instance_row(db))["storage_key"], (await instance_row(db, 2))["storage_key"]) == ("4" * 64, "5" * 64)
    assert await counts(db) == {"studies": [(uid(1, 0), 1, 2, 2)], "series": [(uid(1, 1, 0), 2)], "instances": 2}


async def test_overwrite_never_moves_an_instance_to_another_study_or_series(db: Database) -> None:
    assert await index(db, "overwrite", copy("1")) == [STORED]
    assert await announce(db) == [(RECEIVED, 1)]
    assert await index(db, "overwrite", copy("2", study=9)) == [CONFLICT]
    assert await index(db, "overwrite", copy("3", series=2)) == [CONFLICT]
    assert unreferenced_storage_key(CONFLICT, "3" * 64) == "3" * 64
    # in one batch, the first copy of a new instance fixes where it belongs
    assert await index(db, "overwrite", copy("4", instance=2), copy("5", instance=2, series=2), copy("6")) == [
        STORED, CONFLICT, REPLACED]
    assert (await instance_row(db))["storage_key"] == "6" * 64
    assert (await instance_row(db, 2))["storage_key"] == "4" * 64
    assert await counts(db) == {"studies": [(uid(1, 0), 1, 2, 1)], "series": [(uid(1, 1, 0), 2)], "instances": 2}


@pytest.mark.integration
async def test_an_overwrite_waits_for_the_held_row_and_releases_what_it_found(postgres: Database) -> None:
    db = postgres
    assert await index(db, "overwrite", copy("0")) == [STORED]
    writer = BatchIndexer(DatabaseWriter(db, "overwrite"))
    async with db.engine.connect() as first:
        transaction = await first.begin()
        [replaced] = await index_instances([copy("a")], first, "overwrite")  # holds the row's lock
        assert replaced.released_storage_key == "0" * 64  # type: ignore[attr-defined]
        second = asyncio.ensure_future(writer(copy("b")))
        await asyncio.sleep(0.5)
        assert not second.done()  # waiting for the row
        await transaction.commit()
    outcome = await second
    await writer.close()
    assert outcome == REPLACED and outcome.released_storage_key == "a" * 64  # type: ignore[attr-defined]
    assert (await instance_row(db))["storage_key"] == "b" * 64


@pytest.mark.integration
async def test_an_insert_lost_to_another_process_is_written_again_as_a_replacement(postgres: Database) -> None:
    db = postgres
    writer = BatchIndexer(DatabaseWriter(db, "overwrite"))
    async with db.engine.connect() as first:
        transaction = await first.begin()
        assert await index_instances([copy("a")], first, "overwrite") == [STORED]
        second = asyncio.ensure_future(writer(copy("b")))
        await asyncio.sleep(0.5)
        assert not second.done()  # waiting for the study the first transaction creates
        await transaction.commit()
    outcome = await second
    await writer.close()
    assert outcome == REPLACED and outcome.released_storage_key == "a" * 64  # type: ignore[attr-defined]
    assert (await instance_row(db))["storage_key"] == "b" * 64
    assert await counts(db) == {"studies": [(uid(1, 0), 1, 1, 1)], "series": [(uid(1, 1, 0), 1)], "instances": 1}


async def test_a_lost_race_is_retried_by_the_batch_writer() -> None:
    class RacingWriter:
        def __init__(self) -> None:
            self.calls = 0

        async def __call__(self, commands: Sequence[StoreInstance]) -> list[str]:
            self.calls += 1
            if self.calls == 1:
                raise ConcurrentlyIndexed("inserted meanwhile")
            return [IndexOutcome(REPLACED, "a" * 64)]

        async def close(self) -> None:
            pass

    racing = RacingWriter()
    writer = BatchIndexer(racing)
    assert await writer(copy("b")) == REPLACED
    await writer.close()
    assert racing.calls == 2


# --- files: the callers keep one file per instance ---------------------------------------------------------------

def a_file(study_uid: str, series_uid: str, sop_instance_uid: str, pixel: int) -> bytes:
    ds = ct_instance(study_uid, series_uid, 1, 1, bytes([pixel]) * 32, 4, "ACC1", "PAT1", "Doe^Jane")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    out = DicomBytesIO()
    ds.save_as(out, enforce_file_format=True)
    return bytes(out.getvalue())


def discarder(db: Database, storage: FileStorage) -> Any:
    async def discard_if_unreferenced(key: str) -> None:  # as the service's
        async with db.engine.connect() as conn:
            if (await conn.execute(sa.select(_i.id).where(_i.storage_key == key).limit(1))).first() is None:
                storage.delete(key)
    return discard_if_unreferenced


async def test_copies_overwriting_one_instance_at_once_leave_one_row_and_its_file(db: Database,
                                                                                   tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "files", fsync=False)
    study, series, sop = generate_uid(ORG_ROOT), generate_uid(ORG_ROOT), generate_uid(ORG_ROOT)
    # two processes on PostgreSQL (a writer and a connection each); one process, one writer on SQLite
    writers = [BatchIndexer(DatabaseWriter(db, "overwrite")) for _ in range(2 if db.is_postgres else 1)]
    ports = [StowPorts(storage, w, discarder(db, storage)) for w in writers]
    try:
        for round_ in range(4):
            files = [a_file(study, series, sop, 8 * round_ + n) for n in range(8)]
            results = await asyncio.gather(*(store_instance(data, ORG, ports[n % len(ports)])
                                             for n, data in enumerate(files)))
            assert all(r.stored for r in results)
            [key] = [(await instance_row_by(db, sop))["storage_key"]]
            assert [p.name for p in storage.files()] == [key]  # one file, the one the row points at
            assert storage.get(key) in files
    finally:
        for w in writers:
            await w.close()


async def instance_row_by(db: Database, sop_instance_uid: str) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        [row] = (await conn.execute(sa.select(_instances).where(_i.sop_instance_uid == sop_instance_uid)))
    return dict(row._mapping)


class FakeIndex:
    def __init__(self, outcome: str) -> None:
        self.outcome = outcome

    async def __call__(self, command: StoreInstance) -> str:
        return self.outcome


@pytest.mark.parametrize(("outcome", "kept", "failure"), [
    (IndexOutcome(REPLACED, "old"), {"new"}, None),
    (SUPERSEDED, {"old"}, None),
    (DUPLICATE, {"old"}, None),
    (CONFLICT, {"old"}, FailureReasonValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS),
])
async def test_stow_discards_the_copy_not_kept_or_the_one_replaced(tmp_path: Path, outcome: str, kept: set[str],
                                                                  failure: FailureReasonValues | None) -> None:
    storage = FileStorage(tmp_path / "files", fsync=False)
    study, series, sop = generate_uid(ORG_ROOT), generate_uid(ORG_ROOT), generate_uid(ORG_ROOT)
    old, new = a_file(study, series, sop, 1), a_file(study, series, sop, 2)
    names = {storage.put(old): "old", FileStorage(tmp_path / "x", fsync=False).put(new): "new"}
    if isinstance(outcome, IndexOutcome):
        outcome = IndexOutcome(REPLACED, next(k for k, v in names.items() if v == "old"))

    async def discard(key: str) -> None:
        storage.delete(key)

    result = await store_instance(new, ORG, StowPorts(storage, FakeIndex(outcome), discard))
    assert result.failure_reason == failure
    assert {names[p.name] for p in storage.files()} == kept


# --- C-STORE, over a real association ------------------------------------------------------------------------------

def encode(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = False, True
    write_dataset(fp, ds)
    return bytes(fp.getvalue())


def c_store(port: int, *datasets: Dataset) -> list[int]:
    ae = AE(ae_title="CT1")
    ae.add_requested_context(CT, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="TELERAD")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


@pytest.mark.parametrize("policy", ["keep_first", "overwrite"])
async def test_c_store_keeps_the_file_of_the_copy_the_policy_keeps(db: Database, tmp_path: Path,
                                                                   policy: DuplicatePolicy) -> None:
    storage = FileStorage(tmp_path / "files", fsync=False)
    writer = BatchIndexer(DatabaseWriter(db, policy))
    modality = Modality(uuid4(), ORG, "CT1", None, "", datetime.now(UTC))
    scp = StorageSCP(DicomIngestSettings(dicom_port=0), storage, writer, discarder(db, storage),
                     lambda ae_title, address: modality)
    scp.start()
    try:
        study, series = generate_uid(ORG_ROOT), generate_uid(ORG_ROOT)
        first = ct_instance(study, series, 1, 1, bytes(32), 4, "ACC1", "PAT1", "Doe^Jane")
        second = ct_instance(study, series, 1, 1, bytes([9]) * 32, 4, "ACC1", "PAT1", "Doe^Jane")
        second.SOPInstanceUID = first.SOPInstanceUID
        second.InstanceNumber = 5
        elsewhere = ct_instance(generate_uid(ORG_ROOT), series, 1, 1, bytes([7]) * 32, 4, "ACC1", "PAT1", "Doe^Jane")
        elsewhere.SOPInstanceUID = first.SOPInstanceUID
        statuses = await asyncio.to_thread(c_store, scp.port, first, second, elsewhere)
        kept = first if policy == "keep_first" else second
        assert statuses == ([0x0000, 0x0000, 0x0000] if policy == "keep_first"
                            else [0x0000, 0x0000, StoreStatusValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS])
        row = await instance_row_by(db, first.SOPInstanceUID)
        assert row["instance_number"] == kept.InstanceNumber
        [only] = storage.files()
        assert only.name == row["storage_key"]
        assert storage.get(row["storage_key"]).endswith(encode(kept))
    finally:
        scp.stop()
        await writer.close()


# --- C-GET sub-operations of a retrieval ---------------------------------------------------------------------------

@pytest.mark.parametrize(("outcome", "status", "kept"), [
    (IndexOutcome(REPLACED, "old"), 0x0000, {"new"}),
    (CONFLICT, StoreStatusValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS, {"old"}),
])
async def test_a_retrieved_copy_discards_the_copy_not_kept_or_the_one_replaced(
        tmp_path: Path, outcome: str, status: int, kept: set[str]) -> None:
    storage = FileStorage(tmp_path / "files", fsync=False)
    study, series = generate_uid(ORG_ROOT), generate_uid(ORG_ROOT)
    ds = ct_instance(study, series, 1, 1, bytes(32), 4, "ACC1", "PAT1", "Doe^Jane")
    old_key = storage.put(a_file(study, series, ds.SOPInstanceUID, 1))
    if isinstance(outcome, IndexOutcome):
        outcome = IndexOutcome(REPLACED, old_key)
    event = SimpleNamespace(
        request=SimpleNamespace(AffectedSOPInstanceUID=ds.SOPInstanceUID, AffectedSOPClassUID=ds.SOPClassUID,
                                DataSet=BytesIO(encode(ds))),
        context=SimpleNamespace(transfer_syntax=ExplicitVRLittleEndian),
        encoded_dataset=lambda include_meta: b"\0" * 128 + b"DICM" + encode(ds))

    async def discard(key: str) -> None:
        storage.delete(key)

    received = ReceivedInstances(storage, FakeIndex(outcome), discard, 10)
    answer, reason = await asyncio.to_thread(received.store, event, ORG, "PACS", asyncio.get_running_loop(), study)
    assert answer == status
    assert (reason is None) == (status == 0)
    assert {"old" if p.name == old_key else "new" for p in storage.files()} == kept
