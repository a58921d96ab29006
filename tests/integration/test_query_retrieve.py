"""Query/Retrieve against the running platform with dcmtk: findscu, movescu (to a storescp the test
starts) and getscu, after storescu pushed the studies. Embedded (SQLite, local bus) and distributed
(PostgreSQL, RabbitMQ), like test_slice. An organisation's AE never sees another organisation's studies.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import pydicom
import pytest

from radcommon.config import CommonSettings
from radcommon.contracts import RoleValues
from support.platform import DEMO_PASSWORD, running_platform, sign_in
from support.servers import postgres_databases, rabbitmq_vhost
from support.studies import StudyFiles, storescu, write_ct_study
from telerad.platform import Platform, rabbitmq_bus

pytestmark = [pytest.mark.integration, pytest.mark.dcmtk]

SECOND_ORGANIZATION = UUID("00000000-0000-4000-8000-0000000000c3")
SCU, DESTINATION, SECOND_SCU = "QR-SCU", "QR-DEST", "QR-SECOND"


@pytest.fixture(params=["embedded", "distributed"])
async def platform(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Platform]:
    for tool in ("storescu", "findscu", "movescu", "getscu", "storescp"):
        if shutil.which(tool) is None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI=true needs dcmtk's {tool} (make tools)")
            pytest.skip(f"dcmtk's {tool} is not installed")
    async with AsyncExitStack() as stack:
        if request.param == "embedded":
            running = await stack.enter_async_context(running_platform(tmp_path / "platform"))
        else:
            amqp_url = await stack.enter_async_context(rabbitmq_vhost())
            databases = await stack.enter_async_context(postgres_databases())
            bus = rabbitmq_bus(CommonSettings(amqp_url=amqp_url, retry_base_delay_seconds=0.1, retry_attempts=3))
            running = await stack.enter_async_context(
                running_platform(tmp_path / "platform", bus=bus, embedded=False, database_urls=databases))
        await running.services["identity"].create_organization(  # type: ignore[attr-defined]
            organization_id=SECOND_ORGANIZATION, name="Second Imaging", slug="second-qr", password=DEMO_PASSWORD,
            users=[("admin@second-qr.test", "Bea Admin", [RoleValues.ADMIN])])
        yield running


async def register(platform: Platform, admin: str, ae_title: str, host: str | None = "127.0.0.1",
                   port: int | None = None) -> tuple[int, Any]:
    token = (await sign_in(platform.gateway_url, admin))["access_token"]
    body = {"ae_title": ae_title, "host": host, **({"port": port} if port is not None else {})}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as client, client.post(
            f"{platform.gateway_url}/api/modalities", json=body) as response:
        return response.status, await response.json()


@dataclass(frozen=True)
class Run:
    """What a dcmtk SCU printed with -d: it dumps every DIMSE message it receives."""

    code: int
    output: str

    def final(self) -> str:
        """The last DIMSE message received: the final response."""
        assert "INCOMING DIMSE MESSAGE" in self.output, self.output
        return self.output[self.output.rindex("INCOMING DIMSE MESSAGE"):]

    def final_status(self) -> int:
        found = re.search(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})", self.final())
        assert found, self.output
        return int(found.group(1), 16)

    def final_counts(self) -> tuple[int | None, ...]:
        """(completed, failed, warning) sub-operations of the final response."""
        return tuple(int(found.group(1)) if (found := re.search(rf"{kind} Suboperations\s*:\s*(\d+)", self.final()))
                     else None for kind in ("Completed", "Failed", "Warning"))


async def dcmtk(*args: str, cwd: Path | None = None) -> Run:
    process = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "TCP_NODELAY": "1"})
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return Run(int(process.returncode or 0), output.decode(errors="replace"))


async def findscu(platform: Platform, model: str, *keys: str, calling: str = SCU, into: Path) -> list[pydicom.Dataset]:
    """C-FIND with dcmtk; the identifiers of the Pending responses, in order."""
    into.mkdir(parents=True, exist_ok=True)
    for old in into.glob("rsp*.dcm"):
        old.unlink()
    run = await dcmtk("findscu", "-d", model, "-aet", calling, "-aec", "TELERAD", "-X", "-od", str(into),
                      "127.0.0.1", str(platform.dicom_port), *(a for key in keys for a in ("-k", key)))
    assert run.final_status() == 0x0000, run.output
    return [pydicom.dcmread(path) for path in sorted(into.glob("rsp*.dcm"))]


async def findscu_status(platform: Platform, model: str, *keys: str) -> int:
    run = await dcmtk("findscu", "-d", model, "-aet", SCU, "-aec", "TELERAD", "127.0.0.1", str(platform.dicom_port),
                      *(a for key in keys for a in ("-k", key)))
    return run.final_status()


def received_uids(folder: Path) -> set[str]:
    return {str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in folder.rglob("*")
            if path.is_file()}


def sent_uids(study: StudyFiles) -> set[str]:
    return {str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in study.files}


@asynccontextmanager
async def storescp(ae_title: str, folder: Path) -> AsyncIterator[int]:
    """dcmtk's storescp as a move destination, on a free port; yields the port once it accepts connections."""
    folder.mkdir(parents=True, exist_ok=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    process = await asyncio.create_subprocess_exec(
        "storescp", "-aet", ae_title, "-od", str(folder), str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("storescp did not start listening")
        yield port
    finally:
        process.terminate()
        await process.wait()


def push_studies(folder: Path) -> tuple[StudyFiles, StudyFiles]:
    """Two studies of two patients, of different dates and times."""
    first = write_ct_study(folder / "first", series=2, instances_per_series=2, size=16, accession_number="ACC-Q1",
                           patient_id="PATQ1", patient_name="Doe^Jane")
    second = write_ct_study(folder / "second", series=1, instances_per_series=2, size=16, accession_number="ACC-Q2",
                            patient_id="PATQ2", patient_name="Smith^John")
    for study, (study_date, study_time) in ((first, ("20240115", "101500")), (second, ("20240131", "141500"))):
        for path in study.files:
            ds = pydicom.dcmread(path)
            ds.StudyDate, ds.StudyTime = study_date, study_time
            ds.save_as(path)
    return first, second


async def test_find_move_and_get_with_dcmtk(platform: Platform, tmp_path: Path) -> None:
    first, second = push_studies(tmp_path / "studies")
    await storescu(platform.dicom_port, *first.files, *second.files)
    moved = tmp_path / "moved"
    async with storescp(DESTINATION, moved) as destination_port:
        assert (await register(platform, "admin@demo.telerad", SCU))[0] == 201
        status, body = await register(platform, "admin@demo.telerad", DESTINATION, "127.0.0.1", destination_port)
        assert (status, body["port"], body["host"]) == (201, destination_port, "127.0.0.1/32")
        answers = tmp_path / "answers"

        # C-FIND, study root: wild card on the patient's name (case-insensitive), a date range, a UID list
        studies = await findscu(platform, "-S", "QueryRetrieveLevel=STUDY", "PatientName=doe*", "StudyInstanceUID",
                                "StudyDate", "ModalitiesInStudy", "NumberOfStudyRelatedInstances", into=answers)
        assert [(s.StudyInstanceUID, str(s.PatientName), s.StudyDate, s.ModalitiesInStudy,
                 s.NumberOfStudyRelatedInstances) for s in studies] == [
            (first.study_instance_uid, "Doe^Jane", "20240115", "CT", 4)]
        by_date = await findscu(platform, "-S", "QueryRetrieveLevel=STUDY", "StudyDate=20240120-20240229",
                                "StudyInstanceUID", "AccessionNumber", into=answers)
        assert [(s.StudyInstanceUID, s.AccessionNumber) for s in by_date] == [(second.study_instance_uid, "ACC-Q2")]
        open_ended = await findscu(platform, "-S", "QueryRetrieveLevel=STUDY", "StudyDate=-20240131",
                                   "StudyTime=1400-", "StudyInstanceUID", into=answers)
        assert [s.StudyInstanceUID for s in open_ended] == [second.study_instance_uid]
        listed = await findscu(platform, "-S", "QueryRetrieveLevel=STUDY",
                               f"StudyInstanceUID={first.study_instance_uid}\\{second.study_instance_uid}",
                               "AccessionNumber", into=answers)
        assert sorted(s.AccessionNumber for s in listed) == ["ACC-Q1", "ACC-Q2"]

        # C-FIND, patient root, every level down the hierarchy
        patients = await findscu(platform, "-P", "QueryRetrieveLevel=PATIENT", "PatientID=PATQ*", "PatientName",
                                 "NumberOfPatientRelatedStudies", into=answers)
        assert sorted((p.PatientID, str(p.PatientName), p.NumberOfPatientRelatedStudies) for p in patients) == [
            ("PATQ1", "Doe^Jane", 1), ("PATQ2", "Smith^John", 1)]
        patient_studies = await findscu(platform, "-P", "QueryRetrieveLevel=STUDY", "PatientID=PATQ1",
                                        "StudyInstanceUID", "AccessionNumber", into=answers)
        assert [(s.PatientID, s.StudyInstanceUID) for s in patient_studies] == [("PATQ1", first.study_instance_uid)]
        series = await findscu(platform, "-P", "QueryRetrieveLevel=SERIES", "PatientID=PATQ1",
                               f"StudyInstanceUID={first.study_instance_uid}", "SeriesInstanceUID", "Modality=CT",
                               "SeriesNumber", "NumberOfSeriesRelatedInstances", into=answers)
        assert sorted((s.SeriesInstanceUID, s.SeriesNumber, s.NumberOfSeriesRelatedInstances) for s in series) == \
            sorted((uid, n, 2) for n, uid in enumerate(first.series_instance_uids, start=1))
        images = await findscu(platform, "-P", "QueryRetrieveLevel=IMAGE", "PatientID=PATQ1",
                               f"StudyInstanceUID={first.study_instance_uid}",
                               f"SeriesInstanceUID={first.series_instance_uids[0]}", "SOPInstanceUID",
                               "SOPClassUID", "InstanceNumber=2", into=answers)
        assert [(i.InstanceNumber, i.SOPClassUID) for i in images] == [(2, "1.2.840.10008.5.1.4.1.1.2")]
        assert images[0].SOPInstanceUID in sent_uids(first)

        # the hierarchy is required: a SERIES query without its study's UID does not match the SOP Class
        assert await findscu_status(platform, "-S", "QueryRetrieveLevel=SERIES", "Modality=CT") == 0xA900

        # C-MOVE to the registered destination; an unregistered one is refused with 0xA801
        run = await dcmtk("movescu", "-d", "-S", "-aet", SCU, "-aec", "TELERAD", "-aem", DESTINATION, "127.0.0.1",
                          str(platform.dicom_port), "-k", "QueryRetrieveLevel=STUDY",
                          "-k", f"StudyInstanceUID={first.study_instance_uid}")
        assert (run.final_status(), run.final_counts()) == (0x0000, (4, 0, 0)), run.output
        assert received_uids(moved) == sent_uids(first)
        refused = await dcmtk("movescu", "-d", "-S", "-aet", SCU, "-aec", "TELERAD", "-aem", "NOT-REGISTERED",
                              "127.0.0.1", str(platform.dicom_port), "-k", "QueryRetrieveLevel=STUDY",
                              "-k", f"StudyInstanceUID={second.study_instance_uid}")
        assert refused.final_status() == 0xA801, refused.output
        assert received_uids(moved) == sent_uids(first)

    # C-GET: the series comes back on the same association
    got = tmp_path / "got"
    got.mkdir()
    run = await dcmtk("getscu", "-d", "-S", "-aet", SCU, "-aec", "TELERAD", "-od", str(got), "127.0.0.1",
                      str(platform.dicom_port), "-k", "QueryRetrieveLevel=SERIES",
                      "-k", f"StudyInstanceUID={second.study_instance_uid}",
                      "-k", f"SeriesInstanceUID={second.series_instance_uids[0]}")
    assert (run.final_status(), run.final_counts()) == (0x0000, (2, 0, 0)), run.output
    assert received_uids(got) == sent_uids(second)
    [one] = [p for p in got.iterdir() if p.is_file()][:1]
    original = {str(pydicom.dcmread(p).SOPInstanceUID): p for p in second.files}
    retrieved = pydicom.dcmread(one)
    assert retrieved.PixelData == pydicom.dcmread(original[str(retrieved.SOPInstanceUID)]).PixelData


async def test_an_organisation_sees_and_retrieves_nothing_of_another(platform: Platform, tmp_path: Path) -> None:
    first, _ = push_studies(tmp_path / "studies")
    await storescu(platform.dicom_port, *first.files)
    moved = tmp_path / "moved"
    async with storescp(DESTINATION, moved) as destination_port:
        assert (await register(platform, "admin@demo.telerad", DESTINATION, "127.0.0.1", destination_port))[0] == 201
        assert (await register(platform, "admin@second-qr.test", SECOND_SCU, "127.0.0.1"))[0] == 201
        # a destination needs one address to connect to; an organisation has one destination per title
        assert (await register(platform, "admin@second-qr.test", "QR-NOWHERE", None, 104))[0] == 422
        assert (await register(platform, "admin@demo.telerad", DESTINATION, "127.0.0.2", 104))[0] == 409
        answers = tmp_path / "answers"

        for model, keys in (("-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID"]),
                            ("-S", ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={first.study_instance_uid}"]),
                            ("-P", ["QueryRetrieveLevel=PATIENT", "PatientID"]),
                            ("-S", ["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={first.study_instance_uid}",
                                    "SeriesInstanceUID"])):
            assert await findscu(platform, model, *keys, calling=SECOND_SCU, into=answers) == []
        # the demo organisation's own AE does see it
        assert len(await findscu(platform, "-S", "QueryRetrieveLevel=STUDY", "StudyInstanceUID", calling="STORESCU",
                                 into=answers)) == 1

        # another organisation's move destination is unknown to this one
        run = await dcmtk("movescu", "-d", "-S", "-aet", SECOND_SCU, "-aec", "TELERAD", "-aem", DESTINATION,
                          "127.0.0.1", str(platform.dicom_port), "-k", "QueryRetrieveLevel=STUDY",
                          "-k", f"StudyInstanceUID={first.study_instance_uid}")
        assert run.final_status() == 0xA801, run.output
        assert received_uids(moved) == set()

    got = tmp_path / "got"
    got.mkdir()
    run = await dcmtk("getscu", "-d", "-S", "-aet", SECOND_SCU, "-aec", "TELERAD", "-od", str(got), "127.0.0.1",
                      str(platform.dicom_port), "-k", "QueryRetrieveLevel=STUDY",
                      "-k", f"StudyInstanceUID={first.study_instance_uid}")
    assert (run.final_status(), run.final_counts()) == (0x0000, (0, 0, 0)), run.output
    assert received_uids(got) == set()
