"""Remote PACS through the gateway with Debian's Orthanc as the remote: register it, echo it, query it (C-FIND),
retrieve from it (C-MOVE to Telerad and C-GET) onto the worklist, send a study of ours to it (C-STORE), and no
organisation but the one that registered it can use it. Embedded (SQLite, local bus) and distributed (PostgreSQL,
RabbitMQ), like test_query_retrieve.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import pydicom
import pytest

from radcommon.contracts import RoleValues
from support.orthanc import Orthanc, running_orthanc
from support.platform import DEMO_PASSWORD, KINDS, platform_of, sign_in, wait_for_worklist
from support.studies import StudyFiles, storescu, write_ct_study
from telerad.platform import Platform

pytestmark = [pytest.mark.integration]

SECOND_ORGANIZATION = UUID("00000000-0000-4000-8000-0000000000d4")
SECOND_ADMIN = "admin@second-remote.test"
JOB_SECONDS = 60.0


@pytest.fixture(params=KINDS)
async def platform(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Platform]:
    async with platform_of(request.param, tmp_path / "platform") as running:
        await running.services["identity"].create_organization(  # type: ignore[attr-defined]
            organization_id=SECOND_ORGANIZATION, name="Second Imaging", slug="second-remote", password=DEMO_PASSWORD,
            users=[(SECOND_ADMIN, "Bea Admin", [RoleValues.ADMIN])])
        yield running


@pytest.fixture
async def orthanc(platform: Platform, tmp_path: Path) -> AsyncIterator[Orthanc]:
    """Orthanc knowing Telerad (its AE title, host and port), as an admin of the remote PACS would set it up."""
    async with running_orthanc(tmp_path / "orthanc", modalities={
            "telerad": ("TELERAD", "127.0.0.1", platform.dicom_port)}) as running:
        yield running


@dataclass
class Api:
    gateway_url: str
    token: str

    @classmethod
    async def signed_in(cls, platform: Platform, email: str) -> Api:
        return cls(platform.gateway_url, (await sign_in(platform.gateway_url, email))["access_token"])

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.token}"}) as client, \
                client.request(method, f"{self.gateway_url}{path}", json=body) as response:
            text = await response.text()
            if response.status >= 400:
                assert response.content_type == "application/problem+json", text
            return response.status, (await response.json(content_type=None) if text else None)

    async def finished(self, job: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + JOB_SECONDS
        while True:
            status, found = await self.call("GET", f"/api/remote-pacs/jobs/{job['id']}")
            assert status == 200, found
            if found["status"] not in ("queued", "running"):
                return found  # type: ignore[no-any-return]
            assert time.monotonic() < deadline, f"the job never finished: {found}"
            await asyncio.sleep(0.2)


def sop_instance_uids(study: StudyFiles) -> set[str]:
    return {str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in study.files}


def values(matches: list[dict[str, Any]], tag: str) -> set[str]:
    return {match[tag]["Value"][0] for match in matches if match.get(tag, {}).get("Value")}


async def register(api: Api, orthanc: Orthanc) -> tuple[int, Any]:
    return await api.call("POST", "/api/remote-pacs", {"ae_title": orthanc.ae_title, "host": "127.0.0.1",
                                                       "port": orthanc.dicom_port, "description": "Orthanc"})


async def test_orthanc_is_queried_retrieved_from_and_sent_to(platform: Platform, orthanc: Orthanc,
                                                             tmp_path: Path) -> None:
    moved = write_ct_study(tmp_path / "moved", series=2, instances_per_series=2, size=16, accession_number="ACC-MOVE",
                           patient_id="PAT-REMOTE-1", patient_name="Remote^Moved")
    got = write_ct_study(tmp_path / "got", series=1, instances_per_series=3, size=16, accession_number="ACC-GET",
                         patient_id="PAT-REMOTE-2", patient_name="Remote^Got")
    await orthanc.upload(*moved.files, *got.files)
    admin = await Api.signed_in(platform, "admin@demo.telerad")

    status, remote = await register(admin, orthanc)
    assert (status, remote["ae_title"], remote["modality_id"] is not None) == (201, "ORTHANC", True)
    base = f"/api/remote-pacs/{remote['id']}"
    status, echo = await admin.call("POST", f"{base}/echo")
    assert (status, echo["success"], echo["status"]) == (200, True, 0), echo

    # C-FIND at study and series level, with a wild card, a date range and Modalities in Study
    status, studies = await admin.call("POST", f"{base}/find", {"keys": {"PatientID": "PAT-REMOTE-*"}})
    assert status == 200, studies
    assert values(studies["matches"], "0020000D") == {moved.study_instance_uid, got.study_instance_uid}
    assert values(studies["matches"], "00080050") == {"ACC-MOVE", "ACC-GET"}
    status, dated = await admin.call("POST", f"{base}/find", {"keys": {
        "StudyDate": "20261101-20261130", "ModalitiesInStudy": "CT", "AccessionNumber": "ACC-MOVE"}})
    assert values(dated["matches"], "0020000D") == {moved.study_instance_uid}
    status, series = await admin.call("POST", f"{base}/find", {"level": "SERIES", "keys": {
        "StudyInstanceUID": moved.study_instance_uid}})
    assert values(series["matches"], "0020000E") == set(moved.series_instance_uids)
    status, limited = await admin.call("POST", f"{base}/find", {"keys": {"PatientID": "PAT-REMOTE-*"}, "limit": 1})
    assert (len(limited["matches"]), limited["truncated"]) == (1, True)

    # C-MOVE to Telerad, C-GET back on our association: both onto the worklist
    status, move = await admin.call("POST", f"{base}/retrieve", {"study_instance_uid": moved.study_instance_uid,
                                                                 "method": "move"})
    assert (status, move["status"]) == (202, "queued"), move
    done = await admin.finished(move)
    assert (done["status"], done["completed"], done["failed"], done["final_status"]) == ("completed", 4, 0, 0), done
    status, get = await admin.call("POST", f"{base}/retrieve", {"study_instance_uid": got.study_instance_uid,
                                                                "method": "get"})
    done = await admin.finished(get)
    assert (done["status"], done["completed"], done["failed"], done["final_status"]) == ("completed", 3, 0, 0), done
    page = await wait_for_worklist(platform.gateway_url, lambda p: {moved.study_instance_uid, got.study_instance_uid}
                                   <= {item["study_instance_uid"] for item in p["items"]})
    assert {item["accession_number"] for item in page["items"]} >= {"ACC-MOVE", "ACC-GET"}
    status, metadata = await admin.call("GET", f"/dicomweb/studies/{moved.study_instance_uid}/metadata")
    assert status == 200 and {m["00080018"]["Value"][0] for m in metadata} == sop_instance_uids(moved)

    # C-STORE of a study of ours
    ours = write_ct_study(tmp_path / "ours", series=1, instances_per_series=2, size=16, accession_number="ACC-SEND",
                          patient_id="PAT-LOCAL", patient_name="Local^Sent")
    await storescu(platform.dicom_port, *ours.files)
    status, send = await admin.call("POST", f"{base}/send", {"study_instance_uid": ours.study_instance_uid})
    assert (status, send["remaining"]) == (202, 2), send
    done = await admin.finished(send)
    assert (done["status"], done["completed"], done["failed"]) == ("completed", 2, 0), done
    assert await orthanc.study_instances(ours.study_instance_uid) == sop_instance_uids(ours)

    status, jobs = await admin.call("GET", "/api/remote-pacs/jobs")
    assert [job["id"] for job in jobs["items"]] == [send["id"], get["id"], move["id"]]


async def test_no_other_organisation_can_use_the_remote_pacs(platform: Platform, orthanc: Orthanc,
                                                              tmp_path: Path) -> None:
    study = write_ct_study(tmp_path / "study", series=1, instances_per_series=2, size=16, accession_number="ACC-ISO",
                           patient_id="PAT-ISO")
    await orthanc.upload(*study.files)
    a = await Api.signed_in(platform, "admin@demo.telerad")
    b = await Api.signed_in(platform, SECOND_ADMIN)
    status, remote = await register(a, orthanc)
    assert status == 201, remote
    base = f"/api/remote-pacs/{remote['id']}"
    _, job = await a.call("POST", f"{base}/retrieve", {"study_instance_uid": study.study_instance_uid})
    assert (await a.finished(job))["status"] == "completed"

    assert await b.call("GET", "/api/remote-pacs") == (200, {"items": []})
    body = {"study_instance_uid": study.study_instance_uid}
    for method, path, payload in (("POST", f"{base}/echo", None), ("POST", f"{base}/find", {}),
                                  ("POST", f"{base}/retrieve", body), ("POST", f"{base}/send", body),
                                  ("DELETE", base, None), ("GET", f"/api/remote-pacs/jobs/{job['id']}", None)):
        status, problem = await b.call(method, path, payload)
        assert status == 404, (method, path, problem)
    assert await b.call("GET", "/api/remote-pacs/jobs") == (200, {"items": []})
    # the same AE title at the same address would take A's C-MOVE sub-operations: refused
    assert (await register(b, orthanc))[0] == 409
    # what A retrieved is A's alone
    metadata = f"/dicomweb/studies/{study.study_instance_uid}/metadata"
    assert (await b.call("GET", metadata))[0] == 404
    assert (await a.call("GET", metadata))[0] == 200

    status, echo = await a.call("POST", f"{base}/echo")
    assert (status, echo["success"]) == (200, True)
    assert (await a.call("DELETE", base))[0] == 204
    assert await a.call("GET", "/api/remote-pacs") == (200, {"items": []})
