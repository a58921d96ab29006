"""Batched indexing: one transaction for many instances, with the keep-first and counting rules of one."""

import asyncio
from collections.abc import Sequence
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from dicom_ingest.adapters.tables import InstanceRow, PatientRow, SeriesRow, StudyRow
from dicom_ingest.dicom.attributes import InstanceAttributes
from dicom_ingest.domain.model import IndexOutcomeValues, StoreInstance
from dicom_ingest.service_layer.batch_index import BatchIndexer, DatabaseWriter
from dicom_ingest.service_layer.handlers import index_instance
from radcommon.db import Database
from radcommon.uow import SqlUnitOfWork

ORG_A, ORG_B = UUID(int=0xA), UUID(int=0xB)
CT = "1.2.840.10008.5.1.4.1.1.2"
STORED, DUPLICATE = IndexOutcomeValues.STORED, IndexOutcomeValues.DUPLICATE


def uid(*parts: int) -> str:
    return "1.2.826.0.1.3680043.10.1234.77." + ".".join(map(str, parts))


def command(study: int, series: int, instance: int, *, org: UUID = ORG_A, modality: str = "CT",
            body_part: str = "CHEST", patient_id: str = "PAT1") -> StoreInstance:
    attributes = InstanceAttributes(
        sop_class_uid=CT, sop_instance_uid=uid(study, series, instance), study_instance_uid=uid(study),
        series_instance_uid=uid(study, series), patient_id=patient_id, patient_name="Doe^Jane", modality=modality,
        body_part_examined=body_part, series_number=series, instance_number=instance)
    key = f"{study}{series}{instance}".ljust(64, "0")
    return StoreInstance(org, attributes, "1.2.840.10008.1.2.1", key, 100, "CT1")


async def rows(db: Database, query: sa.Select[tuple[int]]) -> list[sa.Row[tuple[int]]]:
    async with db.engine.connect() as conn:
        return list(await conn.execute(query))


@pytest.mark.asyncio
async def test_one_transaction_indexes_a_batch_as_one_by_one_would(db: Database) -> None:
    async with SqlUnitOfWork(db) as uow:  # study 1 already has series 1 with instance 1
        assert await index_instance(command(1, 1, 1), uow) == STORED
    batch = [command(1, 1, 1),  # held already: the first copy stays
             command(1, 1, 2), command(1, 2, 1, modality="SR", body_part=""),  # a new series of a known study
             command(1, 1, 2),  # the same SOP Instance UID earlier in this batch
             command(2, 1, 1, patient_id="PAT2"), command(2, 1, 2, patient_id="PAT2", body_part="ABDOMEN"),
             command(1, 1, 1, org=ORG_B)]  # the same UIDs in another organisation are another instance
    writer = BatchIndexer(DatabaseWriter(db))
    outcomes = await asyncio.gather(*(writer(c) for c in batch))
    await writer.close()
    assert outcomes == [DUPLICATE, STORED, STORED, DUPLICATE, STORED, STORED, STORED]

    studies = {(org, u): (n_series, n_instances, modalities, body_parts)
               for org, u, n_series, n_instances, modalities, body_parts in await rows(db, sa.select(
                   StudyRow.__table__.c.organization_id, StudyRow.__table__.c.study_instance_uid,
                   StudyRow.__table__.c.number_of_series, StudyRow.__table__.c.number_of_instances,
                   StudyRow.__table__.c.modalities, StudyRow.__table__.c.body_parts))}
    assert studies == {(ORG_A, uid(1)): (2, 3, ["CT", "SR"], ["CHEST"]),
                       (ORG_A, uid(2)): (1, 2, ["CT"], ["CHEST", "ABDOMEN"]),
                       (ORG_B, uid(1)): (1, 1, ["CT"], ["CHEST"])}
    series = dict(await rows(db, sa.select(SeriesRow.__table__.c.series_instance_uid,
                                           sa.func.sum(SeriesRow.__table__.c.number_of_instances))
                             .group_by(SeriesRow.__table__.c.series_instance_uid)))
    assert series == {uid(1, 1): 3, uid(1, 2): 1, uid(2, 1): 2}  # uid(1, 1): 2 in ORG_A + 1 in ORG_B
    assert len(await rows(db, sa.select(InstanceRow.__table__.c.id))) == 6
    assert len(await rows(db, sa.select(PatientRow.__table__.c.id))) == 3  # PAT1 in A and B, PAT2 in A
    [key] = (await rows(db, sa.select(InstanceRow.__table__.c.storage_key).where(
        InstanceRow.__table__.c.sop_instance_uid == uid(1, 1, 2))))
    assert key[0] == command(1, 1, 2).storage_key


@pytest.mark.asyncio
async def test_a_duplicate_naming_another_study_creates_nothing(db: Database) -> None:
    writer = BatchIndexer(DatabaseWriter(db))
    assert await writer(command(1, 1, 1)) == STORED
    moved = command(1, 1, 1)
    other = StoreInstance(moved.organization_id, InstanceAttributes(
        sop_class_uid=CT, sop_instance_uid=uid(1, 1, 1), study_instance_uid=uid(9), series_instance_uid=uid(9, 1)),
        moved.transfer_syntax_uid, moved.storage_key, 100, "CT1")
    assert await writer(other) == DUPLICATE
    await writer.close()
    assert len(await rows(db, sa.select(StudyRow.__table__.c.id))) == 1
    assert len(await rows(db, sa.select(SeriesRow.__table__.c.id))) == 1


class FakeWriter:
    def __init__(self, refuse: str | None = None, conflicts: int = 0) -> None:
        self.batches: list[list[str]] = []
        self.refuse, self.conflicts = refuse, conflicts

    async def __call__(self, commands: Sequence[StoreInstance]) -> list[str]:
        uids = [c.attributes.sop_instance_uid for c in commands]
        self.batches.append(uids)
        await asyncio.sleep(0.01)  # a commit takes a while; meanwhile more arrive
        if self.conflicts:
            self.conflicts -= 1
            raise IntegrityError("INSERT", {}, Exception("unique violation"))
        if self.refuse in uids:
            raise ValueError("the database refuses this one")
        return [STORED if i % 2 == 0 else DUPLICATE for i in range(len(commands))]

    async def close(self) -> None:
        pass


@pytest.mark.asyncio
async def test_what_waits_during_a_commit_goes_in_the_next_transaction() -> None:
    fake = FakeWriter()
    writer = BatchIndexer(fake, max_batch=4)
    first = asyncio.ensure_future(writer(command(1, 1, 0)))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(writer(command(1, 1, i))) for i in range(1, 10)]
    await asyncio.gather(first, *rest)
    await writer.close()
    assert [len(b) for b in fake.batches] == [1, 4, 4, 1]
    assert [b[0] for b in fake.batches] == [uid(1, 1, 0), uid(1, 1, 1), uid(1, 1, 5), uid(1, 1, 9)]


@pytest.mark.asyncio
async def test_an_instance_the_database_refuses_fails_alone() -> None:
    fake = FakeWriter(refuse=uid(1, 1, 2))
    writer = BatchIndexer(fake)
    first = asyncio.ensure_future(writer(command(1, 1, 0)))
    await asyncio.sleep(0)
    results = await asyncio.gather(first, *(writer(command(1, 1, i)) for i in range(1, 4)), return_exceptions=True)
    await writer.close()
    assert isinstance(results[2], ValueError)
    assert [r for i, r in enumerate(results) if i != 2] == [STORED, STORED, STORED]
    assert fake.batches[1] == [uid(1, 1, i) for i in range(1, 4)]  # tried together first, then one by one
    assert fake.batches[2:] == [[uid(1, 1, 1)], [uid(1, 1, 2)], [uid(1, 1, 3)]]


@pytest.mark.asyncio
async def test_a_conflict_with_another_writer_is_retried() -> None:
    fake = FakeWriter(conflicts=2)
    writer = BatchIndexer(fake)
    assert await writer(command(1, 1, 1)) == STORED
    assert len(fake.batches) == 3
    fake.conflicts = 3
    with pytest.raises(IntegrityError):
        await writer(command(1, 1, 2))
    await writer.close()


@pytest.mark.asyncio
async def test_a_caller_that_gave_up_before_its_turn_is_not_written() -> None:
    fake = FakeWriter()
    writer = BatchIndexer(fake)
    first = asyncio.ensure_future(writer(command(1, 1, 1)))
    await asyncio.sleep(0)
    abandoned = asyncio.ensure_future(writer(command(1, 1, 2)))
    kept = asyncio.ensure_future(writer(command(1, 1, 3)))
    await asyncio.sleep(0)
    abandoned.cancel()  # as the SCP does when its index timeout expires
    assert await first == STORED
    assert await kept == STORED
    await writer.close()
    assert fake.batches == [[uid(1, 1, 1)], [uid(1, 1, 3)]]
