"""A C-STORE acknowledged once its file is spooled (adapters.spool_index) is indexed right behind, in batches;
what a dead process left in the spool is indexed by the next; a database that fails is waited for, and an
instance it refuses for its values is set aside, never half-indexed."""

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import pytest
import pytest_asyncio
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE

from dicom_ingest.adapters.spool_index import SpoolIndexer, spool_label
from dicom_ingest.adapters.storage import FileStorage
from dicom_ingest.adapters.thread_index import ThreadIndexer
from dicom_ingest.bootstrap import unreferenced_discarder
from dicom_ingest.config import DicomIngestSettings
from dicom_ingest.dicom.attributes import InstanceAttributes, read_instance
from dicom_ingest.dicom.part10 import read_file_meta
from dicom_ingest.domain.modalities import Modality
from dicom_ingest.entrypoints import scp as scp_module
from dicom_ingest.entrypoints.scp import StorageSCP
from dicom_ingest.entrypoints.spool_http import RetryOutcomeValues, SpoolServices, _retry
from dicom_ingest.service_layer.batch_index import BatchIndexer, DatabaseWriter
from radcommon.db import Database
from support.studies import write_ct_study

from .conftest import migrated_postgres

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

ORG = UUID(int=0x5A)
ASSOCIATION = object()  # the owner an association would be


class Archive:
    """A spool indexer on a migrated database, with the test's own connection beside it."""

    def __init__(self, db: Database, storage: FileStorage, conn: asyncpg.Connection, *,
                 timeout_seconds: float = 10, linger_seconds: float = 0.005) -> None:
        self.db, self.storage, self.conn = db, storage, conn
        self.index = ThreadIndexer(db.libpq_dsn, timeout_seconds=timeout_seconds)
        self.spool = SpoolIndexer(storage, self.index, linger_seconds=linger_seconds, retry_seconds=(0.05, 0.2))

    def close(self) -> None:
        self.spool.close(5)
        self.index.close()

    async def submit(self, data: bytes, attributes: InstanceAttributes | None = None, *, calling_ae: str = "CT1",
                     owner: object = ASSOCIATION) -> None:
        meta = read_file_meta(data)
        attributes = attributes or read_instance(data[meta.dataset_offset:], meta.transfer_syntax_uid)
        await asyncio.to_thread(self.spool.submit, ORG, attributes, meta.transfer_syntax_uid, data, calling_ae, owner)

    async def settle(self, owner: object = ASSOCIATION, timeout: float = 10) -> bool:
        return await asyncio.to_thread(self.spool.settle, owner, timeout)

    async def rows(self) -> list[tuple[str, str, str, str]]:
        """(SOP Instance UID, storage key, calling AE title of its study, organisation) of every instance."""
        rows = await self.conn.fetch(
            "SELECT i.sop_instance_uid, i.storage_key, s.calling_ae_title, i.organization_id::text "
            "FROM instances i JOIN studies s ON s.id = i.study_ref ORDER BY i.sop_instance_uid")
        return [tuple(row) for row in rows]


@pytest_asyncio.fixture
async def archive(tmp_path: Path) -> AsyncIterator[Archive]:
    async with migrated_postgres() as db:
        conn = await asyncpg.connect(db.libpq_dsn)
        made = Archive(db, FileStorage(tmp_path / "files"), conn, linger_seconds=0.05)
        try:
            yield made
        finally:
            made.close()
            await conn.close()


def study_files(folder: Path, instances: int) -> list[bytes]:
    return [path.read_bytes() for path in write_ct_study(folder, series=1, instances_per_series=instances).files]


def filed(storage: FileStorage) -> Iterator[str]:
    return (path.name for path in storage.files())


async def test_acknowledged_instances_are_indexed_in_batches_filed_under_their_keys_and_leave_the_spool(
        archive: Archive, tmp_path: Path) -> None:
    files = study_files(tmp_path / "study", 12)
    archive.spool.start()
    for data in files:
        await archive.submit(data)
    assert await archive.settle()
    rows = await archive.rows()
    assert len(rows) == 12 and {row[2:] for row in rows} == {("CT1", str(ORG))}
    assert sorted(filed(archive.storage)) == sorted(row[1] for row in rows)
    assert archive.storage.spooled() == [] and archive.spool.waiting == 0
    assert archive.spool.indexed == 12 and archive.spool.batches < 12, "one transaction per instance"
    for row in rows:  # each file is what was sent
        assert archive.storage.get(row[1]) in files


async def test_a_duplicate_keeps_the_first_copy_and_leaves_no_file_behind(archive: Archive, tmp_path: Path) -> None:
    [first] = study_files(tmp_path / "study", 1)
    changed = first[:-2] + b"\x01\x02"  # the same UIDs, other pixels: another file
    archive.spool.start()
    for data in (first, first, changed):
        await archive.submit(data)
        assert await archive.settle()
    [(_, key, _, _)] = await archive.rows()
    assert list(filed(archive.storage)) == [key] and archive.storage.get(key) == first
    assert archive.storage.spooled() == []


async def test_what_a_dead_process_left_in_the_spool_is_indexed_by_the_next_once(archive: Archive,
                                                                                  tmp_path: Path) -> None:
    files = study_files(tmp_path / "study", 4)
    archive.spool.start()
    await archive.submit(files[3], calling_ae="MR 2")
    assert await archive.settle()
    # then acknowledged and left in the spool by a process that died: three never indexed, one indexed
    # but not yet taken out of the spool, and a file that is no DICOM file
    for data in files:
        archive.storage.spool(data, spool_label(ORG, "MR 2"))
    archive.storage.spool(b"not a DICOM file", spool_label(ORG, "MR 2"))
    archive.close()

    after_restart = Archive(archive.db, archive.storage, archive.conn)
    try:
        assert await asyncio.to_thread(after_restart.spool.start) == 5
        assert await after_restart.settle(None)
        rows = await after_restart.rows()
        assert len(rows) == 4 and {row[2:] for row in rows} == {("MR 2", str(ORG))}
        assert sorted(filed(archive.storage)) == sorted(row[1] for row in rows)
        assert archive.storage.spooled() == [] and after_restart.spool.set_aside == 1
        assert os.listdir(archive.storage.root / "spool" / "failed")  # the unreadable file, for an operator
    finally:
        after_restart.close()


async def test_a_locked_index_is_waited_for_and_the_instances_are_indexed_once_it_frees(
        tmp_path: Path) -> None:
    async with migrated_postgres() as db:
        conn = await asyncpg.connect(db.libpq_dsn)
        archive = Archive(db, FileStorage(tmp_path / "files"), conn, timeout_seconds=0.2)
        try:
            archive.spool.start()
            files = study_files(tmp_path / "study", 3)
            blocker = await asyncpg.connect(db.libpq_dsn)
            try:
                async with blocker.transaction():
                    await blocker.execute("LOCK TABLE studies IN ACCESS EXCLUSIVE MODE")
                    for data in files:
                        await archive.submit(data)
                    assert not await archive.settle(timeout=1), "indexed through a lock"
                    assert len(archive.storage.spooled()) == 3 and archive.spool.waiting == 3
            finally:
                await blocker.close()
            assert await archive.settle()
            assert len(await archive.rows()) == 3 and archive.storage.spooled() == []
        finally:
            archive.close()
            await conn.close()


async def test_an_instance_the_index_refuses_is_set_aside_and_the_rest_of_its_batch_indexed(
        archive: Archive, tmp_path: Path) -> None:
    files = study_files(tmp_path / "study", 3)
    meta = read_file_meta(files[1])
    attributes = read_instance(files[1][meta.dataset_offset:], meta.transfer_syntax_uid)
    refused = replace(attributes, patient_name="Doe\x00Jane")  # PostgreSQL text cannot hold NUL (22P05)
    archive.spool.start()
    await archive.submit(files[0])
    await archive.submit(files[1], refused)
    await archive.submit(files[2])
    assert await archive.settle()
    rows = await archive.rows()
    assert sorted(row[0] for row in rows) == sorted(
        read_file_meta(data).media_storage_sop_instance_uid for data in (files[0], files[2]))
    assert archive.spool.set_aside == 1 and archive.storage.spooled() == []
    [kept] = os.listdir(archive.storage.root / "spool" / "failed")
    assert (archive.storage.root / "spool" / "failed" / kept).read_bytes() == files[1]
    assert sorted(filed(archive.storage)) == sorted(row[1] for row in rows), "a file no row points at"


@asynccontextmanager
async def spooling_scp(tmp_path: Path) -> AsyncIterator[tuple[StorageSCP, FileStorage, asyncpg.Connection]]:
    """An SCP acknowledging once written (index timeout 0.3 s), its storage, and a connection of the test's own."""
    async with migrated_postgres() as db:
        storage = FileStorage(tmp_path / "files")
        thread_index = ThreadIndexer(db.libpq_dsn, timeout_seconds=0.3)
        spool = SpoolIndexer(storage, thread_index, retry_seconds=(0.05, 0.2))
        modality = Modality(uuid4(), ORG, "CT1", None, "", datetime.now(UTC))
        scp = StorageSCP(DicomIngestSettings(dicom_port=0, index_timeout_seconds=20), storage,
                         BatchIndexer(DatabaseWriter(db)), unreferenced_discarder(db, storage),
                         lambda ae_title, address: modality, thread_index=thread_index, spool_index=spool)
        scp.start()
        blocker = await asyncpg.connect(db.libpq_dsn)
        try:
            yield scp, storage, blocker
        finally:
            await blocker.close()
            scp.stop()


async def test_a_c_store_is_answered_before_its_commit_and_the_release_waits_for_the_index(tmp_path: Path) -> None:
    """Over a real association: while the index is locked, C-STOREs are answered Success (with the index in the
    path they would wait, then fail 0xA700 at the statement timeout), and the A-RELEASE-RP waits for the index."""
    async with spooling_scp(tmp_path) as (scp, storage, blocker):
        files = write_ct_study(tmp_path / "study", series=1, instances_per_series=3).files
        ae = AE(ae_title="CT1")
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE studies IN ACCESS EXCLUSIVE MODE")
        assoc = await asyncio.to_thread(ae.associate, "127.0.0.1", scp.port, ae_title="TELERAD")
        assert assoc.is_established
        statuses = [int((await asyncio.to_thread(assoc.send_c_store, dcmread(path))).Status) for path in files]
        assert statuses == [0x0000] * 3
        release = asyncio.create_task(asyncio.to_thread(assoc.release))
        await asyncio.sleep(1.0)
        assert not release.done() and assoc.is_established, "released before the index took what was sent"
        assert await blocker.fetchval("SELECT count(*) FROM instances") == 0
        await transaction.commit()
        await asyncio.wait_for(release, 10)
        assert assoc.is_released
        rows = await blocker.fetch("SELECT sop_instance_uid, storage_key FROM instances")
        assert sorted(row[0] for row in rows) == sorted(dcmread(path).SOPInstanceUID for path in files)
        assert sorted(filed(storage)) == sorted(row[1] for row in rows) and storage.spooled() == []


async def test_a_release_waits_for_a_locked_index_only_so_long_and_the_instances_follow(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sender's ACSE timeout (dcmtk: 30 s) must not turn acknowledged instances into a reported failure: the
    release is answered after RELEASE_WAIT_SECONDS, and the index takes the instances once it can."""
    monkeypatch.setattr(scp_module, "RELEASE_WAIT_SECONDS", 1.0)
    async with spooling_scp(tmp_path) as (scp, storage, blocker):
        [path] = write_ct_study(tmp_path / "study", series=1, instances_per_series=1).files
        ae = AE(ae_title="CT1")
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE studies IN ACCESS EXCLUSIVE MODE")
            assoc = await asyncio.to_thread(ae.associate, "127.0.0.1", scp.port, ae_title="TELERAD")
            assert int((await asyncio.to_thread(assoc.send_c_store, dcmread(path))).Status) == 0x0000
            await asyncio.wait_for(asyncio.to_thread(assoc.release), 10)
            assert assoc.is_released and len(storage.spooled()) == 1
        for _ in range(100):  # the index, free again, takes the instance
            if not storage.spooled():
                break
            await asyncio.sleep(0.1)
        assert storage.spooled() == []
        assert await blocker.fetchval("SELECT sop_instance_uid FROM instances") == dcmread(path).SOPInstanceUID


async def test_a_waiting_sender_cuts_the_batch_short(tmp_path: Path) -> None:
    """An association being released waits for its instances: the batch is written then, not after its linger."""
    async with migrated_postgres() as db:
        conn = await asyncpg.connect(db.libpq_dsn)
        archive = Archive(db, FileStorage(tmp_path / "files"), conn, linger_seconds=60)
        try:
            archive.spool.start()
            [data] = study_files(tmp_path / "study", 1)
            await archive.submit(data)
            assert await archive.settle(timeout=10), "waited out the linger"
            assert len(await archive.rows()) == 1 and archive.spool.batches == 1
        finally:
            archive.close()
            await conn.close()


async def test_a_set_aside_instance_retried_is_refused_until_mended_then_indexed(archive: Archive,
                                                                                 tmp_path: Path) -> None:
    """What POST /spool/set-aside/retry does for one file (entrypoints.spool_http), on PostgreSQL: refused again
    (a constraint standing in for what first refused it), it stays set aside and leaves no file behind; once the
    constraint is dropped (the mend), it is filed and indexed and its set-aside file goes."""
    [data] = study_files(tmp_path / "study", 1)
    _, spooled = archive.storage.spool(data, spool_label(ORG, "CT1"))
    path = archive.storage.set_aside(spooled)
    assert path is not None
    services = SpoolServices(archive.storage, BatchIndexer(DatabaseWriter(archive.db, "keep_first")),
                             unreferenced_discarder(archive.db, archive.storage))
    await archive.conn.execute(
        "ALTER TABLE patients ADD CONSTRAINT no_doe CHECK (patient_name NOT LIKE 'Doe%') NOT VALID")
    refused = await _retry(services, path)
    assert refused.outcome == RetryOutcomeValues.REFUSED and "(SQLSTATE 23514)" in str(refused.detail)
    assert os.path.exists(path) and list(filed(archive.storage)) == [] and await archive.rows() == []

    await archive.conn.execute("ALTER TABLE patients DROP CONSTRAINT no_doe")
    indexed = await _retry(services, path)
    assert indexed.outcome == RetryOutcomeValues.INDEXED
    assert indexed.sop_instance_uid == read_file_meta(data).media_storage_sop_instance_uid
    [(uid, key, calling_ae, organization)] = await archive.rows()
    assert (uid, calling_ae, organization) == (indexed.sop_instance_uid, "CT1", str(ORG))
    assert list(filed(archive.storage)) == [key] and not os.path.exists(path)
    assert archive.storage.set_aside_files() == []
