"""QIDO-RS through the gateway, embedded and distributed: studies stored by STOW-RS and by storescu, then searched.

One platform per mode. The module stores its own patients (IDs with a random suffix) in the demo organisation and
one study in another organisation, so its searches see exactly what it stored whatever else the platform holds.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.uid import MRImageStorage, generate_uid

from radcommon.contracts import RoleValues
from support.platform import DEMO_PASSWORD, KINDS, platform_of, sign_in
from support.studies import ORG_ROOT, ct_instance, storescu
from telerad.platform import Platform

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

DICOM_JSON = "application/dicom+json"
PASSWORD = "a password for the QIDO-RS tests"
VRS = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF", "OL", "OV", "OW",
       "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"}
TAG = re.compile(r"[0-9A-F]{8}")


@dataclass(frozen=True)
class Study:
    study_instance_uid: str
    series_instance_uids: list[str]
    sop_instance_uids: list[str]
    patient_id: str
    accession_number: str


@dataclass
class Archive:
    platform: Platform
    client: aiohttp.ClientSession
    tokens: dict[str, str]
    studies: dict[str, Study]
    suffix: str

    async def get(self, path: str, params: Any = None, *, user: str = "radiologist", accept: str | None = None,
                  status: int = 200) -> tuple[Any, aiohttp.ClientResponse]:
        headers = {"Authorization": f"Bearer {self.tokens[user]}", **({"Accept": accept} if accept else {})}
        async with self.client.get(self.platform.gateway_url + path, params=params, headers=headers) as response:
            body = await response.read()
            assert response.status == status, body[:500]
            return json.loads(body), response

    async def search(self, path: str, params: Any = None, **options: Any) -> list[dict[str, Any]]:
        results, response = await self.get(path, params, **options)
        assert response.content_type == DICOM_JSON
        assert_dicom_json(results)
        return results  # type: ignore[no-any-return]


def assert_dicom_json(results: Any) -> None:
    """The DICOM JSON Model (PS3.18 Annex F) as far as search results use it."""
    assert isinstance(results, list)
    for result in results:
        assert list(result) == sorted(result)
        for tag, element in result.items():
            assert TAG.fullmatch(tag), tag
            assert set(element) <= {"vr", "Value"} and element["vr"] in VRS, (tag, element)
            if "Value" not in element:
                continue
            assert isinstance(element["Value"], list) and element["Value"], (tag, element)
            for value in element["Value"]:
                if element["vr"] == "PN":
                    assert isinstance(value, dict) and value and set(value) <= {"Alphabetic", "Ideographic",
                                                                                "Phonetic"}, (tag, element)
                elif element["vr"] == "IS":
                    assert isinstance(value, int), (tag, element)
                else:
                    assert isinstance(value, str) and value, (tag, element)
                    if element["vr"] == "DA":
                        assert re.fullmatch(r"\d{8}", value), (tag, element)


def instance(study: str, series: str, series_number: int, number: int, *, modality: str, patient_id: str,
             patient_name: str, accession: str, study_date: str, description: str) -> Dataset:
    ds = ct_instance(study, series, series_number, number, np.arange(16, dtype="<u2").tobytes(), 4, accession,
                     patient_id, patient_name)
    if modality == "MR":
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.Modality = "MR"
    ds.StudyDate, ds.StudyDescription = study_date, description
    return ds


def files_of(name: str, suffix: str, *, modality: str, patient: tuple[str, str], study_date: str, description: str,
             series: int, per_series: int) -> tuple[Study, list[Dataset]]:
    study = generate_uid(ORG_ROOT)
    series_uids = [generate_uid(ORG_ROOT) for _ in range(series)]
    datasets = [instance(study, uid, s, i, modality=modality, patient_id=patient[0], patient_name=patient[1],
                         accession=f"{name}{suffix}"[:16], study_date=study_date, description=description)
                for s, uid in enumerate(series_uids, start=1) for i in range(1, per_series + 1)]
    return Study(study, series_uids, [str(ds.SOPInstanceUID) for ds in datasets], patient[0],
                 f"{name}{suffix}"[:16]), datasets


def file_bytes(ds: Dataset) -> bytes:
    out = DicomBytesIO()
    ds.save_as(out, enforce_file_format=True)
    return bytes(out.getvalue())


async def stow(platform: Platform, client: aiohttp.ClientSession, token: str, datasets: list[Dataset]) -> None:
    boundary = f"qido-{uuid.uuid4().hex}"
    body = b"".join(b"--%s\r\nContent-Type: application/dicom\r\n\r\n%s\r\n" % (boundary.encode(), file_bytes(ds))
                    for ds in datasets) + b"--%s--\r\n" % boundary.encode()
    async with client.post(f"{platform.gateway_url}/dicomweb/studies", data=body, headers={
            "Authorization": f"Bearer {token}", "Accept": DICOM_JSON,
            "Content-Type": f'multipart/related; type="application/dicom"; boundary="{boundary}"'}) as response:
        assert response.status == 200, await response.text()


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=KINDS)
async def archive(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Archive]:
    data_dir = tmp_path_factory.mktemp(request.param)
    async with AsyncExitStack() as stack:
        platform = await stack.enter_async_context(
            platform_of(request.param, data_dir, gateway={"login_burst": 10_000}))
        await platform.services["identity"].create_organization(  # type: ignore[attr-defined]
            organization_id=uuid.uuid4(), name="Other Imaging", slug=f"other-{uuid.uuid4().hex[:8]}",
            users=[(f"technician@qido-other-{request.param}.test", "Other Technician", [RoleValues.TECHNICIAN])],
            password=PASSWORD)
        tokens = {role: (await sign_in(platform.gateway_url, f"{role}@demo.telerad", DEMO_PASSWORD))["access_token"]
                  for role in ("radiologist", "technician")}
        tokens["other"] = (await sign_in(platform.gateway_url, f"technician@qido-other-{request.param}.test",
                                         PASSWORD))["access_token"]
        client = await stack.enter_async_context(aiohttp.ClientSession())
        suffix = uuid.uuid4().hex[:6].upper()
        alpha, bravo = (f"QA-{suffix}", "Alpha^Ann"), (f"QB-{suffix}", "Smith^Bob")
        made = {
            "alpha CT": files_of("A1", suffix, modality="CT", patient=alpha, study_date="20240110",
                                 description="CT CHEST", series=2, per_series=2),
            "alpha MR": files_of("A2", suffix, modality="MR", patient=alpha, study_date="20240220",
                                 description="MR BRAIN", series=1, per_series=3),
            "bravo CT": files_of("B1", suffix, modality="CT", patient=bravo, study_date="20240125",
                                 description="CT ABDOMEN", series=1, per_series=1),
            "bravo MR": files_of("B2", suffix, modality="MR", patient=bravo, study_date="20231105",
                                 description="MR KNEE", series=1, per_series=1),
            "other": files_of("O1", suffix, modality="CT", patient=alpha, study_date="20240301",
                              description="CT CHEST", series=1, per_series=1),
        }
        folder = Path(data_dir) / "storescu"
        folder.mkdir()
        for name, (_, datasets) in made.items():
            if name == "alpha MR":  # as a modality sends it
                paths = [folder / f"{i}.dcm" for i in range(len(datasets))]
                for path, ds in zip(paths, datasets, strict=True):
                    ds.save_as(path, enforce_file_format=True)
                await storescu(platform.dicom_port, *paths)
            else:
                await stow(platform, client, tokens["other" if name == "other" else "technician"], datasets)
        yield Archive(platform, client, tokens, {name: study for name, (study, _) in made.items()}, suffix)


def uids(results: list[dict[str, Any]], tag: str = "0020000D") -> list[str]:
    return [r[tag]["Value"][0] for r in results]


def first_value(result: dict[str, Any], tag: str) -> Any:
    return result[tag].get("Value", [None])[0]


# --- studies -------------------------------------------------------------------------------------------------------

async def test_studies_by_patient_newest_first_with_the_required_attributes(archive: Archive) -> None:
    s = archive.studies
    results = await archive.search("/dicomweb/studies", {"PatientID": s["alpha CT"].patient_id})

    assert uids(results) == [s["alpha MR"].study_instance_uid, s["alpha CT"].study_instance_uid]
    mr, ct = results
    assert mr["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Alpha^Ann"}]}
    assert (first_value(mr, "00080020"), first_value(mr, "00080050")) == ("20240220", s["alpha MR"].accession_number)
    assert mr["00080061"]["Value"] == ["MR"] and ct["00080061"]["Value"] == ["CT"]
    assert (first_value(ct, "00201206"), first_value(ct, "00201208")) == (2, 4)
    assert first_value(ct, "00081190").endswith(f"/dicomweb/studies/{s['alpha CT'].study_instance_uid}")
    for tag in ("00080030", "00080090", "00100020", "00100030", "00100040", "00200010", "00080056"):
        assert tag in ct, tag


async def test_each_kind_of_study_match(archive: Archive) -> None:
    s = archive.studies
    mine = f"Q?-{archive.suffix}"  # both of this module's patients, nobody else's
    cases: list[tuple[dict[str, str], list[str]]] = [
        ({"PatientName": "smith^bob"}, ["bravo CT", "bravo MR"]),
        ({"PatientName": "SMITH*", "PatientID": mine}, ["bravo CT", "bravo MR"]),
        ({"StudyDate": "20240101-20240131", "PatientID": mine}, ["bravo CT", "alpha CT"]),
        ({"ModalitiesInStudy": "MR", "PatientID": mine}, ["alpha MR", "bravo MR"]),
        ({"00080061": "CT", "00100020": s["bravo CT"].patient_id}, ["bravo CT"]),
        ({"StudyInstanceUID": f"{s['bravo MR'].study_instance_uid},{s['alpha CT'].study_instance_uid},"
                              f"{s['other'].study_instance_uid}"}, ["alpha CT", "bravo MR"]),
        ({"AccessionNumber": s["bravo CT"].accession_number}, ["bravo CT"]),
        ({"StudyDescription": "MR*", "PatientID": mine}, ["alpha MR", "bravo MR"]),
    ]
    for params, expected in cases:
        assert uids(await archive.search("/dicomweb/studies", params)) == [
            s[name].study_instance_uid for name in expected], params


async def test_includefield_limit_and_offset(archive: Archive) -> None:
    mine = {"PatientID": f"Q?-{archive.suffix}"}
    everything = uids(await archive.search("/dicomweb/studies", mine))
    assert len(everything) == 4
    pages = [uids(await archive.search("/dicomweb/studies", {**mine, "limit": "3", "offset": str(offset)}))
             for offset in (0, 3, 6)]
    assert pages == [everything[:3], everything[3:], []]

    [with_fields] = await archive.search("/dicomweb/studies", [
        ("StudyInstanceUID", archive.studies["alpha CT"].study_instance_uid), ("includefield", "00081030,00080060"),
        ("includefield", "SOPClassesInStudy")])
    assert with_fields["00081030"] == {"vr": "LO", "Value": ["CT CHEST"]}
    assert with_fields["00080062"]["Value"] == ["1.2.840.10008.5.1.4.1.1.2"] and "00080060" not in with_fields
    [everything_of_one] = await archive.search("/dicomweb/studies", {
        "StudyInstanceUID": archive.studies["alpha CT"].study_instance_uid, "includefield": "all"})
    assert first_value(everything_of_one, "00201200") == 2  # Number of Patient Related Studies, in this organisation


# --- series and instances ------------------------------------------------------------------------------------------

async def test_series_and_instances_at_every_resource(archive: Archive) -> None:
    ct, mr = archive.studies["alpha CT"], archive.studies["alpha MR"]
    series = await archive.search(f"/dicomweb/studies/{ct.study_instance_uid}/series")
    assert uids(series, "0020000E") == ct.series_instance_uids
    assert [first_value(r, "00200011") for r in series] == [1, 2]
    assert [first_value(r, "00201209") for r in series] == [2, 2]
    assert {first_value(r, "00080060") for r in series} == {"CT"}

    all_mr = await archive.search("/dicomweb/series", {"Modality": "MR", "PatientID": f"Q?-{archive.suffix}"})
    assert uids(all_mr, "0020000E") == [mr.series_instance_uids[0], archive.studies["bravo MR"].series_instance_uids[0]]
    assert first_value(all_mr[0], "00100020") == mr.patient_id  # all series carry their study's attributes

    listed = await archive.search(f"/dicomweb/studies/{mr.study_instance_uid}/series/{mr.series_instance_uids[0]}"
                                  "/instances")
    assert uids(listed, "00080018") == mr.sop_instance_uids
    assert [first_value(r, "00200013") for r in listed] == [1, 2, 3]
    assert {first_value(r, "00080016") for r in listed} == {MRImageStorage}
    assert first_value(listed[0], "00081190").endswith(
        f"/studies/{mr.study_instance_uid}/series/{mr.series_instance_uids[0]}/instances/{mr.sop_instance_uids[0]}")

    of_study = await archive.search(f"/dicomweb/studies/{ct.study_instance_uid}/instances")
    assert sorted(uids(of_study, "00080018")) == sorted(ct.sop_instance_uids)
    [one] = await archive.search("/dicomweb/instances", {"SOPInstanceUID": ct.sop_instance_uids[3]})
    assert (first_value(one, "0020000D"), first_value(one, "0020000E")) == (ct.study_instance_uid,
                                                                            ct.series_instance_uids[1])


# --- organisations, errors, warnings -------------------------------------------------------------------------------

async def test_another_organisations_studies_never_appear(archive: Archive) -> None:
    s = archive.studies
    alpha = {"PatientID": s["alpha CT"].patient_id}
    assert uids(await archive.search("/dicomweb/studies", alpha)) == [
        s["alpha MR"].study_instance_uid, s["alpha CT"].study_instance_uid]
    assert uids(await archive.search("/dicomweb/studies", alpha, user="other")) == [s["other"].study_instance_uid]
    assert await archive.search("/dicomweb/studies", {"StudyInstanceUID": s["alpha CT"].study_instance_uid},
                                user="other") == []
    assert await archive.search(f"/dicomweb/studies/{s['alpha CT'].study_instance_uid}/series", user="other") == []
    assert await archive.search("/dicomweb/instances", {"SOPInstanceUID": s["other"].sop_instance_uids[0]}) == []


async def test_bad_searches_are_400_and_other_media_types_406(archive: Archive) -> None:
    for params in ({"NoSuchAttribute": "1"}, {"limit": "many"}, {"StudyDate": "2024-01-01"},
                   {"StudyInstanceUID": "1.2.x"}, {"fuzzymatching": "perhaps"}):
        problem, response = await archive.get("/dicomweb/studies", params, status=400)
        assert response.content_type == "application/problem+json" and problem["detail"], params
    await archive.get("/dicomweb/studies", accept='multipart/related; type="application/dicom+xml"', status=406)
    as_json, response = await archive.get("/dicomweb/studies", {"PatientID": archive.studies["bravo CT"].patient_id},
                                          accept="application/json")
    assert response.content_type == "application/json" and len(as_json) == 2


async def test_warnings_pass_through_the_gateway(archive: Archive) -> None:
    patient = {"PatientID": archive.studies["bravo CT"].patient_id}
    _, plain = await archive.get("/dicomweb/studies", patient)
    assert "Warning" not in plain.headers
    results, fuzzy = await archive.get("/dicomweb/studies", {**patient, "fuzzymatching": "true"})
    assert len(results) == 2
    assert re.fullmatch(r'299 \S+/dicomweb "The fuzzymatching parameter is not supported\. Only literal matching '
                        r'has been performed\."', fuzzy.headers["Warning"])
    _, ignored = await archive.get("/dicomweb/studies", {**patient, "InstitutionName": "Elsewhere"})
    assert "InstitutionName" in ignored.headers["Warning"]
