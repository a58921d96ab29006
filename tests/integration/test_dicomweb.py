"""DICOMweb through the gateway (STOW-RS, WADO-RS, rendered, WADO-URI), embedded and distributed.

One platform per mode; each test makes its own studies (fresh UIDs), so tests share nothing but the demo
organisation's users. Bodies go through the gateway both ways, as a viewer's or a modality's would.
"""

from __future__ import annotations

import io
import json
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
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.filebase import DicomBytesIO
from pydicom.uid import RLELossless, generate_uid
from sqlmodel import col, func, select

from dicom_ingest.adapters.storage import FileStorage
from dicom_ingest.adapters.tables import InstanceRow
from dicom_ingest.dicom.rendering import VoiLutFunctionValues, Window, apply_window
from dicom_ingest.entrypoints.dicomweb_common import dicomweb_key
from radcommon.config import CommonSettings
from radcommon.contracts import RoleValues
from support.platform import DEMO_PASSWORD, running_platform, sign_in, wait_for_worklist
from support.servers import postgres_databases, rabbitmq_vhost
from support.studies import ORG_ROOT, StudyFiles, ct_instance, write_ct_study
from telerad.platform import Platform, rabbitmq_bus

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

DICOM_JSON = "application/dicom+json"
MULTIPART_DICOM = 'multipart/related; type="application/dicom"'
MULTIPART_OCTETS = 'multipart/related; type="application/octet-stream"'
#: Small enough to test the gateway's 413 with a few MiB, large enough for the 2 MiB instance below.
GATEWAY_MAX_BODY = 6 * 1024**2
PASSWORD = "a password for the DICOMweb tests"


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes
    parts: list[tuple[str, bytes]]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Web:
    platform: Platform
    client: aiohttp.ClientSession
    tokens: dict[str, str]

    async def call(self, method: str, path: str, *, user: str = "radiologist", data: bytes | None = None,
                   headers: dict[str, str] | None = None, params: dict[str, str] | None = None) -> Reply:
        headers = {**(headers or {}), **({"Authorization": f"Bearer {self.tokens[user]}"} if user else {})}
        async with self.client.request(method, self.platform.gateway_url + path, data=data, headers=headers,
                                       params=params) as response:
            parts: list[tuple[str, bytes]] = []
            if response.content_type == "multipart/related":
                reader = aiohttp.MultipartReader.from_response(response)
                while (part := await reader.next()) is not None:
                    assert isinstance(part, aiohttp.BodyPartReader)
                    parts.append((part.headers.get("Content-Type", ""), bytes(await part.read())))
                body = b""
            else:
                body = await response.read()
            return Reply(response.status, response.headers.get("Content-Type", "").split(";")[0].strip(),
                         dict(response.headers), body, parts)

    async def stow(self, *parts: bytes, study: str | None = None, user: str = "technician",
                   content_type: str | None = None) -> Reply:
        boundary = f"stow-{uuid.uuid4().hex}"
        body = b"".join(b"--%s\r\nContent-Type: application/dicom\r\n\r\n%s\r\n" % (boundary.encode(), p)
                        for p in parts) + b"--%s--\r\n" % boundary.encode()
        path = "/dicomweb/studies" + (f"/{study}" if study else "")
        return await self.call("POST", path, user=user, data=body, headers={
            "Content-Type": content_type or f'{MULTIPART_DICOM}; boundary="{boundary}"', "Accept": DICOM_JSON})

    @property
    def storage(self) -> FileStorage:
        return self.platform.services["dicom-ingest"].storage  # type: ignore[attr-defined, no-any-return]

    async def rows(self) -> int:
        async with self.platform.services["dicom-ingest"].db.session() as session:  # type: ignore[union-attr]
            return int(await session.scalar(select(func.count(col(InstanceRow.id)))) or 0)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["embedded", "distributed"])
async def web(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Web]:
    gateway = {"login_burst": 10_000, "dicomweb_max_body_bytes": GATEWAY_MAX_BODY}
    data_dir = tmp_path_factory.mktemp(request.param)
    async with AsyncExitStack() as stack:
        if request.param == "embedded":
            platform = await stack.enter_async_context(running_platform(data_dir, gateway=gateway))
        else:
            amqp_url = await stack.enter_async_context(rabbitmq_vhost())
            databases = await stack.enter_async_context(postgres_databases())
            bus = rabbitmq_bus(CommonSettings(amqp_url=amqp_url, retry_base_delay_seconds=0.1, retry_attempts=3))
            platform = await stack.enter_async_context(
                running_platform(data_dir, bus=bus, embedded=False, database_urls=databases, gateway=gateway))
        await platform.services["identity"].create_organization(  # type: ignore[attr-defined]
            organization_id=uuid.uuid4(), name="Other Imaging", slug=f"other-{uuid.uuid4().hex[:8]}",
            users=[(f"{role}@other-{request.param}.test", role.title(), [RoleValues(role)])
                   for role in ("radiologist", "technician")], password=PASSWORD)
        tokens = {role: (await sign_in(platform.gateway_url, f"{role}@demo.telerad", DEMO_PASSWORD))["access_token"]
                  for role in ("radiologist", "technician", "admin", "manager")}
        for role in ("radiologist", "technician"):
            tokens[f"other {role}"] = (await sign_in(platform.gateway_url, f"{role}@other-{request.param}.test",
                                                     PASSWORD))["access_token"]
        client = await stack.enter_async_context(aiohttp.ClientSession())
        yield Web(platform, client, tokens)


def a_study(tmp_path: Path, **options: Any) -> StudyFiles:
    return write_ct_study(tmp_path / uuid.uuid4().hex, **{"series": 2, "instances_per_series": 3, **options})


def file_bytes(ds: Dataset) -> bytes:
    out = DicomBytesIO()
    ds.save_as(out, enforce_file_format=True)
    return bytes(out.getvalue())


def referenced(reply: Reply, sequence: str = "00081199") -> list[dict[str, Any]]:
    return reply.json().get(sequence, {}).get("Value", [])  # type: ignore[no-any-return]


# --- STOW-RS and WADO-RS ---------------------------------------------------------------------------------------------

async def test_a_stowed_ct_study_comes_back_byte_identical_and_reaches_the_worklist(web: Web, tmp_path: Path) -> None:
    study = a_study(tmp_path, accession_number=f"W{uuid.uuid4().hex[:8]}")
    sent = [f.read_bytes() for f in study.files]
    stored = await web.stow(*sent)

    assert stored.status == 200 and stored.content_type == DICOM_JSON, stored.body[:500]
    assert len(referenced(stored)) == 6 and "00081198" not in stored.json()
    assert stored.json()["00081190"]["Value"][0].endswith(f"/dicomweb/studies/{study.study_instance_uid}")
    assert referenced(stored)[0]["00081190"]["Value"][0].startswith(stored.json()["00081190"]["Value"][0] + "/series/")

    whole = await web.call("GET", f"/dicomweb/studies/{study.study_instance_uid}", headers={"Accept": MULTIPART_DICOM})
    assert whole.status == 200 and whole.content_type == "multipart/related"
    assert sorted(body for _, body in whole.parts) == sorted(sent)
    assert {t for t, _ in whole.parts} == {"application/dicom; transfer-syntax=1.2.840.10008.1.2.1"}
    series = await web.call("GET", f"/dicomweb/studies/{study.study_instance_uid}/series/"
                                   f"{study.series_instance_uids[1]}")
    assert len(series.parts) == 3 and {b for _, b in series.parts} <= set(sent)
    ds = dcmread(study.files[0])
    one = await web.call("GET", f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
                                f"{ds.SOPInstanceUID}", headers={"Accept": "application/dicom"})
    assert (one.status, one.content_type, one.body) == (200, "application/dicom", sent[0])

    page = await wait_for_worklist(web.platform.gateway_url, lambda p: any(
        i["accession_number"] == study.accession_number for i in p["items"]), timeout=30)
    [item] = [i for i in page["items"] if i["accession_number"] == study.accession_number]
    assert item["study_instance_uid"] == study.study_instance_uid


async def test_a_body_larger_than_the_gateways_default_limit_streams_both_ways(web: Web) -> None:
    pixels = np.random.default_rng(3).integers(0, 4095, (1024, 1024), dtype=np.uint16)  # 2 MiB
    ds = ct_instance(generate_uid(ORG_ROOT), generate_uid(ORG_ROOT), 1, 1, pixels.tobytes(), 1024, "BIG", "PATBIG",
                     "Big^Image")
    data = file_bytes(ds)
    assert (await web.stow(data, user="admin")).status == 200
    back = await web.call("GET", f"/dicomweb/studies/{ds.StudyInstanceUID}")
    assert [body for _, body in back.parts] == [data]


async def test_metadata_frames_and_bulk_data(web: Web, tmp_path: Path) -> None:
    study = a_study(tmp_path, series=1, instances_per_series=2)
    assert (await web.stow(*[f.read_bytes() for f in study.files], user="manager")).status == 200
    ds = dcmread(study.files[1])
    instance = f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"

    listed = await web.call("GET", f"/dicomweb/studies/{ds.StudyInstanceUID}/metadata")
    assert listed.status == 200 and listed.content_type == DICOM_JSON
    assert sorted(m["00080018"]["Value"][0] for m in listed.json()) == sorted(
        dcmread(f).SOPInstanceUID for f in study.files)
    [metadata] = (await web.call("GET", instance + "/metadata")).json()
    assert metadata["00100020"] == {"vr": "LO", "Value": ["PAT0001"]}
    assert metadata["00281050"]["Value"] == [40] and metadata["7FE00010"]["vr"] == "OW"
    bulk_uri = metadata["7FE00010"]["BulkDataURI"]
    assert bulk_uri.endswith(instance + "/bulkdata/7FE00010")
    assert (await web.call("GET", f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/metadata")
            ).json()[1]["00080018"]["Value"] == [ds.SOPInstanceUID]

    frames = await web.call("GET", instance + "/frames/1", headers={"Accept": MULTIPART_OCTETS})
    assert frames.status == 200, frames.body
    assert frames.parts == [("application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1", ds.PixelData)]
    bulk = await web.call("GET", bulk_uri[bulk_uri.index("/dicomweb/"):], headers={"Accept": MULTIPART_OCTETS})
    assert [body for _, body in bulk.parts] == [ds.PixelData]
    assert (await web.call("GET", instance + "/frames/2")).status == 404
    assert (await web.call("GET", instance + "/frames/x")).status == 400
    refused = await web.call("GET", instance + "/frames/1", headers={"Accept": 'multipart/related; type="image/jpeg"'})
    assert refused.status == 406 and refused.content_type == "application/problem+json"
    assert (await web.call("GET", instance + "/metadata", headers={"Accept": "application/dicom+xml"})).status == 406


async def test_compressed_frames_are_sent_as_stored(web: Web) -> None:
    frames = np.arange(2 * 16 * 16, dtype=np.uint16).reshape(2, 16, 16)
    ds = ct_instance(generate_uid(ORG_ROOT), generate_uid(ORG_ROOT), 1, 1, frames.tobytes(), 16, "RLE", "PATRLE",
                     "Rle^Frames")
    ds.NumberOfFrames = 2
    ds.compress(RLELossless)
    assert (await web.stow(file_bytes(ds))).status == 200
    instance = f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    reply = await web.call("GET", instance + "/frames/2,1",
                           headers={"Accept": 'multipart/related; type="image/dicom-rle"'})
    stored = list(generate_frames(ds.PixelData, number_of_frames=2))
    assert reply.parts == [(f"image/dicom-rle; transfer-syntax={RLELossless}", stored[1]),
                           (f"image/dicom-rle; transfer-syntax={RLELossless}", stored[0])]
    assert (await web.call("GET", instance + "/frames/1", headers={"Accept": MULTIPART_OCTETS})).status == 406
    rendered = await web.call("GET", instance + "/frames/2/rendered", params={"window": "0,2000"},
                              headers={"Accept": "image/png"})
    expected = apply_window(frames[1].astype(float) - 1024, Window(0, 2000))
    assert np.asarray(Image.open(io.BytesIO(rendered.body))).tolist() == np.rint(expected).astype(np.uint8).tolist()


# --- rendered, thumbnails, WADO-URI ---------------------------------------------------------------------------------

async def test_rendered_images_and_thumbnails(web: Web, tmp_path: Path) -> None:
    study = a_study(tmp_path, series=1, instances_per_series=3)
    assert (await web.stow(*[f.read_bytes() for f in study.files])).status == 200
    ds = dcmread(study.files[0])
    series = f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    instance = f"{series}/instances/{ds.SOPInstanceUID}"

    jpeg = await web.call("GET", instance + "/rendered")
    image = Image.open(io.BytesIO(jpeg.body))
    assert (jpeg.status, jpeg.content_type, image.format, image.size) == (200, "image/jpeg", "JPEG", (64, 64))
    png = await web.call("GET", instance + "/rendered", headers={"Accept": "image/png"})
    expected = np.rint(apply_window(ds.pixel_array.astype(float) - 1024, Window(40, 400))).astype(np.uint8)
    assert png.content_type == "image/png"
    assert np.asarray(Image.open(io.BytesIO(png.body))).tolist() == expected.tolist()  # the file's own window
    wide = await web.call("GET", instance + "/frames/1/rendered",
                          params={"window": "1000,4000,linear-exact", "viewport": "32,16", "accept": "image/png"})
    expected_mean = apply_window(ds.pixel_array.astype(float) - 1024,
                                 Window(1000, 4000, VoiLutFunctionValues.LINEAR_EXACT)).mean()
    assert Image.open(io.BytesIO(wide.body)).size == (16, 16)
    assert abs(float(np.asarray(Image.open(io.BytesIO(wide.body))).mean()) - expected_mean) < 2
    for path in (instance + "/thumbnail", series + "/thumbnail", f"/dicomweb/studies/{ds.StudyInstanceUID}/thumbnail"):
        thumbnail = await web.call("GET", path)
        assert thumbnail.status == 200 and Image.open(io.BytesIO(thumbnail.body)).size == (128, 128), path
    assert (await web.call("GET", instance + "/rendered", params={"window": "40"})).status == 400
    assert (await web.call("GET", instance + "/rendered", headers={"Accept": "image/gif"})).status == 406
    assert (await web.call("GET", instance + "/frames/2/rendered")).status == 404


async def test_wado_uri(web: Web, tmp_path: Path) -> None:
    study = a_study(tmp_path, series=1, instances_per_series=1)
    sent = study.files[0].read_bytes()
    assert (await web.stow(sent)).status == 200
    ds = dcmread(study.files[0])
    query = {"requestType": "WADO", "studyUID": ds.StudyInstanceUID, "seriesUID": ds.SeriesInstanceUID,
             "objectUID": ds.SOPInstanceUID}

    file = await web.call("GET", "/dicomweb/wado", params={**query, "contentType": "application/dicom"})
    assert (file.status, file.content_type, file.body) == (200, "application/dicom", sent)
    jpeg = await web.call("GET", "/dicomweb/wado", params=query)
    assert jpeg.content_type == "image/jpeg" and Image.open(io.BytesIO(jpeg.body)).size == (64, 64)
    small = await web.call("GET", "/dicomweb/wado", params={**query, "contentType": "image/png", "rows": "32",
                                                            "windowCenter": "40", "windowWidth": "400"})
    assert Image.open(io.BytesIO(small.body)).size == (32, 32)
    assert (await web.call("GET", "/dicomweb/wado", params={**query, "requestType": "WADX"})).status == 400
    unknown = {**query, "objectUID": generate_uid(ORG_ROOT)}
    assert (await web.call("GET", "/dicomweb/wado", params=unknown)).status == 404
    assert (await web.call("GET", "/dicomweb/wado", params={**query, "contentType": "text/html"})).status == 406
    assert (await web.call("GET", "/dicomweb/wado", params={**query, "contentType": "application/dicom",
                                                             "transferSyntax": RLELossless})).status == 406


# --- bad input -----------------------------------------------------------------------------------------------------

async def test_a_garbage_part_fails_alone_and_leaves_nothing(web: Web, tmp_path: Path) -> None:
    study = a_study(tmp_path, series=1, instances_per_series=1)
    files, rows = len(web.storage.files()), await web.rows()
    truncated = study.files[0].read_bytes()
    good = a_study(tmp_path, series=1, instances_per_series=1).files[0].read_bytes()

    mixed = await web.stow(b"\0" * 128 + b"DICM garbage", good, truncated[:-40])
    assert mixed.status == 202, mixed.body
    assert [f["00081197"]["Value"] for f in referenced(mixed, "00081198")] == [[0xC000], [0xC000]]
    assert len(referenced(mixed)) == 1
    assert (len(web.storage.files()), await web.rows()) == (files + 1, rows + 1)

    none = await web.stow(b"not DICOM at all")
    assert none.status == 409 and none.content_type == DICOM_JSON
    assert [f["00081197"]["Value"] for f in referenced(none, "00081198")] == [[0xC000]]
    elsewhere = await web.stow(truncated, study=generate_uid(ORG_ROOT))
    assert elsewhere.status == 409 and referenced(elsewhere, "00081198")[0]["00081197"]["Value"] == [0xC409]
    assert (len(web.storage.files()), await web.rows()) == (files + 1, rows + 1)


async def test_wrong_media_types_malformed_and_oversized_bodies_store_nothing(web: Web, tmp_path: Path) -> None:
    good = a_study(tmp_path, series=1, instances_per_series=1).files[0].read_bytes()
    files, rows = len(web.storage.files()), await web.rows()

    assert (await web.stow(good, content_type="application/json")).status == 415
    assert (await web.stow(good, content_type='multipart/related; type="application/dicom+xml"; boundary=x')
            ).status == 415
    cut = await web.call("POST", "/dicomweb/studies", user="technician", data=b"--x\r\n\r\n" + good, headers={
        "Content-Type": f'{MULTIPART_DICOM}; boundary=x'})
    assert cut.status == 400 and cut.content_type == "application/problem+json"
    assert (await web.stow(good, content_type=MULTIPART_DICOM)).status == 400  # no boundary
    oversized = await web.stow(good, bytes(GATEWAY_MAX_BODY))
    assert oversized.status == 413, oversized.body
    dicomweb = web.platform.services["dicom-ingest"].app[dicomweb_key]
    caps = dicomweb.max_part_bytes, dicomweb.max_request_bytes
    dicomweb.max_part_bytes = len(good) - 1
    try:
        assert (await web.stow(good)).status == 413  # dicom-ingest's own cap per instance
        dicomweb.max_part_bytes, dicomweb.max_request_bytes = caps[0], 1024**2
        # refused while the gateway is still sending: the 413 must come through, not a 502/503
        assert (await web.stow(good, bytes(1024**2), bytes(3 * 1024**2))).status == 413
    finally:
        dicomweb.max_part_bytes, dicomweb.max_request_bytes = caps
    assert (len(web.storage.files()), await web.rows()) == (files, rows)
    assert (await web.stow(good)).status == 200  # and the service is none the worse


# --- who may do what ------------------------------------------------------------------------------------------------

async def test_another_organisation_gets_404_for_every_resource_and_keeps_its_own_copy(web: Web,
                                                                                      tmp_path: Path) -> None:
    study = a_study(tmp_path, series=1, instances_per_series=2)
    sent = [f.read_bytes() for f in study.files]
    assert (await web.stow(*sent)).status == 200
    ds = dcmread(study.files[0])
    study_path = f"/dicomweb/studies/{ds.StudyInstanceUID}"
    instance = f"{study_path}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    paths = [study_path, study_path + "/metadata", study_path + "/thumbnail",
             f"{study_path}/series/{ds.SeriesInstanceUID}", f"{study_path}/series/{ds.SeriesInstanceUID}/metadata",
             instance, instance + "/metadata", instance + "/frames/1", instance + "/rendered", instance + "/thumbnail",
             instance + "/frames/1/rendered", instance + "/bulkdata/7FE00010"]
    for path in paths:
        reply = await web.call("GET", path, user="other radiologist")
        assert reply.status == 404 and reply.content_type == "application/problem+json", path
        assert (await web.call("GET", path, user="radiologist")).status == 200, path
    wado = await web.call("GET", "/dicomweb/wado", user="other radiologist", params={
        "requestType": "WADO", "studyUID": ds.StudyInstanceUID, "seriesUID": ds.SeriesInstanceUID,
        "objectUID": ds.SOPInstanceUID, "contentType": "application/dicom"})
    assert wado.status == 404

    # the same UIDs stored by the other organisation are its own copy; the first organisation's stays untouched
    changed = dcmread(study.files[0])
    changed.PatientName = "Other^Patient"
    theirs = file_bytes(changed)
    assert (await web.stow(theirs, user="other technician")).status == 200
    assert [b for _, b in (await web.call("GET", instance, user="other radiologist")).parts] == [theirs]
    assert [b for _, b in (await web.call("GET", instance, user="radiologist")).parts] == [sent[0]]


async def test_tokens_and_roles(web: Web, tmp_path: Path) -> None:
    good = a_study(tmp_path, series=1, instances_per_series=1).files[0].read_bytes()
    ds = dcmread(io.BytesIO(good))
    assert (await web.call("GET", f"/dicomweb/studies/{ds.StudyInstanceUID}", user="")).status == 401
    assert (await web.stow(good, user="")).status == 401
    assert (await web.stow(good, user="radiologist")).status == 200  # key images and SR from the viewer
    viewer_org = uuid.uuid4()
    email = f"viewer@{viewer_org.hex[:8]}.test"
    await web.platform.services["identity"].create_organization(  # type: ignore[attr-defined]
        organization_id=viewer_org, name="Viewers", slug=f"v-{viewer_org.hex[:8]}",
        users=[(email, "Vera Viewer", [RoleValues.VIEWER])], password=PASSWORD)
    web.tokens["viewer"] = (await sign_in(web.platform.gateway_url, email, PASSWORD))["access_token"]
    assert (await web.stow(good, user="viewer")).status == 403
    assert (await web.call("GET", f"/dicomweb/studies/{ds.StudyInstanceUID}", user="viewer")).status == 404
