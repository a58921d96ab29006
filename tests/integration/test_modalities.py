"""Modalities per organisation: who may associate, whose worklist their studies reach, who may register them.

Embedded platform (SQLite, local bus); pynetdicom and dcmtk are the SCUs, over real associations.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import pytest
from pydicom import dcmread

from dicom_ingest.adapters.spool_index import spool_label
from radcommon.contracts import RoleValues
from support.dimse import associate
from support.platform import DEMO_PASSWORD, running_platform, sign_in
from support.studies import storescu, write_ct_study
from telerad.platform import Platform

pytestmark = pytest.mark.integration

SECOND_ORGANIZATION = UUID("00000000-0000-4000-8000-0000000000b2")
REJECTED_PERMANENT, SERVICE_USER, CALLING_AE_TITLE_NOT_RECOGNIZED = 0x01, 0x01, 0x03


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    async with running_platform(tmp_path / "platform") as running:
        await running.services["identity"].create_organization(  # type: ignore[attr-defined]
            organization_id=SECOND_ORGANIZATION, name="Second Imaging", slug="second", password=DEMO_PASSWORD,
            users=[("admin@second.test", "Bea Admin", [RoleValues.ADMIN]),
                   ("radiologist@second.test", "Bo Radiologist", [RoleValues.RADIOLOGIST])])
        yield running


class Api:
    """The gateway's /api, as one signed-in user."""

    def __init__(self, platform: Platform, email: str) -> None:
        self.platform, self.email = platform, email

    async def __aenter__(self) -> Api:
        token = (await sign_in(self.platform.gateway_url, self.email))["access_token"]
        self.client = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"})
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.client.close()

    async def call(self, method: str, path: str, json: Any = None, *, base: str | None = None) -> tuple[int, Any]:
        async with self.client.request(method, f"{base or self.platform.gateway_url}{path}", json=json) as response:
            body = await response.json() if response.content_type.endswith("json") else None
            return response.status, body

    async def register(self, ae_title: str, host: str | None = None) -> dict[str, Any]:
        status, body = await self.call("POST", "/api/modalities", {"ae_title": ae_title, "host": host})
        assert status == 201, body
        return body  # type: ignore[no-any-return]

    async def ae_titles(self) -> list[str]:
        status, body = await self.call("GET", "/api/modalities")
        assert status == 200, body
        return sorted(item["ae_title"] for item in body["items"])


REJECTED = (False, (REJECTED_PERMANENT, SERVICE_USER, CALLING_AE_TITLE_NOT_RECOGNIZED), None)
ECHOED = (True, None, 0x0000)


async def test_an_unregistered_calling_ae_title_is_rejected_at_association(
        platform: Platform, caplog: pytest.LogCaptureFixture) -> None:
    assert await asyncio.to_thread(associate, platform.dicom_port, "NOT-REGISTERED") == REJECTED
    assert await asyncio.to_thread(associate, platform.dicom_port, "ANY-SCU") == ECHOED  # seeded for the demo

    [warning] = [r for r in caplog.records if r.getMessage().startswith("association rejected")]
    assert warning.levelname == "WARNING"
    assert (warning.calling_ae_title, warning.address) == ("NOT-REGISTERED", "127.0.0.1")  # type: ignore[attr-defined]


async def test_a_modality_is_accepted_once_registered_and_rejected_once_removed(platform: Platform) -> None:
    async with Api(platform, "admin@demo.telerad") as admin:
        assert await asyncio.to_thread(associate, platform.dicom_port, "CT-ROOM-1") == REJECTED

        modality = await admin.register("CT-ROOM-1")
        assert await asyncio.to_thread(associate, platform.dicom_port, "CT-ROOM-1") == ECHOED

        assert (await admin.call("DELETE", f"/api/modalities/{modality['id']}"))[0] == 204
        assert await asyncio.to_thread(associate, platform.dicom_port, "CT-ROOM-1") == REJECTED


async def test_a_registered_title_calling_from_another_host_is_rejected(platform: Platform) -> None:
    async with Api(platform, "admin@demo.telerad") as admin:
        modality = await admin.register("REMOTE-CT", "10.0.0.0/8")

    assert modality["host"] == "10.0.0.0/8"
    assert await asyncio.to_thread(associate, platform.dicom_port, "REMOTE-CT") == REJECTED


@pytest.mark.dcmtk
async def test_studies_reach_the_worklist_of_their_modalitys_organisation_only(
        platform: Platform, tmp_path: Path) -> None:
    first = write_ct_study(tmp_path / "first", series=1, instances_per_series=2, size=16, accession_number="ACC-A",
                           patient_id="PAT-A")
    second = write_ct_study(tmp_path / "second", series=1, instances_per_series=3, size=16,
                            accession_number="ACC-B", patient_id="PAT-B")
    async with Api(platform, "admin@demo.telerad") as demo, Api(platform, "admin@second.test") as other:
        await demo.register("CT-DEMO", "127.0.0.1")
        await other.register("CT-SECOND")

    await storescu(platform.dicom_port, *sorted((tmp_path / "first").glob("*.dcm")), calling_ae_title="CT-DEMO")
    await storescu(platform.dicom_port, *sorted((tmp_path / "second").glob("*.dcm")), calling_ae_title="CT-SECOND")

    async with Api(platform, "radiologist@demo.telerad") as demo, Api(platform, "radiologist@second.test") as other:
        await worklist_once_filled(demo)
        other_items = (await worklist_once_filled(other))["items"]
        demo_items = (await worklist_once_filled(demo))["items"]  # both studies are listed somewhere by now

    assert [(i["study_instance_uid"], i["accession_number"], i["number_of_instances"]) for i in demo_items] == [
        (first.study_instance_uid, "ACC-A", 2)]
    assert [(i["study_instance_uid"], i["accession_number"], i["number_of_instances"]) for i in other_items] == [
        (second.study_instance_uid, "ACC-B", 3)]


async def worklist_once_filled(api: Api, timeout: float = 15.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status, page = await api.call("GET", "/api/worklist")
        assert status == 200, page
        if page["total"] >= 1 or asyncio.get_running_loop().time() > deadline:
            return page  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)


async def test_an_organisation_sees_and_removes_only_its_own_modalities(platform: Platform) -> None:
    async with Api(platform, "admin@demo.telerad") as demo, Api(platform, "admin@second.test") as other:
        mine = await demo.register("CT-DEMO")
        theirs = await other.register("CT-SECOND", "192.0.2.0/24")

        assert await demo.ae_titles() == ["ANY-SCU", "CT-DEMO", "ECHOSCU", "STORESCU"]
        assert await other.ae_titles() == ["CT-SECOND"]
        assert (await demo.call("DELETE", f"/api/modalities/{theirs['id']}"))[0] == 404
        assert (await demo.call("DELETE", f"/api/modalities/{uuid4()}"))[0] == 404
        ingest_url = platform.services["dicom-ingest"].http_url
        assert (await demo.call("DELETE", "/modalities/not-an-id", base=ingest_url))[0] == 404
        assert await other.ae_titles() == ["CT-SECOND"]

        assert (await demo.call("POST", "/api/modalities", {"ae_title": "CT-DEMO"}))[0] == 409
        assert (await other.call("POST", "/api/modalities", {"ae_title": "CT-DEMO", "host": "10.1.2.3"}))[0] == 409
        assert (await other.call("POST", "/api/modalities", {"ae_title": "STORESCU"}))[0] == 409  # overlaps demo's
        assert (await demo.call("POST", "/api/modalities", {"ae_title": "CT\\1"}))[0] == 422

        assert (await other.call("DELETE", f"/api/modalities/{theirs['id']}"))[0] == 204
        assert await other.ae_titles() == []
        assert "CT-DEMO" in await demo.ae_titles() and mine["host"] is None


async def test_only_admins_and_managers_register_modalities(platform: Platform) -> None:
    ingest_url = platform.services["dicom-ingest"].http_url
    async with Api(platform, "radiologist@demo.telerad") as radiologist, \
            Api(platform, "technician@demo.telerad") as technician, \
            Api(platform, "manager@demo.telerad") as manager:
        assert (await radiologist.call("POST", "/api/modalities", {"ae_title": "CT-1"}))[0] == 403
        assert (await radiologist.call("GET", "/api/modalities"))[0] == 403
        # dicom-ingest checks the token's roles itself too, whoever reaches it
        assert (await radiologist.call("POST", "/modalities", {"ae_title": "CT-1"}, base=ingest_url))[0] == 403
        assert (await technician.call("POST", "/api/modalities", {"ae_title": "CT-1"}))[0] == 403
        assert await technician.ae_titles() == ["ANY-SCU", "ECHOSCU", "STORESCU"]

        modality = await manager.register("CT-1")
        assert (await technician.call("DELETE", f"/api/modalities/{modality['id']}"))[0] == 403
        assert (await manager.call("DELETE", f"/api/modalities/{modality['id']}"))[0] == 204

    async with aiohttp.ClientSession() as anonymous, anonymous.get(f"{ingest_url}/modalities") as response:
        assert response.status == 401


async def test_an_organisations_admins_see_its_spool_only(platform: Platform, tmp_path: Path) -> None:
    """GET /api/ingest/spool: instances acknowledged and not yet indexed, and those the index refused after their
    Success (set aside), each organisation its own. The files are put there as the spool indexer leaves them."""
    storage = platform.services["dicom-ingest"].storage  # type: ignore[attr-defined]
    demo = platform.common.default_organization_id
    files = write_ct_study(tmp_path / "study", series=1, instances_per_series=3).files
    _, waiting = storage.spool(files[0].read_bytes(), spool_label(demo, "CT 1"))
    _, refused = storage.spool(files[1].read_bytes(), spool_label(demo, "CT 1"))
    storage.set_aside(refused)
    _, elsewhere = storage.spool(files[2].read_bytes(), spool_label(SECOND_ORGANIZATION, "MR"))
    storage.set_aside(elsewhere)
    try:
        async with Api(platform, "admin@demo.telerad") as demo_admin:
            status, body = await demo_admin.call("GET", "/api/ingest/spool")
        assert status == 200, body
        assert body["waiting"] == 1 and body["set_aside_total"] == 1
        [aside] = body["set_aside"]
        assert aside["calling_ae_title"] == "CT 1" and aside["size_bytes"] == files[1].stat().st_size
        assert aside["sop_instance_uid"] == dcmread(files[1]).SOPInstanceUID
        async with Api(platform, "admin@second.test") as second_admin:
            status, body = await second_admin.call("GET", "/api/ingest/spool")
        assert status == 200 and body["waiting"] == 0 and body["set_aside_total"] == 1
        assert body["set_aside"][0]["sop_instance_uid"] == dcmread(files[2]).SOPInstanceUID
        async with Api(platform, "radiologist@second.test") as radiologist:
            status, body = await radiologist.call("GET", "/api/ingest/spool")
        assert status == 403, body
        async with aiohttp.ClientSession() as client, \
                client.get(f"{platform.services['dicom-ingest'].http_url}/metrics") as response:
            metrics = {line.split()[0]: float(line.split()[1]) for line in (await response.text()).splitlines()
                       if line.startswith("telerad_dicom_spool_")}
        assert metrics["telerad_dicom_spool_waiting_instances"] == 1  # all organisations together
        assert metrics["telerad_dicom_spool_set_aside_instances"] == 2
        assert 0 < metrics["telerad_dicom_spool_oldest_waiting_seconds"] < 60
    finally:
        storage.unspool(waiting)  # the embedded platform has no spool indexer to take it


async def test_set_aside_instances_are_indexed_again_on_an_admins_request(platform: Platform, tmp_path: Path) -> None:
    """POST /api/ingest/spool/set-aside/retry: an instance the index refused after its Success is filed and indexed
    once what refused it is mended; an unreadable one stays set aside, with why; another organisation's is neither
    touched nor named; an instance already held is not indexed twice; a radiologist may not."""
    storage = platform.services["dicom-ingest"].storage  # type: ignore[attr-defined]
    demo = platform.common.default_organization_id
    study = write_ct_study(tmp_path / "study", series=1, instances_per_series=3)
    files = study.files
    refused = [storage.set_aside(storage.spool(f.read_bytes(), spool_label(demo, "CT 1"))[1]) for f in files[:2]]
    garbled = storage.set_aside(storage.spool(files[2].read_bytes()[:300], spool_label(demo, "CT 1"))[1])
    elsewhere = storage.set_aside(storage.spool(files[2].read_bytes(), spool_label(SECOND_ORGANIZATION, "MR"))[1])
    names = [Path(path).name for path in (*refused, garbled, elsewhere)]
    async with Api(platform, "radiologist@demo.telerad") as radiologist:
        assert (await radiologist.call("POST", "/api/ingest/spool/set-aside/retry"))[0] == 403
    async with Api(platform, "admin@demo.telerad") as admin:
        status, body = await admin.call("POST", "/api/ingest/spool/set-aside/retry", {"files": [names[0], names[3]]})
        assert status == 200, body
        assert [(r["file"], r["outcome"]) for r in body["retried"]] == [(names[0], "indexed"), (names[3], "not_found")]
        assert body["retried"][0]["sop_instance_uid"] == dcmread(files[0]).SOPInstanceUID
        assert body["set_aside_total"] == 2

        status, body = await admin.call("POST", "/api/ingest/spool/set-aside/retry")  # every one of its own
        assert status == 200, body
        outcomes = {r["file"]: r for r in body["retried"]}
        assert set(outcomes) == {names[1], names[2]} and body["set_aside_total"] == 1
        assert outcomes[names[1]]["outcome"] == "indexed"
        assert outcomes[names[2]]["outcome"] == "unreadable" and outcomes[names[2]]["detail"]

        status, body = await admin.call("GET", f"/dicomweb/studies/{study.study_instance_uid}/metadata")
        assert status == 200, body
        assert sorted(item["00080018"]["Value"][0] for item in body) == sorted(
            dcmread(f).SOPInstanceUID for f in files[:2])

        # the same instance set aside again (a copy a modality re-sent): held already, dropped, not indexed twice
        again = storage.set_aside(storage.spool(files[0].read_bytes(), spool_label(demo, "CT 1"))[1])
        status, body = await admin.call("POST", "/api/ingest/spool/set-aside/retry", {"files": [Path(again).name]})
        assert [r["outcome"] for r in body["retried"]] == ["already_held"] and body["set_aside_total"] == 1
    assert Path(elsewhere).exists() and Path(garbled).exists()
    assert not any(Path(path).exists() for path in (*refused, again))
    for key in {Path(path).name.split(".")[0] for path in refused}:
        assert storage.exists(key)  # filed under its key, which the index row points at
    storage.unspool(elsewhere)
    storage.unspool(garbled)


async def test_a_retry_request_that_does_not_parse_is_refused_and_touches_nothing(platform: Platform,
                                                                                   tmp_path: Path) -> None:
    """Bad input to POST /api/ingest/spool/set-aside/retry: a problem document, and the set-aside file stays."""
    storage = platform.services["dicom-ingest"].storage  # type: ignore[attr-defined]
    demo = platform.common.default_organization_id
    data = write_ct_study(tmp_path / "study", series=1, instances_per_series=1).files[0].read_bytes()
    aside = storage.set_aside(storage.spool(data, spool_label(demo, "CT 1"))[1])
    try:
        async with Api(platform, "admin@demo.telerad") as admin:
            url = f"{platform.gateway_url}/api/ingest/spool/set-aside/retry"
            for body, expected in ((b'{"files": "all"}', 422), (b'{"files": [', 400),
                                   (b'{"files": [' + b'"x",' * 200 + b'"x"]}', 422)):
                async with admin.client.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                    assert response.status == expected, await response.text()
                    assert response.content_type == "application/problem+json"
            status, view = await admin.call("GET", "/api/ingest/spool")
        assert status == 200 and view["set_aside_total"] == 1
        assert Path(aside).read_bytes() == data
    finally:
        storage.unspool(aside)
