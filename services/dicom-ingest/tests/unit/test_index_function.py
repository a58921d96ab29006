"""The PostgreSQL index function (migrations 0007-0009) indexes exactly as ``handlers.index_instances`` does,
and finds rows by index however empty its tables were when a session planned it."""

import asyncio
import contextlib
import random
import re
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import psycopg
import pytest
import pytest_asyncio
import sqlalchemy as sa

from dicom_ingest.adapters.modalities import SqlModalityRegistry
from dicom_ingest.adapters.spool_index import SpoolIndexer
from dicom_ingest.adapters.storage import FileStorage
from dicom_ingest.adapters.thread_index import ThreadIndexer
from dicom_ingest.bootstrap import build_scp
from dicom_ingest.config import DicomIngestSettings
from dicom_ingest.dicom.attributes import InstanceAttributes
from dicom_ingest.domain.model import IndexOutcomeValues, StoreInstance
from dicom_ingest.service_layer.batch_index import (
    INDEX_FUNCTION_CALL,
    BatchIndexer,
    DatabaseWriter,
    index_batch_json,
)
from dicom_ingest.service_layer.handlers import index_instances
from radcommon.db import Database
from support.servers import postgres_databases

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).parents[2] / "src" / "dicom_ingest" / "migrations"
ORGS = (UUID(int=0xA), UUID(int=0xB))
SNAPSHOT = {
    "patients": "SELECT organization_id, patient_id, issuer_of_patient_id, patient_name, patient_birth_date, "
                "patient_sex FROM patients",
    "studies": "SELECT s.organization_id, s.study_instance_uid, p.patient_id, s.accession_number, s.study_id, "
               "s.study_date, s.study_time, s.study_description, s.referring_physician_name, s.modalities::text, "
               "s.body_parts::text, s.priority, s.calling_ae_title, s.number_of_series, s.number_of_instances, "
               "s.announced_instances, s.revision FROM studies s JOIN patients p ON p.id = s.patient_ref",
    "series": "SELECT se.organization_id, se.series_instance_uid, s.study_instance_uid, se.modality, se.series_number, "
              "se.series_description, se.body_part_examined, se.number_of_instances "
              "FROM series se JOIN studies s ON s.id = se.study_ref",
    "instances": "SELECT i.organization_id, i.sop_instance_uid, s.study_instance_uid, se.series_instance_uid, "
                 "i.sop_class_uid, i.transfer_syntax_uid, i.instance_number, i.number_of_frames, i.storage_key, "
                 "i.size_bytes FROM instances i JOIN studies s ON s.id = i.study_ref "
                 "JOIN series se ON se.id = i.series_ref",
}


def a_command(rng: random.Random) -> StoreInstance:
    study, series, instance = rng.randrange(4), rng.randrange(3), rng.randrange(6)
    org = rng.choice(ORGS)
    attributes = InstanceAttributes(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid=f"2.25.{study}.{series}.{instance}",
        study_instance_uid=f"2.25.{study}", series_instance_uid=f"2.25.{study}.{series}",
        patient_id=f"PAT{study % 3}", issuer_of_patient_id=rng.choice(["", "HOSP"]),
        patient_name=rng.choice(["Doe^Jane", "Roe^Richard", "Ĳsselmeer^Ærø"]),
        patient_sex=rng.choice(["F", "M", ""]), accession_number=f"ACC{study}", study_id=str(study),
        study_description=rng.choice(["CT chest", ""]), referring_physician_name="Who^Doctor",
        modality=rng.choice(["CT", "CT", "SR", "PR", ""]), series_number=series,
        series_description=rng.choice(["axial", "", "näive"]), body_part_examined=rng.choice(["CHEST", "", "HEAD"]),
        instance_number=rng.choice([instance, None]), number_of_frames=rng.choice([None, 1, 12]),
        requested_procedure_priority=rng.choice(["STAT", "", "HIGH"]))
    return StoreInstance(org, attributes, rng.choice(["1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.90"]),
                         f"{rng.randrange(10**6):064d}", rng.randrange(1, 10**6), rng.choice(["CT1", "MR2"]))


@pytest_asyncio.fixture
async def two_databases() -> AsyncIterator[tuple[Database, Database]]:
    async with postgres_databases("dicom-ingest") as first, postgres_databases("dicom-ingest") as second:
        databases = (Database(first["dicom-ingest"]), Database(second["dicom-ingest"]))
        try:
            for database in databases:
                await database.ensure_created()
                await database.migrate(MIGRATIONS)
            yield databases
        finally:
            for database in databases:
                await database.dispose()


async def snapshot(db: Database) -> dict[str, list[Any]]:
    async with db.engine.connect() as conn:
        return {table: sorted((tuple(row) for row in await conn.execute(sa.text(query))), key=repr)
                for table, query in SNAPSHOT.items()}


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_function_and_the_python_statements_build_the_same_index(
        two_databases: tuple[Database, Database], seed: int) -> None:
    by_statements, by_function = two_databases
    rng = random.Random(seed)
    batches = [[a_command(rng) for _ in range(rng.randrange(1, 20))] for _ in range(12)]
    writer = DatabaseWriter(by_function)
    try:
        for batch in batches:
            async with by_statements.engine.begin() as conn:
                expected = await index_instances(batch, conn)
            assert await writer(batch) == expected
    finally:
        await writer.close()
    assert IndexOutcomeValues.STORED in expected or any(batches)
    python, function = await snapshot(by_statements), await snapshot(by_function)
    assert python["instances"], "the batches stored nothing: the comparison would prove nothing"
    assert function == python


@pytest.mark.asyncio
async def test_migrations_0009_and_0008_downgrade_to_the_0007_function_and_back() -> None:
    async with postgres_databases("dicom-ingest") as urls:
        db = Database(urls["dicom-ingest"])
        try:
            await db.ensure_created()
            await db.migrate(MIGRATIONS)
            assert await function_settings(db) == ["plan_cache_mode=force_generic_plan", "enable_seqscan=off"]
            async with db.engine.begin() as conn:
                await conn.run_sync(lambda sync: alembic_to(sync, "dicom_ingest_0008"))
            assert await function_settings(db) == ["plan_cache_mode=force_generic_plan"]
            async with db.engine.begin() as conn:
                await conn.run_sync(lambda sync: alembic_to(sync, "dicom_ingest_0007"))
            assert await function_settings(db) is None
            await db.migrate(MIGRATIONS)
            assert await function_settings(db) == ["plan_cache_mode=force_generic_plan", "enable_seqscan=off"]
        finally:
            await db.dispose()


def study_instance(study: int, instance: int) -> StoreInstance:
    attributes = InstanceAttributes(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.7", sop_instance_uid=f"2.25.9{study}.1.{instance}",
        study_instance_uid=f"2.25.9{study}", series_instance_uid=f"2.25.9{study}.1", patient_id=f"P{study}",
        modality="OT")
    return StoreInstance(ORGS[0], attributes, "1.2.840.10008.1.2.1", f"{study:032d}{instance:032d}", 100, "CT1")


@pytest.mark.asyncio
async def test_a_session_that_planned_on_empty_tables_still_probes_indexes_once_they_have_grown() -> None:
    """Generic plans are made at a session's first call (migration 0008): a writer that starts on a fresh
    archive must not keep scanning every study and series as the archive grows (migration 0009)."""
    async with postgres_databases("dicom-ingest") as urls:
        db = Database(urls["dicom-ingest"])
        try:
            await db.ensure_created()
            await db.migrate(MIGRATIONS)
            dsn = db.libpq_dsn
        finally:
            await db.dispose()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.fetch(INDEX_FUNCTION_CALL, index_batch_json([study_instance(0, 0)]))  # planned on empty tables
            for first in range(1, 1201, 300):  # then the archive grows, in the same session
                await conn.fetch(INDEX_FUNCTION_CALL, index_batch_json(
                    [study_instance(study, 0) for study in range(first, first + 300)]))
            plans: list[str] = []
            conn.add_log_listener(lambda _, message: plans.append(message.message))
            for setting in ("auto_explain.log_min_duration = 0", "auto_explain.log_nested_statements = on",
                            "client_min_messages = log"):
                await conn.execute(f"SET {setting}")
            await conn.execute("LOAD 'auto_explain'")
            await conn.fetch(INDEX_FUNCTION_CALL, index_batch_json([study_instance(600, 1)]))
            await conn.execute("RESET client_min_messages")
        finally:
            await conn.close()
    plans_text = "\n".join(plans)
    assert "Insert on instances" in plans_text and "Update on studies" in plans_text, plans_text[:2000]
    scanned = sorted(set(re.findall(r"Seq Scan on (\w+)", plans_text)))
    assert scanned == [], f"sequential scans of {scanned} in the index function's plans"


async def function_settings(db: Database) -> list[str] | None:
    async with db.engine.connect() as conn:
        settings = (await conn.execute(sa.text(
            "SELECT proconfig FROM pg_proc WHERE proname = 'dicom_index_keep_first'"))).scalar_one()
        return list(settings) if settings is not None else None


def alembic_to(connection: Any, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from radcommon import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).with_name("alembic")))
    config.set_main_option("version_locations", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


@contextlib.asynccontextmanager
async def indexer_and_connection(db: Database, *, timeout_seconds: float
                                 ) -> AsyncIterator[tuple[ThreadIndexer, asyncpg.Connection]]:
    """A thread indexer on ``db``, and an asyncpg connection of the test's own beside it."""
    indexer = ThreadIndexer(db.libpq_dsn, timeout_seconds=timeout_seconds)
    conn = await asyncpg.connect(db.libpq_dsn)
    try:
        yield indexer, conn
    finally:
        await conn.close()
        indexer.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", [4, 5])
async def test_the_thread_indexer_builds_the_same_index_one_instance_at_a_time(
        two_databases: tuple[Database, Database], seed: int) -> None:
    """The C-STORE path's writer (adapters.thread_index): the same outcomes and rows as the Python statements."""
    by_statements, by_thread = two_databases
    rng = random.Random(seed)
    commands = [a_command(rng) for _ in range(60)]
    indexer = ThreadIndexer(by_thread.libpq_dsn, timeout_seconds=10)
    try:
        for command in commands:
            async with by_statements.engine.begin() as conn:
                [expected] = await index_instances([command], conn)
            assert await asyncio.to_thread(indexer, command) == expected
    finally:
        indexer.close()
    python, thread = await snapshot(by_statements), await snapshot(by_thread)
    assert python["instances"] and len(python["instances"]) < len(commands), "no duplicates: a weak comparison"
    assert thread == python


@pytest.mark.asyncio
async def test_the_thread_indexer_from_many_threads_at_once_counts_every_instance_once(
        two_databases: tuple[Database, Database]) -> None:
    db, _ = two_databases
    indexer = ThreadIndexer(db.libpq_dsn, timeout_seconds=10, idle=2)
    # 8 threads at once: 20 instances each of one new study, and every instance sent twice
    commands = [study_instance(7, instance) for instance in range(160)]
    try:
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(indexer, commands + commands))
    finally:
        indexer.close()
    assert Counter(outcomes) == {IndexOutcomeValues.STORED: 160, IndexOutcomeValues.DUPLICATE: 160}
    async with db.engine.connect() as conn:
        studies = (await conn.execute(sa.text("SELECT number_of_instances, number_of_series FROM studies"))).all()
        instances = (await conn.execute(sa.text("SELECT count(*) FROM instances"))).scalar_one()
    assert [tuple(row) for row in studies] == [(160, 1)] and instances == 160


@pytest.mark.asyncio
async def test_a_thread_indexer_call_over_the_index_timeout_fails_writes_nothing_and_the_next_call_works(
        two_databases: tuple[Database, Database]) -> None:
    db, _ = two_databases
    async with indexer_and_connection(db, timeout_seconds=0.5) as (indexer, blocker):
        assert await asyncio.to_thread(indexer, study_instance(8, 0)) == IndexOutcomeValues.STORED
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE studies IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(psycopg.errors.QueryCanceled):
                await asyncio.to_thread(indexer, study_instance(8, 1))
        assert await asyncio.to_thread(indexer, study_instance(8, 2)) == IndexOutcomeValues.STORED
        stored = await blocker.fetch("SELECT sop_instance_uid FROM instances ORDER BY sop_instance_uid")
        assert [row[0] for row in stored] == ["2.25.98.1.0", "2.25.98.1.2"]


@pytest.mark.parametrize(("url", "policy", "enabled", "acknowledge", "threaded", "spooled"), [
    ("postgresql+asyncpg://postgres@127.0.0.1:5432/archive", "keep_first", True, "written", True, True),
    ("postgresql+asyncpg://postgres@127.0.0.1:5432/archive", "keep_first", True, "indexed", True, False),
    ("postgresql+asyncpg://postgres@127.0.0.1:5432/archive", "keep_first", False, "written", False, False),
    ("postgresql+asyncpg://postgres@127.0.0.1:5432/archive", "overwrite", True, "written", False, False),
    ("sqlite+aiosqlite:///archive.db", "keep_first", True, "written", False, False),
])
def test_the_scp_indexes_in_its_own_thread_and_spools_only_on_postgresql_with_keep_first(
        tmp_path: Path, url: str, policy: str, enabled: bool, acknowledge: str, threaded: bool, spooled: bool) -> None:
    settings = DicomIngestSettings(duplicate_policy=policy, index_in_scp_thread=enabled, acknowledge_when=acknowledge)
    db = Database(url)
    storage = FileStorage(tmp_path / "files")
    scp = build_scp(settings, db, storage, SqlModalityRegistry(db), BatchIndexer(DatabaseWriter(db)))
    assert isinstance(scp.thread_index, ThreadIndexer) is threaded
    assert isinstance(scp.spool_index, SpoolIndexer) is spooled
    if isinstance(scp.thread_index, ThreadIndexer):  # psycopg takes the URL without SQLAlchemy's driver name
        assert scp.thread_index.dsn == "postgresql://postgres@127.0.0.1:5432/archive"
    scp.stop()


@pytest.mark.asyncio
async def test_the_thread_indexer_replaces_a_kept_connection_the_server_dropped(
        two_databases: tuple[Database, Database]) -> None:
    """After a PostgreSQL restart every kept connection is dead: the next C-STORE still gets indexed."""
    db, _ = two_databases
    async with indexer_and_connection(db, timeout_seconds=10) as (indexer, admin):
        assert await asyncio.to_thread(indexer, study_instance(9, 0)) == IndexOutcomeValues.STORED
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        assert killed >= 1
        assert await asyncio.to_thread(indexer, study_instance(9, 1)) == IndexOutcomeValues.STORED
        assert await admin.fetchval("SELECT number_of_instances FROM studies") == 2
