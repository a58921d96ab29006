"""The first slice, end to end: a modality pushes a study with dcmtk, the worklist shows it.

The same test runs embedded (SQLite, local bus) and distributed (PostgreSQL, RabbitMQ).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pydicom
import pytest

from radcommon.config import CommonSettings
from support.platform import running_platform, wait_for_worklist
from support.servers import postgres_databases, rabbitmq_vhost
from support.studies import storescu, write_ct_study
from telerad.platform import Platform, rabbitmq_bus

pytestmark = pytest.mark.integration


@pytest.fixture(params=["embedded", "distributed"])
async def platform(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Platform]:
    async with AsyncExitStack() as stack:
        if request.param == "embedded":
            yield await stack.enter_async_context(running_platform(tmp_path))
            return
        amqp_url = await stack.enter_async_context(rabbitmq_vhost())
        databases = await stack.enter_async_context(postgres_databases())
        bus = rabbitmq_bus(CommonSettings(amqp_url=amqp_url, retry_base_delay_seconds=0.1, retry_attempts=3))
        yield await stack.enter_async_context(
            running_platform(tmp_path, bus=bus, embedded=False, database_urls=databases))


async def test_a_study_pushed_with_storescu_appears_once_on_the_worklist(platform: Platform, tmp_path: Path) -> None:
    study = write_ct_study(tmp_path / "study", series=3, instances_per_series=4, accession_number="ACC42",
                           patient_id="PAT42", patient_name="Smith^John")
    await storescu(platform.dicom_port, *study.files)

    page = await wait_for_worklist(platform.gateway_url, lambda p: p["total"] == 1)
    [item] = page["items"]
    assert item["study_instance_uid"] == study.study_instance_uid
    assert (item["number_of_series"], item["number_of_instances"]) == (3, 12)
    assert (item["accession_number"], item["patient_id"], item["patient_name"]) == ("ACC42", "PAT42", "Smith^John")
    assert (item["modalities"], item["body_parts"]) == (["CT"], ["CHEST"])
    # the demo organisation's one radiologist is qualified and free: the rules give it to them at once
    assert (item["status"], item["priority"], item["sla_state"]) == ("assigned", "routine", "on_time")
    assert item["assignee_id"] is not None

    late = write_ct_study(tmp_path / "late", series=1, instances_per_series=2)
    # the same study, a new series sent after it settled: study.updated.v1 updates the same item
    for path in late.files:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study.study_instance_uid
        ds.AccessionNumber, ds.PatientID, ds.PatientName = "ACC42", "PAT42", "Smith^John"
        ds.save_as(path)
    await storescu(platform.dicom_port, *late.files)
    page = await wait_for_worklist(platform.gateway_url,
                                   lambda p: p["total"] == 1 and p["items"][0]["number_of_instances"] == 14)
    assert page["items"][0]["number_of_series"] == 4
    assert page["items"][0]["id"] == item["id"]


async def test_a_study_sent_twice_is_stored_once(platform: Platform, tmp_path: Path) -> None:
    study = write_ct_study(tmp_path / "study", series=1, instances_per_series=3)
    await storescu(platform.dicom_port, *study.files)
    await storescu(platform.dicom_port, *study.files)
    page = await wait_for_worklist(platform.gateway_url, lambda p: p["total"] == 1)
    assert page["items"][0]["number_of_instances"] == 3
    assert len(platform.services["dicom-ingest"].storage.files()) == 3  # type: ignore[attr-defined]
