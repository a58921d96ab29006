"""The first slice, end to end: a modality pushes a study with dcmtk, the worklist shows it.

The same test runs embedded (SQLite, local bus) and distributed (PostgreSQL, RabbitMQ).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pydicom
import pytest

from support.platform import KINDS, platform_of, wait_for_worklist
from support.studies import storescu, write_ct_study
from telerad.platform import Platform

pytestmark = pytest.mark.integration


@pytest.fixture(params=KINDS)
async def platform(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Platform]:
    async with platform_of(request.param, tmp_path) as running:
        yield running


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
